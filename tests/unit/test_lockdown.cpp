#include <doctest/doctest.h>

#include "run/lockdown.hpp"

using namespace kgate::run;
using nlohmann::json;

namespace {
json hello(const char* securityfs,
           const char* lsm = "lockdown,capability,landlock,yama,apparmor,tomoyo,bpf") {
  return {{"lockdown", securityfs}, {"lsm", lsm}};
}
const json loaded = {{"ok", true}};
const json refused = {
    {"ok", false},
    {"error", "load: Invalid argument"},
    {"log", "6: (85) call bpf_probe_write_user#36\nunknown func bpf_probe_write_user#36\n"}};
const char* dmesg =
    "<5>[    0.1] Lockdown: swapper/0: hibernation is restricted; see man kernel_lockdown.7\n"
    "<5>[    1.7] Lockdown: init: use of bpf to write user RAM is restricted; see man kernel_lockdown.7\n"
    "<5>[    1.8] Lockdown: init: use of bpf to write user RAM is restricted; see man kernel_lockdown.7\n";
}  // namespace

TEST_CASE("names and the bracketed level") {
  CHECK(parse_lockdown("integrity") == Lockdown::integrity);
  CHECK_FALSE(parse_lockdown("Integrity").has_value());
  CHECK(lockdown_name(Lockdown::confidentiality) == "confidentiality");
  CHECK(bracketed_level("none [integrity] confidentiality") == "integrity");
  CHECK(bracketed_level("") == "");
  CHECK(lockdown_lines(dmesg) ==
        std::vector<std::string>{
            "Lockdown: swapper/0: hibernation is restricted; see man kernel_lockdown.7",
            "Lockdown: init: use of bpf to write user RAM is restricted; see man kernel_lockdown.7"});
}

TEST_CASE("integrity is proven by securityfs, the LSM list and a refused canary") {
  auto p = prove_lockdown(Lockdown::integrity, hello("none [integrity] confidentiality"), refused, dmesg);
  CHECK(p.consistent);
  CHECK(p.observed == "integrity");
  CHECK(p.lsm_listed);
  CHECK_FALSE(p.canary_loaded);
  CHECK(p.canary_verifier.find("unknown func bpf_probe_write_user#36") != std::string::npos);
  CHECK(p.dmesg_lockdown.size() == 2);
  auto j = lockdown_json(p);
  CHECK(j["proven"] == true);
  CHECK(j["requested"] == "integrity");
}

TEST_CASE("none is proven by a loaded canary") {
  auto p = prove_lockdown(Lockdown::none, hello("[none] integrity confidentiality"), loaded, "");
  CHECK(p.consistent);
  auto no_lsm = prove_lockdown(Lockdown::none, hello("", "capability,yama"), loaded, "");
  CHECK(no_lsm.consistent);
  CHECK(no_lsm.observed == "unavailable");
}

TEST_CASE("every way the guest can disagree is a mismatch, with the reason") {
  auto shown_only =
      prove_lockdown(Lockdown::integrity, hello("none [integrity] confidentiality"), loaded, "");
  CHECK_FALSE(shown_only.consistent);
  CHECK(shown_only.mismatch.find("canary loaded: lockdown is not enforced") != std::string::npos);

  auto no_file = prove_lockdown(Lockdown::integrity, hello("", "capability,yama"), refused, dmesg);
  CHECK_FALSE(no_file.consistent);
  CHECK(no_file.mismatch.find("securityfs shows unavailable") != std::string::npos);
  CHECK(no_file.mismatch.find("not in the active LSM list (capability,yama)") != std::string::npos);

  auto forced = prove_lockdown(Lockdown::none, hello("none [integrity] confidentiality"), refused, dmesg);
  CHECK_FALSE(forced.consistent);
  CHECK(forced.mismatch.starts_with("lockdown=none requested: securityfs shows [integrity]"));

  auto unexplained = prove_lockdown(Lockdown::integrity, hello("none [integrity] confidentiality"),
                                    json{{"ok", false}, {"error", "load: Out of memory"}}, "");
  CHECK_FALSE(unexplained.consistent);
  CHECK(unexplained.mismatch.find("neither the verifier nor the kernel log names lockdown") !=
        std::string::npos);

  auto lying = prove_lockdown(Lockdown::integrity, json("garbage"), json(42), "");
  CHECK_FALSE(lying.consistent);
}

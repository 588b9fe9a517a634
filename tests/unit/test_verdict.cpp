#include <doctest/doctest.h>

#include "run/verdict.hpp"

using namespace kgate;
using namespace kgate::run;
using nlohmann::json;

namespace {
const char* nonce = "00112233aabbccdd";

json events(const char* prog, int n, const char* with_nonce = nonce, int tgid = 1, int core_tgid = 1) {
  json out = json::array();
  for (int i = 0; i < n; ++i) {
    out.push_back({{"prog", prog}, {"nonce", with_nonce}, {"tgid", tgid}, {"core_tgid", core_tgid}});
  }
  return out;
}

// What a healthy agent reports for the built-in probe with count 4.
Observations healthy() {
  Observations o;
  o.hello = {{"release", "6.1.0-56-amd64"}, {"pid", 1}};
  o.load = {{"ok", true},
            {"programs",
             {{{"name", "on_getpid"}, {"loaded", true}, {"verified_insns", 65}},
              {{"name", "on_uprobe"}, {"loaded", true}, {"verified_insns", 53}}}}};
  o.attach = {{"ok", true},
              {"programs",
               {{{"name", "on_getpid"}, {"attached", true}}, {{"name", "on_uprobe"}, {"attached", true}}}}};
  json ev = events("on_getpid", 4);
  for (auto& e : events("on_uprobe", 4)) ev.push_back(e);
  o.trigger = {{"ok", true}};
  o.flush = {{"ok", true}, {"events", ev}, {"programs", {{{"name", "on_getpid"}, {"run_cnt", 4}}}}};
  o.detach = {{"ok", true}, {"left", {{"programs", json::array()}, {"links", json::array()}}}};
  o.nonce = nonce;
  o.count = 4;
  o.expected_release = "6.1.0-56-amd64";
  return o;
}

void check_fails(const Observations& o, const std::string& needle) {
  Judgement j = judge(o);
  CHECK(j.verdict == FailureClass::gate_failed);
  CHECK_MESSAGE(j.message.find(needle) != std::string::npos, j.message);
}
}  // namespace

TEST_CASE("a healthy report passes, with per-program figures") {
  Judgement j = judge(healthy());
  CHECK(j.verdict == FailureClass::pass);
  CHECK(j.message.empty());
  REQUIRE(j.programs.size() == 2);
  CHECK(j.programs[0].name == "on_getpid");
  CHECK(j.programs[0].nonce_matched == 4);
  CHECK(j.programs[0].verified_insns == 65u);
  CHECK(j.programs[0].run_count == 4u);
  CHECK(j.leftovers["programs"].empty());
}

TEST_CASE("a replayed report (another run's nonce) cannot pass") {
  auto o = healthy();
  o.nonce = "ffffffffffffffff";
  check_fails(o, "on_getpid: fired 0 times with this run's nonce, needs 4");
  auto j = judge(o);
  CHECK(j.programs[0].events == 4);
  CHECK(j.programs[0].nonce_matched == 0);
}

TEST_CASE("events from another process or with a disagreeing CO-RE read do not count") {
  auto o = healthy();
  o.flush["events"] = events("on_getpid", 4, nonce, 77, 77);
  for (auto& e : events("on_uprobe", 4, nonce, 1, 2)) o.flush["events"].push_back(e);
  check_fails(o, "on_getpid: fired 0 times");
  check_fails(o, "on_uprobe: fired 0 times");
}

TEST_CASE("one event short of the count fails") {
  auto o = healthy();
  o.flush["events"].erase(o.flush["events"].begin());
  check_fails(o, "on_getpid: fired 3 times with this run's nonce, needs 4");
}

TEST_CASE("leftovers, a missing detach report and the wrong kernel each fail") {
  auto left = healthy();
  left.detach["left"]["links"] = {12};
  check_fails(left, "left behind in the guest");
  auto no_detach = healthy();
  no_detach.detach = nullptr;
  check_fails(no_detach, "reported nothing about what it left behind");
  auto wrong = healthy();
  wrong.hello["release"] = "6.1.0-55-amd64";
  check_fails(wrong, "the guest runs 6.1.0-55-amd64, the entry's package ships 6.1.0-56-amd64");
}

TEST_CASE("an unconfirmed trigger or dropped events fail") {
  auto o = healthy();
  o.trigger = {{"ok", false}, {"error", "set kgate_nonce: Bad file descriptor"}};
  check_fails(o, "trigger: set kgate_nonce: Bad file descriptor");
  auto d = healthy();
  d.flush["dropped"] = 3;
  check_fails(d, "the agent dropped 3 events");
}

TEST_CASE("the canary leaving a program behind fails too") {
  auto o = healthy();
  o.canary_detach = {{"ok", true}, {"left", {{"programs", {41}}, {"links", json::array()}}}};
  check_fails(o, "the lockdown canary left behind in the guest");
  o.canary_detach["left"]["programs"] = json::array();
  CHECK(judge(o).verdict == FailureClass::pass);
  o.canary_detach = {{"ok", true}};
  check_fails(o, "nothing about what the lockdown canary left behind");
}

TEST_CASE("a refused load fails with the verifier's words; a failed attach names the program") {
  auto refused = healthy();
  refused.load = {{"ok", false},
                  {"error", "load: Permission denied"},
                  {"log", "unknown func bpf_probe_write_user#36"},
                  {"programs", {{{"name", "on_getpid"}, {"loaded", false}}}}};
  refused.attach = refused.flush = refused.detach = nullptr;
  check_fails(refused, "on_getpid: load: Permission denied");
  check_fails(refused, "verifier: unknown func bpf_probe_write_user#36");
  auto detached = healthy();
  detached.attach["programs"][1] = {{"name", "on_uprobe"}, {"attached", false}, {"error", "No such file"}};
  check_fails(detached, "on_uprobe: attach: No such file");
}

TEST_CASE("a refusal is put down to lockdown only when the kernel logged a BPF read refusal") {
  auto o = healthy();
  o.load = {{"ok", false},
            {"error", "load: Invalid argument"},
            {"programs", {{{"name", "on_getpid"}, {"loaded", false}}}}};
  o.lockdown_level = "integrity";
  o.lockdown_refusals = {
      "Lockdown: init: use of bpf to write user RAM is restricted; see man kernel_lockdown.7"};
  auto j = judge(o);
  CHECK(j.programs[0].error == "load: Invalid argument");
  o.lockdown_level = "confidentiality";
  o.lockdown_refusals.push_back(
      "Lockdown: init: use of bpf to read kernel RAM is restricted; see man kernel_lockdown.7");
  j = judge(o);
  CHECK(j.programs[0].error.starts_with(
      "refused under lockdown=confidentiality (Lockdown: init: use of bpf to read"));
}

TEST_CASE("a lying guest with wrong types or shapes never throws and never passes") {
  auto o = healthy();
  o.load["programs"][0]["loaded"] = "yes";
  o.load["programs"][1]["verified_insns"] = "many";
  o.flush["events"][0]["tgid"] = "1";
  o.flush["events"][1] = 42;
  o.flush["programs"] = "none";
  o.detach["left"] = json::array();
  Judgement j = judge(o);
  CHECK(j.verdict == FailureClass::gate_failed);
  auto empty = healthy();
  empty.load = json::array();
  empty.hello = "hello";
  CHECK(judge(empty).verdict == FailureClass::gate_failed);
  CHECK(judge(Observations{}).verdict == FailureClass::gate_failed);
}

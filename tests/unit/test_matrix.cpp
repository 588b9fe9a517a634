#include <doctest/doctest.h>

#include <cstdlib>

#include "matrix/matrix.hpp"
#include "matrix/runner.hpp"

using namespace kgate;
using namespace kgate::matrix;
using nlohmann::json;

namespace {
std::string source_root() {
  const char* env = std::getenv("KGATE_SOURCE_ROOT");
  return env ? env : std::string(__FILE__).substr(0, std::string(__FILE__).rfind("/tests/"));
}

std::string error_of(std::string_view text) {
  auto m = parse_matrix(text, "m.json");
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().cls() == FailureClass::usage);
  return m.error().describe();
}
}  // namespace

TEST_CASE("the shipped matrix names the production and local entries") {
  auto m = load_matrix(source_root() + "/kernels/matrix.json");
  REQUIRE_MESSAGE(m.has_value(), m.error().describe());
  std::vector<std::string> names;
  for (const auto& e : m->entries) names.push_back(e.name);
  CHECK(names == std::vector<std::string>{"5.15", "6.6", "6.6-integrity", "debian-6.1",
                                          "debian-6.1-integrity", "debian-6.1-cloud", "debian-6.1-arm64",
                                          "debian-6.1-arm64-integrity"});
  CHECK(m->find("debian-6.1-arm64-integrity")->arch == "arm64");
  CHECK(m->find("debian-6.1-arm64-integrity")->lockdown == run::Lockdown::integrity);
  CHECK(m->find("debian-6.1")->arch == "x86_64");
  CHECK(m->find("6.6-integrity")->lockdown == run::Lockdown::integrity);
  CHECK(m->find("6.6-integrity")->kernel == "6.6");
  CHECK(m->find("nope") == nullptr);
}

TEST_CASE("bad matrix files are refused with what and where") {
  CHECK(error_of("[]") == "m.json: not a JSON object");
  // Cut short, a file says where it ends, not that it is no object.
  CHECK(error_of(R"({"schema": "kgate.matrix/1", "entries": [{"name": "a",)")
            .starts_with("m.json: not valid JSON at line 1, column"));
  CHECK(error_of("{\"schema\": \"kgate.matrix/1\",\n \"schema\": \"kgate.matrix/1\", \"entries\": []}") ==
        "m.json: line 2: schema: the key \"schema\" appears twice in one object (first on line 1)");
  CHECK(error_of(R"({"schema": "x", "entries": []})") == "m.json: schema must be \"kgate.matrix/1\"");
  CHECK(error_of(R"({"schema": "kgate.matrix/1", "entries": []})") ==
        "m.json: 'entries' must be a non-empty array");
  CHECK(error_of(R"({"schema": "kgate.matrix/1", "entries": [{"name": "a"}]})") ==
        "m.json: entries[0]: 'kernel' must be a non-empty string");
  CHECK(
      error_of(
          R"({"schema": "kgate.matrix/1", "entries": [{"name": "a", "kernel": "k", "lockdown": "max"}]})") ==
      "m.json: entries[0]: 'lockdown' must be none, integrity or confidentiality");
  CHECK(
      error_of(
          R"({"schema": "kgate.matrix/1", "entries": [{"name": "a", "kernel": "k"}, {"name": "a", "kernel": "k"}]})") ==
      "m.json: entries[1]: duplicate name 'a'");
  CHECK(
      error_of(
          R"({"schema": "kgate.matrix/1", "entries": [{"name": "a", "kernel": "k", "lockdwn": "none"}]})") ==
      "m.json: entries[0]: unknown key 'lockdwn'");
  CHECK(error_of(
            R"({"schema": "kgate.matrix/1", "entries": [{"name": "a", "kernel": "k", "arch": "mips"}]})") ==
        "m.json: entries[0]: 'arch' must be \"x86_64\" or \"arm64\"");
}

TEST_CASE("--only globs select in matrix order; --github gives strategy.matrix JSON") {
  CHECK(glob_match("6.6*", "6.6-integrity"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("d?bian-*", "debian-6.1"));
  CHECK_FALSE(glob_match("6.6", "6.6-integrity"));
  auto m = load_matrix(source_root() + "/kernels/matrix.json").value();
  auto sel = select(m, "debian-6.1,debian-6.1-integrity,debian-6.1-cloud,5.15,*arm64");
  REQUIRE(sel.has_value());
  REQUIRE(sel->size() == 5);
  CHECK((*sel)[0].name == "5.15");
  CHECK((*sel)[3].name == "debian-6.1-cloud");
  CHECK((*sel)[4].name == "debian-6.1-arm64");
  CHECK(select(m, "").value().size() == m.entries.size());
  CHECK(select(m, "nothing*").error().describe() == "--only 'nothing*' selects no matrix entry");
  json gh = github_matrix(*sel);
  CHECK(gh["include"].size() == 5);
  CHECK(gh["include"][0] ==
        json{{"entry", "5.15"}, {"kernel", "5.15"}, {"lockdown", "none"}, {"arch", "x86_64"}});
  CHECK(gh["include"][4] == json{{"entry", "debian-6.1-arm64"},
                                 {"kernel", "debian-6.1-arm64"},
                                 {"lockdown", "none"},
                                 {"arch", "arm64"}});
}

TEST_CASE("reports: one failing or cancelled entry fails the whole; JUnit escapes and counts") {
  MatrixRun run;
  EntryResult ok;
  ok.entry = {"a", "k", run::Lockdown::none, "x86_64"};
  ok.started = true;
  ok.verdict = FailureClass::pass;
  ok.exit_code = 0;
  report::Receipt receipt;
  receipt.guest = {{"release", "6.1.0"}};
  receipt.qemu.accel = "tcg";
  receipt.timings_s = {{"boot", 1.5}};
  report::ProgramResult p1;
  p1.object = "gate";
  p1.name = "p<1>";
  p1.verdict = "pass";
  p1.insns_processed = 51;
  report::ProgramResult fentry;
  fentry.object = "gate";
  fentry.name = "fentry";
  fentry.verdict = "skipped";
  fentry.skip_reason = "no trampolines";
  receipt.programs = {p1, fentry};
  ok.receipt = receipt;
  EntryResult bad = ok;
  bad.entry.name = "b&c";
  bad.verdict = FailureClass::kernel_panic;
  bad.exit_code = 3;
  bad.message = "Kernel panic - not syncing: \"x\"";
  bad.receipt->console_tail = {"line <one>"};
  report::ProgramResult& refused = bad.receipt->programs[0];
  refused.verdict = "fail";
  refused.reasons = {"verifier_reject"};
  refused.error = "refused: R0 invalid mem access";
  refused.insns_processed = 7;
  refused.log_tail = {"7: (79) r1 = *(u64 *)(r0 +0)", "R0 invalid mem access"};
  EntryResult cancelled;
  cancelled.entry = {"d", "k", run::Lockdown::integrity, "x86_64"};
  cancelled.cancelled = true;
  cancelled.verdict = FailureClass::interrupted;
  run.results = {ok, bad, cancelled};
  CHECK(overall(run) == FailureClass::kernel_panic);
  json s = summary_json(run);
  CHECK(s["passed"] == 1);
  CHECK(s["total"] == 3);
  CHECK(s["verdict"] == "fail");
  CHECK(s["entries"][2]["verdict"] == "cancelled");
  CHECK(s["entries"][2]["exit_code"].is_null());
  CHECK(s["entries"][0]["release"] == "6.1.0");
  // Program x entry, in the summary and the table.
  REQUIRE(s["programs"].size() == 2);
  CHECK(s["programs"][0]["name"] == "p<1>");
  CHECK(s["programs"][0]["entries"]["a"]["verdict"] == "pass");
  CHECK(s["programs"][0]["entries"]["a"]["insns_processed"] == 51);
  CHECK(s["programs"][0]["entries"]["b&c"]["reasons"] == json::array({"verifier_reject"}));
  CHECK(s["programs"][1]["entries"]["a"]["verdict"] == "skipped");
  std::string xml = junit_xml(run);
  // Three entries and four program cases: three failures (the panic, the refused program, the
  // cancelled entry), two skipped (fentry on both entries that ran).
  CHECK(xml.find("tests=\"7\" failures=\"3\"") != std::string::npos);
  CHECK(xml.find("skipped=\"2\"") != std::string::npos);
  CHECK(xml.find("<skipped message=\"no trampolines\"/>") != std::string::npos);
  CHECK(xml.find("name=\"b&amp;c\"") != std::string::npos);
  CHECK(xml.find("name=\"gate/p&lt;1&gt;\"") != std::string::npos);
  CHECK(xml.find("<failure type=\"verifier_reject\" message=\"refused: R0 invalid mem access\">7: (79) r1 = "
                 "*(u64 *)(r0 +0)\nR0 invalid mem access\n</failure>") != std::string::npos);
  CHECK(xml.find("message=\"Kernel panic - not syncing: &quot;x&quot;\"") != std::string::npos);
  CHECK(xml.find("line &lt;one&gt;") != std::string::npos);
  std::string t = table(run);
  CHECK(t.find("FAIL kernel_panic") != std::string::npos);
  CHECK(t.find("PROGRAM") != std::string::npos);
  CHECK(t.find("gate/p<1>    pass 51  FAIL verifier_reject  -") != std::string::npos);
  CHECK(t.find("gate/fentry") != std::string::npos);
  CHECK(t.find("cancelled") != std::string::npos);
  CHECK(xml_escape(std::string("a\x01") + "b") == "a?b");
  run.interrupted = true;
  CHECK(overall(run) == FailureClass::interrupted);
}

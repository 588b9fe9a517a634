#include <doctest/doctest.h>

#include <cstdlib>

#include <algorithm>
#include <map>

#include "matrix/baseline.hpp"
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

TEST_CASE("--shard I/N: round robin slices that cover the selection once; bad shards are refused") {
  auto m = load_matrix(source_root() + "/kernels/matrix.json").value();
  const auto all = select(m, "").value();
  REQUIRE(all.size() >= 3);
  for (int n : {1, 2, 3, static_cast<int>(all.size()) + 2}) {
    std::vector<std::string> seen;
    for (int i = 1; i <= n; ++i)
      for (const auto& e : shard_of(all, {i, n})) seen.push_back(e.name);
    std::sort(seen.begin(), seen.end());
    std::vector<std::string> names;
    for (const auto& e : all) names.push_back(e.name);
    std::sort(names.begin(), names.end());
    CAPTURE(n);
    CHECK(seen == names);
  }
  CHECK(shard_of(all, {2, 2})[0].name == all[1].name);
  CHECK(parse_shard("3/4").value().index == 3);
  CHECK(parse_shard("3/4").value().count == 4);
  for (const char* bad : {"", "1", "0/2", "3/2", "1/0", "a/b", "1/2/3", "-1/2", "1/1001", "1 /2"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_shard(bad).has_value());
  }
  json gh = github_shards(all, 2);
  REQUIRE(gh["include"].size() == 2);
  CHECK(gh["include"][0]["shard"] == "1/2");
  CHECK(gh["include"][0]["entries"].get<std::string>().starts_with(all[0].name + "," + all[2].name));
  // More shards than entries: no empty shard is listed.
  CHECK(github_shards(all, static_cast<int>(all.size()) + 2)["include"].size() == all.size());
}

TEST_CASE("baseline: a regressed verdict and growth past the bound fail; new, gone and fixed do not") {
  auto summary = [](json programs) {
    return json{{"schema", "kgate.matrix-summary/1"}, {"programs", programs}};
  };
  auto cell = [](const char* verdict, long long insns) {
    return json{{"verdict", verdict}, {"insns_processed", insns}};
  };
  json a = summary(json::array({
      {{"object", "o"},
       {"name", "same"},
       {"entries", {{"e1", cell("pass", 100)}, {"e2", cell("pass", 100)}}}},
      {{"object", "o"}, {"name", "grows"}, {"entries", {{"e1", cell("pass", 100)}}}},
      {{"object", "o"}, {"name", "regresses"}, {"entries", {{"e1", cell("pass", 50)}}}},
      {{"object", "o"}, {"name", "fixed"}, {"entries", {{"e1", cell("fail", 10)}}}},
      {{"object", "o"}, {"name", "gone"}, {"entries", {{"e1", cell("pass", 5)}}}},
  }));
  json b = summary(json::array({
      {{"object", "o"},
       {"name", "same"},
       {"entries", {{"e1", cell("pass", 100)}, {"e2", cell("pass", 110)}}}},
      {{"object", "o"}, {"name", "grows"}, {"entries", {{"e1", cell("pass", 111)}}}},
      {{"object", "o"}, {"name", "regresses"}, {"entries", {{"e1", cell("fail", 50)}}}},
      {{"object", "o"}, {"name", "fixed"}, {"entries", {{"e1", cell("pass", 10)}, {"e3", cell("pass", 1)}}}},
      {{"object", "o"}, {"name", "new"}, {"entries", {{"e1", cell("pass", 7)}}}},
  }));
  auto c = compare_to_baseline(a, b, 10.0);
  std::map<std::string, std::string> change;
  for (const auto& r : c.rows) change[r.program + "@" + r.entry] = r.change;
  CHECK(change["o/same@e1"] == "same");
  CHECK(change["o/same@e2"] == "changed");  // +10%: at the bound, not past it
  CHECK(change["o/grows@e1"] == "grew");    // +11%
  CHECK(change["o/regresses@e1"] == "regressed");
  CHECK(change["o/fixed@e1"] == "fixed");
  CHECK(change["o/fixed@e3"] == "added");  // an entry one side has
  CHECK(change["o/new@e1"] == "added");
  CHECK(change["o/gone@e1"] == "removed");
  CHECK(c.failures == 2);
  CHECK(c.rows.back().program == "o/gone");  // the baseline's leftovers come last
  CHECK(compare_to_baseline(a, b, 20.0).failures == 1);
  const std::string t = baseline_table(c);
  CHECK(t.find(
            "o/grows      e1     pass         pass         100        111        +11 (+11.00%)  FAIL grew") !=
        std::string::npos);
  CHECK(baseline_markdown(c).find("| **FAIL regressed** |") != std::string::npos);
  json j = baseline_json(c);
  CHECK(j["failures"] == 2);
  CHECK(j["rows"].size() == c.rows.size());
  // Against itself nothing fails.
  CHECK(compare_to_baseline(b, b, 0).failures == 0);
}

TEST_CASE("markdown: the entry table and the program table, cells escaped") {
  MatrixRun run;
  EntryResult r;
  r.entry = {"a|b", "k", run::Lockdown::none, "x86_64"};
  r.verdict = FailureClass::gate_failed;
  r.message = "two\nlines";
  report::Receipt receipt;
  report::ProgramResult p;
  p.object = "gate";
  p.name = "p";
  p.verdict = "fail";
  p.reasons = {"did_not_fire", "records_missing"};
  receipt.programs = {p};
  r.receipt = receipt;
  run.results = {r};
  const std::string md = markdown(run);
  CHECK(md.starts_with("### kgate matrix: FAIL, 0 of 1 entries passed\n"));
  CHECK(md.find("| a\\|b | - | none | x86_64 | - | **FAIL** `gate_failed`: two lines |") !=
        std::string::npos);
  CHECK(md.find("| `gate/p` | **FAIL** did_not_fire, records_missing |") != std::string::npos);
  // A shard that holds no entry passes: the merge decides whether anything is missing.
  MatrixRun empty;
  CHECK(overall(empty) == FailureClass::no_verdict);
  empty.shard = Shard{3, 3};
  CHECK(overall(empty) == FailureClass::pass);
}

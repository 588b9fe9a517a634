#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "core/files.hpp"
#include "vm/console.hpp"

using namespace kgate::vm;

namespace {

// doctest evaluates a message even when the check passes (with -s), so it must be safe on success.
template <class R>
std::string why_not(const R& r) {
  return r ? std::string() : r.error().describe();
}

kgate::fs::path source_root() {
  if (const char* root = std::getenv("KGATE_SOURCE_ROOT"); root && *root) return root;
  return kgate::fs::path(__FILE__).parent_path() / ".." / "..";
}

const ConsolePatterns& shipped() {
  static const ConsolePatterns patterns = [] {
    auto p = load_console_patterns(source_root() / "kernels/console-patterns.json");
    REQUIRE_MESSAGE(p.has_value(), why_not(p));
    return *p;
  }();
  return patterns;
}

std::string fixture(const std::string& name) {
  auto text = kgate::read_file(source_root() / "tests/data/console" / name);
  REQUIRE_MESSAGE(text.has_value(), why_not(text));
  return *text;
}

using Found = std::vector<std::pair<std::string, size_t>>;

Found ids_and_lines(const std::vector<Splat>& splats) {
  Found out;
  for (const auto& s : splats) out.emplace_back(s.id, s.line_no);
  return out;
}

Found scan(std::string_view console, const ConsolePatterns& patterns = shipped()) {
  return ids_and_lines(find_splats(console, patterns));
}

std::string error_of(std::string_view text) {
  auto p = parse_console_patterns(text, "pat.json");
  REQUIRE_FALSE(p.has_value());
  CHECK(p.error().cls() == kgate::FailureClass::usage);
  return p.error().describe();
}

// A clean boot's lines, as a filler that must never match.
const char* boot_line = "[    0.842446] clocksource: Switched to clocksource tsc-early\r\n";

}  // namespace

TEST_CASE("the shipped pattern file parses and covers the reports kgate must not miss") {
  const auto& p = shipped();
  std::vector<std::string> ids;
  for (const auto& s : p.splats) ids.push_back(s.id);
  for (const char* want : {"panic",
                           "oops",
                           "warn",
                           "cut_here",
                           "kernel_bug_at",
                           "null_deref",
                           "page_fault",
                           "general_protection",
                           "lockdep",
                           "suspicious_rcu",
                           "rcu_stall",
                           "hung_task",
                           "soft_lockup",
                           "hard_lockup",
                           "kasan",
                           "ubsan",
                           "sleep_in_atomic",
                           "stack_protector",
                           "bug",
                           "warning"}) {
    CHECK_MESSAGE(std::find(ids.begin(), ids.end(), want) != ids.end(), want);
  }
  for (const auto& s : p.splats) CHECK_MESSAGE(!s.why.empty(), s.id);
  // The catch-alls come last, so that every specific pattern gets to name its line first.
  REQUIRE(p.splats.size() >= 2);
  CHECK(p.splats[p.splats.size() - 2].id == "bug");
  CHECK(p.splats.back().id == "warning");
}

TEST_CASE("a clean Debian 6.1 boot under TCG yields no splat") {
  std::string clean = fixture("clean-6.1.log");
  CHECK(scan(clean).empty());
  CHECK_FALSE(scan_console(clean).panic);
}

TEST_CASE("each console excerpt yields exactly its reports, at their lines") {
  struct Case {
    const char* file;
    Found want;
  };
  const Case cases[] = {
      // "cut here" and the WARNING line are one report, named by the WARNING line.
      {"warn.log", {{"warn", 6}, {"warn", 35}}},
      // The "Oops:" line belongs to the page-fault report; the panic after it is a report of its own.
      {"oops-panic.log", {{"page_fault", 3}, {"panic", 54}}},
      // An oops in PID 1 kills the agent: the kernel's report and the agent's end are both listed.
      {"oops-init.log", {{"null_deref", 3}, {"init_exited", 50}}},
      // BUG(): cut here, "kernel BUG at", 6.1's "invalid opcode:" die line: one report.
      {"bug-at.log", {{"kernel_bug_at", 3}, {"init_exited", 25}}},
      {"lockdep-circular.log", {{"lockdep", 4}}},
      // The kthread-starved line is part of the stall report.
      {"rcu-stall.log", {{"rcu_stall", 2}}},
      {"hung-task.log", {{"hung_task", 2}, {"hung_task", 19}}},
      {"soft-lockup.log", {{"soft_lockup", 2}, {"panic", 25}}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.file);
    CHECK(scan(fixture(c.file)) == c.want);
  }
}

TEST_CASE("a splat keeps its line, a WARN's own message and the lines after it") {
  auto warns = find_splats(fixture("warn.log"), shipped());
  REQUIRE(warns.size() == 2);
  const Splat& w = warns[0];
  CHECK(w.line ==
        "[    2.312391] WARNING: CPU: 0 PID: 1 at lib/refcount.c:28 refcount_warn_saturate+0xba/0x110");
  CHECK(w.lead_in == std::vector<std::string>{"[    2.312004] refcount_t: underflow; use-after-free."});
  // Its context ends where the next report's "cut here" begins, after the whole call trace.
  REQUIRE(w.context.size() == 27);
  CHECK(w.context.front().starts_with("[    2.312877] Modules linked in: virtio_console"));
  CHECK(w.context[14] == "[    2.318021] Call Trace:");
  CHECK(w.context.back() == "[    2.321071] ---[ end trace 0000000000000000 ]---");
  // The second WARN has no message; its context runs to the end of its report and stops at no header.
  CHECK(warns[1].lead_in.empty());
  CHECK(warns[1].context.size() == 7);

  auto oops = find_splats(fixture("oops-panic.log"), shipped());
  REQUIRE(oops.size() == 2);
  REQUIRE(oops[0].context.size() == kSplatContextLines);
  CHECK(oops[0].context[3] == "[    3.119302] Oops: 0003 [#1] PREEMPT SMP NOPTI");
  CHECK(oops[1].line == "[    3.132534] Kernel panic - not syncing: Fatal exception in interrupt");
  // The "---[ end Kernel panic" trailer is context, not a second panic: the match is anchored.
  CHECK(oops[1].context.back().ends_with(
      "---[ end Kernel panic - not syncing: Fatal exception in interrupt ]---"));

  auto bug = find_splats(fixture("bug-at.log"), shipped());
  REQUIRE(bug.size() == 2);
  CHECK(bug[0].lead_in.empty());
  CHECK(bug[0].context.front() == "[    2.641249] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI");

  auto rcu = find_splats(fixture("rcu-stall.log"), shipped());
  REQUIRE(rcu.size() == 1);
  CHECK(rcu[0].context[2].starts_with("[   23.402989] rcu: rcu_preempt kthread starved for 2601 jiffies!"));
}

TEST_CASE("lines are matched without timestamp, caller id or carriage return; prefixes are anchored") {
  CHECK(scan("Kernel panic - not syncing: VFS: Unable to mount root fs\n") == Found{{"panic", 1}});
  CHECK(scan("x\r\n[12345.678901] Kernel panic - not syncing: x\r\r\n") == Found{{"panic", 2}});
  CHECK(scan("[    1.000000][    T1] WARNING: CPU: 0 PID: 1 at a.c:1 f+0x1/0x2\n") == Found{{"warn", 1}});
  CHECK(scan("[    1.000000][    C0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [x:1]") ==
        Found{{"soft_lockup", 1}});
  // Mid-line, a prefix pattern does not match: the agent echoing a message, panic's own trailer.
  CHECK(scan("[    1.0] kgate-agent: saw Kernel panic - not syncing\n").empty());
  CHECK(scan("[    1.0] ---[ end Kernel panic - not syncing: Fatal exception ]---\n").empty());
  // A user-space fault is not a kernel report.
  CHECK(scan("[    1.0] traps: init[1] general protection fault ip:41e1b7 sp:7ffc error:0 in "
             "init[401000+b0000]\n")
            .empty());
  CHECK(
      scan("[    1.0] general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 "
           "[#1] PREEMPT SMP KASAN NOPTI\n") == Found{{"general_protection", 1}});
  CHECK(
      scan("[    1.0] Oops: general protection fault, probably for non-canonical address 0x1: 0000 [#1]\n") ==
      Found{{"general_protection", 1}});
  CHECK(scan("[    1.0] BUG: KASAN: slab-use-after-free in bpf_map_put+0x1a/0x60\n") == Found{{"kasan", 1}});
  CHECK(scan("[    1.0] UBSAN: array-index-out-of-bounds in kernel/bpf/core.c:1784:3\n") ==
        Found{{"ubsan", 1}});
  CHECK(scan("[    1.0] BUG: sleeping function called from invalid context at mm/slab.h:712\n") ==
        Found{{"sleep_in_atomic", 1}});
  CHECK(scan("[    1.0] BUG: using smp_processor_id() in preemptible [00000000] code: init/1\n") ==
        Found{{"bug", 1}});
  CHECK(scan("[    1.0] WARNING: suspicious RCU usage\n") == Found{{"suspicious_rcu", 1}});
  CHECK(scan("[    1.0] Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: "
             "f+0x1/0x2\n") == Found{{"stack_protector", 1}});
}

TEST_CASE("a follow-on line joins only an open report of the ids it names") {
  std::string gap;
  for (size_t i = 0; i < kSplatContextLines; ++i) gap += boot_line;
  // Past the report's context the Oops line stands alone.
  CHECK(scan("[ 1.0] BUG: kernel NULL pointer dereference, address: 0\n" + gap +
             "[ 1.0] Oops: 0000 [#1] SMP\n") == Found{{"null_deref", 1}, {"oops", kSplatContextLines + 2}});
  // After a report of another kind too.
  CHECK(scan("[ 1.0] INFO: task a:1 blocked for more than 120 seconds.\n[ 1.0] Oops: 0000 [#1] SMP\n") ==
        Found{{"hung_task", 1}, {"oops", 2}});
  CHECK(scan("[ 1.0] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n") == Found{{"invalid_opcode", 1}});
  // A report's context ends at the next header.
  auto two = find_splats(
      "[ 1.0] BUG: Bad page state in process init  pfn:01234\na\nb\n[ 1.0] UBSAN: shift\nc\n", shipped());
  REQUIRE(two.size() == 2);
  CHECK(two[0].context == std::vector<std::string>{"a", "b"});
  CHECK(two[1].context == std::vector<std::string>{"c"});
}

TEST_CASE("a 'cut here' that no report follows is reported as itself") {
  std::string lines;
  for (size_t i = 0; i < kSplatContextLines + 5; ++i) lines += boot_line;
  auto lone = find_splats("[ 1.0] ------------[ cut here ]------------\r\n" + lines, shipped());
  REQUIRE(lone.size() == 1);
  CHECK(lone[0].id == "cut_here");
  CHECK(lone[0].line_no == 1);
  CHECK(lone[0].context.size() == kSplatContextLines);
  CHECK(lone[0].lead_in.empty());
  // Two markers: the first had nothing after it, the second names a WARN.
  CHECK(scan("[ 1.0] ------------[ cut here ]------------\n[ 1.0] ------------[ cut here ]------------\n"
             "[ 1.0] WARNING: CPU: 0 PID: 1 at a.c:1 f\n") == Found{{"cut_here", 1}, {"warn", 3}});
  // At the end of the text.
  CHECK(scan("a\n[ 1.0] ------------[ cut here ]------------") == Found{{"cut_here", 2}});
}

TEST_CASE("allowlisted reports are skipped with their 'cut here'") {
  std::string text = R"({
    "schema": "kgate.console-patterns/1",
    "splats": [
      {"id": "cut_here", "match": "------------[ cut here ]------------", "prefix": true, "marker": true, "why": "w"},
      {"id": "warn", "match": "WARNING: CPU: ", "prefix": true, "why": "w"}
    ],
    "allow": [
      {"id": "refcount_test", "match": " at lib/refcount.c:28 ", "why": "only for this test"}
    ]
  })";
  auto p = parse_console_patterns(text, "test");
  REQUIRE_MESSAGE(p.has_value(), why_not(p));
  std::string warn = fixture("warn.log");
  CHECK(scan(warn, *p) == Found{{"warn", 35}});
  // The allow entry matches a line no report pattern matches: nothing changes for it.
  CHECK(scan("[ 1.0] note at lib/refcount.c:28 here\n[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f\n", *p) ==
        Found{{"warn", 2}});
  // The shipped list's allow entries, if any, leave every excerpt's reports in place (checked above);
  // each needs its reason.
  for (const auto& a : shipped().allow) CHECK_MESSAGE(!a.why.empty(), a.id);
}

TEST_CASE("malformed pattern files are refused with a message that says what and where") {
  const std::string head = R"({"schema": "kgate.console-patterns/1", "splats": [)";
  auto with = [&](const std::string& splat, const std::string& rest = "") {
    return head + splat + "]" + rest + "}";
  };
  const std::string ok = R"({"id": "panic", "match": "Kernel panic", "prefix": true, "why": "w"})";
  REQUIRE(parse_console_patterns(with(ok), "pat.json").has_value());
  REQUIRE(
      parse_console_patterns(with(ok, R"(, "allow": [], "comment": ["a", "b"])"), "pat.json").has_value());

  CHECK(error_of("{") == "pat.json: not valid JSON");
  CHECK(error_of("[]") == "pat.json: must be a JSON object");
  CHECK(error_of(R"({"schema": "kgate.console-patterns/2", "splats": []})") ==
        "pat.json: schema 'kgate.console-patterns/2' is not kgate.console-patterns/1");
  CHECK(error_of(R"({"splats": []})") == "pat.json: missing 'schema'");
  CHECK(error_of(R"({"schema": "kgate.console-patterns/1", "splats": [], "alow": []})") ==
        "pat.json: unknown key 'alow'");
  CHECK(error_of(R"({"schema": "kgate.console-patterns/1"})") == "pat.json: missing 'splats'");
  CHECK(error_of(with("")) == "pat.json: 'splats' must be a non-empty array");
  CHECK(error_of(with(ok, R"(, "allow": {})")) == "pat.json: 'allow' must be an array");
  CHECK(error_of(with(ok, R"(, "comment": 3)")) ==
        "pat.json: 'comment' must be a string or an array of strings");
  CHECK(error_of(with("3")) == "pat.json: splats[0]: must be an object");
  CHECK(error_of(with(R"({"id": "panic", "match": "K", "prefx": true, "why": "w"})")) ==
        "pat.json: splats[0]: unknown key 'prefx'");
  CHECK(error_of(with(R"({"match": "K", "why": "w"})")) == "pat.json: splats[0]: missing 'id'");
  CHECK(error_of(with(R"({"id": "Panic!", "match": "K", "why": "w"})")) ==
        "pat.json: splats[0]: id 'Panic!' must be 1 to 64 of [a-z0-9_]");
  CHECK(error_of(with(R"({"id": "panic", "match": "", "why": "w"})")) ==
        "pat.json: splats[0] (panic): 'match' must be a non-empty string");
  CHECK(error_of(with(R"({"id": "panic", "match": "a\nb", "why": "w"})")) ==
        "pat.json: splats[0] (panic): 'match' must be one line of at most 2048 bytes");
  CHECK(error_of(with(R"({"id": "panic", "match": "K", "prefix": "yes", "why": "w"})")) ==
        "pat.json: splats[0] (panic): 'prefix' must be true or false");
  CHECK(error_of(with(R"({"id": "panic", "match": "K"})")) == "pat.json: splats[0] (panic): missing 'why'");
  CHECK(
      error_of(with(ok + "," + R"({"id": "panic2", "match": "Kernel panic", "prefix": true, "why": "w"})")) ==
      "pat.json: splats[1] (panic2): match 'Kernel panic' repeats that of panic");
  CHECK(error_of(with(R"({"id": "oops", "match": "Oops: ", "part_of": ["nope"], "why": "w"})")) ==
        "pat.json: oops: 'part_of' names 'nope', which no report pattern has");
  CHECK(error_of(with(R"({"id": "oops", "match": "Oops: ", "part_of": [], "why": "w"})")) ==
        "pat.json: splats[0] (oops): 'part_of' must be a non-empty array of ids");
  CHECK(error_of(with(R"({"id": "c", "match": "cut", "marker": true, "part_of": ["c"], "why": "w"})")) ==
        "pat.json: splats[0] (c): a marker cannot be 'part_of' a report");
  CHECK(error_of(with(ok + "," + R"({"id": "c", "match": "cut", "marker": true, "why": "w"})" + "," +
                      R"({"id": "o", "match": "O", "part_of": ["c"], "why": "w"})")) ==
        "pat.json: o: 'part_of' names 'c', which no report pattern has");
  // Allow entries take neither marker nor part_of, and their ids do not repeat.
  CHECK(error_of(with(ok, R"(, "allow": [{"id": "a", "match": "x", "marker": true, "why": "w"}])")) ==
        "pat.json: allow[0]: unknown key 'marker'");
  CHECK(error_of(with(ok, R"(, "allow": [{"id": "a", "match": "x", "why": "w"}, )"
                          R"({"id": "a", "match": "y", "why": "w"}])")) ==
        "pat.json: allow[1]: id 'a' repeats");

  auto missing = load_console_patterns("/nonexistent/console-patterns.json");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().cls() == kgate::FailureClass::usage);
  CHECK(missing.error().describe().starts_with("read console patterns: "));
}

TEST_CASE("a 20 MB console is scanned in one linear pass") {
  const std::string clean = fixture("clean-6.1.log");
  const std::string warn = fixture("warn.log");
  std::string big;
  big.reserve(21 << 20);
  size_t copies = 0;
  while (big.size() < (20u << 20)) {
    big += clean;
    if (++copies % 100 == 0) big += warn;
  }
  size_t warn_copies = copies / 100;
  auto start = std::chrono::steady_clock::now();
  auto splats = find_splats(big, shipped());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  MESSAGE("find_splats: " << big.size() / (1 << 20) << " MiB, " << splats.size() << " splats in "
                          << ms.count() << " ms");
  CHECK(splats.size() == 2 * warn_copies);
  for (const auto& s : splats) CHECK(s.id == "warn");

  // One 4 MiB line without a newline: matched up to kMaxConsoleLineBytes, kept no longer.
  std::string junk(4u << 20, 'x');
  junk.replace(0, 28, "Kernel panic - not syncing: ");
  auto one = find_splats(junk, shipped());
  REQUIRE(one.size() == 1);
  CHECK(one[0].line.size() == kMaxConsoleLineBytes);
}

TEST_CASE("a WARN storm is listed up to kMaxSplats") {
  std::string storm;
  for (size_t i = 0; i < kMaxSplats + 500; ++i) storm += "[ 1.0] WARNING: CPU: 0 PID: 1 at a.c:1 f\ntrace\n";
  auto splats = find_splats(storm, shipped());
  REQUIRE(splats.size() == kMaxSplats);
  CHECK(splats.back().line_no == 2 * kMaxSplats - 1);
  CHECK(splats.back().context == std::vector<std::string>{"trace"});
}

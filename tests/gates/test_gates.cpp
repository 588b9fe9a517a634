// The gate executor run for real: the kgate binary, real processes, real signals. Each
// case writes its own pipeline into a temporary directory.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/files.hpp"
#include "core/strings.hpp"
#include "core/subprocess.hpp"

using namespace kgate;
using nlohmann::json;

namespace {

fs::path kgate_binary() {
  const char* root = std::getenv("KGATE_BUILD_ROOT");
  return fs::path(root ? root : ".") / "kgate";
}
fs::path source_root() {
  const char* env = std::getenv("KGATE_SOURCE_ROOT");
  return env ? env : std::string(__FILE__).substr(0, std::string(__FILE__).rfind("/tests/"));
}

struct GatesRun {
  int exit_code = -1;
  std::string out, err;
  json summary;  // null when none was written
};

TempDir make_tmp() {
  auto t = TempDir::create("kgate-gates-test");
  REQUIRE_MESSAGE(t.has_value(), t.error().describe());
  return std::move(*t);
}

int exit_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs `kgate gates run` on `file`, output in `out`, with the test's own runtime dir so
// concurrency groups stay apart from any other run on the machine.
std::vector<std::string> gates_argv(const fs::path& file, const fs::path& out,
                                    std::vector<std::string> extra) {
  std::vector<std::string> argv = {kgate_binary().string(), "gates", "run",
                                   file.string(),           "--out", out.string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

GatesRun run_gates(const fs::path& file, const fs::path& out, std::vector<std::string> extra = {}) {
  GatesRun r;
  auto cap = run_capture(gates_argv(file, out, std::move(extra)), Deadline(std::chrono::minutes(2)));
  REQUIRE_MESSAGE(cap.has_value(), cap.error().describe());
  r.exit_code = exit_of(cap->status);
  r.out = cap->out;
  r.err = cap->err;
  if (auto text = read_file(out / "verify-all-summary.json")) r.summary = json::parse(*text, nullptr, false);
  return r;
}

fs::path write_pipeline(const fs::path& dir, const std::string& gates) {
  fs::path file = dir / "gates.json";
  REQUIRE(write_file_atomic(file, R"({"schema": "kgate.gates/1", "gates": [)" + gates + "]}\n").has_value());
  return file;
}

const json& gate_of(const json& summary, const std::string& name) {
  for (const auto& g : summary["gates"]) {
    if (g["name"] == name) return g;
  }
  FAIL("no gate " << name << " in the receipt");
  static json none;
  return none;
}

std::string last_line(const std::string& text) {
  auto lines = split_lines(text);
  return lines.empty() ? "" : std::string(lines.back());
}

// Waits until a file the gate writes exists and holds a pid.
pid_t wait_for_pid_file(const fs::path& file, std::chrono::seconds limit = std::chrono::seconds(20)) {
  Deadline d(limit);
  while (!d.expired()) {
    if (auto text = read_file(file); text && !text->empty() && text->back() == '\n')
      return std::atoi(text->c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("no pid in " << file.string());
  return 0;
}

// Whether a live process (not a zombie waiting for its new parent to reap it) is in the
// process group: /proc/<pid>/stat's state and pgrp fields.
bool group_alive(pid_t pgid) {
  for (const auto& ent : fs::directory_iterator("/proc")) {
    const std::string name = ent.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto stat = read_proc_stat(static_cast<pid_t>(std::stol(name)));
    if (stat && stat->pgrp == pgid && stat->state != 'Z') return true;
  }
  return false;
}
// A process SIGKILLed a moment ago may not have been scheduled to die yet: poll a while.
bool group_gone(pid_t pgid) {
  Deadline d(std::chrono::seconds(5));
  while (group_alive(pgid)) {
    if (d.expired()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// Sets $XDG_RUNTIME_DIR for the test's kgate runs (their concurrency groups stay apart from
// any other run on the machine), and unsets it however the test ends.
struct RuntimeDir {
  explicit RuntimeDir(const fs::path& dir) {
    REQUIRE(make_dirs(dir).has_value());
    ::setenv("XDG_RUNTIME_DIR", dir.c_str(), 1);
  }
  ~RuntimeDir() { ::unsetenv("XDG_RUNTIME_DIR"); }
  RuntimeDir(const RuntimeDir&) = delete;
  RuntimeDir& operator=(const RuntimeDir&) = delete;
};

bool process_alive(pid_t pid) {
  auto stat = read_proc_stat(pid);
  return stat && stat->state != 'Z';
}

// Starts, in the background, a run holding concurrency group `key` with one gate `name`
// running `command` (in `dir`): name.json, its output in name-out/, name.stdout and .stderr.
Child start_group_run(const fs::path& dir, const std::string& name, const std::string& command,
                      const std::string& key) {
  const fs::path file = dir / (name + ".json");
  json doc = {{"schema", "kgate.gates/1"},
              {"gates", json::array({{{"name", name}, {"command", {"sh", "-c", command}}}})}};
  REQUIRE(write_file_atomic(file, doc.dump()).has_value());
  auto child = Child::spawn(gates_argv(file, dir / (name + "-out"), {"--concurrency-group", key}),
                            {dir / (name + ".stdout"), dir / (name + ".stderr"), {}});
  REQUIRE_MESSAGE(child.has_value(), child.error().describe());
  return std::move(*child);
}

// The receipt with everything that changes from run to run replaced, for the golden file.
json normalised(json s) {
  for (const char* k : {"started_at", "ended_at", "wall_s", "kgate_version", "gates_file"}) s[k] = "<varies>";
  s["host"] = "<varies>";
  s["git"] = "<varies>";
  for (auto& g : s["gates"]) {
    for (const char* k : {"start_s", "duration_s"}) {
      if (!g[k].is_null()) g[k] = "<varies>";
    }
  }
  return s;
}

// The pipeline behind the golden receipt: every status and both sides of expect.
const char* const outcome_gates = R"(
  {"name": "ok", "command": ["sh", "-c", "echo all good"]},
  {"name": "bad", "command": ["sh", "-c", "echo line one; echo the reason it failed >&2; exit 3"]},
  {"name": "slow", "command": ["sh", "-c", "echo $$ > slow.pgid; sleep 30"], "timeout_s": 2},
  {"name": "after-bad", "command": ["sh", "-c", "touch after-bad.ran"], "needs": ["bad"]},
  {"name": "after-skip", "command": ["true"], "needs": ["after-bad"]},
  {"name": "umbrella", "command": ["sh", "-c", "echo umbrella ran"], "needs": ["bad", "ok", "slow"], "always": true},
  {"name": "refused", "command": ["sh", "-c", "exit 1"], "expect": "fail"},
  {"name": "vacuous", "command": ["true"], "expect": "fail"},
  {"name": "refused-so", "command": ["sh", "-c", "exit 7"], "expect": "fail", "expect_exit": [7]},
  {"name": "refused-otherwise", "command": ["sh", "-c", "exit 2"], "expect": "fail", "expect_exit": [7]},
  {"name": "crashes", "command": ["sh", "-c", "kill -SEGV $$"], "expect": "fail"},
  {"name": "missing", "command": ["no-such-program-kgate-test"]},
  {"name": "after-ok", "command": ["true"], "needs": ["ok"]}
)";

}  // namespace

TEST_CASE("a DAG with passing, failing, timing-out, skipped, always-run and expect=fail gates") {
  TempDir tmp = make_tmp();
  fs::path file = write_pipeline(tmp.path(), outcome_gates);
  // Commands run in the gates file's directory.
  auto r = run_gates(file, tmp.path() / "out", {"-j", "3"});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  REQUIRE(r.summary.is_object());
  const json& s = r.summary;
  auto status = [&](const char* name) { return gate_of(s, name)["status"].get<std::string>(); };
  CHECK(status("ok") == "passed");
  CHECK(status("after-ok") == "passed");
  CHECK(status("bad") == "failed");
  CHECK(gate_of(s, "bad")["exit_code"] == 3);
  CHECK(gate_of(s, "bad")["reason"] == "exited with 3");
  CHECK(status("slow") == "timed_out");
  CHECK(status("after-bad") == "skipped");
  CHECK(gate_of(s, "after-bad")["reason"] == "needs bad (failed)");
  CHECK(gate_of(s, "after-bad")["exit_code"].is_null());
  CHECK(gate_of(s, "after-bad")["log"].is_null());
  CHECK_FALSE(path_exists(tmp.path() / "after-bad.ran"));
  CHECK(status("after-skip") == "skipped");
  CHECK(gate_of(s, "after-skip")["reason"] == "needs after-bad (skipped)");
  CHECK(status("umbrella") == "passed");
  CHECK(status("refused") == "passed");
  CHECK(gate_of(s, "refused")["reason"] == "failed as expected (exited with 1)");
  CHECK(status("refused-so") == "passed");
  CHECK(status("refused-otherwise") == "failed");
  CHECK(gate_of(s, "refused-otherwise")["reason"] ==
        "expected to fail with exit code 7, but it exited with 2");
  CHECK(status("vacuous") == "failed");
  CHECK(gate_of(s, "vacuous")["reason"] == "expected to fail, but it passed");
  CHECK(status("crashes") == "failed");
  CHECK(status("missing") == "failed");
  CHECK(gate_of(s, "missing")["reason"].get<std::string>().find("cannot start") != std::string::npos);
  CHECK(s["non_green"] == json({"bad", "slow", "after-bad", "after-skip", "vacuous", "refused-otherwise",
                                "crashes", "missing"}));
  CHECK(s["counts"]["passed"] == 5);
  CHECK(s["counts"]["failed"] == 5);
  CHECK(s["counts"]["skipped"] == 2);
  CHECK(s["counts"]["timed_out"] == 1);
  CHECK(s["verdict"] == "fail");
  // The closing line is the last line, alone, and counts every non-green gate.
  CHECK(last_line(r.out) == "verify-all: 5 passed, 8 failed");
  // Each gate's output is in its own log; a failure shows its last lines.
  auto bad_log = read_file(tmp.path() / "out" / gate_of(s, "bad")["log"].get<std::string>());
  REQUIRE(bad_log.has_value());
  CHECK(*bad_log == "line one\nthe reason it failed\n");
  CHECK(r.err.find("  | the reason it failed") != std::string::npos);
  // The timed-out gate was stopped promptly, its whole process group with it.
  CHECK(gate_of(s, "slow")["duration_s"].get<double>() < 8);
  pid_t slow = wait_for_pid_file(tmp.path() / "slow.pgid");
  CHECK(group_gone(slow));
  // The JUnit file and the Markdown summary are written beside it.
  auto junit = read_file(tmp.path() / "out" / "verify-all.junit.xml");
  REQUIRE(junit.has_value());
  CHECK(junit->find("tests=\"13\" failures=\"6\" errors=\"0\" skipped=\"2\"") != std::string::npos);
  CHECK(junit->find("<failure type=\"timed_out\"") != std::string::npos);
  auto md = read_file(tmp.path() / "out" / "verify-all-summary.md");
  REQUIRE(md.has_value());
  CHECK(md->find("## kgate verify-all: 5 passed, 8 failed") == 0);
  CHECK(md->find("| bad | ❌ failed |") != std::string::npos);

  // The golden receipt, times and host normalised (KGATE_UPDATE_GOLDEN=1 rewrites it).
  const fs::path golden = source_root() / "tests/data/golden/verify-all-summary.json";
  const std::string got = normalised(s).dump(2) + "\n";
  if (const char* u = std::getenv("KGATE_UPDATE_GOLDEN"); u && std::string(u) == "1") {
    REQUIRE(write_file_atomic(golden, got).has_value());
  }
  auto want = read_file(golden);
  REQUIRE_MESSAGE(want.has_value(), "missing golden file; KGATE_UPDATE_GOLDEN=1 writes it");
  CHECK(got == *want);
}

TEST_CASE("an all-green pipeline exits 0 and says so on its last line") {
  TempDir tmp = make_tmp();
  fs::path file = write_pipeline(
      tmp.path(),
      R"({"name": "a", "command": ["true"]}, {"name": "b", "command": ["true"], "needs": ["a"]})");
  auto r = run_gates(file, tmp.path() / "out");
  CHECK(r.exit_code == 0);
  CHECK(last_line(r.out) == "verify-all: 2 passed, 0 failed");
  REQUIRE(r.summary.is_object());
  CHECK(r.summary["verdict"] == "pass");
  CHECK(r.summary["non_green"] == json::array());
}

TEST_CASE("at most -j gates run at once") {
  TempDir tmp = make_tmp();
  std::string gates;
  for (int i = 0; i < 5; ++i)
    gates += strprintf("%s{\"name\": \"g%d\", \"command\": [\"sleep\", \"0.4\"]}", i ? "," : "", i);
  auto r = run_gates(write_pipeline(tmp.path(), gates), tmp.path() / "out", {"-j", "2"});
  CHECK(r.exit_code == 0);
  REQUIRE(r.summary.is_object());
  // At each gate's start, count the gates running: never more than two.
  for (const auto& a : r.summary["gates"]) {
    double t = a["start_s"].get<double>() + 0.05;
    int running = 0;
    for (const auto& b : r.summary["gates"]) {
      double s0 = b["start_s"].get<double>();
      running += s0 <= t && t < s0 + b["duration_s"].get<double>();
    }
    CHECK(running <= 2);
  }
  CHECK(r.summary["wall_s"].get<double>() >= 1.2);  // five 0.4 s gates two at a time: three rounds
}

TEST_CASE("a gate's processes end with it, even those it left running") {
  TempDir tmp = make_tmp();
  auto r = run_gates(
      write_pipeline(tmp.path(),
                     R"({"name": "leaves", "command": ["sh", "-c", "sleep 300 & echo $! > left.pid"]})"),
      tmp.path() / "out");
  CHECK(r.exit_code == 0);
  pid_t left = wait_for_pid_file(tmp.path() / "left.pid");
  Deadline d(std::chrono::seconds(5));
  while (process_alive(left) && !d.expired()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_FALSE(process_alive(left));
}

TEST_CASE("SIGINT and SIGTERM cancel the run: process groups killed, receipt written with them cancelled") {
  for (int sig : {SIGINT, SIGTERM}) {
    CAPTURE(sig);
    TempDir tmp = make_tmp();
    fs::path file = write_pipeline(tmp.path(), R"(
      {"name": "one", "command": ["sh", "-c", "sleep 300 & sleep 300 & echo $$ > one.pgid; wait"]},
      {"name": "two", "command": ["sh", "-c", "trap '' TERM; echo $$ > two.pgid; sleep 300"]},
      {"name": "later", "command": ["true"], "needs": ["one"]})");
    const fs::path out = tmp.path() / "out";
    auto child =
        Child::spawn(gates_argv(file, out, {"-j", "2"}), {tmp.path() / "stdout", tmp.path() / "stderr", {}});
    REQUIRE(child.has_value());
    pid_t one = wait_for_pid_file(tmp.path() / "one.pgid");
    pid_t two = wait_for_pid_file(tmp.path() / "two.pgid");
    ::kill(child->pid(), sig);
    // "two" ignores SIGTERM: it is killed after the 5 s grace.
    auto st = child->wait(Deadline(std::chrono::seconds(20)), false);
    REQUIRE(st.has_value());
    CHECK(exit_of(*st) == 130);
    CHECK(group_gone(one));
    CHECK(group_gone(two));
    auto text = read_file(out / "verify-all-summary.json");
    REQUIRE(text.has_value());
    json s = json::parse(*text);
    CHECK(s["cancelled"] == true);
    CHECK(s["cancel_reason"] == (sig == SIGINT ? "SIGINT" : "SIGTERM"));
    CHECK(gate_of(s, "one")["status"] == "cancelled");
    CHECK(gate_of(s, "two")["status"] == "cancelled");
    CHECK(gate_of(s, "later")["status"] == "cancelled");
    CHECK(gate_of(s, "later")["reason"] == "cancelled before it started");
    CHECK(s["non_green"] == json({"one", "two", "later"}));
    auto stdout_text = read_file(tmp.path() / "stdout");
    REQUIRE(stdout_text.has_value());
    CHECK(last_line(*stdout_text) == "verify-all: 0 passed, 3 failed");
  }
}

TEST_CASE("concurrency group: a newer run with the same key cancels the older one") {
  TempDir tmp = make_tmp();
  const fs::path runtime = tmp.path() / "runtime";
  RuntimeDir runtime_dir(runtime);
  auto older = start_group_run(tmp.path(), "long", "echo $$ > long.pgid; sleep 300", "refs/heads/main");
  pid_t long_pgid = wait_for_pid_file(tmp.path() / "long.pgid");
  // Another key does not touch it.
  fs::path quick = write_pipeline(tmp.path(), R"({"name": "quick", "command": ["true"]})");
  auto other = run_gates(quick, tmp.path() / "other-out", {"--concurrency-group", "refs/heads/other"});
  CHECK(other.exit_code == 0);
  CHECK_FALSE(older.try_wait().has_value());
  // The same key cancels it, and then runs.
  auto newer = run_gates(quick, tmp.path() / "new-out", {"--concurrency-group", "refs/heads/main"});
  CHECK(newer.exit_code == 0);
  auto st = older.wait(Deadline(std::chrono::seconds(20)), false);
  REQUIRE(st.has_value());
  CHECK(exit_of(*st) == 130);
  CHECK(group_gone(long_pgid));
  auto text = read_file(tmp.path() / "long-out" / "verify-all-summary.json");
  REQUIRE(text.has_value());
  json s = json::parse(*text);
  CHECK(s["cancelled"] == true);
  CHECK(s["cancel_reason"].get<std::string>().find(
            "superseded by a newer run of concurrency group 'refs/heads/main'") == 0);
  CHECK(gate_of(s, "long")["status"] == "cancelled");
}

TEST_CASE("a bad gates file runs nothing and exits with the usage code") {
  TempDir tmp = make_tmp();
  fs::path file = write_pipeline(tmp.path(), R"(
    {"name": "would-run", "command": ["touch", "ran"]},
    {"name": "broken", "command": ["true"], "needs": ["nothing-of-that-name"]})");
  auto r = run_gates(file, tmp.path() / "out");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("gates[1] \"broken\" (line 3): needs[0]: no gate is named \"nothing-of-that-name\"") !=
        std::string::npos);
  CHECK_FALSE(path_exists(tmp.path() / "ran"));
  CHECK_FALSE(path_exists(tmp.path() / "out"));
  // The file's error, alone: the command line was right, so no usage text after it.
  CHECK(r.err.find("usage: kgate") == std::string::npos);
  auto missing = run_gates(tmp.path() / "no-such-gates.json", tmp.path() / "out");
  CHECK(missing.exit_code == 2);
  CHECK(missing.err.find("no-such-gates.json") != std::string::npos);
  CHECK(missing.err.find("usage: kgate") == std::string::npos);
  // A value that does not parse is named with its option, in either spelling.
  for (const auto& extra :
       std::vector<std::vector<std::string>>{{"--jobs", "nan"}, {"--jobs=nan"}, {"-j", "nan"}}) {
    auto bad = run_gates(file, tmp.path() / "out", extra);
    CHECK(bad.exit_code == 2);
    CHECK_MESSAGE(bad.err.find("kgate: " + extra[0].substr(0, extra[0].find('=')) +
                               ": 'nan' is not a valid value") != std::string::npos,
                  bad.err);
  }
}

TEST_CASE("--list, --dry-run and --only") {
  TempDir tmp = make_tmp();
  fs::path file = write_pipeline(tmp.path(), R"(
    {"name": "test", "command": ["touch", "test.ran"], "needs": ["build"]},
    {"name": "build", "command": ["touch", "build.ran"], "env": {"CC": "gcc -O2"}},
    {"name": "docs", "command": ["touch", "docs.ran"]})");
  auto list = run_capture({kgate_binary().string(), "gates", "run", file.string(), "--list"},
                          Deadline(std::chrono::seconds(30)));
  REQUIRE(list.has_value());
  CHECK(exit_of(list->status) == 0);
  CHECK(list->out == "build\ntest  needs build\ndocs\n");
  auto dry =
      run_capture({kgate_binary().string(), "gates", "run", file.string(), "--dry-run", "--only", "test"},
                  Deadline(std::chrono::seconds(30)));
  REQUIRE(dry.has_value());
  CHECK(exit_of(dry->status) == 0);
  CHECK(dry->out.find("would run 2 gates") != std::string::npos);
  CHECK(dry->out.find("CC='gcc -O2' touch build.ran") != std::string::npos);
  CHECK(dry->out.find("docs") == std::string::npos);
  for (const char* f : {"build.ran", "test.ran", "docs.ran"}) CHECK_FALSE(path_exists(tmp.path() / f));
  auto only = run_gates(file, tmp.path() / "out", {"--only", "test"});
  CHECK(only.exit_code == 0);
  CHECK(path_exists(tmp.path() / "build.ran"));
  CHECK(path_exists(tmp.path() / "test.ran"));
  CHECK_FALSE(path_exists(tmp.path() / "docs.ran"));
  REQUIRE(only.summary.is_object());
  CHECK(only.summary["gates"].size() == 2);
  CHECK(only.summary["only"] == json({"test"}));
}

TEST_CASE("an ebpf-matrix gate whose entries select nothing fails with the reason") {
  TempDir tmp = make_tmp();
  fs::path file = write_pipeline(
      tmp.path(), R"({"name": "kernels", "kind": "ebpf-matrix", "entries": "no-such-entry*"})");
  auto r =
      run_gates(file, tmp.path() / "out", {"--matrix", (source_root() / "kernels/matrix.json").string()});
  CHECK(r.exit_code == 1);
  REQUIRE(r.summary.is_object());
  CHECK(gate_of(r.summary, "kernels")["status"] == "failed");
  CHECK(gate_of(r.summary, "kernels")["reason"].get<std::string>().find("no-such-entry*") !=
        std::string::npos);
}

TEST_CASE("a run interrupted while it waits for its concurrency group still writes its receipt") {
  TempDir tmp = make_tmp();
  const fs::path runtime = tmp.path() / "runtime";
  RuntimeDir runtime_dir(runtime);
  // The older run's gate ignores SIGTERM, so the older run takes its 5 s grace to end.
  auto older = start_group_run(tmp.path(), "old", "trap '' TERM; echo $$ > stubborn.pgid; sleep 300", "k");
  pid_t stubborn = wait_for_pid_file(tmp.path() / "stubborn.pgid");
  fs::path quick = write_pipeline(tmp.path(), R"({"name": "quick", "command": ["touch", "quick.ran"]})");
  auto newer = Child::spawn(gates_argv(quick, tmp.path() / "new-out", {"--concurrency-group", "k"}),
                            {tmp.path() / "new.stdout", tmp.path() / "new.stderr", {}});
  REQUIRE(newer.has_value());
  // The newer run leaves the older a note before it signals it, then waits: interrupt it then.
  Deadline noted(std::chrono::seconds(20));
  auto has_note = [&] {
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(runtime, ec))
      if (e.path().extension() == ".superseded") return true;
    return false;
  };
  while (!has_note() && !noted.expired()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(has_note());
  ::kill(newer->pid(), SIGINT);
  auto st = newer->wait(Deadline(std::chrono::seconds(10)), false);
  REQUIRE(st.has_value());
  CHECK(exit_of(*st) == 130);
  CHECK_FALSE(path_exists(tmp.path() / "quick.ran"));
  auto text = read_file(tmp.path() / "new-out" / "verify-all-summary.json");
  REQUIRE(text.has_value());
  json s = json::parse(*text);
  CHECK(s["cancelled"] == true);
  CHECK(s["cancel_reason"].get<std::string>().find("interrupted while waiting") != std::string::npos);
  CHECK(gate_of(s, "quick")["status"] == "cancelled");
  auto stdout_text = read_file(tmp.path() / "new.stdout");
  REQUIRE(stdout_text.has_value());
  CHECK(last_line(*stdout_text) == "verify-all: 0 passed, 1 failed");
  // The older run was still told to stop, and ends with its stubborn gate killed.
  auto old_st = older.wait(Deadline(std::chrono::seconds(20)), false);
  REQUIRE(old_st.has_value());
  CHECK(exit_of(*old_st) == 130);
  CHECK(group_gone(stubborn));
}

TEST_CASE(
    "concurrency group: when the holder changes while a run waits, the newest holder is cancelled too") {
  TempDir tmp = make_tmp();
  RuntimeDir runtime_dir(tmp.path() / "runtime");
  // A holds the group; its gate ignores SIGTERM, so A takes its 5 s grace to end, and B and C
  // both tell A to stop while it does. One of them gets the group next; the other must then
  // tell that one to stop, and run.
  auto a = start_group_run(tmp.path(), "a", "trap '' TERM; echo $$ > a.pgid; sleep 300", "g");
  wait_for_pid_file(tmp.path() / "a.pgid");
  std::vector<Child> waiting;
  for (const char* name : {"b", "c"}) {
    waiting.push_back(start_group_run(tmp.path(), name, strprintf("sleep 2; touch %s.done", name), "g"));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::vector<int> codes;
  for (auto& c : waiting) {
    auto st = c.wait(Deadline(std::chrono::seconds(60)), false);
    REQUIRE(st.has_value());
    codes.push_back(exit_of(*st));
  }
  auto a_st = a.wait(Deadline(std::chrono::seconds(20)), false);
  REQUIRE(a_st.has_value());
  CHECK(exit_of(*a_st) == 130);
  // One of B and C ran to the end; the other was cancelled by it, and says so.
  std::sort(codes.begin(), codes.end());
  CHECK(codes == std::vector<int>{0, 130});
  const bool b_done = path_exists(tmp.path() / "b.done"), c_done = path_exists(tmp.path() / "c.done");
  CHECK(b_done != c_done);
  json cancelled = json::parse(
      read_file(tmp.path() / (b_done ? "c-out" : "b-out") / "verify-all-summary.json").value_or("null"),
      nullptr, false);
  REQUIRE(cancelled.is_object());
  CHECK(cancelled["cancel_reason"].get<std::string>().find("superseded by a newer run") == 0);
}

TEST_CASE("a daemon that leaves its gate's process group is stopped when the run ends") {
  TempDir tmp = make_tmp();
  auto r = run_gates(write_pipeline(tmp.path(), R"(
    {"name": "starts-daemon", "command": ["sh", "-c", "setsid sleep 300 & echo $! > daemon.pid"]},
    {"name": "after", "command": ["sleep", "0.2"], "needs": ["starts-daemon"]})"),
                     tmp.path() / "out");
  CHECK(r.exit_code == 0);
  pid_t daemon = wait_for_pid_file(tmp.path() / "daemon.pid");
  CHECK_FALSE(process_alive(daemon));
}

TEST_CASE("a gate's own PATH finds its program, relative entries from the gate's directory") {
  TempDir tmp = make_tmp();
  REQUIRE(make_dirs(tmp.path() / "bin").has_value());
  REQUIRE(write_file_atomic(tmp.path() / "bin" / "mytool", "#!/bin/sh\necho mytool ran\n").has_value());
  fs::permissions(tmp.path() / "bin" / "mytool", fs::perms::owner_all);
  auto r = run_gates(write_pipeline(tmp.path(), R"(
    {"name": "relative", "command": ["mytool"], "env": {"PATH": "bin:/usr/bin:/bin"}},
    {"name": "not-there", "command": ["ls"], "env": {"PATH": "nowhere"}})"),
                     tmp.path() / "out");
  CHECK(r.exit_code == 1);
  REQUIRE(r.summary.is_object());
  CHECK(gate_of(r.summary, "relative")["status"] == "passed");
  CHECK(read_file(tmp.path() / "out" / "logs" / "relative.log").value_or("") == "mytool ran\n");
  // Not on the gate's PATH is a failure, never a fallback to kgate's own PATH.
  CHECK(gate_of(r.summary, "not-there")["status"] == "failed");
  CHECK(gate_of(r.summary, "not-there")["reason"] ==
        "cannot start: 'ls' is not on the gate's PATH (nowhere)");
}

TEST_CASE("a gate's log is capped: its head and tail are kept, the receipt says how much was dropped") {
  TempDir tmp = make_tmp();
  // 3,000,000 bytes of "y\n", then a last line, against a limit of 1 MiB; and one line of
  // 3,000,000 bytes with no newline at all.
  fs::path file = write_pipeline(
      tmp.path(),
      R"({"name": "chatty", "command": ["sh", "-c", "yes | head -c 3000000; echo last-line; exit 3"],
          "log_limit_mb": 1},
         {"name": "one-line", "command": ["sh", "-c", "printf start; head -c 3000000 /dev/zero | tr '\\000' x; exit 4"],
          "log_limit_mb": 1},
         {"name": "small", "command": ["echo", "hello"]})");
  fs::path out = tmp.path() / "out";
  GatesRun r = run_gates(file, out);
  CHECK(r.exit_code == 1);
  REQUIRE(r.summary.is_object());
  const std::uint64_t limit = 1 << 20;

  const json& chatty = gate_of(r.summary, "chatty");
  CHECK(chatty["status"] == "failed");
  CHECK(chatty["log_bytes"] == 3000000 + 10);
  CHECK(chatty["log_dropped_bytes"] == 3000000 + 10 - limit);
  CHECK(chatty["log_limit_bytes"] == limit);
  std::string log = read_file(out / "logs" / "chatty.log").value_or("");
  CHECK(log.size() <= limit + 300);
  CHECK(log.starts_with("y\ny\ny\n"));
  CHECK(log.ends_with("y\ny\nlast-line\n"));
  CHECK(log.find("[kgate: " + std::to_string(3000000 + 10 - limit) + " bytes of output dropped here") !=
        std::string::npos);

  // The one-line gate's printed tail is a bounded piece of its line, not nothing and not 3 MB.
  const json& one = gate_of(r.summary, "one-line");
  CHECK(one["status"] == "failed");
  CHECK(one["log_dropped_bytes"] == 3000000 + 5 - limit);
  log = read_file(out / "logs" / "one-line.log").value_or("");
  CHECK(log.starts_with("startxxx"));
  CHECK(log.ends_with("xxxx"));
  const auto shown = r.err.find("last lines of " + (out / "logs" / "one-line.log").string());
  REQUIRE(shown != std::string::npos);
  CHECK(r.err.find("xxxxxxxxxxxxxxxx", shown) != std::string::npos);
  CHECK(r.err.size() < 64 * 1024);

  const json& small = gate_of(r.summary, "small");
  CHECK(small["log_bytes"] == 6);
  CHECK(small["log_dropped_bytes"] == 0);
  CHECK(read_file(out / "logs" / "small.log").value_or("") == "hello\n");
}

TEST_CASE("log_limit_mb is checked like every other key") {
  TempDir tmp = make_tmp();
  for (const char* bad : {"0", "65537", "1.5", "\"64\""}) {
    fs::path file = write_pipeline(
        tmp.path(), std::string(R"({"name": "a", "command": ["true"], "log_limit_mb": )") + bad + "}");
    GatesRun r = run_gates(file, tmp.path() / "out");
    CHECK(r.exit_code == 2);
    CHECK_MESSAGE(r.err.find("log_limit_mb: must be an integer from 1 to 65536 (MiB)") != std::string::npos,
                  r.err);
  }
}

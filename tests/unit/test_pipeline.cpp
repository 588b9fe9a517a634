#include <doctest/doctest.h>

#include <cstdlib>

#include "core/strings.hpp"
#include "gate/capped_log.hpp"
#include "gate/pipeline.hpp"

using namespace kgate;
using namespace kgate::gate;

namespace {

std::string source_root() {
  const char* env = std::getenv("KGATE_SOURCE_ROOT");
  return env ? env : std::string(__FILE__).substr(0, std::string(__FILE__).rfind("/tests/"));
}

Result<Pipeline> parse(std::string_view text) {
  return parse_pipeline(text, "g.json", "/repo/ci");
}

// The error a bad file gets: class usage, and the message must name what and where.
std::string error_of(std::string_view text) {
  auto p = parse(text);
  REQUIRE_FALSE(p.has_value());
  CHECK(p.error().cls() == FailureClass::usage);
  return p.error().describe();
}

std::string with_gates(std::string_view gates) {
  return R"({"schema": "kgate.gates/1", "gates": [)" + std::string(gates) + "]}";
}

std::vector<std::string> names(const Pipeline& p, const std::vector<size_t>& idx) {
  std::vector<std::string> out;
  for (size_t i : idx) out.push_back(p.gates[i].name);
  return out;
}

}  // namespace

TEST_CASE("a pipeline with defaults, needs, expect and a matrix gate parses") {
  auto p = parse(R"({
    "schema": "kgate.gates/1",
    "defaults": {"cwd": "..", "env": {"A": "1", "B": "2"}, "timeout_s": 60},
    "gates": [
      {"name": "test", "command": ["make", "test"], "needs": ["build"], "env": {"B": "3"}},
      {"name": "build", "command": ["make"], "cwd": "sub", "timeout_s": 5},
      {"name": "refused", "command": ["sh", "-c", "exit 1"], "expect": "fail", "expect_exit": [1, 7]},
      {"name": "vm", "kind": "ebpf-matrix", "entries": "debian-6.1*", "jobs": 2, "matrix": "m.json",
       "spec": "ebpf-gate.json", "object": "../build/agent.bpf.o", "needs": ["build"], "always": true}
    ]})");
  REQUIRE_MESSAGE(p.has_value(), p.error().describe());
  // Needs first, file order otherwise.
  CHECK(names(*p, {0, 1, 2, 3}) == std::vector<std::string>{"build", "test", "refused", "vm"});
  const Gate* build = p->find("build");
  CHECK(build->cwd == fs::path("/repo/sub"));
  CHECK(build->timeout_s == 5);
  CHECK(build->line == 6);
  const Gate* test = p->find("test");
  CHECK(test->cwd == fs::path("/repo"));
  CHECK(test->timeout_s == 60);
  CHECK(test->env == std::map<std::string, std::string>{{"A", "1"}, {"B", "3"}});
  CHECK(p->find("refused")->expect == Expect::fail);
  CHECK(p->find("refused")->expect_exit == std::vector<int>{1, 7});
  const Gate* vm = p->find("vm");
  CHECK(vm->kind == GateKind::ebpf_matrix);
  CHECK(vm->entries == "debian-6.1*");
  CHECK(vm->jobs == 2);
  CHECK(vm->matrix == fs::path("/repo/ci/m.json"));
  CHECK(vm->spec == fs::path("/repo/ci/ebpf-gate.json"));
  CHECK(vm->object == fs::path("/repo/build/agent.bpf.o"));
  CHECK(vm->always);
  CHECK(p->find("none") == nullptr);
}

TEST_CASE("a gate without a timeout gets the default deadline") {
  auto p = parse(with_gates(R"({"name": "a", "command": ["true"]})"));
  REQUIRE(p.has_value());
  CHECK(p->gates[0].timeout_s == default_timeout_s);
  CHECK(p->gates[0].cwd == fs::path("/repo/ci"));
}

TEST_CASE("bad gates files are refused before anything runs, naming the gate and where") {
  struct Case {
    const char* what;
    std::string text;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"not JSON", "{", "g.json: not valid JSON: "},
      {"not an object", "[]", "g.json: must be a JSON object"},
      {"no schema", R"({"gates": []})", "g.json: schema: must be \"kgate.gates/1\""},
      {"another schema", R"({"schema": "kgate.gates/2", "gates": []})",
       "g.json: schema: must be \"kgate.gates/1\""},
      {"unknown top-level key", R"({"schema": "kgate.gates/1", "gate": []})", "g.json: unknown key 'gate'"},
      {"gates not an array", R"({"schema": "kgate.gates/1", "gates": {}})",
       "g.json: gates: must be an array"},
      {"no gates", R"({"schema": "kgate.gates/1", "gates": []})", "g.json: gates: the pipeline has no gates"},
      {"gate not an object", with_gates("1"), "g.json: gates[0]: must be an object"},
      {"no name", with_gates(R"({"command": ["true"]})"), "g.json: gates[0]: name: a gate needs a name"},
      {"name not a string", with_gates(R"({"name": 3, "command": ["true"]})"),
       "g.json: gates[0]: name: a gate needs a name"},
      {"bad name", with_gates(R"({"name": "a/b", "command": ["true"]})"),
       "g.json: gates[0] \"a/b\" (line 1): name: use letters"},
      {"unknown gate key", with_gates(R"({"name": "a", "command": ["true"], "needz": []})"),
       "g.json: gates[0] \"a\" (line 1): unknown key 'needz'"},
      {"missing command", with_gates(R"({"name": "a"})"),
       "g.json: gates[0] \"a\" (line 1): command: a command gate needs a command"},
      {"command a string", with_gates(R"({"name": "a", "command": "make test"})"),
       "g.json: gates[0] \"a\" (line 1): command: must be an array of strings"},
      {"empty command", with_gates(R"({"name": "a", "command": []})"),
       "g.json: gates[0] \"a\" (line 1): command: must not be empty"},
      {"command element not a string", with_gates(R"({"name": "a", "command": ["make", 1]})"),
       "g.json: gates[0] \"a\" (line 1): command[1]: must be a string"},
      {"empty program", with_gates(R"({"name": "a", "command": [""]})"), "command[0]: must name a program"},
      {"timeout a string", with_gates(R"({"name": "a", "command": ["true"], "timeout_s": "5"})"),
       "\"a\" (line 1): timeout_s: must be a number of seconds"},
      {"timeout zero", with_gates(R"({"name": "a", "command": ["true"], "timeout_s": 0})"),
       "timeout_s: must be more than 0 and at most 86400 seconds"},
      {"timeout too long", with_gates(R"({"name": "a", "command": ["true"], "timeout_s": 1e9})"),
       "timeout_s: must be more than 0"},
      {"env not an object", with_gates(R"({"name": "a", "command": ["true"], "env": ["A=1"]})"),
       "env: must be an object of strings"},
      {"env value not a string", with_gates(R"({"name": "a", "command": ["true"], "env": {"A": 1}})"),
       "env.A: must be a string"},
      {"env bad name", with_gates(R"({"name": "a", "command": ["true"], "env": {"A=B": "1"}})"),
       "env.A=B: is not a variable name"},
      {"always not a bool", with_gates(R"({"name": "a", "command": ["true"], "always": "yes"})"),
       "always: must be true or false"},
      {"bad expect", with_gates(R"({"name": "a", "command": ["true"], "expect": "red"})"),
       "expect: 'red' is not pass or fail"},
      {"bad kind", with_gates(R"({"name": "a", "command": ["true"], "kind": "docker"})"),
       "kind: 'docker' is not a kind: command or ebpf-matrix"},
      {"needs not an array", with_gates(R"({"name": "a", "command": ["true"], "needs": "b"})"),
       "needs: must be an array of strings"},
      {"needs itself", with_gates(R"({"name": "a", "command": ["true"], "needs": ["a"]})"),
       "needs[0]: a gate cannot need itself"},
      {"need listed twice",
       with_gates(
           R"({"name": "a", "command": ["true"]}, {"name": "b", "command": ["true"], "needs": ["a", "a"]})"),
       "gates[1] \"b\" (line 1): needs[1]: \"a\" is listed twice"},
      {"unknown need", with_gates(R"({"name": "a", "command": ["true"], "needs": ["biuld"]})"),
       "g.json: gates[0] \"a\" (line 1): needs[0]: no gate is named \"biuld\""},
      {"duplicate names",
       with_gates(R"({"name": "a", "command": ["true"]}, {"name": "a", "command": ["false"]})"),
       "g.json: gates[0] and gates[1] are both named \"a\""},
      {"matrix keys on a command gate", with_gates(R"({"name": "a", "command": ["true"], "entries": "*"})"),
       "entries: only an ebpf-matrix gate takes this"},
      {"a spec on a command gate", with_gates(R"({"name": "a", "command": ["true"], "spec": "s.json"})"),
       "spec: only an ebpf-matrix gate takes this"},
      {"an object on a command gate", with_gates(R"({"name": "a", "command": ["true"], "object": "x.o"})"),
       "object: only an ebpf-matrix gate takes this"},
      {"an empty object", with_gates(R"({"name": "a", "kind": "ebpf-matrix", "entries": "*", "object": ""})"),
       "object: must name a BPF object file"},
      {"an empty spec", with_gates(R"({"name": "a", "kind": "ebpf-matrix", "entries": "*", "spec": ""})"),
       "spec: must name a run spec file"},
      {"command on a matrix gate",
       with_gates(R"({"name": "a", "kind": "ebpf-matrix", "entries": "*", "command": ["x"]})"),
       "command: an ebpf-matrix gate runs no command"},
      {"matrix gate without entries", with_gates(R"({"name": "a", "kind": "ebpf-matrix"})"),
       "entries: an ebpf-matrix gate needs entries"},
      {"matrix jobs out of range",
       with_gates(R"({"name": "a", "kind": "ebpf-matrix", "entries": "*", "jobs": 0})"),
       "jobs: must be an integer from 1 to 64"},
      {"expect_exit without expect fail",
       with_gates(R"({"name": "a", "command": ["true"], "expect_exit": [7]})"),
       "expect_exit: only a gate with \"expect\": \"fail\" takes this"},
      {"expect_exit not an array",
       with_gates(R"({"name": "a", "command": ["true"], "expect": "fail", "expect_exit": 7})"),
       "expect_exit: must be a non-empty array of exit codes"},
      {"expect_exit zero",
       with_gates(R"({"name": "a", "command": ["true"], "expect": "fail", "expect_exit": [0]})"),
       "expect_exit[0]: must be an exit code from 1 to 255"},
      {"expect fail on a matrix gate",
       with_gates(R"({"name": "a", "kind": "ebpf-matrix", "entries": "*", "expect": "fail"})"),
       "expect: an ebpf-matrix gate must pass"},
      {"cwd on a matrix gate",
       with_gates(R"({"name": "a", "kind": "ebpf-matrix", "entries": "*", "cwd": "x"})"),
       "cwd: an ebpf-matrix gate does not take this"},
      {"env on a matrix gate",
       with_gates(R"({"name": "a", "kind": "ebpf-matrix", "entries": "*", "env": {}})"),
       "env: an ebpf-matrix gate does not take this"},
      {"NUL in a command", with_gates(R"({"name": "a", "command": ["sh", "-c", "exit 0\u0000; exit 1"]})"),
       "command[2]: must not contain a NUL byte"},
      {"NUL in an env value", with_gates(R"({"name": "a", "command": ["true"], "env": {"A": "x\u0000y"}})"),
       "env.A: must not contain a NUL byte"},
      {"NUL in a cwd", with_gates(R"({"name": "a", "command": ["true"], "cwd": "a\u0000b"})"),
       "cwd: must not contain a NUL byte"},
      {"duplicate key", with_gates(R"({"name": "a", "command": ["false"], "command": ["true"]})"),
       "g.json: the key \"command\" appears twice in one object"},
      {"bad defaults", R"({"schema": "kgate.gates/1", "defaults": {"timeout": 3}, "gates": []})",
       "g.json: defaults: unknown key 'timeout'"},
  };
  for (const auto& c : cases) {
    INFO(std::string(c.what));
    std::string e = error_of(c.text);
    CHECK_MESSAGE(e.find(c.error) != std::string::npos, e);
  }
}

TEST_CASE("a cycle is refused and spelled out with lines") {
  std::string e = error_of(R"({"schema": "kgate.gates/1", "gates": [
    {"name": "start", "command": ["true"]},
    {"name": "a", "command": ["true"], "needs": ["c", "start"]},
    {"name": "b", "command": ["true"], "needs": ["a"]},
    {"name": "c", "command": ["true"], "needs": ["b"]}
  ]})");
  CHECK_MESSAGE(
      e.find(
          "g.json: needs form a cycle of 3 gates: \"a\" (line 3) needs \"c\" (line 5) needs \"b\" (line 4) "
          "needs \"a\"") != std::string::npos,
      e);
}

TEST_CASE("--only selects a gate with everything it needs, in pipeline order") {
  auto p = parse(with_gates(R"(
    {"name": "format", "command": ["true"]},
    {"name": "build", "command": ["true"]},
    {"name": "unit", "command": ["true"], "needs": ["build"]},
    {"name": "vm", "command": ["true"], "needs": ["unit", "build"]},
    {"name": "docs", "command": ["true"]})"));
  REQUIRE(p.has_value());
  auto all = select_gates(*p, {});
  REQUIRE(all.has_value());
  CHECK(names(*p, *all) == std::vector<std::string>{"format", "build", "unit", "vm", "docs"});
  auto vm = select_gates(*p, {"vm"});
  REQUIRE(vm.has_value());
  CHECK(names(*p, *vm) == std::vector<std::string>{"build", "unit", "vm"});
  auto two = select_gates(*p, {"docs", "unit"});
  REQUIRE(two.has_value());
  CHECK(names(*p, *two) == std::vector<std::string>{"build", "unit", "docs"});
  auto bad = select_gates(*p, {"vmm"});
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().describe().find("--only vmm: no gate is named so") != std::string::npos);
}

TEST_CASE("the project's own ci/gates.json is valid") {
  auto p = load_pipeline(source_root() + "/ci/gates.json");
  REQUIRE_MESSAGE(p.has_value(), p.error().describe());
  CHECK(p->find("build") != nullptr);
  CHECK(p->find("vm") != nullptr);
  bool has_negative_control = false;
  for (const auto& g : p->gates) has_negative_control |= g.expect == Expect::fail;
  CHECK(has_negative_control);
}

TEST_CASE("a capped log keeps the output's head and tail, and says how much it dropped between them") {
  auto tmp = TempDir::create("kgate-test-log");
  REQUIRE(tmp.has_value());
  const fs::path path = tmp->path() / "gate.log";
  const std::uint64_t limit = 1000;  // tail 500, head 500
  std::string output;
  for (int i = 0; output.size() < 5000; ++i) output += std::to_string(i) + "\n";
  for (size_t total : {0, 1, 999, 1000, 1001, 1200, 1500, 1501, 4999}) {
    for (size_t chunk : {1, 7, 300, 5000}) {
      CAPTURE(total);
      CAPTURE(chunk);
      const std::string_view out = std::string_view(output).substr(0, total);
      auto log = CappedLog::open(path, limit);
      REQUIRE(log.has_value());
      for (size_t at = 0; at < out.size(); at += chunk) log->write(out.substr(at, chunk));
      log->finish();
      CHECK(log->total() == total);
      const std::string text = read_file(path).value();
      if (total <= limit) {
        CHECK(log->dropped() == 0);
        CHECK(text == out);
        continue;
      }
      CHECK(log->dropped() == total - limit);
      const std::string marker = strprintf(
          "\n[kgate: %zu bytes of output dropped here: the log keeps the first 500 and the last 500 bytes of "
          "%zu (log_limit_mb)]\n",
          total - limit, total);
      const std::string want =
          std::string(out.substr(0, 500)) + marker + std::string(out.substr(total - 500));
      CHECK(text.size() == want.size());
      CHECK(text.substr(500, marker.size()) == marker);
      CHECK(text == want);
    }
  }
}

TEST_CASE("log_limit_mb: 64 MiB unless the defaults or the gate say otherwise; not on an ebpf-matrix gate") {
  auto p = parse(R"({"schema": "kgate.gates/1", "defaults": {"log_limit_mb": 2},
    "gates": [{"name": "a", "command": ["true"]}, {"name": "b", "command": ["true"], "log_limit_mb": 3}]})");
  REQUIRE_MESSAGE(p.has_value(), p.error().describe());
  CHECK(p->find("a")->log_limit_bytes == 2u << 20);
  CHECK(p->find("b")->log_limit_bytes == 3u << 20);
  auto plain = parse(R"({"schema": "kgate.gates/1", "gates": [{"name": "a", "command": ["true"]}]})");
  REQUIRE(plain.has_value());
  CHECK(plain->find("a")->log_limit_bytes == default_log_limit_mb << 20);
  CHECK(error_of(R"({"schema": "kgate.gates/1", "gates": [{"name": "m", "kind": "ebpf-matrix", "entries": "*",
    "log_limit_mb": 1}]})")
            .find("log_limit_mb: an ebpf-matrix gate does not take this") != std::string::npos);
  CHECK(error_of(R"({"schema": "kgate.gates/1", "defaults": {"log_limit_mb": 0}, "gates": [{"name": "a",
    "command": ["true"]}]})")
            .find("defaults: log_limit_mb: must be an integer from 1 to 65536 (MiB)") != std::string::npos);
}

TEST_CASE("10,000 gates in a chain written last-first are ordered, each with its line") {
  // Validation is linear in the gates and needs (it was quadratic: 4.6 s for this file); this
  // checks that the result is right, not how long it took.
  const int n = 10000;
  std::string gates;
  for (int i = 0; i < n; ++i) {
    gates += strprintf("%s\n{\"name\": \"g%d\", \"command\": [\"true\"], \"needs\": [%s]}", i ? "," : "", i,
                       i + 1 < n ? strprintf("\"g%d\"", i + 1).c_str() : "");
  }
  auto p = parse(with_gates(gates));
  REQUIRE_MESSAGE(p.has_value(), p.error().describe());
  REQUIRE(p->gates.size() == static_cast<size_t>(n));
  for (int k = 0; k < n; ++k) {
    const Gate& g = p->gates[static_cast<size_t>(k)];
    REQUIRE(g.name == strprintf("g%d", n - 1 - k));
    REQUIRE(g.line == n - k + 1);
  }
  // A cycle through all of them is still found and spelled out.
  gates += ",\n{\"name\": \"loop\", \"command\": [\"true\"], \"needs\": [\"g0\"]}";
  std::string closed = with_gates(gates);
  closed.replace(closed.rfind("\"needs\": []"), 11, "\"needs\": [\"loop\"]");
  // ... in one bounded line: its first and last links (it was 229 KB).
  const std::string e = error_of(closed);
  CHECK(e.find("needs form a cycle of 10001 gates: \"") != std::string::npos);
  CHECK(e.find("... (9985 more) ...") != std::string::npos);
  CHECK(e.size() < 1024);
}

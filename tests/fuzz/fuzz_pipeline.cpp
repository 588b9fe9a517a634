// Fuzz target for the gates file parser (kgate.gates/1), which reads a file a pipeline's
// author wrote. Every input is either a usage error, or a pipeline the executor can run
// without checking again: unique valid names, needs that exist and come first, commands
// or matrix entries as the kind requires, timeouts in range.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "driver.hpp"
#include "gate/pipeline.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto p = kgate::gate::parse_pipeline(text, "fuzz/gates.json", "/repo/ci");
  if (!p) {
    KGATE_FUZZ_CHECK(p.error().cls() == kgate::FailureClass::usage);
    (void)p.error().describe();
    return 0;
  }
  KGATE_FUZZ_CHECK(!p->gates.empty());
  std::set<std::string> before;
  for (const auto& g : p->gates) {
    KGATE_FUZZ_CHECK(!g.name.empty() && g.name.size() <= 100 && !before.contains(g.name));
    for (const auto& n : g.needs) KGATE_FUZZ_CHECK(before.contains(n));  // needs come first
    KGATE_FUZZ_CHECK(g.timeout_s > 0 && g.timeout_s <= 86400);
    KGATE_FUZZ_CHECK(g.cwd.is_absolute());
    if (g.kind == kgate::gate::GateKind::command) {
      KGATE_FUZZ_CHECK(!g.command.empty() && !g.command.front().empty() && g.entries.empty());
    } else {
      KGATE_FUZZ_CHECK(g.command.empty() && !g.entries.empty() && g.jobs >= 1 && g.jobs <= 64);
    }
    for (int c : g.expect_exit) KGATE_FUZZ_CHECK(c >= 1 && c <= 255);
    for (const auto& a : g.command) KGATE_FUZZ_CHECK(a.find('\0') == std::string::npos);
    for (const auto& [k, v] : g.env) KGATE_FUZZ_CHECK(v.find('\0') == std::string::npos);
    KGATE_FUZZ_CHECK(g.cwd.string().find('\0') == std::string::npos);
    if (g.kind == kgate::gate::GateKind::ebpf_matrix) KGATE_FUZZ_CHECK(g.expect == kgate::gate::Expect::pass);
    KGATE_FUZZ_CHECK(g.expect_exit.empty() || g.expect == kgate::gate::Expect::fail);
    before.insert(g.name);
  }
  auto all = kgate::gate::select_gates(*p, {});
  KGATE_FUZZ_CHECK(all.has_value() && all->size() == p->gates.size());
  auto last = kgate::gate::select_gates(*p, {p->gates.back().name});
  KGATE_FUZZ_CHECK(last.has_value() && !last->empty() && last->back() == p->gates.size() - 1);
  KGATE_FUZZ_CHECK(!kgate::gate::select_gates(*p, {"no such/gate"}).has_value());
  return 0;
}

namespace {

constexpr std::string_view full = R"({
  "schema": "kgate.gates/1",
  "description": "every key",
  "defaults": {"cwd": "..", "env": {"LC_ALL": "C"}, "timeout_s": 900},
  "gates": [
    {"name": "format", "command": ["scripts/check-format.sh"], "timeout_s": 120},
    {"name": "build", "command": ["ninja", "-C", "build"], "cwd": "sub/dir", "env": {"CC": "gcc"}},
    {"name": "unit", "needs": ["build"], "command": ["meson", "test"], "description": "d"},
    {"name": "kernels", "kind": "ebpf-matrix", "entries": "debian-6.1*", "jobs": 2, "matrix": "m.json",
     "run_args": ["--count", "3"], "needs": ["build"], "always": true},
    {"name": "refused", "command": ["false"], "expect": "fail", "expect_exit": [1, 7], "needs": ["unit", "kernels"]}
  ]
})";

// One mistake each: every error path, and JSON the lexer must reject.
constexpr std::string_view near_misses[] = {
    R"({"schema":"kgate.gates/1","gates":[{"name":"a","command":["true"],"needs":["b"]},{"name":"b","command":["true"],"needs":["a"]}]})",
    R"({"schema":"kgate.gates/1","gates":[{"name":"a","command":["true"]},{"name":"a","command":["true"]}]})",
    R"({"schema":"kgate.gates/1","gates":[{"name":"a","command":["true"],"needs":["x"]}]})",
    R"({"schema":"kgate.gates/1","gates":[{"name":"a/b","command":["true"]}]})",
    R"({"schema":"kgate.gates/1","gates":[{"name":"a","command":[]}]})",
    R"({"schema":"kgate.gates/1","gates":[{"name":"a","command":["true"],"timeout_s":-1}]})",
    R"({"schema":"kgate.gates/1","gates":[{"name":"a","command":["true"],"expect_exit":[7]}]})",
    R"({"schema":"kgate.gates/1","gates":[{"name":"a","kind":"ebpf-matrix","entries":"*","jobs":99}]})",
    R"({"schema":"kgate.gates/1","gates":[{"name":"a","command":["true"],"env":{"1A":"x"}}]})",
    R"({"schema":"kgate.gates/1","defaults":{"timeout_s":"9"},"gates":[{"name":"a","command":["true"]}]})",
    R"({"schema":"kgate.gates/1","gates":[]})",
    R"({"schema":"kgate.gates/2","gates":[{"name":"a","command":["true"]}]})",
    R"({"schema":"kgate.gates/1","gates":[{"name":"a","command":["true"],"needs":["a"]}]})",
    R"({"schema":1,"gates":[-0,1e400,1.5e-7,18446744073709551616,"\u0000"]})",
    R"({"schema":"\ud800","gates":[{"name":tru}]})",
};

}  // namespace

std::vector<std::string> kgate_fuzz_seeds() {
  std::vector<std::string> seeds = {std::string(full)};
  seeds.push_back("\xef\xbb\xbf" + std::string(full));
  seeds.push_back(std::string(full) + "]");
  for (std::string_view s : near_misses) seeds.emplace_back(s);
  return seeds;
}

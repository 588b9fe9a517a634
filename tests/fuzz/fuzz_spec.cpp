// Fuzz target for the run spec (kgate.spec/1) and the strict JSON reader under it, which read files
// a gate's author wrote. Every input is either a usage error, or a spec whose values are in the
// ranges the runner relies on without checking again: valid unique names, absolute paths, counts and
// offsets in range, attach and trigger combinations that can work, a reason on every skip.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/json_doc.hpp"
#include "driver.hpp"
#include "spec/spec.hpp"

namespace {

void check_count(const kgate::spec::MinCount& c) {
  KGATE_FUZZ_CHECK(c.value >= 1 && c.value <= 1'000'000);
}

void check_doc(std::string_view text) {
  auto doc = kgate::parse_json_doc(text, "fuzz/doc.json", 16);
  if (!doc) {
    KGATE_FUZZ_CHECK(doc.error().cls() == kgate::FailureClass::usage);
    (void)doc.error().describe();
    return;
  }
  KGATE_FUZZ_CHECK(doc->line_of("") >= 1);
  for (const auto& [path, line] : doc->lines()) {
    KGATE_FUZZ_CHECK(line >= 1 && line <= 1 + static_cast<int>(text.size()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kgate::spec;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  check_doc(text);
  auto s = parse_spec(text, "fuzz/spec.json", "/repo/ci");
  if (!s) {
    KGATE_FUZZ_CHECK(s.error().cls() == kgate::FailureClass::usage);
    KGATE_FUZZ_CHECK(s.error().describe().starts_with("fuzz/spec.json"));
    return 0;
  }
  KGATE_FUZZ_CHECK(!s->objects.empty() || s->loader);
  if (s->loader) {
    const auto& l = *s->loader;
    KGATE_FUZZ_CHECK(!l.exec.empty() && !l.programs.empty());
    for (const auto& [arch, path] : l.exec) KGATE_FUZZ_CHECK(path.is_absolute());
    KGATE_FUZZ_CHECK(l.dest.starts_with("/") && l.cwd.starts_with("/"));
    KGATE_FUZZ_CHECK(l.ready_timeout_s >= 1 && l.ready_timeout_s <= 3600);
    for (const auto& e : l.env) KGATE_FUZZ_CHECK(e.find('=') != std::string::npos && e.front() != '=');
    std::set<std::string> seen;
    for (const auto& p : l.programs) {
      KGATE_FUZZ_CHECK(!p.name.empty() && !p.type.empty() && seen.insert(p.name).second);
      if (p.runs) {
        check_count(*p.runs);
        KGATE_FUZZ_CHECK(p.trigger.kind != TriggerKind::none);
      }
    }
    // The loader ships as a file, and no other file has its dest.
    KGATE_FUZZ_CHECK(std::count_if(s->files.begin(), s->files.end(),
                                   [&](const kgate::spec::FileSpec& f) { return f.dest == l.dest; }) == 1);
  }
  std::set<std::string> names;
  for (const auto& o : s->objects) {
    KGATE_FUZZ_CHECK(!o.name.empty() && o.name.size() <= 100 && names.insert(o.name).second);
    KGATE_FUZZ_CHECK(o.builtin.empty() != o.paths.empty());
    for (const auto& [arch, path] : o.paths) {
      KGATE_FUZZ_CHECK(arch == "x86_64" || arch == "arm64");
      KGATE_FUZZ_CHECK(path.is_absolute());
    }
    KGATE_FUZZ_CHECK((o.nonce.kind == NonceSource::Kind::none) == o.nonce.name.empty());
    std::set<std::string> programs;
    for (const auto& p : o.programs) {
      KGATE_FUZZ_CHECK(!p.name.empty() && programs.insert(p.name).second);
      KGATE_FUZZ_CHECK(o.find(p.name) == &p);
      if (p.attach == AttachMode::load_only) KGATE_FUZZ_CHECK(p.trigger.kind == TriggerKind::none);
      if (p.attach == AttachMode::test_run) KGATE_FUZZ_CHECK(p.trigger.kind == TriggerKind::none);
      if (p.expect.retval) KGATE_FUZZ_CHECK(p.attach == AttachMode::test_run);
      if (p.target)
        KGATE_FUZZ_CHECK(p.attach == AttachMode::auto_attach && p.target->binary.starts_with("/"));
      KGATE_FUZZ_CHECK(p.test_run.repeat >= 1 && p.test_run.repeat <= 1'000'000);
      KGATE_FUZZ_CHECK(p.test_run.packet_hex.size() % 2 == 0);
      if (p.expect.runs) check_count(*p.expect.runs);
      if (p.expect.records) {
        check_count(p.expect.records->min);
        KGATE_FUZZ_CHECK(!p.expect.records->ring.empty());
        if (p.expect.records->nonce) KGATE_FUZZ_CHECK(p.expect.records->nonce->offset <= (1u << 20));
      }
      if (p.expect.map_nonce) KGATE_FUZZ_CHECK(p.expect.map_nonce->at.offset <= (1u << 20));
      if (!p.expect.loads) KGATE_FUZZ_CHECK(!p.expect.runs && !p.expect.records && !p.expect.retval);
      if (p.trigger.kind == TriggerKind::command) KGATE_FUZZ_CHECK(!p.trigger.args.empty());
      if (p.trigger.kind == TriggerKind::call) KGATE_FUZZ_CHECK(p.trigger.binary.starts_with("/"));
      for (const auto& k : p.skip) {
        KGATE_FUZZ_CHECK(!k.reason.empty() && (!k.arches.empty() || !k.kernel_below.empty()));
      }
    }
  }
  std::set<std::string> dests;
  for (const auto& f : s->files) {
    KGATE_FUZZ_CHECK(!f.sources.empty() && f.dest.starts_with("/") && f.mode <= 07777);
    for (const auto& [arch, source] : f.sources) KGATE_FUZZ_CHECK(source.is_absolute());
    KGATE_FUZZ_CHECK(f.dest.find("/../") == std::string::npos && dests.insert(f.dest).second);
  }
  return 0;
}

namespace {

constexpr std::string_view full = R"({
  "schema": "kgate.spec/1",
  "description": "every key",
  "objects": [
    {
      "name": "agent",
      "path": {"x86_64": "build/agent.x86.bpf.o", "aarch64": "/abs/agent.arm64.bpf.o"},
      "nonce": {"global": "kgate_nonce"},
      "maps": ["events", "seen"],
      "requires": {"min_kernel": "5.8", "btf": true},
      "programs": {
        "handle_getpid": {
          "attach": "auto",
          "trigger": "getpid",
          "expect": {
            "runs": "count",
            "records": {"ring": "events", "where": {"offset": 24, "string": "handle_getpid"},
                        "min": {"count": 2}, "nonce": {"offset": 0, "encoding": "u64le"}},
            "map_nonce": {"map": "seen", "offset": 8, "encoding": "hex"},
            "loads": true, "attaches": true
          },
          "skip": [{"arch": ["arm64"], "reason": "r"}, {"kernel_below": "5.15", "reason": "old"}]
        },
        "handle_xdp": {"attach": "test_run", "test_run": {"packet": "ipv6-tcp", "repeat": 4},
                       "expect": {"retval": 2}},
        "handle_uprobe": {
          "target": {"binary": "/kgate/files/target", "function": "fn"},
          "trigger": {"kind": "call", "binary": "/kgate/files/target", "function": "fn", "args": ["{nonce}"]}
        },
        "handle_open": {"trigger": {"kind": "openat", "path": "/tmp/x-{nonce}"}},
        "handle_cmd": {"trigger": {"kind": "command", "args": ["/kgate/files/tool", "{nonce}"]}},
        "gate": {"attach": "load_only", "expect": {"loads": false}},
        "usdt_prog": {"target": {"binary": "/usr/bin/x", "provider": "prov", "probe": "hit"}}
      }
    },
    {"name": "probe", "builtin": "probe", "nonce": {"map": "kgate_nonce"}}
  ],
  "files": [{"source": "bin/target", "dest": "/kgate/files/target", "mode": "0755"}]
})";

// One mistake each: the error paths, and JSON the strict reader must reject.
constexpr std::string_view near_misses[] = {
    R"({"schema":"kgate.spec/1","objects":[{"name":"o","path":"o","programs":{"p":{"attach":"load_only","trigger":"getpid"}}}]})",
    R"({"schema":"kgate.spec/1","objects":[{"name":"o","path":"o","programs":{"p":{"expect":{"retval":2}}}}]})",
    R"({"schema":"kgate.spec/1","objects":[{"name":"o","path":"o","programs":{"p":{"attach":"test_run","test_run":{"packet_hex":"abc"}}}}]})",
    R"({"schema":"kgate.spec/1","objects":[{"name":"o","path":"o","programs":{"p":{"expect":{"runs":1000001}}}}]})",
    R"({"schema":"kgate.spec/1","objects":[{"name":"o","path":"o","programs":{"p":{"skip":[{"arch":"arm64"}]}}}]})",
    R"({"schema":"kgate.spec/1","objects":[{"name":"o","path":{"amd64":"a","x86_64":"b"}}]})",
    R"({"schema":"kgate.spec/1","objects":[{"name":"o","path":"o"},{"name":"o","path":"p"}]})",
    R"({"schema":"kgate.spec/1","objects":[{"name":"o","path":"o"}],"files":[{"source":"a","dest":"/a/../b","mode":"0999"}]})",
    R"({"schema":"kgate.spec/1","objects":[{"name":"o","path":"o","name":"p"}]})",
    R"({"schema":"kgate.spec/2","objects":[]})",
    R"({"schema":"kgate.spec/1","objects":[{"name":"o","path":"o","programs":{"9p":{}}}]})",
    R"([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])",
    R"({"schema":1,"objects":[-0,1e400,1.5e-7,18446744073709551616,"\u0000"]})",
    R"({"schema":"\ud800","objects":[{"name":tru}]})",
};

}  // namespace

std::vector<std::string> kgate_fuzz_seeds() {
  std::vector<std::string> seeds = {std::string(full)};
  seeds.push_back("\xef\xbb\xbf" + std::string(full));
  seeds.push_back(std::string(full) + "]");
  for (std::string_view s : near_misses) seeds.emplace_back(s);
  seeds.emplace_back(
      R"({"schema":"kgate.spec/1","loader":{"exec":{"x86_64":"a","arm64":"b"},"args":["{nonce}"],"env":{"A":"1"},)"
      R"("cwd":"/tmp","ready":{"timeout_s":5,"line":"ready"},"stop":{"grace_s":1},"pins":false,"programs":{)"
      R"("p":{"type":"kprobe","trigger":"openat","expect":{"runs":"count","attached":true}},"q":{"type":"xdp"}}},)"
      R"("files":[{"source":"c","dest":"/etc/c"}]})");
  return seeds;
}

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/files.hpp"
#include "core/json_doc.hpp"
#include "spec/check.hpp"
#include "spec/init.hpp"
#include "spec/spec.hpp"

using namespace kgate;
using namespace kgate::spec;

namespace {

std::string error_of(const Result<Spec>& r) {
  return r ? std::string("(parsed)") : r.error().describe();
}

Result<Spec> parse(const std::string& text) {
  return parse_spec(text, "ci/spec.json", "/repo/ci");
}

// Three shapes, so that each bad input sits on a known line of a valid spec.
// A program's keys on line 4, as objects[0].programs.p.
std::string program(const std::string& body) {
  return "{\"schema\": \"kgate.spec/1\",\n"
         " \"objects\": [{\"name\": \"o\", \"path\": \"o.bpf.o\",\n"
         "  \"programs\": {\"p\": {\n" +
         body + "\n  }}}]}";
}
// An object's keys after name and path on line 3, as objects[0].
std::string object(const std::string& body) {
  return "{\"schema\": \"kgate.spec/1\",\n"
         " \"objects\": [{\"name\": \"o\", \"path\": \"o.bpf.o\"\n" +
         body + "\n }]}";
}
// An object's keys after its name on line 3 (path is up to the row).
std::string object_named(const std::string& body) {
  return "{\"schema\": \"kgate.spec/1\",\n"
         " \"objects\": [{\"name\": \"o\",\n" +
         body + "}]}";
}
// A loader's keys on line 2, as loader; no objects.
std::string loader(const std::string& body) {
  return "{\"schema\": \"kgate.spec/1\",\n \"loader\": {" + body + "}}";
}
// Top-level keys on line 3.
std::string top(const std::string& body) {
  return "{\"schema\": \"kgate.spec/1\",\n"
         " \"objects\": [{\"name\": \"o\", \"path\": \"o.bpf.o\"}]\n" +
         body + "}";
}

struct Bad {
  std::string text;
  std::string where;  // "line N: json.path"
  std::string what;   // a part of the message
};

const std::string P = "objects[0].programs.p";

}  // namespace

TEST_CASE("parse_spec refuses each mistake, naming the file, the line and the JSON path") {
  const std::vector<Bad> rows = {
      // The document and the top level.
      {"{\"objects\": []}", "line 1: schema", "must be \"kgate.spec/1\""},
      {"{\"schema\": \"kgate.spec/2\",\n \"objects\": []}", "line 1: schema",
       "this kgate reads that version"},
      {"[1, 2]", "line 1", "a spec must be a JSON object"},
      {top(", \"extra\": 1"), "line 3: extra", "unknown key"},
      {"{\"schema\": \"kgate.spec/1\",\n \"objects\": []}", "line 2: objects", "at least one"},
      // A user's loader.
      {loader("\"args\": []"), "line 2: loader", "needs \"exec\""},
      {loader("\"exec\": \"agent\""), "line 2: loader", "needs \"programs\""},
      {loader("\"exec\": \"agent\", \"programs\": {\"p\": {}}"), "line 2: loader.programs.p",
       "needs \"type\""},
      {loader(
           "\"exec\": \"agent\", \"programs\": {\"p\": {\"type\": \"kprobe\", \"expect\": {\"runs\": 1}}}"),
       "line 2: loader.programs.p", "no \"trigger\""},
      {loader("\"exec\": \"agent\", \"programs\": {\"p-x\": {\"type\": \"kprobe\"}}"),
       "line 2: loader.programs.p-x", "not a program name"},
      {loader("\"exec\": \"agent\", \"cwd\": \"tmp\", \"programs\": {\"p\": {\"type\": \"kprobe\"}}"),
       "line 2: loader.cwd", "absolute"},
      {loader(
           "\"exec\": \"agent\", \"env\": {\"A=B\": \"x\"}, \"programs\": {\"p\": {\"type\": \"kprobe\"}}"),
       "line 2: loader.env[\"A=B\"]", "environment variable"},
      {loader("\"exec\": \"agent\", \"ready\": {\"timeout_s\": 0}, \"programs\": {\"p\": {\"type\": "
              "\"kprobe\"}}"),
       "line 2: loader.ready.timeout_s", "1"},
      {loader("\"image\": \"ghcr.io/org/agent:v1\", \"programs\": {\"p\": {\"type\": \"kprobe\"}}"),
       "line 2: loader.image", "pinned by digest"},
      {loader("\"image\": \"oci-layout:dir:\", \"programs\": {\"p\": {\"type\": \"kprobe\"}}"),
       "line 2: loader.image", "empty ref"},
      {loader(
           "\"image\": \"oci-layout:d\", \"exec\": \"agent\", \"programs\": {\"p\": {\"type\": \"kprobe\"}}"),
       "line 2: loader.exec", "absolute path in the image"},
      {loader("\"image\": \"oci-layout:d\", \"dest\": \"/x\", \"programs\": {\"p\": {\"type\": \"kprobe\"}}"),
       "line 2: loader.dest", "not shipped"},
      {loader("\"exec\": \"agent\", \"nonce\": {\"file\": \"/a\", \"map\": \"/sys/fs/bpf/m\"}, \"programs\": "
              "{\"p\": {\"type\": \"kprobe\"}}"),
       "line 2: loader.nonce", "one of"},
      {loader("\"exec\": \"agent\", \"nonce\": {\"map\": \"/tmp/m\"}, \"programs\": {\"p\": {\"type\": "
              "\"kprobe\"}}"),
       "line 2: loader.nonce.map", "/sys/fs/bpf/"},
      {loader("\"exec\": \"agent\", \"nonce\": {\"file\": \"/a\", \"offset\": 4}, \"programs\": {\"p\": "
              "{\"type\": \"kprobe\"}}"),
       "line 2: loader.nonce", "for a map"},
      {loader("\"exec\": \"agent\", \"nonce\": \"file\", \"programs\": {\"p\": {\"type\": \"kprobe\"}}"),
       "line 2: loader.nonce", "not where the nonce can be looked for"},
      {"{\"schema\": \"kgate.spec/1\",\n \"loader\": {\"exec\": \"agent\", \"dest\": \"/x\", \"programs\": "
       "{\"p\": "
       "{\"type\": \"kprobe\"}}},\n \"files\": [{\"source\": \"a\", \"dest\": \"/x\"}]}",
       "line 2: loader", "dest of a file too"},
      {"{\"schema\": \"kgate.spec/1\",\n \"objects\": {}}", "line 2: objects", "must be an array"},
      {top(", \"description\": 7"), "line 3: description", "must be a string"},
      {top(", \"objects\": 1"), "line 3: objects", "appears twice"},
      {"{\"schema\": \"kgate.spec/1\",\n \"objects\": [{\"name\": \"o\", \"path\": \"o\"},\n {\"name\": "
       "\"o\", "
       "\"path\": \"p\"}]}",
       "line 3: objects[1].name", "objects[0] is named \"o\" too"},
      // Files.
      {top(", \"files\": [{\"source\": \"a\", \"dest\": \"rel/x\"}]"), "line 3: files[0].dest", "absolute"},
      {top(", \"files\": [{\"source\": \"a\", \"dest\": \"/kgate/../etc/x\"}]"), "line 3: files[0].dest",
       "\"..\""},
      {top(", \"files\": [{\"source\": \"a\", \"dest\": \"/x\", \"mode\": \"0855\"}]"),
       "line 3: files[0].mode", "octal"},
      {top(", \"files\": [{\"source\": \"a\", \"dest\": \"/x\", \"mode\": 493}]"), "line 3: files[0].mode",
       "octal"},
      {top(", \"files\": [{\"dest\": \"/x\"}]"), "line 3: files[0]", "needs \"source\""},
      {top(", \"files\": [{\"source\": \"a\", \"dest\": \"/x\"},\n {\"source\": \"b\", \"dest\": \"/x\"}]"),
       "line 4: files[1].dest", "earlier file"},
      {top(", \"files\": [{\"source\": \"a\", \"dest\": \"/x\", \"owner\": 0}]"), "line 3: files[0].owner",
       "unknown key"},
      // Objects.
      {object_named("\"path\": \"o.bpf.o\", \"name\": \"x\""), "line 3: objects[0].name", "appears twice"},
      {"{\"schema\": \"kgate.spec/1\",\n \"objects\": [{\"name\": \"a b\", \"path\": \"x\"}]}",
       "line 2: objects[0].name", "is not a name"},
      {"{\"schema\": \"kgate.spec/1\",\n \"objects\": [{\"path\": \"x\"}]}", "line 2: objects[0]",
       "needs \"name\""},
      {"{\"schema\": \"kgate.spec/1\",\n \"objects\": [\"x.o\"]}", "line 2: objects[0]", "must be an object"},
      {object_named("\"path\": {\"sparc\": \"a.o\"}"), "line 3: objects[0].path.sparc", "is not an arch"},
      {object_named("\"path\": \"\""), "line 3: objects[0].path", "must not be empty"},
      {object_named("\"path\": 7"), "line 3: objects[0].path", "must be a path"},
      {object_named("\"path\": {}"), "line 3: objects[0].path", "names no object file"},
      {object_named("\"path\": {\"x86_64\": \"a.o\", \"amd64\": \"b.o\"}"), "line 3: objects[0].path.x86_64",
       "given twice"},
      {object_named("\"path\": {\"arm64\": 5}"), "line 3: objects[0].path.arm64", "must be a path"},
      {object_named("\"requires\": {}"), "line 2: objects[0]", "needs \"path\""},
      {object(", \"builtin\": \"probe\""), "line 3: objects[0].builtin", "not both"},
      {object_named("\"builtin\": \"other\""), "line 3: objects[0].builtin", "not a built-in object"},
      {object(", \"extra\": true"), "line 3: objects[0].extra", "unknown key"},
      {object(", \"nonce\": {\"global\": \"a\", \"map\": \"b\"}"), "line 3: objects[0].nonce",
       "needs one of"},
      {object(", \"nonce\": {\"global\": \"not-ident\"}"), "line 3: objects[0].nonce.global", "C identifier"},
      {object(", \"nonce\": {\"register\": \"x\"}"), "line 3: objects[0].nonce.register", "unknown key"},
      {object(", \"maps\": [\"events\", \"events\"]"), "line 3: objects[0].maps[1]", "listed twice"},
      {object(", \"maps\": [\"events\", 3]"), "line 3: objects[0].maps[1]", "must be a string"},
      {object(", \"requires\": {\"min_kernel\": \"five\"}"), "line 3: objects[0].requires.min_kernel",
       "not a kernel version"},
      {object(", \"requires\": {\"min_kernel\": \"5.\"}"), "line 3: objects[0].requires.min_kernel",
       "not a kernel version"},
      {object(", \"requires\": {\"btf\": 1}"), "line 3: objects[0].requires.btf", "true or false"},
      {object(", \"programs\": []"), "line 3: objects[0].programs", "must be an object"},
      {object(", \"programs\": {\"9lives\": {}}"), "line 3: objects[0].programs[\"9lives\"]",
       "not a program name"},
      {object(", \"programs\": {\"p\": 1}"), "line 3: objects[0].programs.p", "must be an object"},
      // Programs: keys and types.
      {program("\"bogus\": 1"), "line 4: " + P + ".bogus", "unknown key"},
      {program("\"attach\": \"sideways\""), "line 4: " + P + ".attach", "not an attach mode"},
      {program("\"attach\": 1"), "line 4: " + P + ".attach", "must be a string"},
      // Triggers.
      {program("\"trigger\": \"fork\""), "line 4: " + P + ".trigger", "not a trigger"},
      {program("\"trigger\": {\"kind\": \"fork\"}"), "line 4: " + P + ".trigger.kind", "not a trigger"},
      {program("\"trigger\": {\"path\": \"/x\"}"), "line 4: " + P + ".trigger", "needs \"kind\""},
      {program("\"trigger\": 3"), "line 4: " + P + ".trigger", "must be a trigger"},
      {program("\"trigger\": {\"kind\": \"openat\", \"path\": \"tmp/x\"}"), "line 4: " + P + ".trigger.path",
       "absolute"},
      {program("\"trigger\": {\"kind\": \"getpid\", \"path\": \"/tmp/x\"}"), "line 4: " + P + ".trigger.path",
       "unknown key"},
      {program("\"trigger\": {\"kind\": \"command\", \"args\": [\"tool\"]}"),
       "line 4: " + P + ".trigger.args[0]", "absolute"},
      {program("\"trigger\": {\"kind\": \"command\", \"args\": []}"), "line 4: " + P + ".trigger.args",
       "must not be empty"},
      {program("\"trigger\": \"call\""), "line 4: " + P + ".trigger", "needs an object"},
      {program("\"trigger\": {\"kind\": \"call\", \"function\": \"f\"}"), "line 4: " + P + ".trigger",
       "needs \"binary\""},
      {program("\"attach\": \"load_only\", \"trigger\": \"getpid\""), "line 4: " + P + ".trigger",
       "load_only program is never attached"},
      {program("\"attach\": \"test_run\", \"trigger\": \"getpid\""), "line 4: " + P + ".trigger",
       "must be none"},
      // Targets.
      {program("\"target\": {\"binary\": \"/bin/x\"}"), "line 4: " + P + ".target", "needs \"function\""},
      {program("\"target\": {\"binary\": \"bin/x\", \"function\": \"f\"}"), "line 4: " + P + ".target.binary",
       "absolute"},
      {program("\"target\": {\"binary\": \"/x\", \"function\": \"f\", \"probe\": \"p\"}"),
       "line 4: " + P + ".target", "not both"},
      {program("\"attach\": \"load_only\", \"target\": {\"binary\": \"/bin/x\", \"function\": \"f\"}"),
       "line 4: " + P + ".target", "only an auto-attached"},
      // Test runs.
      {program("\"test_run\": {\"repeat\": 2}"), "line 4: " + P + ".test_run", "\"attach\": \"test_run\""},
      {program("\"attach\": \"test_run\", \"test_run\": {\"packet_hex\": \"abc\"}"),
       "line 4: " + P + ".test_run.packet_hex", "even number of hex digits"},
      {program("\"attach\": \"test_run\", \"test_run\": {\"packet_hex\": \"zz\"}"),
       "line 4: " + P + ".test_run.packet_hex", "hex digits"},
      {program("\"attach\": \"test_run\", \"test_run\": {\"packet\": \"ipx\"}"),
       "line 4: " + P + ".test_run.packet", "not a built-in packet"},
      {program("\"attach\": \"test_run\", \"test_run\": {\"repeat\": 0}"),
       "line 4: " + P + ".test_run.repeat", "from 1 to 1000000"},
      // Expectations.
      {program("\"expect\": {\"retval\": 2}"), "line 4: " + P + ".expect.retval", "only a test_run program"},
      {program("\"attach\": \"test_run\", \"expect\": {\"retval\": 1.5}"), "line 4: " + P + ".expect.retval",
       "must be an integer"},
      {program("\"expect\": {\"runs\": -1}"), "line 4: " + P + ".expect.runs", "from 1 to 1000000"},
      {program("\"expect\": {\"runs\": 1000001}"), "line 4: " + P + ".expect.runs", "from 1 to 1000000"},
      {program("\"expect\": {\"runs\": \"twice\"}"), "line 4: " + P + ".expect.runs", "\"count\""},
      {program("\"expect\": {\"runs\": {\"count\": 0}}"), "line 4: " + P + ".expect.runs.count",
       "from 1 to 1000000"},
      {program("\"expect\": {\"runs\": {\"times\": 2}}"), "line 4: " + P + ".expect.runs.times",
       "unknown key"},
      {program("\"expect\": {\"runs\": 1,\n \"runs\": 2}"), "line 5: " + P + ".expect.runs",
       "appears twice in one object (first on line 4)"},
      {program("\"expect\": {\"records\": {\"ring\": \"events\", \"nonce\": {\"offset\": 1048577}}}"),
       "line 4: " + P + ".expect.records.nonce.offset", "from 0 to 1048576"},
      {program("\"expect\": {\"records\": {\"ring\": \"events\", \"nonce\": {\"encoding\": \"base64\"}}}"),
       "line 4: " + P + ".expect.records.nonce.encoding", "not an encoding"},
      {program("\"expect\": {\"records\": {\"where\": {\"string\": \"x\"}}}"),
       "line 4: " + P + ".expect.records", "needs \"ring\""},
      {program("\"expect\": {\"records\": {\"ring\": \"events\", \"where\": {\"offset\": -1, \"string\": "
               "\"x\"}}}"),
       "line 4: " + P + ".expect.records.where.offset", "from 0 to 1048576"},
      {program("\"expect\": {\"records\": {\"ring\": \"events\", \"where\": {\"string\": \"\"}}}"),
       "line 4: " + P + ".expect.records.where.string", "must not be empty"},
      {program("\"expect\": {\"records\": {\"ring\": \"events\", \"min\": 0}}"),
       "line 4: " + P + ".expect.records.min", "from 1 to 1000000"},
      {program("\"expect\": {\"map_nonce\": {\"offset\": 0}}"), "line 4: " + P + ".expect.map_nonce",
       "needs \"map\""},
      {program("\"expect\": {\"loads\": \"yes\"}"), "line 4: " + P + ".expect.loads", "true or false"},
      {program("\"expect\": {\"loads\": false, \"runs\": 1}"), "line 4: " + P + ".expect.runs",
       "refused by the verifier"},
      {program("\"trigger\": \"getpid\", \"expect\": {\"loads\": false}"), "line 4: " + P + ".trigger",
       "refused by the verifier"},
      {program("\"attach\": \"load_only\", \"expect\": {\"attaches\": false}"),
       "line 4: " + P + ".expect.attaches", "only an auto-attached program"},
      {program("\"expect\": {\"attaches\": false, \"records\": {\"ring\": \"e\"}}"),
       "line 4: " + P + ".expect.records", "refused at attach"},
      {program("\"attach\": \"load_only\", \"expect\": {\"runs\": 1}"), "line 4: " + P + ".expect.runs",
       "never runs"},
      // Skips.
      {program("\"skip\": [{\"arch\": \"arm64\"}]"), "line 4: " + P + ".skip[0]", "needs \"reason\""},
      {program("\"skip\": [{\"reason\": \"x\"}]"), "line 4: " + P + ".skip[0]",
       "needs \"arch\" or \"kernel_below\""},
      {program("\"skip\": [{\"arch\": \"sparc\", \"reason\": \"x\"}]"), "line 4: " + P + ".skip[0].arch",
       "not an arch"},
      {program("\"skip\": [{\"arch\": [\"arm64\", \"aarch64\"], \"reason\": \"x\"}]"),
       "line 4: " + P + ".skip[0].arch[1]", "listed twice"},
      {program("\"skip\": [{\"kernel_below\": \"5.x\", \"reason\": \"r\"}]"),
       "line 4: " + P + ".skip[0].kernel_below", "not a kernel version"},
      {program("\"skip\": [{\"arch\": \"arm64\", \"reason\": \"\"}]"), "line 4: " + P + ".skip[0].reason",
       "must not be empty"},
      {program("\"skip\": {\"arch\": \"arm64\"}"), "line 4: " + P + ".skip", "must be an array"},
  };
  for (const auto& row : rows) {
    CAPTURE(row.text);
    auto r = parse(row.text);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().cls() == FailureClass::usage);
    const std::string msg = r.error().describe();
    CAPTURE(msg);
    CHECK(msg.starts_with("ci/spec.json: "));
    CHECK(msg.find(row.where + ":") != std::string::npos);
    CHECK(msg.find(row.what) != std::string::npos);
  }
}

namespace {

constexpr const char* full_example = R"({
  "schema": "kgate.spec/1",
  "description": "every key",
  "objects": [
    {
      "name": "agent",
      "path": {"amd64": "build/agent.x86.bpf.o", "arm64": "/abs/agent.arm64.bpf.o"},
      "nonce": {"global": "kgate_nonce"},
      "maps": ["events", "seen"],
      "requires": {"min_kernel": "5.8", "btf": false},
      "programs": {
        "handle_getpid": {
          "trigger": "getpid",
          "expect": {
            "records": {"ring": "events", "where": {"offset": 24, "string": "handle_getpid"},
                        "nonce": {"offset": 0, "encoding": "u64le"}},
            "map_nonce": {"map": "seen", "offset": 8, "encoding": "hex"}
          },
          "skip": [{"arch": "arm64", "reason": "no such tracepoint"}, {"kernel_below": "5.15", "reason": "old"}]
        },
        "handle_xdp": {
          "attach": "test_run",
          "test_run": {"packet_hex": "00ff", "repeat": 4},
          "expect": {"retval": 2, "runs": {"count": 4}}
        },
        "handle_uprobe": {
          "target": {"binary": "/kgate/files/target", "function": "fn"},
          "trigger": {"kind": "call", "binary": "/kgate/files/target", "function": "fn", "args": ["{nonce}"]},
          "expect": {"runs": 8, "records": {"ring": "events", "min": 3}}
        },
        "handle_open": {"trigger": {"kind": "openat"}},
        "handle_cmd": {"trigger": {"kind": "command", "args": ["/kgate/files/tool", "{nonce}"]},
                       "expect": {"runs": "count"}},
        "verifier_gate": {"attach": "load_only", "expect": {"loads": false}},
        "attach_refused": {"expect": {"attaches": false}},
        "usdt_prog": {"target": {"binary": "/usr/bin/x", "provider": "prov", "probe": "hit"}}
      }
    },
    {"name": "probe", "builtin": "probe"},
    {"name": "one.path", "path": "../objs/one.bpf.o", "nonce": {"map": "kgate_nonce"}}
  ],
  "files": [
    {"source": "bin/target", "dest": "/kgate/files/target", "mode": "0755"},
    {"source": {"x86_64": "/abs/tool.x86", "aarch64": "tool.arm64"}, "dest": "/kgate/files/tool"}
  ]
})";

}  // namespace

TEST_CASE("parse_spec reads every key of a complete spec, with its defaults") {
  auto r = parse(full_example);
  REQUIRE_MESSAGE(r.has_value(), error_of(r));
  const Spec& s = *r;
  CHECK(s.file == "ci/spec.json");
  CHECK(s.description == "every key");
  REQUIRE(s.objects.size() == 3);
  const ObjectSpec& a = s.objects[0];
  CHECK(a.name == "agent");
  CHECK(a.line == 5);
  CHECK(a.json_path == "objects[0]");
  CHECK(a.paths.at("x86_64") == "/repo/ci/build/agent.x86.bpf.o");
  CHECK(a.paths.at("arm64") == "/abs/agent.arm64.bpf.o");
  CHECK(a.builtin.empty());
  CHECK(a.nonce.kind == NonceSource::Kind::global);
  CHECK(a.nonce.name == "kgate_nonce");
  CHECK(a.maps == std::vector<std::string>{"events", "seen"});
  CHECK(a.min_kernel == "5.8");
  CHECK_FALSE(a.needs_btf);
  REQUIRE(a.programs.size() == 8);
  // In the file's order.
  CHECK(a.programs[0].name == "handle_getpid");
  CHECK(a.programs[7].name == "usdt_prog");

  const ProgramSpec* g = a.find("handle_getpid");
  REQUIRE(g != nullptr);
  CHECK(g->line == 12);
  CHECK(g->json_path == "objects[0].programs.handle_getpid");
  CHECK(g->attach == AttachMode::auto_attach);
  CHECK(g->trigger.kind == TriggerKind::getpid);
  REQUIRE(g->expect.runs.has_value());  // a trigger's default: at least once per round
  CHECK(g->expect.runs->per_trigger);
  CHECK(g->expect.runs->resolve(5) == 5);
  REQUIRE(g->expect.records.has_value());
  CHECK(g->expect.records->ring == "events");
  REQUIRE(g->expect.records->where.has_value());
  CHECK(g->expect.records->where->offset == 24);
  CHECK(g->expect.records->where->string == "handle_getpid");
  CHECK(g->expect.records->min.per_trigger);  // default "count" with a trigger
  REQUIRE(g->expect.records->nonce.has_value());
  CHECK(g->expect.records->nonce->encoding == NonceEncoding::u64le);
  REQUIRE(g->expect.map_nonce.has_value());
  CHECK(g->expect.map_nonce->map == "seen");
  CHECK(g->expect.map_nonce->at.offset == 8);
  CHECK(g->expect.map_nonce->at.encoding == NonceEncoding::hex);
  REQUIRE(g->skip.size() == 2);
  CHECK(g->skip[0].arches == std::vector<std::string>{"arm64"});
  CHECK(g->skip[0].reason == "no such tracepoint");
  CHECK(g->skip[1].kernel_below == "5.15");
  CHECK(g->expect.loads);
  CHECK(g->expect.attaches);

  const ProgramSpec* x = a.find("handle_xdp");
  REQUIRE(x != nullptr);
  CHECK(x->attach == AttachMode::test_run);
  CHECK(x->test_run.packet_hex == "00ff");
  CHECK(x->test_run.packet.empty());
  CHECK(x->test_run.repeat == 4);
  CHECK(x->expect.retval == 2);
  CHECK(x->expect.runs->resolve(3) == 12);

  const ProgramSpec* u = a.find("handle_uprobe");
  REQUIRE(u != nullptr);
  REQUIRE(u->target.has_value());
  CHECK(u->target->binary == "/kgate/files/target");
  CHECK(u->target->function == "fn");
  CHECK(u->trigger.kind == TriggerKind::call);
  CHECK(u->trigger.binary == "/kgate/files/target");
  CHECK(u->trigger.args == std::vector<std::string>{"{nonce}"});
  CHECK_FALSE(u->expect.runs->per_trigger);
  CHECK(u->expect.runs->value == 8);
  CHECK(u->expect.records->min.value == 3);
  CHECK_FALSE(u->expect.records->min.per_trigger);

  CHECK(a.find("handle_open")->trigger.path == "/tmp/kgate-trigger-{nonce}");
  CHECK(a.find("handle_cmd")->trigger.args.size() == 2);
  CHECK(a.find("handle_cmd")->expect.runs->per_trigger);
  CHECK_FALSE(a.find("verifier_gate")->expect.loads);
  CHECK_FALSE(a.find("verifier_gate")->expect.runs.has_value());
  CHECK_FALSE(a.find("attach_refused")->expect.attaches);
  CHECK(a.find("usdt_prog")->target->provider == "prov");
  CHECK(a.find("nope") == nullptr);

  CHECK(s.objects[1].builtin == "probe");
  CHECK(s.objects[1].paths.empty());
  CHECK(s.objects[2].paths.at("x86_64") == "/repo/objs/one.bpf.o");
  CHECK(s.objects[2].paths.at("arm64") == "/repo/objs/one.bpf.o");
  CHECK(s.objects[2].nonce.kind == NonceSource::Kind::map);
  CHECK(s.objects[2].needs_btf);

  REQUIRE(s.files.size() == 2);
  CHECK(s.files[0].sources.at("x86_64") == "/repo/ci/bin/target");
  CHECK(s.files[0].sources.at("arm64") == "/repo/ci/bin/target");
  CHECK(s.files[0].dest == "/kgate/files/target");
  CHECK(s.files[0].mode == 0755);
  CHECK(s.files[1].mode == 0644);
  CHECK(s.files[1].sources ==
        std::map<std::string, fs::path>{{"x86_64", "/abs/tool.x86"}, {"arm64", "/repo/ci/tool.arm64"}});
  CHECK(s.line_of("objects[0].programs.handle_xdp.expect.retval") == 24);
  CHECK(s.line_of("files[1]") == 44);
}

TEST_CASE("names of the spec's enums") {
  CHECK(attach_mode_name(AttachMode::test_run) == "test_run");
  CHECK(attach_mode_name(AttachMode::auto_attach) == "auto");
  CHECK(trigger_kind_name(TriggerKind::nanosleep) == "nanosleep");
  CHECK(nonce_encoding_name(NonceEncoding::u64be) == "u64be");
}

TEST_CASE("object_only_spec: one object for both arches, every program by default") {
  Spec s = object_only_spec("/tmp/x/agent.bpf.o");
  REQUIRE(s.objects.size() == 1);
  CHECK(s.objects[0].name == "agent");
  CHECK(s.objects[0].paths.at("x86_64") == "/tmp/x/agent.bpf.o");
  CHECK(s.objects[0].paths.at("arm64") == "/tmp/x/agent.bpf.o");
  CHECK(s.objects[0].programs.empty());
}

TEST_CASE("load_spec reads a file and resolves paths against its directory") {
  auto dir = TempDir::create("kgate-spec-test");
  REQUIRE(dir.has_value());
  fs::path file = dir->path() / "spec.json";
  REQUIRE(write_file_atomic(file, top("")).has_value());
  auto s = load_spec(file);
  REQUIRE_MESSAGE(s.has_value(), error_of(s));
  CHECK(s->objects[0].paths.at("arm64") == dir->path() / "o.bpf.o");
  auto missing = load_spec(dir->path() / "none.json");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().cls() == FailureClass::usage);
  CHECK(missing.error().describe().find("none.json") != std::string::npos);
}

TEST_CASE("json_doc: lines by JSON path") {
  const std::string text = "{\n  \"a\": 1,\n  \"b\": [true,\n    {\"c\": 2.5}],\n  \"d e\": \"x\"\n}";
  auto doc = parse_json_doc(text, "t.json");
  REQUIRE(doc.has_value());
  CHECK(doc->line_of("") == 1);
  CHECK(doc->line_of("a") == 2);  // a member: the line of its key
  CHECK(doc->line_of("b") == 3);
  CHECK(doc->line_of("b[0]") == 3);
  CHECK(doc->line_of("b[1]") == 4);
  CHECK(doc->line_of("b[1].c") == 4);
  CHECK(doc->line_of("[\"d e\"]") == 5);
  CHECK(doc->line_of("nope") == 0);
  CHECK(doc->root()["b"][1]["c"] == 2.5);
  // An array element's line is where its token is, even when the lexer has read past the newline.
  auto arr = parse_json_doc("[1\n,2,\n\n3\n]", "t.json");
  REQUIRE(arr.has_value());
  CHECK(arr->line_of("[0]") == 1);
  CHECK(arr->line_of("[1]") == 2);
  CHECK(arr->line_of("[2]") == 4);
}

TEST_CASE("json_doc: a duplicate key is named with its line and path") {
  auto doc = parse_json_doc("{\n \"a\": 1,\n \"b\": {\"c\": 1,\n  \"c\": 2}}", "t.json");
  REQUIRE_FALSE(doc.has_value());
  CHECK(doc.error().cls() == FailureClass::usage);
  CHECK(doc.error().describe() ==
        "t.json: line 4: b.c: the key \"c\" appears twice in one object (first on line 3)");
}

TEST_CASE("json_doc: invalid JSON with its line and column") {
  auto doc = parse_json_doc("{\n  \"a\": 1,\n  \"b\": tru\n}", "t.json");
  REQUIRE_FALSE(doc.has_value());
  const std::string msg = doc.error().describe();
  CAPTURE(msg);
  // The newline that ends the bad literal is on line 3, after its 10 characters.
  CHECK(msg.starts_with("t.json: not valid JSON at line 3, column 11: "));
  CHECK(msg.find("invalid literal") != std::string::npos);
  CHECK(msg.find("json.exception") == std::string::npos);
  CHECK_FALSE(parse_json_doc("", "t.json").has_value());
  CHECK_FALSE(parse_json_doc("{} x", "t.json").has_value());
  CHECK_FALSE(parse_json_doc("[1e400]", "t.json").has_value());
  CHECK_FALSE(parse_json_doc("{\"a\": 1,}", "t.json").has_value());
}

TEST_CASE("json_doc: NUL bytes in strings and keys are refused") {
  auto v = parse_json_doc("{\"a\": [\"x\\u0000y\"]}", "t.json");
  REQUIRE_FALSE(v.has_value());
  CHECK(v.error().describe() == "t.json: line 1: a[0]: must not contain a NUL byte (\\u0000)");
  auto k = parse_json_doc("{\"a\\u0000\": 1}", "t.json");
  REQUIRE_FALSE(k.has_value());
  CHECK(k.error().describe().find("a key must not contain a NUL byte") != std::string::npos);
}

TEST_CASE("json_doc: nesting beyond the limit fails cleanly, however deep") {
  std::string deep(100000, '[');
  auto open = parse_json_doc(deep, "t.json");
  REQUIRE_FALSE(open.has_value());
  CHECK(open.error().describe().find("nest deeper than 64 levels") != std::string::npos);
  auto closed = parse_json_doc(deep + std::string(100000, ']'), "t.json");
  REQUIRE_FALSE(closed.has_value());
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  CHECK_FALSE(parse_json_doc(objects, "t.json").has_value());
  // At the limit it parses.
  CHECK(parse_json_doc(std::string(64, '[') + std::string(64, ']'), "t.json").has_value());
  CHECK_FALSE(parse_json_doc(std::string(65, '[') + std::string(65, ']'), "t.json").has_value());
  CHECK(parse_json_doc(std::string(3, '[') + std::string(3, ']'), "t.json", 3).has_value());
}

TEST_CASE("JsonReader: checked getters name the file, line and path") {
  auto doc =
      parse_json_doc("{\"o\": {\n \"s\": 1,\n \"n\": 99,\n \"l\": [\"a\", 2],\n \"b\": \"no\"}}", "r.json");
  REQUIRE(doc.has_value());
  JsonReader root(*doc);
  auto o = root.object("o");
  REQUIRE(o.has_value());
  REQUIRE(o->has_value());
  const JsonReader& r = **o;
  CHECK(r.path() == "o");
  CHECK(r.string("s").error().describe() == "r.json: line 2: o.s: must be a string");
  CHECK(r.integer("n", 0, 10).error().describe() == "r.json: line 3: o.n: must be an integer from 0 to 10");
  CHECK(r.integer("n", 0, 100).value() == 99);
  CHECK(r.strings("l").error().describe() == "r.json: line 4: o.l[1]: must be a string");
  CHECK(r.boolean("b").error().describe() == "r.json: line 5: o.b: must be true or false");
  CHECK_FALSE(r.string("absent").value().has_value());
  auto keys = r.only_keys({"s", "n", "l"});
  REQUIRE_FALSE(keys.has_value());
  CHECK(keys.error().describe().starts_with("r.json: line 5: o.b: unknown key"));
  CHECK(r.keys() == std::vector<std::string>{"b", "l", "n", "s"});
}

// --- check_spec against the build's own gate objects ---

namespace {

fs::path build_object(const std::string& file) {
  const char* root = std::getenv("KGATE_BUILD_ROOT");
  REQUIRE_MESSAGE(root != nullptr, "KGATE_BUILD_ROOT is not set (run through meson test)");
  fs::path p = fs::path(root) / "bpf" / file;
  REQUIRE_MESSAGE(path_exists(p), (p.string() + " is missing: build bpf/" + file));
  return p;
}

// A spec on the probe object: `path` is the object's "path" value, `programs` its programs' keys.
Result<Spec> probe_spec(const std::string& path, const std::string& programs, const std::string& extra = "") {
  return parse_spec("{\"schema\": \"kgate.spec/1\",\n \"objects\": [{\"name\": \"probe\",\n  \"path\": " +
                        path + extra + ",\n  \"programs\": {\n" + programs + "\n}}]}",
                    "ci/probe.json", "/");
}

std::string check_error(const Result<Spec>& s, std::string_view arch) {
  REQUIRE_MESSAGE(s.has_value(), error_of(s));
  auto c = check_spec(*s, arch);
  if (c) return "(checked)";
  CHECK(c.error().cls() == FailureClass::usage);
  return c.error().describe();
}

std::string quoted(const fs::path& p) {
  return "\"" + p.string() + "\"";
}

}  // namespace

TEST_CASE("check_spec accepts a spec that fits its objects, and returns them read") {
  fs::path x86 = build_object("probe.x86.bpf.o");
  fs::path arm = build_object("probe.arm64.bpf.o");
  auto s = probe_spec(
      "{\"x86_64\": " + quoted(x86) + ", \"arm64\": " + quoted(arm) + "}",
      "\"on_getpid\": {\"trigger\": \"getpid\", \"expect\": {\"records\": {\"ring\": \"events\"}}},\n"
      "\"on_uprobe\": {\"trigger\": \"getpid\"}",
      ", \"nonce\": {\"map\": \"kgate_nonce\"}, \"maps\": [\"events\"]");
  REQUIRE_MESSAGE(s.has_value(), error_of(s));
  for (const char* arch : {"x86_64", "arm64", "aarch64"}) {
    auto c = check_spec(*s, arch);
    REQUIRE_MESSAGE(c.has_value(), c.error().describe());
    REQUIRE(c->size() == 1);
    const CheckedObject& o = (*c)[0];
    CHECK(o.spec == &s->objects[0]);
    CHECK(o.index == 0);
    CHECK(o.path == (std::string_view(arch) == "x86_64" ? x86 : arm));
    CHECK(o.size == o.bytes.size());
    CHECK(o.sha256 == sha256_hex(std::string_view(o.bytes)));
    CHECK(o.info.sha256 == o.sha256);
    CHECK(o.layout.programs.size() == 2);
  }
  CHECK(check_error(s, "sparc").find("not an arch") != std::string::npos);
}

TEST_CASE("check_spec refuses an object built for the other arch, naming the registers it reads") {
  fs::path x86 = build_object("probe.x86.bpf.o");
  auto s = probe_spec("{\"x86_64\": " + quoted(x86) + ",\n  \"arm64\": " + quoted(x86) + "}", "");
  std::string msg = check_error(s, "arm64");
  CAPTURE(msg);
  CHECK(msg.starts_with("ci/probe.json: line 4: objects[0].path.arm64: " + x86.string()));
  CHECK(msg.find("built for x86, not arm64") != std::string::npos);
  CHECK(msg.find("pt_regs.di") != std::string::npos);
  CHECK(check_error(s, "x86_64") == "(checked)");
}

TEST_CASE("check_spec refuses what the object cannot do, saying where in the spec") {
  const std::string x86 = quoted(build_object("probe.x86.bpf.o"));
  struct Row {
    std::string programs;
    std::string extra;
    std::string where;
    std::string what;
  };
  const std::string gp = "objects[0].programs.";
  const std::vector<Row> rows = {
      {"\"nope\": {}", "", "line 5: " + gp + "nope", "no program \"nope\" (it has on_getpid (tracepoint)"},
      {"\"on_uprobe\": {\"attach\": \"test_run\"}", "", "line 5: " + gp + "on_uprobe.attach",
       "test_run cannot run \"on_uprobe\" (type kprobe, section "
       "\"uprobe//proc/self/exe:kgate_uprobe_target\")"},
      {"\"on_getpid\": {\"expect\": {\"records\": {\"ring\": \"kgate_nonce\"}}}", "",
       "line 5: " + gp + "on_getpid.expect.records.ring", "map of type array, not ringbuf"},
      {"\"on_getpid\": {\"expect\": {\"records\": {\"ring\": \"ring\"}}}", "",
       "line 5: " + gp + "on_getpid.expect.records.ring",
       "no map \"ring\" (it has kgate_nonce (array), events (ringbuf))"},
      {"\"on_getpid\": {\"expect\": {\"map_nonce\": {\"map\": \"seen\"}}}", "",
       "line 5: " + gp + "on_getpid.expect.map_nonce.map", "no map \"seen\""},
      {"\"on_getpid\": {\"target\": {\"binary\": \"/x\", \"function\": \"f\"}}", "",
       "line 5: " + gp + "on_getpid.target", "only a uprobe or usdt program takes a target"},
      {"\"on_uprobe\": {\"target\": {\"binary\": \"/x\", \"provider\": \"p\", \"probe\": \"q\"}}", "",
       "line 5: " + gp + "on_uprobe.target", "uprobe program's target needs \"function\""},
      {"\"on_uprobe\": {\"target\": {\"binary\": \"/proc/self/exe\", \"function\": \"main\"}}", "",
       "line 5: " + gp + "on_uprobe.target",
       "only function a uprobe can name is kgate_uprobe_target, not main"},
      {"", ", \"maps\": [\"events\", \"lost\"]", "line 3: objects[0].maps[1]", "no map \"lost\""},
      {"", ", \"nonce\": {\"map\": \"events\"}", "line 3: objects[0].nonce.map",
       "map of type ringbuf; the nonce goes into key 0 of an array map"},
      {"", ", \"nonce\": {\"map\": \"missing\"}", "line 3: objects[0].nonce.map", "no map \"missing\""},
      {"", ", \"nonce\": {\"global\": \"kgate_nonce\"}", "line 3: objects[0].nonce.global",
       "no global \"kgate_nonce\""},
  };
  for (const auto& row : rows) {
    CAPTURE(row.programs);
    CAPTURE(row.extra);
    std::string msg = check_error(probe_spec(x86, row.programs, row.extra), "x86_64");
    CAPTURE(msg);
    CHECK(msg.starts_with("ci/probe.json: " + row.where + ":"));
    CHECK(msg.find(row.what) != std::string::npos);
  }
  // A getpid trigger on the uprobe is accepted: the program is attached, the trigger just runs.
  CHECK(check_error(probe_spec(x86, "\"on_uprobe\": {\"trigger\": \"getpid\"}"), "x86_64") == "(checked)");
  CHECK(check_error(probe_spec(x86, "\"on_uprobe\": {\"attach\": \"load_only\"}"), "x86_64") == "(checked)");
  CHECK(check_error(probe_spec(x86,
                               "\"on_uprobe\": {\"target\": {\"binary\": \"/proc/self/exe\", "
                               "\"function\": \"kgate_uprobe_target\"}}"),
                    "x86_64") == "(checked)");
}

TEST_CASE("check_spec: a missing arch, a missing file, a file that is not an object") {
  const std::string x86 = quoted(build_object("probe.x86.bpf.o"));
  std::string msg = check_error(probe_spec("{\"x86_64\": " + x86 + "}", ""), "arm64");
  CHECK(msg.starts_with("ci/probe.json: line 3: objects[0].path: no object file for arm64"));
  msg = check_error(probe_spec("\"/nonexistent/x.bpf.o\"", ""), "x86_64");
  CHECK(msg.starts_with("ci/probe.json: line 3: objects[0].path: cannot read the object"));
  CHECK(msg.find("/nonexistent/x.bpf.o") != std::string::npos);
  auto dir = TempDir::create("kgate-spec-test");
  REQUIRE(dir.has_value());
  REQUIRE(write_file_atomic(dir->path() / "text.o", "not ELF at all").has_value());
  msg = check_error(probe_spec(quoted(dir->path() / "text.o"), ""), "x86_64");
  CHECK(
      msg.starts_with("ci/probe.json: line 3: objects[0].path: " + (dir->path() / "text.o").string() + ": "));
  // A built-in object comes from the caller.
  auto b =
      parse_spec("{\"schema\": \"kgate.spec/1\", \"objects\": [{\"name\": \"p\", \"builtin\": \"probe\"}]}",
                 "b.json", "/");
  REQUIRE(b.has_value());
  CHECK_FALSE(check_spec(*b, "x86_64").has_value());
  auto bytes = read_file(build_object("probe.x86.bpf.o"));
  REQUIRE(bytes.has_value());
  auto c = check_spec(*b, "x86_64", {{"probe", *bytes}});
  REQUIRE_MESSAGE(c.has_value(), c.error().describe());
  CHECK((*c)[0].path.empty());
  CHECK((*c)[0].layout.maps.size() == 2);
  // The globals of its data sections, from BTF: the license string, and no map definitions.
  const auto& globals = (*c)[0].layout.globals;
  REQUIRE(globals.size() == 1);
  CHECK(globals[0].name == "LICENSE");
  CHECK(globals[0].section == "license");
  CHECK(globals[0].size == 4);
}

namespace {

bpf::ObjectLayout synthetic_layout() {
  bpf::ObjectLayout l;
  l.programs = {{"up", "uprobe", "kprobe", 4},
                {"usdt_p", "usdt", "kprobe", 4},
                {"xdp_p", "xdp", "xdp", 4},
                {"bare_kp", "kprobe", "kprobe", 4}};
  l.maps = {{"nonce_arr", "array", 1}, {".rodata", "array", 1}};
  l.globals = {{"kgate_nonce", ".rodata", 8}, {"counter", ".bss", 8}, {"small", ".rodata", 4}};
  return l;
}

std::string check_synthetic(const std::string& programs, const std::string& extra = "") {
  auto s = parse_spec("{\"schema\": \"kgate.spec/1\",\n \"objects\": [{\"name\": \"o\", \"path\": \"o.o\"" +
                          extra + ",\n  \"programs\": {\n" + programs + "\n}}]}",
                      "s.json", "/");
  REQUIRE_MESSAGE(s.has_value(), error_of(s));
  auto st = check_object(*s, 0, synthetic_layout());
  return st ? "(checked)" : st.error().describe();
}

}  // namespace

TEST_CASE("check_object: program types decide what attach and triggers can do") {
  const std::string named_rest =
      "\"usdt_p\": {\"attach\": \"load_only\"}, \"xdp_p\": {\"attach\": \"test_run\"}, "
      "\"bare_kp\": {\"attach\": \"load_only\"}";
  // A uprobe whose section names no target needs one from the spec.
  std::string msg = check_synthetic("\"up\": {},\n" + named_rest);
  CAPTURE(msg);
  CHECK(msg.starts_with("s.json: line 4: objects[0].programs.up.attach: "));
  CHECK(msg.find("names no binary to probe, and the spec gives no \"target\"") != std::string::npos);
  CHECK(check_synthetic("\"up\": {\"target\": {\"binary\": \"/b\", \"function\": \"f\"}},\n" + named_rest) ==
        "(checked)");
  // usdt: provider and probe.
  msg = check_synthetic(
      "\"up\": {\"attach\": \"load_only\"}, \"usdt_p\": {\"target\": {\"binary\": \"/b\", \"function\": "
      "\"f\"}}, "
      "\"xdp_p\": {\"attach\": \"test_run\"}, \"bare_kp\": {\"attach\": \"load_only\"}");
  CHECK(msg.find("usdt program's target needs \"provider\" and \"probe\"") != std::string::npos);
  // A getpid trigger cannot run an xdp program.
  msg = check_synthetic("\"xdp_p\": {\"trigger\": \"getpid\"}");
  CHECK(msg.starts_with("s.json: line 4: objects[0].programs.xdp_p.trigger: a getpid trigger cannot run"));
  // Nor can libbpf auto-attach one.
  msg = check_synthetic("\"xdp_p\": {}");
  CHECK(msg.find("objects[0].programs.xdp_p.attach: \"xdp_p\" (type xdp, section \"xdp\") cannot be "
                 "auto-attached") != std::string::npos);
  // A kprobe whose section names no function.
  msg = check_synthetic("\"bare_kp\": {},\"up\": {\"attach\": \"load_only\"}");
  CHECK(msg.find("section \"kprobe\" names nothing to attach to") != std::string::npos);
  // Programs the spec does not name are auto-attached: they must be able to be.
  msg = check_synthetic("\"up\": {\"attach\": \"load_only\"}");
  CHECK(msg.starts_with("s.json: line 3: objects[0].programs: the object's program \"usdt_p\""));
  // Negative controls are not held to attachability.
  CHECK(
      check_synthetic("\"xdp_p\": {\"expect\": {\"attaches\": false}}, \"up\": {\"attach\": \"load_only\"}, "
                      "\"usdt_p\": {\"attach\": \"load_only\"}, \"bare_kp\": {\"attach\": \"load_only\"}") ==
      "(checked)");
}

TEST_CASE("check_object: nonce globals must be const volatile u64s in .rodata") {
  const std::string all =
      "\"up\": {\"attach\": \"load_only\"}, \"usdt_p\": {\"attach\": \"load_only\"}, \"xdp_p\": {\"attach\": "
      "\"load_only\"}, \"bare_kp\": {\"attach\": \"load_only\"}";
  CHECK(check_synthetic(all, ", \"nonce\": {\"global\": \"kgate_nonce\"}") == "(checked)");
  CHECK(check_synthetic(all, ", \"nonce\": {\"map\": \"nonce_arr\"}") == "(checked)");
  std::string msg = check_synthetic(all, ", \"nonce\": {\"global\": \"counter\"}");
  CHECK(msg.starts_with("s.json: line 2: objects[0].nonce.global: \"counter\" is in .bss, not .rodata"));
  msg = check_synthetic(all, ", \"nonce\": {\"global\": \"small\"}");
  CHECK(msg.find("is 4 bytes, not a __u64") != std::string::npos);
}

TEST_CASE("section_target") {
  CHECK(section_target("uprobe//proc/self/exe:kgate_uprobe_target").kind == "uprobe");
  CHECK(section_target("uprobe//proc/self/exe:kgate_uprobe_target").names_target);
  CHECK(section_target("uretprobe.s/bin/x:f").names_target);
  CHECK(section_target("uprobe").kind == "uprobe");
  CHECK_FALSE(section_target("uprobe").names_target);
  CHECK(section_target("usdt").kind == "usdt");
  CHECK(section_target("usdt/bin/x:prov:probe").names_target);
  CHECK(section_target("uprobe_fake").kind.empty());
  CHECK(section_target("kprobe/do_sys_open").kind.empty());
}

TEST_CASE("parse_spec: a loader from an image is not shipped; the image's forms") {
  auto s = parse(R"({"schema": "kgate.spec/1",
 "loader": {"image": "oci-layout:images/agent:v1.4.2", "exec": "/usr/bin/agent",
   "programs": {"p": {"type": "kprobe"}}},
 "files": [{"source": "cfg.yaml", "dest": "/etc/agent.yaml"}]})");
  REQUIRE_MESSAGE(s.has_value(), error_of(s));
  const auto& l = *s->loader;
  REQUIRE(l.image.has_value());
  CHECK(l.image->layout == "/repo/ci/images/agent");
  CHECK(l.image->ref == "v1.4.2");
  CHECK(l.image->text() == "oci-layout:/repo/ci/images/agent:v1.4.2");
  CHECK(l.exec_in_image == "/usr/bin/agent");
  CHECK_FALSE(l.wants_nonce());
  CHECK(l.exec.empty());
  CHECK_FALSE(l.args_given);
  CHECK(l.cwd.empty());
  REQUIRE(s->files.size() == 1);  // no loader file

  auto only = parse_image_source("oci-layout:/abs/layout", "/base");
  REQUIRE(only.has_value());
  CHECK(only->layout == "/abs/layout");
  CHECK(only->ref.empty());
  auto remote = parse_image_source("docker://ghcr.io/org/agent@sha256:" + std::string(64, 'a'), "/base");
  REQUIRE(remote.has_value());
  CHECK(remote->remote == "ghcr.io/org/agent@sha256:" + std::string(64, 'a'));
  CHECK(remote->text() == "docker://ghcr.io/org/agent@sha256:" + std::string(64, 'a'));
  CHECK_FALSE(parse_image_source("./layout", "/base").has_value());
}

TEST_CASE("parse_spec: a spec with a loader and no objects; the loader ships as a file") {
  auto s = parse(R"({"schema": "kgate.spec/1",
 "loader": {"exec": {"x86_64": "agent.x86", "arm64": "/abs/agent.arm"}, "args": ["--nonce", "{nonce}"],
   "env": {"LOG": "debug"}, "cwd": "/tmp", "ready": {"timeout_s": 12, "line": "ready"}, "stop": {"grace_s": 2},
   "programs": {"handle_exec": {"type": "tracepoint", "trigger": "execve", "expect": {"runs": "count"}},
                "xdp_main": {"type": "xdp", "expect": {"attached": false}}}},
 "files": [{"source": "cfg.yaml", "dest": "/etc/agent.yaml"}]})");
  REQUIRE_MESSAGE(s.has_value(), error_of(s));
  CHECK(s->objects.empty());
  REQUIRE(s->loader.has_value());
  const auto& l = *s->loader;
  CHECK(l.exec.at("x86_64") == "/repo/ci/agent.x86");
  CHECK(l.exec.at("arm64") == "/abs/agent.arm");
  CHECK(l.dest == "/kgate/loader/loader");
  CHECK(l.args == std::vector<std::string>{"--nonce", "{nonce}"});
  CHECK(l.env == std::vector<std::string>{"LOG=debug"});
  CHECK(l.cwd == "/tmp");
  CHECK(l.ready_timeout_s == 12);
  CHECK(l.ready_line == "ready");
  CHECK(l.stop_grace_s == 2);
  REQUIRE(l.programs.size() == 2);
  CHECK(l.programs[0].name == "handle_exec");
  CHECK(l.programs[0].trigger.kind == TriggerKind::execve);
  CHECK(l.programs[0].runs->per_trigger);
  CHECK(l.programs[1].type == "xdp");
  CHECK_FALSE(l.programs[1].attached);
  REQUIRE(s->files.size() == 2);
  CHECK(s->files[1].dest == "/kgate/loader/loader");
  CHECK(s->files[1].mode == 0755);
  CHECK(s->files[1].sources.at("x86_64") == "/repo/ci/agent.x86");
}

TEST_CASE("spec init proposes by section: a trigger that reaches it, test_run, or load_only with why") {
  auto propose = [](std::string section, std::string type) {
    return propose_program(bpf::ProgramInfo{"p", std::move(section), std::move(type), 1});
  };
  auto trigger_of = [&](const char* section, const char* type) {
    auto p = propose(section, type);
    CAPTURE(section);
    CHECK(p.contains("proposed"));
    return p.contains("trigger") ? p["trigger"].get<std::string>() : std::string("-");
  };
  CHECK(trigger_of("tracepoint/syscalls/sys_enter_getpid", "tracepoint") == "getpid");
  CHECK(trigger_of("tracepoint/syscalls/sys_exit_unlinkat", "tracepoint") == "openat");
  CHECK(trigger_of("tp/syscalls/sys_enter_connect", "tracepoint") == "tcp");
  CHECK(trigger_of("tracepoint/sched/sched_process_exec", "tracepoint") == "execve");
  CHECK(trigger_of("tracepoint/syscalls/sys_enter_acct", "tracepoint") == "-");  // none reaches it
  CHECK(trigger_of("raw_tp/sys_enter", "raw_tracepoint") == "getpid");
  CHECK(trigger_of("tp_btf/sched_process_fork", "tracing") == "execve");
  CHECK(trigger_of("kprobe/do_unlinkat", "kprobe") == "openat");
  CHECK(trigger_of("kprobe/tcp_v4_connect+0x4", "kprobe") == "tcp");
  CHECK(trigger_of("kretprobe/__x64_sys_getpid", "kprobe") == "getpid");
  CHECK(trigger_of("ksyscall/clock_nanosleep", "kprobe") == "nanosleep");
  CHECK(trigger_of("kprobe/some_driver_fn", "kprobe") == "-");
  auto fentry = propose("fentry/do_unlinkat", "tracing");
  CHECK(fentry["trigger"] == "openat");
  CHECK(fentry["skip"][0]["arch"] == "arm64");
  auto xdp = propose("xdp", "xdp");
  CHECK(xdp["attach"] == "test_run");
  CHECK(xdp["test_run"]["packet"] == "ipv4-udp");
  CHECK(propose("tc", "sched_cls")["attach"] == "test_run");
  CHECK(propose("lsm/file_open", "lsm")["attach"] == "load_only");
  CHECK(propose("sk_lookup", "sk_lookup")["attach"] == "load_only");  // its test run takes no packet
  CHECK(propose("cgroup/connect4", "cgroup_sock_addr")["attach"] == "load_only");
  CHECK(propose("uprobe", "kprobe")["attach"] == "load_only");
  auto up = propose("uprobe//usr/bin/app:handle_request", "kprobe");
  CHECK(up["trigger"]["kind"] == "call");
  CHECK(up["trigger"]["binary"] == "/usr/bin/app");
  CHECK(up["trigger"]["function"] == "handle_request");
  CHECK(trigger_for_function("__arm64_sys_openat") == "openat");
  CHECK(trigger_for_syscall("nanosleep").empty());  // glibc sleeps with clock_nanosleep

  // The whole spec parses, as `kgate run --spec` reads it, "proposed" and all.
  InitObject o;
  o.name = "gate";
  o.path = {{"x86_64", "gate.x86_64.bpf.o"}, {"arm64", "gate.arm64.bpf.o"}};
  o.layout.programs = {{"tp", "tracepoint/syscalls/sys_enter_getpid", "tracepoint", 5},
                       {"x", "xdp", "xdp", 5},
                       {"l", "lsm/file_open", "lsm", 5}};
  o.layout.globals = {{"kgate_nonce", ".rodata", 8}};
  const auto doc = propose_spec(o);
  CHECK(doc["objects"][0]["nonce"]["global"] == "kgate_nonce");
  auto spec = parse_spec(doc.dump(), "/p/gate.spec.json", "/p");
  REQUIRE_MESSAGE(spec.has_value(), spec.error().describe());
  REQUIRE(spec->objects[0].programs.size() == 3);
  for (const auto& p : spec->objects[0].programs)
    if (p.name == "tp") CHECK(p.proposed.find("getpid trigger") != std::string::npos);
  CHECK(spec->objects[0].paths.at("arm64") == fs::path("/p/gate.arm64.bpf.o"));
  o.path = {{"", "agent.bpf.o"}};
  CHECK(propose_spec(o)["objects"][0]["path"] == "agent.bpf.o");
}

// The per-program judge, the run verdict, the request planner and the protocol's readers:
// tables of observations a healthy, a broken and a lying guest would send.
#include <doctest/doctest.h>

#include <cstring>
#include <functional>

#include "channel/protocol.hpp"
#include "run/judge.hpp"
#include "run/plan.hpp"

using namespace kgate;
using namespace kgate::run;
using nlohmann::json;

namespace {
const char* nonce = "00112233aabbccdd";
constexpr std::int64_t agent_pid = 1;

// A struct kgate_event record: nonce, tgid, core_tgid, syscall_nr, reserved, prog[16].
std::string event(const std::string& prog, std::uint64_t n, std::uint32_t tgid = 1, std::uint32_t core = 1) {
  std::string r(40, '\0');
  std::memcpy(r.data(), &n, 8);
  std::memcpy(r.data() + 8, &tgid, 4);
  std::memcpy(r.data() + 12, &core, 4);
  std::memcpy(r.data() + 24, prog.data(), std::min<size_t>(prog.size(), 15));
  return r;
}

RunFacts facts() {
  RunFacts f;
  f.nonce = nonce;
  f.count = 4;
  f.arch = "x86_64";
  f.release = "6.1.0-56-amd64";
  f.agent_pid = agent_pid;
  f.kernel_btf = true;
  return f;
}

proto::ProgramLoad loaded(std::string name, std::uint32_t id) {
  proto::ProgramLoad p;
  p.name = std::move(name);
  p.type = "tracepoint";
  p.loaded = true;
  p.prog_id = id;
  p.log =
      "verification time 25 usec\nstack depth 8\nprocessed 65 insns (limit 1000000) max_states_per_insn 0 "
      "total_states 4 peak_states 4 mark_read 2\n";
  return p;
}

// What a healthy agent reports for the built-in probe with count 4.
ObjectObservation healthy() {
  ObjectObservation o;
  o.load.ok = true;
  o.load.handle = 1;
  o.load.programs = {loaded("on_getpid", 10), loaded("on_uprobe", 11)};
  o.attach_reached = true;
  o.attach.ok = true;
  o.attach.programs = {{"on_getpid", true, 20, 0, "", 1.5}, {"on_uprobe", true, 21, 0, "", 7}};
  o.trigger_reached = true;
  o.trigger.ok = true;
  o.drain_reached = true;
  o.drain.ok = true;
  o.drain.stats_enabled = true;
  o.drain.rings = {{"events", 8, 0}};
  o.drain.programs = {{"on_getpid", 4, 1000}, {"on_uprobe", 4, 2000}};
  for (int i = 0; i < 4; ++i) {
    o.records.push_back({0, event("on_getpid", 0x00112233aabbccddull)});
    o.records.push_back({0, event("on_uprobe", 0x00112233aabbccddull)});
  }
  o.detach.ok = true;
  o.detach.reported = true;
  o.detach.closes = {{"on_getpid", 0.5}, {"on_uprobe", 3}, {"on_uprobe", 1}};
  return o;
}

const spec::ObjectSpec& probe() {
  static const spec::Spec s = builtin_probe_spec();
  return s.objects.front();
}

const report::ProgramResult& find(const std::vector<report::ProgramResult>& ps, const std::string& name) {
  for (const auto& p : ps)
    if (p.name == name) return p;
  FAIL("no program " << name);
  return ps.front();
}

bool has_reason(const report::ProgramResult& p, const std::string& r) {
  return std::find(p.reasons.begin(), p.reasons.end(), r) != p.reasons.end();
}
}  // namespace

TEST_CASE("the built-in probe: a healthy report passes, with the verifier's numbers") {
  auto ps = judge_object(probe(), healthy(), facts());
  REQUIRE(ps.size() == 2);
  for (const auto& p : ps) CHECK_MESSAGE(p.verdict == "pass", p.name << ": " << p.error);
  const auto& g = find(ps, "on_getpid");
  CHECK(g.attach_ms == 1.5);
  CHECK(g.detach_ms == 0.5);
  CHECK(find(ps, "on_uprobe").detach_ms == 4);
  CHECK(g.insns_processed == 65);
  CHECK(g.total_states == 4);
  CHECK(g.peak_states == 4);
  CHECK(g.verification_us == 25);
  CHECK(g.stack_depth == "8");
  CHECK(g.run_count == 4u);
  CHECK(g.nonce_records == 4);
  CHECK(judge_run(ps, {}).verdict == FailureClass::pass);
}

TEST_CASE("a replayed report (another run's nonce) fails as nonce_missing") {
  auto o = healthy();
  for (auto& r : o.records) r.bytes = event(std::string(r.bytes.data() + 24), 0x1111);
  auto ps = judge_object(probe(), o, facts());
  CHECK(has_reason(find(ps, "on_getpid"), reason::nonce_missing));
  CHECK(judge_run(ps, {}).verdict == FailureClass::gate_failed);
}

TEST_CASE("records from another process, or with a disagreeing CO-RE read, do not count") {
  for (auto [tgid, core] : {std::pair{2u, 2u}, std::pair{1u, 7u}}) {
    auto o = healthy();
    for (auto& r : o.records)
      r.bytes = event(std::string(r.bytes.data() + 24), 0x00112233aabbccddull, tgid, core);
    auto ps = judge_object(probe(), o, facts());
    CHECK(has_reason(find(ps, "on_uprobe"), reason::nonce_missing));
  }
}

TEST_CASE("one record or one run short of the count fails") {
  auto o = healthy();
  o.records.pop_back();  // an on_uprobe record
  auto ps = judge_object(probe(), o, facts());
  CHECK(find(ps, "on_getpid").verdict == "pass");
  CHECK(has_reason(find(ps, "on_uprobe"), reason::records_missing));

  o = healthy();
  o.drain.programs[0].run_cnt = 3;
  ps = judge_object(probe(), o, facts());
  CHECK(has_reason(find(ps, "on_getpid"), reason::did_not_fire));
  CHECK(find(ps, "on_getpid").error.find("ran 3 times, needs 4") != std::string::npos);

  o = healthy();
  o.drain.stats_enabled = false;
  ps = judge_object(probe(), o, facts());
  CHECK(has_reason(find(ps, "on_getpid"), reason::did_not_fire));
}

TEST_CASE("a failed attach names the program; the other still passes") {
  auto o = healthy();
  o.attach.programs[1] = {"on_uprobe", false, 0, 2, "No such file or directory"};
  auto ps = judge_object(probe(), o, facts());
  CHECK(find(ps, "on_getpid").verdict == "pass");
  const auto& u = find(ps, "on_uprobe");
  CHECK(u.reasons == std::vector<std::string>{reason::attach_failed});
  CHECK(u.error.find("No such file") != std::string::npos);
  auto j = judge_run(ps, {});
  CHECK(j.message.find("on_uprobe [attach_failed]") != std::string::npos);
}

TEST_CASE("refusals are told apart: verifier, CO-RE relocation, BTF, lockdown") {
  struct Row {
    std::string log, libbpf;
    bool kernel_btf;
    std::vector<std::string> lockdown;
    std::string want;
  };
  const Row rows[] = {
      {"0: (85) call bpf_probe_write_user#36\nunknown func bpf_probe_write_user#36\nprocessed 3 insns (limit "
       "1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n",
       "",
       true,
       {},
       reason::verifier_reject},
      {"1: <invalid CO-RE relocation>\nfailed to resolve CO-RE relocation <byte_off> struct "
       "task_struct.nope\n",
       "prog 'on_getpid': relo #0: kind <byte_off> (0), spec is [2] struct task_struct.nope",
       true,
       {},
       reason::core_relocation},
      {"", "libbpf: failed to find valid kernel BTF", false, {}, reason::btf_missing},
      // A --btf file libbpf cannot parse: the CO-RE line after it is its consequence.
      {"",
       "libbpf: failed to parse target BTF: -22\nlibbpf: failed to perform CO-RE relocations: -22",
       true,
       {},
       reason::btf_missing},
      {"R1 invalid mem access",
       "",
       true,
       {"Lockdown: kgate-agent: use of bpf to read kernel RAM is restricted"},
       reason::lockdown_refused},
  };
  for (const auto& row : rows) {
    auto o = healthy();
    o.load.programs[0].loaded = false;
    o.load.programs[0].error = "refused: Permission denied";
    o.load.programs[0].log = row.log;
    o.load.programs[0].libbpf = row.libbpf;
    auto f = facts();
    f.kernel_btf = row.kernel_btf;
    f.lockdown_refusals = row.lockdown;
    auto ps = judge_object(probe(), o, f);
    const auto& g = find(ps, "on_getpid");
    CHECK_MESSAGE(g.reasons == std::vector<std::string>{row.want}, row.want << " got " << g.error);
    CHECK(find(ps, "on_uprobe").verdict == "pass");
  }
}

TEST_CASE("a rejected program's verifier statistics and log tail are kept") {
  auto o = healthy();
  o.load.programs[0].loaded = false;
  o.load.programs[0].log =
      "; e->nonce = nonce; @ probe.bpf.c:60\n5: (7b) *(u64 *)(r0 +0) = r6\nR0 invalid mem access "
      "'map_value_or_null'\n"
      "verification time 40 usec\nstack depth 0\nprocessed 7 insns (limit 1000000) max_states_per_insn 0 "
      "total_states 1 peak_states 1 mark_read 1\n";
  auto ps = judge_object(probe(), o, facts());
  const auto& g = find(ps, "on_getpid");
  CHECK(g.insns_processed == 7);
  CHECK(g.verification_us == 40);
  REQUIRE_FALSE(g.log_tail.empty());
  bool source = false;
  for (const auto& l : g.log_tail) source = source || l.find("probe.bpf.c:60") != std::string::npos;
  CHECK(source);
  // The message names the verifier's reason and the source line, not its statistics line.
  CHECK_MESSAGE(
      g.error.find("R0 invalid mem access 'map_value_or_null' (at \"e->nonce = nonce; @ probe.bpf.c:60\")") !=
          std::string::npos,
      g.error);
  CHECK(g.error.find("processed 7 insns") == std::string::npos);
}

TEST_CASE("leftovers after detach fail the program they belong to; no report fails too") {
  auto o = healthy();
  o.detach.left_programs = {11};
  auto ps = judge_object(probe(), o, facts());
  CHECK(find(ps, "on_getpid").verdict == "pass");
  CHECK(has_reason(find(ps, "on_uprobe"), reason::leaked));
  o = healthy();
  o.detach.left_links = {20};
  CHECK(has_reason(find(judge_object(probe(), o, facts()), "on_getpid"), reason::leaked));
  o = healthy();
  o.detach = {};
  CHECK(has_reason(find(judge_object(probe(), o, facts()), "on_getpid"), reason::leaked));
}

TEST_CASE("a run that ended early leaves its programs failed, never passed") {
  auto o = healthy();
  o.trigger_reached = false;
  o.drain_reached = false;
  o.records.clear();
  auto ps = judge_object(probe(), o, facts());
  for (const auto& p : ps) CHECK(p.verdict == "fail");
  ObjectObservation nothing;
  ps = judge_object(probe(), nothing, facts());
  REQUIRE(ps.size() == 2);
  for (const auto& p : ps) CHECK(p.verdict == "fail");
}

TEST_CASE("skips: by arch and by kernel; an entry with nothing judged fails") {
  spec::ObjectSpec o = probe();
  o.programs[0].skip = {{{"x86_64"}, "", "not on x86"}};
  o.programs[1].skip = {{{}, "6.2", "needs 6.2"}};
  auto ps = judge_object(o, healthy(), facts());
  CHECK(find(ps, "on_getpid").verdict == "skipped");
  CHECK(find(ps, "on_getpid").skip_reason == "not on x86");
  CHECK(find(ps, "on_uprobe").verdict == "skipped");
  auto j = judge_run(ps, {});
  CHECK(j.verdict == FailureClass::gate_failed);
  CHECK(j.message.find("no program was judged") != std::string::npos);

  auto req = load_request(o, {"on_getpid", "on_uprobe"}, facts());
  REQUIRE(req.programs.size() == 2);
  CHECK_FALSE(req.programs[0].autoload);

  o = probe();
  o.programs[1].expect.loads = false;
  req = load_request(o, {"on_getpid", "on_uprobe"}, facts());
  REQUIRE(req.programs.size() == 1);
  CHECK(req.programs[0].name == "on_uprobe");
  CHECK(req.programs[0].autoload);
  CHECK(req.programs[0].alone);
  // It loaded alone after all: judged unexpected_load, never attached or triggered.
  proto::LoadResponse lr;
  lr.ok = true;
  lr.programs = {loaded("on_getpid", 1), loaded("on_uprobe", 2)};
  lr.programs[1].alone = true;
  for (const auto& a : attach_request(o, lr).programs) CHECK(a.name != "on_uprobe");
  CHECK_FALSE(trigger_request(o, lr, facts()).uprobe_target);

  o = probe();
  o.min_kernel = "6.2";
  ps = judge_object(o, healthy(), facts());
  for (const auto& p : ps) CHECK(p.verdict == "skipped");
}

TEST_CASE("release_below compares dotted numbers") {
  CHECK(release_below("5.15.0-1-amd64", "6.1"));
  CHECK_FALSE(release_below("6.1.0-56-amd64", "6.1"));
  CHECK(release_below("6.1.0", "6.1.1"));
  CHECK_FALSE(release_below("6.10", "6.9"));
  CHECK_FALSE(release_below("garbage", "6.1"));
}

TEST_CASE("test runs: the return value decides; an error fails") {
  spec::ObjectSpec o;
  o.name = "net";
  spec::ProgramSpec p;
  p.name = "xdp_pass";
  p.attach = spec::AttachMode::test_run;
  p.expect.retval = 2;
  o.programs.push_back(p);
  ObjectObservation obs;
  obs.load.ok = true;
  proto::ProgramLoad pl = loaded("xdp_pass", 5);
  pl.type = "xdp";
  obs.load.programs = {pl};
  obs.trigger_reached = obs.drain_reached = true;
  obs.drain.stats_enabled = true;
  obs.drain.programs = {{"xdp_pass", 4, 100}};
  obs.trigger.test_runs = {{"xdp_pass", 4, {2}, 10, 0, ""}};
  obs.detach.reported = true;
  auto ps = judge_object(o, obs, facts());
  CHECK_MESSAGE(ps[0].verdict == "pass", ps[0].error);
  obs.trigger.test_runs = {{"xdp_pass", 4, {1}, 10, 0, ""}};
  ps = judge_object(o, obs, facts());
  CHECK(has_reason(ps[0], reason::test_run_mismatch));
  CHECK(ps[0].error.find("returned 1, expected 2") != std::string::npos);

  auto req = trigger_request(o, obs.load, facts());
  REQUIRE(req.test_runs.size() == 1);
  CHECK(req.actions.empty());
  auto packet = proto::from_hex(req.test_runs[0].data_hex);
  REQUIRE(packet);
  CHECK(packet->size() == 14 + 20 + 8 + 16);
}

TEST_CASE("expect loads=false: a negative control passes only when the verifier refuses it") {
  spec::ObjectSpec o = probe();
  o.programs[0].expect.loads = false;
  auto obs = healthy();
  CHECK(has_reason(find(judge_object(o, obs, facts()), "on_getpid"), reason::unexpected_load));
  obs.load.programs[0].loaded = false;
  CHECK(find(judge_object(o, obs, facts()), "on_getpid").verdict == "pass");
}

TEST_CASE("a nonce in a map's values") {
  spec::ObjectSpec o;
  o.name = "m";
  spec::ProgramSpec p;
  p.name = "seen";
  p.trigger.kind = spec::TriggerKind::getpid;
  p.expect.map_nonce = spec::MapNonceExpect{"seen_map", {8, spec::NonceEncoding::hex}};
  o.programs.push_back(p);
  ObjectObservation obs;
  obs.load.ok = true;
  obs.load.programs = {loaded("seen", 3)};
  obs.attach_reached = obs.trigger_reached = obs.drain_reached = true;
  obs.attach.programs = {{"seen", true, 4, 0, ""}};
  obs.drain.stats_enabled = true;
  obs.drain.programs = {{"seen", 4, 1}};
  obs.detach.reported = true;
  obs.drain.maps = {{"seen_map", {proto::to_hex(std::string(8, 'x') + nonce)}, ""}};
  CHECK(judge_object(o, obs, facts())[0].verdict == "pass");
  obs.drain.maps = {{"seen_map", {proto::to_hex(std::string(8, 'x') + "ffffffffffffffff")}, ""}};
  CHECK(has_reason(judge_object(o, obs, facts())[0], reason::nonce_missing));
  CHECK(drain_request(o, 1).maps == std::vector<std::string>{"seen_map"});
}

TEST_CASE(
    "the planner: each distinct trigger once per round, {nonce} replaced, the agent's own call in-process") {
  spec::ObjectSpec o = probe();
  spec::ProgramSpec extra;
  extra.name = "on_open";
  extra.trigger.kind = spec::TriggerKind::openat;
  extra.trigger.path = "/tmp/x-{nonce}";
  o.programs.push_back(extra);
  o.programs.push_back(extra);
  o.programs.back().name = "on_open2";
  proto::LoadResponse load;
  load.handle = 3;
  for (const char* n : {"on_getpid", "on_uprobe", "on_open", "on_open2"})
    load.programs.push_back(loaded(n, 1));
  auto req = trigger_request(o, load, facts());
  CHECK(req.handle == 3);
  CHECK(req.uprobe_target);
  CHECK(req.nonce_map == "kgate_nonce");
  REQUIRE(req.actions.size() == 2);
  CHECK(req.actions[0].kind == "getpid");
  CHECK(req.actions[1].path == std::string("/tmp/x-") + nonce);
  auto att = attach_request(o, load);
  CHECK(att.programs.size() == 4);
}

TEST_CASE("protocol: the verifier's statistics line") {
  auto s = proto::parse_verifier_stats(
      "func#0 @0\nverification time 1234 usec\nstack depth 16+32\nprocessed 100 insns (limit 1000000) "
      "max_states_per_insn 2 total_states 30 peak_states 25 mark_read 9\n");
  CHECK(s.insns_processed == 100);
  CHECK(s.insn_limit == 1000000);
  CHECK(s.max_states_per_insn == 2);
  CHECK(s.total_states == 30);
  CHECK(s.peak_states == 25);
  CHECK(s.mark_read == 9);
  CHECK(s.verification_us == 1234);
  CHECK(s.stack_depth == "16+32");
  CHECK_FALSE(proto::parse_verifier_stats("nothing here").found());
}

TEST_CASE("protocol: records round-trip; a malformed body is named, not trusted") {
  std::string body;
  proto::append_record(body, 0, "abc", 3);
  proto::append_record(body, 1, "", 0);
  std::string err;
  auto recs = proto::parse_records(body, 2, &err);
  CHECK(err.empty());
  REQUIRE(recs.size() == 2);
  CHECK(recs[0].bytes == "abc");
  CHECK(recs[1].ring == 1);
  proto::parse_records(body, 1, &err);  // ring 1 does not exist
  CHECK_FALSE(err.empty());
  err.clear();
  proto::parse_records(body.substr(0, 5), 2, &err);
  CHECK(err.find("truncated") != std::string::npos);
}

TEST_CASE("protocol: a lying guest's responses never throw and read as not observed") {
  for (const json& j : {json(nullptr), json(42), json::array({1, 2}), json{{"ok", "yes"}, {"programs", 7}},
                        json{{"programs", {{{"name", 5}, {"loaded", "true"}, {"prog_id", -1}}}}},
                        json{{"left", {{"programs", "none"}}}}}) {
    CHECK_NOTHROW(proto::load_response_from_json(j));
    CHECK_FALSE(proto::load_response_from_json(j).ok);
    CHECK_NOTHROW(proto::attach_response_from_json(j));
    CHECK_NOTHROW(proto::trigger_response_from_json(j));
    CHECK_NOTHROW(proto::drain_response_from_json(j));
    CHECK_FALSE(proto::detach_response_from_json(j).reported);
    proto::Hello h;
    CHECK_FALSE(proto::hello_from_json(j, h).empty());
  }
  json big = {{"ok", true}, {"error", std::string(1 << 20, 'x')}};
  CHECK(proto::load_response_from_json(big).error.size() < proto::max_text_bytes + 64);
}

TEST_CASE("protocol: the hello keeps its module timings and mounts, bounded, and drops anything nested") {
  json nested = json::array();
  for (int i = 0; i < 50; ++i) nested = json::array({nested});
  json modules = json::array();
  for (int i = 0; i < 100; ++i)
    modules.push_back({{"name", "m" + std::to_string(i)}, {"ms", 1.5}, {"deep", nested}});
  json j = {{"release", "6.1.0"}, {"version", "#1"},
            {"cmdline", "x"},     {"lockdown", "[none]"},
            {"lsm", "bpf"},       {"pid", 1},
            {"modules", modules}, {"mounts", {{"proc", "ok"}, {"x", nested}}}};
  proto::Hello h;
  CHECK(proto::hello_from_json(j, h).empty());
  REQUIRE(h.modules.size() == 64);
  CHECK(h.modules[0] == json({{"name", "m0"}, {"ms", 1.5}}));
  CHECK(h.mounts == json({{"proc", "ok"}}));
}

TEST_CASE("a guest cannot add programs to the receipt by naming them; they are a problem of the run") {
  auto o = healthy();
  proto::ProgramLoad fake;
  fake.name = "invented";
  fake.loaded = true;
  o.load.programs.push_back(fake);
  auto ps = judge_object(probe(), o, facts());
  REQUIRE(ps.size() == 2);
  CHECK(find(ps, "on_getpid").verdict == "pass");
  CHECK(unknown_programs(probe(), o) == std::vector<std::string>{"invented"});
  CHECK(unknown_programs(probe(), healthy()).empty());
}

namespace {

spec::LoaderSpec live_loader() {
  spec::LoaderSpec l;
  spec::LoaderProgram tp;
  tp.name = "handle_getpid_long_name";  // the kernel keeps 15 bytes: "handle_getpid_l"
  tp.type = "tracepoint";
  tp.trigger.kind = spec::TriggerKind::getpid;
  tp.runs = spec::MinCount{true, 1};
  spec::LoaderProgram kp;
  kp.name = "on_unlink";
  kp.type = "kprobe";
  l.programs = {tp, kp};
  return l;
}

proto::KernelProgram kernel_prog(std::uint32_t id, std::string name, std::string type, std::uint64_t runs,
                                 bool linked) {
  proto::KernelProgram p;
  p.id = id;
  p.name = std::move(name);
  p.type = std::move(type);
  p.run_count = runs;
  p.verified_insns = 40;
  if (linked) p.links.push_back({id + 100, "perf_event", ""});
  return p;
}

// A loader that loaded and attached both programs; the triggers ran getpid 4 times.
LoaderObservation live_observation() {
  LoaderObservation o;
  o.start_reached = true;
  o.start.ok = o.start.started = o.start.ready = true;
  o.start.programs = {kernel_prog(7, "handle_getpid_l", "tracepoint", 2, true),
                      kernel_prog(8, "on_unlink", "kprobe", 0, true),
                      kernel_prog(9, "helper", "kprobe", 0, false)};
  o.trigger_reached = true;
  o.trigger.ok = true;
  o.trigger.actions = {{"getpid", 4, ""}};
  o.stats_reached = true;
  o.stats.programs = o.start.programs;
  o.stats.programs[0].run_count = 6;
  o.stop_reached = true;
  o.stop.ok = true;
  o.stop.exited = true;
  return o;
}

}  // namespace

TEST_CASE("a user's loader: found by name and type, attached, run by the triggers, gone after the stop") {
  auto ps = judge_loader(live_loader(), live_observation(), facts());
  REQUIRE(ps.size() == 2);
  for (const auto& p : ps) CHECK_MESSAGE(p.verdict == "pass", p.name << ": " << p.error);
  CHECK(ps[0].run_count == 4);  // over the triggers, not since the load
  CHECK(ps[0].required_runs == 4);
  CHECK(ps[0].insns_processed == 40);
  CHECK(ps[0].object == "loader");
}

TEST_CASE("a user's loader: each way it fails has its reason") {
  struct Row {
    const char* what;
    std::function<void(LoaderObservation&, spec::LoaderSpec&)> change;
    const char* program;
    std::vector<std::string> reasons;
  };
  const std::vector<Row> rows = {
      {"a replayer loads nothing",
       [](LoaderObservation& o, spec::LoaderSpec&) {
         o.start.programs.clear();
         o.start.ready = false;
       },
       "on_unlink",
       {"never_loaded"}},
      {"the type differs",
       [](LoaderObservation& o, spec::LoaderSpec&) { o.start.programs[1].type = "tracepoint"; },
       "on_unlink",
       {"never_loaded"}},
      {"loaded but not attached, so not ready: the triggers did not run",
       [](LoaderObservation& o, spec::LoaderSpec&) {
         o.start.programs[1].links.clear();
         o.start.ready = false;
         o.trigger_reached = o.stats_reached = false;
       },
       "on_unlink",
       {"attach_failed"}},
      {"not ready: the others are not triggered",
       [](LoaderObservation& o, spec::LoaderSpec&) {
         o.start.programs[1].links.clear();
         o.start.ready = false;
         o.trigger_reached = o.stats_reached = false;
       },
       "handle_getpid_long_name",
       {"did_not_fire"}},
      {"the triggers did not reach it",
       [](LoaderObservation& o, spec::LoaderSpec&) { o.stats.programs[0].run_count = 3; },
       "handle_getpid_long_name",
       {"did_not_fire"}},
      {"it exited before the stop",
       [](LoaderObservation& o, spec::LoaderSpec&) {
         o.start.exited = true;
         o.start.status = 3 << 8;
         o.start.output = "loader: bad config\n";
       },
       "on_unlink",
       {"loader_exited"}},
      {"a link outlived it",
       [](LoaderObservation& o, spec::LoaderSpec&) { o.stop.left_links = {108}; },
       "on_unlink",
       {"leaked"}},
      {"the run ended before the stop",
       [](LoaderObservation& o, spec::LoaderSpec&) { o.stop_reached = false; },
       "on_unlink",
       {"leaked"}},
  };
  for (const auto& row : rows) {
    CAPTURE(row.what);
    LoaderObservation o = live_observation();
    spec::LoaderSpec l = live_loader();
    row.change(o, l);
    auto ps = judge_loader(l, o, facts());
    const auto& p = find(ps, row.program);
    CAPTURE(p.error);
    CHECK(p.verdict == "fail");
    CHECK(p.reasons == row.reasons);
  }
  // A spec that asks for the nonce in the loader's output: a replayer's canned output fails it.
  {
    LoaderObservation seen = live_observation();
    spec::LoaderSpec asks = live_loader();
    asks.nonce_in_output = true;
    seen.stop.nonce_seen = true;
    for (const auto& p : judge_loader(asks, seen, facts())) CHECK(p.verdict == "pass");
    seen.stop.nonce_seen = false;
    for (const auto& p : judge_loader(asks, seen, facts()))
      CHECK(p.reasons == std::vector<std::string>{"nonce_missing"});
  }
  // A spec that names the link type: another type is not the attachment it asked for.
  {
    LoaderObservation seen = live_observation();
    spec::LoaderSpec asks = live_loader();
    for (auto& p : asks.programs) p.link = seen.start.programs[0].links[0].type;
    CHECK(find(judge_loader(asks, seen, facts()), "on_unlink").verdict == "pass");
    for (auto& p : asks.programs) p.link = "kprobe_multi";
    const auto judged = judge_loader(asks, seen, facts());
    const auto& p = find(judged, "on_unlink");
    CHECK(p.reasons == std::vector<std::string>{"attach_failed"});
    CHECK(p.error.find("not by a kprobe_multi link") != std::string::npos);
    // And the target: what bpf_link_info says it is attached to.
    for (auto& q : asks.programs) q.link.clear();
    seen.start.programs[1].links[0].target = "do_unlinkat";
    for (auto& q : asks.programs) q.target = q.name == "on_unlink" ? "unlinkat" : "";
    const auto right = judge_loader(asks, seen, facts());
    CHECK(find(right, "on_unlink").verdict == "pass");
    for (auto& q : asks.programs) q.target = q.name == "on_unlink" ? "sys_enter" : "";
    const auto wrong = judge_loader(asks, seen, facts());
    const auto& t = find(wrong, "on_unlink");
    CHECK(t.reasons == std::vector<std::string>{"attach_failed"});
    CHECK(t.error.find("attached to do_unlinkat, not to sys_enter") != std::string::npos);
  }
  // A loader whose spec says it pins: what outlives it is not a leak.
  LoaderObservation o = live_observation();
  o.stop.left_links = {108};
  spec::LoaderSpec l = live_loader();
  l.pins = true;
  CHECK(find(judge_loader(l, o, facts()), "on_unlink").verdict == "pass");
  // The exit status and the loader's last line are in the message.
  o = live_observation();
  o.start.exited = true;
  o.start.status = 3 << 8;
  o.start.output = "starting\nloader: bad config\n";
  auto e = find(judge_loader(live_loader(), o, facts()), "on_unlink").error;
  CHECK(e.find("exited with 3") != std::string::npos);
  CHECK(e.find("loader: bad config") != std::string::npos);
}

TEST_CASE(
    "a CO-RE refusal under the minimized BTF is found; expected refusals and verifier rejects are not") {
  auto refused = [](std::string name, std::string error, bool alone = false) {
    proto::ProgramLoad p;
    p.name = std::move(name);
    p.error = std::move(error);
    p.alone = alone;
    return p;
  };
  proto::LoadResponse load;
  load.ok = true;
  proto::ProgramLoad fine;
  fine.name = "fine";
  fine.loaded = true;
  load.programs = {fine, refused("deref", "refused: Permission denied: R1 invalid mem access 'scalar'")};
  CHECK(core_relocation_refusal(load, facts()).empty());

  load.programs.push_back(refused("expected", "failed to resolve CO-RE relocation <byte_off> [85]", true));
  CHECK(core_relocation_refusal(load, facts()).empty());

  load.programs.push_back(refused("reads", "failed to resolve CO-RE relocation <byte_off> [85] struct x.y"));
  CHECK(core_relocation_refusal(load, facts()) == "reads");

  proto::ProgramLoad skipped = refused("skipped", "failed to resolve CO-RE relocation");
  skipped.autoload = false;
  proto::LoadResponse only_skipped;
  only_skipped.programs = {skipped};
  CHECK(core_relocation_refusal(only_skipped, facts()).empty());

  proto::LoadResponse whole;
  whole.error = "load: Invalid argument";
  whole.libbpf = "libbpf: failed to perform CO-RE relocations: -22";
  CHECK(core_relocation_refusal(whole, facts()) == "(object)");
  whole.libbpf = "libbpf: map 'events': failed to create: Operation not permitted";
  CHECK(core_relocation_refusal(whole, facts()).empty());
}

#include "channel/protocol.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <regex>

#include "channel/fields.hpp"

namespace kgate::proto {

using channel::get_array;
using channel::get_bool;
using channel::get_int;
using channel::get_number;
using nlohmann::json;

namespace {

constexpr std::array<std::pair<Op, std::string_view>, 13> op_names = {{
    {Op::btf, "btf"},
    {Op::load, "load"},
    {Op::attach, "attach"},
    {Op::trigger, "trigger"},
    {Op::drain, "drain"},
    {Op::detach, "detach"},
    {Op::dmesg, "dmesg"},
    {Op::poweroff, "poweroff"},
    {Op::loader_start, "loader_start"},
    {Op::loader_stats, "loader_stats"},
    {Op::loader_stop, "loader_stop"},
    {Op::shell, "shell"},
}};

// A guest string, capped: the tail is what matters in a log, so the head is cut.
std::string text(const json& j, std::string_view key, std::size_t cap = max_text_bytes) {
  std::string s = channel::get_string(j, key);
  if (s.size() > cap) s = "[" + std::to_string(s.size() - cap) + " bytes cut]..." + s.substr(s.size() - cap);
  return s;
}

// A short guest string (a name): over 512 bytes it is cut at the end.
std::string name(const json& j, std::string_view key) {
  std::string s = channel::get_string(j, key);
  if (s.size() > 512) s.resize(512);
  return s;
}

int int_of(const json& j, std::string_view key, int fallback = 0) {
  auto v = get_int(j, key);
  if (!v || *v < INT32_MIN || *v > INT32_MAX) return fallback;
  return static_cast<int>(*v);
}

std::uint32_t u32_of(const json& j, std::string_view key) {
  auto v = get_int(j, key);
  return v && *v >= 0 && *v <= UINT32_MAX ? static_cast<std::uint32_t>(*v) : 0;
}

std::uint64_t u64_of(const json& j, std::string_view key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_number_unsigned()) return it->get<std::uint64_t>();
  if (it->is_number_integer() && it->get<std::int64_t>() >= 0) return it->get<std::uint64_t>();
  return 0;
}

std::int64_t i64_of(const json& j, std::string_view key, std::int64_t fallback) {
  return get_int(j, key).value_or(fallback);
}

// Each element of the array at `key` through `read`, at most `cap` of them.
template <class Read>
auto list_of(const json& j, std::string_view key, Read read, std::size_t cap = max_list) {
  std::vector<decltype(read(json()))> out;
  for (const auto& e : get_array(j, key)) {
    if (out.size() >= cap) break;
    out.push_back(read(e));
  }
  return out;
}

std::vector<std::string> strings_of(const json& j, std::string_view key, std::size_t cap = max_list) {
  return channel::get_strings(j, key, cap, max_text_bytes);
}

std::vector<std::uint32_t> ids_of(const json& j, std::string_view key) {
  std::vector<std::uint32_t> out;
  for (const auto& e : get_array(j, key)) {
    if (out.size() >= max_list) break;
    if (e.is_number_unsigned() && e.get<std::uint64_t>() <= UINT32_MAX) out.push_back(e.get<std::uint32_t>());
  }
  return out;
}

// "created" and "left", each {"programs": [ids], "links": [ids]}, of a detach or a loader's stop.
// True when "left" is there in full (the guest said what it left).
bool read_created_left(const json& j, std::vector<std::uint32_t>& created_programs,
                       std::vector<std::uint32_t>& created_links, std::vector<std::uint32_t>& left_programs,
                       std::vector<std::uint32_t>& left_links) {
  if (!j.is_object()) return false;
  if (j.contains("created") && j["created"].is_object()) {
    created_programs = ids_of(j["created"], "programs");
    created_links = ids_of(j["created"], "links");
  }
  const json* left = j.contains("left") ? &j["left"] : nullptr;
  if (!left || !left->is_object() || !left->contains("programs") || !(*left)["programs"].is_array() ||
      !left->contains("links") || !(*left)["links"].is_array())
    return false;
  left_programs = ids_of(*left, "programs");
  left_links = ids_of(*left, "links");
  return true;
}

// A small JSON value from the guest, kept only if it is an object of short strings/bools/numbers.
json flat_object(const json& j, std::string_view key) {
  json out = json::object();
  if (!j.is_object() || !j.contains(key) || !j[std::string(key)].is_object()) return out;
  for (const auto& [k, v] : j[std::string(key)].items()) {
    if (out.size() >= 64) break;
    std::string kk = k.substr(0, 128);
    if (v.is_string())
      out[kk] = v.get<std::string>().substr(0, 512);
    else if (v.is_boolean() || v.is_number())
      out[kk] = v;
  }
  return out;
}

// Strings, numbers and booleans of a flat object (`{"name": ..., "ms": ...}`), bounded.
json scalars_of(const json& v) {
  json out = json::object();
  for (const auto& [k, x] : v.items()) {
    if (out.size() >= 8) break;
    if (x.is_string())
      out[k.substr(0, 128)] = x.get<std::string>().substr(0, 512);
    else if (x.is_boolean() || x.is_number())
      out[k.substr(0, 128)] = x;
  }
  return out;
}

// A list of strings or of flat objects (the hello's modules: [{name, ms}]), bounded; anything
// nested deeper is dropped.
json flat_array(const json& j, std::string_view key) {
  json out = json::array();
  for (const auto& v : get_array(j, key)) {
    if (out.size() >= 64) break;
    if (v.is_string()) out.push_back(v.get<std::string>().substr(0, 512));
    if (v.is_object()) out.push_back(scalars_of(v));
  }
  return out;
}

}  // namespace

std::string_view op_name(Op op) {
  for (const auto& [o, n] : op_names)
    if (o == op) return n;
  return "unknown";
}

std::optional<Op> parse_op(std::string_view n) {
  for (const auto& [o, name] : op_names)
    if (name == n) return o;
  return std::nullopt;
}

json request_header(Op op, int id, json fields) {
  if (!fields.is_object()) fields = json::object();
  fields["op"] = std::string(op_name(op));
  fields["id"] = id;
  return fields;
}

// ---- hello ----
json to_json(const Hello& h) {
  return {{"protocol", h.protocol}, {"agent", h.agent},     {"release", h.release},   {"version", h.version},
          {"machine", h.machine},   {"cmdline", h.cmdline}, {"lockdown", h.lockdown}, {"lsm", h.lsm},
          {"btf", h.btf},           {"pid", h.pid},         {"mounts", h.mounts},     {"modules", h.modules},
          {"uptime_s", h.uptime_s}, {"startup", h.startup}};
}

std::string hello_from_json(const json& j, Hello& h) {
  for (const char* key : {"release", "version", "cmdline", "lockdown", "lsm"}) {
    if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return key;
  }
  if (!get_int(j, "pid")) return "pid";
  h.protocol = int_of(j, "protocol");
  h.agent = name(j, "agent");
  h.release = name(j, "release");
  h.version = name(j, "version");
  h.machine = name(j, "machine");
  h.cmdline = text(j, "cmdline", 8192);
  h.lockdown = name(j, "lockdown");
  h.lsm = name(j, "lsm");
  h.btf = get_bool(j, "btf");
  h.pid = *get_int(j, "pid");
  h.mounts = flat_object(j, "mounts");
  h.modules = flat_array(j, "modules");
  h.uptime_s = get_number(j, "uptime_s").value_or(0);
  h.startup = flat_object(j, "startup");
  return {};
}

// ---- load ----
json to_json(const LoadRequest& r) {
  json progs = json::array();
  for (const auto& p : r.programs)
    progs.push_back({{"name", p.name}, {"autoload", p.autoload}, {"alone", p.alone}});
  return {{"name", r.name}, {"programs", progs}, {"nonce_global", r.nonce_global}, {"nonce", r.nonce}};
}

LoadRequest load_request_from_json(const json& j) {
  LoadRequest r;
  r.name = name(j, "name");
  r.programs = list_of(j, "programs", [](const json& p) {
    return ProgramOption{name(p, "name"), get_bool(p, "autoload", true), get_bool(p, "alone")};
  });
  r.nonce_global = name(j, "nonce_global");
  r.nonce = name(j, "nonce");
  return r;
}

VerifierStats parse_verifier_stats(std::string_view log) {
  VerifierStats s;
  // Kernel 5.2+ (print_verification_stats): one line each; the last occurrence counts.
  static const std::regex processed(
      R"(processed (\d+) insns \(limit (\d+)\) max_states_per_insn (\d+) total_states (\d+) peak_states (\d+) mark_read (\d+))");
  static const std::regex vtime(R"(verification time (\d+) usec)");
  static const std::regex depth(R"(stack depth ([0-9+]+))");
  std::size_t pos = 0;
  while (pos < log.size()) {
    std::size_t end = log.find('\n', pos);
    if (end == std::string_view::npos) end = log.size();
    std::string line(log.substr(pos, end - pos));
    pos = end + 1;
    std::smatch m;
    if (line.find("processed ") != std::string::npos && std::regex_search(line, m, processed)) {
      s.insns_processed = std::stoll(m[1]);
      s.insn_limit = std::stoll(m[2]);
      s.max_states_per_insn = std::stoll(m[3]);
      s.total_states = std::stoll(m[4]);
      s.peak_states = std::stoll(m[5]);
      s.mark_read = std::stoll(m[6]);
    } else if (line.find("verification time") != std::string::npos && std::regex_search(line, m, vtime)) {
      s.verification_us = std::stoll(m[1]);
    } else if (line.find("stack depth") != std::string::npos && std::regex_search(line, m, depth)) {
      s.stack_depth = m[1];
    }
  }
  return s;
}

json to_json(const VerifierStats& s) {
  return {{"insns_processed", s.insns_processed},
          {"insn_limit", s.insn_limit},
          {"max_states_per_insn", s.max_states_per_insn},
          {"total_states", s.total_states},
          {"peak_states", s.peak_states},
          {"mark_read", s.mark_read},
          {"verification_us", s.verification_us},
          {"stack_depth", s.stack_depth}};
}

VerifierStats verifier_stats_from_json(const json& j) {
  VerifierStats s;
  s.insns_processed = i64_of(j, "insns_processed", -1);
  s.insn_limit = i64_of(j, "insn_limit", -1);
  s.max_states_per_insn = i64_of(j, "max_states_per_insn", -1);
  s.total_states = i64_of(j, "total_states", -1);
  s.peak_states = i64_of(j, "peak_states", -1);
  s.mark_read = i64_of(j, "mark_read", -1);
  s.verification_us = i64_of(j, "verification_us", -1);
  s.stack_depth = name(j, "stack_depth");
  return s;
}

json to_json(const LoadResponse& r) {
  json progs = json::array();
  for (const auto& p : r.programs) {
    json pj = {{"name", p.name},
               {"section", p.section},
               {"type", p.type},
               {"autoload", p.autoload},
               {"loaded", p.loaded},
               {"alone", p.alone},
               {"prog_id", p.prog_id},
               {"errno", p.err},
               {"error", p.error},
               {"log", p.log},
               {"stats", to_json(p.stats)},
               {"xlated_bytes", p.xlated_bytes},
               {"jited_bytes", p.jited_bytes},
               {"load_ns", p.load_ns},
               {"libbpf", p.libbpf}};
    if (p.verified_insns) pj["verified_insns"] = *p.verified_insns;
    progs.push_back(std::move(pj));
  }
  json maps = json::array();
  for (const auto& m : r.maps) maps.push_back({{"name", m.name}, {"type", m.type}, {"id", m.id}});
  return {{"ok", r.ok},         {"handle", r.handle}, {"error", r.error},       {"errno", r.err},
          {"libbpf", r.libbpf}, {"rounds", r.rounds}, {"round_ms", r.round_ms}, {"programs", progs},
          {"maps", maps}};
}

LoadResponse load_response_from_json(const json& j) {
  LoadResponse r;
  r.ok = get_bool(j, "ok");
  r.handle = int_of(j, "handle");
  r.error = text(j, "error");
  r.err = int_of(j, "errno");
  r.libbpf = text(j, "libbpf");
  r.rounds = int_of(j, "rounds");
  for (const auto& ms : get_array(j, "round_ms")) {
    if (r.round_ms.size() >= max_list) break;
    if (ms.is_number()) r.round_ms.push_back(ms.get<double>());
  }
  r.programs = list_of(j, "programs", [](const json& p) {
    ProgramLoad pl;
    pl.name = name(p, "name");
    pl.section = name(p, "section");
    pl.type = name(p, "type");
    pl.autoload = get_bool(p, "autoload", true);
    pl.loaded = get_bool(p, "loaded");
    pl.alone = get_bool(p, "alone");
    pl.prog_id = u32_of(p, "prog_id");
    pl.err = int_of(p, "errno");
    pl.error = text(p, "error");
    pl.log = text(p, "log");
    if (p.is_object() && p.contains("stats")) pl.stats = verifier_stats_from_json(p["stats"]);
    if (get_int(p, "verified_insns")) pl.verified_insns = u32_of(p, "verified_insns");
    pl.xlated_bytes = u32_of(p, "xlated_bytes");
    pl.jited_bytes = u32_of(p, "jited_bytes");
    pl.load_ns = u64_of(p, "load_ns");
    pl.libbpf = text(p, "libbpf");
    return pl;
  });
  r.maps = list_of(j, "maps", [](const json& m) {
    return MapLoad{name(m, "name"), name(m, "type"), u32_of(m, "id")};
  });
  return r;
}

// ---- attach ----
namespace {
std::string_view how_name(AttachHow h) {
  switch (h) {
    case AttachHow::none: return "none";
    case AttachHow::auto_attach: return "auto";
    case AttachHow::uprobe: return "uprobe";
    case AttachHow::usdt: return "usdt";
  }
  return "none";
}
AttachHow parse_how(const std::string& s) {
  if (s == "auto") return AttachHow::auto_attach;
  if (s == "uprobe") return AttachHow::uprobe;
  if (s == "usdt") return AttachHow::usdt;
  return AttachHow::none;
}
}  // namespace

json to_json(const AttachRequest& r) {
  json progs = json::array();
  for (const auto& p : r.programs) {
    progs.push_back({{"name", p.name},
                     {"how", how_name(p.how)},
                     {"binary", p.binary},
                     {"function", p.function},
                     {"provider", p.provider},
                     {"probe", p.probe},
                     {"retprobe", p.retprobe}});
  }
  return {{"handle", r.handle}, {"programs", progs}};
}

AttachRequest attach_request_from_json(const json& j) {
  AttachRequest r;
  r.handle = int_of(j, "handle");
  r.programs = list_of(j, "programs", [](const json& p) {
    AttachOption o;
    o.name = name(p, "name");
    o.how = parse_how(name(p, "how"));
    o.binary = text(p, "binary", 4096);
    o.function = name(p, "function");
    o.provider = name(p, "provider");
    o.probe = name(p, "probe");
    o.retprobe = get_bool(p, "retprobe");
    return o;
  });
  return r;
}

json to_json(const AttachResponse& r) {
  json progs = json::array();
  for (const auto& p : r.programs) {
    progs.push_back({{"name", p.name},
                     {"attached", p.attached},
                     {"link_id", p.link_id},
                     {"errno", p.err},
                     {"error", p.error},
                     {"ms", p.ms}});
  }
  return {{"ok", r.ok}, {"error", r.error}, {"libbpf", r.libbpf}, {"programs", progs}};
}

AttachResponse attach_response_from_json(const json& j) {
  AttachResponse r;
  r.ok = get_bool(j, "ok");
  r.error = text(j, "error");
  r.libbpf = text(j, "libbpf");
  r.programs = list_of(j, "programs", [](const json& p) {
    return ProgramAttach{name(p, "name"),    get_bool(p, "attached"), u32_of(p, "link_id"),
                         int_of(p, "errno"), text(p, "error", 4096),  get_number(p, "ms").value_or(0)};
  });
  return r;
}

// ---- trigger ----
json to_json(const TriggerRequest& r) {
  json actions = json::array();
  for (const auto& a : r.actions)
    actions.push_back({{"kind", a.kind}, {"path", a.path}, {"binary", a.binary}, {"args", a.args}});
  json runs = json::array();
  for (const auto& t : r.test_runs)
    runs.push_back({{"program", t.program}, {"data_hex", t.data_hex}, {"repeat", t.repeat}});
  return {{"handle", r.handle},
          {"nonce", r.nonce},
          {"nonce_map", r.nonce_map},
          {"count", r.count},
          {"uprobe_target", r.uprobe_target},
          {"actions", actions},
          {"test_runs", runs}};
}

TriggerRequest trigger_request_from_json(const json& j) {
  TriggerRequest r;
  r.handle = int_of(j, "handle");
  r.nonce = name(j, "nonce");
  r.nonce_map = name(j, "nonce_map");
  r.count = int_of(j, "count", 1);
  r.uprobe_target = get_bool(j, "uprobe_target");
  r.actions = list_of(j, "actions", [](const json& a) {
    return TriggerAction{name(a, "kind"), text(a, "path", 4096), text(a, "binary", 4096),
                         strings_of(a, "args", 256)};
  });
  r.test_runs = list_of(j, "test_runs", [](const json& t) {
    return TestRunAction{name(t, "program"), text(t, "data_hex", 1 << 20), int_of(t, "repeat", 1)};
  });
  return r;
}

json to_json(const TriggerResponse& r) {
  json actions = json::array();
  for (const auto& a : r.actions) actions.push_back({{"kind", a.kind}, {"done", a.done}, {"error", a.error}});
  json runs = json::array();
  for (const auto& t : r.test_runs) {
    runs.push_back({{"program", t.program},
                    {"runs", t.runs},
                    {"retvals", t.retvals},
                    {"duration_ns", t.duration_ns},
                    {"errno", t.err},
                    {"error", t.error}});
  }
  return {{"ok", r.ok}, {"error", r.error}, {"actions", actions}, {"test_runs", runs}};
}

TriggerResponse trigger_response_from_json(const json& j) {
  TriggerResponse r;
  r.ok = get_bool(j, "ok");
  r.error = text(j, "error");
  r.actions = list_of(j, "actions", [](const json& a) {
    return ActionResult{name(a, "kind"), int_of(a, "done"), text(a, "error", 4096)};
  });
  r.test_runs = list_of(j, "test_runs", [](const json& t) {
    TestRunResult tr;
    tr.program = name(t, "program");
    tr.runs = int_of(t, "runs");
    for (const auto& v : get_array(t, "retvals")) {
      if (tr.retvals.size() >= 64) break;
      if (v.is_number_integer()) tr.retvals.push_back(v.get<std::int64_t>());
    }
    tr.duration_ns = u64_of(t, "duration_ns");
    tr.err = int_of(t, "errno");
    tr.error = text(t, "error", 4096);
    return tr;
  });
  return r;
}

// ---- drain ----
json to_json(const DrainRequest& r) {
  return {{"handle", r.handle}, {"maps", r.maps}};
}

DrainRequest drain_request_from_json(const json& j) {
  return {int_of(j, "handle"), strings_of(j, "maps", 256)};
}

json to_json(const DrainResponse& r) {
  json rings = json::array();
  for (const auto& g : r.rings)
    rings.push_back({{"name", g.name}, {"records", g.records}, {"dropped", g.dropped}});
  json progs = json::array();
  for (const auto& p : r.programs)
    progs.push_back({{"name", p.name}, {"run_cnt", p.run_cnt}, {"run_time_ns", p.run_time_ns}});
  json maps = json::array();
  for (const auto& m : r.maps)
    maps.push_back({{"name", m.name}, {"values_hex", m.values_hex}, {"error", m.error}});
  return {{"ok", r.ok},     {"error", r.error},  {"stats_enabled", r.stats_enabled},
          {"rings", rings}, {"programs", progs}, {"maps", maps}};
}

DrainResponse drain_response_from_json(const json& j) {
  DrainResponse r;
  r.ok = get_bool(j, "ok");
  r.error = text(j, "error");
  r.stats_enabled = get_bool(j, "stats_enabled");
  r.rings = list_of(j, "rings", [](const json& g) {
    return RingDrain{name(g, "name"), u64_of(g, "records"), u64_of(g, "dropped")};
  });
  r.programs = list_of(j, "programs", [](const json& p) {
    return ProgramRuns{name(p, "name"), u64_of(p, "run_cnt"), u64_of(p, "run_time_ns")};
  });
  r.maps = list_of(j, "maps", [](const json& m) {
    return MapValues{name(m, "name"), strings_of(m, "values_hex", max_map_values), text(m, "error", 4096)};
  });
  return r;
}

void append_record(std::string& body, std::uint32_t ring, const void* data, std::uint32_t size) {
  char head[8];
  std::memcpy(head, &ring, 4);
  std::memcpy(head + 4, &size, 4);
  body.append(head, 8);
  body.append(static_cast<const char*>(data), size);
}

std::vector<Record> parse_records(std::string_view body, std::size_t rings, std::string* error) {
  std::vector<Record> out;
  std::size_t pos = 0;
  while (pos < body.size()) {
    if (out.size() >= max_records * 4) {
      if (error) *error = "more records than the agent may send";
      break;
    }
    if (body.size() - pos < 8) {
      if (error) *error = "a truncated record header at byte " + std::to_string(pos);
      break;
    }
    std::uint32_t ring = 0, size = 0;
    std::memcpy(&ring, body.data() + pos, 4);
    std::memcpy(&size, body.data() + pos + 4, 4);
    pos += 8;
    if (ring >= rings || size > body.size() - pos) {
      if (error) *error = "a malformed record at byte " + std::to_string(pos - 8);
      break;
    }
    out.push_back({ring, std::string(body.substr(pos, size))});
    pos += size;
  }
  return out;
}

// ---- detach ----
json to_json(const DetachResponse& r) {
  json closes = json::array();
  for (const auto& c : r.closes) closes.push_back({{"program", c.program}, {"ms", c.ms}});
  return {{"ok", r.ok},
          {"close_ms", r.close_ms},
          {"wait_ms", r.wait_ms},
          {"closes", closes},
          {"created", {{"programs", r.created_programs}, {"links", r.created_links}}},
          {"left", {{"programs", r.left_programs}, {"links", r.left_links}}}};
}

DetachResponse detach_response_from_json(const json& j) {
  DetachResponse r;
  r.ok = get_bool(j, "ok");
  r.close_ms = get_number(j, "close_ms").value_or(0);
  r.wait_ms = get_number(j, "wait_ms").value_or(0);
  r.closes = list_of(j, "closes", [](const json& c) {
    return DetachResponse::LinkClose{name(c, "program"), get_number(c, "ms").value_or(0)};
  });
  r.reported = read_created_left(j, r.created_programs, r.created_links, r.left_programs, r.left_links);
  return r;
}

// ---- an interactive shell ----
json to_json(const ShellRequest& r) {
  return {{"pin", r.pin}, {"rows", r.rows}, {"cols", r.cols}, {"term", r.term}};
}

ShellRequest shell_request_from_json(const json& j) {
  ShellRequest r;
  r.pin = get_bool(j, "pin");
  r.rows = std::clamp(int_of(j, "rows"), 0, 10000);
  r.cols = std::clamp(int_of(j, "cols"), 0, 10000);
  r.term = name(j, "term");
  return r;
}

json to_json(const ShellResponse& r) {
  return {{"ok", r.ok},         {"error", r.error},       {"status", r.status},
          {"pinned", r.pinned}, {"problems", r.problems}, {"open_s", r.open_s}};
}

ShellResponse shell_response_from_json(const json& j) {
  ShellResponse r;
  r.ok = get_bool(j, "ok");
  r.error = text(j, "error");
  r.status = int_of(j, "status");
  r.pinned = int_of(j, "pinned");
  r.problems = strings_of(j, "problems");
  r.open_s = get_number(j, "open_s").value_or(0);
  return r;
}

// ---- a user's loader ----
json to_json(const LoaderStartRequest& r) {
  json progs = json::array();
  for (const auto& p : r.programs)
    progs.push_back({{"name", p.name}, {"type", p.type}, {"attached", p.attached}});
  return {{"argv", r.argv},
          {"env", r.env},
          {"cwd", r.cwd},
          {"root", r.root},
          {"programs", progs},
          {"ready_line", r.ready_line},
          {"nonce", r.nonce},
          {"nonce_file", r.nonce_file},
          {"nonce_map", r.nonce_map},
          {"nonce_bytes", r.nonce_bytes},
          {"nonce_offset", r.nonce_offset},
          {"timeout_ms", r.timeout_ms}};
}

LoaderStartRequest loader_start_request_from_json(const json& j) {
  LoaderStartRequest r;
  r.argv = strings_of(j, "argv");
  r.env = strings_of(j, "env");
  r.cwd = name(j, "cwd");
  r.root = name(j, "root");
  r.programs = list_of(j, "programs", [](const json& p) {
    return LoaderWant{name(p, "name"), name(p, "type"), get_bool(p, "attached", true)};
  });
  r.ready_line = text(j, "ready_line", 4096);
  r.nonce = name(j, "nonce");
  r.nonce_file = name(j, "nonce_file");
  r.nonce_map = name(j, "nonce_map");
  r.nonce_bytes = name(j, "nonce_bytes");
  r.nonce_offset = u32_of(j, "nonce_offset");
  r.timeout_ms = int_of(j, "timeout_ms");
  return r;
}

json to_json(const LoaderResponse& r) {
  json progs = json::array();
  for (const auto& p : r.programs) {
    json links = json::array();
    for (const auto& l : p.links) links.push_back({{"id", l.id}, {"type", l.type}, {"target", l.target}});
    json pj = {{"id", p.id},
               {"name", p.name},
               {"type", p.type},
               {"tag", p.tag},
               {"run_count", p.run_count},
               {"run_time_ns", p.run_time_ns},
               {"xlated_bytes", p.xlated_bytes},
               {"jited_bytes", p.jited_bytes},
               {"links", links}};
    if (p.verified_insns) pj["verified_insns"] = *p.verified_insns;
    progs.push_back(std::move(pj));
  }
  return {{"ok", r.ok},
          {"error", r.error},
          {"started", r.started},
          {"ready", r.ready},
          {"ready_ms", r.ready_ms},
          {"exited", r.exited},
          {"status", r.status},
          {"killed", r.killed},
          {"nonce_seen", r.nonce_seen},
          {"output", r.output},
          {"programs", progs},
          {"created", {{"programs", r.created_programs}, {"links", r.created_links}}},
          {"left", {{"programs", r.left_programs}, {"links", r.left_links}}}};
}

LoaderResponse loader_response_from_json(const json& j) {
  LoaderResponse r;
  r.ok = get_bool(j, "ok");
  r.error = text(j, "error", 4096);
  r.started = get_bool(j, "started");
  r.ready = get_bool(j, "ready");
  r.ready_ms = get_number(j, "ready_ms").value_or(0);
  r.exited = get_bool(j, "exited");
  r.status = int_of(j, "status");
  r.killed = get_bool(j, "killed");
  r.nonce_seen = get_bool(j, "nonce_seen");
  r.output = text(j, "output", 16 * 1024);
  r.programs = list_of(
      j, "programs",
      [](const json& p) {
        KernelProgram k;
        k.id = u32_of(p, "id");
        k.name = name(p, "name");
        k.type = name(p, "type");
        k.tag = name(p, "tag");
        k.run_count = u64_of(p, "run_count");
        k.run_time_ns = u64_of(p, "run_time_ns");
        if (get_int(p, "verified_insns")) k.verified_insns = u32_of(p, "verified_insns");
        k.xlated_bytes = u32_of(p, "xlated_bytes");
        k.jited_bytes = u32_of(p, "jited_bytes");
        k.links = list_of(
            p, "links",
            [](const json& l) {
              return KernelLink{u32_of(l, "id"), name(l, "type"), name(l, "target")};
            },
            64);
        return k;
      },
      256);
  read_created_left(j, r.created_programs, r.created_links, r.left_programs, r.left_links);
  return r;
}

json to_json(const Ack& a) {
  return {{"ok", a.ok}, {"error", a.error}};
}

Ack ack_from_json(const json& j) {
  return {get_bool(j, "ok"), text(j, "error", 4096)};
}

}  // namespace kgate::proto

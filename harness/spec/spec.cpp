#include "spec/spec.hpp"

#include <algorithm>
#include <set>

#include "core/arch.hpp"
#include "core/json_doc.hpp"
#include "core/strings.hpp"

namespace kgate::spec {

std::string_view attach_mode_name(AttachMode m) {
  switch (m) {
    case AttachMode::auto_attach: return "auto";
    case AttachMode::test_run: return "test_run";
    case AttachMode::load_only: return "load_only";
  }
  return "auto";
}

std::string_view trigger_kind_name(TriggerKind k) {
  switch (k) {
    case TriggerKind::none: return "none";
    case TriggerKind::getpid: return "getpid";
    case TriggerKind::openat: return "openat";
    case TriggerKind::execve: return "execve";
    case TriggerKind::pipe: return "pipe";
    case TriggerKind::tcp: return "tcp";
    case TriggerKind::udp: return "udp";
    case TriggerKind::nanosleep: return "nanosleep";
    case TriggerKind::call: return "call";
    case TriggerKind::command: return "command";
  }
  return "none";
}

std::string_view nonce_encoding_name(NonceEncoding e) {
  switch (e) {
    case NonceEncoding::u64le: return "u64le";
    case NonceEncoding::u64be: return "u64be";
    case NonceEncoding::hex: return "hex";
  }
  return "u64le";
}

const ProgramSpec* ObjectSpec::find(std::string_view program) const {
  for (const auto& p : programs) {
    if (p.name == program) return &p;
  }
  return nullptr;
}

int Spec::line_of(std::string_view json_path) const {
  auto it = lines.find(json_path);
  return it == lines.end() ? 0 : it->second;
}

namespace {

constexpr std::int64_t max_count = 1'000'000;
constexpr std::int64_t max_offset = 1 << 20;
constexpr std::size_t max_packet_bytes = 65536;

constexpr TriggerKind trigger_kinds[] = {TriggerKind::none,      TriggerKind::getpid, TriggerKind::openat,
                                         TriggerKind::execve,    TriggerKind::pipe,   TriggerKind::tcp,
                                         TriggerKind::nanosleep, TriggerKind::udp,    TriggerKind::call,
                                         TriggerKind::command};
constexpr std::string_view trigger_choices =
    "none, getpid, openat, execve, pipe, tcp, udp, nanosleep, call, command";
constexpr std::string_view builtin_packets[] = {"ipv4-udp", "ipv6-tcp", "none"};

bool valid_object_name(std::string_view s) {
  if (s.empty() || s.size() > 100 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

bool is_c_identifier(std::string_view s) {
  if (s.empty() || s.size() > 255 || (s[0] >= '0' && s[0] <= '9')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// "5.8", "5.15.0": one to four dot-separated numbers of at most five digits.
bool is_kernel_version(std::string_view s) {
  int parts = 0;
  size_t pos = 0;
  while (true) {
    size_t dot = s.find('.', pos);
    std::string_view part = s.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
    if (part.empty() || part.size() > 5 ||
        !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    pos = dot + 1;
  }
  return parts <= 4;
}

// An absolute guest path: no ".." component, so that it names the file it shows.
bool is_guest_path(std::string_view s) {
  if (s.size() < 2 || s.size() > 4096 || s[0] != '/') return false;
  for (const auto& part : fs::path(std::string(s))) {
    if (part == "..") return false;
  }
  return true;
}

fs::path resolve(const fs::path& base, const std::string& p) {
  fs::path out = (fs::path(p).is_absolute() ? fs::path(p) : base / p).lexically_normal();
  return out.has_filename() || out == out.root_path() ? out : out.parent_path();
}

template <class T>
std::unexpected<Error> err(const Result<T>& r) {
  return std::unexpected(r.error());
}

// The member `key` as a string that must satisfy `ok`, or nullopt when absent.
Result<std::optional<std::string>> checked_string(const JsonReader& r, std::string_view key,
                                                  bool (*ok)(std::string_view), std::string_view what) {
  auto s = r.string(key);
  if (!s) return err(s);
  if (*s && !ok(**s)) return r.bad_at(key, "\"" + **s + "\" " + std::string(what));
  return s;
}

// A count: an integer, "count" (the run's --count) or {"count": N} (N times --count).
Result<std::optional<MinCount>> read_count(const JsonReader& r, std::string_view key) {
  if (!r.has(key)) return std::nullopt;
  JsonReader v = r.member(key);
  const std::string what = strprintf(
      "must be an integer from 1 to %lld, \"count\" (the run's --count) or {\"count\": N} "
      "(N times --count)",
      static_cast<long long>(max_count));
  if (v.value().is_string()) {
    if (v.value().get<std::string>() != "count") return v.bad(what);
    return MinCount{true, 1};
  }
  if (v.value().is_object()) {
    if (auto st = v.only_keys({"count"}); !st) return std::unexpected(st.error());
    auto times = v.integer("count", 1, max_count);
    if (!times) return err(times);
    if (!*times) return v.bad(what);
    return MinCount{true, static_cast<std::uint64_t>(**times)};
  }
  auto n = r.integer(key, 1, max_count);
  if (!n) return v.bad(what);
  return MinCount{false, static_cast<std::uint64_t>(**n)};
}

// `offset` and `encoding`: where a nonce is in a record or a map value.
Result<NonceAt> read_nonce_at(const JsonReader& r) {
  NonceAt at;
  auto offset = r.integer("offset", 0, max_offset);
  if (!offset) return err(offset);
  at.offset = static_cast<std::uint32_t>(offset->value_or(0));
  auto encoding = r.string("encoding");
  if (!encoding) return err(encoding);
  if (*encoding) {
    if (**encoding == "u64le") {
      at.encoding = NonceEncoding::u64le;
    } else if (**encoding == "u64be") {
      at.encoding = NonceEncoding::u64be;
    } else if (**encoding == "hex") {
      at.encoding = NonceEncoding::hex;
    } else {
      return r.bad_at("encoding", "\"" + **encoding + "\" is not an encoding: u64le, u64be or hex");
    }
  }
  return at;
}

Result<UprobeTarget> read_target(const JsonReader& t) {
  if (auto st = t.only_keys({"binary", "function", "provider", "probe"}); !st)
    return std::unexpected(st.error());
  UprobeTarget out;
  auto binary = checked_string(t, "binary", is_guest_path, "is not an absolute guest path without \"..\"");
  auto function = checked_string(t, "function", is_c_identifier, "is not a symbol name");
  auto provider = checked_string(t, "provider", is_c_identifier, "is not a USDT provider name");
  auto probe = checked_string(t, "probe", is_c_identifier, "is not a USDT probe name");
  for (const auto* r : {&binary, &function, &provider, &probe}) {
    if (!*r) return err(*r);
  }
  if (!*binary) return t.bad("needs \"binary\": the guest path of the file to probe");
  out.binary = **binary;
  if (*function) {
    if (*provider || *probe)
      return t.bad("takes \"function\" (a uprobe) or \"provider\" and \"probe\" (a USDT probe), not both");
    out.function = **function;
  } else if (*provider && *probe) {
    out.provider = **provider;
    out.probe = **probe;
  } else {
    return t.bad("needs \"function\" (a uprobe) or \"provider\" and \"probe\" (a USDT probe)");
  }
  return out;
}

Result<TestRun> read_test_run(const JsonReader& t) {
  if (auto st = t.only_keys({"packet", "packet_hex", "repeat"}); !st) return std::unexpected(st.error());
  TestRun out;
  auto packet = t.string("packet");
  if (!packet) return err(packet);
  auto hex = t.string("packet_hex", true);
  if (!hex) return err(hex);
  if (*packet && *hex)
    return t.bad_at("packet_hex", "give \"packet\" (a built-in packet) or \"packet_hex\", not both");
  if (*packet) {
    if (std::find(std::begin(builtin_packets), std::end(builtin_packets), **packet) ==
        std::end(builtin_packets))
      return t.bad_at("packet", "\"" + **packet + "\" is not a built-in packet: ipv4-udp, ipv6-tcp or none");
    out.packet = **packet;
  }
  if (*hex) {
    const std::string& h = **hex;
    bool digits = std::all_of(h.begin(), h.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    });
    if (!digits || h.size() % 2 != 0)
      return t.bad_at("packet_hex", "must be an even number of hex digits (two per byte)");
    if (h.size() / 2 > max_packet_bytes)
      return t.bad_at("packet_hex", strprintf("is more than %zu bytes", max_packet_bytes));
    out.packet_hex = h;
    out.packet.clear();
  }
  auto repeat = t.integer("repeat", 1, max_count);
  if (!repeat) return err(repeat);
  out.repeat = static_cast<int>(repeat->value_or(1));
  return out;
}

Result<Trigger> read_trigger(const JsonReader& prog) {
  JsonReader t = prog.member("trigger");
  Trigger out;
  std::string kind_name;
  if (t.value().is_string()) {
    kind_name = t.value().get<std::string>();
  } else if (t.value().is_object()) {
    auto kind = t.string("kind");
    if (!kind) return err(kind);
    if (!*kind) return t.bad("needs \"kind\": one of " + std::string(trigger_choices));
    kind_name = **kind;
  } else {
    return t.bad("must be a trigger's name or an object with \"kind\"");
  }
  auto found = std::find_if(std::begin(trigger_kinds), std::end(trigger_kinds),
                            [&](TriggerKind k) { return trigger_kind_name(k) == kind_name; });
  if (found == std::end(trigger_kinds)) {
    std::string msg = "\"" + kind_name + "\" is not a trigger: " + std::string(trigger_choices);
    return t.value().is_object() ? t.bad_at("kind", msg) : t.bad(msg);
  }
  out.kind = *found;
  if (out.kind == TriggerKind::openat) out.path = "/tmp/kgate-trigger-{nonce}";
  if (!t.value().is_object()) {
    if (out.kind == TriggerKind::call)
      return t.bad(
          "a call trigger needs an object: {\"kind\": \"call\", \"binary\": ..., \"function\": ...}");
    if (out.kind == TriggerKind::command)
      return t.bad("a command trigger needs an object: {\"kind\": \"command\", \"args\": [...]}");
    return out;
  }
  Status keys;
  switch (out.kind) {
    case TriggerKind::openat: keys = t.only_keys({"kind", "path"}); break;
    case TriggerKind::call: keys = t.only_keys({"kind", "binary", "function", "args"}); break;
    case TriggerKind::command: keys = t.only_keys({"kind", "args"}); break;
    default: keys = t.only_keys({"kind"}); break;
  }
  if (!keys) return std::unexpected(keys.error());
  if (out.kind == TriggerKind::openat) {
    auto path = checked_string(t, "path", is_guest_path, "is not an absolute guest path without \"..\"");
    if (!path) return err(path);
    if (*path) out.path = **path;
  } else if (out.kind == TriggerKind::call) {
    auto binary = checked_string(t, "binary", is_guest_path, "is not an absolute guest path without \"..\"");
    if (!binary) return err(binary);
    if (!*binary) return t.bad("a call trigger needs \"binary\": the guest path of the program to run");
    out.binary = **binary;
    auto function = checked_string(t, "function", is_c_identifier, "is not a symbol name");
    if (!function) return err(function);
    if (!*function) return t.bad("a call trigger needs \"function\": the function the program calls");
    out.function = **function;
    auto args = t.strings("args");
    if (!args) return err(args);
    if (*args) out.args = **args;
  } else if (out.kind == TriggerKind::command) {
    auto args = t.strings("args", true);
    if (!args) return err(args);
    if (!*args) return t.bad("a command trigger needs \"args\": the command and its arguments");
    if (!is_guest_path((**args)[0]))
      return t.member("args").element(0).bad("must be the absolute guest path of the program to run");
    out.args = **args;
  }
  return out;
}

Result<std::vector<Skip>> read_skip(const JsonReader& prog) {
  auto arr = prog.array("skip");
  if (!arr) return err(arr);
  std::vector<Skip> out;
  for (std::size_t i = 0; i < (*arr)->value().size(); ++i) {
    JsonReader s = (*arr)->element(i);
    if (auto st = s.expect_object("must be an object: {\"arch\" or \"kernel_below\", \"reason\"}"); !st)
      return std::unexpected(st.error());
    if (auto st = s.only_keys({"arch", "kernel_below", "reason"}); !st) return std::unexpected(st.error());
    Skip skip;
    if (s.has("arch")) {
      JsonReader a = s.member("arch");
      std::vector<std::pair<std::string, JsonReader>> names;
      if (a.value().is_string()) {
        names.emplace_back(a.value().get<std::string>(), a);
      } else if (a.value().is_array() && !a.value().empty()) {
        for (std::size_t k = 0; k < a.value().size(); ++k) {
          if (!a.value()[k].is_string()) return a.element(k).bad("must be an arch name");
          names.emplace_back(a.value()[k].get<std::string>(), a.element(k));
        }
      } else {
        return a.bad("must be an arch (\"x86_64\" or \"arm64\") or a non-empty array of them");
      }
      for (const auto& [name, where] : names) {
        auto arch = parse_arch(name);
        if (!arch) return where.bad("\"" + name + "\" is not an arch: x86_64 (amd64) or arm64 (aarch64)");
        std::string canonical(arch_name(*arch));
        if (std::find(skip.arches.begin(), skip.arches.end(), canonical) != skip.arches.end())
          return where.bad(canonical + " is listed twice");
        skip.arches.push_back(canonical);
      }
    }
    auto below = checked_string(s, "kernel_below", is_kernel_version, "is not a kernel version (\"5.15\")");
    if (!below) return err(below);
    if (*below) skip.kernel_below = **below;
    if (skip.arches.empty() && skip.kernel_below.empty())
      return s.bad("needs \"arch\" or \"kernel_below\": when to skip");
    auto reason = s.string("reason", true);
    if (!reason) return err(reason);
    if (!*reason) return s.bad("needs \"reason\": why the program is skipped (it goes into the receipt)");
    skip.reason = **reason;
    out.push_back(std::move(skip));
  }
  return out;
}

Result<Expect> read_expect(const JsonReader& e, ProgramSpec& p) {
  if (auto st = e.only_keys({"runs", "records", "map_nonce", "retval", "loads", "attaches"}); !st)
    return std::unexpected(st.error());
  Expect out;
  bool triggered = p.trigger.kind != TriggerKind::none || p.attach == AttachMode::test_run;
  auto runs = read_count(e, "runs");
  if (!runs) return err(runs);
  out.runs = *runs;
  auto records = e.object("records");
  if (!records) return err(records);
  if (*records) {
    const JsonReader& r = **records;
    if (auto st = r.only_keys({"ring", "where", "min", "nonce"}); !st) return std::unexpected(st.error());
    RecordsExpect rec;
    auto ring = checked_string(r, "ring", is_c_identifier, "is not a map name");
    if (!ring) return err(ring);
    if (!*ring) return r.bad("needs \"ring\": the ring buffer map the program writes to");
    rec.ring = **ring;
    auto where = r.object("where");
    if (!where) return err(where);
    if (*where) {
      const JsonReader& w = **where;
      if (auto st = w.only_keys({"offset", "string"}); !st) return std::unexpected(st.error());
      RecordFilter f;
      auto offset = w.integer("offset", 0, max_offset);
      if (!offset) return err(offset);
      f.offset = static_cast<std::uint32_t>(offset->value_or(0));
      auto s = w.string("string", true);
      if (!s) return err(s);
      if (!*s) return w.bad("needs \"string\": the text that marks this program's records");
      f.string = **s;
      rec.where = f;
    }
    auto min = read_count(r, "min");
    if (!min) return err(min);
    rec.min = min->value_or(triggered ? MinCount{true, 1} : MinCount{false, 1});
    auto nonce = r.object("nonce");
    if (!nonce) return err(nonce);
    if (*nonce) {
      if (auto st = (*nonce)->only_keys({"offset", "encoding"}); !st) return std::unexpected(st.error());
      auto at = read_nonce_at(**nonce);
      if (!at) return err(at);
      rec.nonce = *at;
    }
    out.records = rec;
  }
  auto map_nonce = e.object("map_nonce");
  if (!map_nonce) return err(map_nonce);
  if (*map_nonce) {
    const JsonReader& m = **map_nonce;
    if (auto st = m.only_keys({"map", "offset", "encoding"}); !st) return std::unexpected(st.error());
    MapNonceExpect mn;
    auto map = checked_string(m, "map", is_c_identifier, "is not a map name");
    if (!map) return err(map);
    if (!*map) return m.bad("needs \"map\": the map whose values carry the nonce");
    mn.map = **map;
    auto at = read_nonce_at(m);
    if (!at) return err(at);
    mn.at = *at;
    out.map_nonce = mn;
  }
  // A BPF program's return value is 32 bits; either signedness is accepted.
  auto retval = e.integer("retval", INT32_MIN, UINT32_MAX);
  if (!retval) return err(retval);
  out.retval = *retval;
  auto loads = e.boolean("loads");
  if (!loads) return err(loads);
  out.loads = loads->value_or(true);
  auto attaches = e.boolean("attaches");
  if (!attaches) return err(attaches);
  out.attaches = attaches->value_or(true);
  return out;
}

Result<ProgramSpec> read_program(const JsonReader& pr, const std::string& name) {
  ProgramSpec p;
  p.name = name;
  p.line = pr.line();
  p.json_path = pr.path();
  if (!is_c_identifier(name))
    return pr.bad("\"" + name + "\" is not a program name: a BPF program is named by its C function");
  if (auto st = pr.expect_object("must be an object (use {} to take every default)"); !st)
    return std::unexpected(st.error());
  if (auto st = pr.only_keys({"attach", "target", "test_run", "trigger", "expect", "skip", "proposed"}); !st)
    return std::unexpected(st.error());
  auto proposed = pr.string("proposed");
  if (!proposed) return err(proposed);
  p.proposed = proposed->value_or("");
  auto attach = pr.string("attach");
  if (!attach) return err(attach);
  if (*attach) {
    if (**attach == "auto") {
      p.attach = AttachMode::auto_attach;
    } else if (**attach == "test_run") {
      p.attach = AttachMode::test_run;
    } else if (**attach == "load_only") {
      p.attach = AttachMode::load_only;
    } else {
      return pr.bad_at("attach", "\"" + **attach + "\" is not an attach mode: auto, test_run or load_only");
    }
  }
  auto target = pr.object("target");
  if (!target) return err(target);
  if (*target) {
    if (p.attach != AttachMode::auto_attach)
      return pr.bad_at("target", "only an auto-attached uprobe or usdt program takes a target (attach is " +
                                     std::string(attach_mode_name(p.attach)) + ")");
    auto t = read_target(**target);
    if (!t) return err(t);
    p.target = *t;
  }
  auto test_run = pr.object("test_run");
  if (!test_run) return err(test_run);
  if (*test_run) {
    if (p.attach != AttachMode::test_run)
      return pr.bad_at("test_run", "only a program with \"attach\": \"test_run\" takes this");
    auto t = read_test_run(**test_run);
    if (!t) return err(t);
    p.test_run = *t;
  }
  if (pr.has("trigger")) {
    auto t = read_trigger(pr);
    if (!t) return err(t);
    p.trigger = *t;
    if (p.trigger.kind != TriggerKind::none && p.attach == AttachMode::load_only)
      return pr.bad_at("trigger", "a load_only program is never attached, so no trigger can run it");
    if (p.trigger.kind != TriggerKind::none && p.attach == AttachMode::test_run)
      return pr.bad_at("trigger", "a test_run program is run by the test run; its trigger must be none");
  }
  auto expect = pr.object("expect");
  if (!expect) return err(expect);
  if (*expect) {
    auto e = read_expect(**expect, p);
    if (!e) return err(e);
    p.expect = *e;
    const JsonReader& ej = **expect;
    if (p.expect.retval && p.attach != AttachMode::test_run)
      return ej.bad_at("retval", "only a test_run program has a return value to expect (attach is " +
                                     std::string(attach_mode_name(p.attach)) + ")");
    bool runs = p.expect.runs || p.expect.records || p.expect.map_nonce || p.expect.retval;
    if (!p.expect.loads) {
      for (const char* key : {"runs", "records", "map_nonce", "retval", "attaches"}) {
        if (ej.has(key))
          return ej.bad_at(key, "a program expected to be refused by the verifier never attaches or runs");
      }
      if (p.trigger.kind != TriggerKind::none)
        return pr.bad_at("trigger", "a program expected to be refused by the verifier never runs");
    } else if (!p.expect.attaches) {
      if (p.attach != AttachMode::auto_attach)
        return ej.bad_at("attaches", "only an auto-attached program is attached (attach is " +
                                         std::string(attach_mode_name(p.attach)) + ")");
      for (const char* key : {"runs", "records", "map_nonce"}) {
        if (ej.has(key)) return ej.bad_at(key, "a program expected to be refused at attach never runs");
      }
      if (p.trigger.kind != TriggerKind::none)
        return pr.bad_at("trigger", "a program expected to be refused at attach never runs");
    } else if (p.attach == AttachMode::load_only && runs) {
      for (const char* key : {"runs", "records", "map_nonce"}) {
        if (ej.has(key)) return ej.bad_at(key, "a load_only program never runs: nothing can be observed");
      }
    }
  }
  // A program that something runs must have run: at least once per trigger round.
  if (!p.expect.runs && p.expect.loads && p.expect.attaches &&
      (p.trigger.kind != TriggerKind::none || p.attach == AttachMode::test_run))
    p.expect.runs = MinCount{true, 1};
  if (pr.has("skip")) {
    auto skip = read_skip(pr);
    if (!skip) return err(skip);
    p.skip = std::move(*skip);
  }
  return p;
}

// A host path for every arch ("x86_64" and "arm64"), or one per arch: {"x86_64": ..., "arm64": ...};
// relative paths resolve against `base_dir`. `what` names the file in messages ("object").
Result<std::map<std::string, fs::path>> read_arch_paths(const JsonReader& p, const fs::path& base_dir,
                                                        const std::string& what) {
  std::map<std::string, fs::path> out;
  if (p.value().is_string()) {
    std::string s = p.value().get<std::string>();
    if (s.empty()) return p.bad("must not be empty");
    fs::path resolved = resolve(base_dir, s);
    out["x86_64"] = resolved;
    out["arm64"] = resolved;
  } else if (p.value().is_object()) {
    if (p.value().empty()) return p.bad("names no " + what + " file: give \"x86_64\", \"arm64\" or both");
    for (const auto& key : p.keys()) {
      JsonReader v = p.member(key);
      auto arch = parse_arch(key);
      if (!arch) return v.bad("\"" + key + "\" is not an arch: x86_64 (amd64) or arm64 (aarch64)");
      std::string canonical(arch_name(*arch));
      if (out.contains(canonical)) return v.bad(canonical + " is given twice (under another name)");
      if (!v.value().is_string() || v.value().get_ref<const std::string&>().empty())
        return v.bad("must be a path (a non-empty string)");
      out[canonical] = resolve(base_dir, v.value().get<std::string>());
    }
  } else {
    return p.bad("must be a path, or an object of paths by arch: {\"x86_64\": ..., \"arm64\": ...}");
  }
  return out;
}

Result<ObjectSpec> read_object(const JsonReader& o, const fs::path& base_dir) {
  if (auto st = o.expect_object("must be an object with \"name\" and \"path\""); !st)
    return std::unexpected(st.error());
  if (auto st = o.only_keys({"name", "path", "builtin", "nonce", "maps", "requires", "programs"}); !st)
    return std::unexpected(st.error());
  ObjectSpec obj;
  obj.line = o.line();
  obj.json_path = o.path();
  auto name = o.string("name");
  if (!name) return err(name);
  if (!*name) return o.bad("needs \"name\": the object's name in the receipt");
  if (!valid_object_name(**name))
    return o.bad_at("name",
                    "\"" + **name + "\" is not a name: use letters, digits, '.', '_' and '-' (at most 100)");
  obj.name = **name;
  if (o.has("path") && o.has("builtin"))
    return o.bad_at("builtin", "give \"path\" (an object file) or \"builtin\", not both");
  if (o.has("builtin")) {
    auto builtin = o.string("builtin");
    if (!builtin) return err(builtin);
    if (**builtin != "probe")
      return o.bad_at("builtin", "\"" + **builtin + "\" is not a built-in object: probe");
    obj.builtin = **builtin;
  } else if (!o.has("path")) {
    return o.bad("needs \"path\": the object file, or {\"x86_64\": ..., \"arm64\": ...}");
  } else {
    auto paths = read_arch_paths(o.member("path"), base_dir, "object");
    if (!paths) return err(paths);
    obj.paths = std::move(*paths);
  }
  auto nonce = o.object("nonce");
  if (!nonce) return err(nonce);
  if (*nonce) {
    const JsonReader& n = **nonce;
    if (auto st = n.only_keys({"global", "map"}); !st) return std::unexpected(st.error());
    if (n.has("global") == n.has("map"))
      return n.bad("needs one of \"global\" (a const volatile __u64 in .rodata) or \"map\" (an array map)");
    std::string key = n.has("global") ? "global" : "map";
    auto s = checked_string(n, key, is_c_identifier, "is not a C identifier");
    if (!s) return err(s);
    obj.nonce.kind = key == "global" ? NonceSource::Kind::global : NonceSource::Kind::map;
    obj.nonce.name = **s;
  }
  auto maps = o.strings("maps");
  if (!maps) return err(maps);
  if (*maps) {
    for (std::size_t i = 0; i < (*maps)->size(); ++i) {
      const std::string& m = (**maps)[i];
      JsonReader where = o.member("maps").element(i);
      if (!is_c_identifier(m)) return where.bad("\"" + m + "\" is not a map name");
      if (std::find(obj.maps.begin(), obj.maps.end(), m) != obj.maps.end())
        return where.bad("\"" + m + "\" is listed twice");
      obj.maps.push_back(m);
    }
  }
  auto requires_ = o.object("requires");
  if (!requires_) return err(requires_);
  if (*requires_) {
    const JsonReader& r = **requires_;
    if (auto st = r.only_keys({"min_kernel", "btf"}); !st) return std::unexpected(st.error());
    auto min = checked_string(r, "min_kernel", is_kernel_version, "is not a kernel version (\"5.8\")");
    if (!min) return err(min);
    if (*min) obj.min_kernel = **min;
    auto btf = r.boolean("btf");
    if (!btf) return err(btf);
    obj.needs_btf = btf->value_or(true);
  }
  auto programs = o.object("programs");
  if (!programs) return err(programs);
  if (*programs) {
    for (const auto& key : (*programs)->keys()) {
      auto p = read_program((*programs)->member(key), key);
      if (!p) return err(p);
      obj.programs.push_back(std::move(*p));
    }
    // The file's order is lost (nlohmann sorts keys); keep the order by line, then name.
    std::stable_sort(obj.programs.begin(), obj.programs.end(),
                     [](const ProgramSpec& a, const ProgramSpec& b) { return a.line < b.line; });
  }
  return obj;
}

Result<FileSpec> read_file_spec(const JsonReader& f, const fs::path& base_dir) {
  if (auto st = f.expect_object("must be an object: {\"source\", \"dest\", \"mode\"}"); !st)
    return std::unexpected(st.error());
  if (auto st = f.only_keys({"source", "dest", "mode"}); !st) return std::unexpected(st.error());
  FileSpec out;
  if (!f.has("source"))
    return f.bad("needs \"source\": the file on the host, or {\"x86_64\": ..., \"arm64\": ...}");
  auto sources = read_arch_paths(f.member("source"), base_dir, "source");
  if (!sources) return err(sources);
  out.sources = std::move(*sources);
  auto dest = checked_string(f, "dest", is_guest_path, "is not an absolute guest path without \"..\"");
  if (!dest) return err(dest);
  if (!*dest) return f.bad("needs \"dest\": the absolute path in the guest");
  if (dest->value().back() == '/') return f.bad_at("dest", "must name a file, not a directory");
  out.dest = **dest;
  if (f.has("mode")) {
    JsonReader m = f.member("mode");
    const std::string what = "must be an octal mode as a string, such as \"0755\"";
    if (!m.value().is_string()) return m.bad(what);
    const std::string& s = m.value().get_ref<const std::string&>();
    if (s.empty() || s.size() > 4 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '7'; }))
      return m.bad(what);
    out.mode = static_cast<std::uint32_t>(std::stoul(s, nullptr, 8));
  }
  return out;
}

// "loader": {"exec", "dest", "args", "env", "cwd", "ready": {"timeout_s", "line"}, "stop":
// {"grace_s"}, "pins", "programs": {NAME: {"type", "trigger", "expect": {"runs", "attached"}}}}.
Result<LoaderSpec> read_loader(const JsonReader& l, const fs::path& base_dir) {
  if (auto st = l.expect_object("must be an object with \"exec\" and \"programs\""); !st)
    return std::unexpected(st.error());
  if (auto st = l.only_keys(
          {"exec", "image", "dest", "args", "env", "cwd", "ready", "stop", "pins", "nonce", "programs"});
      !st)
    return std::unexpected(st.error());
  LoaderSpec out;
  out.line = l.line();
  auto image = l.string("image", true);
  if (!image) return err(image);
  if (*image) {
    auto source = parse_image_source(**image, base_dir);
    if (!source) return l.bad_at("image", source.error().describe());
    out.image = std::move(*source);
    if (l.has("dest")) return l.bad_at("dest", "a loader from an image is not shipped: it has no \"dest\"");
    auto exec = checked_string(l, "exec", is_guest_path, "is the executable's absolute path in the image");
    if (!exec) return err(exec);
    if (*exec) out.exec_in_image = **exec;
  } else {
    if (!l.has("exec"))
      return l.bad(
          "needs \"exec\": the loader on the host, or {\"x86_64\": ..., \"arm64\": ...}; or \"image\": the "
          "container image it ships in");
    auto exec = read_arch_paths(l.member("exec"), base_dir, "loader");
    if (!exec) return err(exec);
    out.exec = std::move(*exec);
    auto dest = checked_string(l, "dest", is_guest_path, "is not an absolute guest path without \"..\"");
    if (!dest) return err(dest);
    if (*dest) out.dest = **dest;
  }
  auto args = l.strings("args");
  if (!args) return err(args);
  if (*args) out.args = **args;
  out.args_given = args->has_value();
  auto env = l.object("env");
  if (!env) return err(env);
  if (*env) {
    for (const auto& key : (*env)->keys()) {
      JsonReader v = (*env)->member(key);
      if (key.empty() || key.find('=') != std::string::npos)
        return v.bad("is not an environment variable's name");
      if (!v.value().is_string()) return v.bad("must be a string");
      out.env.push_back(key + "=" + v.value().get<std::string>());
    }
  }
  auto cwd = checked_string(l, "cwd", is_guest_path, "is not an absolute guest path without \"..\"");
  if (!cwd) return err(cwd);
  if (*cwd) out.cwd = **cwd;
  auto ready = l.object("ready");
  if (!ready) return err(ready);
  if (*ready) {
    if (auto st = (*ready)->only_keys({"timeout_s", "line"}); !st) return std::unexpected(st.error());
    auto t = (*ready)->integer("timeout_s", 1, 3600);
    if (!t) return err(t);
    if (*t) out.ready_timeout_s = static_cast<double>(**t);
    auto line = (*ready)->string("line", true);
    if (!line) return err(line);
    if (*line) out.ready_line = **line;
  }
  auto stop = l.object("stop");
  if (!stop) return err(stop);
  if (*stop) {
    if (auto st = (*stop)->only_keys({"grace_s"}); !st) return std::unexpected(st.error());
    auto g = (*stop)->integer("grace_s", 0, 600);
    if (!g) return err(g);
    if (*g) out.stop_grace_s = static_cast<double>(**g);
  }
  auto pins = l.boolean("pins");
  if (!pins) return err(pins);
  out.pins = pins->value_or(false);
  if (l.has("nonce")) {
    JsonReader n = l.member("nonce");
    const std::string where =
        "is not where the nonce can be looked for: \"output\", {\"file\": PATH} or {\"map\": PINNED_PATH, "
        "\"offset\", \"encoding\"}";
    if (n.value().is_string()) {
      if (n.value().get<std::string>() != "output")
        return n.bad("\"" + n.value().get<std::string>() + "\" " + where);
      out.nonce_in_output = true;
    } else if (n.value().is_object()) {
      if (auto st = n.only_keys({"file", "map", "offset", "encoding"}); !st)
        return std::unexpected(st.error());
      auto file = checked_string(n, "file", is_guest_path, "is not an absolute guest path without \"..\"");
      if (!file) return err(file);
      auto map = checked_string(n, "map", is_guest_path, "is not an absolute guest path without \"..\"");
      if (!map) return err(map);
      if (file->has_value() == map->has_value()) return n.bad("names one of \"file\" or \"map\"");
      if (*file) {
        if (n.has("offset") || n.has("encoding"))
          return n.bad("\"offset\" and \"encoding\" are for a map; a file is searched for the nonce's hex");
        out.nonce_file = **file;
      } else {
        if (!(*map)->starts_with("/sys/fs/bpf/")) return n.bad_at("map", "is not a path under /sys/fs/bpf/");
        out.nonce_map = **map;
        auto at = read_nonce_at(n);
        if (!at) return err(at);
        out.nonce_map_at = *at;
      }
    } else {
      return n.bad(where);
    }
  }
  auto programs = l.object("programs");
  if (!programs) return err(programs);
  if (!*programs || (*programs)->keys().empty())
    return l.bad("needs \"programs\": the programs the loader must load, by name, each with its \"type\"");
  for (const auto& key : (*programs)->keys()) {
    JsonReader pr = (*programs)->member(key);
    if (auto st = pr.expect_object("must be an object with \"type\""); !st)
      return std::unexpected(st.error());
    if (auto st = pr.only_keys({"type", "trigger", "expect"}); !st) return std::unexpected(st.error());
    if (!is_c_identifier(key)) return pr.bad("\"" + key + "\" is not a program name");
    LoaderProgram p;
    p.name = key;
    p.line = pr.line();
    p.json_path = pr.path();
    auto type = pr.string("type", true);
    if (!type) return err(type);
    if (!*type)
      return pr.bad("needs \"type\": the program type as libbpf names it (\"kprobe\", \"tracepoint\", ...)");
    p.type = **type;
    if (pr.has("trigger")) {
      auto t = read_trigger(pr);
      if (!t) return err(t);
      p.trigger = std::move(*t);
    }
    auto expect = pr.object("expect");
    if (!expect) return err(expect);
    if (*expect) {
      if (auto st = (*expect)->only_keys({"runs", "attached", "link", "target"}); !st)
        return std::unexpected(st.error());
      auto runs = read_count(**expect, "runs");
      if (!runs) return err(runs);
      p.runs = *runs;
      auto attached = (*expect)->boolean("attached");
      if (!attached) return err(attached);
      p.attached = attached->value_or(true);
      auto link = (*expect)->string("link", true);
      if (!link) return err(link);
      if (*link) {
        static const std::set<std::string, std::less<>> link_types = {
            "raw_tracepoint", "tracing",    "cgroup",    "iter", "netns",        "xdp",    "perf_event",
            "kprobe_multi",   "struct_ops", "netfilter", "tcx",  "uprobe_multi", "netkit", "sockmap"};
        if (!link_types.contains(**link))
          return (*expect)->bad_at("link",
                                   "\"" + **link +
                                       "\" is not a link type as libbpf names it (perf_event, "
                                       "tracing, raw_tracepoint, kprobe_multi, xdp, tcx, cgroup, ...)");
        if (!p.attached)
          return (*expect)->bad_at("link", "a program expected without a link has no link type");
        p.link = **link;
      }
      auto target = (*expect)->string("target", true);
      if (!target) return err(target);
      if (*target) {
        if (!p.attached)
          return (*expect)->bad_at("target", "a program expected without a link has no target");
        p.target = **target;
      }
    }
    if (p.runs && p.trigger.kind == TriggerKind::none)
      return pr.bad("expects runs but has no \"trigger\": give the trigger that runs it");
    out.programs.push_back(std::move(p));
  }
  std::stable_sort(out.programs.begin(), out.programs.end(),
                   [](const LoaderProgram& a, const LoaderProgram& b) { return a.line < b.line; });
  return out;
}

}  // namespace

std::string ImageSource::text() const {
  if (!remote.empty()) return "docker://" + remote;
  return "oci-layout:" + layout.string() + (ref.empty() ? "" : ":" + ref);
}

Result<ImageSource> parse_image_source(std::string_view text, const fs::path& base_dir) {
  constexpr std::string_view layout_prefix = "oci-layout:", docker_prefix = "docker://";
  ImageSource out;
  if (text.starts_with(layout_prefix)) {
    std::string_view rest = text.substr(layout_prefix.size());
    // DIR[:REF]: a ':' after the last '/' starts the ref.
    const auto slash = rest.rfind('/');
    const auto colon = rest.rfind(':');
    if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
      out.ref = std::string(rest.substr(colon + 1));
      rest = rest.substr(0, colon);
      if (out.ref.empty()) return fail(FailureClass::usage, "\"" + std::string(text) + "\" has an empty ref");
    }
    if (rest.empty()) return fail(FailureClass::usage, "\"" + std::string(text) + "\" names no directory");
    fs::path dir(rest);
    out.layout = (dir.is_absolute() ? dir : base_dir / dir).lexically_normal();
    return out;
  }
  std::string_view name = text;
  if (name.starts_with(docker_prefix)) name.remove_prefix(docker_prefix.size());
  if (name.find("@sha256:") == std::string_view::npos ||
      name.find_first_of(" \t\n") != std::string_view::npos)
    return fail(FailureClass::usage,
                "\"" + std::string(text) +
                    "\" is not an image kgate runs: oci-layout:DIR, oci-layout:DIR:REF, or a registry "
                    "reference pinned by digest (docker://NAME@sha256:...)");
  out.remote = std::string(name);
  return out;
}

Result<Spec> parse_spec(std::string_view text, const fs::path& file, const fs::path& base_dir) {
  const std::string origin = file.string();
  auto doc = parse_json_doc(text, origin);
  if (!doc) return err(doc);
  JsonReader root(*doc);
  if (auto st = root.expect_object("a spec must be a JSON object"); !st) return std::unexpected(st.error());
  if (auto st = root.only_keys({"schema", "description", "objects", "loader", "files"}); !st)
    return std::unexpected(st.error());
  auto schema = root.string("schema");
  if (!schema || !*schema || **schema != spec_schema)
    return root.bad_at("schema",
                       "must be \"" + std::string(spec_schema) + "\" (this kgate reads that version)");
  Spec spec;
  spec.file = file;
  auto description = root.string("description");
  if (!description) return err(description);
  spec.description = description->value_or("");
  if (root.has("loader")) {
    auto loader = read_loader(root.member("loader"), base_dir);
    if (!loader) return err(loader);
    spec.loader = std::move(*loader);
  }
  auto objects = root.array("objects");
  if (!objects) return err(objects);
  if ((!*objects || (*objects)->value().empty()) && !spec.loader)
    return root.bad_at("objects", "a spec needs objects (an array of at least one), a loader, or both");
  std::map<std::string, std::size_t> names;
  for (std::size_t i = 0; *objects && i < (*objects)->value().size(); ++i) {
    JsonReader o = (*objects)->element(i);
    auto obj = read_object(o, base_dir);
    if (!obj) return err(obj);
    if (auto [it, fresh] = names.emplace(obj->name, i); !fresh)
      return o.bad_at("name", strprintf("objects[%zu] is named \"%s\" too; object names must be unique",
                                        it->second, obj->name.c_str()));
    spec.objects.push_back(std::move(*obj));
  }
  auto files = root.array("files");
  if (!files) return err(files);
  if (*files) {
    std::set<std::string> dests;
    for (std::size_t i = 0; i < (*files)->value().size(); ++i) {
      JsonReader f = (*files)->element(i);
      auto fspec = read_file_spec(f, base_dir);
      if (!fspec) return err(fspec);
      if (!dests.insert(fspec->dest).second)
        return f.bad_at("dest", "\"" + fspec->dest + "\" is the dest of an earlier file too");
      spec.files.push_back(std::move(*fspec));
    }
  }
  if (spec.loader && !spec.loader->image) {
    // The loader ships as one more file, executable.
    for (const auto& f : spec.files) {
      if (f.dest == spec.loader->dest)
        return root.member("loader").bad("its dest \"" + f.dest + "\" is the dest of a file too");
    }
    spec.files.push_back({spec.loader->exec, spec.loader->dest, 0755});
  }
  spec.lines = doc->lines();
  return spec;
}

Result<Spec> load_spec(const fs::path& file) {
  auto text = read_file(file);
  if (!text) {
    return std::unexpected(
        Error(FailureClass::usage, "read spec " + file.string() + ": " + text.error().describe()));
  }
  return parse_spec(*text, file, absolute_path(file).parent_path());
}

Spec object_only_spec(const fs::path& object) {
  Spec spec;
  ObjectSpec obj;
  fs::path abs = absolute_path(object).lexically_normal();
  std::string name = abs.filename().string();
  for (std::string_view suffix : {".bpf.o", ".o"}) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) {
      name.resize(name.size() - suffix.size());
      break;
    }
  }
  obj.name = name.empty() ? "object" : name;
  // The user chose the file for the run's arch; the check refuses it if it was built for the other.
  obj.paths["x86_64"] = abs;
  obj.paths["arm64"] = abs;
  obj.json_path = "--object " + object.string();
  obj.others_load_only_fallback = true;
  spec.objects.push_back(std::move(obj));
  return spec;
}

}  // namespace kgate::spec

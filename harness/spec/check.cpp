#include "spec/check.hpp"

#include <algorithm>

#include "core/arch.hpp"
#include "core/files.hpp"
#include "core/strings.hpp"

namespace kgate::spec {

namespace {

// Program types (libbpf's names) that BPF_PROG_TEST_RUN runs without attaching.
constexpr std::string_view test_run_types[] = {
    "xdp",        "sched_cls", "sched_act", "socket_filter", "flow_dissector", "raw_tracepoint", "syscall",
    "cgroup_skb", "lwt_in",    "lwt_out",   "lwt_xmit",      "lwt_seg6local",  "sk_lookup"};
// Types libbpf attaches from the section alone, and that kernel events (a trigger's syscalls)
// then run. Others need an interface, a cgroup, a socket or a target program to attach to.
constexpr std::string_view auto_attach_types[] = {"kprobe", "tracepoint", "raw_tracepoint", "tracing", "lsm"};

template <size_t N>
bool one_of(const std::string_view (&list)[N], std::string_view s) {
  return std::find(std::begin(list), std::end(list), s) != std::end(list);
}

// "<spec>: line N: <json path>", or the path alone for a spec made in code. A key the spec leaves
// out (a default "attach") takes the line of the nearest value around it that is in the file.
std::string at(const Spec& spec, std::string_view json_path) {
  if (spec.file.empty()) return std::string(json_path);
  int line = 0;
  for (std::string_view p = json_path; line == 0 && !p.empty();) {
    line = spec.line_of(p);
    size_t cut = p.find_last_of(".[");
    p = cut == std::string_view::npos ? std::string_view() : p.substr(0, cut);
  }
  std::string out = spec.file.string();
  if (line > 0) out += ": line " + std::to_string(line);
  return out + ": " + std::string(json_path);
}

std::unexpected<Error> bad(const Spec& spec, std::string_view json_path, const std::string& what) {
  return fail(FailureClass::usage, at(spec, json_path) + ": " + what);
}

// The path of `key` under `parent` as json_doc writes it (identifier keys only, here).
std::string key_path(std::string_view parent, std::string_view key) {
  return std::string(parent) + "." + std::string(key);
}

const bpf::ProgramInfo* find_program(const bpf::ObjectLayout& layout, std::string_view name) {
  for (const auto& p : layout.programs) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const bpf::MapInfo* find_map(const bpf::ObjectLayout& layout, std::string_view name) {
  for (const auto& m : layout.maps) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

std::string names_of_programs(const bpf::ObjectLayout& layout) {
  std::string out;
  for (const auto& p : layout.programs) out += (out.empty() ? "" : ", ") + p.name + " (" + p.type + ")";
  return out.empty() ? "none" : out;
}

std::string names_of_maps(const bpf::ObjectLayout& layout) {
  std::string out;
  for (const auto& m : layout.maps) out += (out.empty() ? "" : ", ") + m.name + " (" + m.type + ")";
  return out.empty() ? "none" : out;
}

// Why libbpf cannot auto-attach `prog` from its section alone, given the spec's target (null for a
// program the spec does not name); "" when it can.
std::string auto_attach_problem(const bpf::ProgramInfo& prog, const UprobeTarget* target) {
  if (!one_of(auto_attach_types, prog.type))
    return "libbpf cannot attach a " + prog.type + " program by itself (it needs an interface, a cgroup, a " +
           "socket or a target program)";
  SectionTarget st = section_target(prog.section);
  if (!st.kind.empty()) {
    if (!st.names_target && target == nullptr)
      return "its section \"" + prog.section +
             "\" names no binary to probe, and the spec gives no \"target\"";
    return "";
  }
  if (prog.section.find('/') == std::string::npos || prog.section.back() == '/')
    return "its section \"" + prog.section + "\" names nothing to attach to";
  return "";
}

}  // namespace

std::vector<ProgramSpec> unnamed_programs(const ObjectSpec& object, const bpf::ObjectLayout& layout) {
  std::vector<ProgramSpec> out;
  for (const auto& prog : layout.programs) {
    if (object.find(prog.name) != nullptr) continue;
    ProgramSpec p;
    p.name = prog.name;
    p.json_path = object.json_path + ".programs." + prog.name;
    if (object.others_load_only_fallback && !auto_attach_problem(prog, nullptr).empty())
      p.attach = AttachMode::load_only;
    out.push_back(std::move(p));
  }
  return out;
}

SectionTarget section_target(std::string_view section) {
  for (std::string_view kind : {"uprobe", "uretprobe", "uprobe.s", "uretprobe.s", "usdt", "usdt.s"}) {
    if (!section.starts_with(kind)) continue;
    std::string_view rest = section.substr(kind.size());
    if (!rest.empty() && rest[0] != '/') continue;  // "uprobe.s" is not "uprobe" with a rest
    std::string_view k = kind.starts_with("usdt") ? "usdt" : "uprobe";
    // "uprobe/<path>:<function>", "usdt/<path>:<provider>:<probe>".
    return {k, rest.size() > 1 && rest.find(':') != std::string_view::npos};
  }
  return {"", false};
}

Status check_object(const Spec& spec, std::size_t index, const bpf::ObjectLayout& layout) {
  const ObjectSpec& obj = spec.objects.at(index);
  for (const auto& p : obj.programs) {
    const bpf::ProgramInfo* prog = find_program(layout, p.name);
    if (prog == nullptr)
      return bad(spec, p.json_path,
                 "the object has no program \"" + p.name + "\" (it has " + names_of_programs(layout) + ")");
    const std::string type = prog->type;
    const std::string kind_of = "\"" + p.name + "\" (type " + type + ", section \"" + prog->section + "\")";
    SectionTarget st = section_target(prog->section);
    if (p.trigger.kind != TriggerKind::none && !one_of(auto_attach_types, type))
      return bad(
          spec, key_path(p.json_path, "trigger"),
          "a " + std::string(trigger_kind_name(p.trigger.kind)) + " trigger cannot run " + kind_of +
              ": nothing attaches it where the trigger's syscalls pass; use \"attach\": \"test_run\" " +
              "or \"load_only\"");
    if (p.target) {
      if (st.kind.empty())
        return bad(spec, key_path(p.json_path, "target"),
                   "only a uprobe or usdt program takes a target, not " + kind_of);
      if (st.kind == "usdt" && p.target->provider.empty())
        return bad(spec, key_path(p.json_path, "target"),
                   "a usdt program's target needs \"provider\" and \"probe\", not \"function\": " + kind_of);
      if (st.kind == "uprobe" && p.target->function.empty())
        return bad(
            spec, key_path(p.json_path, "target"),
            "a uprobe program's target needs \"function\", not \"provider\" and \"probe\": " + kind_of);
      // The agent's symbol table keeps only what uprobes on it may name
      // (harness/agent/retained-symbols.txt).
      if (st.kind == "uprobe" && p.target->binary == "/proc/self/exe" &&
          p.target->function != "kgate_uprobe_target")
        return bad(spec, key_path(p.json_path, "target"),
                   "/proc/self/exe is kgate's agent, whose only function a uprobe can name is "
                   "kgate_uprobe_target, not " +
                       p.target->function + "; ship your own binary with \"files\" and probe that");
    }
    switch (p.attach) {
      case AttachMode::auto_attach:
        if (!p.expect.loads || !p.expect.attaches) break;  // a negative control may well not attach
        if (std::string why = auto_attach_problem(*prog, p.target ? &*p.target : nullptr); !why.empty())
          return bad(spec, key_path(p.json_path, "attach"),
                     kind_of + " cannot be auto-attached: " + why +
                         (st.kind.empty() ? "; use \"attach\": \"test_run\" or \"load_only\"" : ""));
        break;
      case AttachMode::test_run:
        if (!one_of(test_run_types, type))
          return bad(spec, key_path(p.json_path, "attach"),
                     "test_run cannot run " + kind_of +
                         ": BPF_PROG_TEST_RUN runs xdp, sched_cls, sched_act, socket_filter, flow_dissector, "
                         "raw_tracepoint, syscall, cgroup_skb, lwt_* and sk_lookup programs");
        break;
      case AttachMode::load_only: break;
    }
    if (p.expect.records) {
      const std::string path = key_path(key_path(p.json_path, "expect"), "records") + ".ring";
      const bpf::MapInfo* ring = find_map(layout, p.expect.records->ring);
      if (ring == nullptr)
        return bad(spec, path,
                   "the object has no map \"" + p.expect.records->ring + "\" (it has " +
                       names_of_maps(layout) + ")");
      if (ring->type != "ringbuf")
        return bad(spec, path, "\"" + ring->name + "\" is a map of type " + ring->type + ", not ringbuf");
    }
    if (p.expect.map_nonce) {
      const std::string path = key_path(key_path(p.json_path, "expect"), "map_nonce") + ".map";
      if (find_map(layout, p.expect.map_nonce->map) == nullptr)
        return bad(spec, path,
                   "the object has no map \"" + p.expect.map_nonce->map + "\" (it has " +
                       names_of_maps(layout) + ")");
    }
  }
  // Programs the spec does not name are auto-attached: each must be able to be.
  for (const auto& prog : layout.programs) {
    if (obj.find(prog.name) != nullptr || obj.others_load_only_fallback) continue;
    if (std::string why = auto_attach_problem(prog, nullptr); !why.empty())
      return bad(spec, key_path(obj.json_path, "programs"),
                 "the object's program \"" + prog.name + "\" (" + prog.type +
                     ") is not named here, so it would be auto-attached, and it cannot be: " + why +
                     "; name it with the \"attach\" (and \"target\") it needs");
  }
  for (std::size_t i = 0; i < obj.maps.size(); ++i) {
    if (find_map(layout, obj.maps[i]) == nullptr)
      return bad(spec, key_path(obj.json_path, "maps") + strprintf("[%zu]", i),
                 "the object has no map \"" + obj.maps[i] + "\" (it has " + names_of_maps(layout) + ")");
  }
  const std::string nonce_path = key_path(obj.json_path, "nonce");
  if (obj.nonce.kind == NonceSource::Kind::map) {
    const bpf::MapInfo* m = find_map(layout, obj.nonce.name);
    if (m == nullptr)
      return bad(spec, nonce_path + ".map",
                 "the object has no map \"" + obj.nonce.name + "\" (it has " + names_of_maps(layout) + ")");
    if (m->type != "array")
      return bad(
          spec, nonce_path + ".map",
          "\"" + m->name + "\" is a map of type " + m->type + "; the nonce goes into key 0 of an array map");
  } else if (obj.nonce.kind == NonceSource::Kind::global) {
    auto g = std::find_if(layout.globals.begin(), layout.globals.end(),
                          [&](const bpf::GlobalInfo& x) { return x.name == obj.nonce.name; });
    if (g == layout.globals.end())
      return bad(spec, nonce_path + ".global",
                 "the object's BTF has no global \"" + obj.nonce.name +
                     "\": declare it `const volatile __u64 " + obj.nonce.name + ";` (built with -g)");
    if (!g->section.starts_with(".rodata"))
      return bad(spec, nonce_path + ".global",
                 "\"" + g->name + "\" is in " + g->section +
                     ", not .rodata: declare it `const volatile` so that kgate can set it before load");
    if (g->size != 8)
      return bad(spec, nonce_path + ".global",
                 strprintf("\"%s\" is %u bytes, not a __u64", g->name.c_str(), g->size));
  }
  return {};
}

Result<std::vector<CheckedObject>> check_spec(const Spec& spec, std::string_view arch_text,
                                              const BuiltinObjects& builtins) {
  auto arch = parse_arch(arch_text);
  if (!arch)
    return fail(FailureClass::usage,
                "check spec: \"" + std::string(arch_text) + "\" is not an arch: x86_64 or arm64");
  const std::string arch_str(arch_name(*arch));
  const bpf::GateArch* gate_arch = bpf::find_gate_arch(*arch == Arch::arm64 ? "arm64" : "x86");
  std::vector<CheckedObject> out;
  for (std::size_t i = 0; i < spec.objects.size(); ++i) {
    const ObjectSpec& obj = spec.objects[i];
    CheckedObject c;
    c.spec = &obj;
    c.index = i;
    std::string where;  // names the object's file in messages
    // A spec made in code (--object) names the file itself where a spec file has its "path" key.
    std::string path_key = spec.file.empty() ? obj.json_path : key_path(obj.json_path, "path");
    if (!obj.builtin.empty()) {
      path_key = key_path(obj.json_path, "builtin");
      auto it = builtins.find(obj.builtin);
      if (it == builtins.end())
        return bad(spec, path_key, "kgate has no built-in object \"" + obj.builtin + "\" for " + arch_str);
      c.bytes = std::string(it->second);
      where = "built-in " + obj.builtin;
    } else {
      auto p = obj.paths.find(arch_str);
      if (p == obj.paths.end()) {
        std::string given;
        for (const auto& [a, _] : obj.paths) given += (given.empty() ? "" : ", ") + a;
        return bad(spec, path_key,
                   "no object file for " + arch_str + " (the spec gives one for " + given + " only); add \"" +
                       arch_str + "\" to \"path\"");
      }
      c.path = p->second;
      where = c.path.string();
      // The arch's own key if the spec has one ("path.arm64"), else "path".
      for (std::string_view key : {"x86_64", "amd64", "x86", "arm64", "aarch64"}) {
        auto named = parse_arch(key);
        if (named == arch && spec.line_of(key_path(path_key, key)) > 0) {
          path_key = key_path(path_key, key);
          break;
        }
      }
      auto bytes = read_file(c.path);
      if (!bytes) return bad(spec, path_key, "cannot read the object: " + bytes.error().describe());
      c.bytes = std::move(*bytes);
    }
    c.size = c.bytes.size();
    c.sha256 = sha256_hex(std::string_view(c.bytes));
    auto info = bpf::inspect_object(c.bytes);
    if (!info) return bad(spec, path_key, where + ": " + info.error().describe());
    if (!info->problems.empty()) {
      std::string all;
      for (const auto& p : info->problems) all += (all.empty() ? "" : "; ") + p;
      return bad(spec, path_key, where + ": the object file is damaged: " + all);
    }
    if (auto problems = bpf::arch_problems(*info, *gate_arch); !problems.empty()) {
      std::string all;
      for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
      return bad(spec, path_key, where + ": not a BPF object for " + arch_str + ": " + all);
    }
    auto layout = bpf::open_inspected_object(c.bytes, *info, obj.name);
    if (!layout) return bad(spec, path_key, where + ": " + layout.error().describe());
    c.info = std::move(*info);
    c.layout = std::move(*layout);
    if (auto st = check_object(spec, i, c.layout); !st)
      return fail(FailureClass::usage, st.error().describe() + " (object " + where + ")");
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace kgate::spec

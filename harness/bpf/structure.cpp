#include "bpf/structure.hpp"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <memory>

#include "bpf/libbpf_log.hpp"
#include "core/strings.hpp"

namespace kgate::bpf {

namespace {

struct ObjectClose {
  void operator()(bpf_object* o) const { bpf_object__close(o); }
};

std::string or_empty(const char* s) {
  return s != nullptr ? s : "";
}

}  // namespace

Result<std::uint32_t> vet_btf(const fs::path& file) {
  if (!path_exists(file)) return fail(FailureClass::usage, "no such file");
  LibbpfLog log;
  struct btf* btf = btf__parse(file.c_str(), nullptr);
  if (btf == nullptr) {
    int err = errno;
    std::string why = log.text();
    while (!why.empty() && why.back() == '\n') why.pop_back();
    char what[256] = "unknown error";
    libbpf_strerror(err, what, sizeof what);
    return fail(FailureClass::usage, std::string("not BTF that libbpf can read (") + what + ")" +
                                         (why.empty() ? "" : ": " + why.substr(0, 512)));
  }
  std::uint32_t types = btf__type_cnt(btf);
  btf__free(btf);
  return types;
}

Result<ObjectLayout> open_object(std::string_view bytes, const std::string& name) {
  // libbpf reads the ELF in place and keeps pointing into the buffer while the object is open,
  // so the copy is declared first and outlives the object.
  std::string buffer(bytes);
  LibbpfLog log;
  bpf_object_open_opts opts{};
  opts.sz = sizeof opts;
  opts.object_name = name.c_str();
  std::unique_ptr<bpf_object, ObjectClose> obj(bpf_object__open_mem(buffer.data(), buffer.size(), &opts));
  if (!obj) {
    int err = errno;
    std::string why = log.text();
    while (!why.empty() && why.back() == '\n') why.pop_back();
    // libbpf's own codes (LIBBPF_ERRNO__FORMAT is 4001, ...) are beyond strerror's table.
    char what[256] = "unknown error";
    if (err != 0) libbpf_strerror(err, what, sizeof what);
    return fail(FailureClass::usage,
                "libbpf cannot open " + name + ": " + what + (why.empty() ? "" : " (" + why + ")"), err);
  }
  ObjectLayout layout;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, obj.get()) {
    layout.programs.push_back({or_empty(bpf_program__name(prog)), or_empty(bpf_program__section_name(prog)),
                               or_empty(libbpf_bpf_prog_type_str(bpf_program__type(prog))),
                               bpf_program__insn_cnt(prog)});
  }
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, obj.get()) {
    layout.maps.push_back({or_empty(bpf_map__name(map)),
                           or_empty(libbpf_bpf_map_type_str(bpf_map__type(map))), bpf_map__max_entries(map)});
  }
  // libbpf has checked the BTF while opening; the DATASECs list each section's variables.
  if (const btf* types = bpf_object__btf(obj.get()); types != nullptr) {
    for (std::uint32_t id = 1; id < btf__type_cnt(types); ++id) {
      const btf_type* t = btf__type_by_id(types, id);
      if (t == nullptr || !btf_is_datasec(t)) continue;
      std::string section = or_empty(btf__name_by_offset(types, t->name_off));
      if (section == ".maps") continue;  // map definitions, listed in `maps`
      const btf_var_secinfo* vars = btf_var_secinfos(t);
      for (std::uint16_t i = 0; i < btf_vlen(t); ++i) {
        const btf_type* var = btf__type_by_id(types, vars[i].type);
        if (var == nullptr || !btf_is_var(var)) continue;
        layout.globals.push_back(
            {or_empty(btf__name_by_offset(types, var->name_off)), section, vars[i].size});
      }
    }
  }
  return layout;
}

Result<ObjectLayout> open_inspected_object(std::string_view bytes, const ObjectInfo& info,
                                           const std::string& name) {
  if (!info.problems.empty())
    return fail(FailureClass::usage, "not opened: kgate found problems in the file");
  std::string why;
  for (const GateArch& arch : gate_arches) {
    std::vector<std::string> problems = arch_problems(info, arch);
    if (problems.empty()) return open_object(bytes, name);
    why += (why.empty() ? "" : "; ") + std::string(arch.name) + ": " + problems.front();
  }
  return fail(FailureClass::usage, "not opened: not a BPF object for any gate arch (" + why + ")");
}

}  // namespace kgate::bpf

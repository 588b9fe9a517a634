#include "bpf/object.hpp"

#include <bpf/btf.h>
#include <gelf.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <optional>
#include <set>

#include "bpf/btf_ext.hpp"
#include "bpf/libbpf_log.hpp"
#include "core/arch.hpp"
#include "core/elf.hpp"
#include "core/files.hpp"
#include "core/strings.hpp"

#ifndef EM_BPF
#define EM_BPF 247
#endif

namespace kgate::bpf {

namespace {

// Follows const, volatile, restrict, type tags and (when asked) typedefs, a bounded number of
// steps, since a crafted .BTF may loop. nullptr for an id that is not in it.
const btf_type* skip_modifiers(const btf* b, std::uint32_t id, bool typedefs) {
  const btf_type* t = btf__type_by_id(b, id);
  for (int step = 0; t != nullptr && step < 32; ++step) {
    bool modifier = btf_is_mod(t) || (typedefs && btf_is_typedef(t));
    if (!modifier) return t;
    t = btf__type_by_id(b, t->type);
  }
  return nullptr;
}

std::string name_at(const btf* b, std::uint32_t off) {
  const char* s = btf__name_by_offset(b, off);
  return s != nullptr ? s : "";
}

// The access string "0:1:2" as a path from the root type, "root.member[2]", and the first named
// member on it. Empty where it leaves the types (an index past a struct's members, a number that
// does not parse); only field relocations have such a path.
struct Access {
  std::string path;
  std::string field;
};

Access follow_access(const btf* b, const btf_type* root, std::string_view access) {
  Access out{name_at(b, root->name_off), ""};
  const btf_type* t = root;
  bool first = true;
  for (std::size_t pos = 0; pos <= access.size();) {
    std::size_t end = std::min(access.find(':', pos), access.size());
    std::string_view part = access.substr(pos, end - pos);
    std::uint32_t index = 0;
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), index);
    if (part.empty() || ec != std::errc() || ptr != part.data() + part.size()) return {};
    pos = end + 1;
    if (first) {  // an index into an array of the root type, as in p[1]
      first = false;
      if (index != 0) out.path += strprintf("[%u]", index);
      continue;
    }
    if (t == nullptr) return {};
    if (btf_is_composite(t)) {
      if (index >= btf_vlen(t)) return {};
      const btf_member* m = btf_members(t) + index;
      std::string member = name_at(b, m->name_off);
      out.path += "." + (member.empty() ? strprintf("<anonymous %u>", index) : member);
      if (out.field.empty()) out.field = member;
      t = skip_modifiers(b, m->type, true);
    } else if (btf_is_array(t)) {
      out.path += strprintf("[%u]", index);
      t = skip_modifiers(b, btf_array(t)->type, true);
    } else {
      return {};
    }
  }
  return out;
}

// Resolves the records of .BTF.ext against .BTF with libbpf, which checks the BTF header, type
// and string sections as it reads them; kgate bounds every id and offset it then follows.
Status resolve_core_relos(std::string_view btf_bytes, std::string_view ext_bytes, bool little_endian,
                          ObjectInfo& info) {
  auto raw = parse_core_relos(ext_bytes, little_endian);
  if (!raw) return std::unexpected(std::move(raw).error());
  if (raw->empty()) return {};
  BtfPtr b;
  std::string why;
  {
    LibbpfLog log;
    b.reset(btf__new(btf_bytes.data(), static_cast<std::uint32_t>(btf_bytes.size())));
    why = log.text().substr(0, log.text().find('\n'));
  }
  if (!b)
    return fail(FailureClass::usage, ".BTF: libbpf cannot read it" + (why.empty() ? "" : " (" + why + ")"));
  for (const RawCoreRelo& r : *raw) {
    CoreRelo relo;
    relo.section = name_at(b.get(), r.sec_name_off);
    relo.insn_off = r.insn_off;
    relo.type_id = r.type_id;
    relo.access = name_at(b.get(), r.access_str_off);
    relo.kind = core_relo_kind_name(r.kind);
    if (const btf_type* root = skip_modifiers(b.get(), r.type_id, false)) {
      relo.type_name = name_at(b.get(), root->name_off);
      relo.type_kind = btf_kind_name(root);
      if (r.kind <= 5) {
        Access a = follow_access(b.get(), root, relo.access);
        relo.path = std::move(a.path);
        relo.field = std::move(a.field);
      }
    } else {
      info.problems.push_back(strprintf(".BTF.ext: CO-RE relocation at %s+%u names type %u, not in .BTF",
                                        relo.section.c_str(), r.insn_off, r.type_id));
    }
    info.core_relos.push_back(std::move(relo));
  }
  return {};
}

// The register structs a probe reads its arguments through, by the fields CO-RE accesses name.
// x86-64's pt_regs (arch/x86/include/asm/ptrace.h; since 6.9 cs and ss sit in unions with csx,
// fred_cs, ssx and fred_ss). arm64's pt_regs (arch/arm64/include/asm/ptrace.h: user_regs, or regs,
// sp, pc and pstate, in an anonymous union, then fields that came and went over the releases) and
// its uapi user_pt_regs, which bpf_tracing.h reads. sp is in both pt_regs, so it names no arch.
// clang-format off
constexpr std::string_view x86_pt_regs_fields[] = {
    "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
    "orig_ax", "ip", "cs", "csx", "fred_cs", "flags", "sp", "ss", "ssx", "fred_ss"};
constexpr std::string_view arm64_pt_regs_fields[] = {
    "user_regs", "regs", "sp", "pc", "pstate", "orig_x0", "syscallno", "unused2", "orig_addr_limit",
    "pmr_save", "pmr", "stackframe", "sdei_ttbr1", "lockdep_hardirqs", "exit_rcu"};
// clang-format on
constexpr std::string_view arm64_user_pt_regs_fields[] = {"regs", "sp", "pc", "pstate"};

template <std::size_t N>
bool has_field(const std::string_view (&fields)[N], std::string_view field) {
  return std::ranges::find(fields, field) != std::end(fields);
}

// "a", "a and b", "a, b and c", "a, b, c and 2 more".
std::string list_text(const std::vector<std::string>& items) {
  constexpr std::size_t shown = 3;
  std::string out;
  std::size_t n = std::min(items.size(), shown);
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) out += (i + 1 == n && items.size() <= shown) ? " and " : ", ";
    out += items[i];
  }
  if (items.size() > shown) out += strprintf(" and %zu more", items.size() - shown);
  return out;
}

}  // namespace

Result<ObjectInfo> inspect_object(std::string_view bytes) {
  auto elf = read_elf(bytes);
  if (!elf) return std::unexpected(elf.error());
  ObjectInfo info;
  info.size = bytes.size();
  info.sha256 = sha256_hex(bytes);
  info.elf64 = elf->elf64;
  info.little_endian = elf->little_endian;
  info.elf_type = elf->type;
  info.machine = elf->machine;
  std::optional<std::string_view> btf_data, ext_data;
  for (const ElfSection& e : elf->sections) {
    Section s;
    s.name = e.name;
    s.type = e.type;
    s.size = e.size;
    s.sha256 = sha256_hex(e.content);
    if (s.name == ".BTF" && !btf_data) btf_data = e.content;
    if (s.name == ".BTF.ext" && !ext_data) ext_data = e.content;
    info.sections.push_back(std::move(s));
  }
  info.has_btf = btf_data.has_value();
  info.has_btf_ext = ext_data.has_value();
  if (btf_data && ext_data) {
    if (auto ok = resolve_core_relos(*btf_data, *ext_data, info.little_endian, info); !ok)
      info.problems.push_back(ok.error().describe());
  }
  return info;
}

const GateArch* find_gate_arch(std::string_view name) {
  for (const GateArch& a : gate_arches)
    if (a.name == name) return &a;
  return nullptr;
}

const GateArch* parse_gate_arch(std::string_view name) {
  // Any of kgate's spellings of an arch (core/arch.hpp); the lock and file names say "x86".
  auto a = parse_arch(name);
  if (!a) return nullptr;
  return find_gate_arch(*a == Arch::x86_64 ? "x86" : "arm64");
}

void BtfFree::operator()(btf* b) const {
  btf__free(b);
}

std::string_view btf_kind_name(const btf_type* t) {
  switch (btf_kind(t)) {
    case BTF_KIND_INT: return "int";
    case BTF_KIND_PTR: return "pointer";
    case BTF_KIND_ARRAY: return "array";
    case BTF_KIND_STRUCT: return "struct";
    case BTF_KIND_UNION: return "union";
    case BTF_KIND_ENUM: return "enum";
    case BTF_KIND_FWD: return "forward declaration";
    case BTF_KIND_TYPEDEF: return "typedef";
    case BTF_KIND_VOLATILE: return "volatile";
    case BTF_KIND_CONST: return "const";
    case BTF_KIND_RESTRICT: return "restrict";
    case BTF_KIND_FUNC: return "function";
    case BTF_KIND_FUNC_PROTO: return "function prototype";
    case BTF_KIND_VAR: return "variable";
    case BTF_KIND_DATASEC: return "section";
    case BTF_KIND_FLOAT: return "float";
    case BTF_KIND_DECL_TAG: return "declaration tag";
    case BTF_KIND_TYPE_TAG: return "type tag";
    case BTF_KIND_ENUM64: return "enum";
  }
  return "unknown kind";
}

std::string_view essential_type_name(std::string_view name) {
  // libbpf's bpf_core_essential_name_len: the last "___" with no underscore on either side.
  for (std::size_t i = name.size() < 5 ? 0 : name.size() - 4; i-- > 0;)
    if (name[i] != '_' && name.substr(i + 1, 3) == "___" && name[i + 4] != '_') return name.substr(0, i + 1);
  return name;
}

const GateArch* relo_arch(const CoreRelo& relo) {
  // Reads: field_byte_offset, field_byte_size, field_signed, field_lshift_u64, field_rshift_u64.
  bool read = relo.kind.starts_with("field_") && relo.kind != "field_exists";
  if (!read || relo.field.empty() || (relo.type_kind != "struct" && relo.type_kind != "union"))
    return nullptr;
  std::string_view type = essential_type_name(relo.type_name);
  if (type == "user_pt_regs")
    return has_field(arm64_user_pt_regs_fields, relo.field) ? find_gate_arch("arm64") : nullptr;
  if (type != "pt_regs") return nullptr;
  bool x86 = has_field(x86_pt_regs_fields, relo.field), arm64 = has_field(arm64_pt_regs_fields, relo.field);
  if (x86 == arm64) return nullptr;
  return find_gate_arch(x86 ? "x86" : "arm64");
}

std::vector<std::string> register_reads(const ObjectInfo& info, const GateArch& arch) {
  std::vector<std::string> out;
  for (const CoreRelo& r : info.core_relos) {
    const GateArch* a = relo_arch(r);
    if (a != nullptr && a->name == arch.name && std::ranges::find(out, r.path) == out.end())
      out.push_back(r.path);
  }
  return out;
}

std::string register_arch(const ObjectInfo& info) {
  std::set<std::string_view> named;
  for (const CoreRelo& r : info.core_relos)
    if (const GateArch* a = relo_arch(r)) named.insert(a->name);
  return named.size() == 1 ? std::string(*named.begin()) : "";
}

std::vector<std::string> arch_problems(const ObjectInfo& info, const GateArch& arch) {
  std::vector<std::string> out;
  if (info.machine != EM_BPF)
    out.push_back("not a BPF object: machine " + machine_name(info.machine) + ", not EM_BPF");
  if (!info.elf64) out.push_back("not ELF64: BPF objects are 64-bit ELF");
  if (info.elf_type != ET_REL)
    out.push_back(strprintf("ELF type %u, not a relocatable object", info.elf_type));
  if (!info.little_endian)
    out.push_back(std::string("big-endian (clang -target bpfeb): ") + std::string(arch.name) +
                  " kernels load only little-endian objects");
  if (!info.has_btf) out.push_back("no .BTF section: libbpf needs it for maps and CO-RE (build with -g)");
  if (!info.has_btf_ext)
    out.push_back("no .BTF.ext section: no CO-RE relocations or line info (build with -g)");
  std::vector<std::string> own = register_reads(info, arch);
  for (const GateArch& other : gate_arches) {
    if (other.name == arch.name) continue;
    std::vector<std::string> theirs = register_reads(info, other);
    if (theirs.empty()) continue;
    std::string o(other.name);
    out.push_back("built for " + o + ", not " + std::string(arch.name) + ": its CO-RE relocations name " +
                  list_text(theirs) + ", " + o + (theirs.size() == 1 ? "'s register" : "'s registers") +
                  ", where " + std::string(arch.name) + " objects read " + std::string(arch.registers) +
                  (own.empty() ? "" : " (it reads both arches' registers: also " + list_text(own) + ")"));
  }
  return out;
}

std::string machine_name(std::uint16_t machine) {
  switch (machine) {
    case EM_BPF: return "EM_BPF";
    case EM_X86_64: return "EM_X86_64 (62)";
    case EM_AARCH64: return "EM_AARCH64 (183)";
    case EM_386: return "EM_386 (3)";
    case EM_NONE: return "EM_NONE (0)";
  }
  return strprintf("%u", machine);
}

}  // namespace kgate::bpf

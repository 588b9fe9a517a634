// Host-side inspection of a BPF object file, without libbpf's loader and without a kernel: its ELF
// sections with their digests, and what makes it a CO-RE object for one gate arch (EM_BPF, byte
// order, .BTF and .BTF.ext, the registers its CO-RE relocations read). The bytes are untrusted
// (a release directory, a download): a file that is not ELF is an Error of class usage; damage
// inside an ELF file (unreadable BTF, a .BTF.ext that runs past its section) is listed in
// `problems`, so that its sections can still be compared.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

struct btf;
struct btf_type;

namespace kgate::bpf {

struct Section {
  std::string name;
  std::uint32_t type = 0;  // SHT_*
  std::uint64_t size = 0;
  std::string sha256;  // of the section's bytes in the file; of no bytes for SHT_NOBITS
};

// One CO-RE relocation of .BTF.ext, resolved against .BTF.
struct CoreRelo {
  std::string section;  // the program's ELF section: "uprobe//proc/self/exe:kgate_uprobe_target"
  std::uint32_t insn_off = 0;
  std::uint32_t type_id = 0;
  std::string type_name;  // the root type's name, through const and volatile; "" when anonymous
  std::string type_kind;  // "struct", "union", "int", ...; "" when type_id is not in .BTF
  std::string access;     // the access string: "0:0:0"
  std::string path;       // the access it spells, where it can be followed: "user_pt_regs.regs[0]"
  // The first named member on that path: "regs" for user_pt_regs.regs[0], "pc" for a pc reached
  // through arm64 pt_regs's anonymous union; "" when the path is empty or names no member.
  std::string field;
  std::string kind;  // "field_byte_offset", "type_exists", ...
};

struct ObjectInfo {
  std::uint64_t size = 0;
  std::string sha256;
  bool elf64 = false;
  bool little_endian = false;
  std::uint16_t elf_type = 0;  // ET_*
  std::uint16_t machine = 0;   // EM_*
  std::vector<Section> sections;
  bool has_btf = false;
  bool has_btf_ext = false;
  std::vector<CoreRelo> core_relos;
  // What could not be read inside the file, one line each.
  std::vector<std::string> problems;
};

// Reads an object file's bytes. Fails (class usage) only when they are not an ELF file at all or
// its header or section table cannot be read.
Result<ObjectInfo> inspect_object(std::string_view bytes);

// A gate arch: its name in file names and the lock, and how a CO-RE object built for it reads a
// probe's arguments (bpf_tracing.h's PT_REGS_PARM*), for messages: which register struct, and the
// fields that tell it from the other arch's.
struct GateArch {
  std::string_view name;
  std::string_view registers;
};
inline constexpr GateArch gate_arches[] = {
    {"x86", "pt_regs with x86's fields (di, si, dx, cx, r8, ax, ip, orig_ax, ...)"},
    {"arm64", "user_pt_regs, or pt_regs with arm64's fields (regs[n], pc, pstate, orig_x0, ...)"}};
const GateArch* find_gate_arch(std::string_view name);
// The gate arch a command line names: its own name, or x86_64 or amd64 for x86, aarch64 for arm64
// (the names kgate run, the matrix and receipts use); nullptr for any other.
const GateArch* parse_gate_arch(std::string_view name);
// "x86 (x86_64, amd64), arm64 (aarch64)": what parse_gate_arch() accepts, for messages.
inline constexpr std::string_view gate_arch_choices = "x86 (x86_64, amd64), arm64 (aarch64)";

// Frees a libbpf BTF held by a std::unique_ptr (BtfPtr).
struct BtfFree {
  void operator()(btf* b) const;
};
using BtfPtr = std::unique_ptr<btf, BtfFree>;

// A BTF type's kind as messages and CoreRelo::type_kind name it ("struct", "union", "typedef",
// ...); "enum" for enum and enum64 alike, as libbpf's CO-RE matching takes them as one.
std::string_view btf_kind_name(const btf_type* t);

// A type name as libbpf matches it against the kernel's: without a "___flavor" suffix
// ("pt_regs___x86" is pt_regs, "a___b___c" is a___b).
std::string_view essential_type_name(std::string_view name);

// The gate arch whose registers `relo` reads, judged by the struct and the field it reads: x86 for
// pt_regs with an x86 field (di, ip, orig_ax, ...); arm64 for user_pt_regs (regs, sp, pc, pstate)
// and for pt_regs with an arm64 field (regs, pc, pstate, orig_x0, syscallno, ...). Type names are
// taken without their ___flavor suffix. nullptr for any other relocation, which says nothing about
// the arch: another type, a field both pt_regs have (sp) or neither has, a type relocation, or a
// field_exists check (it asks whether a field is there and reads nothing).
const GateArch* relo_arch(const CoreRelo& relo);

// The paths of the relocations in `info` that read `arch`'s registers ("pt_regs.di"), each once,
// in order.
std::vector<std::string> register_reads(const ObjectInfo& info, const GateArch& arch);

// The gate arch whose registers the object's CO-RE relocations read: "" when they read none (an
// object that reads no registers fits every arch) or both arches'.
std::string register_arch(const ObjectInfo& info);

// Why `info` is not a BPF object for `arch`, one line each; empty when it is one. An object that
// reads no arch's registers passes the register check.
std::vector<std::string> arch_problems(const ObjectInfo& info, const GateArch& arch);

// "EM_BPF", "EM_X86_64 (62)", ...
std::string machine_name(std::uint16_t machine);

}  // namespace kgate::bpf

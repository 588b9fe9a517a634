// The CO-RE relocation records of a .BTF.ext section, read byte by byte from untrusted data: the
// header (magic 0xeB9F, version 1, flags, hdr_len, then offset and length of func_info, line_info
// and core_relo, each relative to the header's end) and the core_relo subsection (a u32 record
// size, then per program section {sec_name_off, num_info, num_info records}). Names stay string
// offsets into .BTF here; object.cpp resolves them.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace kgate::bpf {

// struct bpf_core_relo, with the program section's name offset it was listed under.
struct RawCoreRelo {
  std::uint32_t sec_name_off = 0;
  std::uint32_t insn_off = 0;
  std::uint32_t type_id = 0;
  std::uint32_t access_str_off = 0;
  std::uint32_t kind = 0;
};

// The core_relo records of a .BTF.ext section in the file's byte order; none when its header is
// too old to have the subsection. Fails (class usage) on a bad magic or version, or a length or
// count that does not fit the section.
Result<std::vector<RawCoreRelo>> parse_core_relos(std::string_view btf_ext, bool little_endian);

// enum bpf_core_relo_kind as libbpf's debug output spells it: "field_byte_offset", ...;
// "kind <n>" for one it does not know.
std::string core_relo_kind_name(std::uint32_t kind);

}  // namespace kgate::bpf

// An ELF file's header facts and sections, read with libelf for the module closure
// (.modinfo) and the BPF object inspection. The bytes are untrusted: a truncated section
// table is refused rather than read as no sections, as libelf would.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "error.hpp"

namespace kgate {

struct ElfSection {
  std::string name;        // "[section N, unnamed]" when the name cannot be read
  std::uint32_t type = 0;  // SHT_*
  std::uint64_t size = 0;  // sh_size (for SHT_NOBITS, bytes that are not in the file)
  std::string content;     // empty for SHT_NOBITS
};

struct ElfFile {
  bool elf64 = false;
  bool little_endian = false;
  std::uint16_t type = 0;            // ET_*
  std::uint16_t machine = 0;         // EM_*
  std::vector<ElfSection> sections;  // in section-table order, without the null section
};

// Class usage: "not an ELF file (no \x7fELF magic)" or "bad ELF: ...".
Result<ElfFile> read_elf(std::string_view bytes);

}  // namespace kgate

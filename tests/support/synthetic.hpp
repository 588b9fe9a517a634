#pragma once

// Synthetic inputs for the unit tests and fuzz targets: compressed streams, minimal ELF64 files and
// bzImages, built the way the kernel build lays them out, small enough to make by the hundred. Not
// tied to doctest, since the fuzz targets build their seeds with them too: an encoder that fails is
// a broken test machine, so it aborts with a message on stderr.
#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/compress.hpp"

namespace kgate::testing {

// A gzip member (RFC 1952) holding `data`, as `gzip -<level>` writes it.
std::string gzip_bytes(std::string_view data, int level = 9);
// An xz stream holding `data`, with a CRC32 check as the kernel's xz_wrap.sh asks for.
std::string xz_bytes(std::string_view data, std::uint32_t preset = 6);

// An ELF64 little-endian header of the given type and machine, with no program or section headers:
// the caller points e_phoff or e_shoff at its own.
Elf64_Ehdr elf64_header(std::uint16_t type, std::uint16_t machine = EM_X86_64);

// One ELF note: its header, then the name and the description, each padded to 4 bytes.
std::string elf_note(std::string_view name, std::uint32_t type, std::string_view desc);
// An NT_GNU_BUILD_ID note with a 20-byte id.
std::string gnu_build_id_note();
// A "Xen" note of `type` with a 4-byte description; type 18 (XEN_ELFNOTE_PHYS32_ENTRY) is the PVH
// entry point that direct boot looks for.
std::string xen_note(std::uint32_t type);

// A minimal vmlinux: an ELF header, a PT_LOAD over the whole file and a PT_NOTE over `notes`,
// which follow the two program headers.
std::string elf_executable(std::string_view notes, std::uint16_t machine = EM_X86_64,
                           std::uint16_t type = ET_EXEC);
// elf_executable with a build id and the Xen PVH entry note.
std::string pvh_elf(std::uint16_t machine = EM_X86_64, std::uint16_t type = ET_EXEC);

// What the kernel build puts in a bzImage: `vmlinux` compressed with `c` (gzip -9, xz preset 6,
// zstd level 19), followed by its size as 32-bit little-endian, which gzip's trailer already ends
// with. Compression::none gives `vmlinux` with the size appended.
std::string bzimage_payload(Compression c, std::string_view vmlinux);

// The layout of bzimage(): the setup sectors, a stub of decompressor code, the payload, then zeros.
constexpr std::size_t bzimage_stub_size = 0x300;
constexpr std::size_t bzimage_tail_size = 100;

// A bzImage around `payload`: a setup header with the "HdrS" signature, the boot protocol
// `protocol` and `setup_sects` setup sectors (0 means 4, as in the kernel), whose payload_offset and
// payload_length point at `payload`.
std::string bzimage_bytes(std::string_view payload, std::uint8_t setup_sects = 3,
                          std::uint16_t protocol = 0x020f);

// The IKCONFIG blob kernel/config_data.S lays out: "IKCFG_ST", the gzip-compressed configuration,
// "IKCFG_ED".
std::string ikconfig_blob(std::string_view config);

}  // namespace kgate::testing

#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/compress.hpp"
#include "core/error.hpp"

namespace kgate::kernel {

// Where the compressed vmlinux lies in an x86 bzImage (Documentation/arch/x86/boot.rst).
struct BzImageInfo {
  std::uint16_t boot_protocol;  // 0x020f is 2.15
  std::size_t payload_offset;   // from the start of the file
  std::size_t payload_length;   // including the 4-byte uncompressed size the kernel build appends
  Compression compression;
};

// Reads the setup header. Every malformed input is an error of class usage, never a crash.
Result<BzImageInfo> parse_bzimage(std::string_view image);

// Decompresses the payload and checks that it is an ELF64 x86-64 executable whose size matches
// the one recorded at the end of the payload. Booting this through PVH skips the bzImage's own
// decompression, which costs seconds under TCG.
Result<std::string> extract_vmlinux(std::string_view image, std::size_t max_output = std::size_t{1} << 30);

bool is_elf(std::string_view data);

// True if a little-endian ELF64 has a PT_NOTE with the Xen note XEN_ELFNOTE_PHYS32_ENTRY (type 18):
// QEMU can then boot it with -kernel through PVH. False for anything malformed.
bool has_pvh_entry(std::string_view elf);

// True for an uncompressed arm64 kernel Image (Documentation/arch/arm64/booting.rst): the magic
// "ARM\x64" at offset 0x38 of its 64-byte header. QEMU boots it with -kernel as it is; Debian's
// arm64 vmlinuz is one.
bool is_arm64_image(std::string_view image);

}  // namespace kgate::kernel

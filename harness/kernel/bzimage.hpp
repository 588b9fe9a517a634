#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
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

// Checks that a little-endian ELF64's program header table and every PT_LOAD segment lie inside
// the file: a truncated vmlinux (a short copy, a full disk) is refused here rather than by QEMU's
// loader after boot. Class usage: "truncated: its PT_LOAD segment 2 (N bytes at offset M) runs
// past the end of the file (S bytes)".
Status check_elf_segments(std::string_view elf);

// True if a little-endian ELF64 has a PT_NOTE with the Xen note XEN_ELFNOTE_PHYS32_ENTRY (type 18):
// QEMU can then boot it with -kernel through PVH. False for anything malformed.
bool has_pvh_entry(std::string_view elf);

// True for an uncompressed arm64 kernel Image (Documentation/arch/arm64/booting.rst): the magic
// "ARM\x64" at offset 0x38 of its 64-byte header. QEMU boots it with -kernel as it is; Debian's
// arm64 vmlinuz is one.
bool is_arm64_image(std::string_view image);

// What QEMU boots for an arm64 kernel file: nothing new (nullopt) when it is an uncompressed Image,
// the decompressed Image when it is a gzip, xz or zstd stream of one (Image.gz, as some OCI kernel
// images ship). QEMU would gunzip an Image.gz itself, but kgate reads the booted file too (its embedded
// config), so it boots the Image. Anything else is class usage naming what the file is instead (an x86
// bzImage, an ELF vmlinux, an EFI zboot image).
Result<std::optional<std::string>> arm64_boot_image(std::string_view file,
                                                    std::size_t max_output = std::size_t{1} << 30);

// Checks an x86_64 kernel file: a bzImage, or an ELF vmlinux with a PVH entry note. Errors are class
// usage, a phrase for the caller to prefix with the file's name; an arm64 kernel, the likeliest wrong
// file, is named as such with the --arch that boots it.
Status check_x86_kernel(std::string_view file);

// What `file` looks like when it is not the kernel format wanted, as a phrase ("an x86 bzImage",
// "an arm64 Image", "an arm64 ELF (a vmlinux)", "gzip data", "a file starting with 00 01 02 03"),
// for error messages.
std::string describe_kernel_file(std::string_view file);

}  // namespace kgate::kernel

#include "bzimage.hpp"

#include <elf.h>

#include <bit>
#include <cstdio>
#include <cstring>
#include <optional>
#include <type_traits>

#include "core/strings.hpp"

namespace kgate::kernel {

using namespace std::literals;

namespace {

static_assert(std::endian::native == std::endian::little, "headers are read in place as little-endian");

// Setup header fields, as offsets from the start of the file.
constexpr std::size_t setup_sects_at = 0x1f1;
constexpr std::size_t signature_at = 0x202;
constexpr std::size_t version_at = 0x206;
constexpr std::size_t payload_offset_at = 0x248;
constexpr std::size_t payload_length_at = 0x24c;
constexpr std::size_t header_end = 0x250;
constexpr std::uint16_t first_payload_protocol = 0x0208;
constexpr std::uint32_t xen_elfnote_phys32_entry = 18;

// Reads a T at byte `off`, or nothing if it does not fit: every read of untrusted bytes goes through here.
template <class T>
std::optional<T> read_at(std::string_view data, std::uint64_t off) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (off > data.size() || data.size() - off < sizeof(T)) return std::nullopt;
  T value;
  std::memcpy(&value, data.data() + off, sizeof(T));
  return value;
}

std::unexpected<Error> bad(std::string message) {
  return fail(FailureClass::usage, "bzImage: " + message);
}

std::string protocol_name(std::uint16_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%u.%02u", unsigned{v} >> 8, unsigned{v} & 0xffu);
  return buf;
}

std::string hex_prefix(std::string_view data) {
  std::string out;
  char buf[4];
  for (char c : data.substr(0, 4)) {
    std::snprintf(buf, sizeof buf, "%s%02x", out.empty() ? "" : " ", static_cast<unsigned char>(c));
    out += buf;
  }
  return out;
}

Status check_vmlinux(std::string_view elf) {
  if (!is_elf(elf)) return bad("the payload is not an ELF file (it starts with " + hex_prefix(elf) + ")");
  auto eh = read_at<Elf64_Ehdr>(elf, 0);
  if (!eh || eh->e_ident[EI_CLASS] != ELFCLASS64) return bad("the payload is not an ELF64 file");
  if (eh->e_ident[EI_DATA] != ELFDATA2LSB) return bad("the payload ELF is not little-endian");
  if (eh->e_machine != EM_X86_64)
    return bad("the payload ELF is for machine " + std::to_string(eh->e_machine) + ", not x86-64");
  if (eh->e_type != ET_EXEC)
    return bad("the payload ELF has type " + std::to_string(eh->e_type) + ", not executable");
  if (auto s = check_elf_segments(elf); !s) return bad("the payload ELF is " + s.error().describe());
  return {};
}

std::uint64_t round_up(std::uint64_t n, std::uint64_t align) {
  return (n + align - 1) / align * align;
}

bool notes_have_pvh(std::string_view notes, std::uint64_t align) {
  std::uint64_t pos = 0;
  while (auto nh = read_at<Elf64_Nhdr>(notes, pos)) {
    std::uint64_t name_at = pos + sizeof(Elf64_Nhdr);
    std::uint64_t desc_at = name_at + round_up(nh->n_namesz, align);
    if (desc_at + nh->n_descsz > notes.size()) return false;  // sizes run past the segment
    if (nh->n_type == xen_elfnote_phys32_entry && nh->n_descsz >= 4 &&
        notes.substr(name_at, nh->n_namesz) == "Xen\0"sv)
      return true;
    pos = desc_at + round_up(nh->n_descsz, align);
  }
  return false;
}

}  // namespace

Result<BzImageInfo> parse_bzimage(std::string_view image) {
  if (image.size() < header_end)
    return bad("file is too short: " + std::to_string(image.size()) +
               " bytes, the setup header ends at byte " + std::to_string(header_end));
  if (image.substr(signature_at, 4) != "HdrS") return bad("no \"HdrS\" signature at 0x202");
  auto version = *read_at<std::uint16_t>(image, version_at);
  if (version < first_payload_protocol)
    return bad("boot protocol " + protocol_name(version) +
               " is older than 2.08 and does not locate the payload");
  // setup_sects counts the 512-byte sectors after the boot sector; 0 means 4 for old bootloaders' sake.
  unsigned sects = static_cast<unsigned char>(image[setup_sects_at]);
  std::uint64_t protected_mode_start = ((sects == 0 ? 4u : sects) + 1) * 512ull;
  std::uint64_t offset = protected_mode_start + *read_at<std::uint32_t>(image, payload_offset_at);
  std::uint64_t length = *read_at<std::uint32_t>(image, payload_length_at);
  if (offset > image.size() || length > image.size() - offset)
    return bad("payload of " + std::to_string(length) + " bytes at offset " + std::to_string(offset) +
               " runs past the end of the file (" + std::to_string(image.size()) + " bytes)");
  std::string_view payload = image.substr(offset, length);
  Compression compression = detect_compression(payload);
  if (compression == Compression::none)
    return bad("payload compression is not gzip, xz or zstd (it starts with " + hex_prefix(payload) + ")");
  return BzImageInfo{version, offset, length, compression};
}

Result<std::string> extract_vmlinux(std::string_view image, std::size_t max_output) {
  auto info = parse_bzimage(image);
  if (!info) return std::unexpected(std::move(info.error()));
  std::string_view payload = image.substr(info->payload_offset, info->payload_length);
  auto elf = decompress(payload, max_output);
  if (!elf) return std::unexpected(std::move(elf.error()).context("bzImage payload"));
  // The kernel build appends the uncompressed size (gzip's own trailer ends with it) and the
  // decompressor stub trusts it, so a mismatch means a damaged or misparsed payload.
  auto recorded = payload.size() >= 4 ? read_at<std::uint32_t>(payload, payload.size() - 4) : std::nullopt;
  if (recorded && *recorded != static_cast<std::uint32_t>(elf->size()))
    return bad("payload decompressed to " + std::to_string(elf->size()) + " bytes, but its trailer records " +
               std::to_string(*recorded));
  if (auto s = check_vmlinux(*elf); !s) return std::unexpected(std::move(s.error()));
  return elf;
}

bool is_elf(std::string_view data) {
  return data.starts_with(ELFMAG);
}

Status check_elf_segments(std::string_view elf) {
  auto eh = read_at<Elf64_Ehdr>(elf, 0);
  if (!is_elf(elf) || !eh || eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB)
    return fail(FailureClass::usage, "not a little-endian ELF64 file");
  if (eh->e_phnum == 0) return {};
  if (eh->e_phentsize < sizeof(Elf64_Phdr))
    return fail(FailureClass::usage, "program headers of " + std::to_string(eh->e_phentsize) +
                                         " bytes, smaller than an Elf64_Phdr");
  // e_phnum and e_phentsize are 16-bit: their product cannot wrap.
  const std::uint64_t table = std::uint64_t{eh->e_phnum} * eh->e_phentsize;
  if (eh->e_phoff > elf.size() || table > elf.size() - eh->e_phoff)
    return fail(FailureClass::usage,
                strprintf("truncated: its program header table (%u entries at offset %ju) runs past the end "
                          "of the file (%zu bytes)",
                          unsigned{eh->e_phnum}, std::uintmax_t{eh->e_phoff}, elf.size()));
  for (unsigned i = 0; i < eh->e_phnum; ++i) {
    auto ph = *read_at<Elf64_Phdr>(elf, eh->e_phoff + std::uint64_t{i} * eh->e_phentsize);
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_offset > elf.size() || ph.p_filesz > elf.size() - ph.p_offset)
      return fail(
          FailureClass::usage,
          strprintf("truncated: its PT_LOAD segment %u (%ju bytes at offset %ju) runs past the end of "
                    "the file (%zu bytes)",
                    i, std::uintmax_t{ph.p_filesz}, std::uintmax_t{ph.p_offset}, elf.size()));
  }
  return {};
}

bool has_pvh_entry(std::string_view elf) {
  auto eh = read_at<Elf64_Ehdr>(elf, 0);
  if (!is_elf(elf) || !eh || eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
      eh->e_phentsize < sizeof(Elf64_Phdr) || eh->e_phoff > elf.size())
    return false;
  for (unsigned i = 0; i < eh->e_phnum; ++i) {
    // e_phoff fits the file and i * e_phentsize stays below 2^32, so this cannot wrap.
    auto ph = read_at<Elf64_Phdr>(elf, eh->e_phoff + std::uint64_t{i} * eh->e_phentsize);
    if (!ph) return false;
    if (ph->p_type != PT_NOTE || ph->p_offset > elf.size() || ph->p_filesz > elf.size() - ph->p_offset)
      continue;
    if (notes_have_pvh(elf.substr(ph->p_offset, ph->p_filesz), ph->p_align == 8 ? 8 : 4)) return true;
  }
  return false;
}

bool is_arm64_image(std::string_view image) {
  return image.size() >= 64 && image.substr(0x38, 4) == std::string_view("ARM\x64", 4);
}

std::string describe_kernel_file(std::string_view file) {
  if (file.empty()) return "an empty file";
  if (is_arm64_image(file)) return "an arm64 Image";
  if (file.size() >= header_end && file.substr(signature_at, 4) == "HdrS") return "an x86 bzImage";
  if (is_elf(file)) {
    auto eh = read_at<Elf64_Ehdr>(file, 0);
    if (!eh) return "a truncated ELF file";
    if (eh->e_machine == EM_X86_64) return "an x86-64 ELF (a vmlinux)";
    if (eh->e_machine == EM_AARCH64) return "an arm64 ELF (a vmlinux)";
    return "an ELF for machine " + std::to_string(eh->e_machine);
  }
  // CONFIG_EFI_ZBOOT: a PE file whose payload is the compressed Image (linux/pe.h, zboot-header.S).
  if (file.starts_with("MZ") && file.substr(4, 4) == "zimg") return "an EFI zboot image (vmlinuz.efi)";
  if (Compression c = detect_compression(file); c != Compression::none)
    return std::string(compression_name(c)) + " data";
  return "a file starting with " + hex_prefix(file);
}

Result<std::optional<std::string>> arm64_boot_image(std::string_view file, std::size_t max_output) {
  const std::string wanted = ", not an arm64 Image (arch/arm64/boot/Image, or Image.gz)";
  if (is_arm64_image(file)) return std::nullopt;
  if (Compression c = detect_compression(file); c != Compression::none) {
    auto image = decompress(file, max_output);
    if (!image) return std::unexpected(std::move(image.error()).context("arm64 kernel"));
    if (is_arm64_image(*image)) return std::optional<std::string>(std::move(*image));
    return fail(FailureClass::usage,
                std::string(compression_name(c)) + " data holding " + describe_kernel_file(*image) + wanted);
  }
  return fail(FailureClass::usage, describe_kernel_file(file) + wanted);
}

Status check_x86_kernel(std::string_view file) {
  const std::string what = describe_kernel_file(file);
  auto eh = read_at<Elf64_Ehdr>(file, 0);
  const bool arm64 = is_arm64_image(file) || (is_elf(file) && eh && eh->e_machine == EM_AARCH64);
  if (is_elf(file)) {
    if (auto s = check_elf_segments(file); !s)
      return fail(FailureClass::usage, what + ", " + s.error().describe());
    if (has_pvh_entry(file)) return {};
    if (arm64)
      return fail(FailureClass::usage, what + ", not x86_64: boot the arm64 Image with --arch arm64");
    return fail(FailureClass::usage,
                "an ELF without a PVH entry note, which QEMU cannot boot: pass the bzImage");
  }
  if (arm64)
    return fail(FailureClass::usage, what + ", not an x86 bzImage or vmlinux: boot it with --arch arm64");
  if (auto info = parse_bzimage(file); !info) {
    std::string message = "neither a vmlinux ELF nor a bzImage";
    // A compressed arm64 Image (Image.gz) shows only once unpacked, which arm64_boot_image does.
    if (detect_compression(file) != Compression::none)
      message += " (" + what + "; for a compressed arm64 Image pass --arch arm64)";
    return std::unexpected(std::move(info.error()).context(message));
  }
  return {};
}

}  // namespace kgate::kernel

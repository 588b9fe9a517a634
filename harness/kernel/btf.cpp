#include "kernel/btf.hpp"

#include <cstdint>
#include <cstring>

#include "core/elf.hpp"
#include "core/strings.hpp"

namespace kgate::kernel {

namespace {

std::uint32_t le32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(s[at + static_cast<std::size_t>(i)]);
  return v;
}

// struct btf_header: magic 0xeB9F (little-endian), version 1, flags 0, hdr_len 24, then
// type_off, type_len, str_off, str_len. The kernel's own BTF puts the types first and the strings
// right after them, and its string table starts with the empty string.
constexpr std::string_view btf_header_start("\x9f\xeb\x01\x00\x18\x00\x00\x00", 8);
constexpr std::size_t btf_header_len = 24;

// The length of the BTF blob at `at`, or 0 when what is there is not one that fits.
std::size_t btf_blob_at(std::string_view s, std::size_t at) {
  if (s.size() - at < btf_header_len) return 0;
  const std::uint64_t type_off = le32(s, at + 8), type_len = le32(s, at + 12);
  const std::uint64_t str_off = le32(s, at + 16), str_len = le32(s, at + 20);
  if (type_off != 0 || type_len == 0 || str_off != type_len || str_len == 0) return 0;
  const std::uint64_t total = btf_header_len + str_off + str_len;
  if (total > s.size() - at) return 0;
  if (s[at + btf_header_len + str_off] != '\0') return 0;
  return static_cast<std::size_t>(total);
}

}  // namespace

Result<std::string> kernel_btf(std::string_view boot) {
  if (boot.starts_with("\x7f"
                       "ELF")) {
    auto elf = read_elf(boot);
    if (!elf) return std::unexpected(elf.error());
    for (const auto& sec : elf->sections) {
      if (sec.name != ".BTF") continue;
      if (btf_blob_at(sec.content, 0) == 0)
        return fail(FailureClass::usage,
                    "the kernel's .BTF section does not start with a BTF header that fits it");
      return sec.content;
    }
    return fail(FailureClass::usage,
                "the kernel ELF has no .BTF section (built without CONFIG_DEBUG_INFO_BTF?)");
  }
  // The largest blob: a raw image holds the kernel's BTF once, and a stray header match is small.
  std::size_t best_at = 0, best_len = 0;
  for (std::size_t at = boot.find(btf_header_start); at != std::string_view::npos;
       at = boot.find(btf_header_start, at + 1)) {
    if (std::size_t len = btf_blob_at(boot, at); len > best_len) {
      best_at = at;
      best_len = len;
    }
  }
  if (best_len == 0)
    return fail(FailureClass::usage,
                strprintf("no BTF in the kernel image (%zu bytes, not ELF): no BTF header whose "
                          "lengths fit it (built without CONFIG_DEBUG_INFO_BTF?)",
                          boot.size()));
  return std::string(boot.substr(best_at, best_len));
}

}  // namespace kgate::kernel

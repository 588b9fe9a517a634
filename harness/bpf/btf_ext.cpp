#include "bpf/btf_ext.hpp"

#include <array>
#include <cstring>
#include <optional>

#include "core/strings.hpp"

namespace kgate::bpf {

namespace {

constexpr std::uint16_t btf_magic = 0xeB9F;
constexpr std::uint32_t min_header_len = 24;   // up to line_info_len
constexpr std::uint32_t core_header_len = 32;  // with core_relo_off and core_relo_len
constexpr std::uint32_t core_relo_size = 16;   // sizeof(struct bpf_core_relo)

// Bounds-checked reads in the file's byte order.
class Reader {
 public:
  Reader(std::string_view bytes, bool little_endian) : bytes_(bytes), little_(little_endian) {}

  std::optional<std::uint32_t> u32(std::uint64_t off) const { return read(off, 4); }
  std::optional<std::uint16_t> u16(std::uint64_t off) const {
    auto v = read(off, 2);
    return v ? std::optional<std::uint16_t>(static_cast<std::uint16_t>(*v)) : std::nullopt;
  }
  std::optional<std::uint8_t> u8(std::uint64_t off) const {
    auto v = read(off, 1);
    return v ? std::optional<std::uint8_t>(static_cast<std::uint8_t>(*v)) : std::nullopt;
  }

 private:
  std::optional<std::uint32_t> read(std::uint64_t off, unsigned n) const {
    if (off > bytes_.size() || bytes_.size() - off < n) return std::nullopt;
    std::uint32_t v = 0;
    for (unsigned i = 0; i < n; ++i) {
      auto byte = static_cast<std::uint8_t>(bytes_[off + (little_ ? n - 1 - i : i)]);
      v = (v << 8) | byte;
    }
    return v;
  }
  std::string_view bytes_;
  bool little_;
};

std::unexpected<Error> bad(std::string what) {
  return fail(FailureClass::usage, ".BTF.ext: " + std::move(what));
}

}  // namespace

Result<std::vector<RawCoreRelo>> parse_core_relos(std::string_view btf_ext, bool little_endian) {
  Reader r(btf_ext, little_endian);
  auto magic = r.u16(0);
  auto version = r.u8(2);
  auto hdr_len = r.u32(4);
  if (!magic || !version || !hdr_len)
    return bad(strprintf("%zu bytes, shorter than its header", btf_ext.size()));
  if (*magic != btf_magic) {
    if (*magic == 0x9FeB) return bad("byte order differs from the ELF file's");
    return bad(strprintf("bad magic 0x%04x, not 0xeb9f", *magic));
  }
  if (*version != 1) return bad(strprintf("version %u, kgate reads version 1", *version));
  if (*hdr_len < min_header_len || *hdr_len > btf_ext.size())
    return bad(strprintf("header length %u does not fit %zu bytes", *hdr_len, btf_ext.size()));
  std::vector<RawCoreRelo> relos;
  if (*hdr_len < core_header_len) return relos;  // written before CO-RE: no core_relo subsection

  auto off = r.u32(24);
  auto len = r.u32(28);
  if (!off || !len) return bad("header runs past the section");
  if (*len == 0) return relos;
  std::uint64_t start = std::uint64_t{*hdr_len} + *off;
  if (start > btf_ext.size() || btf_ext.size() - start < *len)
    return bad(strprintf("core_relo subsection (offset %u, %u bytes) runs past the section's %zu bytes", *off,
                         *len, btf_ext.size()));
  Reader sub(btf_ext.substr(start, *len), little_endian);
  auto record_size = sub.u32(0);
  if (!record_size) return bad("core_relo subsection has no record size");
  if (*record_size < core_relo_size || *record_size % 4 != 0)
    return bad(
        strprintf("core_relo record size %u (at least %u, a multiple of 4)", *record_size, core_relo_size));
  std::uint64_t pos = 4;
  while (pos < *len) {
    auto sec_name_off = sub.u32(pos);
    auto num_info = sub.u32(pos + 4);
    if (!sec_name_off || !num_info)
      return bad(
          strprintf("core_relo section header at %llu is cut short", static_cast<unsigned long long>(pos)));
    pos += 8;
    if (*num_info == 0) return bad("core_relo section with no records");
    std::uint64_t bytes = std::uint64_t{*num_info} * *record_size;
    if (bytes > *len - pos)
      return bad(strprintf("core_relo section of %u records of %u bytes runs past the subsection", *num_info,
                           *record_size));
    for (std::uint32_t i = 0; i < *num_info; ++i, pos += *record_size) {
      // In bounds: the whole run of records was checked above.
      relos.push_back(
          {*sec_name_off, *sub.u32(pos), *sub.u32(pos + 4), *sub.u32(pos + 8), *sub.u32(pos + 12)});
    }
  }
  return relos;
}

std::string core_relo_kind_name(std::uint32_t kind) {
  static constexpr std::array<std::string_view, 13> names = {
      "field_byte_offset", "field_byte_size", "field_exists",   "field_signed", "field_lshift_u64",
      "field_rshift_u64",  "type_id_local",   "type_id_target", "type_exists",  "type_size",
      "enumval_exists",    "enumval_value",   "type_matches"};
  return kind < names.size() ? std::string(names[kind]) : strprintf("kind %u", kind);
}

}  // namespace kgate::bpf

#include <doctest/doctest.h>
#include <elf.h>
#include <lzma.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "kernel/bzimage.hpp"

using kgate::Compression;
using namespace kgate::kernel;
using namespace std::literals;

namespace {

template <class T>
void put(std::string& s, std::size_t off, T v) {
  REQUIRE(off + sizeof v <= s.size());
  std::memcpy(s.data() + off, &v, sizeof v);
}

template <class T>
std::string bytes(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

std::string gzip(std::string_view data) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string xz(std::string_view data) {
  std::string out(lzma_stream_buffer_bound(data.size()), '\0');
  std::size_t pos = 0;
  REQUIRE(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, nullptr,
                                  reinterpret_cast<const std::uint8_t*>(data.data()), data.size(),
                                  reinterpret_cast<std::uint8_t*>(out.data()), &pos, out.size()) == LZMA_OK);
  out.resize(pos);
  return out;
}

std::string note(std::string_view name, std::uint32_t type, std::string_view desc) {
  Elf64_Nhdr nh{static_cast<Elf64_Word>(name.size()), static_cast<Elf64_Word>(desc.size()), type};
  auto padded = [](std::string_view s) { return std::string(s) + std::string((4 - s.size() % 4) % 4, '\0'); };
  return bytes(nh) + padded(name) + padded(desc);
}

std::string gnu_build_id() {
  return note("GNU\0"sv, NT_GNU_BUILD_ID, std::string(20, '\x5a'));
}
std::string xen_note(std::uint32_t type) {
  return note("Xen\0"sv, type, "\x00\x00\x00\x01"sv);
}

// A minimal vmlinux: an ELF header, a PT_LOAD over the whole file and a PT_NOTE over `notes`.
std::string make_elf(std::string_view notes, std::uint16_t machine = EM_X86_64,
                     std::uint16_t type = ET_EXEC) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = type;
  eh.e_machine = machine;
  eh.e_version = EV_CURRENT;
  eh.e_entry = 0x1000000;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 2;
  std::uint64_t notes_at = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
  std::uint64_t total = notes_at + notes.size();
  Elf64_Phdr load{PT_LOAD, PF_R | PF_X, 0, 0x1000000, 0x1000000, total, total, 0x200000};
  Elf64_Phdr pnote{PT_NOTE, PF_R, notes_at, 0, 0, notes.size(), notes.size(), 4};
  return bytes(eh) + bytes(load) + bytes(pnote) + std::string(notes);
}

std::string pvh_elf() {
  return make_elf(gnu_build_id() + xen_note(18));
}

std::string le32(std::uint32_t v) {
  return bytes(v);
}

// What the kernel build does: gzip's trailer already ends with the size, the others get it appended.
std::string payload_of(Compression c, std::string_view elf) {
  auto size = le32(static_cast<std::uint32_t>(elf.size()));
  switch (c) {
    case Compression::gzip: return gzip(elf);
    case Compression::xz: return xz(elf) + size;
    case Compression::zstd: return kgate::zstd_compress(elf, 19).value() + size;
    case Compression::none: break;
  }
  return std::string(elf) + size;
}

constexpr std::size_t stub_size = 0x300;  // decompressor code before the payload

std::string make_bzimage(std::string_view payload, std::uint8_t setup_sects = 3,
                         std::uint16_t protocol = 0x020f) {
  std::string img(((setup_sects == 0 ? 4u : setup_sects) + 1) * 512, '\0');
  img[0x1f1] = static_cast<char>(setup_sects);
  put<std::uint16_t>(img, 0x1fe, 0xaa55);
  img.replace(0x202, 4, "HdrS");
  put(img, 0x206, protocol);
  put<std::uint32_t>(img, 0x248, stub_size);
  put(img, 0x24c, static_cast<std::uint32_t>(payload.size()));
  return img + std::string(stub_size, '\x90') + std::string(payload) + std::string(100, '\0');
}

void check_error(const auto& r, std::string_view needle) {
  REQUIRE_FALSE(r);
  CHECK(r.error().cls() == kgate::FailureClass::usage);
  INFO(r.error().describe());
  CHECK(r.error().describe().find(needle) != std::string::npos);
}

}  // namespace

TEST_CASE("a bzImage with each payload compression parses and extracts") {
  std::string elf = pvh_elf();
  REQUIRE(is_elf(elf));
  REQUIRE(has_pvh_entry(elf));
  for (Compression c : {Compression::gzip, Compression::xz, Compression::zstd}) {
    for (std::uint8_t sects : {std::uint8_t{3}, std::uint8_t{0}, std::uint8_t{30}}) {
      CAPTURE(kgate::compression_name(c));
      CAPTURE(int{sects});
      std::string payload = payload_of(c, elf);
      std::string img = make_bzimage(payload, sects);
      auto info = parse_bzimage(img);
      REQUIRE(info);
      CHECK(info->boot_protocol == 0x020f);
      CHECK(info->payload_offset == ((sects == 0 ? 4u : sects) + 1) * 512 + stub_size);
      CHECK(info->payload_length == payload.size());
      CHECK(info->compression == c);
      auto vmlinux = extract_vmlinux(img);
      REQUIRE(vmlinux);
      CHECK(*vmlinux == elf);
      CHECK(has_pvh_entry(*vmlinux));
    }
  }
}

TEST_CASE("has_pvh_entry wants a Xen note of type 18 inside a PT_NOTE") {
  CHECK(has_pvh_entry(make_elf(xen_note(18))));
  CHECK(has_pvh_entry(make_elf(xen_note(1) + gnu_build_id() + xen_note(18))));
  CHECK_FALSE(has_pvh_entry(make_elf(gnu_build_id() + xen_note(1))));
  CHECK_FALSE(has_pvh_entry(make_elf(note("GNU\0"sv, 18, "abcd"))));
  CHECK_FALSE(has_pvh_entry(make_elf(note("Xen\0"sv, 18, "ab"))));  // no room for the entry address
  CHECK_FALSE(has_pvh_entry(make_elf("")));
  CHECK_FALSE(has_pvh_entry(""));
  CHECK_FALSE(has_pvh_entry(std::string(200, 'x')));
  CHECK_FALSE(is_elf("\177EL"));
  CHECK(is_elf("\177ELF"));

  std::string elf = pvh_elf();
  std::string other = elf;
  other[EI_CLASS] = ELFCLASS32;
  CHECK_FALSE(has_pvh_entry(other));
  other = elf;
  other[EI_DATA] = ELFDATA2MSB;
  CHECK_FALSE(has_pvh_entry(other));
  // Every truncation is handled; only a prefix holding the whole Xen note still has it.
  for (std::size_t n = 0; n < elf.size(); ++n) CHECK(has_pvh_entry(elf.substr(0, n)) == (n == elf.size()));
}

TEST_CASE("notes and program headers whose sizes run past the end are rejected, not read") {
  std::string ok = pvh_elf();
  std::size_t notes_at = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
  std::size_t pnote_at = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);

  std::string elf = ok;
  put<Elf64_Word>(elf, notes_at, 0xfffffff0);  // the build-id note's n_namesz
  CHECK_FALSE(has_pvh_entry(elf));
  elf = ok;
  put<Elf64_Word>(elf, notes_at + 4, 0xffffffff);  // its n_descsz
  CHECK_FALSE(has_pvh_entry(elf));
  elf = make_elf(note("Xen\0"sv, 18, "\x01\x00\x00\x00"sv));
  put<Elf64_Word>(elf, notes_at + 4, 8);  // the Xen note's desc now ends past the segment
  CHECK_FALSE(has_pvh_entry(elf));
  elf = ok;
  put<Elf64_Xword>(elf, pnote_at + offsetof(Elf64_Phdr, p_filesz), ~Elf64_Xword{0});
  CHECK_FALSE(has_pvh_entry(elf));
  elf = ok;
  put<Elf64_Off>(elf, pnote_at + offsetof(Elf64_Phdr, p_offset), ~Elf64_Off{0} - 8);
  CHECK_FALSE(has_pvh_entry(elf));
  elf = ok;
  put<Elf64_Off>(elf, offsetof(Elf64_Ehdr, e_phoff), ~Elf64_Off{0} - 8);
  CHECK_FALSE(has_pvh_entry(elf));
  elf = ok;
  put<Elf64_Half>(elf, offsetof(Elf64_Ehdr, e_phnum), 0xffff);
  CHECK(has_pvh_entry(elf));  // found before the loop reaches the end of the file
  put<Elf64_Half>(elf, offsetof(Elf64_Ehdr, e_phentsize), 0xffff);
  CHECK_FALSE(has_pvh_entry(elf));
  put<Elf64_Half>(elf, offsetof(Elf64_Ehdr, e_phentsize), 8);  // smaller than a program header
  CHECK_FALSE(has_pvh_entry(elf));
}

TEST_CASE("malformed bzImages are errors with precise messages") {
  std::string elf = pvh_elf();
  std::string payload = payload_of(Compression::xz, elf);
  std::string img = make_bzimage(payload);

  check_error(parse_bzimage(""), "too short: 0 bytes");
  check_error(parse_bzimage(img.substr(0, 0x24f)), "too short: 591 bytes");
  check_error(extract_vmlinux(img.substr(0, 0x24f)), "too short");

  std::string bad = img;
  bad[0x202] = 'X';
  check_error(parse_bzimage(bad), "no \"HdrS\" signature");

  check_error(parse_bzimage(make_bzimage(payload, 3, 0x0206)), "boot protocol 2.06 is older than 2.08");
  CHECK(parse_bzimage(make_bzimage(payload, 3, 0x0208)).has_value());

  bad = img;
  put(bad, 0x24c, static_cast<std::uint32_t>(img.size()));
  check_error(parse_bzimage(bad), "runs past the end of the file");
  bad = img;
  put<std::uint32_t>(bad, 0x248, 0xffffffff);
  check_error(parse_bzimage(bad), "runs past the end of the file");
  bad = img;
  bad[0x1f1] = '\xff';  // setup_sects moves the protected-mode code past the end
  check_error(parse_bzimage(bad), "runs past the end of the file");

  check_error(parse_bzimage(make_bzimage("BZh91AY&SY garbage")),
              "not gzip, xz or zstd (it starts with 42 5a 68 39)");
  check_error(parse_bzimage(make_bzimage("")), "not gzip, xz or zstd");

  std::string garbage = "\xfd\x37zXZ\0 this is not an xz stream"s;
  CHECK(parse_bzimage(make_bzimage(garbage)).has_value());
  check_error(extract_vmlinux(make_bzimage(garbage)), "bzImage payload: decompress xz");
  check_error(extract_vmlinux(make_bzimage(payload.substr(0, payload.size() / 2))), "decompress xz");

  check_error(extract_vmlinux(make_bzimage(payload_of(Compression::zstd, "hello, not an elf"))),
              "not an ELF file (it starts with 68 65 6c 6c)");
  check_error(extract_vmlinux(make_bzimage(payload_of(Compression::gzip, make_elf("", EM_AARCH64)))),
              "machine 183, not x86-64");
  check_error(extract_vmlinux(make_bzimage(payload_of(Compression::gzip, make_elf("", EM_X86_64, ET_DYN)))),
              "type 3, not executable");
  std::string elf32 = elf;
  elf32[EI_CLASS] = ELFCLASS32;
  check_error(extract_vmlinux(make_bzimage(payload_of(Compression::xz, elf32))), "not an ELF64");
  check_error(extract_vmlinux(make_bzimage(payload_of(Compression::xz, "\177ELF"))), "not an ELF64");

  bad = make_bzimage(xz(elf) + le32(static_cast<std::uint32_t>(elf.size() + 1)));
  check_error(extract_vmlinux(bad),
              "decompressed to " + std::to_string(elf.size()) + " bytes, but its trailer records");
  check_error(extract_vmlinux(img, elf.size() - 1), "output exceeds the limit");
  CHECK(extract_vmlinux(img, elf.size()).value() == elf);
}

TEST_CASE("truncated and bit-flipped images never crash") {
  for (Compression c : {Compression::gzip, Compression::xz, Compression::zstd}) {
    std::string img = make_bzimage(payload_of(c, pvh_elf()));
    for (std::size_t n = 0; n < img.size(); n += 7) {
      auto r = extract_vmlinux(img.substr(0, n));
      if (r) CHECK(n >= img.size() - 100);  // only the zero tail after the payload may go
    }
    for (std::size_t i = 0; i < img.size(); ++i) {
      std::string flipped = img;
      flipped[i] ^= 0x41;
      if (auto r = extract_vmlinux(flipped)) (void)has_pvh_entry(*r);
    }
  }
}

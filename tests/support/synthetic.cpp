#include "support/synthetic.hpp"

#include <lzma.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

using namespace std::literals;

namespace kgate::testing {

namespace {

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "kgate::testing: %s\n", why.c_str());
  std::abort();
}

template <class T>
std::string bytes(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

template <class T>
void put(std::string& s, std::size_t off, T v) {
  std::memcpy(s.data() + off, &v, sizeof v);
}

std::string padded(std::string_view s) {
  return std::string(s) + std::string((4 - s.size() % 4) % 4, '\0');
}

}  // namespace

std::string gzip_bytes(std::string_view data, int level) {
  z_stream zs{};
  // 16 + MAX_WBITS: a gzip header and trailer around the deflate stream, not zlib's.
  if (int rc = deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY); rc != Z_OK)
    fail("deflateInit2 returned " + std::to_string(rc));
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  if (int rc = deflate(&zs, Z_FINISH); rc != Z_STREAM_END) fail("deflate returned " + std::to_string(rc));
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string xz_bytes(std::string_view data, std::uint32_t preset) {
  std::string out(lzma_stream_buffer_bound(data.size()), '\0');
  std::size_t pos = 0;
  if (lzma_ret rc = lzma_easy_buffer_encode(preset, LZMA_CHECK_CRC32, nullptr,
                                            reinterpret_cast<const std::uint8_t*>(data.data()), data.size(),
                                            reinterpret_cast<std::uint8_t*>(out.data()), &pos, out.size());
      rc != LZMA_OK)
    fail("lzma_easy_buffer_encode returned " + std::to_string(rc));
  out.resize(pos);
  return out;
}

Elf64_Ehdr elf64_header(std::uint16_t type, std::uint16_t machine) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = type;
  eh.e_machine = machine;
  eh.e_version = EV_CURRENT;
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  return eh;
}

std::string elf_note(std::string_view name, std::uint32_t type, std::string_view desc) {
  Elf64_Nhdr nh{static_cast<Elf64_Word>(name.size()), static_cast<Elf64_Word>(desc.size()), type};
  return bytes(nh) + padded(name) + padded(desc);
}

std::string gnu_build_id_note() {
  return elf_note("GNU\0"sv, NT_GNU_BUILD_ID, std::string(20, '\x5a'));
}

std::string xen_note(std::uint32_t type) {
  return elf_note("Xen\0"sv, type, "\x00\x00\x00\x01"sv);
}

std::string elf_executable(std::string_view notes, std::uint16_t machine, std::uint16_t type) {
  Elf64_Ehdr eh = elf64_header(type, machine);
  eh.e_entry = 0x1000000;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 2;
  std::uint64_t notes_at = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
  std::uint64_t total = notes_at + notes.size();
  Elf64_Phdr load{PT_LOAD, PF_R | PF_X, 0, 0x1000000, 0x1000000, total, total, 0x200000};
  Elf64_Phdr pnote{PT_NOTE, PF_R, notes_at, 0, 0, notes.size(), notes.size(), 4};
  return bytes(eh) + bytes(load) + bytes(pnote) + std::string(notes);
}

std::string pvh_elf(std::uint16_t machine, std::uint16_t type) {
  return elf_executable(gnu_build_id_note() + xen_note(18), machine, type);
}

std::string bzimage_payload(Compression c, std::string_view vmlinux) {
  std::string size = bytes(static_cast<std::uint32_t>(vmlinux.size()));
  switch (c) {
    case Compression::gzip: return gzip_bytes(vmlinux);
    // Preset 0: a 256 KiB dictionary. Preset 6's 8 MiB one made every decoder the fuzz targets start
    // map and fault in megabytes, which under load ran fuzz_bzimage past its timeout.
    case Compression::xz: return xz_bytes(vmlinux, 0) + size;
    case Compression::zstd: {
      auto packed = zstd_compress(vmlinux, 19);
      if (!packed) fail("zstd_compress: " + packed.error().describe());
      return *packed + size;
    }
    case Compression::none: break;
  }
  return std::string(vmlinux) + size;
}

std::string bzimage_bytes(std::string_view payload, std::uint8_t setup_sects, std::uint16_t protocol) {
  std::string img(((setup_sects == 0 ? 4u : setup_sects) + 1) * 512, '\0');
  img[0x1f1] = static_cast<char>(setup_sects);
  put<std::uint16_t>(img, 0x1fe, 0xaa55);
  img.replace(0x202, 4, "HdrS");
  put(img, 0x206, protocol);
  put(img, 0x248, static_cast<std::uint32_t>(bzimage_stub_size));  // payload_offset, after the stub
  put(img, 0x24c, static_cast<std::uint32_t>(payload.size()));
  return img + std::string(bzimage_stub_size, '\x90') + std::string(payload) +
         std::string(bzimage_tail_size, '\0');
}

std::string ikconfig_blob(std::string_view config) {
  return "IKCFG_ST" + gzip_bytes(config) + "IKCFG_ED";
}

}  // namespace kgate::testing

// Fuzz target for the bzImage and ELF note parsers and the decompressors, which read kernels supplied
// by users. Seeds are bzImages as tests/unit/test_bzimage.cpp builds them: a setup header, a stub and
// a gzip, xz or zstd payload holding a minimal vmlinux with a PVH note.
#include <elf.h>
#include <lzma.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "driver.hpp"
#include "kernel/bzimage.hpp"

using namespace std::literals;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  using namespace kgate::kernel;
  // A small cap keeps decompression bombs from turning into slow or out-of-memory reports.
  constexpr std::size_t cap = std::size_t{16} << 20;
  if (auto info = parse_bzimage(input)) {
    KGATE_FUZZ_CHECK(info->payload_offset <= size && info->payload_length <= size - info->payload_offset);
    KGATE_FUZZ_CHECK(info->compression != kgate::Compression::none);
  } else {
    KGATE_FUZZ_CHECK(info.error().cls() == kgate::FailureClass::usage);
  }
  if (auto elf = extract_vmlinux(input, cap)) {
    KGATE_FUZZ_CHECK(is_elf(*elf) && elf->size() <= cap);
    (void)has_pvh_entry(*elf);
  }
  (void)has_pvh_entry(input);
  auto out = kgate::decompress(input, cap);
  if (out)
    KGATE_FUZZ_CHECK(out->size() <= cap);
  else
    KGATE_FUZZ_CHECK(out.error().cls() == kgate::FailureClass::usage);
  // Again under a cap near the size of the seeds' output, to reach the limit from every side: the
  // cap changes whether it succeeds, never what it produces.
  const std::size_t small_cap = size % 512;
  auto capped = kgate::decompress(input, small_cap);
  if (out && out->size() <= small_cap)
    KGATE_FUZZ_CHECK(capped && *capped == *out);
  else
    KGATE_FUZZ_CHECK(!capped && capped.error().cls() == kgate::FailureClass::usage);
  return 0;
}

namespace {

using kgate::Compression;

template <class T>
std::string bytes(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

template <class T>
void put(std::string& s, std::size_t off, T v) {
  std::memcpy(s.data() + off, &v, sizeof v);
}

std::string gzip(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string xz(std::string_view data) {
  std::string out(lzma_stream_buffer_bound(data.size()), '\0');
  std::size_t pos = 0;
  if (lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, nullptr,
                              reinterpret_cast<const std::uint8_t*>(data.data()), data.size(),
                              reinterpret_cast<std::uint8_t*>(out.data()), &pos, out.size()) != LZMA_OK)
    std::abort();
  out.resize(pos);
  return out;
}

std::string note(std::string_view name, std::uint32_t type, std::string_view desc) {
  Elf64_Nhdr nh{static_cast<Elf64_Word>(name.size()), static_cast<Elf64_Word>(desc.size()), type};
  auto padded = [](std::string_view s) { return std::string(s) + std::string((4 - s.size() % 4) % 4, '\0'); };
  return bytes(nh) + padded(name) + padded(desc);
}

// A minimal vmlinux: an ELF header, a PT_LOAD over the whole file and a PT_NOTE over a build id
// and the Xen PVH entry note.
std::string pvh_elf(std::uint16_t machine = EM_X86_64, std::uint16_t type = ET_EXEC) {
  std::string notes =
      note("GNU\0"sv, NT_GNU_BUILD_ID, std::string(20, '\x5a')) + note("Xen\0"sv, 18, "\x00\x00\x00\x01"sv);
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
  return bytes(eh) + bytes(load) + bytes(pnote) + notes;
}

// What the kernel build does: gzip's trailer already ends with the size, the others get it appended.
std::string payload_of(Compression c, std::string_view elf) {
  std::string size = bytes(static_cast<std::uint32_t>(elf.size()));
  switch (c) {
    case Compression::gzip: return gzip(elf);
    case Compression::xz: return xz(elf) + size;
    case Compression::zstd: return kgate::zstd_compress(elf, 19).value() + size;
    case Compression::none: break;
  }
  return std::string(elf) + size;
}

constexpr std::size_t stub_size = 0x300;  // decompressor code before the payload

std::string make_bzimage(std::string_view payload, std::uint8_t setup_sects = 3) {
  std::string img(((setup_sects == 0 ? 4u : setup_sects) + 1) * 512, '\0');
  img[0x1f1] = static_cast<char>(setup_sects);
  put<std::uint16_t>(img, 0x1fe, 0xaa55);
  img.replace(0x202, 4, "HdrS");
  put<std::uint16_t>(img, 0x206, 0x020f);
  put<std::uint32_t>(img, 0x248, stub_size);
  put(img, 0x24c, static_cast<std::uint32_t>(payload.size()));
  return img + std::string(stub_size, '\x90') + std::string(payload) + std::string(100, '\0');
}

}  // namespace

std::vector<std::string> kgate_fuzz_seeds() {
  std::string elf = pvh_elf();
  std::vector<std::string> seeds;
  for (Compression c : {Compression::gzip, Compression::xz, Compression::zstd}) {
    std::string payload = payload_of(c, elf);
    seeds.push_back(make_bzimage(payload));
    seeds.push_back(payload);  // decompress() and the trailer check on their own
  }
  seeds.push_back(make_bzimage(payload_of(Compression::zstd, elf), 0));  // setup_sects 0 means 4
  seeds.push_back(elf);                                                  // has_pvh_entry on its own
  // Payloads that decompress to the wrong kind of ELF.
  seeds.push_back(make_bzimage(payload_of(Compression::gzip, pvh_elf(EM_AARCH64))));
  seeds.push_back(make_bzimage(payload_of(Compression::gzip, pvh_elf(EM_X86_64, ET_DYN))));
  return seeds;
}

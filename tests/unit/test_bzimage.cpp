#include <doctest/doctest.h>
#include <elf.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "core/files.hpp"
#include "kernel/btf.hpp"
#include "kernel/bzimage.hpp"
#include "kernel/cache.hpp"
#include "kernel/prepare.hpp"
#include "support/synthetic.hpp"

using kgate::Compression;
using namespace kgate::kernel;
using namespace kgate::testing;
using namespace std::literals;

namespace {

template <class T>
void put(std::string& s, std::size_t off, T v) {
  REQUIRE(off + sizeof v <= s.size());
  std::memcpy(s.data() + off, &v, sizeof v);
}

std::string le32(std::uint32_t v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
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
      std::string payload = bzimage_payload(c, elf);
      std::string img = bzimage_bytes(payload, sects);
      auto info = parse_bzimage(img);
      REQUIRE(info);
      CHECK(info->boot_protocol == 0x020f);
      CHECK(info->payload_offset == ((sects == 0 ? 4u : sects) + 1) * 512 + bzimage_stub_size);
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
  CHECK(has_pvh_entry(elf_executable(xen_note(18))));
  CHECK(has_pvh_entry(elf_executable(xen_note(1) + gnu_build_id_note() + xen_note(18))));
  CHECK_FALSE(has_pvh_entry(elf_executable(gnu_build_id_note() + xen_note(1))));
  CHECK_FALSE(has_pvh_entry(elf_executable(elf_note("GNU\0"sv, 18, "abcd"))));
  CHECK_FALSE(has_pvh_entry(elf_executable(elf_note("Xen\0"sv, 18, "ab"))));  // no room for the entry address
  CHECK_FALSE(has_pvh_entry(elf_executable("")));
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
  elf = elf_executable(elf_note("Xen\0"sv, 18, "\x01\x00\x00\x00"sv));
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
  std::string payload = bzimage_payload(Compression::xz, elf);
  std::string img = bzimage_bytes(payload);

  check_error(parse_bzimage(""), "too short: 0 bytes");
  check_error(parse_bzimage(img.substr(0, 0x24f)), "too short: 591 bytes");
  check_error(extract_vmlinux(img.substr(0, 0x24f)), "too short");

  std::string bad = img;
  bad[0x202] = 'X';
  check_error(parse_bzimage(bad), "no \"HdrS\" signature");

  check_error(parse_bzimage(bzimage_bytes(payload, 3, 0x0206)), "boot protocol 2.06 is older than 2.08");
  CHECK(parse_bzimage(bzimage_bytes(payload, 3, 0x0208)).has_value());

  bad = img;
  put(bad, 0x24c, static_cast<std::uint32_t>(img.size()));
  check_error(parse_bzimage(bad), "runs past the end of the file");
  bad = img;
  put<std::uint32_t>(bad, 0x248, 0xffffffff);
  check_error(parse_bzimage(bad), "runs past the end of the file");
  bad = img;
  bad[0x1f1] = '\xff';  // setup_sects moves the protected-mode code past the end
  check_error(parse_bzimage(bad), "runs past the end of the file");

  check_error(parse_bzimage(bzimage_bytes("BZh91AY&SY garbage")),
              "not gzip, xz or zstd (it starts with 42 5a 68 39)");
  check_error(parse_bzimage(bzimage_bytes("")), "not gzip, xz or zstd");

  std::string garbage = "\xfd\x37zXZ\0 this is not an xz stream"s;
  CHECK(parse_bzimage(bzimage_bytes(garbage)).has_value());
  check_error(extract_vmlinux(bzimage_bytes(garbage)), "bzImage payload: decompress xz");
  check_error(extract_vmlinux(bzimage_bytes(payload.substr(0, payload.size() / 2))), "decompress xz");

  check_error(extract_vmlinux(bzimage_bytes(bzimage_payload(Compression::zstd, "hello, not an elf"))),
              "not an ELF file (it starts with 68 65 6c 6c)");
  check_error(
      extract_vmlinux(bzimage_bytes(bzimage_payload(Compression::gzip, elf_executable("", EM_AARCH64)))),
      "machine 183, not x86-64");
  check_error(extract_vmlinux(
                  bzimage_bytes(bzimage_payload(Compression::gzip, elf_executable("", EM_X86_64, ET_DYN)))),
              "type 3, not executable");
  std::string elf32 = elf;
  elf32[EI_CLASS] = ELFCLASS32;
  check_error(extract_vmlinux(bzimage_bytes(bzimage_payload(Compression::xz, elf32))), "not an ELF64");
  check_error(extract_vmlinux(bzimage_bytes(bzimage_payload(Compression::xz, "\177ELF"))), "not an ELF64");

  bad = bzimage_bytes(xz_bytes(elf) + le32(static_cast<std::uint32_t>(elf.size() + 1)));
  check_error(extract_vmlinux(bad),
              "decompressed to " + std::to_string(elf.size()) + " bytes, but its trailer records");
  check_error(extract_vmlinux(img, elf.size() - 1), "output exceeds the limit");
  CHECK(extract_vmlinux(img, elf.size()).value() == elf);
}

TEST_CASE("truncated and bit-flipped images never crash") {
  for (Compression c : {Compression::gzip, Compression::xz, Compression::zstd}) {
    std::string img = bzimage_bytes(bzimage_payload(c, pvh_elf()));
    for (std::size_t n = 0; n < img.size(); n += 7) {
      auto r = extract_vmlinux(img.substr(0, n));
      if (r) CHECK(n >= img.size() - bzimage_tail_size);  // only the zero tail after the payload may go
    }
    for (std::size_t i = 0; i < img.size(); ++i) {
      std::string flipped = img;
      flipped[i] ^= 0x41;
      if (auto r = extract_vmlinux(flipped)) (void)has_pvh_entry(*r);
    }
  }
}

TEST_CASE("an arm64 Image is told by the magic at 0x38 of its header") {
  std::string image(64, '\0');
  CHECK_FALSE(is_arm64_image(image));
  image.replace(0x38, 4, "ARM\x64"sv);
  CHECK(is_arm64_image(image));
  CHECK_FALSE(is_arm64_image(image.substr(0, 63)));
  CHECK_FALSE(is_arm64_image(bzimage_bytes(bzimage_payload(Compression::gzip, elf_executable("x")))));
}

namespace {
// The 64-byte header of an arm64 Image (magic at 0x38) and some text after it.
std::string arm64_image() {
  std::string image(64, '\0');
  image.replace(0, 2, "MZ");  // an EFI stub's PE header, as Debian's Image carries
  image.replace(0x38, 4, "ARM\x64"sv);
  return image + "the rest of the arm64 kernel";
}
}  // namespace

TEST_CASE("arm64_boot_image boots an Image as it is, unpacks a compressed one and refuses the rest") {
  const std::string image = arm64_image();
  SUBCASE("an uncompressed Image boots as it is") {
    auto r = arm64_boot_image(image);
    REQUIRE(r.has_value());
    CHECK_FALSE(r->has_value());
  }
  SUBCASE("Image.gz and an xz Image are decompressed") {
    for (const std::string& packed : {gzip_bytes(image), xz_bytes(image)}) {
      auto r = arm64_boot_image(packed);
      REQUIRE_MESSAGE(r.has_value(), r.error().describe());
      REQUIRE(r->has_value());
      CHECK(**r == image);
    }
  }
  SUBCASE("an x86 bzImage") {
    check_error(arm64_boot_image(bzimage_bytes(bzimage_payload(Compression::gzip, pvh_elf()))),
                "an x86 bzImage, not an arm64 Image");
  }
  SUBCASE("an ELF vmlinux, of either machine") {
    check_error(arm64_boot_image(pvh_elf()), "an x86-64 ELF (a vmlinux), not an arm64 Image");
    check_error(arm64_boot_image(elf_executable("", EM_AARCH64)),
                "an arm64 ELF (a vmlinux), not an arm64 Image");
  }
  SUBCASE("compressed data that holds no Image") {
    check_error(arm64_boot_image(gzip_bytes(pvh_elf())), "gzip data holding an x86-64 ELF (a vmlinux), not");
    check_error(arm64_boot_image(gzip_bytes("")), "gzip data holding an empty file, not an arm64 Image");
  }
  SUBCASE("corrupt compressed data") {
    std::string packed = gzip_bytes(image);
    packed.resize(packed.size() / 2);
    check_error(arm64_boot_image(packed), "arm64 kernel: decompress gzip");
  }
  SUBCASE("more than max_output bytes unpacked") {
    check_error(arm64_boot_image(gzip_bytes(image), 16), "arm64 kernel");
  }
  SUBCASE("an EFI zboot image") {
    std::string zboot = "MZ\0\0zimg"s + std::string(56, '\0');
    check_error(arm64_boot_image(zboot), "an EFI zboot image (vmlinuz.efi), not an arm64 Image");
  }
  SUBCASE("anything else") {
    check_error(arm64_boot_image("kernel bytes"), "a file starting with 6b 65 72 6e, not an arm64 Image");
    check_error(arm64_boot_image(""), "an empty file, not an arm64 Image");
  }
}

TEST_CASE("check_x86_kernel accepts a bzImage or a PVH vmlinux and names an arm64 kernel with its --arch") {
  CHECK(check_x86_kernel(bzimage_bytes(bzimage_payload(Compression::xz, pvh_elf()))).has_value());
  CHECK(check_x86_kernel(pvh_elf()).has_value());
  check_error(check_x86_kernel(arm64_image()),
              "an arm64 Image, not an x86 bzImage or vmlinux: boot it with --arch arm64");
  check_error(check_x86_kernel(elf_executable("", EM_AARCH64)),
              "an arm64 ELF (a vmlinux), not x86_64: boot the arm64 Image with --arch arm64");
  check_error(check_x86_kernel(elf_executable("")), "an ELF without a PVH entry note");
  check_error(
      check_x86_kernel(gzip_bytes(arm64_image())),
      "neither a vmlinux ELF nor a bzImage (gzip data; for a compressed arm64 Image pass --arch arm64)");
  check_error(check_x86_kernel(std::string(0x300, 'x')),
              "neither a vmlinux ELF nor a bzImage: bzImage: no \"HdrS\"");
}

TEST_CASE("a corrupt cache ref names its file and how to repair it, and --refresh repairs it") {
  auto tmp = kgate::TempDir::create("kgate-test-ref");
  REQUIRE(tmp.has_value());
  auto cache = Cache::open(tmp->path() / "cache");
  REQUIRE(cache.has_value());
  const kgate::fs::path kernel = tmp->path() / "bzImage";
  const std::string vmlinux = pvh_elf();
  REQUIRE(kgate::write_file_atomic(kernel, bzimage_bytes(bzimage_payload(Compression::gzip, vmlinux))));
  auto k = prepare_file(*cache, kernel, {});
  REQUIRE_MESSAGE(k.has_value(), k.error().describe());
  CHECK(k->boot_sha256 == kgate::sha256_hex(vmlinux));

  const kgate::fs::path ref = cache->root() / "refs" / "vmlinux" / k->image_sha256;
  REQUIRE(kgate::write_file_atomic(ref, "overwritten\n"));
  auto corrupt = prepare_file(*cache, kernel, {});
  REQUIRE_FALSE(corrupt.has_value());
  CHECK(corrupt.error().cls() == kgate::FailureClass::digest_mismatch);
  const std::string msg = corrupt.error().describe();
  INFO(msg);
  CHECK(msg.find("corrupt cache file " + ref.string()) != std::string::npos);
  CHECK(msg.find("--refresh") != std::string::npos);
  CHECK(msg.find("delete it") != std::string::npos);

  auto repaired = prepare_file(*cache, kernel, {}, true);
  REQUIRE_MESSAGE(repaired.has_value(), repaired.error().describe());
  CHECK(repaired->boot_sha256 == kgate::sha256_hex(vmlinux));
  auto warm = prepare_file(*cache, kernel, {});
  REQUIRE_MESSAGE(warm.has_value(), warm.error().describe());
  CHECK(warm->boot_sha256 == kgate::sha256_hex(vmlinux));
}

TEST_CASE("a vmlinux whose loadable segments run past its end is refused before it boots") {
  // A PVH vmlinux with a body: its PT_LOAD covers the whole file, notes and all.
  std::string elf = pvh_elf() + std::string(4096, '\x90');
  const std::size_t load_at = sizeof(Elf64_Ehdr);
  put<std::uint64_t>(elf, load_at + offsetof(Elf64_Phdr, p_filesz), elf.size());
  put<std::uint64_t>(elf, load_at + offsetof(Elf64_Phdr, p_memsz), elf.size());
  REQUIRE(check_x86_kernel(elf).has_value());
  const std::string truncated = elf.substr(0, elf.size() - 1000);
  REQUIRE(has_pvh_entry(truncated));  // the notes survive the cut: only the segment check tells
  check_error(check_x86_kernel(truncated), "truncated: its PT_LOAD segment 0 (" + std::to_string(elf.size()) +
                                               " bytes at offset 0) runs past " + "the end of the file (" +
                                               std::to_string(truncated.size()) + " bytes)");
  // A segment whose offset and size wrap around is refused too, not read.
  std::string wrapped = elf;
  put<std::uint64_t>(wrapped, load_at + offsetof(Elf64_Phdr, p_offset), ~std::uint64_t{0} - 10);
  check_error(check_x86_kernel(wrapped), "runs past the end of the file");
  // A program header table cut short is named as such.
  std::string no_headers = elf;
  put<std::uint16_t>(no_headers, offsetof(Elf64_Ehdr, e_phnum), 0xfff0);
  check_error(check_x86_kernel(no_headers), "program header table");

  // Through --kernel: a usage error naming the file, before anything is cached or booted.
  auto tmp = kgate::TempDir::create("kgate-test-elf");
  REQUIRE(tmp.has_value());
  auto cache = Cache::open(tmp->path() / "cache");
  REQUIRE(cache.has_value());
  const kgate::fs::path file = tmp->path() / "vmlinux";
  REQUIRE(kgate::write_file_atomic(file, truncated));
  auto k = prepare_file(*cache, file, {});
  check_error(k, file.string() + ": an x86-64 ELF (a vmlinux), truncated");
}

namespace {
// A BTF blob as the kernel lays it out: the 24-byte header, the types, then the strings, which
// start with the empty string.
std::string btf_blob(std::size_t types, std::size_t strings) {
  std::string h = "\x9f\xeb\x01\x00"s + le32(24) + le32(0) + le32(static_cast<std::uint32_t>(types)) +
                  le32(static_cast<std::uint32_t>(types)) + le32(static_cast<std::uint32_t>(strings));
  return h + std::string(types, 't') + '\0' + std::string(strings - 1, 's');
}
}  // namespace

TEST_CASE("kernel_btf finds the kernel's BTF in a raw image, and says when there is none") {
  const std::string blob = btf_blob(4000, 3000);
  // An arm64 Image holds it somewhere in the middle, next to a stray header that does not fit.
  std::string image = std::string(64, 'A') + btf_blob(10, 10).substr(0, 30) + std::string(100, 'B') + blob +
                      std::string(50, 'C');
  auto got = kernel_btf(image);
  REQUIRE_MESSAGE(got.has_value(), got.error().describe());
  CHECK(*got == blob);

  // Cut short: its lengths no longer fit the file.
  auto cut = kernel_btf(image.substr(0, image.size() - 50 - 10));
  REQUIRE_FALSE(cut.has_value());
  CHECK(cut.error().cls() == kgate::FailureClass::usage);
  CHECK(cut.error().describe().find("no BTF in the kernel image") != std::string::npos);
  // A string table that does not start with the empty string is not the kernel's BTF.
  std::string odd = blob;
  odd[24 + 4000] = 'x';
  CHECK_FALSE(kernel_btf(odd).has_value());
  // An ELF vmlinux without a .BTF section.
  auto none = kernel_btf(pvh_elf());
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().describe().find("no .BTF section") != std::string::npos);
}

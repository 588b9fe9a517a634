// Fuzz target for the .modinfo readers, which parse kernel modules (ELF relocatables, through
// libelf) from packages kgate downloads. Seeds are minimal relocatables with a .modinfo section, as
// tests/unit/test_modules.cpp builds them, in both ELF classes and byte orders.
#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "driver.hpp"
#include "image/modules.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kgate::image;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto deps = modinfo_depends(bytes);
  auto field = modinfo_field(bytes, "depends");
  // Both read the same section, so they fail together, and an absent depends= means no dependencies.
  if (!deps) {
    KGATE_FUZZ_CHECK(deps.error().cls() == kgate::FailureClass::usage);
    KGATE_FUZZ_CHECK(!field.has_value());
    (void)deps.error().describe();
    return 0;
  }
  if (!field) KGATE_FUZZ_CHECK(deps->empty() && field.error().cls() == kgate::FailureClass::usage);
  for (const std::string& dep : *deps) KGATE_FUZZ_CHECK(dep.find_first_of("-/") == std::string::npos);
  for (std::string_view key : {"vermagic", "license", "alias", ""}) (void)modinfo_field(bytes, key);
  (void)module_name(bytes);
  return 0;
}

namespace {

// Appends integers of one byte order; `word` is 8 bytes in ELF64 and 4 in ELF32.
struct Writer {
  bool big_endian;
  std::size_t word;
  std::string out;

  void put(std::uint64_t v, std::size_t width) {
    for (std::size_t i = 0; i < width; ++i)
      out += static_cast<char>(v >> (8 * (big_endian ? width - 1 - i : i)));
  }
  void put_word(std::uint64_t v) { put(v, word); }
};

struct Layout {
  bool elf64 = true;
  bool big_endian = false;
};

// A minimal relocatable: the null section, one section `name` holding `contents`, and .shstrtab.
// Enough for libelf to find .modinfo the way it does in a real .ko.
std::string make_elf(std::string_view contents, std::string_view name = ".modinfo", Layout layout = {},
                     std::uint32_t type = SHT_PROGBITS) {
  const std::size_t word = layout.elf64 ? 8 : 4;
  const std::size_t ehsize = layout.elf64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
  const std::size_t shentsize = layout.elf64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
  std::string shstrtab = std::string(1, '\0') + std::string(name) + '\0' + ".shstrtab" + '\0';
  std::size_t data_off = ehsize, strtab_off = data_off + contents.size();
  std::size_t shoff = (strtab_off + shstrtab.size() + 7) & ~std::size_t{7};

  Writer w{layout.big_endian, word, std::string(ELFMAG, SELFMAG)};
  w.put(layout.elf64 ? ELFCLASS64 : ELFCLASS32, 1);
  w.put(layout.big_endian ? ELFDATA2MSB : ELFDATA2LSB, 1);
  w.put(EV_CURRENT, 1);
  w.out.resize(EI_NIDENT, '\0');
  w.put(ET_REL, 2);
  w.put(layout.elf64 ? EM_X86_64 : EM_386, 2);
  w.put(EV_CURRENT, 4);
  w.put_word(0);      // e_entry
  w.put_word(0);      // e_phoff
  w.put_word(shoff);  // e_shoff
  w.put(0, 4);        // e_flags
  w.put(ehsize, 2);
  w.put(0, 2);  // e_phentsize
  w.put(0, 2);  // e_phnum
  w.put(shentsize, 2);
  w.put(3, 2);  // e_shnum
  w.put(2, 2);  // e_shstrndx

  w.out += contents;
  w.out += shstrtab;
  w.out.resize(shoff, '\0');
  auto section = [&](std::uint32_t sh_name, std::uint32_t sh_type, std::uint64_t flags, std::uint64_t offset,
                     std::uint64_t size) {
    w.put(sh_name, 4);
    w.put(sh_type, 4);
    w.put_word(flags);
    w.put_word(0);  // sh_addr
    w.put_word(offset);
    w.put_word(size);
    w.put(0, 4);                    // sh_link
    w.put(0, 4);                    // sh_info
    w.put_word(size == 0 ? 0 : 1);  // sh_addralign
    w.put_word(0);                  // sh_entsize
  };
  section(0, SHT_NULL, 0, 0, 0);
  section(1, type, SHF_ALLOC, data_off, contents.size());
  section(static_cast<std::uint32_t>(name.size() + 2), SHT_STRTAB, 0, strtab_off, shstrtab.size());
  return w.out;
}

std::string modinfo(std::string_view depends) {
  using namespace std::literals;
  return "license=GPL\0depends="s + std::string(depends) +
         "\0vermagic=6.1.0-18-amd64 SMP preempt mod_unload modversions \0alias=virtio:d00000003v*\0"
         "alias=pci:v00001AF4d*\0"s;
}

}  // namespace

std::vector<std::string> kgate_fuzz_seeds() {
  using namespace std::literals;
  return {
      make_elf(modinfo("virtio_ring,virtio")),
      make_elf(modinfo("")),
      make_elf(modinfo("virtio-pci-modern-dev,kernel/a/b.ko.xz,,x")),
      make_elf(modinfo("virtio"), ".modinfo", {.elf64 = false}),
      make_elf(modinfo("virtio"), ".modinfo", {.elf64 = true, .big_endian = true}),
      make_elf(modinfo("virtio"), ".modinfo", {.elf64 = false, .big_endian = true}),
      make_elf("xdepends=a\0depends=b"s),  // no final NUL
      make_elf(modinfo("a"), ".data"),
      make_elf("", ".modinfo", {}, SHT_NOBITS),
  };
}

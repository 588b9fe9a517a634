#include "elf.hpp"

#include <gelf.h>
#include <libelf.h>

#include <algorithm>
#include <memory>

#include "strings.hpp"

namespace kgate {

namespace {

struct ElfEnd {
  void operator()(Elf* e) const { elf_end(e); }
};

std::unexpected<Error> bad_elf(const std::string& what) {
  return fail(FailureClass::usage, "bad ELF: " + what + ": " + elf_errmsg(-1));
}

}  // namespace

Result<ElfFile> read_elf(std::string_view bytes) {
  static const bool ready = elf_version(EV_CURRENT) != EV_NONE;
  if (!ready) return fail(FailureClass::infra, "libelf: elf_version failed");
  if (bytes.size() < EI_NIDENT || bytes.substr(0, SELFMAG) != ELFMAG)
    return fail(FailureClass::usage, "not an ELF file (no \\x7fELF magic)");
  // libelf may convert headers in place (foreign byte order), so it reads a private copy.
  std::string image(bytes);
  std::unique_ptr<Elf, ElfEnd> elf(elf_memory(image.data(), image.size()));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF) return bad_elf("not an ELF object");
  GElf_Ehdr ehdr;
  if (gelf_getehdr(elf.get(), &ehdr) == nullptr) return bad_elf("ELF header");
  ElfFile file;
  file.elf64 = ehdr.e_ident[EI_CLASS] == ELFCLASS64;
  file.little_endian = ehdr.e_ident[EI_DATA] == ELFDATA2LSB;
  file.type = ehdr.e_type;
  file.machine = ehdr.e_machine;

  // libelf takes a section table past the end of the file for no sections at all: a truncated
  // file would pass for one without sections.
  size_t shnum = 0;
  if (elf_getshdrnum(elf.get(), &shnum) != 0) return bad_elf("section count");
  shnum = std::max<size_t>(shnum, ehdr.e_shnum);
  std::uint64_t table = std::uint64_t{shnum} * (file.elf64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr));
  if (ehdr.e_shoff > bytes.size() || table > bytes.size() - ehdr.e_shoff || (shnum > 0 && ehdr.e_shoff == 0))
    return fail(FailureClass::usage,
                strprintf("bad ELF: the section header table (%zu sections at offset %llu) "
                          "runs past the end of the file's %zu bytes: truncated?",
                          shnum, static_cast<unsigned long long>(ehdr.e_shoff), bytes.size()));
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf.get(), &shstrndx) != 0) return bad_elf("section name table");
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf.get(), scn)) != nullptr;) {
    GElf_Shdr shdr;
    if (gelf_getshdr(scn, &shdr) == nullptr) return bad_elf("section header");
    ElfSection s;
    const char* name = elf_strptr(elf.get(), shstrndx, shdr.sh_name);
    s.name = name != nullptr ? name : strprintf("[section %zu, unnamed]", elf_ndxscn(scn));
    s.type = shdr.sh_type;
    s.size = shdr.sh_size;
    if (shdr.sh_type != SHT_NOBITS && shdr.sh_size > 0) {
      Elf_Data* data = elf_rawdata(scn, nullptr);
      if (data == nullptr) return bad_elf("section " + s.name);
      if (data->d_buf != nullptr) s.content.assign(static_cast<const char*>(data->d_buf), data->d_size);
    }
    file.sections.push_back(std::move(s));
  }
  return file;
}

}  // namespace kgate

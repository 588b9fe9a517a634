#include <doctest/doctest.h>
#include <elf.h>

#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "run/embedded.hpp"
#include "vm/arch.hpp"

using kgate::vm::Arch;
using namespace kgate::run;

namespace {

// Reads a T at `off` of a blob, or nothing when it does not fit.
template <class T>
std::optional<T> read_at(std::string_view data, std::uint64_t off) {
  if (off > data.size() || data.size() - off < sizeof(T)) return std::nullopt;
  T value;
  std::memcpy(&value, data.data() + off, sizeof(T));
  return value;
}

// The e_machine of a little-endian ELF64, or 0 when the blob is not one.
unsigned elf_machine(std::string_view blob) {
  auto eh = read_at<Elf64_Ehdr>(blob, 0);
  if (!blob.starts_with(ELFMAG) || !eh || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_ident[EI_DATA] != ELFDATA2LSB)
    return 0;
  return eh->e_machine;
}

// The bytes of the section named `name`, or nothing.
std::optional<std::string_view> section(std::string_view elf, std::string_view name) {
  auto eh = read_at<Elf64_Ehdr>(elf, 0);
  if (!eh || eh->e_shentsize != sizeof(Elf64_Shdr)) return std::nullopt;
  auto shdr = [&](unsigned i) {
    return read_at<Elf64_Shdr>(elf, eh->e_shoff + std::uint64_t{i} * sizeof(Elf64_Shdr));
  };
  auto strtab = shdr(eh->e_shstrndx);
  if (!strtab || strtab->sh_offset > elf.size()) return std::nullopt;
  for (unsigned i = 0; i < eh->e_shnum; ++i) {
    auto sh = shdr(i);
    if (!sh || sh->sh_offset > elf.size() || sh->sh_size > elf.size() - sh->sh_offset) return std::nullopt;
    if (strtab->sh_offset + sh->sh_name >= elf.size()) continue;
    const char* n = elf.data() + strtab->sh_offset + sh->sh_name;
    if (std::string_view(n, strnlen(n, elf.size() - strtab->sh_offset - sh->sh_name)) == name)
      return elf.substr(sh->sh_offset, sh->sh_size);
  }
  return std::nullopt;
}

// True if the BTF string table holds `name` as a whole, NUL-terminated string.
bool btf_has_string(std::string_view btf, std::string_view name) {
  const std::string needle = '\0' + std::string(name) + '\0';
  return btf.find(needle) != std::string_view::npos;
}

}  // namespace

TEST_CASE("each arch's embedded agent is a static executable for that machine") {
  CHECK(elf_machine(agent_binary(Arch::x86_64)) == EM_X86_64);
  CHECK(elf_machine(agent_binary(Arch::arm64)) == EM_AARCH64);
  CHECK(agent_binary(Arch::x86_64) != agent_binary(Arch::arm64));
  // The default is the x86_64 blob, as before kgate booted other arches.
  CHECK(agent_binary().data() == agent_binary(Arch::x86_64).data());
}

TEST_CASE("each arch's embedded probe is a BPF object built for that arch's registers") {
  const std::string_view x86 = probe_object(Arch::x86_64);
  const std::string_view arm64 = probe_object(Arch::arm64);
  CHECK(elf_machine(x86) == EM_BPF);
  CHECK(elf_machine(arm64) == EM_BPF);
  CHECK(x86 != arm64);
  auto x86_btf = section(x86, ".BTF");
  auto arm64_btf = section(arm64, ".BTF");
  REQUIRE(x86_btf.has_value());
  REQUIRE(arm64_btf.has_value());
  // arm64's uprobe reads its argument through struct user_pt_regs; x86's through struct pt_regs.
  CHECK(btf_has_string(*arm64_btf, "user_pt_regs"));
  CHECK(btf_has_string(*x86_btf, "pt_regs"));
  CHECK_FALSE(btf_has_string(*x86_btf, "user_pt_regs"));
}

TEST_CASE("each arch's embedded canary is a BPF object") {
  CHECK(elf_machine(canary_object(Arch::x86_64)) == EM_BPF);
  CHECK(elf_machine(canary_object(Arch::arm64)) == EM_BPF);
}

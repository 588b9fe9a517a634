// libFuzzer target for the bzImage and ELF note parsers, which read kernels supplied by users.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kernel/bzimage.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  using namespace kgate::kernel;
  (void)parse_bzimage(input);
  // A small cap keeps decompression bombs from turning into slow or out-of-memory reports.
  if (auto elf = extract_vmlinux(input, std::size_t{16} << 20)) (void)has_pvh_entry(*elf);
  (void)has_pvh_entry(input);
  (void)kgate::decompress(input, std::size_t{16} << 20);
  return 0;
}

// Fuzz target for the bzImage and ELF note parsers and the decompressors, which read kernels supplied
// by users. Seeds are bzImages as tests/support/synthetic.hpp builds them: a setup header, a stub and
// a gzip, xz or zstd payload holding a minimal vmlinux with a PVH note.
#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "driver.hpp"
#include "kernel/bzimage.hpp"
#include "support/synthetic.hpp"

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
  // The arm64 Image check and the x86 kernel check: a verdict or a usage error, never more.
  if (auto image = arm64_boot_image(input, cap)) {
    if (*image) KGATE_FUZZ_CHECK((*image)->size() <= cap);
  } else {
    KGATE_FUZZ_CHECK(image.error().cls() == kgate::FailureClass::usage);
  }
  if (auto x86 = check_x86_kernel(input); !x86)
    KGATE_FUZZ_CHECK(x86.error().cls() == kgate::FailureClass::usage);
  KGATE_FUZZ_CHECK(!describe_kernel_file(input).empty());
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

std::vector<std::string> kgate_fuzz_seeds() {
  using kgate::Compression;
  using namespace kgate::testing;
  std::string elf = pvh_elf();
  std::vector<std::string> seeds;
  for (Compression c : {Compression::gzip, Compression::xz, Compression::zstd}) {
    std::string payload = bzimage_payload(c, elf);
    seeds.push_back(bzimage_bytes(payload));
    seeds.push_back(payload);  // decompress() and the trailer check on their own
  }
  seeds.push_back(bzimage_bytes(bzimage_payload(Compression::zstd, elf), 0));  // setup_sects 0 means 4
  seeds.push_back(elf);                                                        // has_pvh_entry on its own
  // An arm64 Image header (magic "ARM\x64" at 56), bare and gzip-compressed.
  std::string image(64, '\0');
  image.replace(56, 4, "ARM\x64");
  seeds.push_back(image);
  seeds.push_back(kgate::testing::bzimage_payload(Compression::gzip, image));
  // Payloads that decompress to the wrong kind of ELF.
  seeds.push_back(bzimage_bytes(bzimage_payload(Compression::gzip, pvh_elf(EM_AARCH64))));
  seeds.push_back(bzimage_bytes(bzimage_payload(Compression::gzip, pvh_elf(EM_X86_64, ET_DYN))));
  return seeds;
}

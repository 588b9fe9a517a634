// Fuzz target for the BPF object inspection behind `kgate digest`: inspect_object, which reads an
// object's ELF sections with libelf and the CO-RE relocations of its .BTF.ext, resolved against its
// .BTF with libbpf's btf__new, and parse_core_relos on its own, since a .BTF.ext inside an ELF file
// is reached only past libelf. Objects come from release directories and downloads: untrusted.
// Seeds are the build's own gate objects (bpf/ under $KGATE_BUILD_ROOT, which meson sets), their
// .BTF.ext sections, two of tests/digest/registers.bpf.c's objects, a truncated object, a non-BPF ELF file
// and bytes that are no ELF at all.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/btf_ext.hpp"
#include "bpf/digest.hpp"
#include "bpf/lock.hpp"
#include "bpf/object.hpp"
#include "core/files.hpp"
#include "driver.hpp"
#include "support/synthetic.hpp"

using namespace kgate::bpf;
using namespace std::literals;

namespace {

bool hex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

void check_info(std::string_view input, const ObjectInfo& info) {
  KGATE_FUZZ_CHECK(info.size == input.size());
  KGATE_FUZZ_CHECK(info.sha256 == kgate::sha256_hex(input));
  for (const Section& s : info.sections) KGATE_FUZZ_CHECK(hex64(s.sha256));
  if (!info.has_btf || !info.has_btf_ext) KGATE_FUZZ_CHECK(info.core_relos.empty());
  for (const CoreRelo& r : info.core_relos) {
    KGATE_FUZZ_CHECK(!r.kind.empty());
    // A relocation that reads a register names the field it reads, on a path it can spell.
    if (relo_arch(r) != nullptr) KGATE_FUZZ_CHECK(!r.field.empty() && !r.path.empty());
    if (r.path.empty()) KGATE_FUZZ_CHECK(r.field.empty());
  }
  std::string arch = register_arch(info);
  KGATE_FUZZ_CHECK(arch.empty() || find_gate_arch(arch) != nullptr);
  if (!arch.empty()) KGATE_FUZZ_CHECK(!register_reads(info, *find_gate_arch(arch)).empty());

  // The lock of this object writes, reads back and writes the same text; the object matches it
  // exactly when it is a BPF object for the arch.
  DigestLock lock;
  for (const GateArch& a : gate_arches) lock.objects["fuzz"][std::string(a.name)] = lock_entry(info, "clang");
  std::string text = write_lock(lock);
  auto again = parse_lock(text, "fuzz.lock");
  KGATE_FUZZ_CHECK(again.has_value());
  KGATE_FUZZ_CHECK(write_lock(*again) == text);
  // Section names that are UTF-8 come back from the lock's text as they were (update_lock refuses
  // the others).
  const LockEntry& back = again->objects.at("fuzz").at("x86");
  KGATE_FUZZ_CHECK(back.sections.size() == info.sections.size());
  for (std::size_t i = 0; i < info.sections.size() && i < back.sections.size(); ++i)
    if (valid_utf8(info.sections[i].name)) KGATE_FUZZ_CHECK(back.sections[i].name == info.sections[i].name);
  for (const GateArch& a : gate_arches) {
    std::vector<std::string> problems = arch_problems(info, a);
    ObjectCheck c = compare_object("fuzz.o", a, info, lock.objects["fuzz"][std::string(a.name)], "clang");
    KGATE_FUZZ_CHECK((c.verdict == Verdict::match) == problems.empty());
    if (c.verdict != Verdict::match) KGATE_FUZZ_CHECK(!c.details.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (auto info = inspect_object(input)) {
    check_info(input, *info);
  } else {
    KGATE_FUZZ_CHECK(info.error().cls() == kgate::FailureClass::usage);
    (void)info.error().describe();
  }
  for (bool little : {true, false}) {
    if (auto relos = parse_core_relos(input, little)) {
      // Every record is 16 bytes or more of the subsection, after a 32-byte header.
      KGATE_FUZZ_CHECK(relos->empty() || 32 + 4 + 8 + relos->size() * 16 <= size);
    } else {
      KGATE_FUZZ_CHECK(relos.error().cls() == kgate::FailureClass::usage);
    }
  }
  return 0;
}

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "fuzz_bpf_object: %s\n", why.c_str());
  std::exit(1);
}

// A file under the build directory: the gate objects in bpf/, tests/meson.build's test objects in tests/.
std::string built(const char* file, const char* dir = "bpf") {
  const char* root = std::getenv("KGATE_BUILD_ROOT");
  if (root == nullptr || *root == '\0')
    die("KGATE_BUILD_ROOT is not set: run it through `meson test`, or set it to the build directory");
  auto bytes = kgate::read_file(kgate::fs::path(root) / dir / file);
  if (!bytes) die(bytes.error().describe() + " (build the gate objects first: ninja)");
  return *bytes;
}

}  // namespace

std::vector<std::string> kgate_fuzz_seeds() {
  std::vector<std::string> seeds;
  for (const char* file : {"probe.arm64.bpf.o", "probe.x86.bpf.o", "canary_write_user.x86.bpf.o"}) {
    std::string object = built(file);
    // The .BTF.ext header: magic, version 1, flags 0, hdr_len 32 (.BTF's is 24).
    std::size_t ext = object.find("\x9f\xeb\x01\x00\x20\x00\x00\x00"sv);
    if (ext == std::string::npos) die(std::string(file) + " has no .BTF.ext header");
    seeds.push_back(object.substr(ext));
    seeds.push_back(object);
  }
  seeds.push_back(seeds[1].substr(0, seeds[1].size() / 2));
  // Registers read under a ___flavor name, and through the kernel's anonymous unions.
  for (const char* file : {"registers.x86_flavor.bpf.o", "registers.arm64_kernel_pt_regs.bpf.o"})
    seeds.push_back(built(file, "tests"));
  seeds.push_back(kgate::testing::pvh_elf());
  seeds.push_back("not an object\n");
  return seeds;
}

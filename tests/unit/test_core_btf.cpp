// The minimized BTF for CO-RE: made with the real bpftool from a kernel BTF built here with libbpf,
// for the built-in probe (whose relocations read task_struct.tgid and pt_regs.di), and cached.
#include <bpf/btf.h>
#include <doctest/doctest.h>

#include <cstdlib>
#include <memory>

#include "bpf/object.hpp"
#include "core/files.hpp"
#include "run/core_btf.hpp"
#include "run/embedded.hpp"

using namespace kgate;
using namespace kgate::run;

namespace {

// A kernel's BTF as far as the probe reads it; without task_struct when `task` is false.
std::string kernel_btf(bool task) {
  bpf::BtfPtr b(btf__new_empty());
  const int ulong = btf__add_int(b.get(), "long unsigned int", 8, 0);
  const int sint = btf__add_int(b.get(), "int", 4, BTF_INT_SIGNED);
  btf__add_struct(b.get(), "pt_regs", 168);
  btf__add_field(b.get(), "di", ulong, 896, 0);
  if (task) {
    btf__add_struct(b.get(), "task_struct", 9792);
    btf__add_field(b.get(), "tgid", sint, 19360, 0);
  }
  btf__add_struct(b.get(), "unrelated", 4);
  btf__add_field(b.get(), "x", sint, 0, 0);
  std::uint32_t size = 0;
  const void* raw = btf__raw_data(b.get(), &size);
  return std::string(static_cast<const char*>(raw), size);
}

// A kernel whose "boot file" is its raw BTF: kernel::kernel_btf() finds the blob in a raw image.
kernel::PreparedKernel kernel_file(const fs::path& dir, const std::string& btf) {
  kernel::PreparedKernel k;
  k.boot = dir / ("boot-" + sha256_hex(btf).substr(0, 8));
  REQUIRE(write_file_atomic(k.boot, btf));
  k.boot_sha256 = sha256_hex(btf);
  return k;
}

// A scratch directory, and a cache in it.
struct Scratch {
  TempDir tmp = TempDir::create("kgate-test-core-btf").value();
  kernel::Cache cache = kernel::Cache::open(tmp.path() / "cache").value();
  const fs::path& dir() const { return tmp.path(); }
};

}  // namespace

TEST_CASE(
    "the probe's minimized BTF holds what its relocations read, and a warm run takes it from the cache") {
  Scratch s;
  const std::string full = kernel_btf(true);
  const auto k = kernel_file(s.dir(), full);
  const std::vector<CoreBtfObject> objects = {{"probe", probe_object(vm::Arch::x86_64)}};

  auto first = minimal_core_btf(s.cache, k, objects);
  INFO(first.note.dump());
  REQUIRE(first.note["btf"] == "minimized");
  CHECK(first.note["cached"] == false);
  CHECK(first.note["sha256"] == sha256_hex(first.bytes));
  CHECK(first.note["kernel_bytes"] == full.size());
  CHECK(first.note["tool"].get<std::string>().starts_with("bpftool v"));
  bpf::BtfPtr min(btf__new(first.bytes.data(), first.bytes.size()));
  REQUIRE(min);
  CHECK(btf__find_by_name_kind(min.get(), "task_struct", BTF_KIND_STRUCT) > 0);
  CHECK(btf__find_by_name_kind(min.get(), "pt_regs", BTF_KIND_STRUCT) > 0);
  CHECK(btf__find_by_name_kind(min.get(), "unrelated", BTF_KIND_STRUCT) < 0);

  auto again = minimal_core_btf(s.cache, k, objects);
  CHECK(again.note["cached"] == true);
  CHECK(again.bytes == first.bytes);

  // Another object set is another key.
  const std::vector<CoreBtfObject> two = {{"probe", probe_object(vm::Arch::x86_64)},
                                          {"canary", canary_object(vm::Arch::x86_64)}};
  auto other = minimal_core_btf(s.cache, k, two);
  CHECK(other.note["cached"] == false);
}

TEST_CASE("a relocated type the kernel's BTF lacks keeps the kernel's BTF, saying which") {
  Scratch s;
  const auto k = kernel_file(s.dir(), kernel_btf(false));
  auto r = minimal_core_btf(s.cache, k, {{"probe", probe_object(vm::Arch::x86_64)}});
  CHECK(r.bytes.empty());
  CHECK(r.note["btf"] == "kernel");
  const std::string why = r.note["why"];
  CHECK(why.find("struct task_struct") != std::string::npos);
  CHECK(why.find("modules' BTF") != std::string::npos);

  auto direct = core_btf_mismatch(kernel_btf(true), {{"probe", probe_object(vm::Arch::x86_64)}});
  REQUIRE(direct);
  CHECK(direct->empty());
}

TEST_CASE("objects without CO-RE relocations, or a kernel without BTF, keep the kernel's BTF") {
  Scratch s;
  const auto k = kernel_file(s.dir(), kernel_btf(true));
  auto none = minimal_core_btf(s.cache, k, {});
  CHECK(none.note["btf"] == "kernel");
  CHECK(none.note["why"] == "no object has a CO-RE relocation against the kernel");

  kernel::PreparedKernel no_btf = k;
  no_btf.boot = s.dir() / "not-a-kernel";
  REQUIRE(write_file_atomic(no_btf.boot, std::string(4096, 'x')));
  no_btf.boot_sha256 = sha256_hex(std::string(4096, 'x'));
  auto r = minimal_core_btf(s.cache, no_btf, {{"probe", probe_object(vm::Arch::x86_64)}});
  CHECK(r.bytes.empty());
  CHECK(r.note["why"].get<std::string>().starts_with("the kernel's BTF cannot be read on the host"));
}

TEST_CASE("an object asking for the kernel's own type ids keeps the kernel's BTF") {
  const char* build = std::getenv("KGATE_BUILD_ROOT");
  REQUIRE(build != nullptr);
  auto object = read_file(fs::path(build) / "tests" / "type_id.bpf.o");
  REQUIRE(object);
  auto why = core_btf_mismatch(kernel_btf(true), {{"type_id", *object}});
  REQUIRE(why);
  CHECK(why->find("bpf_core_type_id_kernel") != std::string::npos);
  CHECK(why->find("task_struct") != std::string::npos);
}

TEST_CASE("a bpftool killed by a signal keeps the kernel's BTF, and is asked again next run") {
  Scratch s;
  const auto k = kernel_file(s.dir(), kernel_btf(true));
  const fs::path bin = s.dir() / "bin";
  fs::create_directories(bin);
  REQUIRE(write_file_atomic(bin / "bpftool", "#!/bin/sh\nkill -SEGV $$\n"));
  fs::permissions(bin / "bpftool", fs::perms::owner_all);
  const std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", (bin.string() + ":" + path).c_str(), 1);
  const std::vector<CoreBtfObject> objects = {{"probe", probe_object(vm::Arch::x86_64)}};
  auto first = minimal_core_btf(s.cache, k, objects);
  auto second = minimal_core_btf(s.cache, k, objects);
  // An exit status is bpftool's answer for these inputs: kept.
  REQUIRE(write_file_atomic(bin / "bpftool", "#!/bin/sh\necho 'Error: no' >&2\nexit 3\n"));
  fs::permissions(bin / "bpftool", fs::perms::owner_all);
  auto failed = minimal_core_btf(s.cache, k, objects);
  auto failed_again = minimal_core_btf(s.cache, k, objects);
  ::setenv("PATH", path.c_str(), 1);
  INFO(first.note.dump());
  CHECK(first.bytes.empty());
  CHECK(first.note["btf"] == "kernel");
  CHECK(first.note["why"].get<std::string>().find("bpftool gen min_core_btf") != std::string::npos);
  CHECK(second.note["cached"] == false);
  INFO(failed.note.dump());
  CHECK(failed.note["why"].get<std::string>().find("Error: no") != std::string::npos);
  CHECK(failed_again.note["cached"] == true);
}

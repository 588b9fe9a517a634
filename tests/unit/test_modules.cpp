#include <doctest/doctest.h>
#include <elf.h>

#include <string>
#include <vector>

#include "core/compress.hpp"
#include "core/files.hpp"
#include "image/initramfs.hpp"
#include "image/modules.hpp"
#include "support/synthetic.hpp"

namespace fs = std::filesystem;
using kgate::FailureClass;
using kgate::image::ModuleFile;

namespace {

// A minimal ELF64 relocatable object: the null section, one section `name` holding `contents`,
// and .shstrtab. Enough for libelf to find .modinfo the way it does in a real .ko.
std::string make_elf(std::string_view contents, std::string_view name = ".modinfo") {
  std::string shstrtab = std::string(1, '\0') + std::string(name) + '\0' + ".shstrtab" + '\0';
  size_t data_off = sizeof(Elf64_Ehdr), strtab_off = data_off + contents.size();
  size_t shoff = (strtab_off + shstrtab.size() + 7) & ~size_t{7};

  Elf64_Ehdr eh = kgate::testing::elf64_header(ET_REL);
  eh.e_shoff = shoff;
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = 3;
  eh.e_shstrndx = 2;

  Elf64_Shdr sh[3]{};
  sh[1].sh_name = 1;
  sh[1].sh_type = SHT_PROGBITS;
  sh[1].sh_flags = SHF_ALLOC;
  sh[1].sh_offset = data_off;
  sh[1].sh_size = contents.size();
  sh[1].sh_addralign = 1;
  sh[2].sh_name = static_cast<Elf64_Word>(name.size() + 2);
  sh[2].sh_type = SHT_STRTAB;
  sh[2].sh_offset = strtab_off;
  sh[2].sh_size = shstrtab.size();
  sh[2].sh_addralign = 1;

  std::string out(reinterpret_cast<const char*>(&eh), sizeof eh);
  out += contents;
  out += shstrtab;
  out.resize(shoff, '\0');
  out.append(reinterpret_cast<const char*>(sh), sizeof sh);
  return out;
}

std::string modinfo(std::string_view depends) {
  return "license=GPL" + std::string(1, '\0') + "depends=" + std::string(depends) + '\0' +
         "vermagic=6.1.0-test SMP mod_unload" + '\0';
}

std::string ko(std::string_view depends) {
  return make_elf(modinfo(depends));
}

// A throwaway lib/modules/<release> tree.
struct Tree {
  kgate::TempDir tmp = kgate::TempDir::create("kgate-test-modules").value();
  fs::path dir() const { return tmp.path(); }
  void put(const fs::path& rel, std::string_view bytes) const {
    REQUIRE(kgate::write_file_atomic(dir() / rel, bytes));
  }
};

std::vector<std::string> names(const std::vector<ModuleFile>& closure) {
  std::vector<std::string> out;
  for (const ModuleFile& m : closure) out.push_back(m.name);
  return out;
}

std::vector<std::string> closure_names(const Tree& t, const std::vector<std::string>& wanted) {
  auto r = kgate::image::resolve_closure(t.dir(), wanted);
  if (!r) FAIL(r.error().describe());
  return names(*r);
}

void check_usage_error(const kgate::Error& e, std::vector<std::string> needles) {
  CAPTURE(e.describe());
  CHECK(e.cls() == FailureClass::usage);
  for (const std::string& n : needles) CHECK(e.describe().find(n) != std::string::npos);
}

// The virtio-like tree used by several cases; console is compressed and pci-modern has a dash.
Tree virtio_tree() {
  Tree t;
  t.put("kernel/drivers/virtio/ring.ko", ko(""));
  t.put("kernel/drivers/virtio/core.ko", ko("ring"));
  t.put("kernel/drivers/virtio/pci-modern.ko", ko(""));
  t.put("kernel/drivers/virtio/pci.ko", ko("ring,pci_modern,core"));
  t.put("kernel/drivers/char/console.ko.zst", kgate::zstd_compress(ko("core,ring"), 3).value());
  t.put("kernel/drivers/net/unrelated.ko", ko("missing_but_never_read"));
  return t;
}

}  // namespace

TEST_CASE("modules: module_name strips directories and suffixes and normalizes dashes") {
  CHECK(kgate::image::module_name("kernel/drivers/gpu/drm/virtio/virtio-gpu.ko") == "virtio_gpu");
  CHECK(kgate::image::module_name("a/b.ko.xz") == "b");
  CHECK(kgate::image::module_name("b.ko.zst") == "b");
  CHECK(kgate::image::module_name("b.ko.gz") == "b");
  CHECK(kgate::image::module_name("virtio-pci") == "virtio_pci");
}

TEST_CASE("modules: depends= parsing") {
  auto deps = [](std::string_view bytes) {
    auto r = kgate::image::modinfo_depends(bytes);
    if (!r) FAIL(r.error().describe());
    return *r;
  };
  using V = std::vector<std::string>;
  CHECK(deps(ko("")) == V{});
  CHECK(deps(make_elf("license=GPL" + std::string(1, '\0'))) == V{});
  CHECK(deps(ko("virtio_ring")) == V{"virtio_ring"});
  CHECK(deps(ko("virtio_ring,virtio-pci-modern-dev,virtio")) ==
        V{"virtio_ring", "virtio_pci_modern_dev", "virtio"});
  // Keys match whole: "xdepends=" is not "depends=".
  CHECK(deps(make_elf("xdepends=a" + std::string(1, '\0') + "depends=b" + '\0')) == V{"b"});
}

TEST_CASE("modules: modinfo_field returns the first value") {
  std::string bytes =
      make_elf("alias=one" + std::string(1, '\0') + "alias=two" + '\0' + "vermagic=6.1.0 SMP" + '\0');
  CHECK(kgate::image::modinfo_field(bytes, "alias").value() == "one");
  CHECK(kgate::image::modinfo_field(bytes, "vermagic").value() == "6.1.0 SMP");
  auto missing = kgate::image::modinfo_field(bytes, "vermag");
  REQUIRE_FALSE(missing);
  check_usage_error(missing.error(), {"no vermag= in .modinfo"});
}

TEST_CASE("modules: bytes that are not a module are usage errors") {
  for (std::string_view junk : {std::string_view("not an elf at all"), std::string_view()}) {
    auto r = kgate::image::modinfo_depends(junk);
    REQUIRE_FALSE(r);
    check_usage_error(r.error(), {"not an ELF"});
  }
  auto no_modinfo = kgate::image::modinfo_depends(make_elf("depends=a", ".data"));
  REQUIRE_FALSE(no_modinfo);
  check_usage_error(no_modinfo.error(), {"no .modinfo section"});
  // Every truncation of a module fails cleanly or parses; none may crash.
  std::string full = ko("a,b");
  for (size_t n = 0; n < full.size(); ++n)
    (void)kgate::image::modinfo_depends(std::string_view(full).substr(0, n));
}

TEST_CASE("modules: closure from .modinfo is dependency-first, ties in requested and listed order") {
  Tree t = virtio_tree();
  using V = std::vector<std::string>;
  CHECK(closure_names(t, {"console", "pci"}) == V{"ring", "core", "console", "pci_modern", "pci"});
  CHECK(closure_names(t, {"pci", "console"}) == V{"ring", "pci_modern", "core", "pci", "console"});
  CHECK(closure_names(t, {"pci-modern", "pci_modern"}) == V{"pci_modern"});
  CHECK(closure_names(t, {}) == V{});

  auto r = kgate::image::resolve_closure(t.dir(), {"console"});
  REQUIRE(r);
  REQUIRE(r->size() == 3);
  CHECK(r->back().path == t.dir() / "kernel/drivers/char/console.ko.zst");
  CHECK(r->front().path == t.dir() / "kernel/drivers/virtio/ring.ko");
}

TEST_CASE("modules: built-in modules are skipped, requested or depended on") {
  Tree t = virtio_tree();
  t.put("modules.builtin", "kernel/drivers/virtio/ring.ko\nkernel/drivers/block/virtio-blk.ko\n");
  using V = std::vector<std::string>;
  CHECK(closure_names(t, {"virtio_blk", "console"}) == V{"core", "console"});
  CHECK(closure_names(t, {"virtio-blk"}) == V{});
}

TEST_CASE("modules: modules.dep is used when present") {
  Tree t;
  t.put("modules.dep",
        "kernel/a/alpha.ko.xz: kernel/b/beta.ko.zst kernel/c/gamma.ko\n"
        "kernel/b/beta.ko.zst: kernel/c/gamma.ko\n"
        "\n"
        "kernel/c/gamma.ko:\n");
  // If .modinfo were read, gamma's dependency on a missing module would fail the resolution.
  t.put("kernel/c/gamma.ko", ko("delta"));
  auto r = kgate::image::resolve_closure(t.dir(), {"alpha"});
  if (!r) FAIL(r.error().describe());
  CHECK(names(*r) == std::vector<std::string>{"gamma", "beta", "alpha"});
  CHECK((*r)[1].path == t.dir() / "kernel/b/beta.ko.zst");
  CHECK((*r)[2].path == t.dir() / "kernel/a/alpha.ko.xz");

  t.put("modules.dep", "kernel/a/alpha.ko: kernel/b/beta.ko\nkernel/b/beta.ko kernel/c/gamma.ko\n");
  auto bad = kgate::image::resolve_closure(t.dir(), {"alpha"});
  REQUIRE_FALSE(bad);
  check_usage_error(bad.error(), {"modules.dep:2", "no ':'"});

  t.put("modules.dep", "kernel/a/alpha.ko: kernel/b/beta.ko\n");
  auto missing = kgate::image::resolve_closure(t.dir(), {"alpha"});
  REQUIRE_FALSE(missing);
  check_usage_error(missing.error(), {"module beta (needed by alpha)"});
}

TEST_CASE("modules: a missing module is an error naming it and the directory") {
  Tree t = virtio_tree();
  auto r = kgate::image::resolve_closure(t.dir(), {"console", "nosuch"});
  REQUIRE_FALSE(r);
  check_usage_error(r.error(), {"module nosuch ", t.dir().string()});

  t.put("kernel/extra/needy.ko", ko("core,ghost"));
  auto dep = kgate::image::resolve_closure(t.dir(), {"needy"});
  REQUIRE_FALSE(dep);
  check_usage_error(dep.error(), {"module ghost (needed by needy)", t.dir().string()});

  Tree empty;
  auto none = kgate::image::resolve_closure(empty.dir() / "absent", {"virtio"});
  REQUIRE_FALSE(none);
  check_usage_error(none.error(), {"module virtio "});
}

TEST_CASE("modules: dependency cycles are errors") {
  Tree t;
  t.put("kernel/a.ko", ko("b"));
  t.put("kernel/b.ko", ko("c"));
  t.put("kernel/c.ko", ko("a"));
  t.put("kernel/self.ko", ko("self"));
  auto r = kgate::image::resolve_closure(t.dir(), {"a"});
  REQUIRE_FALSE(r);
  check_usage_error(r.error(), {"cycle: a -> b -> c -> a"});
  auto self = kgate::image::resolve_closure(t.dir(), {"self"});
  REQUIRE_FALSE(self);
  check_usage_error(self.error(), {"cycle: self -> self"});
}

TEST_CASE("modules: a module file that is not an ELF, or found twice, is an error") {
  Tree t = virtio_tree();
  t.put("kernel/drivers/bad.ko", "junk");
  auto r = kgate::image::resolve_closure(t.dir(), {"bad"});
  REQUIRE_FALSE(r);
  check_usage_error(r.error(), {"kernel/drivers/bad.ko", "not an ELF"});

  t.put("kernel/other/ring.ko.xz", "x");
  auto twice = kgate::image::resolve_closure(t.dir(), {"core"});
  REQUIRE_FALSE(twice);
  check_usage_error(twice.error(), {"module ring found twice"});
}

TEST_CASE("modules: read_modules decompresses in closure order") {
  Tree t = virtio_tree();
  auto closure = kgate::image::resolve_closure(t.dir(), {"console"});
  REQUIRE(closure);
  auto mods = kgate::image::read_modules(*closure);
  REQUIRE(mods);
  REQUIRE(mods->size() == 3);
  CHECK((*mods)[0] == std::pair<std::string, std::string>{"ring", ko("")});
  CHECK((*mods)[2] == std::pair<std::string, std::string>{"console", ko("core,ring")});

  auto gone = kgate::image::read_modules({{"gone", t.dir() / "kernel/gone.ko"}});
  REQUIRE_FALSE(gone);
  CHECK(gone.error().describe().find("read module gone") != std::string::npos);
}

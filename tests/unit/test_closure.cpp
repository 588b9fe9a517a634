// The library closure of a dynamic executable, on the executables the test build makes
// (tests/objects): Debian's libbpf loader for both arches, one that needs a library of its own
// beside it, and the static loader.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>

#include "core/files.hpp"
#include "image/closure.hpp"

using namespace kgate;
namespace fs = std::filesystem;

namespace {

fs::path objects() {
  const char* root = std::getenv("KGATE_BUILD_ROOT");
  REQUIRE_MESSAGE(root != nullptr, "KGATE_BUILD_ROOT is not set (run through meson test)");
  return fs::path(root) / "tests/objects";
}

const image::ShippedLibrary* named(const std::vector<image::ShippedLibrary>& libs, const std::string& name) {
  auto it = std::find_if(libs.begin(), libs.end(), [&](const auto& l) { return l.name == name; });
  return it == libs.end() ? nullptr : &*it;
}

}  // namespace

TEST_CASE("closure: a static executable needs nothing") {
  auto libs = image::library_closure(objects() / "loader.x86_64", "/kgate/loader/loader");
  REQUIRE_MESSAGE(libs.has_value(), libs.error().describe());
  CHECK(libs->empty());
}

TEST_CASE("closure: the dynamic libbpf loader gets its interpreter and every library, for each arch") {
  struct Row {
    const char* file;
    const char* interp;
    const char* libdir;
  };
  for (const Row& row :
       {Row{"loader-dynamic.x86_64", "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu"},
        Row{"loader-dynamic.arm64", "/lib/ld-linux-aarch64.so.1", "/lib/aarch64-linux-gnu"}}) {
    CAPTURE(row.file);
    auto libs = image::library_closure(objects() / row.file, "/kgate/loader/loader");
    REQUIRE_MESSAGE(libs.has_value(), libs.error().describe());
    REQUIRE_FALSE(libs->empty());
    CHECK(libs->front().dest == row.interp);  // the interpreter first
    for (const char* name : {"libbpf.so.1", "libelf.so.1", "libz.so.1", "libc.so.6"}) {
      CAPTURE(name);
      const auto* l = named(*libs, name);
      REQUIRE(l != nullptr);
      CHECK(l->dest == std::string(row.libdir) + "/" + name);
      CHECK(fs::is_regular_file(l->source));
    }
    // Each once.
    for (const auto& l : *libs)
      CHECK(std::count_if(libs->begin(), libs->end(), [&](const auto& m) { return m.dest == l.dest; }) == 1);
  }
}

TEST_CASE("closure: a library of the user's own is found through $ORIGIN, and missing it is named") {
  auto libs = image::library_closure(objects() / "needs-gone.x86_64", "/opt/agent/bin/agent");
  REQUIRE_MESSAGE(libs.has_value(), libs.error().describe());
  const auto* gone = named(*libs, "libkgate-gone.so");
  REQUIRE(gone != nullptr);
  CHECK(gone->source == objects() / "libkgate-gone.so");
  CHECK(gone->dest == "/opt/agent/bin/libkgate-gone.so");  // $ORIGIN in the guest

  auto tmp = TempDir::create("kgate-test-closure");
  REQUIRE(tmp.has_value());
  fs::copy_file(objects() / "needs-gone.x86_64", tmp->path() / "needs-gone");
  auto missing = image::library_closure(tmp->path() / "needs-gone", "/opt/agent/bin/agent");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().cls() == FailureClass::usage);
  CHECK(missing.error().describe().find("needs libkgate-gone.so, which is in none of: " +
                                        tmp->path().string()) != std::string::npos);

  auto not_elf = image::library_closure(objects() / "live.json", "/x");
  REQUIRE_FALSE(not_elf.has_value());
  CHECK(not_elf.error().cls() == FailureClass::usage);
}

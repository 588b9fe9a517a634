// Fuzz target for the kernel catalog parser, which reads a JSON file the user may have written.
// Every input is either a usage error or a catalog the rest of kgate can use without checking again.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "driver.hpp"
#include "kernel/catalog.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto catalog = kgate::kernel::parse_catalog(text, "fuzz/catalog.json");
  if (!catalog) {
    KGATE_FUZZ_CHECK(catalog.error().cls() == kgate::FailureClass::usage);
    (void)catalog.error().describe();
    return 0;
  }
  KGATE_FUZZ_CHECK(!catalog->entries.empty());
  auto entry = catalog->find(catalog->default_entry);
  KGATE_FUZZ_CHECK(entry.has_value() && (*entry)->name == catalog->default_entry);
  for (const auto& [name, e] : catalog->entries) {
    KGATE_FUZZ_CHECK(e.name == name && !name.empty());
    KGATE_FUZZ_CHECK(e.arch == "x86_64" || e.arch == "arm64");
    KGATE_FUZZ_CHECK(!e.source.metapackage.empty() && !e.source.package_prefix.empty());
    for (const std::string& module : e.modules) KGATE_FUZZ_CHECK(!module.empty());
  }
  // A name that no entry can have (entry names are [A-Za-z0-9._-]): the error lists the known ones.
  KGATE_FUZZ_CHECK(!catalog->find("no such/entry").has_value());
  return 0;
}

namespace {

// kernels/catalog.json as shipped.
constexpr std::string_view shipped = R"({
  "schema": "kgate.catalog/1",
  "default": "debian-6.1",
  "kernels": {
    "debian-6.1": {
      "description": "Debian 12's current 6.1 LTS kernel, resolved through the linux-image-amd64 metapackage",
      "arch": "x86_64",
      "source": {
        "type": "debian-package",
        "metapackage": "linux-image-amd64",
        "package_prefix": "linux-image-6.1.0-"
      },
      "modules": ["virtio_pci", "virtio_console"]
    }
  }
}
)";

// Two entries, the default second, one without description or modules; escapes and odd spacing.
constexpr std::string_view two_entries = R"({"kernels":{
 "debian-6.1":{"arch":"x86_64","source":{"type":"debian-package","metapackage":"linux-image-amd64",
   "package_prefix":"linux-image-6.1.0-"},"modules":[]},
 "local_6.6.rc1":{"description":"caf\u00e9 \"quoted\" \ud83d\udc1d\n","arch":"x86_64",
   "source":{"package_prefix":"linux-image-6.6","metapackage":"linux-image-6.6-amd64","type":"debian-package"},
   "modules":["virtio_blk","9p","virtio-net"]}},
 "schema":"kgate.catalog/1","default":"local_6.6.rc1"}
)";

// Each is one mistake away from the shipped catalog: every error path, and JSON the lexer must reject.
constexpr std::string_view near_misses[] = {
    R"({"schema":"kgate.catalog/2","default":"a","kernels":{"a":{}}})",
    R"({"schema":"kgate.catalog/1","default":"b","kernels":{"a":{"arch":"x86_64","source":{"type":"debian-package","metapackage":"m","package_prefix":"p"}}}})",
    R"({"schema":"kgate.catalog/1","default":"a","kernels":{"a":{"arch":"aarch64","source":{}}}})",
    R"({"schema":"kgate.catalog/1","default":"a","kernels":{"a":{"arch":"x86_64","source":{"type":"rpm"}}}})",
    R"({"schema":"kgate.catalog/1","default":"a","kernels":{"a":{"arch":"x86_64","source":"debian-package"}}})",
    R"({"schema":"kgate.catalog/1","default":"a","kernels":{"a":{"arch":"x86_64","typo":1,"source":{"type":"debian-package","metapackage":"m","package_prefix":"p"}}}})",
    R"({"schema":"kgate.catalog/1","default":"a","kernels":{"a":{"arch":"x86_64","source":{"type":"debian-package","metapackage":"m","package_prefix":"p"},"modules":"virtio"}}})",
    R"({"schema":"kgate.catalog/1","default":"a","kernels":{"a":{"arch":"x86_64","source":{"type":"debian-package","metapackage":"m","package_prefix":"p"},"modules":[1,null,"a/b"]}}})",
    R"({"schema":"kgate.catalog/1","default":"a b","kernels":{"a b":[]}})",
    R"({"schema":"kgate.catalog/1","default":"a","kernels":{}})",
    R"({"schema":1,"default":true,"kernels":[-0,1e400,1.5e-7,18446744073709551616,"\u0000"]})",
    R"({"schema":"kgate.catalog/1","schema":"kgate.catalog/1","default":"a","kernels":{"a":{"arch":"x86_64","source":{"type":"debian-package","metapackage":"","package_prefix":"p"}}}})",
    R"(["kgate.catalog/1"])",
    R"({"schema":"\ud800","default":"\x","kernels":{"a":tru})",
};

}  // namespace

std::vector<std::string> kgate_fuzz_seeds() {
  std::vector<std::string> seeds = {std::string(shipped), std::string(two_entries)};
  // The shipped catalog minified, and with a byte-order mark and trailing garbage.
  std::string minified;
  bool in_string = false;
  for (std::size_t i = 0; i < shipped.size(); ++i) {
    char c = shipped[i];
    if (c == '"' && (i == 0 || shipped[i - 1] != '\\')) in_string = !in_string;
    if (in_string || (c != ' ' && c != '\n')) minified += c;
  }
  seeds.push_back(minified);
  seeds.push_back("\xef\xbb\xbf" + std::string(shipped));
  seeds.push_back(std::string(shipped) + "}");
  // An arm64 entry, with the per-arch defaults map.
  seeds.emplace_back(
      R"({"schema":"kgate.catalog/1","default":"x","defaults":{"arm64":"a"},"kernels":{"x":{"arch":"x86_64",)"
      R"("source":{"type":"debian-package","metapackage":"m","package_prefix":"p"}},"a":{"arch":"arm64",)"
      R"("source":{"type":"debian-package","metapackage":"linux-image-arm64","package_prefix":"linux-image-6.1.0-"},)"
      R"("modules":["virtio_mmio","virtio_console"]}}})");
  for (std::string_view s : near_misses) seeds.emplace_back(s);
  return seeds;
}

#include <doctest/doctest.h>

#include <cstdlib>

#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>

#include "kernel/build.hpp"
#include "kernel/cache.hpp"
#include "kernel/cache_admin.hpp"
#include "kernel/catalog.hpp"
#include "kernel/debian.hpp"
#include "kernel/pins.hpp"

using namespace kgate::kernel;

namespace {
std::string source_root() {
  const char* env = std::getenv("KGATE_SOURCE_ROOT");
  return env ? env : std::string(__FILE__).substr(0, std::string(__FILE__).rfind("/tests/"));
}

const char* good = R"({
  "schema": "kgate.catalog/1",
  "default": "k1",
  "kernels": {
    "k1": {"arch": "x86_64", "modules": ["virtio_console"],
           "source": {"type": "debian-package", "metapackage": "linux-image-amd64", "package_prefix": "linux-image-6.1."}}
  }
})";

std::string error_of(std::string_view text) {
  auto c = parse_catalog(text, "cat.json");
  REQUIRE_FALSE(c.has_value());
  CHECK(c.error().cls() == kgate::FailureClass::usage);
  return c.error().describe();
}
}  // namespace

TEST_CASE("the shipped catalog parses and names debian-6.1 as default") {
  auto cat = load_catalog(source_root() + "/kernels/catalog.json");
  REQUIRE_MESSAGE(cat.has_value(), cat.error().describe());
  CHECK(cat->default_entry == "debian-6.1");
  auto e = cat->find("debian-6.1");
  REQUIRE(e.has_value());
  CHECK((*e)->source.metapackage == "linux-image-amd64");
  CHECK((*e)->modules == std::vector<std::string>{"virtio_pci", "virtio_console"});
  // arm64: through dpkg multiarch, virtio on -M virt's mmio transport; the default for --arch arm64.
  auto arm = cat->find("debian-6.1-arm64");
  REQUIRE(arm.has_value());
  CHECK((*arm)->arch == "arm64");
  CHECK((*arm)->source.metapackage == "linux-image-arm64");
  CHECK((*arm)->modules == std::vector<std::string>{"virtio_mmio", "virtio_console"});
  CHECK(cat->default_for("arm64").value() == "debian-6.1-arm64");
  CHECK(cat->default_for("x86_64").value() == "debian-6.1");
}

TEST_CASE("per-arch defaults: checked against the entries' arches") {
  std::string two = good;
  two.replace(
      two.find("\"k1\": {"), 0,
      R"("a1": {"arch": "arm64", "source": {"type": "debian-package", "metapackage": "m", "package_prefix": "p"}},
    )");
  auto cat = parse_catalog(two, "cat.json");
  REQUIRE_MESSAGE(cat.has_value(), cat.error().describe());
  // No "defaults": "default" serves its own arch only.
  CHECK(cat->default_for("x86_64").value() == "k1");
  CHECK(cat->default_for("arm64").error().describe() ==
        "the catalog names no default arm64 kernel (\"defaults\"): name one with --entry");
  auto with_defaults = [&](const std::string& defaults) {
    std::string t = two;
    t.replace(t.find("\"kernels\""), 0, "\"defaults\": " + defaults + ", ");
    return t;
  };
  auto ok = parse_catalog(with_defaults(R"({"arm64": "a1"})"), "cat.json");
  REQUIRE_MESSAGE(ok.has_value(), ok.error().describe());
  CHECK(ok->default_for("arm64").value() == "a1");
  CHECK(error_of(with_defaults(R"({"arm64": "k1"})")) == "cat.json: defaults.arm64: entry 'k1' is x86_64");
  CHECK(error_of(with_defaults(R"({"arm64": "zz"})")) == "cat.json: defaults.arm64: must name an entry");
  CHECK(error_of(with_defaults(R"({"mips": "k1"})")) ==
        "cat.json: defaults.mips: unknown arch (x86_64, arm64)");
  CHECK(error_of(with_defaults(R"(["a1"])")) == "cat.json: 'defaults' must map an arch to an entry name");
}

TEST_CASE("a good catalog parses; find() of an unknown entry lists the known ones") {
  auto cat = parse_catalog(good, "cat.json");
  REQUIRE(cat.has_value());
  auto missing = cat->find("nope");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().describe() == "no kernel entry 'nope' (known: k1)");
}

TEST_CASE("bad catalogs are refused with a message that says what and where") {
  CHECK(error_of("{").starts_with("cat.json: not valid JSON at line 1, column 2"));
  // A kernel defined twice: the second must not silently replace the first (it booted the cloud
  // kernel under the first one's name).
  std::string twice = good;
  twice.insert(twice.rfind("\n  }\n}"), R"(,
    "k1": {"arch": "x86_64", "source": {"type": "debian-package", "metapackage": "linux-image-cloud-amd64",
           "package_prefix": "linux-image-6.1."}})");
  CHECK(error_of(twice) ==
        "cat.json: line 7: kernels.k1: the key \"k1\" appears twice in one object (first on line 5)");
  CHECK(error_of("[]") == "cat.json: must be a JSON object");
  CHECK(error_of(R"({"schema": "kgate.catalog/9", "default": "a", "kernels": {}})") ==
        "cat.json: schema 'kgate.catalog/9' is not kgate.catalog/1");
  CHECK(error_of(R"({"schema": "kgate.catalog/1", "default": "a", "kernels": {}})") ==
        "cat.json: 'kernels' must be a non-empty object");
  std::string typo = good;
  typo.replace(typo.find("\"modules\""), 9, "\"modulez\"");
  CHECK(error_of(typo) == "cat.json: kernels.k1: unknown key 'modulez'");
  std::string bad_default = good;
  bad_default.replace(bad_default.find("\"default\": \"k1\""), 15, "\"default\": \"k2\"");
  CHECK(error_of(bad_default) == "cat.json: default 'k2' names no entry");
  std::string bad_type = good;
  bad_type.replace(bad_type.find("debian-package"), 14, "tarball");
  CHECK(error_of(bad_type) ==
        "cat.json: kernels.k1.source: unknown source type 'tarball' (known: debian-package, oci, oci-layout, "
        "kernel-org)");
  std::string bad_arch = good;
  bad_arch.replace(bad_arch.find("x86_64"), 6, "sparc");
  CHECK(error_of(bad_arch) == "cat.json: kernels.k1: arch 'sparc' is not supported (x86_64, arm64)");
  std::string no_meta = good;
  no_meta.replace(no_meta.find("\"metapackage\": \"linux-image-amd64\", "), 35, "");
  CHECK(error_of(no_meta) == "cat.json: kernels.k1.source: missing 'metapackage'");
  std::string bad_module = good;
  bad_module.replace(bad_module.find("\"virtio_console\""), 16, "\"../x\"");
  CHECK(error_of(bad_module) == "cat.json: kernels.k1: 'modules' must hold module names");
  auto missing_file = load_catalog("/nonexistent/catalog.json");
  REQUIRE_FALSE(missing_file.has_value());
  CHECK(missing_file.error().cls() == kgate::FailureClass::usage);
}

TEST_CASE("OCI sources: a reference or a layout path, with a digest pin or an explicit null") {
  std::string oci = good;
  oci.replace(oci.find("{\"type\": \"debian-package\""), std::string::npos, "");
  auto with_source = [&](const std::string& src) { return oci + src + "}}}"; };
  const std::string pin = "sha256:" + std::string(64, 'a');
  auto remote = parse_catalog(
      with_source(R"({"type": "oci", "reference": "ghcr.io/cilium/ci-kernels:6.6.157", "digest": ")" + pin +
                  "\"}"),
      "cat.json");
  REQUIRE_MESSAGE(remote.has_value(), remote.error().describe());
  CHECK(remote->entries.at("k1").source.type == "oci");
  CHECK(remote->entries.at("k1").source.digest == pin);
  auto unpinned =
      parse_catalog(with_source(R"({"type": "oci", "reference": "r:1", "digest": null})"), "cat.json");
  REQUIRE(unpinned.has_value());
  CHECK(unpinned->entries.at("k1").source.digest.empty());
  CHECK(error_of(with_source(R"({"type": "oci", "reference": "r:1", "digest": "sha256:abc"})")) ==
        "cat.json: kernels.k1.source: 'digest' must be \"sha256:<64 hex digits>\" or null");
  CHECK(error_of(with_source(R"({"type": "oci-layout", "digest": null})")) ==
        "cat.json: kernels.k1.source: missing 'path'");
  auto layout =
      parse_catalog(with_source(R"({"type": "oci-layout", "path": "layouts/k", "ref": "6.1"})"), "cat.json");
  REQUIRE(layout.has_value());
  CHECK(layout->entries.at("k1").source.path == "layouts/k");
}

TEST_CASE("apt-cache stanzas: fields and the image package behind a metapackage") {
  const char* stanza =
      "Package: linux-image-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\n"
      "Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\nSHA256: abc\n\nPackage: other\nVersion: 9\n";
  CHECK(stanza_field(stanza, "Version") == "6.1.192-2");
  CHECK(stanza_field(stanza, "SHA256") == "abc");
  CHECK(stanza_field(stanza, "Missing") == "");
  CHECK(depends_with_prefix(stanza_field(stanza, "Depends"), "linux-image-6.1.0-") ==
        "linux-image-6.1.0-56-amd64");
  CHECK(depends_with_prefix("foo (>= 1), linux-image-6.1.0-9-amd64 | bar", "linux-image-6.1.0-") ==
        "linux-image-6.1.0-9-amd64");
  CHECK(depends_with_prefix("foo, bar", "linux-image-") == "");
  CHECK(debian_arch("x86_64") == "amd64");
  CHECK(debian_arch("arm64") == "arm64");
}

TEST_CASE("kernels.lock: parsed strictly, applied only where the catalog still names the pinned reference") {
  const std::string d1 = "sha256:" + std::string(64, 'a'), d2 = "sha256:" + std::string(64, 'b');
  auto pins = parse_kernel_pins("# c\n\n6.6 x86_64 ghcr.io/k:6.6.1 " + d1 + "\n", "k.lock");
  REQUIRE(pins.has_value());
  REQUIRE(pins->size() == 1);
  CHECK((*pins)[0].line == 3);
  CHECK(render_kernel_pins(*pins).ends_with("6.6 x86_64 ghcr.io/k:6.6.1 " + d1 + "\n"));
  for (const auto& [bad, why] : std::vector<std::pair<std::string, std::string>>{
           {"6.6 x86_64 ghcr.io/k:6.6.1\n", "line 1: want"},
           {"6.6 x86_64 r " + d1 + " extra\n", "line 1: want"},
           {"6.6 riscv r " + d1 + "\n", "not an arch and a sha256"},
           {"6.6 x86_64 r sha256:xyz\n", "not an arch and a sha256"},
           {"6.6 x86_64 r " + d1 + "\n6.6 x86_64 r " + d2 + "\n",
            "line 2: 6.6 x86_64 is pinned on line 1 too"}}) {
    auto p = parse_kernel_pins(bad, "k.lock");
    CAPTURE(bad);
    REQUIRE_FALSE(p.has_value());
    CHECK(p.error().describe().find(why) != std::string::npos);
  }
  auto catalog = [] {
    return parse_catalog(R"({"schema": "kgate.catalog/1", "default": "6.6", "kernels": {
      "6.6": {"arch": "x86_64", "source": {"type": "oci", "reference": "ghcr.io/k:6.6.1", "digest": null}},
      "local": {"arch": "x86_64", "source": {"type": "oci-layout", "path": "/l", "ref": "v1"}},
      "deb": {"arch": "x86_64", "source": {"type": "debian-package", "metapackage": "m", "package_prefix": "p"}}}})",
                         "c.json")
        .value();
  };
  auto c = catalog();
  REQUIRE(apply_kernel_pins(c, *pins, "k.lock").has_value());
  CHECK(c.entries.at("6.6").source.digest == d1);
  CHECK(pin_reference(c.entries.at("local")) == "v1");
  CHECK(pin_reference(c.entries.at("deb")).empty());
  auto refused = [&](const std::string& lock, const std::string& why) {
    auto cc = catalog();
    auto st = apply_kernel_pins(cc, parse_kernel_pins(lock, "k.lock").value(), "k.lock");
    CAPTURE(lock);
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().describe().find(why) != std::string::npos);
  };
  refused("6.6 x86_64 ghcr.io/k:6.6.2 " + d1 + "\n",
          "was pinned at ghcr.io/k:6.6.2, the catalog now names ghcr.io/k:6.6.1");
  refused("gone x86_64 r " + d1 + "\n", "gone is no OCI entry of the catalog");
  refused("deb x86_64 r " + d1 + "\n", "deb is no OCI entry");
  refused("6.6 arm64 ghcr.io/k:6.6.1 " + d1 + "\n", "6.6 is x86_64, not arm64");
  auto argv = skopeo_inspect_argv("/usr/bin/skopeo", c.entries.at("6.6"));
  CHECK(argv.back() == "docker://ghcr.io/k:6.6.1");
  CHECK(std::find(argv.begin(), argv.end(), "amd64") != argv.end());
  CHECK(skopeo_inspect_argv("skopeo", c.entries.at("local")).back() == "oci:/l:v1");
}

TEST_CASE(
    "cache prune: keeps what catalog entries and recent uses reference; a run's use lock holds it off") {
  namespace fs = std::filesystem;
  auto tmp = kgate::TempDir::create("kgate-prune").value();
  auto cache = Cache::open(tmp.path() / "cache").value();
  auto old = [](const fs::path& p) {
    const timespec times[2] = {{1000000000, 0}, {1000000000, 0}};  // 2001
    REQUIRE(::utimensat(AT_FDCWD, p.c_str(), times, 0) == 0);
  };
  // A catalog entry's record naming its tree and image; a record of a gone entry; blobs and refs.
  const std::string image = cache.put_blob("kernel image").value();
  const std::string vmlinux = cache.put_blob("vmlinux").value();
  const std::string stale_blob = cache.put_blob("an initramfs of last year").value();
  const std::string fresh_blob = cache.put_blob("an initramfs of today").value();
  const std::string tree(64, 'c'), gone_tree(64, 'd');
  fs::create_directories(cache.tree_path(tree) / "boot");
  fs::create_directories(cache.tree_path(gone_tree));
  REQUIRE(kgate::write_file_atomic(cache.entry_path("deb"), R"({"release": "6.1.0", "package_sha256": ")" +
                                                                tree + R"(", "image_sha256": ")" + image +
                                                                "\"}")
              .has_value());
  REQUIRE(kgate::write_file_atomic(cache.entry_path("gone"), "{}").has_value());
  REQUIRE(cache.set_ref("vmlinux", image, vmlinux).has_value());                   // leads from live: kept
  REQUIRE(cache.set_ref("initrd", std::string(64, 'e'), stale_blob).has_value());  // old, unrelated: goes
  for (const auto& p :
       {cache.entry_path("gone"), cache.tree_path(gone_tree), cache.tree_path(tree), cache.blob_path(image),
        fs::path(cache.blob_path(image).string() + ".seal"), cache.blob_path(vmlinux),
        fs::path(cache.blob_path(vmlinux).string() + ".seal"), cache.blob_path(stale_blob),
        fs::path(cache.blob_path(stale_blob).string() + ".seal"), tmp.path() / "cache/refs/vmlinux" / image,
        tmp.path() / "cache/refs/initrd" / std::string(64, 'e')})
    old(p);
  auto catalog = parse_catalog(R"({"schema": "kgate.catalog/1", "default": "deb", "kernels": {
      "deb": {"arch": "x86_64", "source": {"type": "debian-package", "metapackage": "m", "package_prefix": "p"}}}})",
                               "c.json")
                     .value();
  auto listed = list_kernels(cache, catalog);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].cached);
  CHECK(listed[0].release == "6.1.0");
  CHECK(listed[0].bytes == std::string("kernel image").size());

  // While a run holds the cache (a shared use lock), prune cannot have it.
  auto busy = Cache::open_exclusive(tmp.path() / "cache", kgate::Deadline(std::chrono::milliseconds(200)));
  REQUIRE_FALSE(busy.has_value());
  CHECK(busy.error().describe().find("kgate runs are using the cache") != std::string::npos);
  std::string root = cache.root().string();
  cache = Cache::open(tmp.path() / "other").value();  // the run ends: its lock goes with it
  auto excl = Cache::open_exclusive(root, kgate::Deadline(std::chrono::seconds(5))).value();
  auto dry = prune_cache(excl, catalog, std::chrono::hours(24 * 30), true).value();
  auto report = prune_cache(excl, catalog, std::chrono::hours(24 * 30), false).value();
  CHECK(dry.removed == report.removed);
  std::sort(report.removed.begin(), report.removed.end());
  CHECK(report.removed == std::vector<std::string>{"blobs/sha256/" + stale_blob,
                                                   "blobs/sha256/" + stale_blob + ".seal",
                                                   "entries/gone.json", "refs/initrd/" + std::string(64, 'e'),
                                                   "trees/" + gone_tree});
  CHECK(fs::exists(excl.blob_path(fresh_blob)));  // used recently
  CHECK(fs::exists(excl.blob_path(vmlinux)));     // a kept ref names it
  CHECK(fs::exists(excl.tree_path(tree)));
}

TEST_CASE(
    "kernel-org entries: parsed strictly; the build's steps and cache key follow tarball, fragment and "
    "base") {
  namespace fs = std::filesystem;
  auto tmp = kgate::TempDir::create("kgate-kernel-org").value();
  REQUIRE(kgate::write_file_atomic(tmp.path() / "config/frag.config", "CONFIG_BPF=y\n").has_value());
  const std::string sha(64, 'f');
  auto write = [&](const std::string& source) {
    REQUIRE(
        kgate::write_file_atomic(
            tmp.path() / "catalog.json",
            R"({"schema": "kgate.catalog/1", "default": "k", "kernels": {"k": {"arch": "x86_64", "source": )" +
                source + "}}}")
            .has_value());
    return load_catalog(tmp.path() / "catalog.json");
  };
  auto c = write(R"({"type": "kernel-org", "release": "6.6.74", "sha256": ")" + sha +
                 R"(", "config": "config/frag.config", "tarball": "linux-6.6.74.tar.xz"})");
  REQUIRE_MESSAGE(c.has_value(), c.error().describe());
  const CatalogEntry& e = c->entries.at("k");
  CHECK(e.source.url == "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.6.74.tar.xz");
  CHECK(e.source.tarball == tmp.path() / "linux-6.6.74.tar.xz");
  CHECK(e.source.config == tmp.path() / "config/frag.config");
  CHECK(e.source.base == "tinyconfig");
  CHECK(e.source.config_sha256 == kgate::sha256_hex(std::string("CONFIG_BPF=y\n")));
  const auto steps = kernel_build_steps(e, "/src", "/out", 4);
  REQUIRE(steps.size() == 5);
  CHECK(steps[0] == std::vector<std::string>{"make", "-C", "/src", "O=/out", "ARCH=x86_64", "tinyconfig"});
  CHECK(steps[1][0] == "/src/scripts/kconfig/merge_config.sh");
  CHECK(steps[1].back() == (tmp.path() / "config/frag.config").string());
  CHECK(steps[3].back() == "bzImage");
  CHECK(steps[3][5] == "-j4");
  // The key changes with the fragment's bytes (and nothing in it is the fragment's path).
  const std::string key = kernel_build_key(e);
  REQUIRE(kgate::write_file_atomic(tmp.path() / "config/frag.config", "CONFIG_BPF=y\nCONFIG_NET=y\n")
              .has_value());
  auto c2 = write(R"({"type": "kernel-org", "release": "6.6.74", "sha256": ")" + sha +
                  R"(", "config": "config/frag.config"})");
  REQUIRE(c2.has_value());
  CHECK(kernel_build_key(c2->entries.at("k")) != key);
  for (const auto& [bad, why] : std::vector<std::pair<std::string, std::string>>{
           {R"({"type": "kernel-org", "release": "6.6", "sha256": "abc", "config": "config/frag.config"})",
            "'sha256' must be"},
           {R"({"type": "kernel-org", "release": "6.6", "sha256": ")" + sha +
                R"(", "config": "none.config"})",
            "source.config"},
           {R"({"type": "kernel-org", "release": "6.6", "sha256": ")" + sha +
                R"(", "config": "config/frag.config", "base": "allyesconfig"})",
            "'base' must be"},
           {R"({"type": "kernel-org", "release": "6.6", "sha256": ")" + sha +
                R"(", "config": "config/frag.config", "extra": 1})",
            "extra"}}) {
    auto r = write(bad);
    CAPTURE(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().cls() == kgate::FailureClass::usage);
    CHECK(r.error().describe().find(why) != std::string::npos);
  }
}

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/compress.hpp"
#include "core/files.hpp"
#include "core/subprocess.hpp"
#include "kernel/bzimage.hpp"
#include "kernel/cache.hpp"
#include "kernel/oci.hpp"
#include "kernel/prepare.hpp"
#include "kernel/tar.hpp"
#include "support/synthetic.hpp"

using namespace kgate;
using namespace kgate::kernel;
using kgate::testing::gzip_bytes;
using nlohmann::json;

namespace {

constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kOciConfig = "application/vnd.oci.image.config.v1+json";
constexpr const char* kTar = "application/vnd.oci.image.layer.v1.tar";
constexpr const char* kTarGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr const char* kTarZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
constexpr const char* kDockerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
constexpr const char* kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr const char* kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr const char* kDockerConfig = "application/vnd.docker.container.image.v1+json";
constexpr const char* kRefName = "org.opencontainers.image.ref.name";

Deadline deadline() {
  return Deadline(std::chrono::seconds(60));
}

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

void write(const fs::path& p, std::string_view data) {
  REQUIRE(write_file_atomic(p, data).has_value());
}

std::string zstd(std::string_view data) {
  auto out = zstd_compress(data, 3);
  REQUIRE(out.has_value());
  return *out;
}

// A tar made by the system tar: `args` go after -C tree (members, more -C, -P).
std::string make_tar(const fs::path& tree, const std::vector<std::string>& args) {
  fs::path out = tree.string() + ".tar";
  std::vector<std::string> argv = {"tar", "-c", "-f", out.string(), "-C", tree.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto cap = run_capture(argv, deadline());
  REQUIRE(cap.has_value());
  REQUIRE_MESSAGE(cap->status == 0, cap->err);
  auto bytes = read_file(out);
  REQUIRE(bytes.has_value());
  return *bytes;
}

// boot/vmlinuz-<rel>, boot/config-<rel>, lib/modules/<rel>/kernel/x.ko under base/tree-<rel>.
fs::path kernel_tree(const fs::path& base, const std::string& rel) {
  fs::path t = base / ("tree-" + rel);
  write(t / "boot" / ("vmlinuz-" + rel), "kernel bytes for " + rel);
  write(t / "boot" / ("config-" + rel), "CONFIG_BPF=y\n");
  write(t / "lib" / "modules" / rel / "kernel" / "x.ko", "module x");
  return t;
}

std::string kernel_tar(const fs::path& base, const std::string& rel) {
  return make_tar(kernel_tree(base, rel), {"boot", "lib"});
}

struct LayerSpec {
  std::string media_type;
  std::string blob;  // as stored
  std::string tar;   // uncompressed, for the config's diff_ids
};
LayerSpec gz_layer(std::string tar) {
  return {kTarGzip, gzip_bytes(tar, 6), std::move(tar)};
}

// Writes blobs, manifests and index.json of an OCI image layout, as a registry client would.
class Layout {
 public:
  explicit Layout(fs::path dir) : dir_(std::move(dir)) {
    write(dir_ / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  }
  const fs::path& dir() const { return dir_; }

  json put(std::string_view media_type, std::string_view bytes) {
    std::string hex = sha256_hex(bytes);
    write(dir_ / "blobs" / "sha256" / hex, bytes);
    return {{"mediaType", media_type}, {"digest", "sha256:" + hex}, {"size", bytes.size()}};
  }
  fs::path blob(const json& desc) const {
    return dir_ / "blobs" / "sha256" / desc["digest"].get<std::string>().substr(7);
  }
  // A manifest over already stored layer descriptors; returns its descriptor.
  json manifest(const json& layer_descs, const json& diff_ids, const std::string& arch = "amd64",
                const json& run_config = nullptr) {
    json config = {
        {"architecture", arch}, {"os", "linux"}, {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    if (!run_config.is_null()) config["config"] = run_config;
    json m = {{"schemaVersion", 2},
              {"mediaType", kOciManifest},
              {"config", put(kOciConfig, config.dump())},
              {"layers", layer_descs}};
    return put(kOciManifest, m.dump());
  }
  json image(const std::vector<LayerSpec>& layers, const std::string& arch = "amd64",
             const json& run_config = nullptr) {
    json descs = json::array(), diff_ids = json::array();
    for (const auto& l : layers) {
      descs.push_back(put(l.media_type, l.blob));
      diff_ids.push_back("sha256:" + sha256_hex(l.tar));
    }
    return manifest(descs, diff_ids, arch, run_config);
  }
  void index(const std::vector<json>& entries) {
    write(dir_ / "index.json",
          json{{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", entries}}.dump());
  }

 private:
  fs::path dir_;
};

json named(json desc, const std::string& ref) {
  desc["annotations"] = {{kRefName, ref}};
  return desc;
}

struct Fixture {
  TempDir tmp = [] {
    auto t = TempDir::create("kgate-test-oci");
    REQUIRE(t.has_value());
    return std::move(*t);
  }();
  fs::path base = tmp.path();
  Layout layout{base / "layout"};
  fs::path dest = base / "root";

  Result<OciImage> import(std::string_view ref = "", std::string_view pinned = "",
                          std::string_view arch = "x86_64") {
    return import_oci_layout(layout.dir(), ref, pinned, arch, dest, deadline());
  }
  // Nothing was unpacked and no work directory was left behind.
  void check_untouched() {
    CHECK((!fs::exists(dest) || fs::is_empty(dest)));
    for (const auto& e : fs::directory_iterator(base))
      CHECK_FALSE(e.path().filename().string().starts_with(".kgate-oci"));
  }
};

// Sets an environment variable for the lifetime of the guard.
class EnvGuard {
 public:
  EnvGuard(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~EnvGuard() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

const std::string kDigest = "sha256:" + std::string(64, 'a');

}  // namespace

TEST_CASE("a single-manifest layout imports, and the kernel, config and modules are found") {
  Fixture f;
  std::string tar = kernel_tar(f.base, "6.1.0-test");
  LayerSpec layer;
  SUBCASE("gzip") {
    layer = gz_layer(tar);
  }
  SUBCASE("zstd") {
    layer = {kTarZstd, zstd(tar), tar};
  }
  SUBCASE("plain tar") {
    layer = {kTar, tar, tar};
  }
  SUBCASE("docker gzip") {
    layer = {kDockerGzip, gzip_bytes(tar, 6), tar};
  }
  json man = f.layout.image({layer});
  f.layout.index({named(man, "6.1")});

  auto img = f.import();
  REQUIRE_MESSAGE(img.has_value(), img.error().describe());
  CHECK(img->manifest_digest == man["digest"]);
  CHECK(img->pinned_digest == man["digest"]);
  REQUIRE(img->layer_digests.size() == 1);
  CHECK(img->layer_digests[0] == "sha256:" + sha256_hex(layer.blob));
  CHECK(img->root == f.dest);
  CHECK(img->image == f.dest / "boot" / "vmlinuz-6.1.0-test");
  CHECK(img->config == f.dest / "boot" / "config-6.1.0-test");
  CHECK(img->modules_dir == f.dest / "lib" / "modules" / "6.1.0-test");
  CHECK(img->release == "6.1.0-test");
  CHECK(img->dropped_links.empty());
  CHECK(read_file(img->image).value() == "kernel bytes for 6.1.0-test");
  CHECK(fs::exists(img->modules_dir / "kernel" / "x.ko"));
  CHECK_FALSE(fs::exists(f.base / "root.tar"));
}

TEST_CASE("the pin is checked against the index.json entry") {
  Fixture f;
  json man = f.layout.image({gz_layer(kernel_tar(f.base, "6.1.0-test"))});
  f.layout.index({named(man, "6.1")});
  const std::string digest = man["digest"];

  SUBCASE("matching pin, image chosen by name") {
    auto img = f.import("6.1", digest);
    REQUIRE_MESSAGE(img.has_value(), img.error().describe());
    CHECK(img->pinned_digest == digest);
  }
  SUBCASE("wrong pin") {
    auto img = f.import("6.1", kDigest);
    REQUIRE_FALSE(img.has_value());
    CHECK(img.error().cls() == FailureClass::digest_mismatch);
    CHECK(contains(img.error().describe(), digest));
    CHECK(contains(img.error().describe(), kDigest));
    f.check_untouched();
  }
  SUBCASE("malformed pin") {
    auto img = f.import("6.1", "sha256:1234");
    REQUIRE_FALSE(img.has_value());
    CHECK(img.error().cls() == FailureClass::usage);
  }
}

TEST_CASE("a tampered layer is refused before anything is unpacked") {
  Fixture f;
  // Two layers: the second is the tampered one, so the first must not be unpacked either.
  LayerSpec first = gz_layer(kernel_tar(f.base, "6.1.0-test"));
  write(f.base / "extra" / "etc" / "motd", "hello");
  LayerSpec second = gz_layer(make_tar(f.base / "extra", {"etc"}));
  json man = f.layout.image({first, second});
  f.layout.index({man});
  const std::string layer_digest = "sha256:" + sha256_hex(second.blob);
  fs::path blob = f.layout.dir() / "blobs" / "sha256" / layer_digest.substr(7);
  std::string bytes = read_file(blob).value();
  bytes[bytes.size() / 2] ^= 0x01;
  write(blob, bytes);

  auto img = f.import();
  REQUIRE_FALSE(img.has_value());
  CHECK(img.error().cls() == FailureClass::digest_mismatch);
  const std::string msg = img.error().describe();
  CHECK(contains(msg, "layer 2 of 2 " + layer_digest));
  CHECK(contains(msg, "sha256:" + sha256_hex(bytes)));
  f.check_untouched();
}

TEST_CASE("any image unpacks with its config; a verify reads every layer's digest and unpacks nothing") {
  Fixture f;
  write(f.base / "app" / "usr" / "bin" / "agent", "#!agent");
  write(f.base / "app" / "etc" / "agent.yaml", "level: 1\n");
  LayerSpec layer = gz_layer(make_tar(f.base / "app", {"usr", "etc"}));
  json run = {{"Env", {"PATH=/usr/bin", "MODE=live"}},
              {"Entrypoint", {"/usr/bin/agent"}},
              {"Cmd", {"--config", "/etc/agent.yaml"}},
              {"WorkingDir", "/var/lib/agent"}};
  json man = f.layout.image({layer}, "amd64", run);
  f.layout.index({named(man, "v1.4.2")});

  auto checked = verify_oci_layout(f.layout.dir(), "v1.4.2", "", "x86_64");
  REQUIRE(checked.has_value());
  CHECK(checked->manifest_digest == man["digest"].get<std::string>());
  CHECK(checked->root.empty());
  CHECK(checked->image_config.entrypoint == std::vector<std::string>{"/usr/bin/agent"});
  CHECK(checked->image_config.cmd == std::vector<std::string>{"--config", "/etc/agent.yaml"});
  CHECK(checked->image_config.env == std::vector<std::string>{"PATH=/usr/bin", "MODE=live"});
  CHECK(checked->image_config.working_dir == "/var/lib/agent");
  f.check_untouched();

  auto img = unpack_oci_layout(f.layout.dir(), "v1.4.2", "", "x86_64", f.dest, deadline());
  REQUIRE(img.has_value());
  CHECK(read_file(f.dest / "usr" / "bin" / "agent").value() == "#!agent");
  CHECK(img->image.empty());  // no kernel is looked for
  CHECK(img->image_config.working_dir == "/var/lib/agent");

  // One flipped byte in the layer: verify names it, before anything would be unpacked.
  fs::path blob = f.layout.blob(man).parent_path() / sha256_hex(layer.blob);
  std::string bytes = read_file(blob).value();
  bytes[bytes.size() / 2] ^= 0x01;
  write(blob, bytes);
  auto bad = verify_oci_layout(f.layout.dir(), "v1.4.2", "", "x86_64");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().cls() == FailureClass::digest_mismatch);
  CHECK(contains(bad.error().describe(), "layer 1 of 1 sha256:" + sha256_hex(layer.blob)));
}

TEST_CASE("an image config whose Env or Entrypoint is not a list of strings is a usage error") {
  Fixture f;
  write(f.base / "app" / "agent", "x");
  LayerSpec layer = gz_layer(make_tar(f.base / "app", {"agent"}));
  json man = f.layout.image({layer}, "amd64", {{"Entrypoint", "/agent"}});
  f.layout.index({man});
  auto bad = verify_oci_layout(f.layout.dir(), "", "", "x86_64");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().cls() == FailureClass::usage);
  CHECK(contains(bad.error().describe(), "\"Entrypoint\" is not an array of strings"));
}

TEST_CASE("a blob whose size differs from its descriptor is refused") {
  Fixture f;
  LayerSpec layer = gz_layer(kernel_tar(f.base, "6.1.0-test"));
  json desc = f.layout.put(kTarGzip, layer.blob);
  desc["size"] = desc["size"].get<std::uint64_t>() + 1;
  json man = f.layout.manifest(json::array({desc}), json::array({"sha256:" + sha256_hex(layer.tar)}));
  f.layout.index({man});

  auto img = f.import();
  REQUIRE_FALSE(img.has_value());
  CHECK(img.error().cls() == FailureClass::digest_mismatch);
  CHECK(contains(img.error().describe(), desc["digest"].get<std::string>()));
  CHECK(contains(img.error().describe(), "bytes"));
  f.check_untouched();
}

TEST_CASE("a tampered manifest is refused") {
  Fixture f;
  json man = f.layout.image({gz_layer(kernel_tar(f.base, "6.1.0-test"))});
  f.layout.index({man});
  fs::path blob = f.layout.blob(man);
  std::string text = read_file(blob).value();
  // Same size, one digit of the config's digest changed.
  char& c = text[text.find("sha256:") + 7];
  c = c == '0' ? '1' : '0';
  write(blob, text);
  auto img = f.import();
  REQUIRE_FALSE(img.has_value());
  CHECK(img.error().cls() == FailureClass::digest_mismatch);
  CHECK(contains(img.error().describe(), "manifest " + man["digest"].get<std::string>()));
}

TEST_CASE("the config's diff_ids check the uncompressed layers") {
  Fixture f;
  LayerSpec layer = gz_layer(kernel_tar(f.base, "6.1.0-test"));
  json desc = f.layout.put(kTarGzip, layer.blob);
  json man = f.layout.manifest(json::array({desc}), json::array({kDigest}));
  f.layout.index({man});
  auto img = f.import();
  REQUIRE_FALSE(img.has_value());
  CHECK(img.error().cls() == FailureClass::digest_mismatch);
  CHECK(contains(img.error().describe(), "diff_id"));
  f.check_untouched();
}

TEST_CASE("a nested image index is followed to the manifest of the asked architecture") {
  Fixture f;
  json amd = f.layout.image({gz_layer(kernel_tar(f.base, "6.1.0-amd64"))}, "amd64");
  json arm = f.layout.image({gz_layer(kernel_tar(f.base, "6.1.0-arm64"))}, "arm64");
  amd["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
  arm["platform"] = {{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}};
  json other = f.layout.put(kOciManifest, R"({"schemaVersion":2})");
  other["platform"] = {{"os", "unknown"}, {"architecture", "unknown"}};
  json index = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", {amd, arm, other}}};
  json index_desc = f.layout.put(kOciIndex, index.dump());
  f.layout.index({named(index_desc, "6.1")});
  const std::string index_digest = index_desc["digest"];

  SUBCASE("x86_64") {
    auto img = f.import("6.1", index_digest, "x86_64");
    REQUIRE_MESSAGE(img.has_value(), img.error().describe());
    CHECK(img->pinned_digest == index_digest);
    CHECK(img->manifest_digest == amd["digest"]);
    CHECK(img->release == "6.1.0-amd64");
    CHECK(img->image.filename() == "vmlinuz-6.1.0-amd64");
  }
  SUBCASE("arm64") {
    auto img = f.import("6.1", index_digest, "arm64");
    REQUIRE_MESSAGE(img.has_value(), img.error().describe());
    CHECK(img->manifest_digest == arm["digest"]);
    CHECK(img->release == "6.1.0-arm64");
  }
  SUBCASE("pinning the platform manifest instead of the index is refused") {
    auto img = f.import("6.1", amd["digest"].get<std::string>(), "x86_64");
    REQUIRE_FALSE(img.has_value());
    CHECK(img.error().cls() == FailureClass::digest_mismatch);
  }
  SUBCASE("an architecture the index lacks") {
    auto img = import_oci_layout(f.layout.dir(), "6.1", "", "riscv64", f.dest, deadline());
    REQUIRE_FALSE(img.has_value());
    CHECK(img.error().cls() == FailureClass::usage);
  }
  SUBCASE("a tampered index") {
    fs::path blob = f.layout.blob(index_desc);
    std::string text = read_file(blob).value();
    text.replace(text.find("v8"), 2, "v9");
    write(blob, text);
    auto img = f.import("6.1", "", "arm64");
    REQUIRE_FALSE(img.has_value());
    CHECK(img.error().cls() == FailureClass::digest_mismatch);
    CHECK(contains(img.error().describe(), "image index " + index_digest));
  }
}

TEST_CASE("an arm64 kernel from an OCI layout is checked, and a compressed Image unpacked, before it boots") {
  Fixture f;
  auto cache = Cache::open(f.base / "cache");
  REQUIRE(cache.has_value());
  std::string image(64, '\0');
  image.replace(0x38, 4, std::string_view("ARM\x64", 4));
  image += "the rest of the arm64 kernel";
  // One image whose boot/vmlinuz is `kernel`, pinned in a catalog entry for arm64.
  auto entry_for = [&](const std::string& kernel) {
    fs::path tree = f.base / "tree";
    write(tree / "boot" / "vmlinuz-6.1.0-arm64", kernel);
    write(tree / "lib" / "modules" / "6.1.0-arm64" / "kernel" / "x.ko", "module x");
    json man = f.layout.image({gz_layer(make_tar(tree, {"boot", "lib"}))}, "arm64");
    f.layout.index({named(man, "6.1")});
    CatalogEntry e;
    e.name = "oci-arm64";
    e.arch = "arm64";
    e.source.type = "oci-layout";
    e.source.path = f.layout.dir();
    e.source.ref = "6.1";
    e.source.digest = man["digest"];
    return e;
  };
  auto refused = [&](const CatalogEntry& e, std::string_view what) {
    // Cold, and again warm from the record the cold call wrote.
    for (int pass = 0; pass < 2; ++pass) {
      auto k = prepare_entry(*cache, e, false, deadline());
      REQUIRE_FALSE(k.has_value());
      CHECK(k.error().cls() == FailureClass::usage);
      INFO(k.error().describe());
      CHECK(contains(k.error().describe(), "kernel oci-arm64"));
      CHECK(contains(k.error().describe(), std::string(what) + ", not an arm64 Image"));
    }
  };

  SUBCASE("an Image boots as it is") {
    auto k = prepare_entry(*cache, entry_for(image), false, deadline());
    REQUIRE_MESSAGE(k.has_value(), k.error().describe());
    CHECK(k->boot_sha256 == k->image_sha256);
    CHECK(read_file(k->boot).value() == image);
    CHECK_FALSE(k->pvh);
  }
  SUBCASE("Image.gz is decompressed once and the Image booted") {
    const CatalogEntry e = entry_for(gzip_bytes(image, 6));
    for (int pass = 0; pass < 2; ++pass) {
      auto k = prepare_entry(*cache, e, false, deadline());
      REQUIRE_MESSAGE(k.has_value(), k.error().describe());
      CHECK(k->boot_sha256 != k->image_sha256);
      CHECK(k->boot_sha256 == sha256_hex(image));
      CHECK(read_file(k->boot).value() == image);
      CHECK_FALSE(k->pvh);
    }
  }
  SUBCASE("an x86 bzImage is refused") {
    refused(entry_for(kgate::testing::bzimage_bytes(
                kgate::testing::bzimage_payload(Compression::gzip, kgate::testing::pvh_elf()))),
            "an x86 bzImage");
  }
  SUBCASE("a file that is no kernel is refused") {
    refused(entry_for("kernel bytes"), "a file starting with 6b 65 72 6e");
  }
}

TEST_CASE("Docker media types are read too") {
  Fixture f;
  std::string tar = kernel_tar(f.base, "6.1.0-test");
  json layer = f.layout.put(kDockerGzip, gzip_bytes(tar, 6));
  json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:" + sha256_hex(tar)}}}}};
  json m = {{"schemaVersion", 2},
            {"mediaType", kDockerManifest},
            {"config", f.layout.put(kDockerConfig, config.dump())},
            {"layers", {layer}}};
  json man = f.layout.put(kDockerManifest, m.dump());
  man["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
  json list = {{"schemaVersion", 2}, {"mediaType", kDockerList}, {"manifests", {man}}};
  json list_desc = f.layout.put(kDockerList, list.dump());
  f.layout.index({list_desc});
  auto img = f.import("", list_desc["digest"].get<std::string>());
  REQUIRE_MESSAGE(img.has_value(), img.error().describe());
  CHECK(img->manifest_digest == man["digest"]);
  CHECK(img->release == "6.1.0-test");
}

TEST_CASE("a manifest for another architecture is refused") {
  Fixture f;
  json man = f.layout.image({gz_layer(kernel_tar(f.base, "6.1.0-test"))}, "arm64");
  f.layout.index({man});
  auto img = f.import("", "", "x86_64");
  REQUIRE_FALSE(img.has_value());
  CHECK(img.error().cls() == FailureClass::usage);
  CHECK(contains(img.error().describe(), "linux/arm64, not linux/amd64"));
}

TEST_CASE("the image is chosen by its ref name") {
  Fixture f;
  json a = f.layout.image({gz_layer(kernel_tar(f.base, "6.1.0-a"))});
  json b = f.layout.image({gz_layer(kernel_tar(f.base, "6.6.0-b"))});
  f.layout.index({named(a, "a"), named(b, "b")});

  auto img = f.import("b");
  REQUIRE_MESSAGE(img.has_value(), img.error().describe());
  CHECK(img->release == "6.6.0-b");

  auto none = f.import("");
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().cls() == FailureClass::usage);
  CHECK(contains(none.error().describe(), "a, b"));
  auto missing = f.import("c");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().cls() == FailureClass::usage);
  CHECK(contains(missing.error().describe(), "no image named 'c'"));
}

TEST_CASE("malformed layouts are usage errors with precise messages") {
  Fixture f;
  LayerSpec layer = gz_layer(kernel_tar(f.base, "6.1.0-test"));
  auto expect_usage = [&](std::string_view fragment) {
    auto img = f.import();
    REQUIRE_FALSE(img.has_value());
    CHECK(img.error().cls() == FailureClass::usage);
    CHECK_MESSAGE(contains(img.error().describe(), fragment), img.error().describe());
    f.check_untouched();
  };

  SUBCASE("unknown layer media type") {
    json desc = f.layout.put("application/vnd.oci.image.layer.v1.tar+bzip2", layer.blob);
    f.layout.index(
        {f.layout.manifest(json::array({desc}), json::array({"sha256:" + sha256_hex(layer.tar)}))});
    expect_usage("media type application/vnd.oci.image.layer.v1.tar+bzip2");
  }
  SUBCASE("unknown manifest media type") {
    json desc = f.layout.put("application/vnd.example.thing+json", "{}");
    f.layout.index({desc});
    expect_usage("application/vnd.example.thing+json");
  }
  SUBCASE("a layer whose content is not what its media type says") {
    f.layout.index({f.layout.image({{kTarGzip, zstd(layer.tar), layer.tar}})});
    expect_usage("promises gzip");
  }
  SUBCASE("missing blob") {
    json man = f.layout.image({layer});
    f.layout.index({man});
    fs::remove(f.layout.dir() / "blobs" / "sha256" / sha256_hex(layer.blob));
    expect_usage("is missing from the layout");
  }
  SUBCASE("missing oci-layout") {
    f.layout.index({f.layout.image({layer})});
    fs::remove(f.layout.dir() / "oci-layout");
    expect_usage("no oci-layout file");
  }
  SUBCASE("missing index.json") {
    expect_usage("no index.json");
  }
  SUBCASE("bad JSON in index.json") {
    write(f.layout.dir() / "index.json", "{\"schemaVersion\": 2, \"manifests\": [");
    expect_usage("index.json: malformed JSON");
  }
  SUBCASE("bad JSON in a manifest") {
    f.layout.index({f.layout.put(kOciManifest, "{nope")});
    expect_usage("malformed JSON");
  }
  SUBCASE("schemaVersion 1") {
    write(f.layout.dir() / "index.json", R"({"schemaVersion": 1, "manifests": []})");
    expect_usage("schemaVersion is 1");
  }
  SUBCASE("unsupported digest algorithm") {
    json desc = f.layout.image({layer});
    desc["digest"] = "sha512:" + std::string(128, 'a');
    f.layout.index({desc});
    expect_usage("digest algorithm 'sha512'");
  }
  SUBCASE("negative size") {
    json desc = f.layout.image({layer});
    desc["size"] = -1;
    f.layout.index({desc});
    expect_usage("\"size\"");
  }
  SUBCASE("a manifest without layers") {
    json empty = {{"schemaVersion", 2},
                  {"mediaType", kOciManifest},
                  {"config", f.layout.put(kOciConfig, "{}")},
                  {"layers", json::array()}};
    f.layout.index({f.layout.put(kOciManifest, empty.dump())});
    expect_usage("has no layers");
  }
  SUBCASE("a manifest whose own mediaType contradicts its descriptor") {
    json m = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", json::array()}};
    f.layout.index({f.layout.put(kOciManifest, m.dump())});
    expect_usage("its mediaType is");
  }
  SUBCASE("no kernel in the image") {
    write(f.base / "empty" / "etc" / "motd", "hi");
    std::string tar = make_tar(f.base / "empty", {"etc"});
    f.layout.index({f.layout.image({gz_layer(tar)})});
    auto img = f.import();
    REQUIRE_FALSE(img.has_value());
    CHECK(img.error().cls() == FailureClass::usage);
    CHECK(contains(img.error().describe(), "no kernel in the image"));
  }
}

TEST_CASE("a destination that is not empty is refused") {
  Fixture f;
  f.layout.index({f.layout.image({gz_layer(kernel_tar(f.base, "6.1.0-test"))})});
  write(f.dest / "old", "x");
  auto img = f.import();
  REQUIRE_FALSE(img.has_value());
  CHECK(img.error().cls() == FailureClass::usage);
  CHECK(contains(img.error().describe(), "not empty"));
}

TEST_CASE("layers with members outside the tree are refused before anything is unpacked") {
  Fixture f;
  LayerSpec good = gz_layer(kernel_tar(f.base, "6.1.0-test"));
  write(f.base / "t" / "evil", "evil");
  write(f.base / "t" / "sub" / "keep", "x");
  std::string evil;
  SUBCASE("../evil") {
    evil = make_tar(f.base / "t" / "sub", {"-P", "keep", "../evil"});
  }
  SUBCASE("an absolute name") {
    evil = make_tar(f.base / "t" / "sub", {"-P", "keep", (f.base / "t" / "evil").string()});
  }
  f.layout.index({f.layout.image({good, gz_layer(evil)})});
  auto img = f.import();
  REQUIRE_FALSE(img.has_value());
  CHECK(img.error().cls() == FailureClass::usage);
  CHECK(contains(img.error().describe(), "layer 2 of 2"));
  CHECK(contains(img.error().describe(), "refused"));
  f.check_untouched();
}

TEST_CASE("links out of the tree are removed and never written through") {
  Fixture f;
  fs::path outside = f.base / "outside";
  fs::create_directories(outside);
  fs::path t = kernel_tree(f.base, "6.1.0-test");
  fs::path mods = t / "lib" / "modules" / "6.1.0-test";
  fs::create_symlink("/usr/src/linux-headers-6.1.0-test", mods / "build");
  fs::create_symlink("../../../x", mods / "up");
  fs::create_symlink("kernel/x.ko", mods / "x.ko");
  fs::create_symlink(outside, t / "escape");
  std::string first = make_tar(t, {"boot", "lib", "escape"});

  SUBCASE("a later layer's member under the link lands inside root") {
    write(f.base / "t2" / "escape" / "pwned", "x");
    std::string second = make_tar(f.base / "t2", {"escape"});
    f.layout.index({f.layout.image({gz_layer(first), gz_layer(second)})});
    auto img = f.import();
    REQUIRE_MESSAGE(img.has_value(), img.error().describe());
    CHECK(img->dropped_links ==
          std::vector<std::string>{"escape", "lib/modules/6.1.0-test/build", "lib/modules/6.1.0-test/up"});
    CHECK(fs::is_symlink(img->modules_dir / "x.ko"));
    CHECK(fs::is_regular_file(f.dest / "escape" / "pwned"));
    CHECK(fs::is_empty(outside));
  }
  SUBCASE("the same layer's member under the link lands inside root too") {
    write(f.base / "t2" / "escape" / "pwned", "x");
    std::string both = make_tar(t, {"boot", "lib", "escape", "-C", (f.base / "t2").string(), "escape/pwned"});
    f.layout.index({f.layout.image({gz_layer(both)})});
    auto img = f.import();
    REQUIRE_MESSAGE(img.has_value(), img.error().describe());
    CHECK(std::find(img->dropped_links.begin(), img->dropped_links.end(), "escape") !=
          img->dropped_links.end());
    CHECK(fs::is_regular_file(f.dest / "escape" / "pwned"));
    CHECK(fs::is_empty(outside));
  }
  SUBCASE("a layer that writes under a link inside the tree (merged /usr) unpacks") {
    fs::path u = f.base / "usr-tree";
    fs::create_directories(u / "usr" / "share");
    fs::create_symlink("usr/share", u / "share");
    std::string base_layer = make_tar(u, {"usr", "share"});
    fs::path v = f.base / "upper";
    write(v / "share" / "doc" / "x", "doc");
    std::string upper = make_tar(v, {"share/doc/x"});
    f.layout.index({f.layout.image({gz_layer(first), gz_layer(base_layer), gz_layer(upper)})});
    auto img = f.import();
    REQUIRE_MESSAGE(img.has_value(), img.error().describe());
    CHECK(read_file(f.dest / "usr" / "share" / "doc" / "x").value() == "doc");
  }
  SUBCASE("a later layer replaces a directory with a link") {
    write(f.base / "old" / "etc" / "conf" / "a", "a");
    std::string lower = make_tar(f.base / "old", {"etc"});
    fs::create_directories(f.base / "new" / "etc");
    fs::create_symlink("conf.d", f.base / "new" / "etc" / "conf");
    std::string upper = make_tar(f.base / "new", {"etc/conf"});
    f.layout.index({f.layout.image({gz_layer(first), gz_layer(lower), gz_layer(upper)})});
    auto img = f.import();
    REQUIRE_MESSAGE(img.has_value(), img.error().describe());
    CHECK(fs::is_symlink(f.dest / "etc" / "conf"));
    CHECK(fs::read_symlink(f.dest / "etc" / "conf") == "conf.d");
  }
}

TEST_CASE("whiteouts delete lower layers' files") {
  Fixture f;
  fs::path t = kernel_tree(f.base, "6.1.0-test");
  write(t / "lib" / "modules" / "6.1.0-test" / "kernel" / "y.ko", "module y");
  write(t / "etc" / "old", "old");
  std::string first = make_tar(t, {"boot", "lib", "etc"});
  fs::path u = f.base / "upper";
  write(u / "lib" / "modules" / "6.1.0-test" / "kernel" / ".wh.x.ko", "");
  write(u / "etc" / ".wh..wh..opq", "");
  write(u / "etc" / "new", "new");
  std::string second = make_tar(u, {"lib", "etc"});
  f.layout.index({f.layout.image({gz_layer(first), gz_layer(second)})});

  auto img = f.import();
  REQUIRE_MESSAGE(img.has_value(), img.error().describe());
  CHECK_FALSE(fs::exists(img->modules_dir / "kernel" / "x.ko"));
  CHECK_FALSE(fs::exists(img->modules_dir / "kernel" / ".wh.x.ko"));
  CHECK(fs::exists(img->modules_dir / "kernel" / "y.ko"));
  CHECK_FALSE(fs::exists(f.dest / "etc" / "old"));
  CHECK_FALSE(fs::exists(f.dest / "etc" / ".wh..wh..opq"));
  CHECK(read_file(f.dest / "etc" / "new").value() == "new");
}

TEST_CASE("kernel files are found by the usual names") {
  Fixture f;
  fs::path t = f.base / "tree";
  std::vector<std::string> members;
  fs::path want_image;
  std::string want_release;
  bool want_modules = false;
  SUBCASE("ci-kernels: boot/vmlinuz and one module tree") {
    write(t / "boot" / "vmlinuz", "k");
    write(t / "lib" / "modules" / "6.6.30" / "extra" / "bpf_testmod.ko", "m");
    members = {"boot", "lib"};
    want_image = "boot/vmlinuz";
    want_release = "6.6.30";
    want_modules = true;
  }
  SUBCASE("a top-level vmlinux without modules") {
    write(t / "vmlinux", "k");
    members = {"vmlinux"};
    want_image = "vmlinux";
  }
  SUBCASE("boot/bzImage") {
    write(t / "boot" / "bzImage", "k");
    members = {"boot"};
    want_image = "boot/bzImage";
  }
  SUBCASE("usr/lib/modules and a release in the file name") {
    write(t / "boot" / "vmlinux-6.1.0-x", "k");
    write(t / "usr" / "lib" / "modules" / "6.1.0-x" / "modules.dep", "");
    members = {"boot", "usr"};
    want_image = "boot/vmlinux-6.1.0-x";
    want_release = "6.1.0-x";
    want_modules = true;
  }
  SUBCASE("two kernels, one named by the module tree") {
    write(t / "boot" / "vmlinuz-6.1.0-old", "k");
    write(t / "boot" / "vmlinuz-6.1.0-new", "k");
    write(t / "lib" / "modules" / "6.1.0-new" / "modules.dep", "");
    members = {"boot", "lib"};
    want_image = "boot/vmlinuz-6.1.0-new";
    want_release = "6.1.0-new";
    want_modules = true;
  }
  std::string tar = make_tar(t, members);
  f.layout.index({f.layout.image({gz_layer(tar)})});
  auto img = f.import();
  REQUIRE_MESSAGE(img.has_value(), img.error().describe());
  CHECK(img->image == f.dest / want_image);
  CHECK(img->release == want_release);
  CHECK(img->config.empty());
  CHECK(img->modules_dir.empty() != want_modules);
}

TEST_CASE("tar members are read with libarchive, names as they are") {
  Fixture f;
  fs::path t = f.base / "names";
  write(t / "boot" / "vmlinuz", "kernel");
  write(t / "we\"ird\nname", "x");
  write(t / ("long-" + std::string(150, 'n')), "long name");
  write(t / "x\xc3\xa4", "utf-8");
  fs::create_symlink("/etc", t / "abs");
  fs::create_hard_link(t / "boot" / "vmlinuz", t / "hard");
  std::string tar = make_tar(t, {"--sort=name", "."});
  auto m = list_tar_bytes(tar, "layer");
  REQUIRE_MESSAGE(m.has_value(), m.error().describe());
  auto find = [&](std::string_view name) -> const TarMember& {
    for (const auto& x : *m)
      if (x.name == name) return x;
    FAIL("no member " << name);
    return m->front();
  };
  CHECK(find("./boot/").type == 'd');
  CHECK(find("./boot/vmlinuz").type == '-');
  CHECK(find("./we\"ird\nname").type == '-');
  CHECK(find("./long-" + std::string(150, 'n')).type == '-');
  CHECK(find("./x\xc3\xa4").type == '-');
  CHECK(find("./abs").type == 'l');
  CHECK(find("./abs").link == "/etc");
  CHECK(find("./hard").type == 'h');
  CHECK(find("./hard").link == "./boot/vmlinuz");

  for (std::string bad : {std::string("not a tar"), tar.substr(0, 700), tar.substr(0, 512 + 100)}) {
    auto r = list_tar_bytes(bad, "layer 1 of 1");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().cls() == FailureClass::usage);
    CHECK(contains(r.error().describe(), "layer 1 of 1"));
  }
}

TEST_CASE("unsafe tar members") {
  struct Row {
    TarMember m;
    bool safe;
  };
  const Row rows[] = {
      {{'-', "boot/vmlinuz", ""}, true},
      {{'d', "./lib/", ""}, true},
      {{'-', "a..b/c..", ""}, true},
      {{'l', "build", "/usr/src/linux"}, true},  // removed after unpacking, never written through
      {{'l', "up", "../../x"}, true},
      {{'h', "h", "boot/vmlinuz"}, true},
      {{'-', "../evil", ""}, false},
      {{'-', "a/../../evil", ""}, false},
      {{'-', "/abs", ""}, false},
      {{'d', "..", ""}, false},
      {{'-', "", ""}, false},
      {{'h', "h", "/etc/shadow"}, false},
      {{'h', "h", "../x"}, false},
      {{'c', "dev/mem", ""}, false},
      {{'b', "dev/sda", ""}, false},
      {{'p', "fifo", ""}, false},
      {{'V', "volume", ""}, false},
  };
  for (const auto& r : rows) {
    CAPTURE(r.m.name);
    CHECK(unsafe_tar_member(r.m).empty() == r.safe);
  }
}

TEST_CASE("references must carry a digest") {
  auto full = parse_oci_reference("ghcr.io/cilium/ci-kernels:6.1@" + kDigest);
  REQUIRE(full.has_value());
  CHECK(full->name == "ghcr.io/cilium/ci-kernels");
  CHECK(full->tag == "6.1");
  CHECK(full->digest == kDigest);
  CHECK(oci_layout_ref(*full) == "6.1");

  auto port = parse_oci_reference("docker://localhost:5000/k@" + kDigest);
  REQUIRE(port.has_value());
  CHECK(port->name == "localhost:5000/k");
  CHECK(port->tag.empty());
  CHECK(oci_layout_ref(*port) == "sha256-" + std::string(64, 'a'));

  CHECK(skopeo_copy_argv("/usr/bin/skopeo", *full, "/tmp/layout") ==
        std::vector<std::string>{"/usr/bin/skopeo", "copy", "--quiet", "--all", "--preserve-digests",
                                 "docker://ghcr.io/cilium/ci-kernels@" + kDigest, "oci:/tmp/layout:6.1"});

  for (const std::string& bad :
       std::vector<std::string>{"ghcr.io/cilium/ci-kernels:6.1", "ghcr.io/cilium/ci-kernels@sha256:abc",
                                "ghcr.io/x@md5:" + std::string(32, 'a'), "@" + kDigest, "a b@" + kDigest,
                                "repo:bad/tag@" + kDigest, "-repo@" + kDigest, "host:5000:6/x@" + kDigest}) {
    CAPTURE(bad);
    auto r = parse_oci_reference(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().cls() == FailureClass::usage);
  }
}

TEST_CASE("pull_oci refuses an unpinned reference and says how to do without skopeo") {
  auto tmp = TempDir::create("kgate-test-oci-pull");
  REQUIRE(tmp.has_value());
  const fs::path layout = tmp->path() / "layout";

  auto unpinned = pull_oci("ghcr.io/cilium/ci-kernels:6.1", layout, deadline());
  REQUIRE_FALSE(unpinned.has_value());
  CHECK(unpinned.error().cls() == FailureClass::usage);
  CHECK(contains(unpinned.error().describe(), "carries no digest"));

  const std::string ref = "ghcr.io/cilium/ci-kernels:6.1@" + kDigest;
  fs::path bin = tmp->path() / "bin";
  fs::create_directories(bin);
  SUBCASE("skopeo absent") {
    EnvGuard path("PATH", bin.string());
    auto r = pull_oci(ref, layout, deadline());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().cls() == FailureClass::infra);
    const std::string msg = r.error().describe();
    CHECK(contains(msg, "skopeo is not installed"));
    CHECK(contains(msg, "apt-get install skopeo"));
    CHECK(contains(msg, "docker://ghcr.io/cilium/ci-kernels@" + kDigest));
    CHECK(contains(msg, "point an oci-layout source in the catalog at DIR"));
    CHECK(contains(msg, "--kernel FILE"));
  }
  SUBCASE("skopeo fails") {
    write(bin / "skopeo", "#!/bin/sh\necho 'reading manifest: manifest unknown' >&2\nexit 1\n");
    ::chmod((bin / "skopeo").c_str(), 0755);
    EnvGuard path("PATH", bin.string());
    auto r = pull_oci(ref, layout, deadline());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().cls() == FailureClass::infra);
    const std::string msg = r.error().describe();
    CHECK(contains(msg, "manifest unknown"));
    CHECK(contains(msg, "exited with 1"));
    CHECK(contains(msg, "point an oci-layout source in the catalog at DIR"));
  }
  SUBCASE("skopeo succeeds") {
    write(bin / "skopeo", "#!/bin/sh\necho \"$@\" > \"${0%/*}/args\"\n");
    ::chmod((bin / "skopeo").c_str(), 0755);
    EnvGuard path("PATH", bin.string());
    auto r = pull_oci(ref, layout, deadline());
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(*r == layout);
    CHECK(read_file(bin / "args").value() ==
          "copy --quiet --all --preserve-digests docker://ghcr.io/cilium/ci-kernels@" + kDigest +
              " oci:" + layout.string() + ":6.1\n");
  }
}

TEST_CASE("a refresh that fails leaves the cached kernel as it was") {
  Fixture f;
  auto cache = Cache::open(f.base / "cache");
  REQUIRE(cache.has_value());
  LayerSpec layer = gz_layer(kernel_tar(f.base, "6.1.0-test"));
  json man = f.layout.image({layer});
  f.layout.index({named(man, "6.1")});
  CatalogEntry e;
  e.name = "oci-refresh";
  e.arch = "x86_64";
  e.source.type = "oci-layout";
  e.source.path = f.layout.dir();
  e.source.ref = "6.1";
  e.source.digest = man["digest"];
  auto usable = [&](const Result<PreparedKernel>& k) {
    REQUIRE_MESSAGE(k.has_value(), k.error().describe());
    CHECK(read_file(k->boot).value_or("") == "kernel bytes for 6.1.0-test");
    CHECK(read_file(k->modules_dir / "kernel" / "x.ko").value_or("(absent)") == "module x");
  };
  usable(prepare_entry(*cache, e, false, deadline()));
  const std::string record = read_file(cache->entry_path(e.name)).value();

  // The source goes bad (as an interrupted or offline download would): the refresh fails...
  fs::path blob = f.layout.dir() / "blobs" / "sha256" / sha256_hex(layer.blob);
  std::string bytes = read_file(blob).value();
  bytes[bytes.size() / 2] ^= 0x01;
  write(blob, bytes);
  auto refreshed = prepare_entry(*cache, e, true, deadline());
  REQUIRE_FALSE(refreshed.has_value());
  CHECK(refreshed.error().cls() == FailureClass::digest_mismatch);

  // ...and the entry it was refreshing is whole: the next run boots it, modules and all.
  CHECK(read_file(cache->entry_path(e.name)).value() == record);
  usable(prepare_entry(*cache, e, false, deadline()));
  for (const auto& ent : fs::directory_iterator(cache->root() / "trees"))
    CHECK_MESSAGE(ent.path().filename() == man["digest"].get<std::string>().substr(7), ent.path());

  // A tree removed by hand is fetched again rather than booted without its modules.
  fs::remove_all(cache->tree_path(man["digest"].get<std::string>().substr(7)));
  bytes[bytes.size() / 2] ^= 0x01;
  write(blob, bytes);
  usable(prepare_entry(*cache, e, false, deadline()));

  // A refresh that succeeds replaces the tree in one step.
  usable(prepare_entry(*cache, e, true, deadline()));
  usable(prepare_entry(*cache, e, false, deadline()));
}

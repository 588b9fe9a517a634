#include "kernel/oci.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <system_error>

#include "core/arch.hpp"
#include "core/compress.hpp"
#include "core/strings.hpp"
#include "core/subprocess.hpp"
#include "kernel/tar.hpp"

namespace kgate::kernel {
namespace {

using nlohmann::json;

constexpr const char* kRefNameKey = "org.opencontainers.image.ref.name";
constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";

struct LayerType {
  std::string_view media_type;
  Compression compression;
};
constexpr std::array<LayerType, 6> kLayerTypes = {{
    {"application/vnd.oci.image.layer.v1.tar", Compression::none},
    {"application/vnd.oci.image.layer.v1.tar+gzip", Compression::gzip},
    {"application/vnd.oci.image.layer.v1.tar+zstd", Compression::zstd},
    {"application/vnd.docker.image.rootfs.diff.tar", Compression::none},
    {"application/vnd.docker.image.rootfs.diff.tar.gzip", Compression::gzip},
    {"application/vnd.docker.image.rootfs.diff.tar.zstd", Compression::zstd},
}};

// Indexes, manifests and configs are small (registries refuse manifests over 4 MiB); a larger one is
// refused before it is read.
constexpr std::uint64_t kMaxJsonBlob = std::uint64_t{16} << 20;
// A layer is held in memory, compressed and then uncompressed: a kernel with all its modules is far
// below this.
constexpr std::uint64_t kMaxLayerBytes = std::uint64_t{4} << 30;
constexpr int kMaxIndexDepth = 4;

// What a descriptor says about a blob, and the parts of it an index entry adds.
struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<64 hex>", checked
  std::uint64_t size = 0;
  std::string ref_name;                   // org.opencontainers.image.ref.name, if any
  std::string os, architecture, variant;  // platform, if any
};

// Tool output for a message: without surrounding blank space, its last 2000 bytes at most.
std::string trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (s.size() > 2000) s = s.substr(s.size() - 2000);
  return std::string(s);
}

bool is_index(std::string_view t) {
  return t == kOciIndex || t == kDockerList;
}
bool is_manifest(std::string_view t) {
  return t == kOciManifest || t == kDockerManifest;
}

const LayerType* layer_type(std::string_view media_type) {
  for (const auto& t : kLayerTypes) {
    if (t.media_type == media_type) return &t;
  }
  return nullptr;
}

bool is_sha256_digest(std::string_view d) {
  return d.starts_with("sha256:") && is_sha256_hex(d.substr(7));
}

Status check_digest(std::string_view d, const std::string& where) {
  if (is_sha256_digest(d)) return {};
  auto colon = d.find(':');
  if (colon != std::string_view::npos && d.substr(0, colon) != "sha256") {
    return fail(FailureClass::usage, where + ": digest algorithm '" + std::string(d.substr(0, colon)) +
                                         "' is not supported (kgate verifies sha256 only)");
  }
  return fail(FailureClass::usage, where + ": malformed digest '" + std::string(d) +
                                       "' (expected sha256: and 64 lowercase hex digits)");
}

std::string hex_of(std::string_view digest) {
  return std::string(digest.substr(7));
}

const json* member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// An optional string field: empty if absent, an error if present with another type.
Result<std::string> optional_string(const json& obj, const char* key, const std::string& where) {
  const json* v = member(obj, key);
  if (!v) return std::string();
  if (!v->is_string()) return fail(FailureClass::usage, where + ": \"" + key + "\" is not a string");
  return v->get<std::string>();
}

Result<std::string> required_string(const json& obj, const char* key, const std::string& where) {
  auto s = optional_string(obj, key, where);
  if (s && s->empty()) return fail(FailureClass::usage, where + ": \"" + key + "\" is missing or empty");
  return s;
}

// nlohmann_json reports a parse error by exception; it is turned into an error here, at the adapter.
Result<json> parse_json(std::string_view text, const std::string& where) {
  try {
    json doc = json::parse(text);
    if (!doc.is_object()) return fail(FailureClass::usage, where + ": not a JSON object");
    return doc;
  } catch (const json::exception& e) {
    return fail(FailureClass::usage, where + ": malformed JSON: " + e.what());
  }
}

Status check_schema_version(const json& doc, const std::string& where) {
  const json* v = member(doc, "schemaVersion");
  if (!v) return fail(FailureClass::usage, where + ": no schemaVersion");
  if (!v->is_number_integer() || v->get<long long>() != 2) {
    return fail(FailureClass::usage, where + ": schemaVersion is " + v->dump() + ", kgate reads only 2");
  }
  return {};
}

// A document that names its own media type must name the one its descriptor gave.
Status check_media_type(const json& doc, std::string_view expected, const std::string& where) {
  auto own = optional_string(doc, "mediaType", where);
  if (!own) return std::unexpected(own.error());
  if (!own->empty() && *own != expected) {
    return fail(FailureClass::usage,
                where + ": its mediaType is " + *own + " but its descriptor says " + std::string(expected));
  }
  return {};
}

Result<Descriptor> parse_descriptor(const json& j, const std::string& where) {
  if (!j.is_object()) return fail(FailureClass::usage, where + ": descriptor is not a JSON object");
  Descriptor d;
  auto media_type = required_string(j, "mediaType", where);
  if (!media_type) return std::unexpected(media_type.error());
  d.media_type = std::move(*media_type);
  auto digest = required_string(j, "digest", where);
  if (!digest) return std::unexpected(digest.error());
  if (auto s = check_digest(*digest, where); !s) return std::unexpected(s.error());
  d.digest = std::move(*digest);
  const json* size = member(j, "size");
  if (!size || !size->is_number_unsigned()) {
    return fail(FailureClass::usage, where + ": \"size\" is missing or not a non-negative integer");
  }
  d.size = size->get<std::uint64_t>();
  if (const json* ann = member(j, "annotations")) {
    if (!ann->is_object()) return fail(FailureClass::usage, where + ": \"annotations\" is not an object");
    auto ref = optional_string(*ann, kRefNameKey, where + " annotations");
    if (!ref) return std::unexpected(ref.error());
    d.ref_name = std::move(*ref);
  }
  if (const json* platform = member(j, "platform")) {
    if (!platform->is_object()) return fail(FailureClass::usage, where + ": \"platform\" is not an object");
    for (auto [key, field] : {std::pair{"os", &d.os}, std::pair{"architecture", &d.architecture},
                              std::pair{"variant", &d.variant}}) {
      auto v = optional_string(*platform, key, where + " platform");
      if (!v) return std::unexpected(v.error());
      *field = std::move(*v);
    }
  }
  return d;
}

// Reads a blob after checking its size against the descriptor, and returns its bytes only when their
// sha256 is the descriptor's digest. `what` names the blob's role ("manifest", "layer 1 of 2").
Result<std::string> read_blob(const fs::path& layout, const Descriptor& d, const std::string& what,
                              std::uint64_t max_size) {
  const std::string name = what + " " + d.digest;
  if (d.size > max_size) {
    return fail(FailureClass::usage, name + ": its descriptor gives " + std::to_string(d.size) +
                                         " bytes, more than kgate reads (" + std::to_string(max_size) + ")");
  }
  const fs::path path = layout / "blobs" / "sha256" / hex_of(d.digest);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return fail(FailureClass::usage, name + " is missing from the layout: " + path.string());
    return fail_errno("stat " + path.string(), errno);
  }
  if (!S_ISREG(st.st_mode)) return fail(FailureClass::usage, name + ": " + path.string() + " is not a file");
  const auto actual_size = static_cast<std::uint64_t>(st.st_size);
  if (actual_size != d.size) {
    std::string actual = "not hashed: too large";
    if (actual_size <= max_size) {
      auto sha = sha256_file(path);
      if (!sha) return std::unexpected(sha.error());
      actual = "sha256:" + *sha;
    }
    return fail(FailureClass::digest_mismatch, name + ": the blob is " + std::to_string(actual_size) +
                                                   " bytes, its descriptor says " + std::to_string(d.size) +
                                                   " (actual digest " + actual + ", " + path.string() + ")");
  }
  auto bytes = read_file(path);
  if (!bytes) return std::unexpected(bytes.error());
  // Hash the bytes that will be used, not the file, so that a change after the check cannot slip in.
  const std::string actual = "sha256:" + sha256_hex(*bytes);
  if (bytes->size() != d.size || actual != d.digest) {
    return fail(FailureClass::digest_mismatch, name + ": content has digest " + actual + " (" +
                                                   std::to_string(bytes->size()) + " bytes), expected " +
                                                   d.digest + " (" + path.string() + ")");
  }
  return bytes;
}

// oci-layout and index.json, which no digest names: read whole, but only when small.
Result<std::string> read_layout_file(const fs::path& layout, const char* name) {
  const fs::path path = layout / name;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return fail(FailureClass::usage,
                  layout.string() + " is not an OCI image layout: it has no " + name + " file");
    }
    return fail_errno("stat " + path.string(), errno);
  }
  if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) > kMaxJsonBlob) {
    return fail(FailureClass::usage,
                path.string() + " is not a file of at most " + std::to_string(kMaxJsonBlob) + " bytes");
  }
  return read_file(path);
}

Result<json> read_json_blob(const fs::path& layout, const Descriptor& d, const std::string& what) {
  auto bytes = read_blob(layout, d, what, kMaxJsonBlob);
  if (!bytes) return std::unexpected(bytes.error());
  return parse_json(*bytes, what + " " + d.digest);
}

std::string platform_name(const Descriptor& d) {
  std::string s = (d.os.empty() ? "?" : d.os) + "/" + (d.architecture.empty() ? "?" : d.architecture);
  if (!d.variant.empty()) s += "/" + d.variant;
  return s;
}

// The index entry for linux/<goarch>. arm64 entries may carry the variant v8 or none.
Result<Descriptor> choose_platform(const json& index, std::string_view goarch, const std::string& where) {
  const json* manifests = member(index, "manifests");
  if (!manifests || !manifests->is_array())
    return fail(FailureClass::usage, where + ": no \"manifests\" array");
  std::vector<Descriptor> matches;
  std::string seen;
  for (std::size_t i = 0; i < manifests->size(); ++i) {
    auto d = parse_descriptor((*manifests)[i], where + " manifests[" + std::to_string(i) + "]");
    if (!d) return std::unexpected(d.error());
    seen += (seen.empty() ? "" : ", ") + platform_name(*d);
    if (d->os == "linux" && d->architecture == goarch) matches.push_back(std::move(*d));
  }
  if (matches.size() == 1) return matches.front();
  if (matches.empty()) {
    return fail(FailureClass::usage, where + " has no linux/" + std::string(goarch) + " manifest (it has " +
                                         (seen.empty() ? "none" : seen) + ")");
  }
  return fail(FailureClass::usage, where + " has " + std::to_string(matches.size()) + " linux/" +
                                       std::string(goarch) + " manifests");
}

Result<Descriptor> choose_entry(const json& index, std::string_view ref, const std::string& where) {
  const json* manifests = member(index, "manifests");
  if (!manifests || !manifests->is_array())
    return fail(FailureClass::usage, where + ": no \"manifests\" array");
  std::vector<Descriptor> all;
  for (std::size_t i = 0; i < manifests->size(); ++i) {
    auto d = parse_descriptor((*manifests)[i], where + " manifests[" + std::to_string(i) + "]");
    if (!d) return std::unexpected(d.error());
    all.push_back(std::move(*d));
  }
  std::string names;
  for (const auto& d : all)
    names += (names.empty() ? "" : ", ") + (d.ref_name.empty() ? "(unnamed)" : d.ref_name);
  if (ref.empty()) {
    if (all.size() == 1) return all.front();
    return fail(FailureClass::usage, where + " lists " + std::to_string(all.size()) +
                                         " images; name one of them: " + (names.empty() ? "(none)" : names));
  }
  std::vector<const Descriptor*> named;
  for (const auto& d : all) {
    if (d.ref_name == ref) named.push_back(&d);
  }
  if (named.size() == 1) return *named.front();
  if (named.empty()) {
    return fail(FailureClass::usage, where + " has no image named '" + std::string(ref) +
                                         "' (it has: " + (names.empty() ? "none" : names) + ")");
  }
  return fail(FailureClass::usage,
              where + " names " + std::to_string(named.size()) + " images '" + std::string(ref) + "'");
}

// Go's (and so OCI's) arch names are Debian's.
std::string_view goarch_of(std::string_view arch) {
  auto a = parse_arch(arch);
  return a ? debian_arch(*a) : std::string_view();
}

// What the manifest and its config say about the layers.
struct Layer {
  Descriptor desc;
  const LayerType* type = nullptr;
  std::string diff_id;  // sha256 of the uncompressed tar, from the config; empty if it gives none
};

struct Manifest {
  std::vector<Layer> layers;
  ImageConfig config;
};

Result<std::vector<std::string>> optional_strings(const json& obj, const char* key,
                                                  const std::string& where) {
  std::vector<std::string> out;
  const json* v = member(obj, key);
  if (!v || v->is_null()) return out;
  if (!v->is_array())
    return fail(FailureClass::usage, where + ": \"" + key + "\" is not an array of strings");
  for (const json& e : *v) {
    if (!e.is_string())
      return fail(FailureClass::usage, where + ": \"" + key + "\" holds something other than a string");
    out.push_back(e.get<std::string>());
  }
  return out;
}

// The parts of an image config's "config" a container runtime starts the image's process with.
Result<ImageConfig> read_image_config(const json& cfg, const std::string& where) {
  ImageConfig out;
  const json* c = member(cfg, "config");
  if (!c || c->is_null()) return out;
  if (!c->is_object()) return fail(FailureClass::usage, where + ": \"config\" is not an object");
  const std::string cw = where + " config";
  auto env = optional_strings(*c, "Env", cw);
  if (!env) return std::unexpected(env.error());
  auto entrypoint = optional_strings(*c, "Entrypoint", cw);
  if (!entrypoint) return std::unexpected(entrypoint.error());
  auto cmd = optional_strings(*c, "Cmd", cw);
  if (!cmd) return std::unexpected(cmd.error());
  auto dir = optional_string(*c, "WorkingDir", cw);
  if (!dir) return std::unexpected(dir.error());
  auto user = optional_string(*c, "User", cw);
  if (!user) return std::unexpected(user.error());
  out.env = std::move(*env);
  out.entrypoint = std::move(*entrypoint);
  out.cmd = std::move(*cmd);
  out.working_dir = std::move(*dir);
  out.user = std::move(*user);
  return out;
}

// Reads the verified manifest and config, checks the config's platform, and returns the layers,
// every media type among them known, and what the config says to start the image with.
Result<Manifest> read_manifest(const fs::path& layout, const Descriptor& man, std::string_view goarch) {
  const std::string where = "manifest " + man.digest;
  auto doc = read_json_blob(layout, man, "manifest");
  if (!doc) return std::unexpected(doc.error());
  if (auto s = check_schema_version(*doc, where); !s) return std::unexpected(s.error());
  if (auto s = check_media_type(*doc, man.media_type, where); !s) return std::unexpected(s.error());

  const json* config_json = member(*doc, "config");
  if (!config_json) return fail(FailureClass::usage, where + ": no \"config\"");
  auto config = parse_descriptor(*config_json, where + " config");
  if (!config) return std::unexpected(config.error());
  if (config->media_type != kOciConfig && config->media_type != kDockerConfig) {
    return fail(FailureClass::usage, where + ": config media type " + config->media_type +
                                         " is not an image config (" + std::string(kOciConfig) + " or " +
                                         std::string(kDockerConfig) + ")");
  }

  const json* layers_json = member(*doc, "layers");
  if (!layers_json || !layers_json->is_array())
    return fail(FailureClass::usage, where + ": no \"layers\" array");
  if (layers_json->empty()) return fail(FailureClass::usage, where + " has no layers");
  std::vector<Layer> layers;
  for (std::size_t i = 0; i < layers_json->size(); ++i) {
    auto d = parse_descriptor((*layers_json)[i], where + " layers[" + std::to_string(i) + "]");
    if (!d) return std::unexpected(d.error());
    const LayerType* type = layer_type(d->media_type);
    if (!type) {
      return fail(FailureClass::usage, where + " layer " + d->digest + ": media type " + d->media_type +
                                           " is not a tar layer kgate unpacks (tar, tar+gzip, tar+zstd)");
    }
    layers.push_back({std::move(*d), type, {}});
  }

  const std::string cwhere = "config " + config->digest;
  auto cfg = read_json_blob(layout, *config, "config");
  if (!cfg) return std::unexpected(cfg.error());
  auto os = optional_string(*cfg, "os", cwhere);
  if (!os) return std::unexpected(os.error());
  auto architecture = optional_string(*cfg, "architecture", cwhere);
  if (!architecture) return std::unexpected(architecture.error());
  if ((!os->empty() && *os != "linux") || (!architecture->empty() && *architecture != goarch)) {
    return fail(FailureClass::usage, cwhere + ": the image is for " + (os->empty() ? "?" : *os) + "/" +
                                         (architecture->empty() ? "?" : *architecture) + ", not linux/" +
                                         std::string(goarch));
  }
  if (const json* rootfs = member(*cfg, "rootfs")) {
    if (const json* diff_ids = member(*rootfs, "diff_ids")) {
      if (!diff_ids->is_array() || diff_ids->size() != layers.size()) {
        return fail(FailureClass::usage, cwhere +
                                             ": rootfs.diff_ids does not list one digest for each of the " +
                                             std::to_string(layers.size()) + " layers");
      }
      for (std::size_t i = 0; i < layers.size(); ++i) {
        const json& id = (*diff_ids)[i];
        const std::string idw = cwhere + " rootfs.diff_ids[" + std::to_string(i) + "]";
        if (!id.is_string()) return fail(FailureClass::usage, idw + " is not a string");
        if (auto s = check_digest(id.get<std::string>(), idw); !s) return std::unexpected(s.error());
        layers[i].diff_id = id.get<std::string>();
      }
    }
  }
  auto image_config = read_image_config(*cfg, cwhere);
  if (!image_config) return std::unexpected(image_config.error());
  return Manifest{std::move(layers), std::move(*image_config)};
}

std::string layer_label(std::size_t i, std::size_t n) {
  return "layer " + std::to_string(i + 1) + " of " + std::to_string(n);
}

// Reads, verifies and decompresses one layer; returns the tar bytes.
Result<std::string> load_layer(const fs::path& layout, const Layer& layer, const std::string& label) {
  const std::string name = label + " " + layer.desc.digest;
  auto blob = read_blob(layout, layer.desc, label, kMaxLayerBytes);
  if (!blob) return std::unexpected(blob.error());
  const Compression found = detect_compression(*blob);
  if (found != layer.type->compression) {
    return fail(FailureClass::usage, name + ": its media type " + layer.desc.media_type + " promises " +
                                         std::string(compression_name(layer.type->compression)) +
                                         " data, the blob holds " + std::string(compression_name(found)));
  }
  std::string tar;
  if (found == Compression::none) {
    tar = std::move(*blob);
  } else {
    auto out = decompress(*blob, kMaxLayerBytes);
    if (!out) return std::unexpected(std::move(out.error()).context(name));
    tar = std::move(*out);
  }
  // kgate::decompress decodes the first gzip member or zstd frame only; the config's diff_id, the
  // digest of the whole uncompressed tar, catches a layer that has more.
  if (!layer.diff_id.empty()) {
    const std::string actual = "sha256:" + sha256_hex(tar);
    if (actual != layer.diff_id) {
      return fail(FailureClass::digest_mismatch,
                  name + ": uncompressed content has digest " + actual + ", the config's diff_id is " +
                      layer.diff_id + " (kgate decodes only the first gzip member or zstd frame of a layer)");
    }
  }
  return tar;
}

// A member's name as extract_tar reports the links it drops: "./a/b/" -> "a/b".
std::string normal_member_name(const std::string& name) {
  std::string out = fs::path(name).lexically_normal().generic_string();
  while (out.ends_with('/')) out.pop_back();
  return out;
}

// Whiteouts (.wh.NAME deletes NAME of a lower layer, .wh..wh..opq empties its directory) are applied
// before the layer that holds them is unpacked: by the image spec they hide only lower layers' files.
struct Whiteout {
  fs::path dir;      // relative to root
  std::string name;  // empty for an opaque whiteout
};

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaque = ".wh..wh..opq";

Result<std::vector<Whiteout>> whiteouts_of(const std::vector<TarMember>& members, const std::string& where) {
  std::vector<Whiteout> out;
  for (const auto& m : members) {
    std::string_view name = m.name;
    while (name.ends_with('/')) name.remove_suffix(1);
    auto slash = name.rfind('/');
    std::string_view base = slash == std::string_view::npos ? name : name.substr(slash + 1);
    if (!base.starts_with(kWhiteoutPrefix) || m.type == 'd') continue;
    fs::path dir(slash == std::string_view::npos ? std::string_view{} : name.substr(0, slash));
    if (base == kOpaque) {
      out.push_back({dir, {}});
      continue;
    }
    std::string_view hidden = base.substr(kWhiteoutPrefix.size());
    if (hidden.empty() || hidden == "." || hidden == "..") {
      return fail(FailureClass::usage, where + ": malformed whiteout member \"" + m.name + "\"");
    }
    out.push_back({dir, std::string(hidden)});
  }
  return out;
}

Status apply_whiteouts(const fs::path& root, const std::vector<Whiteout>& whiteouts) {
  std::error_code ec;
  for (const auto& w : whiteouts) {
    // Every link left in root stays inside it (see drop_leaving_links), so these paths do too.
    const fs::path dir = root / w.dir;
    if (!w.name.empty()) {
      fs::remove_all(dir / w.name, ec);
      if (ec) return fail_errno("whiteout: remove " + (dir / w.name).string(), ec.value());
      continue;
    }
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> children;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      children.push_back(it->path());
    if (ec) return fail_errno("opaque whiteout: list " + dir.string(), ec.value());
    for (const auto& c : children) {
      fs::remove_all(c, ec);
      if (ec) return fail_errno("opaque whiteout: remove " + c.string(), ec.value());
    }
  }
  return {};
}

std::vector<std::string> sorted_names(const fs::path& dir, bool dirs) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code tec;
    bool ok = dirs ? it->is_directory(tec) : it->is_regular_file(tec);
    if (ok) out.push_back(it->path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool has_prefix_name(std::string_view name, std::string_view prefix) {
  return name == prefix || (name.starts_with(prefix) && name[prefix.size()] == '-');
}

std::string suffix_of(std::string_view name) {
  auto dash = name.find('-');
  return dash == std::string_view::npos ? std::string() : std::string(name.substr(dash + 1));
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Finds the kernel file, its config and its module tree in an unpacked image.
Status find_kernel(OciImage& img) {
  const fs::path& root = img.root;
  fs::path modules_base = root / "lib" / "modules";
  std::error_code ec;
  if (!fs::is_directory(modules_base, ec)) modules_base = root / "usr" / "lib" / "modules";
  const std::vector<std::string> releases = sorted_names(modules_base, true);

  const fs::path boot = root / "boot";
  const std::vector<std::string> boot_files = sorted_names(boot, false);
  std::vector<fs::path> candidates;
  for (std::string_view prefix : {"vmlinuz", "vmlinux"}) {
    for (const auto& f : boot_files) {
      if (has_prefix_name(f, prefix)) candidates.push_back(boot / f);
    }
    if (!candidates.empty()) break;
  }
  if (candidates.empty() && fs::is_regular_file(boot / "bzImage", ec)) candidates.push_back(boot / "bzImage");
  if (candidates.empty()) {
    for (const char* top : {"vmlinuz", "vmlinux", "bzImage"}) {
      if (fs::is_regular_file(root / top, ec)) {
        candidates.push_back(root / top);
        break;
      }
    }
  }
  if (candidates.empty()) {
    return fail(FailureClass::usage,
                "no kernel in the image: looked for boot/vmlinuz*, boot/vmlinux*, "
                "boot/bzImage and a top-level vmlinuz, vmlinux or bzImage");
  }
  if (candidates.size() > 1) {
    // Several kernels: the one whose suffix names the only module tree wins.
    std::vector<fs::path> matching;
    for (const auto& c : candidates) {
      std::string s = suffix_of(c.filename().string());
      if (!s.empty() && std::find(releases.begin(), releases.end(), s) != releases.end())
        matching.push_back(c);
    }
    if (matching.size() != 1) {
      std::vector<std::string> names;
      for (const auto& c : candidates) names.push_back(c.lexically_relative(root).string());
      return fail(FailureClass::usage, "the image holds several kernels (" + join(names) +
                                           ") and its module trees do not tell which to boot");
    }
    candidates = matching;
  }
  img.image = candidates.front();

  const std::string suffix = suffix_of(img.image.filename().string());
  if (!suffix.empty() && std::find(releases.begin(), releases.end(), suffix) != releases.end()) {
    img.release = suffix;
  } else if (releases.size() == 1) {
    img.release = releases.front();
  } else if (releases.empty()) {
    img.release = suffix;
  } else {
    return fail(FailureClass::usage,
                "the image holds several module trees (" + join(releases) + ") and none is " +
                    (suffix.empty() ? "named by the kernel file" : "for release " + suffix));
  }
  if (!img.release.empty() && std::find(releases.begin(), releases.end(), img.release) != releases.end()) {
    img.modules_dir = modules_base / img.release;
  }

  std::vector<std::string> configs;
  for (const auto& f : boot_files) {
    if (has_prefix_name(f, "config")) configs.push_back(f);
  }
  for (const auto& want : {img.release, suffix}) {
    if (want.empty()) continue;
    if (std::find(configs.begin(), configs.end(), "config-" + want) != configs.end()) {
      img.config = boot / ("config-" + want);
      return {};
    }
  }
  if (configs.size() == 1) img.config = boot / configs.front();
  return {};
}

Status prepare_dest(const fs::path& dest) {
  std::error_code ec;
  auto st = fs::symlink_status(dest, ec);
  if (fs::exists(st)) {
    if (!fs::is_directory(st))
      return fail(FailureClass::usage, "destination " + dest.string() + " is not a directory");
    const bool empty = fs::is_empty(dest, ec);
    if (ec) return fail_errno("read " + dest.string(), ec.value());
    if (!empty) return fail(FailureClass::usage, "destination " + dest.string() + " is not empty");
    return {};
  }
  return make_dirs(dest);
}

// The image the layout names, its manifest and its layers, every JSON blob on the way verified.
struct Resolved {
  OciImage img;
  std::vector<Layer> layers;
};

Result<Resolved> resolve(const fs::path& layout, std::string_view ref, std::string_view pinned,
                         std::string_view arch) {
  const std::string_view goarch = goarch_of(arch);
  if (goarch.empty()) {
    return fail(FailureClass::usage,
                "arch '" + std::string(arch) + "' has no OCI platform (x86_64 or arm64)");
  }
  if (!pinned.empty()) {
    if (auto s = check_digest(pinned, "pinned digest"); !s) return std::unexpected(s.error());
  }

  // oci-layout and index.json are the layout's root: nothing names their digests, which is why the pin
  // is checked against the index.json entry, the first digest a registry reports.
  auto marker = read_layout_file(layout, "oci-layout");
  if (!marker) return std::unexpected(marker.error());
  auto marker_doc = parse_json(*marker, "oci-layout");
  if (!marker_doc) return std::unexpected(marker_doc.error());
  auto version = required_string(*marker_doc, "imageLayoutVersion", "oci-layout");
  if (!version) return std::unexpected(version.error());
  if (*version != "1.0.0") {
    return fail(FailureClass::usage, "oci-layout: imageLayoutVersion is " + *version + ", kgate reads 1.0.0");
  }
  auto index_text = read_layout_file(layout, "index.json");
  if (!index_text) return std::unexpected(index_text.error());
  auto index = parse_json(*index_text, "index.json");
  if (!index) return std::unexpected(index.error());
  if (auto s = check_schema_version(*index, "index.json"); !s) return std::unexpected(s.error());
  auto top = choose_entry(*index, ref, "index.json");
  if (!top) return std::unexpected(top.error());

  Resolved out;
  OciImage& img = out.img;
  img.pinned_digest = top->digest;
  if (!pinned.empty() && top->digest != pinned) {
    return fail(FailureClass::digest_mismatch,
                "image " + (ref.empty() ? std::string("in index.json") : "'" + std::string(ref) + "'") +
                    " is " + top->digest + ", pinned " + std::string(pinned) +
                    " (a layout written by skopeo without --all, or converted from Docker media types, has "
                    "other digests than the registry's)");
  }

  Descriptor man = *top;
  for (int depth = 0;; ++depth) {
    if (is_manifest(man.media_type)) break;
    if (!is_index(man.media_type)) {
      return fail(FailureClass::usage, "image " + man.digest + ": media type " + man.media_type +
                                           " is neither an image index nor an image manifest");
    }
    if (depth == kMaxIndexDepth) {
      return fail(FailureClass::usage,
                  "image indexes nested more than " + std::to_string(kMaxIndexDepth) + " deep");
    }
    const std::string where = "image index " + man.digest;
    auto doc = read_json_blob(layout, man, "image index");
    if (!doc) return std::unexpected(doc.error());
    if (auto s = check_schema_version(*doc, where); !s) return std::unexpected(s.error());
    if (auto s = check_media_type(*doc, man.media_type, where); !s) return std::unexpected(s.error());
    auto next = choose_platform(*doc, goarch, where);
    if (!next) return std::unexpected(next.error());
    man = std::move(*next);
  }
  img.manifest_digest = man.digest;

  auto manifest = read_manifest(layout, man, goarch);
  if (!manifest) return std::unexpected(manifest.error());
  out.layers = std::move(manifest->layers);
  img.image_config = std::move(manifest->config);
  for (const auto& l : out.layers) img.layer_digests.push_back(l.desc.digest);
  return out;
}

Status unpack(const fs::path& layout, Resolved& r, const fs::path& dest, const Deadline& deadline) {
  OciImage& img = r.img;
  const std::vector<Layer>& layers = r.layers;
  if (auto s = prepare_dest(dest); !s) return s;
  img.root = dest;

  // Each layer is verified, decompressed and written to a private work directory next to dest, and every
  // member list is checked, before the first layer is unpacked.
  fs::path parent = dest.parent_path();
  auto work = TempDir::create(".kgate-oci", parent.empty() ? fs::path(".") : parent);
  if (!work) return std::unexpected(work.error());
  const std::size_t n = layers.size();
  std::vector<fs::path> tars;
  for (std::size_t i = 0; i < n; ++i) {
    auto tar = load_layer(layout, layers[i], layer_label(i, n));
    if (!tar) return std::unexpected(tar.error());
    fs::path p = absolute_path(work->path() / ("layer-" + std::to_string(i) + ".tar"));
    if (auto s = write_file_atomic(p, *tar); !s) return s;
    tars.push_back(std::move(p));
  }
  std::vector<std::vector<Whiteout>> whiteouts;
  std::vector<std::map<std::string, std::string>> link_targets;  // per layer: symbolic link -> target
  for (std::size_t i = 0; i < n; ++i) {
    const std::string name = layer_label(i, n) + " " + layers[i].desc.digest;
    auto members = list_tar(tars[i], name, deadline);
    if (!members) return std::unexpected(members.error());
    std::map<std::string, std::string> targets;
    for (const auto& m : *members) {
      if (std::string why = unsafe_tar_member(m); !why.empty())
        return fail(FailureClass::usage, name + ": member \"" + m.name + "\" is " + why + "; refused");
      if (m.type == 'l') targets[normal_member_name(m.name)] = m.link;
    }
    auto w = whiteouts_of(*members, name);
    if (!w) return std::unexpected(w.error());
    whiteouts.push_back(std::move(*w));
    link_targets.push_back(std::move(targets));
  }
  const fs::path abs_dest = absolute_path(dest);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string name = layer_label(i, n) + " " + layers[i].desc.digest;
    if (auto s = apply_whiteouts(abs_dest, whiteouts[i]); !s)
      return std::unexpected(std::move(s.error()).context(name));
    for (const auto& w : whiteouts[i]) {
      // A whiteout hides a dropped link of a lower layer too.
      const std::string hidden = normal_member_name((w.dir / w.name).generic_string());
      std::erase_if(img.dropped_link_targets, [&](const auto& kv) {
        if (w.name.empty()) return hidden.empty() || hidden == "." || kv.first.starts_with(hidden + "/");
        return kv.first == hidden || kv.first.starts_with(hidden + "/");
      });
    }
    auto dropped = extract_tar(tars[i], abs_dest, name, deadline);
    if (!dropped) return std::unexpected(dropped.error());
    // A name a higher layer writes again is no longer a dropped link.
    std::erase_if(img.dropped_link_targets, [&](const auto& kv) {
      std::error_code ec;
      return fs::exists(fs::symlink_status(abs_dest / kv.first, ec));
    });
    for (auto& d : *dropped) {
      img.dropped_link_targets[d] = link_targets[i][d];
      if (std::find(img.dropped_links.begin(), img.dropped_links.end(), d) == img.dropped_links.end()) {
        img.dropped_links.push_back(std::move(d));
      }
    }
  }
  std::sort(img.dropped_links.begin(), img.dropped_links.end());
  return {};
}

Result<OciImage> import(const fs::path& layout, std::string_view ref, std::string_view pinned,
                        std::string_view arch, const fs::path& dest, const Deadline& deadline) {
  auto r = resolve(layout, ref, pinned, arch);
  if (!r) return std::unexpected(r.error());
  if (auto s = unpack(layout, *r, dest, deadline); !s) return std::unexpected(s.error());
  if (auto s = find_kernel(r->img); !s)
    return std::unexpected(std::move(s.error()).context("manifest " + r->img.manifest_digest));
  return std::move(r->img);
}

bool is_ref_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '/' || c == ':';
}

bool is_tag(std::string_view t) {
  if (t.empty() || t.size() > 128 || t.front() == '.' || t.front() == '-') return false;
  return std::all_of(t.begin(), t.end(), [](char c) { return is_ref_name_char(c) && c != '/' && c != ':'; });
}

}  // namespace

Result<OciImage> import_oci_layout(const fs::path& layout, std::string_view ref, std::string_view pinned,
                                   std::string_view arch, const fs::path& dest, const Deadline& deadline) {
  return with_context(
      import(layout, ref, pinned, arch, dest, deadline),
      "import OCI layout " + layout.string() + (ref.empty() ? "" : " (" + std::string(ref) + ")"));
}

Result<OciImage> unpack_oci_layout(const fs::path& layout, std::string_view ref, std::string_view pinned,
                                   std::string_view arch, const fs::path& dest, const Deadline& deadline) {
  auto r = resolve(layout, ref, pinned, arch);
  Status s = r ? unpack(layout, *r, dest, deadline) : Status(std::unexpected(r.error()));
  if (!s)
    return std::unexpected(std::move(s.error()).context("unpack OCI layout " + layout.string() +
                                                        (ref.empty() ? "" : " (" + std::string(ref) + ")")));
  return std::move(r->img);
}

Result<OciImage> verify_oci_layout(const fs::path& layout, std::string_view ref, std::string_view pinned,
                                   std::string_view arch) {
  const std::string where =
      "verify OCI layout " + layout.string() + (ref.empty() ? "" : " (" + std::string(ref) + ")");
  auto r = resolve(layout, ref, pinned, arch);
  if (!r) return std::unexpected(std::move(r.error()).context(where));
  const std::size_t n = r->layers.size();
  for (std::size_t i = 0; i < n; ++i) {
    const Descriptor& d = r->layers[i].desc;
    const std::string name = layer_label(i, n) + " " + d.digest;
    const fs::path path = layout / "blobs" / "sha256" / hex_of(d.digest);
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec)
      return fail(FailureClass::usage, where + ": " + name + " is missing from the layout: " + path.string());
    auto sha = sha256_file(path);
    if (!sha) return std::unexpected(sha.error());
    if (size != d.size || "sha256:" + *sha != d.digest)
      return fail(FailureClass::digest_mismatch, where + ": " + name + ": content has digest sha256:" + *sha +
                                                     " (" + std::to_string(size) + " bytes), expected " +
                                                     d.digest + " (" + path.string() + ")");
  }
  return std::move(r->img);
}

Result<OciReference> parse_oci_reference(std::string_view reference) {
  const std::string where = "image reference '" + std::string(reference) + "'";
  std::string_view r = reference;
  if (r.starts_with("docker://")) r.remove_prefix(9);
  auto at = r.rfind('@');
  if (at == std::string_view::npos) {
    return fail(FailureClass::usage,
                where +
                    " carries no digest (a tag can move): pin it as NAME:TAG@sha256:<hex> "
                    "or NAME@sha256:<hex>");
  }
  OciReference out;
  out.digest = std::string(r.substr(at + 1));
  if (auto s = check_digest(out.digest, where); !s) return std::unexpected(s.error());
  std::string_view name = r.substr(0, at);
  auto slash = name.rfind('/');
  auto colon = name.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    out.tag = std::string(name.substr(colon + 1));
    name = name.substr(0, colon);
    if (!is_tag(out.tag)) return fail(FailureClass::usage, where + ": malformed tag '" + out.tag + "'");
  }
  // A ':' may only introduce the registry's port, in the first component.
  const std::string_view host = name.substr(0, name.find('/'));
  const auto port_colon = host.find(':');
  const bool port_ok =
      port_colon == std::string_view::npos ||
      (name.find(':', port_colon + 1) == std::string_view::npos && port_colon + 1 < host.size() &&
       std::all_of(host.begin() + static_cast<std::ptrdiff_t>(port_colon) + 1, host.end(),
                   [](char c) { return c >= '0' && c <= '9'; }));
  if (name.empty() || name.front() == '-' || name.front() == '/' || name.back() == '/' || !port_ok ||
      name.find("//") != std::string_view::npos || !std::all_of(name.begin(), name.end(), is_ref_name_char)) {
    return fail(FailureClass::usage, where + ": malformed repository name '" + std::string(name) + "'");
  }
  out.name = std::string(name);
  return out;
}

std::string oci_layout_ref(const OciReference& ref) {
  return ref.tag.empty() ? "sha256-" + hex_of(ref.digest) : ref.tag;
}

std::vector<std::string> skopeo_copy_argv(const fs::path& skopeo, const OciReference& ref,
                                          const fs::path& layout_dir) {
  return {skopeo.string(),
          "copy",
          "--quiet",
          "--all",
          "--preserve-digests",
          "docker://" + ref.name + "@" + ref.digest,
          "oci:" + layout_dir.string() + ":" + oci_layout_ref(ref)};
}

Result<fs::path> pull_oci(std::string_view reference, const fs::path& dest_layout, const Deadline& deadline) {
  auto ref = parse_oci_reference(reference);
  if (!ref) return std::unexpected(std::move(ref.error()).context("pull"));
  const std::string source = "docker://" + ref->name + "@" + ref->digest;
  if (dest_layout.string().find(':') != std::string::npos) {
    return fail(FailureClass::usage, "pull " + source + ": the layout directory " + dest_layout.string() +
                                         " contains ':', which skopeo's oci: transport cannot name");
  }
  const std::string by_hand = "fetch it elsewhere with `skopeo copy --all " + source +
                              " oci:DIR:" + oci_layout_ref(*ref) +
                              "` and point an oci-layout source in the catalog at DIR, or pass --kernel FILE";
  const fs::path skopeo = find_program("skopeo");
  if (skopeo.empty()) {
    return fail(FailureClass::infra, "pull " + source +
                                         ": skopeo is not installed (not found on PATH); install it with "
                                         "`apt-get install skopeo`, or " +
                                         by_hand);
  }
  if (auto s = make_dirs(dest_layout); !s)
    return std::unexpected(std::move(s.error()).context("pull " + source));
  auto cap = run_capture(skopeo_copy_argv(skopeo, *ref, dest_layout), deadline);
  if (!cap) {
    Error e = std::move(cap.error());
    if (e.cls() == FailureClass::interrupted) return std::unexpected(std::move(e));
    // A registry that does not answer in time is an infrastructure failure, not a guest timeout.
    return std::unexpected(
        std::move(e).reclass(FailureClass::infra).context("pull " + source + " (" + by_hand + ")"));
  }
  if (cap->status != 0) {
    std::string msg = trimmed(cap->err.empty() ? cap->out : cap->err);
    return fail(FailureClass::infra, "pull " + source + ": skopeo " + describe_status(cap->status) + ": " +
                                         (msg.empty() ? "(no message)" : msg) + "; " + by_hand);
  }
  return dest_layout;
}

}  // namespace kgate::kernel

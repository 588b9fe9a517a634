#include "kernel/catalog.hpp"

#include <nlohmann/json.hpp>
#include <set>

#include "core/arch.hpp"
#include "core/json_checks.hpp"
#include "core/json_doc.hpp"
#include "core/strings.hpp"
#include "kernel/pins.hpp"

namespace kgate::kernel {
namespace {

using nlohmann::json;

Result<std::string> get_string(const json& obj, const char* key, const std::string& where,
                               bool required = true) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (!required) return std::string{};
    return fail(FailureClass::usage, where + ": missing '" + key + "'");
  }
  if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
    return fail(FailureClass::usage, where + ": '" + key + "' must be a non-empty string");
  }
  return it->get<std::string>();
}

bool valid_digest(std::string_view d) {
  if (d.size() != 71 || !d.starts_with("sha256:")) return false;
  for (char c : d.substr(7)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return true;
}

Result<CatalogEntry> parse_entry(const std::string& name, const json& obj, const std::string& where) {
  if (!obj.is_object()) return fail(FailureClass::usage, where + ": must be an object");
  if (auto s = only_keys(obj, {"description", "arch", "source", "modules"}, where); !s)
    return std::unexpected(s.error());
  CatalogEntry e;
  e.name = name;
  auto arch = get_string(obj, "arch", where);
  if (!arch) return std::unexpected(arch.error());
  if (!known_arch(*arch))
    return fail(FailureClass::usage, where + ": arch '" + *arch + "' is not supported (x86_64, arm64)");
  e.arch = *arch;
  auto desc = get_string(obj, "description", where, false);
  if (!desc) return std::unexpected(desc.error());
  e.description = *desc;

  auto src = obj.find("source");
  if (src == obj.end() || !src->is_object())
    return fail(FailureClass::usage, where + ": 'source' must be an object");
  std::string swhere = where + ".source";
  auto type = get_string(*src, "type", swhere);
  if (!type) return std::unexpected(type.error());
  e.source.type = *type;
  if (*type == "debian-package") {
    if (auto s = only_keys(*src, {"type", "metapackage", "package_prefix"}, swhere); !s)
      return std::unexpected(s.error());
    auto meta = get_string(*src, "metapackage", swhere);
    if (!meta) return std::unexpected(meta.error());
    auto prefix = get_string(*src, "package_prefix", swhere);
    if (!prefix) return std::unexpected(prefix.error());
    e.source.metapackage = *meta;
    e.source.package_prefix = *prefix;
  } else if (*type == "oci" || *type == "oci-layout") {
    const bool remote = *type == "oci";
    if (auto s = remote ? only_keys(*src, {"type", "reference", "digest", "note"}, swhere)
                        : only_keys(*src, {"type", "path", "ref", "digest", "note"}, swhere);
        !s)
      return std::unexpected(s.error());
    auto where_from = get_string(*src, remote ? "reference" : "path", swhere);
    if (!where_from) return std::unexpected(where_from.error());
    if (remote) {
      e.source.reference = *where_from;
    } else {
      e.source.path = *where_from;
    }
    if (!remote) {
      auto ref = get_string(*src, "ref", swhere, false);
      if (!ref) return std::unexpected(ref.error());
      e.source.ref = *ref;
    }
    // A null digest is allowed in the file (a pin still to be filled in) and refused when fetched.
    if (auto d = src->find("digest"); d != src->end() && !d->is_null()) {
      if (!d->is_string() || !valid_digest(d->get_ref<const std::string&>()))
        return fail(FailureClass::usage, swhere + ": 'digest' must be \"sha256:<64 hex digits>\" or null");
      e.source.digest = d->get<std::string>();
    }
  } else if (*type == "kernel-org") {
    if (auto s = only_keys(*src, {"type", "release", "sha256", "tarball", "url", "config", "base", "note"},
                           swhere);
        !s)
      return std::unexpected(s.error());
    auto release = get_string(*src, "release", swhere);
    if (!release) return std::unexpected(release.error());
    auto sha = get_string(*src, "sha256", swhere);
    if (!sha) return std::unexpected(sha.error());
    if (!is_sha256_hex(*sha))
      return fail(FailureClass::usage, swhere + ": 'sha256' must be the tarball's 64 hex digits");
    auto config = get_string(*src, "config", swhere);
    if (!config) return std::unexpected(config.error());
    auto tarball = get_string(*src, "tarball", swhere, false);
    if (!tarball) return std::unexpected(tarball.error());
    auto url = get_string(*src, "url", swhere, false);
    if (!url) return std::unexpected(url.error());
    auto base = get_string(*src, "base", swhere, false);
    if (!base) return std::unexpected(base.error());
    if (!base->empty() && *base != "tinyconfig" && *base != "defconfig" && *base != "allnoconfig")
      return fail(FailureClass::usage, swhere + ": 'base' must be tinyconfig, defconfig or allnoconfig");
    e.source.release = *release;
    e.source.tarball_sha256 = *sha;
    e.source.config = *config;
    e.source.tarball = *tarball;
    e.source.base = base->empty() ? "tinyconfig" : *base;
    const std::string major = release->substr(0, release->find('.'));
    e.source.url = !url->empty() ? *url
                                 : "https://cdn.kernel.org/pub/linux/kernel/v" + major + ".x/linux-" +
                                       *release + ".tar.xz";
  } else {
    return fail(FailureClass::usage, swhere + ": unknown source type '" + *type +
                                         "' (known: debian-package, oci, oci-layout, kernel-org)");
  }

  if (auto mods = obj.find("modules"); mods != obj.end()) {
    if (!mods->is_array()) return fail(FailureClass::usage, where + ": 'modules' must be an array of names");
    for (const auto& m : *mods) {
      if (!m.is_string() || !valid_name(m.get_ref<const std::string&>())) {
        return fail(FailureClass::usage, where + ": 'modules' must hold module names");
      }
      e.modules.push_back(m.get<std::string>());
    }
  }
  return e;
}

}  // namespace

bool known_arch(std::string_view arch) {
  return parse_canonical_arch(arch).has_value();
}

Result<std::string> Catalog::default_for(std::string_view arch) const {
  if (auto it = arch_default.find(std::string(arch)); it != arch_default.end()) return it->second;
  if (auto it = entries.find(default_entry); it != entries.end() && it->second.arch == arch)
    return default_entry;
  return fail(FailureClass::usage, "the catalog names no default " + std::string(arch) +
                                       " kernel (\"defaults\"): name one with --entry");
}

Result<const CatalogEntry*> Catalog::find(std::string_view name) const {
  auto it = entries.find(std::string(name));
  if (it == entries.end()) {
    std::string known;
    for (const auto& [n, _] : entries) known += (known.empty() ? "" : ", ") + n;
    return fail(FailureClass::usage, "no kernel entry '" + std::string(name) + "' (known: " + known + ")");
  }
  return &it->second;
}

Result<Catalog> parse_catalog(std::string_view text, std::string_view origin) {
  std::string where(origin);
  // Strict: invalid JSON says where, and a key given twice (an entry defined twice) is refused.
  auto parsed = parse_json_doc(text, where);
  if (!parsed) return std::unexpected(parsed.error());
  const json& doc = parsed->root();
  if (!doc.is_object()) return fail(FailureClass::usage, where + ": must be a JSON object");
  if (auto s = only_keys(doc, {"schema", "default", "defaults", "kernels"}, where); !s)
    return std::unexpected(s.error());
  auto schema = get_string(doc, "schema", where);
  if (!schema) return std::unexpected(schema.error());
  if (*schema != "kgate.catalog/1") {
    return fail(FailureClass::usage, where + ": schema '" + *schema + "' is not kgate.catalog/1");
  }
  auto kernels = doc.find("kernels");
  if (kernels == doc.end() || !kernels->is_object() || kernels->empty()) {
    return fail(FailureClass::usage, where + ": 'kernels' must be a non-empty object");
  }
  Catalog cat;
  for (const auto& [name, obj] : kernels->items()) {
    if (!valid_name(name)) return fail(FailureClass::usage, where + ": bad entry name '" + name + "'");
    auto e = parse_entry(name, obj, where + ": kernels." + name);
    if (!e) return std::unexpected(e.error());
    cat.entries.emplace(name, std::move(*e));
  }
  auto def = get_string(doc, "default", where);
  if (!def) return std::unexpected(def.error());
  if (!cat.entries.contains(*def)) {
    return fail(FailureClass::usage, where + ": default '" + *def + "' names no entry");
  }
  cat.default_entry = *def;
  if (auto defaults = doc.find("defaults"); defaults != doc.end()) {
    if (!defaults->is_object())
      return fail(FailureClass::usage, where + ": 'defaults' must map an arch to an entry name");
    for (const auto& [arch, name] : defaults->items()) {
      const std::string at = where + ": defaults." + arch;
      if (!known_arch(arch)) return fail(FailureClass::usage, at + ": unknown arch (x86_64, arm64)");
      auto it = name.is_string() ? cat.entries.find(name.get<std::string>()) : cat.entries.end();
      if (it == cat.entries.end()) return fail(FailureClass::usage, at + ": must name an entry");
      if (it->second.arch != arch)
        return fail(FailureClass::usage, at + ": entry '" + it->first + "' is " + it->second.arch);
      cat.arch_default[arch] = it->first;
    }
  }
  return cat;
}

Result<Catalog> load_catalog(const fs::path& path, bool pins) {
  auto text = read_file(path);
  if (!text)
    return std::unexpected(std::move(text.error()).context("read catalog").reclass(FailureClass::usage));
  auto catalog = parse_catalog(*text, path.string());
  if (!catalog) return catalog;
  // Layout paths are relative to the catalog file, not to wherever kgate runs.
  for (auto& [_, e] : catalog->entries) {
    if (e.source.type == "oci-layout" && e.source.path.is_relative())
      e.source.path = path.parent_path() / e.source.path;
    if (e.source.type != "kernel-org") continue;
    if (!e.source.tarball.empty() && e.source.tarball.is_relative())
      e.source.tarball = path.parent_path() / e.source.tarball;
    if (e.source.config.is_relative()) e.source.config = path.parent_path() / e.source.config;
    // The fragment is part of what the entry is: a changed fragment is another kernel.
    auto fragment = read_file(e.source.config);
    if (!fragment)
      return std::unexpected(std::move(fragment.error())
                                 .context(path.string() + ": kernels." + e.name + ".source.config")
                                 .reclass(FailureClass::usage));
    e.source.config_sha256 = sha256_hex(*fragment);
  }
  // The digests `kgate kernels pin` locked beside it.
  const fs::path lock = kernel_pins_path(path);
  if (pins && path_exists(lock)) {
    auto text = read_file(lock);
    if (!text)
      return std::unexpected(
          std::move(text.error()).context("read kernel pins").reclass(FailureClass::usage));
    auto pins = parse_kernel_pins(*text, lock.string());
    if (!pins) return std::unexpected(pins.error());
    if (auto st = apply_kernel_pins(*catalog, *pins, lock.string()); !st) return std::unexpected(st.error());
  }
  return catalog;
}

}  // namespace kgate::kernel

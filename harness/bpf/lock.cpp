#include "bpf/lock.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/json_checks.hpp"
#include "core/strings.hpp"

namespace kgate::bpf {

namespace {

using json = nlohmann::json;

bool valid_sha256(const json& v) {
  return v.is_string() && is_sha256_hex(v.get_ref<const std::string&>());
}

// An object name is the stem of a file name: letters, digits, '_' and '-'.
bool valid_name(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::ranges::all_of(s, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::unexpected<Error> bad(const std::string& where, const std::string& what) {
  return fail(FailureClass::usage, where + ": " + what);
}

Result<std::uint64_t> get_size(const json& obj, const std::string& where) {
  auto it = obj.find("size");
  if (it == obj.end() || !it->is_number_unsigned())
    return bad(where, "'size' must be a non-negative integer");
  return it->get<std::uint64_t>();
}

Result<std::string> get_sha256(const json& obj, const std::string& where) {
  auto it = obj.find("sha256");
  if (it == obj.end() || !valid_sha256(*it)) return bad(where, "'sha256' must be 64 lowercase hex digits");
  return it->get<std::string>();
}

Result<LockEntry> parse_entry(const json& obj, const std::string& where) {
  if (!obj.is_object()) return bad(where, "must be a JSON object");
  if (auto s = only_keys(obj, {"sha256", "size", "clang", "sections"}, where); !s)
    return std::unexpected(s.error());
  LockEntry e;
  auto sha = get_sha256(obj, where);
  if (!sha) return std::unexpected(sha.error());
  e.sha256 = std::move(*sha);
  auto size = get_size(obj, where);
  if (!size) return std::unexpected(size.error());
  e.size = *size;
  auto clang = obj.find("clang");
  if (clang == obj.end() || !clang->is_string() || clang->get_ref<const std::string&>().empty())
    return bad(where, "'clang' must be the first line of `clang --version`");
  e.clang = clang->get<std::string>();
  auto sections = obj.find("sections");
  if (sections == obj.end() || !sections->is_array()) return bad(where, "'sections' must be an array");
  for (std::size_t i = 0; i < sections->size(); ++i) {
    const json& s = (*sections)[i];
    std::string at = where + ": sections[" + std::to_string(i) + "]";
    if (!s.is_object()) return bad(at, "must be a JSON object");
    if (auto ok = only_keys(s, {"name", "size", "sha256"}, at); !ok) return std::unexpected(ok.error());
    auto name = s.find("name");
    if (name == s.end() || !name->is_string()) return bad(at, "'name' must be a string");
    auto ssha = get_sha256(s, at);
    if (!ssha) return std::unexpected(ssha.error());
    auto ssize = get_size(s, at);
    if (!ssize) return std::unexpected(ssize.error());
    e.sections.push_back({name->get<std::string>(), *ssize, std::move(*ssha)});
  }
  return e;
}

Result<DigestLock> parse_doc(const json& doc, const std::string& where) {
  if (!doc.is_object()) return bad(where, "must be a JSON object");
  if (auto s = only_keys(doc, {"schema", "objects"}, where); !s) return std::unexpected(s.error());
  auto schema = doc.find("schema");
  if (schema == doc.end() || !schema->is_string() || schema->get_ref<const std::string&>() != lock_schema)
    return bad(where, "'schema' must be \"" + std::string(lock_schema) + "\"");
  auto objects = doc.find("objects");
  if (objects == doc.end() || !objects->is_object() || objects->empty())
    return bad(where, "'objects' must map object names to their arches");
  DigestLock lock;
  for (const auto& [name, arches] : objects->items()) {
    std::string at = where + ": objects." + name;
    if (!valid_name(name)) return bad(at, "an object name is letters, digits, '_' and '-'");
    if (!arches.is_object() || arches.empty()) return bad(at, "must map gate arches to entries");
    for (const auto& [arch, entry] : arches.items()) {
      if (find_gate_arch(arch) == nullptr) return bad(at + "." + arch, "unknown arch (x86, arm64)");
      auto e = parse_entry(entry, at + "." + arch);
      if (!e) return std::unexpected(e.error());
      lock.objects[name][arch] = std::move(*e);
    }
  }
  return lock;
}

}  // namespace

std::vector<std::string> DigestLock::arches() const {
  std::vector<std::string> out;
  for (const GateArch& a : gate_arches) {
    bool any =
        std::ranges::any_of(objects, [&](const auto& o) { return o.second.contains(std::string(a.name)); });
    if (any) out.emplace_back(a.name);
  }
  return out;
}

Result<DigestLock> parse_lock(std::string_view text, const std::string& where) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) return bad(where, "not valid JSON");
  // Every access above is checked first; this is for what nlohmann itself may still throw.
  try {
    return parse_doc(doc, where);
  } catch (const json::exception& e) {
    return bad(where, e.what());
  }
}

Result<DigestLock> load_lock(const fs::path& path) {
  auto text = read_file(path);
  if (!text)
    return std::unexpected(std::move(text.error()).context("read digest lock").reclass(FailureClass::usage));
  return parse_lock(*text, path.string());
}

std::string write_lock(const DigestLock& lock) {
  // Written by hand rather than by json::dump(2), so that each section is one line and a changed
  // section is a one-line diff. Keys are sorted; strings are escaped by nlohmann, ASCII only, so
  // that a section name's bytes never depend on how the file is read.
  auto str = [](const std::string& s) { return json(s).dump(-1, ' ', true, json::error_handler_t::replace); };
  std::string out = "{\n  \"objects\": {";
  const char* object_sep = "\n";
  for (const auto& [name, arches] : lock.objects) {
    out += object_sep + std::string("    ") + str(name) + ": {";
    const char* arch_sep = "\n";
    for (const auto& [arch, e] : arches) {
      out += arch_sep + std::string("      ") + str(arch) + ": {\n";
      out += "        \"clang\": " + str(e.clang) + ",\n";
      out += "        \"sections\": [";
      const char* section_sep = "\n";
      for (const LockedSection& s : e.sections) {
        out += section_sep + std::string("          {\"name\": ") + str(s.name) +
               ", \"sha256\": " + str(s.sha256) + ", \"size\": " + std::to_string(s.size) + "}";
        section_sep = ",\n";
      }
      out += e.sections.empty() ? "],\n" : "\n        ],\n";
      out += "        \"sha256\": " + str(e.sha256) + ",\n";
      out += "        \"size\": " + std::to_string(e.size) + "\n      }";
      arch_sep = ",\n";
    }
    out += "\n    }";
    object_sep = ",\n";
  }
  out += "\n  },\n  \"schema\": " + str(std::string(lock_schema)) + "\n}\n";
  return out;
}

LockEntry lock_entry(const ObjectInfo& info, std::string clang) {
  LockEntry e{info.sha256, info.size, std::move(clang), {}};
  for (const Section& s : info.sections) e.sections.push_back({s.name, s.size, s.sha256});
  return e;
}

bool valid_utf8(std::string_view s) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  for (std::size_t i = 0; i < s.size();) {
    unsigned c = byte(i);
    std::size_t n = c < 0x80             ? 0
                    : (c & 0xe0) == 0xc0 ? 1
                    : (c & 0xf0) == 0xe0 ? 2
                    : (c & 0xf8) == 0xf0 ? 3
                                         : 4;
    if (n == 4 || n > s.size() - i - 1) return false;
    std::uint32_t cp = n == 0 ? c : c & (0x3f >> n);
    for (std::size_t k = 1; k <= n; ++k) {
      if ((byte(i + k) & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (byte(i + k) & 0x3f);
    }
    constexpr std::uint32_t least[] = {0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

std::string escape_bytes(std::string_view s) {
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\')
      out += ch;
    else
      out += strprintf("\\x%02x", c);
  }
  return out;
}

std::string object_file_name(std::string_view name, std::string_view arch) {
  return std::string(name) + "." + std::string(arch) + ".bpf.o";
}

std::optional<std::pair<std::string, std::string>> split_object_file_name(std::string_view file) {
  constexpr std::string_view suffix = ".bpf.o";
  if (!file.ends_with(suffix)) return std::nullopt;
  file.remove_suffix(suffix.size());
  std::size_t dot = file.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  std::string name(file.substr(0, dot)), arch(file.substr(dot + 1));
  if (!valid_name(name) || find_gate_arch(arch) == nullptr) return std::nullopt;
  return std::make_pair(std::move(name), std::move(arch));
}

}  // namespace kgate::bpf

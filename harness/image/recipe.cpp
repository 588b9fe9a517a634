#include "image/recipe.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

namespace kgate::image {
namespace {

using nlohmann::json;

Result<std::uint32_t> mode_of(const json& e, std::uint32_t fallback, const std::string& where) {
  if (!e.contains("mode")) return fallback;
  const json& m = e["mode"];
  if (!m.is_string() || m.get_ref<const std::string&>().empty() ||
      m.get_ref<const std::string&>().size() > 4 ||
      m.get_ref<const std::string&>().find_first_not_of("01234567") != std::string::npos)
    return fail(FailureClass::usage, where + ": \"mode\" must be an octal string such as \"0644\"");
  return static_cast<std::uint32_t>(std::stoul(m.get<std::string>(), nullptr, 8));
}

Result<std::uint32_t> device_number(const json& e, const char* key, const std::string& where) {
  if (!e.contains(key) || !e[key].is_number_unsigned() || e[key].get<std::uint64_t>() > 0xfff)
    return fail(FailureClass::usage, where + ": \"" + key + "\" must be a device number from 0 to 4095");
  return e[key].get<std::uint32_t>();
}

// The recipe's document with its top level checked.
Result<json> parse_recipe(std::string_view recipe, const std::string& name) {
  json doc = json::parse(recipe, nullptr, false);
  if (!doc.is_object()) return fail(FailureClass::usage, name + ": a recipe is a JSON object");
  static const std::set<std::string> top = {"schema", "description", "packages", "entries"};
  for (const auto& [key, _] : doc.items())
    if (!top.contains(key)) return fail(FailureClass::usage, name + ": unknown key \"" + key + "\"");
  if (doc.value("schema", "") != "kgate.image/1")
    return fail(FailureClass::usage, name + ": \"schema\" must be \"kgate.image/1\"");
  if (!doc.contains("entries") || !doc["entries"].is_array())
    return fail(FailureClass::usage, name + ": \"entries\" must be an array");
  if (doc.contains("packages")) {
    const json& p = doc["packages"];
    if (!p.is_array() || !std::all_of(p.begin(), p.end(), [](const json& n) {
          return n.is_string() && !n.get_ref<const std::string&>().empty() &&
                 n.get_ref<const std::string&>().find_first_of(" :=/") == std::string::npos;
        }))
      return fail(FailureClass::usage, name + ": \"packages\" must be an array of Debian package names");
  }
  return doc;
}

// A "program" entry's "from": a path in the packages' tree, relative and without "..".
Result<std::string> program_from(const json& e, const std::string& where) {
  if (!e.contains("from") || !e["from"].is_string())
    return fail(FailureClass::usage, where + ": a program has \"from\", its path in the packages");
  std::string from = e["from"].get<std::string>();
  while (from.starts_with("/")) from.erase(0, 1);
  if (from.empty() || from.find("..") != std::string::npos)
    return fail(FailureClass::usage, where + ": \"from\" must be a path in the packages without \"..\"");
  return from;
}

}  // namespace

Result<RecipeNeeds> recipe_needs(std::string_view recipe, std::string_view origin) {
  const std::string name(origin);
  auto doc = parse_recipe(recipe, name);
  if (!doc) return std::unexpected(doc.error());
  RecipeNeeds needs;
  for (const auto& p : doc->value("packages", json::array())) needs.packages.push_back(p.get<std::string>());
  for (std::size_t i = 0; i < (*doc)["entries"].size(); ++i) {
    const json& e = (*doc)["entries"][i];
    if (!e.is_object() || e.value("type", json()) != "program") continue;
    auto from = program_from(e, name + " entries[" + std::to_string(i) + "]");
    if (!from) return std::unexpected(from.error());
    needs.programs.push_back(*from);
  }
  if (!needs.programs.empty() && needs.packages.empty())
    return fail(FailureClass::usage, name + ": its programs need \"packages\" to come from");
  return needs;
}

Result<std::vector<CpioEntry>> expand_recipe(std::string_view recipe, const RecipeInputs& inputs,
                                             std::string_view origin) {
  const std::string name(origin);
  auto parsed = parse_recipe(recipe, name);
  if (!parsed) return std::unexpected(parsed.error());
  const json& doc = *parsed;
  static const std::set<std::string> keys = {"path", "type",  "mode",  "from",
                                             "text", "major", "minor", "list"};
  std::vector<CpioEntry> out;
  std::vector<GuestFile> libraries;  // the programs', added after the entries with their directories
  for (std::size_t i = 0; i < doc["entries"].size(); ++i) {
    const json& e = doc["entries"][i];
    std::string where = name + " entries[" + std::to_string(i) + "]";
    if (!e.is_object() || !e.contains("path") || !e["path"].is_string() || !e.contains("type") ||
        !e["type"].is_string())
      return fail(FailureClass::usage, where + ": an entry is an object with \"path\" and \"type\"");
    for (const auto& [key, _] : e.items())
      if (!keys.contains(key)) return fail(FailureClass::usage, where + ": unknown key \"" + key + "\"");
    const std::string path = e["path"].get<std::string>();
    const std::string type = e["type"].get<std::string>();
    where += " (" + path + ")";
    if (type == "dir") {
      auto mode = mode_of(e, 0755, where);
      if (!mode) return std::unexpected(mode.error());
      out.push_back({path, S_IFDIR | *mode, {}});
    } else if (type == "char") {
      auto mode = mode_of(e, 0600, where);
      if (!mode) return std::unexpected(mode.error());
      auto major = device_number(e, "major", where);
      if (!major) return std::unexpected(major.error());
      auto minor = device_number(e, "minor", where);
      if (!minor) return std::unexpected(minor.error());
      out.push_back({path, S_IFCHR | *mode, {}, *major, *minor});
    } else if (type == "file") {
      auto mode = mode_of(e, 0644, where);
      if (!mode) return std::unexpected(mode.error());
      const bool from = e.contains("from") && e["from"].is_string();
      const bool text = e.contains("text") && e["text"].is_string();
      if (from == text)
        return fail(FailureClass::usage, where + ": a file has \"from\" (an input) or \"text\"");
      std::string data;
      if (from) {
        auto input = inputs.files.find(e["from"].get<std::string>());
        if (input == inputs.files.end())
          return fail(FailureClass::usage, where + ": \"from\" names no input of this image");
        data = input->second;
      } else {
        data = e["text"].get<std::string>();
      }
      out.push_back({path, S_IFREG | *mode, std::move(data)});
    } else if (type == "modules") {
      if (!e.contains("list") || !e["list"].is_string())
        return fail(FailureClass::usage,
                    where + ": modules need \"list\", the file naming them in load order");
      std::string list;
      for (const auto& [module, bytes] : inputs.modules) {
        out.push_back({path + "/" + module + ".ko", S_IFREG | 0644, bytes});
        list += module + "\n";
      }
      out.push_back({e["list"].get<std::string>(), S_IFREG | 0644, std::move(list)});
    } else if (type == "program") {
      auto mode = mode_of(e, 0755, where);
      if (!mode) return std::unexpected(mode.error());
      auto from = program_from(e, where);
      if (!from) return std::unexpected(from.error());
      auto program = inputs.programs.find(*from);
      if (program == inputs.programs.end())
        return fail(FailureClass::usage, where + ": \"" + *from + "\" was not read from the packages");
      out.push_back({path, S_IFREG | *mode, program->second.data});
      for (const auto& lib : program->second.libraries) {
        const bool seen = std::any_of(libraries.begin(), libraries.end(),
                                      [&](const GuestFile& l) { return l.path == lib.path; });
        if (!seen) libraries.push_back(lib);
      }
    } else {
      return fail(FailureClass::usage,
                  where + ": type \"" + type + "\" is not dir, char, file, modules or program");
    }
  }
  if (!libraries.empty()) {
    // Each library with the directories on its way that the entries do not make.
    auto lib_entries = file_list_entries(libraries);
    if (!lib_entries) return std::unexpected(std::move(lib_entries.error()).context(name));
    for (auto& l : *lib_entries) {
      const bool made =
          std::any_of(out.begin(), out.end(), [&](const CpioEntry& c) { return c.path == l.path; });
      if (!(made && (l.mode & S_IFMT) == S_IFDIR)) out.push_back(std::move(l));
    }
  }
  if (auto s = check_entries(out); !s) return std::unexpected(std::move(s.error()).context(name));
  return out;
}

Result<std::vector<CpioEntry>> file_list_entries(const std::vector<GuestFile>& files) {
  std::vector<CpioEntry> out;
  std::set<std::string> dirs;
  for (const auto& f : files) {
    if (f.path.size() < 2 || f.path.front() != '/')
      return fail(FailureClass::usage, "\"" + f.path + "\" is not an absolute guest path");
    const std::string rel = f.path.substr(1);
    for (std::size_t slash = rel.find('/'); slash != std::string::npos; slash = rel.find('/', slash + 1))
      if (dirs.insert(rel.substr(0, slash)).second) out.push_back({rel.substr(0, slash), S_IFDIR | 0755, {}});
    out.push_back({rel, S_IFREG | (f.mode & 07777), f.data});
  }
  if (auto s = check_entries(out); !s) return std::unexpected(s.error());
  return out;
}

}  // namespace kgate::image

#include "image/modules.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "core/compress.hpp"
#include "core/elf.hpp"
#include "core/files.hpp"

namespace kgate::image {

namespace {

constexpr std::array<std::string_view, 4> ko_suffixes = {".ko", ".ko.xz", ".ko.zst", ".ko.gz"};

bool is_module_file(std::string_view file) {
  return std::ranges::any_of(ko_suffixes, [&](std::string_view s) { return file.ends_with(s); });
}

Result<std::string> modinfo_section(std::string_view ko) {
  auto elf = read_elf(ko);
  if (!elf) return std::unexpected(elf.error());
  for (auto& s : elf->sections) {
    if (s.name == ".modinfo") return std::move(s.content);
  }
  return fail(FailureClass::usage, "no .modinfo section");
}

// .modinfo is a run of NUL-terminated "key=value" strings.
std::optional<std::string_view> find_field(std::string_view modinfo, std::string_view key) {
  for (size_t pos = 0; pos < modinfo.size();) {
    size_t end = std::min(modinfo.find('\0', pos), modinfo.size());
    std::string_view entry = modinfo.substr(pos, end - pos);
    if (entry.size() > key.size() && entry.starts_with(key) && entry[key.size()] == '=')
      return entry.substr(key.size() + 1);
    pos = end + 1;
  }
  return std::nullopt;
}

struct Node {
  fs::path path;
  std::vector<std::string> deps;
  bool deps_known = false;
};

Result<std::map<std::string, Node>> parse_modules_dep(const fs::path& dir, std::string_view text) {
  std::map<std::string, Node> nodes;
  size_t lineno = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    std::string where = (dir / "modules.dep").string() + ":" + std::to_string(lineno);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail(FailureClass::usage, where + ": no ':'");
    std::string_view file = line.substr(0, colon);
    if (!is_module_file(file) || file.starts_with('/'))
      return fail(FailureClass::usage, where + ": not a relative module path: " + std::string(file));
    Node node{dir / file, {}, true};
    std::string_view rest = line.substr(colon + 1);
    for (size_t p = 0; (p = rest.find_first_not_of(" \t\r", p)) != std::string_view::npos;) {
      size_t e = std::min(rest.find_first_of(" \t\r", p), rest.size());
      node.deps.push_back(module_name(rest.substr(p, e - p)));
      p = e;
    }
    std::string name = module_name(file);
    if (!nodes.emplace(name, std::move(node)).second)
      return fail(FailureClass::usage, where + ": module " + name + " listed twice");
  }
  return nodes;
}

Result<std::map<std::string, Node>> walk_kernel_dir(const fs::path& dir) {
  std::map<std::string, Node> nodes;
  std::error_code ec;
  fs::path root = dir / "kernel";
  fs::recursive_directory_iterator it(root, ec);
  if (ec == std::errc::no_such_file_or_directory) return nodes;  // no kernel/: only built-ins resolve
  for (fs::recursive_directory_iterator end; !ec && it != end; it.increment(ec)) {
    std::string file = it->path().filename().string();
    std::error_code type_ec;  // a dangling link is not a module file, and does not end the walk
    if (!is_module_file(file) || !it->is_regular_file(type_ec)) continue;
    auto [at, fresh] = nodes.try_emplace(module_name(file), Node{it->path(), {}, false});
    // Directory order is arbitrary, so picking one of two silently would not be stable.
    if (!fresh)
      return fail(FailureClass::usage, "module " + at->first + " found twice: " + at->second.path.string() +
                                           " and " + it->path().string());
  }
  if (ec) return fail_errno("walk " + root.string(), ec.value());
  return nodes;
}

class Resolver {
 public:
  Resolver(const fs::path& dir, std::set<std::string> builtin, std::map<std::string, Node> nodes)
      : dir_(dir), builtin_(std::move(builtin)), nodes_(std::move(nodes)) {}

  Status visit(const std::string& name, const std::string& needed_by) {
    if (builtin_.contains(name)) return {};
    if (auto st = state_.find(name); st != state_.end()) {
      if (st->second == State::done) return {};
      std::string cycle;
      for (auto it = std::ranges::find(stack_, name); it != stack_.end(); ++it) cycle += *it + " -> ";
      return fail(FailureClass::usage, "module dependency cycle: " + cycle + name);
    }
    auto node = nodes_.find(name);
    if (node == nodes_.end())
      return fail(FailureClass::usage, "module " + name +
                                           (needed_by.empty() ? "" : " (needed by " + needed_by + ")") +
                                           " is neither a file nor built in under " + dir_.string());
    if (!node->second.deps_known) {
      auto ko = read_module(node->second.path);
      if (!ko) return std::unexpected(std::move(ko).error());
      auto deps = modinfo_depends(*ko);
      if (!deps)
        return std::unexpected(std::move(deps).error().context("module " + node->second.path.string()));
      node->second.deps = std::move(*deps);
      node->second.deps_known = true;
    }
    state_[name] = State::visiting;
    stack_.push_back(name);
    for (const std::string& dep : node->second.deps)
      if (auto s = visit(dep, name); !s) return s;
    stack_.pop_back();
    state_[name] = State::done;
    out_.push_back({name, node->second.path});
    return {};
  }

  std::vector<ModuleFile> take() && { return std::move(out_); }

 private:
  enum class State { visiting, done };
  fs::path dir_;
  std::set<std::string> builtin_;
  std::map<std::string, Node> nodes_;
  std::map<std::string, State> state_;
  std::vector<std::string> stack_;
  std::vector<ModuleFile> out_;
};

}  // namespace

std::string module_name(std::string_view file_or_name) {
  std::string_view base = file_or_name.substr(file_or_name.rfind('/') + 1);
  for (std::string_view suffix : ko_suffixes)
    if (base.ends_with(suffix)) {
      base.remove_suffix(suffix.size());
      break;
    }
  std::string name(base);
  std::ranges::replace(name, '-', '_');
  return name;
}

Result<std::string> read_module(const fs::path& path) {
  auto raw = read_file(path);
  if (!raw) return raw;
  return with_context(decompress(*raw), "decompress " + path.string());
}

Result<std::string> modinfo_field(std::string_view ko_bytes, std::string_view key) {
  auto section = modinfo_section(ko_bytes);
  if (!section) return std::unexpected(std::move(section).error());
  auto value = find_field(*section, key);
  if (!value) return fail(FailureClass::usage, "no " + std::string(key) + "= in .modinfo");
  return std::string(*value);
}

Result<std::vector<std::string>> modinfo_depends(std::string_view ko_bytes) {
  auto section = modinfo_section(ko_bytes);
  if (!section) return std::unexpected(std::move(section).error());
  std::vector<std::string> deps;
  std::string_view list = find_field(*section, "depends").value_or("");
  for (size_t pos = 0; pos < list.size();) {
    size_t end = std::min(list.find(',', pos), list.size());
    if (end > pos) deps.push_back(module_name(list.substr(pos, end - pos)));
    pos = end + 1;
  }
  return deps;
}

Result<std::vector<ModuleFile>> resolve_closure(const fs::path& modules_dir,
                                                const std::vector<std::string>& wanted) {
  auto builtin_text = read_file_if_exists(modules_dir / "modules.builtin");
  if (!builtin_text) return std::unexpected(std::move(builtin_text).error());
  std::set<std::string> builtin;
  std::string_view text = *builtin_text ? std::string_view(**builtin_text) : std::string_view();
  for (size_t pos = 0; pos < text.size();) {
    size_t end = std::min(text.find('\n', pos), text.size());
    if (std::string_view line = text.substr(pos, end - pos); is_module_file(line))
      builtin.insert(module_name(line));
    pos = end + 1;
  }

  auto dep_text = read_file_if_exists(modules_dir / "modules.dep");
  if (!dep_text) return std::unexpected(std::move(dep_text).error());
  auto nodes = *dep_text ? parse_modules_dep(modules_dir, **dep_text) : walk_kernel_dir(modules_dir);
  if (!nodes) return std::unexpected(std::move(nodes).error());

  Resolver resolver(modules_dir, std::move(builtin), std::move(*nodes));
  for (const std::string& name : wanted)
    if (auto s = resolver.visit(module_name(name), ""); !s) return std::unexpected(std::move(s).error());
  return std::move(resolver).take();
}

}  // namespace kgate::image

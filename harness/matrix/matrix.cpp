#include "matrix/matrix.hpp"

#include <set>

#include "core/arch.hpp"
#include "core/json_doc.hpp"
#include "core/strings.hpp"

namespace kgate::matrix {

using nlohmann::json;

const Entry* Matrix::find(std::string_view name) const {
  for (const auto& e : entries) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

Result<Matrix> parse_matrix(std::string_view text, std::string_view origin) {
  const std::string where(origin);
  // Strict: invalid or cut-short JSON says where, and a key given twice is refused.
  auto parsed = parse_json_doc(text, where);
  if (!parsed) return std::unexpected(parsed.error());
  const json& doc = parsed->root();
  if (!doc.is_object()) return fail(FailureClass::usage, where + ": not a JSON object");
  for (const auto& [key, _] : doc.items()) {
    if (key != "schema" && key != "entries")
      return fail(FailureClass::usage, where + ": unknown key '" + key + "'");
  }
  if (doc.value("schema", json()) != "kgate.matrix/1") {
    return fail(FailureClass::usage, where + ": schema must be \"kgate.matrix/1\"");
  }
  auto list = doc.find("entries");
  if (list == doc.end() || !list->is_array() || list->empty()) {
    return fail(FailureClass::usage, where + ": 'entries' must be a non-empty array");
  }
  Matrix m;
  std::set<std::string> names;
  for (size_t i = 0; i < list->size(); ++i) {
    const json& e = (*list)[i];
    const std::string at = where + ": entries[" + std::to_string(i) + "]";
    if (!e.is_object()) return fail(FailureClass::usage, at + " must be an object");
    for (const auto& [key, _] : e.items()) {
      if (key != "name" && key != "kernel" && key != "lockdown" && key != "arch")
        return fail(FailureClass::usage, at + ": unknown key '" + key + "'");
    }
    Entry entry;
    for (auto [key, out] : {std::pair{"name", &entry.name}, std::pair{"kernel", &entry.kernel}}) {
      auto it = e.find(key);
      if (it == e.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
        return fail(FailureClass::usage, at + ": '" + key + "' must be a non-empty string");
      *out = it->get<std::string>();
    }
    if (!names.insert(entry.name).second)
      return fail(FailureClass::usage, at + ": duplicate name '" + entry.name + "'");
    if (auto it = e.find("lockdown"); it != e.end()) {
      auto l = it->is_string() ? run::parse_lockdown(it->get<std::string>()) : std::nullopt;
      if (!l)
        return fail(FailureClass::usage, at + ": 'lockdown' must be none, integrity or confidentiality");
      entry.lockdown = *l;
    }
    // The catalog kernel's arch, said again here so that --github and the summary carry it
    // without the catalog; kgate run refuses an entry whose kernel is of another arch.
    if (auto it = e.find("arch"); it != e.end()) {
      if (!it->is_string() || !parse_canonical_arch(it->get<std::string>()))
        return fail(FailureClass::usage, at + ": 'arch' must be \"x86_64\" or \"arm64\"");
      entry.arch = it->get<std::string>();
    }
    m.entries.push_back(std::move(entry));
  }
  return m;
}

Result<Matrix> load_matrix(const fs::path& path) {
  auto text = read_file(path);
  if (!text)
    return std::unexpected(std::move(text.error()).context("read matrix").reclass(FailureClass::usage));
  return parse_matrix(*text, path.string());
}

bool glob_match(std::string_view p, std::string_view s) {
  // Iterative matcher with one backtrack point for the last '*': linear in practice.
  size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) {
      ++pi;
      ++si;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

Result<std::vector<Entry>> select(const Matrix& m, std::string_view pattern) {
  std::vector<std::string_view> globs;
  size_t pos = 0;
  while (pos <= pattern.size() && !pattern.empty()) {
    size_t end = pattern.find(',', pos);
    if (end == std::string_view::npos) end = pattern.size();
    if (end > pos) globs.push_back(pattern.substr(pos, end - pos));
    pos = end + 1;
  }
  if (!pattern.empty() && globs.empty())
    return fail(FailureClass::usage, "--only '" + std::string(pattern) + "' names no glob");
  std::vector<Entry> out;
  for (const auto& e : m.entries) {
    bool hit = globs.empty();
    for (auto g : globs) hit = hit || glob_match(g, e.name);
    if (hit) out.push_back(e);
  }
  if (out.empty())
    return fail(FailureClass::usage, "--only '" + std::string(pattern) + "' selects no matrix entry");
  return out;
}

json github_matrix(const std::vector<Entry>& entries) {
  json include = json::array();
  for (const auto& e : entries) {
    include.push_back({{"entry", e.name},
                       {"kernel", e.kernel},
                       {"lockdown", std::string(run::lockdown_name(e.lockdown))},
                       {"arch", e.arch}});
  }
  return {{"include", include}};
}

Result<Shard> parse_shard(std::string_view text) {
  const auto bad = [&] {
    return fail(FailureClass::usage,
                "--shard takes I/N with 1 <= I <= N <= 1000, as 2/4, not '" + std::string(text) + "'");
  };
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return bad();
  auto number = [](std::string_view digits) -> std::optional<int> {
    int v = 0;
    if (digits.empty() || digits.size() > 4) return std::nullopt;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + (c - '0');
    }
    return v;
  };
  auto i = number(text.substr(0, slash));
  auto n = number(text.substr(slash + 1));
  if (!i || !n || *i < 1 || *n > 1000 || *i > *n) return bad();
  return Shard{*i, *n};
}

std::vector<Entry> shard_of(const std::vector<Entry>& selected, Shard shard) {
  std::vector<Entry> out;
  for (size_t k = 0; k < selected.size(); ++k)
    if (static_cast<int>(k % shard.count) + 1 == shard.index) out.push_back(selected[k]);
  return out;
}

json github_shards(const std::vector<Entry>& selected, int count) {
  json include = json::array();
  for (int i = 1; i <= count; ++i) {
    std::string names;
    for (const auto& e : shard_of(selected, {i, count})) names += (names.empty() ? "" : ",") + e.name;
    if (!names.empty()) include.push_back({{"shard", strprintf("%d/%d", i, count)}, {"entries", names}});
  }
  return {{"include", include}};
}

}  // namespace kgate::matrix

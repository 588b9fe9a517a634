#include "gate/pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <queue>
#include <set>

#include "core/json_checks.hpp"
#include "core/strings.hpp"

namespace kgate::gate {

using nlohmann::json;

std::string_view kind_name(GateKind k) {
  return k == GateKind::ebpf_matrix ? "ebpf-matrix" : "command";
}

const Gate* Pipeline::find(std::string_view name) const {
  for (const auto& g : gates) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

namespace {

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 100 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

bool valid_env_name(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// The 1-based line of each gate name's `"name": "<name>"` in the file's text (its first), keyed
// by the name's JSON literal as the text spells it; found in one pass over the text, so that a
// file of 10,000 gates is read in linear time. Only for messages: the JSON path in the message
// is what is exact.
std::map<std::string, int, std::less<>> name_lines(std::string_view text) {
  std::map<std::string, int, std::less<>> lines;
  int line = 1;
  size_t counted = 0;  // newlines are counted up to here
  for (size_t at = text.find("\"name\""); at != std::string_view::npos; at = text.find("\"name\"", at + 1)) {
    size_t k = at + 6;
    while (k < text.size() && is_space(text[k])) ++k;
    if (k >= text.size() || text[k] != ':') continue;
    ++k;
    while (k < text.size() && is_space(text[k])) ++k;
    if (k >= text.size() || text[k] != '"') continue;
    size_t end = k + 1;
    while (end < text.size() && text[end] != '"') end += text[end] == '\\' ? 2 : 1;
    if (end >= text.size()) break;
    line += static_cast<int>(
        std::count(text.begin() + static_cast<long>(counted), text.begin() + static_cast<long>(k), '\n'));
    counted = k;
    lines.emplace(std::string(text.substr(k, end + 1 - k)), line);
  }
  return lines;
}

int line_of_name(const std::map<std::string, int, std::less<>>& lines, const std::string& name) {
  auto it = lines.find(json(name).dump());
  return it == lines.end() ? 0 : it->second;
}

// A NUL byte would cut an argv element, an environment value or a path short where the
// kernel reads it: a different command from the one the file shows.
constexpr const char* nul_message = "must not contain a NUL byte (\\u0000)";
bool has_nul(const json& v) {
  return v.get_ref<const std::string&>().find('\0') != std::string::npos;
}

// Reads one gate's (or the defaults') fields; `where` names it in messages.
class Reader {
 public:
  Reader(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  Status bad(const std::string& key, const std::string& what) const {
    return fail(FailureClass::usage, where_ + ": " + key + ": " + what);
  }

  Result<std::optional<std::string>> string(const std::string& key) const {
    if (!obj_.contains(key)) return std::nullopt;
    const json& v = obj_[key];
    if (!v.is_string()) return std::unexpected(bad(key, "must be a string").error());
    if (has_nul(v)) return std::unexpected(bad(key, nul_message).error());
    return v.get<std::string>();
  }
  Result<std::optional<bool>> boolean(const std::string& key) const {
    if (!obj_.contains(key)) return std::nullopt;
    const json& v = obj_[key];
    if (!v.is_boolean()) return std::unexpected(bad(key, "must be true or false").error());
    return v.get<bool>();
  }
  Result<std::optional<double>> seconds(const std::string& key) const {
    if (!obj_.contains(key)) return std::nullopt;
    const json& v = obj_[key];
    if (!v.is_number()) return std::unexpected(bad(key, "must be a number of seconds").error());
    double s = v.get<double>();
    if (!std::isfinite(s) || s <= 0 || s > 86400)
      return std::unexpected(bad(key, "must be more than 0 and at most 86400 seconds").error());
    return s;
  }
  // A size in MiB, returned in bytes.
  Result<std::optional<std::uint64_t>> mebibytes(const std::string& key) const {
    if (!obj_.contains(key)) return std::nullopt;
    const json& v = obj_[key];
    if (!v.is_number_integer() || v.get<long long>() < 1 ||
        v.get<long long>() > static_cast<long long>(max_log_limit_mb))
      return std::unexpected(
          bad(key, strprintf("must be an integer from 1 to %ju (MiB)", std::uintmax_t{max_log_limit_mb}))
              .error());
    return static_cast<std::uint64_t>(v.get<long long>()) << 20;
  }
  Result<std::optional<std::vector<std::string>>> strings(const std::string& key, bool non_empty) const {
    if (!obj_.contains(key)) return std::nullopt;
    const json& v = obj_[key];
    if (!v.is_array()) return std::unexpected(bad(key, "must be an array of strings").error());
    if (non_empty && v.empty()) return std::unexpected(bad(key, "must not be empty").error());
    std::vector<std::string> out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string())
        return std::unexpected(bad(strprintf("%s[%zu]", key.c_str(), i), "must be a string").error());
      if (has_nul(v[i]))
        return std::unexpected(bad(strprintf("%s[%zu]", key.c_str(), i), nul_message).error());
      out.push_back(v[i].get<std::string>());
    }
    return out;
  }
  Result<std::optional<std::map<std::string, std::string>>> env(const std::string& key) const {
    if (!obj_.contains(key)) return std::nullopt;
    const json& v = obj_[key];
    if (!v.is_object()) return std::unexpected(bad(key, "must be an object of strings").error());
    std::map<std::string, std::string> out;
    for (const auto& [k, val] : v.items()) {
      if (!valid_env_name(k))
        return std::unexpected(bad(key + "." + k, "is not a variable name ([A-Za-z_][A-Za-z0-9_]*)").error());
      if (!val.is_string()) return std::unexpected(bad(key + "." + k, "must be a string").error());
      if (has_nul(val)) return std::unexpected(bad(key + "." + k, nul_message).error());
      out[k] = val.get<std::string>();
    }
    return out;
  }

 private:
  const json& obj_;
  std::string where_;
};

// The first of several results that failed, or success.
template <class... R>
Status first_error(const R&... results) {
  Status out;
  ((out = (out && !results) ? Status(std::unexpected(results.error())) : out), ...);
  return out;
}

struct Defaults {
  fs::path cwd;
  std::map<std::string, std::string> env;
  double timeout_s = default_timeout_s;
  std::uint64_t log_limit_bytes = default_log_limit_mb << 20;
};

fs::path resolve(const fs::path& base, const std::string& p) {
  fs::path out = (fs::path(p).is_absolute() ? fs::path(p) : base / p).lexically_normal();
  // "/repo/ci/.." normalises to "/repo/": drop the trailing separator.
  return out.has_filename() || out == out.root_path() ? out : out.parent_path();
}

Result<Gate> read_gate(const json& g, size_t index, const std::map<std::string, int, std::less<>>& lines,
                       const std::string& origin, const Defaults& d, const fs::path& base_dir) {
  std::string where = strprintf("%s: gates[%zu]", origin.c_str(), index);
  if (!g.is_object()) return fail(FailureClass::usage, where + ": must be an object");
  Gate gate;
  if (!g.contains("name") || !g["name"].is_string())
    return fail(FailureClass::usage, where + ": name: a gate needs a name (a string)");
  gate.name = g["name"].get<std::string>();
  gate.line = line_of_name(lines, gate.name);
  where = strprintf("%s: gates[%zu] \"%s\"", origin.c_str(), index, gate.name.c_str());
  if (gate.line > 0) where += strprintf(" (line %d)", gate.line);
  if (!valid_name(gate.name))
    return fail(FailureClass::usage, where + ": name: use letters, digits, '.', '_' and '-' (at most 100)");
  if (auto st = only_keys(
          g,
          {"name", "description", "kind", "command", "cwd", "env", "timeout_s", "log_limit_mb", "needs",
           "always", "expect", "expect_exit", "entries", "matrix", "spec", "object", "jobs", "run_args"},
          where);
      !st)
    return std::unexpected(st.error());
  Reader r(g, where);

  auto kind = r.string("kind");
  if (!kind) return std::unexpected(kind.error());
  if (*kind && **kind == "ebpf-matrix") {
    gate.kind = GateKind::ebpf_matrix;
  } else if (*kind && **kind != "command") {
    return std::unexpected(r.bad("kind", "'" + **kind + "' is not a kind: command or ebpf-matrix").error());
  }
  auto description = r.string("description");
  auto command = r.strings("command", true);
  auto cwd = r.string("cwd");
  auto env = r.env("env");
  auto timeout = r.seconds("timeout_s");
  auto log_limit = r.mebibytes("log_limit_mb");
  auto needs = r.strings("needs", false);
  auto always = r.boolean("always");
  auto expect = r.string("expect");
  auto entries = r.string("entries");
  auto matrix = r.string("matrix");
  auto spec = r.string("spec");
  auto object = r.string("object");
  auto run_args = r.strings("run_args", false);
  if (auto st = first_error(description, command, cwd, env, timeout, log_limit, needs, always, expect,
                            entries, matrix, spec, object, run_args);
      !st)
    return std::unexpected(st.error());
  gate.description = description->value_or("");
  gate.cwd = cwd->has_value() ? resolve(d.cwd, **cwd) : d.cwd;
  gate.env = d.env;
  if (*env) {
    for (const auto& [k, v] : **env) gate.env[k] = v;
  }
  gate.timeout_s = timeout->value_or(d.timeout_s);
  gate.log_limit_bytes = log_limit->value_or(d.log_limit_bytes);
  gate.needs = needs->value_or(std::vector<std::string>{});
  gate.always = always->value_or(false);
  if (*expect) {
    if (**expect == "fail") {
      gate.expect = Expect::fail;
    } else if (**expect != "pass") {
      return std::unexpected(r.bad("expect", "'" + **expect + "' is not pass or fail").error());
    }
  }
  if (g.contains("expect_exit")) {
    if (gate.expect != Expect::fail)
      return std::unexpected(
          r.bad("expect_exit", "only a gate with \"expect\": \"fail\" takes this").error());
    const json& codes = g["expect_exit"];
    if (!codes.is_array() || codes.empty())
      return std::unexpected(r.bad("expect_exit", "must be a non-empty array of exit codes").error());
    for (size_t i = 0; i < codes.size(); ++i) {
      if (!codes[i].is_number_integer() || codes[i].get<long long>() < 1 || codes[i].get<long long>() > 255)
        return std::unexpected(
            r.bad(strprintf("expect_exit[%zu]", i), "must be an exit code from 1 to 255").error());
      gate.expect_exit.push_back(codes[i].get<int>());
    }
  }
  if (gate.kind == GateKind::command) {
    if (!*command)
      return std::unexpected(r.bad("command", "a command gate needs a command (an argv array)").error());
    for (const char* key : {"entries", "matrix", "spec", "object", "jobs", "run_args"}) {
      if (g.contains(key)) return std::unexpected(r.bad(key, "only an ebpf-matrix gate takes this").error());
    }
    gate.command = std::move(**command);
    if (gate.command.front().empty())
      return std::unexpected(r.bad("command[0]", "must name a program").error());
  } else {
    if (*command) return std::unexpected(r.bad("command", "an ebpf-matrix gate runs no command").error());
    // Its entries run as `kgate run` children of kgate itself, in kgate's directory and
    // environment; and a matrix that fails for want of a file must never pass as a refusal.
    // Its log holds kgate's own lines, one per entry: there is no output to cap.
    for (const char* key : {"cwd", "env", "expect_exit", "log_limit_mb"}) {
      if (g.contains(key))
        return std::unexpected(r.bad(key, "an ebpf-matrix gate does not take this").error());
    }
    if (gate.expect == Expect::fail)
      return std::unexpected(r.bad("expect",
                                   "an ebpf-matrix gate must pass: write a negative control as a command "
                                   "gate (`kgate run ...` with expect_exit)")
                                 .error());
    if (!*entries || (*entries)->empty())
      return std::unexpected(
          r.bad("entries", "an ebpf-matrix gate needs entries (globs, \"*\" for all)").error());
    gate.entries = **entries;
    if (*matrix) gate.matrix = resolve(base_dir, **matrix);
    if (*spec) {
      if ((*spec)->empty()) return std::unexpected(r.bad("spec", "must name a run spec file").error());
      gate.spec = resolve(base_dir, **spec);
    }
    if (*object) {
      if ((*object)->empty()) return std::unexpected(r.bad("object", "must name a BPF object file").error());
      gate.object = resolve(base_dir, **object);
    }
    if (g.contains("jobs")) {
      const json& j = g["jobs"];
      if (!j.is_number_integer() || j.get<long long>() < 1 || j.get<long long>() > 64)
        return std::unexpected(r.bad("jobs", "must be an integer from 1 to 64").error());
      gate.jobs = j.get<int>();
    }
    gate.run_args = run_args->value_or(std::vector<std::string>{});
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < gate.needs.size(); ++i) {
    const auto& n = gate.needs[i];
    if (n == gate.name)
      return std::unexpected(r.bad(strprintf("needs[%zu]", i), "a gate cannot need itself").error());
    if (!seen.insert(n).second)
      return std::unexpected(r.bad(strprintf("needs[%zu]", i), "\"" + n + "\" is listed twice").error());
  }
  return gate;
}

// Kahn's algorithm, taking gates in file order whenever several are ready (a min-heap of
// indexes), so the order is stable; a gate left over is on a cycle, which the message spells
// out. O((gates + needs) log gates): every need is looked at once.
Result<std::vector<Gate>> order(std::vector<Gate> gates, const std::string& origin) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < gates.size(); ++i) index[gates[i].name] = i;
  std::vector<size_t> missing(gates.size(), 0);
  std::vector<std::vector<size_t>> needed_by(gates.size());
  for (size_t i = 0; i < gates.size(); ++i) {
    missing[i] = gates[i].needs.size();
    for (const auto& n : gates[i].needs) needed_by[index.at(n)].push_back(i);
  }
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < gates.size(); ++i) {
    if (missing[i] == 0) ready.push(i);
  }
  std::vector<bool> placed(gates.size(), false);
  std::vector<size_t> sequence;
  while (!ready.empty()) {
    const size_t next = ready.top();
    ready.pop();
    placed[next] = true;
    sequence.push_back(next);
    for (size_t i : needed_by[next]) {
      if (--missing[i] == 0) ready.push(i);
    }
  }
  std::vector<Gate> out;
  if (sequence.size() == gates.size()) {
    out.reserve(gates.size());
    for (size_t i : sequence) out.push_back(std::move(gates[i]));
  }
  if (out.size() == gates.size()) return out;
  // Walk needs from a gate left over until a gate repeats: that stretch is a cycle.
  size_t at = 0;
  while (placed[at]) ++at;
  std::vector<size_t> path;
  std::vector<int> pos(gates.size(), -1);
  while (pos[at] < 0) {
    pos[at] = static_cast<int>(path.size());
    path.push_back(at);
    for (const auto& n : gates[at].needs) {
      size_t j = index.at(n);
      if (!placed[j]) {
        at = j;
        break;
      }
    }
  }
  // A long cycle is named by its first and last links: the message stays one readable line.
  constexpr size_t shown = 8;
  const size_t first = static_cast<size_t>(pos[at]), length = path.size() - first;
  std::string cycle;
  for (size_t k = first; k < path.size(); ++k) {
    if (length > 2 * shown && k == first + shown) {
      cycle += strprintf("... (%zu more) ... ", length - 2 * shown);
      k = path.size() - shown;
    }
    const Gate& g = gates[path[k]];
    cycle += "\"" + g.name + "\"" + (g.line > 0 ? strprintf(" (line %d)", g.line) : "") + " needs ";
  }
  cycle += "\"" + gates[at].name + "\"";
  return fail(FailureClass::usage, origin + strprintf(": needs form a cycle of %zu gates: ", length) + cycle);
}

}  // namespace

Result<Pipeline> parse_pipeline(std::string_view text, const fs::path& file, const fs::path& base_dir) {
  const std::string origin = file.string();
  // nlohmann keeps the last of duplicate keys silently; two "command"s in one gate would run
  // one the reader did not see. The callback tracks each open object's keys.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto check_keys = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end && !open_objects.empty()) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty() && parsed.is_string()) {
      if (!open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json doc = json::parse(text, check_keys, false);
  if (!doc.is_discarded() && !duplicate.empty())
    return fail(FailureClass::usage, origin + ": the key \"" + duplicate + "\" appears twice in one object");
  if (doc.is_discarded()) {
    // nlohmann's own message carries the line and column; parse again to get it.
    try {
      json again = json::parse(text);
      (void)again;
    } catch (const json::exception& e) {
      return fail(FailureClass::usage, origin + ": not valid JSON: " + e.what());
    }
    return fail(FailureClass::usage, origin + ": not valid JSON");
  }
  if (!doc.is_object()) return fail(FailureClass::usage, origin + ": must be a JSON object");
  if (auto st = only_keys(doc, {"schema", "description", "defaults", "gates"}, origin); !st)
    return std::unexpected(st.error());
  if (!doc.contains("schema") || !doc["schema"].is_string() ||
      doc["schema"].get<std::string>() != pipeline_schema)
    return fail(FailureClass::usage, origin + ": schema: must be \"" + std::string(pipeline_schema) +
                                         "\" (this kgate reads that version)");
  Pipeline p;
  p.file = file;
  if (doc.contains("description")) {
    if (!doc["description"].is_string())
      return fail(FailureClass::usage, origin + ": description: must be a string");
    p.description = doc["description"].get<std::string>();
  }
  Defaults d;
  d.cwd = base_dir.lexically_normal();
  if (doc.contains("defaults")) {
    const json& dj = doc["defaults"];
    const std::string where = origin + ": defaults";
    if (!dj.is_object()) return fail(FailureClass::usage, where + ": must be an object");
    if (auto st = only_keys(dj, {"cwd", "env", "timeout_s", "log_limit_mb"}, where); !st)
      return std::unexpected(st.error());
    Reader r(dj, where);
    auto cwd = r.string("cwd");
    if (!cwd) return std::unexpected(cwd.error());
    if (*cwd) d.cwd = resolve(base_dir, **cwd);
    auto env = r.env("env");
    if (!env) return std::unexpected(env.error());
    if (*env) d.env = **env;
    auto timeout = r.seconds("timeout_s");
    if (!timeout) return std::unexpected(timeout.error());
    if (*timeout) d.timeout_s = **timeout;
    auto log_limit = r.mebibytes("log_limit_mb");
    if (!log_limit) return std::unexpected(log_limit.error());
    if (*log_limit) d.log_limit_bytes = **log_limit;
  }
  if (!doc.contains("gates") || !doc["gates"].is_array())
    return fail(FailureClass::usage, origin + ": gates: must be an array of gates");
  if (doc["gates"].empty()) return fail(FailureClass::usage, origin + ": gates: the pipeline has no gates");
  std::vector<Gate> gates;
  std::map<std::string, size_t> first;
  const auto lines = name_lines(text);
  for (size_t i = 0; i < doc["gates"].size(); ++i) {
    auto g = read_gate(doc["gates"][i], i, lines, origin, d, base_dir);
    if (!g) return std::unexpected(g.error());
    if (auto [it, fresh] = first.emplace(g->name, i); !fresh)
      return fail(FailureClass::usage, strprintf("%s: gates[%zu] and gates[%zu] are both named \"%s\"",
                                                 origin.c_str(), it->second, i, g->name.c_str()));
    gates.push_back(std::move(*g));
  }
  for (size_t i = 0; i < gates.size(); ++i) {
    for (size_t k = 0; k < gates[i].needs.size(); ++k) {
      if (!first.contains(gates[i].needs[k]))
        return fail(FailureClass::usage,
                    strprintf("%s: gates[%zu] \"%s\"%s: needs[%zu]: no gate is named \"%s\"", origin.c_str(),
                              i, gates[i].name.c_str(),
                              gates[i].line > 0 ? strprintf(" (line %d)", gates[i].line).c_str() : "", k,
                              gates[i].needs[k].c_str()));
    }
  }
  auto ordered = order(std::move(gates), origin);
  if (!ordered) return std::unexpected(ordered.error());
  p.gates = std::move(*ordered);
  return p;
}

Result<Pipeline> load_pipeline(const fs::path& file) {
  auto text = read_file(file);
  if (!text) {
    Error e = text.error();
    return std::unexpected(
        Error(FailureClass::usage, "read gates file " + file.string() + ": " + e.describe()));
  }
  return parse_pipeline(*text, file, absolute_path(file).parent_path());
}

Result<std::vector<size_t>> select_gates(const Pipeline& p, const std::vector<std::string>& only) {
  std::vector<bool> chosen(p.gates.size(), only.empty());
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < p.gates.size(); ++i) index[p.gates[i].name] = i;
  std::vector<size_t> stack;
  for (const auto& name : only) {
    auto it = index.find(name);
    if (it == index.end())
      return fail(FailureClass::usage, "--only " + name + ": no gate is named so in " + p.file.string());
    stack.push_back(it->second);
  }
  while (!stack.empty()) {
    size_t i = stack.back();
    stack.pop_back();
    if (chosen[i]) continue;
    chosen[i] = true;
    for (const auto& n : p.gates[i].needs) stack.push_back(index.at(n));
  }
  std::vector<size_t> out;
  for (size_t i = 0; i < p.gates.size(); ++i) {
    if (chosen[i]) out.push_back(i);
  }
  return out;
}

}  // namespace kgate::gate

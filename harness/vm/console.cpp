#include "vm/console.hpp"

#include <nlohmann/json.hpp>
#include <optional>

#include "core/json_checks.hpp"
#include "core/strings.hpp"

namespace kgate::vm {

ConsoleFindings scan_console(std::string_view text) {
  ConsoleFindings f;
  for (std::string_view line : split_lines(text)) {
    auto note = [&](bool& flag) {
      if (!flag) {
        flag = true;
        if (f.first_line.empty()) f.first_line = std::string(line);
      }
    };
    if (line.find("kgate-agent: fatal:") != std::string_view::npos) note(f.agent_fatal);
    if (line.find("Attempted to kill init") != std::string_view::npos) note(f.init_died);
    if (line.find("Kernel panic - not syncing") != std::string_view::npos) note(f.panic);
  }
  return f;
}

std::vector<std::string> tail_lines(std::string_view text, size_t count) {
  std::vector<std::string> lines;
  for (std::string_view view : split_lines(text)) {
    std::string line(view);
    std::erase(line, '\r');
    lines.push_back(std::move(line));
  }
  if (lines.size() > count) lines.erase(lines.begin(), lines.end() - static_cast<long>(count));
  return lines;
}

namespace {

using nlohmann::json;

constexpr std::string_view kSchema = "kgate.console-patterns/1";

Result<std::string> get_string(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) return fail(FailureClass::usage, where + ": missing '" + key + "'");
  if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
    return fail(FailureClass::usage, where + ": '" + key + "' must be a non-empty string");
  }
  return it->get<std::string>();
}

Result<bool> get_bool(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) return false;
  if (!it->is_boolean()) return fail(FailureClass::usage, where + ": '" + key + "' must be true or false");
  return it->get<bool>();
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

Result<ConsolePattern> parse_pattern(const json& obj, bool splat, const std::string& where) {
  if (!obj.is_object()) return fail(FailureClass::usage, where + ": must be an object");
  auto keys = splat ? only_keys(obj, {"id", "match", "prefix", "why", "marker", "part_of"}, where)
                    : only_keys(obj, {"id", "match", "prefix", "why"}, where);
  if (!keys) return std::unexpected(keys.error());
  ConsolePattern p;
  auto id = get_string(obj, "id", where);
  if (!id) return std::unexpected(id.error());
  if (!valid_id(*id)) {
    return fail(FailureClass::usage, where + ": id '" + *id + "' must be 1 to 64 of [a-z0-9_]");
  }
  p.id = *id;
  std::string named = where + " (" + p.id + ")";
  auto match = get_string(obj, "match", named);
  if (!match) return std::unexpected(match.error());
  // Lines are split at '\n' and lose trailing '\r' before matching: such a match could never hit.
  if (match->find_first_of("\r\n") != std::string::npos || match->size() > kMaxConsoleLineBytes) {
    return fail(FailureClass::usage, named + ": 'match' must be one line of at most " +
                                         std::to_string(kMaxConsoleLineBytes) + " bytes");
  }
  p.match = *match;
  auto prefix = get_bool(obj, "prefix", named);
  if (!prefix) return std::unexpected(prefix.error());
  p.prefix = *prefix;
  auto why = get_string(obj, "why", named);
  if (!why) return std::unexpected(why.error());
  p.why = *why;
  if (!splat) return p;

  auto marker = get_bool(obj, "marker", named);
  if (!marker) return std::unexpected(marker.error());
  p.marker = *marker;
  if (auto part = obj.find("part_of"); part != obj.end()) {
    if (!part->is_array() || part->empty()) {
      return fail(FailureClass::usage, named + ": 'part_of' must be a non-empty array of ids");
    }
    if (p.marker) return fail(FailureClass::usage, named + ": a marker cannot be 'part_of' a report");
    for (const auto& v : *part) {
      if (!v.is_string() || !valid_id(v.get_ref<const std::string&>())) {
        return fail(FailureClass::usage, named + ": 'part_of' must hold ids");
      }
      p.part_of.push_back(v.get<std::string>());
    }
  }
  return p;
}

Result<std::vector<ConsolePattern>> parse_list(const json& doc, const char* key, bool splat,
                                               const std::string& where) {
  std::vector<ConsolePattern> out;
  auto list = doc.find(key);
  if (list == doc.end()) {
    if (!splat) return out;  // no allow list: nothing is excused
    return fail(FailureClass::usage, where + ": missing '" + key + "'");
  }
  if (!list->is_array() || (splat && list->empty())) {
    return fail(FailureClass::usage,
                where + ": '" + key + "' must be " + (splat ? "a non-empty array" : "an array"));
  }
  for (size_t i = 0; i < list->size(); ++i) {
    auto p = parse_pattern((*list)[i], splat, where + ": " + key + "[" + std::to_string(i) + "]");
    if (!p) return std::unexpected(p.error());
    for (const auto& q : out) {
      if (q.match == p->match && q.prefix == p->prefix) {
        return fail(FailureClass::usage, where + ": " + key + "[" + std::to_string(i) + "] (" + p->id +
                                             "): match '" + p->match + "' repeats that of " + q.id);
      }
      // Allow entries are looked up by id when reviewed; splat ids may repeat (a family of formats).
      if (!splat && q.id == p->id) {
        return fail(FailureClass::usage,
                    where + ": " + key + "[" + std::to_string(i) + "]: id '" + p->id + "' repeats");
      }
    }
    out.push_back(std::move(*p));
  }
  return out;
}

Status check_comment(const json& doc, const std::string& where) {
  auto c = doc.find("comment");
  if (c == doc.end() || c->is_string()) return {};
  if (c->is_array()) {
    bool all_strings = true;
    for (const auto& v : *c) all_strings = all_strings && v.is_string();
    if (all_strings) return {};
  }
  return fail(FailureClass::usage, where + ": 'comment' must be a string or an array of strings");
}

}  // namespace

Result<ConsolePatterns> parse_console_patterns(std::string_view json_text, std::string_view origin) {
  std::string where(origin);
  json doc = json::parse(json_text, nullptr, false);
  if (doc.is_discarded()) return fail(FailureClass::usage, where + ": not valid JSON");
  if (!doc.is_object()) return fail(FailureClass::usage, where + ": must be a JSON object");
  if (auto s = only_keys(doc, {"schema", "comment", "splats", "allow"}, where); !s) {
    return std::unexpected(s.error());
  }
  auto schema = get_string(doc, "schema", where);
  if (!schema) return std::unexpected(schema.error());
  if (*schema != kSchema) {
    return fail(FailureClass::usage, where + ": schema '" + *schema + "' is not " + std::string(kSchema));
  }
  if (auto s = check_comment(doc, where); !s) return std::unexpected(s.error());
  ConsolePatterns out;
  auto splats = parse_list(doc, "splats", true, where);
  if (!splats) return std::unexpected(splats.error());
  out.splats = std::move(*splats);
  auto allow = parse_list(doc, "allow", false, where);
  if (!allow) return std::unexpected(allow.error());
  out.allow = std::move(*allow);

  for (const auto& p : out.splats) {
    for (const auto& target : p.part_of) {
      bool found = false;
      for (const auto& q : out.splats) found = found || (q.id == target && !q.marker);
      if (!found) {
        return fail(FailureClass::usage,
                    where + ": " + p.id + ": 'part_of' names '" + target + "', which no report pattern has");
      }
    }
  }
  return out;
}

Result<ConsolePatterns> load_console_patterns(const fs::path& path) {
  auto text = read_file(path);
  if (!text) {
    return std::unexpected(
        std::move(text.error()).context("read console patterns").reclass(FailureClass::usage));
  }
  return parse_console_patterns(*text, path.string());
}

namespace {

// "[    1.234567] " and, where CONFIG_PRINTK_CALLER is set, "[    T1] " after it; a line without
// them (the agent's own output, firmware) is matched whole.
std::string_view strip_printk_prefix(std::string_view s) {
  auto bracket = [&s](std::string_view allowed) {
    if (s.empty() || s[0] != '[') return false;
    size_t close = s.find(']');
    if (close == std::string_view::npos || close < 2 || close > 24) return false;
    if (s.substr(1, close - 1).find_first_not_of(allowed) != std::string_view::npos) return false;
    s.remove_prefix(close + 1);
    if (!s.empty() && s[0] == ' ') s.remove_prefix(1);
    return true;
  };
  if (bracket(" 0123456789.")) bracket(" TC0123456789");
  return s;
}

bool matches(const ConsolePattern& p, std::string_view message) {
  return p.prefix ? message.starts_with(p.match) : message.find(p.match) != std::string_view::npos;
}

bool continues(const ConsolePattern& p, std::string_view open_id) {
  for (const auto& id : p.part_of) {
    if (id == open_id) return true;
  }
  return false;
}

// Walks the console a line at a time. The last splat stays open while its context fills; a marker
// waits, collecting the lines after it, for the line that names its report.
class SplatScanner {
 public:
  explicit SplatScanner(const ConsolePatterns& patterns) : patterns_(patterns) {}

  // False once the list is full and no report is still collecting context: the rest can be skipped.
  bool wants_more() const { return out_.size() < kMaxSplats || open_; }

  void line(size_t line_no, std::string_view text) {
    std::string_view message = strip_printk_prefix(text);
    const ConsolePattern* hit = nullptr;
    for (const auto& p : patterns_.splats) {
      if (matches(p, message)) {
        hit = &p;
        break;
      }
    }
    if (hit == nullptr) return ordinary(text);
    if (open_ && continues(*hit, out_.back().id)) return add_context(text);
    open_ = false;
    for (const auto& a : patterns_.allow) {
      if (matches(a, message)) {
        pending_.reset();  // the report a marker announced is the allowed one
        return;
      }
    }
    if (hit->marker) {
      flush_pending();
      pending_ = Pending{hit, line_no, std::string(text), {}};
      return;
    }
    Splat s{hit->id, line_no, std::string(text), {}, {}};
    if (pending_) s.lead_in = std::move(pending_->lines);
    pending_.reset();
    push(std::move(s));
  }

  std::vector<Splat> finish() && {
    flush_pending();
    return std::move(out_);
  }

 private:
  struct Pending {
    const ConsolePattern* marker;
    size_t line_no;
    std::string line;
    std::vector<std::string> lines;
  };

  void ordinary(std::string_view text) {
    if (pending_) {
      pending_->lines.emplace_back(text);
      if (pending_->lines.size() == kSplatContextLines) flush_pending();
    } else if (open_) {
      add_context(text);
    }
  }

  void add_context(std::string_view text) {
    out_.back().context.emplace_back(text);
    if (out_.back().context.size() == kSplatContextLines) open_ = false;
  }

  // A marker that no report line followed is reported as itself: an unknown format is not a clean one.
  void flush_pending() {
    if (!pending_) return;
    Pending p = std::move(*pending_);
    pending_.reset();
    push(Splat{p.marker->id, p.line_no, std::move(p.line), {}, std::move(p.lines)});
    open_ = false;
  }

  void push(Splat s) {
    if (out_.size() >= kMaxSplats) return;
    out_.push_back(std::move(s));
    open_ = true;
  }

  const ConsolePatterns& patterns_;
  std::vector<Splat> out_;
  bool open_ = false;  // out_.back() is still collecting context
  std::optional<Pending> pending_;
};

}  // namespace

std::vector<Splat> find_splats(std::string_view console, const ConsolePatterns& patterns) {
  SplatScanner scanner(patterns);
  size_t pos = 0;
  size_t line_no = 0;
  while (pos < console.size() && scanner.wants_more()) {
    size_t end = console.find('\n', pos);
    if (end == std::string_view::npos) end = console.size();
    std::string_view line = console.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    scanner.line(line_no, line.substr(0, kMaxConsoleLineBytes));
  }
  return std::move(scanner).finish();
}

}  // namespace kgate::vm

#include "json_doc.hpp"

#include <algorithm>
#include <iterator>
#include <set>

#include "strings.hpp"

namespace kgate {

using nlohmann::json;

namespace {

// An input iterator over the text that counts the newlines the lexer has passed. nlohmann reads
// its input one character at a time through it, and reads at most one character past a token
// (the one that ends a number) before it calls the SAX handler: so the newlines before the last
// character read are the ones before the token, and `line()` is the line where the token ended.
// Copies share the count, since nlohmann copies the iterator into its input adapter.
class LineCountingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  LineCountingIterator(const char* at, const char* begin, int* newlines)
      : at_(at), begin_(begin), newlines_(newlines) {}
  reference operator*() const { return *at_; }
  LineCountingIterator& operator++() {
    if (at_ != begin_ && at_[-1] == '\n') ++*newlines_;
    ++at_;
    return *this;
  }
  LineCountingIterator operator++(int) {
    LineCountingIterator before = *this;
    ++*this;
    return before;
  }
  bool operator==(const LineCountingIterator& other) const { return at_ == other.at_; }

 private:
  const char* at_;
  const char* begin_;
  int* newlines_;
};

bool is_identifier(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::string where(const std::string& origin, int line, std::string_view path) {
  std::string out = origin + ": line " + std::to_string(line);
  if (!path.empty()) out += ": " + std::string(path);
  return out;
}

// Builds the tree like nlohmann's own DOM parser, without recursion: a stack of the open arrays
// and objects, each with its path and (objects) the keys seen so far.
class DomBuilder {
 public:
  DomBuilder(std::string_view text, json& root, std::map<std::string, int, std::less<>>& lines,
             const std::string& origin, int max_depth, const int& newlines)
      : text_(text),
        root_(root),
        lines_(lines),
        origin_(origin),
        max_depth_(max_depth),
        newlines_(newlines) {}

  bool null() { return value(json(nullptr)); }
  bool boolean(bool v) { return value(json(v)); }
  bool number_integer(json::number_integer_t v) { return value(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return value(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) { return value(json(v)); }
  bool string(json::string_t& v) {
    if (v.find('\0') != std::string::npos)
      return refuse(next_path(), "must not contain a NUL byte (\\u0000)");
    return value(json(std::move(v)));
  }
  bool binary(json::binary_t&) { return refuse(next_path(), "binary values are not JSON"); }

  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(json::string_t& k) {
    Frame& f = stack_.back();
    std::string path = json_path_key(f.path, k);
    if (k.find('\0') != std::string::npos)
      return refuse(f.path, "a key must not contain a NUL byte (\\u0000)");
    if (auto [it, fresh] = f.keys.emplace(k, line()); !fresh)
      return refuse(path, "the key " + json(k).dump() +
                              strprintf(" appears twice in one object (first on line %d)", it->second));
    f.key = std::move(k);
    lines_[path] = line();
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    // `position` counts the characters read, the offending one last. nlohmann's own line counts a
    // newline that ends a bad token as the start of the next line ("tru\n" is "line 4, column 0"):
    // the line and column are computed here from the text instead.
    std::size_t at = std::min(position > 0 ? position - 1 : 0, text_.size());
    std::string_view before = text_.substr(0, at);
    int line = 1 + static_cast<int>(std::count(before.begin(), before.end(), '\n'));
    std::size_t nl = before.rfind('\n');
    std::size_t column = at - (nl == std::string_view::npos ? 0 : nl + 1) + 1;
    // "[json.exception.parse_error.101] parse error at line 3, column 7: syntax error ...": keep
    // what nlohmann says after its own position.
    std::string what = e.what();
    size_t col = what.find(", column ");
    size_t colon = col == std::string::npos ? std::string::npos : what.find(": ", col);
    if (colon != std::string::npos) {
      what = what.substr(colon + 2);
    } else if (size_t bracket = what.find("] "); bracket != std::string::npos) {
      what = what.substr(bracket + 2);
    }
    error_ = origin_ + strprintf(": not valid JSON at line %d, column %zu: ", line, column) + what;
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  struct Frame {
    json* value;
    std::string path;
    std::map<std::string, int> keys;  // objects: key -> its line
    std::string key;                  // objects: the key whose value comes next
    std::size_t count = 0;            // arrays: elements so far
  };

  int line() const { return newlines_ + 1; }

  // The path of the value that comes next.
  std::string next_path() const {
    if (stack_.empty()) return "";
    const Frame& f = stack_.back();
    return f.value->is_array() ? json_path_index(f.path, f.count) : json_path_key(f.path, f.key);
  }

  // Places `v` where the next value goes and returns it there, with its path.
  std::pair<json*, std::string> place(json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      lines_.emplace("", line());
      return {&root_, ""};
    }
    Frame& f = stack_.back();
    std::string path = next_path();
    if (f.value->is_array()) {
      f.value->push_back(std::move(v));
      ++f.count;
      lines_.emplace(path, line());  // an object member's line is its key's, recorded already
      return {&f.value->back(), path};
    }
    json& slot = (*f.value)[f.key];
    slot = std::move(v);
    return {&slot, path};
  }

  bool value(json&& v) {
    place(std::move(v));
    return true;
  }

  bool open(json&& container) {
    if (static_cast<int>(stack_.size()) >= max_depth_)
      return refuse(next_path(), strprintf("arrays and objects nest deeper than %d levels", max_depth_));
    auto [where_placed, path] = place(std::move(container));
    stack_.push_back({where_placed, std::move(path), {}, {}, 0});
    return true;
  }

  bool close() {
    stack_.pop_back();
    return true;
  }

  bool refuse(std::string_view path, const std::string& what) {
    error_ = where(origin_, line(), path) + ": " + what;
    return false;
  }

  std::string_view text_;
  json& root_;
  std::map<std::string, int, std::less<>>& lines_;
  const std::string& origin_;
  int max_depth_;
  const int& newlines_;
  std::vector<Frame> stack_;
  std::string error_;
};

}  // namespace

int JsonDoc::line_of(std::string_view path) const {
  auto it = lines_.find(path);
  return it == lines_.end() ? 0 : it->second;
}

std::string json_path_key(std::string_view parent, std::string_view key) {
  if (is_identifier(key))
    return parent.empty() ? std::string(key) : std::string(parent) + "." + std::string(key);
  return std::string(parent) + "[" + json(std::string(key)).dump() + "]";
}

std::string json_path_index(std::string_view parent, std::size_t index) {
  return std::string(parent) + "[" + std::to_string(index) + "]";
}

Result<JsonDoc> parse_json_doc(std::string_view text, const std::string& origin, int max_depth) {
  JsonDoc doc;
  doc.origin_ = origin;
  int newlines = 0;
  DomBuilder builder(text, doc.root_, doc.lines_, doc.origin_, max_depth, newlines);
  LineCountingIterator first(text.data(), text.data(), &newlines);
  LineCountingIterator last(text.data() + text.size(), text.data(), &newlines);
  bool ok = false;
  try {
    ok = json::sax_parse(first, last, &builder);
  } catch (const json::exception& e) {
    // The SAX parser reports its errors through parse_error(); this is a safety net only.
    return fail(FailureClass::usage, origin + ": not valid JSON: " + e.what());
  }
  if (!ok) {
    return fail(FailureClass::usage, builder.error().empty() ? origin + ": not valid JSON" : builder.error());
  }
  return doc;
}

JsonReader::JsonReader(const JsonDoc& doc) : doc_(&doc), value_(&doc.root()) {}

JsonReader::JsonReader(const JsonDoc& doc, const json& value, std::string path)
    : doc_(&doc), value_(&value), path_(std::move(path)) {}

Error JsonReader::error(std::string_view what) const {
  return Error(FailureClass::usage, where(doc_->origin(), line(), path_) + ": " + std::string(what));
}

Error JsonReader::error_at(std::string_view key, std::string_view what) const {
  std::string path = json_path_key(path_, key);
  int line = doc_->line_of(path);
  return Error(FailureClass::usage,
               where(doc_->origin(), line > 0 ? line : this->line(), path) + ": " + std::string(what));
}

bool JsonReader::has(std::string_view key) const {
  return value_->is_object() && value_->contains(key);
}

JsonReader JsonReader::member(std::string_view key) const {
  return JsonReader(*doc_, value_->at(std::string(key)), json_path_key(path_, key));
}

JsonReader JsonReader::element(std::size_t index) const {
  return JsonReader(*doc_, value_->at(index), json_path_index(path_, index));
}

std::vector<std::string> JsonReader::keys() const {
  std::vector<std::string> out;
  if (value_->is_object()) {
    for (const auto& [k, _] : value_->items()) out.push_back(k);
  }
  return out;
}

Status JsonReader::expect_object(std::string_view what) const {
  if (!value_->is_object()) return bad(what);
  return {};
}

Status JsonReader::only_keys(std::initializer_list<std::string_view> allowed) const {
  for (const auto& [key, _] : value_->items()) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string choices;
    for (auto a : allowed) choices += (choices.empty() ? "" : ", ") + std::string(a);
    return bad_at(key, "unknown key (this object takes " + choices + ")");
  }
  return {};
}

Result<std::optional<std::string>> JsonReader::string(std::string_view key, bool non_empty) const {
  if (!has(key)) return std::nullopt;
  const json& v = (*value_)[std::string(key)];
  if (!v.is_string()) return bad_at(key, "must be a string");
  if (non_empty && v.get_ref<const std::string&>().empty()) return bad_at(key, "must not be empty");
  return v.get<std::string>();
}

Result<std::optional<bool>> JsonReader::boolean(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  const json& v = (*value_)[std::string(key)];
  if (!v.is_boolean()) return bad_at(key, "must be true or false");
  return v.get<bool>();
}

Result<std::optional<std::int64_t>> JsonReader::integer(std::string_view key, std::int64_t min,
                                                        std::int64_t max) const {
  if (!has(key)) return std::nullopt;
  const json& v = (*value_)[std::string(key)];
  std::string range =
      strprintf("an integer from %lld to %lld", static_cast<long long>(min), static_cast<long long>(max));
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    if (max < 0 || u > static_cast<std::uint64_t>(max) || (min > 0 && u < static_cast<std::uint64_t>(min)))
      return bad_at(key, "must be " + range);
    return static_cast<std::int64_t>(u);
  }
  if (!v.is_number_integer()) return bad_at(key, "must be " + range);
  auto i = v.get<std::int64_t>();
  if (i < min || i > max) return bad_at(key, "must be " + range);
  return i;
}

Result<std::optional<std::vector<std::string>>> JsonReader::strings(std::string_view key,
                                                                    bool non_empty) const {
  if (!has(key)) return std::nullopt;
  const json& v = (*value_)[std::string(key)];
  if (!v.is_array()) return bad_at(key, "must be an array of strings");
  if (non_empty && v.empty()) return bad_at(key, "must not be empty");
  std::vector<std::string> out;
  JsonReader array = member(key);
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) return array.element(i).bad("must be a string");
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

Result<std::optional<JsonReader>> JsonReader::object(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  JsonReader m = member(key);
  if (!m.value().is_object()) return m.bad("must be an object");
  return m;
}

Result<std::optional<JsonReader>> JsonReader::array(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  JsonReader m = member(key);
  if (!m.value().is_array()) return m.bad("must be an array");
  return m;
}

Result<JsonDoc> read_json_doc(const fs::path& file, int max_depth) {
  auto text = read_file(file);
  if (!text) return std::unexpected(std::move(text.error()).reclass(FailureClass::usage));
  return parse_json_doc(*text, file.string(), max_depth);
}

}  // namespace kgate

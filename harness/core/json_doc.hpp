// A strict reader for the JSON documents users hand kgate (run specs; anything a user writes).
// nlohmann's own parser keeps the last of duplicate keys silently, recurses to build its tree and
// reports no line for a value; this one is built on its SAX interface and refuses duplicate keys,
// NUL bytes in strings and nesting deeper than a limit (without recursion, so hostile input cannot
// overflow the stack), and remembers the line of every value by its JSON path
// (`objects[0].programs.on_getpid.trigger`), so that a validator's message says where to look.
// Every error is class usage.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "error.hpp"
#include "files.hpp"

namespace kgate {

// A parsed document: its tree, and the line of each value by JSON path. The root's path is "".
class JsonDoc {
 public:
  const nlohmann::json& root() const { return root_; }
  const std::string& origin() const { return origin_; }
  // The 1-based line where the value at `path` is (for an object member, the line of its key);
  // 0 when no value has that path.
  int line_of(std::string_view path) const;
  // Every path and its line, for callers that keep them after the document is gone.
  const std::map<std::string, int, std::less<>>& lines() const { return lines_; }

 private:
  friend Result<JsonDoc> parse_json_doc(std::string_view, const std::string&, int);
  nlohmann::json root_;
  std::string origin_;
  std::map<std::string, int, std::less<>> lines_;
};

// Parses `text`; `origin` (a file name) starts every message. Refuses: invalid JSON ("<origin>: not
// valid JSON at line 3, column 7: <what>"), a key twice in one object, a NUL byte in a string or
// key, and arrays and objects nested deeper than `max_depth`.
Result<JsonDoc> parse_json_doc(std::string_view text, const std::string& origin, int max_depth = 64);
// The same for a file, named by its path; a file that cannot be read is class usage too.
Result<JsonDoc> read_json_doc(const fs::path& file, int max_depth = 64);

// JSON paths as the messages write them: `parent.key` (`parent["odd key"]` when the key is not an
// identifier), `parent[3]`.
std::string json_path_key(std::string_view parent, std::string_view key);
std::string json_path_index(std::string_view parent, std::size_t index);

// Checked getters over one value of a document, for validators: each getter returns nullopt for an
// absent key and an error for a present one of the wrong type or range, and every error reads
// "<origin>: line N: <json.path>: <what>". Borrows the document, which must outlive it.
class JsonReader {
 public:
  // The document's root.
  explicit JsonReader(const JsonDoc& doc);
  JsonReader(const JsonDoc& doc, const nlohmann::json& value, std::string path);

  const nlohmann::json& value() const { return *value_; }
  const std::string& path() const { return path_; }
  int line() const { return doc_->line_of(path_); }
  const JsonDoc& doc() const { return *doc_; }

  // An error about this value, or about its member `key` (the line of the key when present, else
  // this value's line).
  Error error(std::string_view what) const;
  Error error_at(std::string_view key, std::string_view what) const;
  // The same as a failed result, for `return reader.bad(...)`.
  std::unexpected<Error> bad(std::string_view what) const { return std::unexpected(error(what)); }
  std::unexpected<Error> bad_at(std::string_view key, std::string_view what) const {
    return std::unexpected(error_at(key, what));
  }

  bool is_object() const { return value_->is_object(); }
  bool has(std::string_view key) const;
  // Members and elements; `key` must be present, `index` in range.
  JsonReader member(std::string_view key) const;
  JsonReader element(std::size_t index) const;
  // The names of this object's members, sorted (nlohmann's object keeps no file order).
  std::vector<std::string> keys() const;

  // Requires this value to be an object, saying `what` it should be otherwise.
  Status expect_object(std::string_view what = "must be an object") const;
  // Refuses a key of this object outside `allowed`, naming the key and its line.
  Status only_keys(std::initializer_list<std::string_view> allowed) const;

  Result<std::optional<std::string>> string(std::string_view key, bool non_empty = false) const;
  Result<std::optional<bool>> boolean(std::string_view key) const;
  Result<std::optional<std::int64_t>> integer(std::string_view key, std::int64_t min, std::int64_t max) const;
  Result<std::optional<std::vector<std::string>>> strings(std::string_view key, bool non_empty = false) const;
  // The member, required to be an object (or an array).
  Result<std::optional<JsonReader>> object(std::string_view key) const;
  Result<std::optional<JsonReader>> array(std::string_view key) const;

 private:
  const JsonDoc* doc_;
  const nlohmann::json* value_;
  std::string path_;
};

}  // namespace kgate

// Fuzz target for the console scanner, which reads whatever the guest kernel and the programs under
// test printed on the serial port, and for the parser of the pattern list it scans with. Every input
// is scanned as console text with the shipped list (kernels/console-patterns.json), and parsed as a
// pattern list; a list that parses then scans the console excerpts the seeds hold. The shipped list
// and the excerpts of tests/data/console/*.log are read from $KGATE_SOURCE_ROOT, which meson sets.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "core/files.hpp"
#include "driver.hpp"
#include "vm/console.hpp"

using namespace kgate::vm;

namespace {

// Without the shipped files the target would fuzz something else than what kgate ships: stop.
[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "fuzz_console: %s\n", why.c_str());
  std::exit(1);
}

kgate::fs::path source_root() {
  const char* root = std::getenv("KGATE_SOURCE_ROOT");
  if (root == nullptr || *root == '\0')
    die("KGATE_SOURCE_ROOT is not set: run it through `meson test`, or set it to the source tree");
  return root;
}

std::string read_or_die(const kgate::fs::path& path) {
  auto text = kgate::read_file(path);
  if (!text) die(text.error().describe());
  return *text;
}

const std::string& shipped_text() {
  static const std::string text = read_or_die(source_root() / "kernels/console-patterns.json");
  return text;
}

const ConsolePatterns& shipped() {
  static const ConsolePatterns patterns = [] {
    auto p = parse_console_patterns(shipped_text(), "kernels/console-patterns.json");
    if (!p) die(p.error().describe());
    return *p;
  }();
  return patterns;
}

// Lines as find_splats sees them: split at '\n', trailing '\r' removed, cut to kMaxConsoleLineBytes.
std::vector<std::string_view> console_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line.substr(0, kMaxConsoleLineBytes));
  }
  return lines;
}

// Up to 60 lines of each log: a short log whole, a long one around its first report or at its end
// (where a clean boot hands over to the agent).
std::string excerpt(std::string_view log) {
  constexpr std::size_t window = 60;
  std::vector<std::string_view> lines;
  for (std::size_t pos = 0; pos < log.size();) {
    std::size_t end = std::min(log.find('\n', pos), log.size());
    lines.push_back(log.substr(pos, std::min(end + 1, log.size()) - pos));
    pos = end + 1;
  }
  if (lines.size() <= window) return std::string(log);
  std::size_t first = lines.size() - window;
  if (auto splats = find_splats(log, shipped()); !splats.empty()) {
    std::size_t at = splats.front().line_no - 1;
    first = std::min(first, at > 8 ? at - 8 : 0);
  }
  std::string out;
  for (std::size_t i = first; i < first + window; ++i) out += lines[i];
  return out;
}

// The excerpts of tests/data/console/*.log, in name order.
const std::vector<std::string>& log_excerpts() {
  static const std::vector<std::string> excerpts = [] {
    const kgate::fs::path dir = source_root() / "tests/data/console";
    std::vector<kgate::fs::path> logs;
    std::error_code ec;
    for (kgate::fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().extension() == ".log") logs.push_back(it->path());
    if (ec) die("list " + dir.string() + ": " + ec.message());
    if (logs.empty()) die(dir.string() + " holds no .log file");
    std::sort(logs.begin(), logs.end());
    std::vector<std::string> out;
    for (const auto& path : logs) out.push_back(excerpt(read_or_die(path)));
    return out;
  }();
  return excerpts;
}

// What a fuzzed pattern list scans: every excerpt, one after the other.
const std::string& log_corpus() {
  static const std::string corpus = [] {
    std::string all;
    for (const std::string& e : log_excerpts()) all += e;
    return all;
  }();
  return corpus;
}

bool valid_id(std::string_view id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool matches(const ConsolePattern& p, std::string_view message) {
  return p.prefix ? message.starts_with(p.match) : message.find(p.match) != std::string_view::npos;
}

// What find_splats promises of its result for this console and pattern list.
void check_splats(std::string_view console, const ConsolePatterns& patterns,
                  const std::vector<Splat>& splats) {
  const std::vector<std::string_view> lines = console_lines(console);
  KGATE_FUZZ_CHECK(splats.size() <= kMaxSplats);
  std::size_t after = 0;  // the last line the previous splat holds
  for (const Splat& s : splats) {
    KGATE_FUZZ_CHECK(s.line_no > after && s.line_no <= lines.size());
    KGATE_FUZZ_CHECK(s.line == lines[s.line_no - 1]);
    // Its context is the lines right after it, its lead-in those right before it (after a marker).
    KGATE_FUZZ_CHECK(s.context.size() <= kSplatContextLines && s.lead_in.size() < kSplatContextLines);
    KGATE_FUZZ_CHECK(s.line_no + s.context.size() <= lines.size());
    for (std::size_t i = 0; i < s.context.size(); ++i) KGATE_FUZZ_CHECK(s.context[i] == lines[s.line_no + i]);
    KGATE_FUZZ_CHECK(s.lead_in.empty() || after + 1 + s.lead_in.size() < s.line_no);  // the marker's line too
    for (std::size_t i = 0; i < s.lead_in.size(); ++i)
      KGATE_FUZZ_CHECK(s.lead_in[i] == lines[s.line_no - 1 - s.lead_in.size() + i]);
    after = s.line_no + s.context.size();
    // A pattern of its id names it: its match is in the line (the message is a suffix of the line).
    bool named = false;
    for (const ConsolePattern& p : patterns.splats)
      named = named || (p.id == s.id && s.line.find(p.match) != std::string::npos);
    KGATE_FUZZ_CHECK(named);
    // A line without a timestamp is its own message: no allow pattern may match it.
    if (!s.line.starts_with('['))
      for (const ConsolePattern& a : patterns.allow) KGATE_FUZZ_CHECK(!matches(a, s.line));
  }
}

// What parse_console_patterns promises of a list it accepts.
void check_patterns(const ConsolePatterns& patterns) {
  KGATE_FUZZ_CHECK(!patterns.splats.empty());
  auto check_common = [](const ConsolePattern& p) {
    KGATE_FUZZ_CHECK(valid_id(p.id) && !p.why.empty());
    KGATE_FUZZ_CHECK(!p.match.empty() && p.match.size() <= kMaxConsoleLineBytes);
    KGATE_FUZZ_CHECK(p.match.find_first_of("\r\n") == std::string::npos);
  };
  for (const ConsolePattern& p : patterns.splats) {
    check_common(p);
    KGATE_FUZZ_CHECK(!(p.marker && !p.part_of.empty()));
    for (const std::string& target : p.part_of) {
      bool found = false;
      for (const ConsolePattern& q : patterns.splats) found = found || (q.id == target && !q.marker);
      KGATE_FUZZ_CHECK(found);
    }
  }
  for (std::size_t i = 0; i < patterns.allow.size(); ++i) {
    const ConsolePattern& a = patterns.allow[i];
    check_common(a);
    KGATE_FUZZ_CHECK(!a.marker && a.part_of.empty());
    for (std::size_t j = 0; j < i; ++j) KGATE_FUZZ_CHECK(patterns.allow[j].id != a.id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const ConsolePatterns& patterns = shipped();
  auto splats = find_splats(text, patterns);
  check_splats(text, patterns, splats);

  auto parsed = parse_console_patterns(text, "fuzz/console-patterns.json");
  if (!parsed) {
    KGATE_FUZZ_CHECK(parsed.error().cls() == kgate::FailureClass::usage);
    (void)parsed.error().describe();
    return 0;
  }
  check_patterns(*parsed);
  const std::string& corpus = log_corpus();
  check_splats(corpus, *parsed, find_splats(corpus, *parsed));
  return 0;
}

namespace {

// A list that uses every feature the shipped one leaves out: an allow list, a prefix-less marker,
// part_of naming several ids, a comment string, JSON escapes.
constexpr std::string_view featureful = R"({"schema":"kgate.console-patterns/1","comment":"test list",
 "splats":[
  {"id":"cut","match":"[ cut here ]","marker":true,"why":"marker"},
  {"id":"warn","match":"WARNING: CPU: ","prefix":true,"why":"warn"},
  {"id":"bug","match":"BUG: ","prefix":true,"why":"bug"},
  {"id":"oops","match":"Oops: ","prefix":true,"part_of":["bug","warn"],"why":"part of a bug"},
  {"id":"tab","match":"\t\u00e9\"q\"\\","why":"escapes"},
  {"id":"bug","match":"kernel BUG at ","prefix":false,"why":"a repeated id"}],
 "allow":[
  {"id":"known_warn","match":"at lib/refcount.c:28 ","why":"seen on 6.1 under TCG"},
  {"id":"known_bug","match":"BUG: sleeping","prefix":true,"why":"allowed"}]}
)";

// Each one mistake away from a valid list.
constexpr std::string_view near_misses[] = {
    R"({"schema":"kgate.console-patterns/2","splats":[{"id":"a","match":"x","why":"w"}]})",
    R"({"schema":"kgate.console-patterns/1","splats":[]})",
    R"({"schema":"kgate.console-patterns/1","splats":[{"id":"A-b","match":"x","why":"w"}]})",
    R"({"schema":"kgate.console-patterns/1","splats":[{"id":"a","match":"x\ny","why":"w"}]})",
    R"({"schema":"kgate.console-patterns/1","splats":[{"id":"a","match":"x","why":"w","marker":true,"part_of":["b"]}]})",
    R"({"schema":"kgate.console-patterns/1","splats":[{"id":"a","match":"x","why":"w","part_of":["c"]},{"id":"c","match":"y","why":"w","marker":true}]})",
    R"({"schema":"kgate.console-patterns/1","splats":[{"id":"a","match":"x","why":"w"},{"id":"b","match":"x","why":"w"}]})",
    R"({"schema":"kgate.console-patterns/1","splats":[{"id":"a","match":"x","why":"w"}],"allow":[{"id":"k","match":"x","why":"w"},{"id":"k","match":"y","why":"w"}]})",
    R"({"schema":"kgate.console-patterns/1","splats":[{"id":"a","match":"x","why":"w","extra":1}],"comment":[1]})",
    R"({"schema":"kgate.console-patterns/1","splats":[{"id":"a","match":"x","why":"w"}],"allow":[{"id":"k","match":"x","why":"w","marker":false}]})",
    R"(["kgate.console-patterns/1"])",
    R"({"schema":"\ud800","splats":[{"id":"a","match":tru}]})",
};

// Every line a report of its own: more than kMaxSplats of them, with and without timestamps.
std::string warn_storm() {
  std::string out;
  for (std::size_t i = 0; i < kMaxSplats + 10; ++i) out += i % 2 ? "WARNING: x\n" : "[ 9.0] BUG: y\r\n";
  return out;
}

// Corners of the line splitter and the printk prefix: caller ids, CR LF, a line longer than
// kMaxConsoleLineBytes with its match beyond the cut, a marker that nothing names, no final newline.
std::string corners() {
  std::string out = "[    1.234567][    T1] BUG: kernel NULL pointer dereference, address: 0\r\r\n";
  out += "[    1.234568][    C0] Oops: 0002 [#1] PREEMPT SMP NOPTI\n";
  out += "[    2.000000] " + std::string(kMaxConsoleLineBytes, 'x') + " WARNING: CPU: 0\n";
  out += "WARNING: CPU: 0 PID: 1 at " + std::string(kMaxConsoleLineBytes, 'y') + "\n";
  out += "[    3.000000] ------------[ cut here ]------------\n";
  for (int i = 0; i < 31; ++i) out += "[    3.000001] a line the marker collects\n";
  out += "[   \xff] BUG: soft lockup - CPU#0 stuck for 22s!";
  return out;
}

}  // namespace

std::vector<std::string> kgate_fuzz_seeds() {
  std::vector<std::string> seeds = {shipped_text(), std::string(featureful)};
  for (std::string_view s : near_misses) seeds.emplace_back(s);
  for (const std::string& e : log_excerpts()) seeds.push_back(e);
  seeds.push_back(warn_storm());
  seeds.push_back(corners());
  return seeds;
}

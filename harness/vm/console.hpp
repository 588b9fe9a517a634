#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"

namespace kgate::vm {

// What the serial console says about how the guest ended.
struct ConsoleFindings {
  bool panic = false;        // "Kernel panic - not syncing"
  bool init_died = false;    // PID 1 (the agent) exited: "Attempted to kill init"
  bool agent_fatal = false;  // the agent's own "kgate-agent: fatal:" line
  std::string first_line;    // the line that decided it
};

ConsoleFindings scan_console(std::string_view text);
// The last `count` lines, without carriage returns.
std::vector<std::string> tail_lines(std::string_view text, size_t count);

// One line of kernels/console-patterns.json. `match` is compared with the console line after its
// printk timestamp ("[    1.234567] ") and trailing carriage returns are removed: as a prefix of it
// when `prefix`, anywhere in it otherwise. Plain text, no regex: a reviewer reads exactly what matches.
struct ConsolePattern {
  std::string id;
  std::string match;
  bool prefix = false;
  std::string why;
  // Splats only. A marker ("------------[ cut here ]------------") announces a report that the next
  // matching line names; it becomes a splat of its own only when no such line follows in time.
  bool marker = false;
  // Splats only. A line of this pattern inside an open report with one of these ids is part of that
  // report, not a new one: the "Oops:" line that follows "BUG: kernel NULL pointer dereference".
  std::vector<std::string> part_of;
};

struct ConsolePatterns {
  std::vector<ConsolePattern> splats;  // in file order; the first that matches a line names it
  std::vector<ConsolePattern> allow;   // a line a splat pattern matches and one of these too is skipped
};

// Parses the JSON of kernels/console-patterns.json (schema "kgate.console-patterns/1"); `origin` names
// the file in errors. Any error, unknown keys included, is a `usage` error.
Result<ConsolePatterns> parse_console_patterns(std::string_view json_text, std::string_view origin);
Result<ConsolePatterns> load_console_patterns(const fs::path& path);

// One kernel report found on the console.
struct Splat {
  std::string id;      // the id of the pattern that named it
  size_t line_no = 0;  // 1-based line number of `line` in the console text
  std::string line;    // that line as it appears, timestamp kept, trailing carriage returns removed
  std::vector<std::string> lead_in;  // lines between a marker and `line`: a WARN()'s own message
  std::vector<std::string> context;  // up to kSplatContextLines following lines, e.g. the call trace
};

// Enough for an x86 register dump and the first frames of the call trace after it.
inline constexpr size_t kSplatContextLines = 30;
// A console full of reports (a WARN storm) yields at most this many; the rest are not listed.
inline constexpr size_t kMaxSplats = 1000;
// Longer lines are matched and kept only up to this length; printk's own records are shorter.
inline constexpr size_t kMaxConsoleLineBytes = 2048;

// Every splat in the console text, in order, skipping lines an allow pattern matches. A report's
// context ends at the next line a splat pattern matches. Pure; linear in the size of the text.
std::vector<Splat> find_splats(std::string_view console, const ConsolePatterns& patterns);

}  // namespace kgate::vm

#pragma once

#include <string>
#include <string_view>
#include <vector>

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

}  // namespace kgate::vm

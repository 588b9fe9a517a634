#include "vm/console.hpp"

namespace kgate::vm {

ConsoleFindings scan_console(std::string_view text) {
  ConsoleFindings f;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
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
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string line(text.substr(pos, end - pos));
    std::erase(line, '\r');
    lines.push_back(std::move(line));
    pos = end + 1;
  }
  if (lines.size() > count) lines.erase(lines.begin(), lines.end() - static_cast<long>(count));
  return lines;
}

}  // namespace kgate::vm

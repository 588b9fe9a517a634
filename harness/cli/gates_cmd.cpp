// kgate gates: the pipeline executor's command line.
#include "cli/commands.hpp"
#include "cli/common.hpp"

namespace kgate::cli {

int cmd_gates(int, char**) {
  return usage_error("gates: not built yet");
}

}  // namespace kgate::cli

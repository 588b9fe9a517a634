// kgate digest: the BPF object digest check's command line.
#include "cli/commands.hpp"
#include "cli/common.hpp"

namespace kgate::cli {

int cmd_digest(int, char**) {
  return usage_error("digest: not built yet");
}

}  // namespace kgate::cli

// kgate's command line: dispatches argv[1] to its command (cli/commands.cpp lists them).
#include <fcntl.h>

#include <iostream>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "run/embedded.hpp"

using namespace kgate::cli;

namespace {

// kgate help [COMMAND | exit-codes | man [COMMAND] | completion]
int help(int argc, char** argv) {
  if (argc < 3) {
    std::cout << usage_text();
    return 0;
  }
  const std::string topic = argv[2];
  if (topic == "exit-codes" && argc == 3) {
    std::cout << kgate::exit_code_table();
    return 0;
  }
  if (topic == "completion" && argc == 3) {
    std::cout << bash_completion();
    return 0;
  }
  if (topic == "man" && argc <= 4) {
    if (argc == 3) {
      std::cout << man_page_index();
      return 0;
    }
    const Command* c = find_command(argv[3]);
    if (c == nullptr) return usage_error("no manual page for '" + std::string(argv[3]) + "'");
    std::cout << man_page(*c);
    return 0;
  }
  // `kgate help COMMAND` is `kgate COMMAND --help`.
  if (const Command* c = find_command(topic); c != nullptr && argc == 3) {
    char help_flag[] = "--help";
    char* args[] = {argv[2], help_flag, nullptr};
    return c->main(2, args);
  }
  return usage_error("no help on '" + topic +
                     "': ask for a command, exit-codes, man [COMMAND] or completion");
}

}  // namespace

int main(int argc, char** argv) {
  // Started with stdin, stdout or stderr closed, kgate's own first files would take those
  // numbers, and a child's dup2 onto 0-2 would then overwrite them: hold them with /dev/null.
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) == -1 && ::open("/dev/null", O_RDWR) != fd) return 127;
  }
  if (argc < 2) {
    std::cerr << usage_text();
    return kgate::exit_code(kgate::FailureClass::usage);
  }
  const std::string cmd = argv[1];
  if (const Command* c = find_command(cmd)) return c->main(argc - 1, argv + 1);
  if (cmd == "version" || cmd == "--version") {
    std::cout << "kgate " KGATE_VERSION "\n";
    // Which guest agents this build embeds: the arm64 one needs the cross toolchain at build time.
    const bool arm64 = kgate::run::built_agent(kgate::Arch::arm64).has_value();
    std::cout << "guest agents: x86_64" << (arm64 ? ", arm64" : " (no arm64 agent: scripts/setup.sh --arm64)")
              << "\n";
    return 0;
  }
  if (cmd == "help") return help(argc, argv);
  if (cmd == "-h" || cmd == "--help") {
    std::cout << usage_text();
    return 0;
  }
  return usage_error("unknown command '" + cmd + "'");
}

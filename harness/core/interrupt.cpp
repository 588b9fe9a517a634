#include "interrupt.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>

namespace kgate {
namespace {
int pipe_fds[2] = {-1, -1};
std::atomic<int> arrived{0};

void on_signal(int sig) {
  int expected = 0;
  arrived.compare_exchange_strong(expected, sig);
  if (pipe_fds[1] >= 0) {
    char c = 1;
    [[maybe_unused]] auto n = ::write(pipe_fds[1], &c, 1);
  }
}
}  // namespace

void install_interrupt_handlers() {
  if (pipe_fds[0] >= 0) return;
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) return;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  // A closed pipe or socket (the guest's channel) must surface as EPIPE, not kill us.
  std::signal(SIGPIPE, SIG_IGN);
}

int interrupt_fd() {
  return pipe_fds[0];
}
int interrupt_signal() {
  return arrived.load();
}

void clear_interrupt() {
  if (pipe_fds[0] >= 0) {
    char buf[64];
    while (::read(pipe_fds[0], buf, sizeof buf) > 0) {
    }
  }
  arrived.store(0);
}

}  // namespace kgate

// The user's terminal while kgate relays a guest shell to it: raw mode in, always restored.
#pragma once

#include <termios.h>

#include <span>
#include <string>

#include "error.hpp"

namespace kgate {

// True when both stdin and stdout are terminals (a shell can be relayed).
bool interactive_terminal();

// Puts the terminal on `fd` in raw mode (no echo, no line editing, no signals from keys: Ctrl-C
// and Ctrl-Z go through as bytes) and restores the saved state when destroyed or restored, on
// every path out (a guest that crashed, QEMU gone, SIGTERM: each ends the relay first).
class RawTerminal {
 public:
  static Result<RawTerminal> enter(int fd);
  RawTerminal(RawTerminal&& other) noexcept;
  RawTerminal& operator=(RawTerminal&&) = delete;
  RawTerminal(const RawTerminal&) = delete;
  ~RawTerminal() { restore(); }
  void restore();
  // Rows and columns, 0 when unknown.
  int rows() const { return rows_; }
  int cols() const { return cols_; }

 private:
  RawTerminal() = default;
  int fd_ = -1;
  termios saved_{};
  int rows_ = 0, cols_ = 0;
};

// Copies bytes both ways between the user's terminal (stdin, stdout) and `guest` (the console
// port's socket) until `done` is readable (returns true) or one of `watch` is (returns false).
// The guest closing its end is class no_verdict.
Result<bool> relay_terminal(int guest, int done, std::span<const int> watch);

}  // namespace kgate

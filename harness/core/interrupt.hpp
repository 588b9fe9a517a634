#pragma once

namespace kgate {

// Turns SIGINT and SIGTERM into a readable fd that every wait polls, so Ctrl-C
// ends a wait at once and the caller still stops QEMU and writes its receipt.
void install_interrupt_handlers();
// Readable once a signal arrived; -1 before install_interrupt_handlers().
int interrupt_fd();
// The signal that arrived, or 0.
int interrupt_signal();
// Forgets the signal that arrived: it was an order to stop watching (kgate run --watch), and the
// run goes on to power off as usual. A later signal interrupts again.
void clear_interrupt();

}  // namespace kgate

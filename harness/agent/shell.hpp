// `kgate run --shell`: an interactive busybox shell on the virtio console port that the host
// relays to the user's terminal, with the run's objects pinned for bpftool to find.
#pragma once

#include "agent/loader.hpp"
#include "agent/objects.hpp"
#include "channel/protocol.hpp"

namespace kgate::agent {

// Pins what is loaded (when asked), runs the shell until it exits, ends whatever it left running,
// and unpins. A running loader's output keeps being read meanwhile. No deadline: the user decides.
proto::ShellResponse run_shell(const proto::ShellRequest& req, ObjectTable& objects, Loader& loader);

}  // namespace kgate::agent

#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/error.hpp"
#include "core/unique_fd.hpp"

namespace kgate::agent {

// What PID 1 does before it can talk: mounts, module loading, finding the port.

// Mounts devtmpfs, proc and sysfs (fatal if any fails) and the optional ones
// (tracefs, debugfs, bpffs, securityfs), whose outcome goes into hello.
Result<nlohmann::json> mount_filesystems();
// Loads /etc/kgate/modules in order with finit_module; built-in ones are fine.
Result<nlohmann::json> load_modules();
// Finds the virtio-serial port named `name` under /sys/class/virtio-ports and opens it.
Result<UniqueFd> open_port(const std::string& name, int timeout_ms);
// uname, cmdline, lockdown, LSM list, BTF presence, uptime: the hello payload.
nlohmann::json describe_system();
// A file's whole contents; "" when it cannot be read.
std::string slurp(const char* path);
// Seconds since the kernel booted (CLOCK_BOOTTIME, what /proc/uptime shows), without /proc.
double uptime_s();
// The kernel log ring (klogctl), at most `max_bytes` of its tail.
std::string kernel_log(size_t max_bytes);
[[noreturn]] void power_off();

}  // namespace kgate::agent

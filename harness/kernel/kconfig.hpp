#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace kgate::kernel {

enum class Tristate { no, module, yes };

// A kernel's configuration as its .config file (or IKCONFIG) states it. Plain data.
struct KernelConfig {
  // "CONFIG_BPF_SYSCALL" -> "y"; "# CONFIG_X is not set" -> "n"; strings keep their quotes and
  // escapes as written ("CONFIG_LSM" -> "\"lockdown,yama\""), so a string that reads "y" is not `yes`.
  std::map<std::string, std::string> values;

  // `name` with or without the CONFIG_ prefix. Absent and "n" are `no`; a string or number that is
  // present is `yes`.
  Tristate get(std::string_view name) const;
  // The value with a string's quotes and escapes removed; "" when absent.
  std::string value(std::string_view name) const;
};

// Reads the .config format. Blank lines and comments are skipped, "# CONFIG_X is not set" is "n",
// a repeated option takes its last value (as merge_config does). Anything else, or a text without a
// single option, is an error of class usage naming `origin` and the line numbers.
Result<KernelConfig> parse_kconfig(std::string_view text, std::string_view origin);

// The configuration a kernel built with CONFIG_IKCONFIG=y embeds: gzip data between the markers
// "IKCFG_ST" and "IKCFG_ED". `image_bytes` may be a vmlinux, a bzImage (its payload is decompressed
// first) or a gzip/xz/zstd-compressed image. nullopt when there is none (IKCONFIG unset, or =m, when
// it is in configs.ko); an error of class usage when the image or the embedded data is corrupt.
Result<std::optional<std::string>> extract_ikconfig(std::string_view image_bytes);

// What one gate run needs of its kernel beyond what every run needs.
struct PreflightNeeds {
  bool btf_file_given = false;  // --btf PATH supplied: CONFIG_DEBUG_INFO_BTF not required
  bool lockdown = false;        // the entry asks for lockdown=integrity|confidentiality
  // What the probe's tracepoint needs (syscalls/* by default); empty when it uses no tracepoint.
  std::vector<std::string> tracepoint_configs = {"CONFIG_FTRACE_SYSCALLS"};
  // A virtio_console .ko kgate can carry was found; =m is then enough for it and for the transport,
  // whose module kgate carries alongside it.
  bool virtio_console_module_available = false;
  // QEMU machine: "microvm" and arm64's "virt" use virtio-mmio, any other virtio-pci.
  std::string machine = "q35";
  std::string arch = "x86_64";  // picks the serial console the log comes through
};

// `option` is the CONFIG_ name whose =y is missing; `why` says what needs it and how to get by.
struct PreflightProblem {
  std::string option;
  std::string why;
};

// Every unmet need, in a fixed order; empty when the kernel can run the gate. Things that only
// cost time or change what a run observes go to `warnings` (when given) and never refuse the entry.
std::vector<PreflightProblem> preflight(const KernelConfig& config, const PreflightNeeds& needs,
                                        std::vector<PreflightProblem>* warnings = nullptr);

// One line: "debian-6.1: kernel config lacks CONFIG_DEBUG_INFO_BTF=y (BTF for CO-RE; or pass --btf
// FILE); CONFIG_X=y (...)". Empty when there are no problems.
std::string describe_problems(std::string_view entry, const std::vector<PreflightProblem>& problems);

}  // namespace kgate::kernel

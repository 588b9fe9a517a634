#include "kconfig.hpp"

#include <cstdio>
#include <utility>

#include "core/compress.hpp"
#include "kernel/bzimage.hpp"

namespace kgate::kernel {

using namespace std::literals;

namespace {

constexpr std::string_view prefix = "CONFIG_";

std::string full_name(std::string_view name) {
  return name.starts_with(prefix) ? std::string(name) : std::string(prefix) + std::string(name);
}

bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

bool is_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// "CONFIG_" followed by at least one name character and nothing else.
bool valid_name(std::string_view s) {
  if (!s.starts_with(prefix) || s.size() == prefix.size()) return false;
  for (char c : s.substr(prefix.size()))
    if (!is_name_char(c)) return false;
  return true;
}

// Kconfig writes a string between double quotes, escaping only '"' and '\'. Returns the unescaped
// content, or nothing when the quoted form is malformed: unterminated, holding a control character
// other than tab, or followed by anything.
std::optional<std::string> unquote(std::string_view v) {
  auto control = [](char c) { return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f; };
  if (!v.starts_with('"')) return std::nullopt;
  std::string out;
  for (std::size_t i = 1; i < v.size(); ++i) {
    char c = v[i];
    if (control(c)) return std::nullopt;
    if (c == '"') {
      if (i + 1 != v.size()) return std::nullopt;
      return out;
    }
    if (c == '\\') {
      if (++i == v.size()) return std::nullopt;
      c = v[i];
      if (control(c)) return std::nullopt;
    }
    out += c;
  }
  return std::nullopt;
}

// An int or hex option: Kconfig accepts hex with or without its 0x.
bool is_number(std::string_view v) {
  if (v.starts_with('-')) v.remove_prefix(1);
  if (v.starts_with("0x") || v.starts_with("0X")) v.remove_prefix(2);
  if (v.empty()) return false;
  for (char c : v)
    if (!is_hex_digit(c)) return false;
  return true;
}

// Why the value part of an assignment is malformed, or empty when it is fine.
std::string_view value_problem(std::string_view v) {
  if (v == "y" || v == "m" || v == "n" || is_number(v)) return {};
  if (v.starts_with('"')) return unquote(v) ? ""sv : "malformed quoted string"sv;
  return "expected y, m, n, a number or a quoted string after '='";
}

// The line as the error shows it: at most 60 characters, control bytes escaped.
std::string excerpt(std::string_view line) {
  constexpr std::size_t limit = 60;
  std::string out = "\"";
  for (char c : line.substr(0, limit)) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += line.size() > limit ? "\"..." : "\"";
  return out;
}

std::string_view trim_end(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool lsm_list_has(std::string_view list, std::string_view name) {
  while (!list.empty()) {
    std::size_t comma = list.find(',');
    if (list.substr(0, comma) == name) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// Collects problems; `require` adds one when `option` is not =y.
class Checker {
 public:
  explicit Checker(const KernelConfig& config) : config_(config) {}

  bool is_y(std::string_view option) const { return config_.get(option) == Tristate::yes; }

  void require(std::string_view option, std::string why) {
    if (!is_y(option)) add(option, std::move(why));
  }
  // Like require, but =m does when kgate carries the module.
  void require_built_or_carried(std::string_view option, bool module_carried, std::string why) {
    Tristate t = config_.get(option);
    if (t == Tristate::yes || (t == Tristate::module && module_carried)) return;
    if (t == Tristate::module) why += "; it is =m and kgate found no module of it to carry";
    add(option, std::move(why));
  }
  void add(std::string_view option, std::string why) { out_.push_back({full_name(option), std::move(why)}); }
  std::vector<PreflightProblem> take() && { return std::move(out_); }

 private:
  const KernelConfig& config_;
  std::vector<PreflightProblem> out_;
};

void check_lockdown(const KernelConfig& config, bool lockdown_asked, Checker& problems, Checker& warnings) {
  bool lsm_built = config.get("SECURITY_LOCKDOWN_LSM") == Tristate::yes;
  bool early = config.get("SECURITY_LOCKDOWN_LSM_EARLY") == Tristate::yes;
  // A non-early LSM starts only if CONFIG_LSM lists it (kgate passes no lsm=); without it the
  // kernel accepts lockdown= and then enforces nothing.
  bool listed = lsm_list_has(config.value("LSM"), "lockdown");
  bool active = lsm_built && (early || listed);
  if (lockdown_asked) {
    if (!lsm_built) {
      std::string why = "lockdown= needs the lockdown LSM";
      if (config.get("SECURITY") != Tristate::yes) why += ", which needs CONFIG_SECURITY=y";
      problems.add("SECURITY_LOCKDOWN_LSM", why);
    } else if (!active) {
      std::string lsm = config.values.contains("CONFIG_LSM")
                            ? "CONFIG_LSM=" + config.values.at("CONFIG_LSM") + " does not list lockdown"
                            : "CONFIG_LSM is not set";
      problems.add("SECURITY_LOCKDOWN_LSM_EARLY",
                   "the lockdown LSM never starts, so lockdown= would be ignored: " + lsm +
                       "; set this or add lockdown to CONFIG_LSM");
    }
    problems.require("SECURITYFS", "the agent reads the lockdown level from /sys/kernel/security/lockdown");
  }
  // The Kconfig choice: a forced level is applied when the LSM starts, whatever the command line asks
  // (which can only raise it).
  if (!active) return;
  if (config.get("LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY") == Tristate::yes) {
    warnings.add("LOCK_DOWN_KERNEL_FORCE_NONE",
                 "CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY=y: the kernel locks itself down to "
                 "confidentiality at boot, whatever the entry asks");
  } else if (config.get("LOCK_DOWN_KERNEL_FORCE_INTEGRITY") == Tristate::yes && !lockdown_asked) {
    warnings.add("LOCK_DOWN_KERNEL_FORCE_NONE",
                 "CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY=y: the kernel locks itself down to integrity at "
                 "boot, though the entry asks for no lockdown");
  }
}

}  // namespace

Tristate KernelConfig::get(std::string_view name) const {
  auto it = values.find(full_name(name));
  if (it == values.end() || it->second == "n") return Tristate::no;
  if (it->second == "m") return Tristate::module;
  return Tristate::yes;
}

std::string KernelConfig::value(std::string_view name) const {
  auto it = values.find(full_name(name));
  if (it == values.end()) return {};
  // The parser admits only well-formed strings; a hand-built map might hold anything.
  if (it->second.starts_with('"')) return unquote(it->second).value_or(it->second);
  return it->second;
}

Result<KernelConfig> parse_kconfig(std::string_view text, std::string_view origin) {
  constexpr std::size_t listed_max = 10;
  KernelConfig config;
  std::string first_error;
  std::vector<std::size_t> more;  // line numbers of further malformed lines
  std::size_t more_count = 0;
  auto malformed = [&](std::size_t number, std::string_view line, std::string_view why) {
    if (first_error.empty()) {
      first_error =
          std::string(origin) + ":" + std::to_string(number) + ": " + std::string(why) + ": " + excerpt(line);
      return;
    }
    ++more_count;
    if (more.size() < listed_max) more.push_back(number);
  };

  std::size_t number = 0;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view line = trim_end(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++number;
    if (line.empty()) continue;
    if (line.starts_with('#')) {
      constexpr std::string_view lead = "# ", tail = " is not set";
      if (line.starts_with(lead) && line.ends_with(tail) && line.size() > lead.size() + tail.size()) {
        std::string_view name = line.substr(lead.size(), line.size() - lead.size() - tail.size());
        if (valid_name(name)) config.values[std::string(name)] = "n";
      }
      continue;  // any other comment
    }
    std::size_t eq = line.find('=');
    if (!line.starts_with(prefix) || eq == std::string_view::npos) {
      malformed(number, line, "expected CONFIG_NAME=value or a # comment");
      continue;
    }
    std::string_view name = line.substr(0, eq), value = line.substr(eq + 1);
    if (!valid_name(name)) {
      malformed(number, line, "malformed option name");
      continue;
    }
    if (auto why = value_problem(value); !why.empty()) {
      malformed(number, line, why);
      continue;
    }
    config.values[std::string(name)] = std::string(value);
  }

  if (!first_error.empty()) {
    if (more_count > 0) {
      first_error +=
          "; " + std::to_string(more_count) + " more malformed line" + (more_count > 1 ? "s" : "") + ": ";
      for (std::size_t i = 0; i < more.size(); ++i) first_error += (i ? ", " : "") + std::to_string(more[i]);
      if (more_count > more.size()) first_error += ", ...";
    }
    return fail(FailureClass::usage, std::move(first_error));
  }
  if (config.values.empty())
    return fail(FailureClass::usage, std::string(origin) + ": no CONFIG_ options: not a kernel .config");
  return config;
}

Result<std::optional<std::string>> extract_ikconfig(std::string_view image_bytes) {
  // Far above any real configuration (a few hundred KiB), low enough that a crafted stream cannot
  // exhaust memory.
  constexpr std::size_t config_max = std::size_t{64} << 20;
  std::string unpacked;
  std::string_view bytes = image_bytes;
  if (image_bytes.size() >= 0x206 && image_bytes.substr(0x202, 4) == "HdrS") {  // a bzImage
    auto vmlinux = extract_vmlinux(image_bytes);
    if (!vmlinux) return std::unexpected(std::move(vmlinux.error()).context("IKCONFIG"));
    unpacked = std::move(*vmlinux);
    bytes = unpacked;
  } else if (detect_compression(image_bytes) != Compression::none) {
    auto image = decompress(image_bytes);
    if (!image) return std::unexpected(std::move(image.error()).context("IKCONFIG: kernel image"));
    unpacked = std::move(*image);
    bytes = unpacked;
  }

  // The start marker is followed at once by the gzip magic and method (deflate); requiring them
  // skips a stray "IKCFG_ST" elsewhere in the image.
  constexpr std::string_view start = "IKCFG_ST\x1f\x8b\x08"sv, end = "IKCFG_ED"sv;
  std::size_t at = bytes.find(start);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view data = bytes.substr(at + 8);
  if (data.find(end) == std::string_view::npos)
    return fail(FailureClass::usage, "IKCONFIG: start marker without the end marker IKCFG_ED");
  // The decoder stops at the end of its stream and ignores what follows, so the data is not cut at
  // the end marker: those eight bytes could occur inside the compressed stream.
  auto text = decompress(data, config_max);
  if (!text) return std::unexpected(std::move(text.error()).context("IKCONFIG"));
  return std::optional<std::string>(std::move(*text));
}

std::vector<PreflightProblem> preflight(const KernelConfig& config, const PreflightNeeds& needs,
                                        std::vector<PreflightProblem>* warnings) {
  Checker p(config), w(config);

  // Maps of every type, the ring buffer included, and CO-RE relocations need nothing beyond the
  // bpf() syscall and BTF (kernel/bpf/Makefile builds ringbuf.o with CONFIG_BPF_SYSCALL).
  p.require("BPF_SYSCALL", "the bpf() system call");
  if (!needs.btf_file_given) p.require("DEBUG_INFO_BTF", "BTF for CO-RE; or pass --btf FILE");
  p.require("BPF_EVENTS", "tracepoint and uprobe programs attach through perf events");
  if (!needs.tracepoint_configs.empty()) {
    p.require("TRACEPOINTS", "the probe attaches to a tracepoint");
    for (const auto& option : needs.tracepoint_configs) {
      if (full_name(option) != "CONFIG_TRACEPOINTS") p.require(option, "the probe's tracepoint");
    }
  }
  p.require("UPROBES", "uprobe programs");
  p.require("UPROBE_EVENTS", "libbpf attaches uprobes through the perf uprobe PMU");

  p.require_built_or_carried("VIRTIO_CONSOLE", needs.virtio_console_module_available,
                             "the virtio-serial channel to the guest agent");
  // qemu_argv() gives microvm and virt virtio-serial-device (mmio), every other machine
  // virtio-serial-pci.
  bool mmio = needs.machine == "microvm" || needs.machine == "virt";
  p.require_built_or_carried(mmio ? "VIRTIO_MMIO" : "VIRTIO_PCI", needs.virtio_console_module_available,
                             "the virtio transport of the " + needs.machine + " machine");
  if (needs.arch == "arm64") {
    p.require("SERIAL_AMBA_PL011_CONSOLE",
              "console=ttyAMA0: the console log that shows boot failures and panics");
  } else {
    p.require("SERIAL_8250_CONSOLE", "console=ttyS0: the console log that shows boot failures and panics");
  }
  p.require("DEVTMPFS", "the agent mounts devtmpfs on /dev to find its virtio port");
  p.require("BLK_DEV_INITRD", "kgate boots the agent from an initramfs");
  p.require("RD_ZSTD", "kgate's initramfs is zstd-compressed");

  check_lockdown(config, needs.lockdown, p, w);

  // PVH exists only on x86; elsewhere its absence says nothing.
  if (config.get("X86") == Tristate::yes)
    w.require("PVH",
              "no PVH entry: kgate boots the bzImage, whose self-decompression costs seconds under TCG");
  w.require("BPF_JIT",
            "programs run in the interpreter: slower, and calls to kernel functions (kfuncs) are refused");

  if (warnings) *warnings = std::move(w).take();
  return std::move(p).take();
}

std::string describe_problems(std::string_view entry, const std::vector<PreflightProblem>& problems) {
  if (problems.empty()) return {};
  std::string out = std::string(entry) + ": kernel config lacks ";
  for (std::size_t i = 0; i < problems.size(); ++i) {
    if (i) out += "; ";
    out += problems[i].option + "=y (" + problems[i].why + ")";
  }
  return out;
}

}  // namespace kgate::kernel

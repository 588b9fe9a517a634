#include "vm/qemu_argv.hpp"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <sys/stat.h>

#include "core/files.hpp"
#include "core/interrupt.hpp"
#include "core/strings.hpp"
#include "core/subprocess.hpp"
#include "core/unique_fd.hpp"

namespace kgate::vm {

std::string_view accel_name(Accel a) {
  return a == Accel::kvm ? "kvm" : "tcg";
}

Accel detect_accel() {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm.valid()) return Accel::tcg;
  return ::ioctl(kvm.get(), KVM_GET_API_VERSION, 0) == KVM_API_VERSION ? Accel::kvm : Accel::tcg;
}

std::optional<std::string> kvm_kernel_probe(const fs::path& qemu, const fs::path& kernel, Arch arch,
                                            const fs::path& state_dir) {
  const fs::path console = state_dir / strprintf("kvm-probe-%d.log", static_cast<int>(::getpid()));
  std::error_code ec;
  fs::remove(console, ec);
  auto child =
      Child::spawn({qemu.string(),
                    "-accel",
                    "kvm",
                    "-cpu",
                    "host",
                    "-M",
                    std::string(traits(arch).machine),
                    "-m",
                    "256",
                    "-nodefaults",
                    "-no-user-config",
                    "-display",
                    "none",
                    "-no-reboot",
                    "-serial",
                    "file:" + console.string(),
                    "-kernel",
                    kernel.string(),
                    "-append",
                    "console=" + std::string(traits(arch).console) + " panic=-1 rdinit=/nonexistent"});
  if (!child) return "QEMU did not start: " + child.error().describe();
  std::optional<std::string> failed = "the kernel printed nothing within 5 s under KVM";
  const Deadline deadline(std::chrono::seconds(5));
  while (!deadline.expired() && interrupt_signal() == 0) {
    if (read_file(console).value_or("").find("Linux version") != std::string::npos) {
      failed.reset();
      break;
    }
    if (auto done = child->wait(Deadline(std::chrono::milliseconds(50)))) {
      failed = "QEMU " + describe_status(*done) + " before the kernel's banner";
      break;
    }
  }
  child->terminate(std::chrono::seconds(1));
  fs::remove(console, ec);
  return failed;
}

AccelChoice choose_accel(const fs::path& qemu, const fs::path& state_dir, Arch arch,
                         const fs::path& probe_kernel) {
  const std::string tcg_cpu(traits(arch).tcg_cpu);
  if (arch != host_arch()) {
    return {Accel::tcg, tcg_cpu,
            strprintf("tcg: an %s guest on an %s host (KVM runs only the host's arch)",
                      std::string(arch_name(arch)).c_str(), std::string(arch_name(host_arch())).c_str())};
  }
  if (detect_accel() != Accel::kvm) return {Accel::tcg, tcg_cpu, "tcg: no usable /dev/kvm"};
  struct stat st {};
  ::stat(qemu.c_str(), &st);
  std::string boot_id = read_file("/proc/sys/kernel/random/boot_id").value_or("");
  // "2": verdicts of the probe before it booted a kernel are not reused.
  std::string key =
      sha256_hex(strprintf("2 %s %s %jd %jd %d", boot_id.c_str(), qemu.c_str(), intmax_t(st.st_size),
                           intmax_t(st.st_mtim.tv_sec), probe_kernel.empty() ? 0 : 1));
  fs::path verdict_file = state_dir / ("kvm-" + key);
  if (auto cached = read_file(verdict_file)) {
    auto lines = split_lines(*cached);
    if (lines.size() == 3 && (lines[0] == "kvm" || lines[0] == "tcg")) {
      return {lines[0] == "kvm" ? Accel::kvm : Accel::tcg, std::string(lines[1]), std::string(lines[2])};
    }
  }
  // A working KVM leaves the paused VM running; a broken one aborts within ~30 ms.
  // Measured on a nested host that refuses QEMU's write of IA32_ARCH_CAPABILITIES
  // (MSR 0x10a): with that feature off (-cpu host,-arch-capabilities) the paused
  // VM comes up, but a kernel then stops after its real-mode setup and never
  // prints again. So only -cpu host counts, and such a host runs under TCG.
  AccelChoice choice{Accel::tcg, tcg_cpu, "tcg: /dev/kvm is present but QEMU could not set up a KVM vCPU"};
  for (const char* cpu : {"host"}) {
    auto probe =
        Child::spawn({qemu.string(), "-accel", "kvm", "-cpu", cpu, "-M", std::string(traits(arch).machine),
                      "-m", "64", "-nodefaults", "-no-user-config", "-display", "none", "-S"});
    if (!probe) {
      choice.note = "tcg: KVM probe could not start QEMU: " + probe.error().describe();
      break;
    }
    auto st_exit = probe->wait(Deadline(std::chrono::milliseconds(700)));
    if (st_exit) {
      choice.note += std::string("; -cpu ") + cpu + ": QEMU " + describe_status(*st_exit);
      continue;
    }
    if (st_exit.error().cls() != FailureClass::timeout) {
      // Interrupted (or a poll failure): that says nothing about KVM; decide nothing and cache nothing.
      return {Accel::tcg, tcg_cpu, "tcg: KVM probe ended early: " + st_exit.error().describe()};
    }
    probe->terminate(std::chrono::seconds(1));
    choice = {Accel::kvm, cpu, std::string("kvm: a paused VM with -cpu ") + cpu + " came up"};
    break;
  }
  if (choice.accel == Accel::kvm && !probe_kernel.empty()) {
    (void)make_dirs(state_dir);
    if (auto failed = kvm_kernel_probe(qemu, probe_kernel, arch, state_dir)) {
      // Interrupted: that says nothing about KVM; decide nothing and cache nothing.
      if (interrupt_signal() != 0) return {Accel::tcg, tcg_cpu, "tcg: KVM probe interrupted"};
      choice = {Accel::tcg, tcg_cpu, "tcg: /dev/kvm runs a paused VM, but " + *failed};
    } else {
      choice.note += ", and a kernel printed its banner";
    }
  }
  (void)make_dirs(state_dir);
  (void)write_file_atomic(verdict_file,
                          std::string(accel_name(choice.accel)) + "\n" + choice.cpu + "\n" + choice.note);
  return choice;
}

std::string qemu_escape(std::string_view value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

bool virtio_mmio_machine(std::string_view machine) {
  return machine == "microvm" || machine == "virt";
}

std::string kernel_cmdline(Arch arch, const std::vector<std::string>& extra) {
  // rcupdate.rcu_expedited=1: destroying a tracepoint or uprobe link waits for RCU
  // grace periods, ~37 ms each under TCG; expedited ones take ~1-8 ms (measured:
  // detach 77 -> 13 ms, attach 30 -> 20 ms).
  // loglevel=6: the console prints notices and worse (every splat the console scan looks for is a
  // warning or worse, the banner and command line are notices) and not the boot's info chatter,
  // which costs a TCG serial port about 40 ms a boot; the whole log comes over the channel
  // (kernel.log). A later loglevel= in `extra` (--append) wins.
  std::string line = "console=" + std::string(traits(arch).console) +
                     " loglevel=6 panic=-1 rcupdate.rcu_expedited=1 rdinit=/init";
  for (const auto& word : extra) line += " " + word;
  return line;
}

std::vector<std::string> qemu_argv(const VmSpec& spec) {
  const bool mmio = virtio_mmio_machine(spec.machine);
  std::vector<std::string> argv = {
      spec.qemu.string(),
      "-M",
      spec.machine,
      "-accel",
      std::string(accel_name(spec.accel)),
      "-cpu",
      !spec.cpu.empty()          ? spec.cpu
      : spec.accel == Accel::kvm ? "host"
                                 : std::string(traits(spec.arch).tcg_cpu),
      "-m",
      std::to_string(spec.memory_mib),
      "-smp",
      std::to_string(spec.cpus),
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-nic",
      "none",
      "-no-reboot",
      "-chardev",
      "file,id=console,path=" + qemu_escape(spec.console_log.string()),
      "-serial",
      "chardev:console",
      "-device",
      mmio ? "virtio-serial-device,id=vser,max_ports=2" : "virtio-serial-pci,id=vser,max_ports=2",
      "-chardev",
      "socket,id=channel,path=" + qemu_escape(spec.channel_socket.string()),
      "-device",
      "virtserialport,bus=vser.0,chardev=channel,name=" + qemu_escape(spec.port_name),
      "-kernel",
      spec.kernel.string(),
      "-initrd",
      spec.initrd.string(),
      "-append",
      spec.cmdline,
  };
  if (!spec.shell_socket.empty()) {
    // Port 0 of the same device, which virtio-serial keeps for a console.
    argv.insert(argv.end(), {"-chardev", "socket,id=shell,path=" + qemu_escape(spec.shell_socket.string()),
                             "-device", "virtconsole,bus=vser.0,nr=0,chardev=shell"});
  }
  argv.insert(argv.end(), spec.extra.begin(), spec.extra.end());
  return argv;
}

}  // namespace kgate::vm

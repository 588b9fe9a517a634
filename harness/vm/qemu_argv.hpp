#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/files.hpp"
#include "vm/arch.hpp"

namespace kgate::vm {

enum class Accel { kvm, tcg };
std::string_view accel_name(Accel a);

// KVM when /dev/kvm opens read-write and answers KVM_GET_API_VERSION, else TCG.
Accel detect_accel();

// The accelerator and CPU model to use, with the reason. A /dev/kvm that opens is
// not enough: on some nested hosts QEMU aborts setting up a KVM vCPU with -cpu
// host (the host refuses one MSR write), and on others the vCPU runs the firmware but
// a kernel stops before its first line. So QEMU itself is started, paused, with KVM,
// and then boots `probe_kernel` (when given) under KVM until it prints "Linux version";
// the choice is cached in `state_dir` per host boot and QEMU binary. A guest of
// another arch than the host's runs under TCG without a probe: KVM cannot run it.
struct AccelChoice {
  Accel accel;
  std::string cpu;   // the -cpu value
  std::string note;  // why
};
AccelChoice choose_accel(const fs::path& qemu, const fs::path& state_dir, Arch arch = host_arch(),
                         const fs::path& probe_kernel = {});

// choose_accel's second probe: boots `kernel` under KVM, its console in a file under `state_dir`,
// for at most 5 s. Nothing when the kernel printed "Linux version"; else why not (under a working
// KVM the banner comes within a few hundred ms).
std::optional<std::string> kvm_kernel_probe(const fs::path& qemu, const fs::path& kernel, Arch arch,
                                            const fs::path& state_dir);

// Everything QEMU needs for one gate VM. Plain data; qemu_argv() turns it into argv.
struct VmSpec {
  fs::path qemu;
  Arch arch = Arch::x86_64;  // set machine to traits(arch).machine with it
  // q35: on pc (i440fx), evaluating the ACPI PCI interrupt link when virtio_pci
  // probes costs ~100 ms under TCG; on q35 the module loads in ~10 ms. acpi=noirq
  // on pc was as fast but makes Debian's cloud kernel WARN in pci_msi_setup_msi_irqs.
  std::string machine = "q35";
  Accel accel = Accel::tcg;
  std::string cpu;  // empty: host with KVM, traits(arch).tcg_cpu under TCG
  fs::path kernel;  // x86: an uncompressed vmlinux (booted through PVH) or a bzImage; arm64: an Image
  fs::path initrd;
  std::string cmdline;
  int memory_mib = 512;
  int cpus = 1;
  fs::path console_log;            // the guest's serial console goes to this file
  fs::path channel_socket;         // a unix socket kgate listens on; QEMU connects to it
  std::string port_name;           // the virtio-serial port name the agent looks for
  fs::path shell_socket;           // set: a virtio console port (the guest's hvc0) on this socket
  std::vector<std::string> extra;  // appended verbatim (--qemu-arg)
};

// The kernel command line kgate always sets (console=<the arch's first serial port>),
// then the caller's additions. panic=-1 with -no-reboot turns a panic into a prompt QEMU exit.
std::string kernel_cmdline(Arch arch, const std::vector<std::string>& extra);

// True when qemu_argv() puts the virtio-serial device on virtio-mmio (microvm, arm64's virt)
// rather than PCI: the guest then needs VIRTIO_MMIO rather than VIRTIO_PCI.
bool virtio_mmio_machine(std::string_view machine);

// Pure: the same spec gives the same argv. No shell is involved.
std::vector<std::string> qemu_argv(const VmSpec& spec);

// QEMU's option syntax separates with commas; a comma inside a value is doubled.
std::string qemu_escape(std::string_view value);

}  // namespace kgate::vm

#include <doctest/doctest.h>

#include <algorithm>

#include "core/files.hpp"
#include "vm/console.hpp"
#include "vm/qemu_argv.hpp"

using namespace kgate::vm;

namespace {
VmSpec base_spec() {
  VmSpec s;
  s.qemu = "/usr/bin/qemu-system-x86_64";
  s.kernel = "/cache/vmlinux";
  s.initrd = "/cache/initrd";
  s.cmdline = kernel_cmdline(Arch::x86_64, {});
  s.console_log = "/out/console.log";
  s.channel_socket = "/tmp/k/channel.sock";
  s.port_name = "org.kgate.channel";
  return s;
}

// The value following `flag`, or "" if absent; checks the flag appears once.
std::string value_of(const std::vector<std::string>& argv, const std::string& flag) {
  auto it = std::find(argv.begin(), argv.end(), flag);
  if (it == argv.end() || it + 1 == argv.end()) return "";
  CHECK(std::count(argv.begin(), argv.end(), flag) == 1);
  return *(it + 1);
}
}  // namespace

TEST_CASE("qemu argv: the TCG q35 machine, table of flags") {
  auto argv = qemu_argv(base_spec());
  CHECK(argv.front() == "/usr/bin/qemu-system-x86_64");
  struct Row {
    const char* flag;
    const char* value;
  };
  const Row rows[] = {
      {"-M", "q35"},
      {"-accel", "tcg"},
      {"-cpu", "max"},
      {"-m", "512"},
      {"-smp", "1"},
      {"-display", "none"},
      {"-nic", "none"},
      {"-serial", "chardev:console"},
      {"-kernel", "/cache/vmlinux"},
      {"-initrd", "/cache/initrd"},
      {"-append", "console=ttyS0 loglevel=6 panic=-1 rcupdate.rcu_expedited=1 rdinit=/init"},
  };
  for (const auto& row : rows) {
    CAPTURE(row.flag);
    CHECK(value_of(argv, row.flag) == row.value);
  }
  for (const char* bare : {"-nodefaults", "-no-user-config", "-no-reboot"}) {
    CAPTURE(bare);
    CHECK(std::count(argv.begin(), argv.end(), std::string(bare)) == 1);
  }
  CHECK(std::count(argv.begin(), argv.end(), "virtio-serial-pci,id=vser,max_ports=2") == 1);
  CHECK(std::count(argv.begin(), argv.end(), "socket,id=channel,path=/tmp/k/channel.sock") == 1);
  CHECK(std::count(argv.begin(), argv.end(),
                   "virtserialport,bus=vser.0,chardev=channel,name=org.kgate.channel") == 1);
  CHECK(std::count(argv.begin(), argv.end(), "file,id=console,path=/out/console.log") == 1);
}

TEST_CASE("qemu argv: KVM uses the host CPU; microvm the mmio transport") {
  auto spec = base_spec();
  spec.accel = Accel::kvm;
  spec.machine = "microvm";
  auto argv = qemu_argv(spec);
  CHECK(value_of(argv, "-accel") == "kvm");
  CHECK(value_of(argv, "-cpu") == "host");
  CHECK(std::count(argv.begin(), argv.end(), "virtio-serial-device,id=vser,max_ports=2") == 1);
  spec.cpu = "host,-pmu";
  CHECK(value_of(qemu_argv(spec), "-cpu") == "host,-pmu");
}

TEST_CASE("qemu argv: pure, commas escaped, extras last") {
  auto spec = base_spec();
  spec.console_log = "/out/a,b/console.log";
  spec.extra = {"-s", "-S"};
  auto a = qemu_argv(spec);
  CHECK(a == qemu_argv(spec));
  CHECK(std::count(a.begin(), a.end(), "file,id=console,path=/out/a,,b/console.log") == 1);
  CHECK(a[a.size() - 2] == "-s");
  CHECK(a.back() == "-S");
  CHECK(qemu_escape("a,b,,c") == "a,,b,,,,c");
}

TEST_CASE("kernel command line: kgate's words first, the caller's appended") {
  CHECK(kernel_cmdline(Arch::x86_64, {"lockdown=integrity", "rdinit=/missing"}) ==
        "console=ttyS0 loglevel=6 panic=-1 rcupdate.rcu_expedited=1 rdinit=/init lockdown=integrity "
        "rdinit=/missing");
  CHECK(kernel_cmdline(Arch::arm64, {}) ==
        "console=ttyAMA0 loglevel=6 panic=-1 rcupdate.rcu_expedited=1 rdinit=/init");
}

TEST_CASE("qemu argv: arm64 on virt, cortex-a57 under TCG, virtio-serial on mmio") {
  auto spec = base_spec();
  spec.qemu = "/usr/bin/qemu-system-aarch64";
  spec.arch = Arch::arm64;
  spec.machine = std::string(traits(Arch::arm64).machine);
  spec.cmdline = kernel_cmdline(Arch::arm64, {});
  auto argv = qemu_argv(spec);
  CHECK(argv.front() == "/usr/bin/qemu-system-aarch64");
  CHECK(value_of(argv, "-M") == "virt");
  CHECK(value_of(argv, "-cpu") == "cortex-a57");
  CHECK(value_of(argv, "-nic") == "none");
  CHECK(value_of(argv, "-append").starts_with("console=ttyAMA0 "));
  CHECK(std::count(argv.begin(), argv.end(), "virtio-serial-device,id=vser,max_ports=2") == 1);
  CHECK(virtio_mmio_machine("virt"));
  CHECK(virtio_mmio_machine("microvm"));
  CHECK_FALSE(virtio_mmio_machine("q35"));
}

TEST_CASE("arch names: the catalog's, and the common other spellings") {
  CHECK(parse_arch("x86_64") == Arch::x86_64);
  CHECK(parse_arch("amd64") == Arch::x86_64);
  CHECK(parse_arch("arm64") == Arch::arm64);
  CHECK(parse_arch("aarch64") == Arch::arm64);
  CHECK_FALSE(parse_arch("riscv64").has_value());
  CHECK(arch_name(Arch::arm64) == "arm64");
  CHECK(traits(Arch::arm64).qemu == "qemu-system-aarch64");
  CHECK(traits(Arch::x86_64).console == "ttyS0");
}

TEST_CASE("accel: a guest of another arch than the host's is TCG, with that arch's CPU, unprobed") {
  const Arch foreign = host_arch() == Arch::x86_64 ? Arch::arm64 : Arch::x86_64;
  // No QEMU binary and no state directory are touched: the choice is made before either.
  auto choice = choose_accel("/nonexistent/qemu", "/nonexistent/state", foreign);
  CHECK(choice.accel == Accel::tcg);
  CHECK(choice.cpu == traits(foreign).tcg_cpu);
  CHECK(choice.note.find("KVM runs only the host's arch") != std::string::npos);
}

TEST_CASE("accel: the kernel probe wants the banner; silence, a crash or no QEMU is a reason for TCG") {
  namespace fs = std::filesystem;
  auto tmp = kgate::TempDir::create("kgate-accel").value();
  // A stand-in QEMU: a shell script given the probe's argv; it writes its "console" where -serial
  // file:PATH says, as QEMU does.
  auto fake = [&](const std::string& name, const std::string& body) {
    const fs::path p = tmp.path() / name;
    REQUIRE(kgate::write_file_atomic(
                p, "#!/bin/sh\nfor a; do case $a in file:*) out=${a#file:};; esac; done\n" + body + "\n")
                .has_value());
    fs::permissions(p, fs::perms::owner_all);
    return p;
  };
  const fs::path kernel = tmp.path() / "vmlinux";
  REQUIRE(kgate::write_file_atomic(kernel, "not booted").has_value());
  CHECK_FALSE(
      kvm_kernel_probe(fake("prints", "printf 'early\\nLinux version 6.1\\n' > \"$out\"; exec sleep 30"),
                       kernel, Arch::x86_64, tmp.path())
          .has_value());
  auto silent = kvm_kernel_probe(fake("silent", "exec sleep 30"), kernel, Arch::x86_64, tmp.path());
  REQUIRE(silent.has_value());
  CHECK(*silent == "the kernel printed nothing within 5 s under KVM");
  auto crash =
      kvm_kernel_probe(fake("crash", "echo BIOS > \"$out\"; exit 1"), kernel, Arch::x86_64, tmp.path());
  REQUIRE(crash.has_value());
  CHECK(crash->find("before the kernel's banner") != std::string::npos);
  CHECK(kvm_kernel_probe(tmp.path() / "absent", kernel, Arch::x86_64, tmp.path()).has_value());
  // The console file does not outlive the probe.
  for (const auto& e : fs::directory_iterator(tmp.path()))
    CHECK(e.path().filename().string().find("kvm-probe") == std::string::npos);
}

TEST_CASE("console scan tells a panic, a dead agent and a clean log apart") {
  auto clean = scan_console("Linux version 6.1\r\nreboot: Power down\r\n");
  CHECK_FALSE(clean.panic);
  CHECK_FALSE(clean.init_died);
  auto panic = scan_console("x\nKernel panic - not syncing: VFS: Unable to mount root fs\n");
  CHECK(panic.panic);
  CHECK_FALSE(panic.init_died);
  CHECK(panic.first_line == "Kernel panic - not syncing: VFS: Unable to mount root fs");
  auto died = scan_console(
      "kgate-agent: fatal: no port\nKernel panic - not syncing: Attempted to kill init! exitcode=0x100\n");
  CHECK(died.agent_fatal);
  CHECK(died.init_died);
  CHECK(died.panic);
  CHECK(died.first_line == "kgate-agent: fatal: no port");
  CHECK(tail_lines("a\r\nb\nc\n", 2) == std::vector<std::string>{"b", "c"});
}

#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"
#include "report/receipt.hpp"
#include "run/lockdown.hpp"
#include "vm/arch.hpp"

namespace kgate::run {

// One `kgate run`: which kernel, where results go, and the deadlines.
struct RunRequest {
  std::string name;      // the matrix entry's name, for the receipt; empty: the catalog entry's
  std::string entry;     // catalog entry; empty: the catalog's default
  fs::path kernel;       // --kernel: a bzImage or vmlinux file instead of an entry
  fs::path modules_dir;  // --modules, with --kernel
  fs::path btf;          // --btf: BTF for CO-RE when the kernel has none of its own
  fs::path spec;         // --spec: the run spec (docs/spec.md); empty: kgate's built-in probe
  fs::path object;       // --object: a BPF object; with --spec, it replaces the spec's one object
  fs::path catalog;      // kernels/catalog.json
  fs::path cache_root;
  fs::path out_dir;  // receipt.json, console.log and qemu.log go here
  // --arch: the guest arch. A catalog entry of another arch is a usage error; with no entry,
  // the catalog's default for this arch. Unset: the entry's arch (--kernel: x86_64).
  std::optional<vm::Arch> arch;
  std::string qemu;                         // empty: the arch's (qemu-system-x86_64, qemu-system-aarch64)
  int count = 8;                            // triggers per program; each must fire at least this often
  Lockdown lockdown = Lockdown::none;       // appended as lockdown=<level>, then proven in the guest
  std::optional<double> boot_timeout_s;     // default: 20 s with KVM, 90 s under TCG
  std::optional<double> request_timeout_s;  // default: 10 s with KVM, 60 s under TCG
  std::vector<std::string> append;          // extra kernel command line words
  std::vector<std::string> qemu_args;       // extra QEMU arguments
  bool refresh = false;                     // re-resolve the entry's package even if cached
  // A user's loader (the spec's "loader" names its programs): --exec replaces its executable,
  // the words after "--" its arguments; --file ships more files; --sysroot is searched first for
  // a dynamic loader's libraries.
  // --image runs the loader from a container image ("oci-layout:DIR[:REF]" or a registry reference
  // pinned by digest); with it, --exec is the executable's absolute path in the image.
  std::string image;
  fs::path exec;
  std::optional<std::vector<std::string>> exec_args;
  struct File {
    fs::path source;
    std::string dest;  // absolute, in the guest
  };
  std::vector<File> files;
  std::vector<fs::path> sysroots;
};

struct RunOutcome {
  FailureClass verdict = FailureClass::no_verdict;
  std::string message;
  fs::path receipt_path;
  report::Receipt receipt;
};

// Called as the run enters each phase ("kernel", "initramfs", "boot", "load", ...).
using ProgressFn = std::function<void(std::string_view phase)>;

// Runs the gate. Never throws and always writes the receipt (and the console log,
// once QEMU started); QEMU is stopped before it returns, whatever happened.
RunOutcome run_gate(const RunRequest& request, const ProgressFn& progress);

}  // namespace kgate::run

#pragma once

#include <functional>
#include <map>
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
  // --gdb: QEMU's gdbstub, "unix" (a socket gdb.sock in the receipt directory) or
  // "tcp:HOST:PORT"; empty: none. With it the kernel gets nokaslr and no guest deadline runs
  // (a debugger may hold the guest); gdb_wait holds the guest at its first instruction.
  std::string gdb;
  bool gdb_wait = false;
  // --shell: an interactive shell in the guest on this terminal, before anything is loaded, after
  // the gate ran (its objects still loaded, attached and pinned), or after it only when it failed.
  // Interactive, so not part of the request written into the receipt.
  enum class Shell { none, before, after, on_failure };
  Shell shell = Shell::none;
  // --watch: after the first verdict the guest stays up, and each change to the spec or an object
  // on disk runs the gate again in it; the first SIGINT or SIGTERM powers it off. Interactive too.
  bool watch = false;
  // `kgate repro`: the bytes come from a receipt directory's copies, each checked against the
  // receipt's sha256, and the kernel must be the one the receipt names. Not part of the request
  // written into the receipt (which is the recorded one, with the overrides).
  struct Replay {
    fs::path receipt;  // the receipt.json reproduced
    struct Copy {
      fs::path path;
      std::string sha256;
    };
    std::optional<Copy> spec;             // the spec's copy (spec.json); none for a run without a file
    std::map<std::string, Copy> objects;  // by object name
    std::map<std::string, Copy> files;    // by guest dest
    std::string kernel_image_sha256;      // must match; empty when --kernel overrides it
    std::vector<std::string> overrides;   // "count: 3 -> 5", listed as differences
    std::string kgate_version, qemu_version, accel, host;  // as recorded, compared after the run
    FailureClass verdict = FailureClass::no_verdict;
  };
  std::optional<Replay> replay;
};

// --shell's values: "before", "after", "on-failure".
std::string_view shell_name(RunRequest::Shell s);
std::optional<RunRequest::Shell> parse_shell(std::string_view s);

struct RunOutcome {
  FailureClass verdict = FailureClass::no_verdict;
  std::string message;
  fs::path receipt_path;
  report::Receipt receipt;
};

// Called as the run enters each phase ("kernel", "initramfs", "boot", "load", ...).
using ProgressFn = std::function<void(std::string_view phase)>;

// With --watch, called with each run's outcome (its receipt written) while the guest stays up.
using OutcomeFn = std::function<void(const RunOutcome&)>;

// Runs the gate. Never throws and always writes the receipt (and the console log,
// once QEMU started); QEMU is stopped before it returns, whatever happened.
RunOutcome run_gate(const RunRequest& request, const ProgressFn& progress, const OutcomeFn& each = {});

}  // namespace kgate::run

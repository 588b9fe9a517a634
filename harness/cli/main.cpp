// kgate's command line: parses argv into requests and hands them to run/.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <ctime>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include "channel/fields.hpp"
#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/files.hpp"
#include "core/interrupt.hpp"
#include "core/strings.hpp"
#include "core/terminal.hpp"
#include "kernel/btf.hpp"
#include "kernel/cache.hpp"
#include "kernel/catalog.hpp"
#include "kernel/prepare.hpp"
#include "matrix/matrix.hpp"
#include "matrix/runner.hpp"
#include "report/receipt.hpp"
#include "run/request.hpp"
#include "run/run.hpp"
#include "spec/spec.hpp"
#include "vm/arch.hpp"

namespace {

namespace fs = std::filesystem;
using kgate::FailureClass;
using namespace kgate::cli;

// A live "phase and elapsed time" line on a terminal; silent otherwise.
class ProgressLine {
 public:
  explicit ProgressLine(std::string label) : label_(std::move(label)), tty_(::isatty(2)) {
    if (tty_) thread_ = std::thread([this] { loop(); });
  }
  ~ProgressLine() { stop(); }
  void set(std::string_view phase) {
    std::lock_guard lock(mu_);
    phase_ = phase;
    if (!tty_) return;
    draw_locked();
  }
  // Prints something (a verdict) with the line cleared first and drawn again after.
  template <class Print>
  void above(Print print) {
    std::lock_guard lock(mu_);
    if (tty_) std::cerr << "\r\033[K" << std::flush;
    print();
    std::cout << std::flush;
    if (tty_) draw_locked();
  }
  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    std::cerr << "\r\033[K" << std::flush;
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    while (!done_) {
      draw_locked();
      cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
  }
  void draw_locked() {
    // The terminal is the guest shell's while it is open.
    if (phase_ == "shell") {
      if (!hidden_) std::cerr << "\r\033[K" << std::flush;
      hidden_ = true;
      return;
    }
    hidden_ = false;
    double s = kgate::seconds_since(start_);
    std::cerr << "\r\033[K"
              << "kgate: " << label_ << ": " << phase_ << " " << kgate::strprintf("%.1f s", s) << std::flush;
  }
  std::string label_;
  bool tty_;
  bool hidden_ = false;
  std::string phase_ = "starting";
  kgate::Clock::time_point start_ = kgate::Clock::now();
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// The verdict line, one line per program, and where the receipt is; returns the exit code.
int print_outcome(const kgate::run::RunOutcome& outcome, const std::string& label, int count) {
  const auto& r = outcome.receipt;
  std::string release = kgate::channel::get_string(r.guest, "release");
  double total = r.timings_s.empty() ? 0 : r.timings_s.back().second;
  if (outcome.verdict == FailureClass::pass) {
    const auto skipped =
        std::count_if(r.programs.begin(), r.programs.end(),
                      [](const kgate::report::ProgramResult& p) { return p.verdict == "skipped"; });
    std::string counted = kgate::strprintf("%zu programs passed", r.programs.size() - skipped);
    if (skipped > 0) counted += kgate::strprintf(", %zu skipped", static_cast<std::size_t>(skipped));
    std::cout << kgate::strprintf("PASS %s: %s, %s, %s (%d triggers each), %.2f s\n", r.entry.c_str(),
                                  release.c_str(), r.qemu.accel.c_str(), counted.c_str(), count, total);
  } else {
    // The console says why a boot or a guest went wrong; a program's own failure (gate_failed) is
    // in the lines below, and the console only adds to it when the kernel complained.
    const bool splats = r.console_splats.is_array() && !r.console_splats.empty();
    if (outcome.verdict != FailureClass::gate_failed || splats)
      for (const auto& l : r.console_tail) std::cerr << "  console| " << l << "\n";
    std::cout << "FAIL " << (r.entry.empty() ? label : r.entry) << " [" << kgate::class_name(outcome.verdict)
              << "]: " << outcome.message << "\n";
  }
  // One line per program: its verdict, the kernel's run count and the verifier's instructions.
  for (const auto& p : r.programs) {
    std::string reasons;
    for (const auto& x : p.reasons) reasons += (reasons.empty() ? "  " : ",") + x;
    if (!p.skip_reason.empty()) reasons = "  (" + p.skip_reason + ")";
    std::cout << kgate::strprintf("  %-24s %-14s %-7s runs %-6s insns %s%s\n", p.name.c_str(), p.type.c_str(),
                                  p.verdict.c_str(), p.run_count ? std::to_string(*p.run_count).c_str() : "-",
                                  p.insns_processed >= 0 ? std::to_string(p.insns_processed).c_str() : "-",
                                  reasons.c_str());
  }
  if (kgate::path_exists(outcome.receipt_path))
    std::cout << "receipt: " << outcome.receipt_path.string() << "\n";
  return kgate::exit_code(outcome.verdict);
}

// --shell[=before|after|on-failure]: a usage error without a terminal to relay it to.
std::optional<int> shell_option(const std::string& value, kgate::run::RunRequest& req) {
  auto when = kgate::run::parse_shell(value);
  if (!when) return usage_error("--shell takes before, after or on-failure, not '" + value + "'");
  if (!kgate::interactive_terminal())
    return usage_error("--shell needs a terminal (stdin and stdout), and this kgate has none");
  req.shell = *when;
  return std::nullopt;
}

int cmd_run(int argc, char** argv) {
  cxxopts::Options opts("kgate run",
                        "Boot a kernel in QEMU, load, attach and trigger the gate object, report a verdict.");
  auto add = opts.add_options();
  add("e,entry", "matrix entry or catalog kernel to boot (default: the catalog's default)",
      cxxopts::value<std::string>());
  add("arch",
      "guest arch, x86_64 or arm64 (default: the entry's; with no entry, the catalog's default for it)",
      cxxopts::value<std::string>());
  add("kernel", "boot this bzImage or vmlinux (arm64: Image) instead of a catalog entry",
      cxxopts::value<std::string>());
  add("btf", "BTF file for CO-RE relocations (kernels built without DEBUG_INFO_BTF)",
      cxxopts::value<std::string>());
  add("modules", "with --kernel: the kernel's lib/modules/<release> directory",
      cxxopts::value<std::string>());
  add("object", "a BPF object (.bpf.o) to load, attach and judge program by program instead of kgate's probe",
      cxxopts::value<std::string>());
  add("spec",
      "a run spec (docs/spec.md): objects and what each program must do; with --object, that "
      "object replaces the spec's one",
      cxxopts::value<std::string>());
  add("request",
      "a request file (kgate.request/1: a matrix entry's request.json, or a receipt.json, whose request "
      "is run again); options given too override it",
      cxxopts::value<std::string>());
  add("catalog", "kernel catalog file", cxxopts::value<std::string>()->default_value(""));
  add("matrix", "kernel matrix file (for --entry names)", cxxopts::value<std::string>()->default_value(""));
  add("receipt",
      "directory for receipt.json, console.log and qemu.log (default: a new one under ./kgate-out/)",
      cxxopts::value<std::string>());
  add("count", "triggers per program (1-1000); each must fire at least this often",
      cxxopts::value<int>()->default_value("8"));
  add("lockdown",
      "none, integrity or confidentiality: appended to the kernel command line and proven in the guest",
      cxxopts::value<std::string>());
  add("boot-timeout", "seconds from QEMU start to the agent's hello (default 90 under TCG, 20 with KVM)",
      cxxopts::value<double>());
  add("request-timeout", "seconds for each request to the agent (default 60 under TCG, 10 with KVM)",
      cxxopts::value<double>());
  add("append", "extra kernel command line word (repeatable)", cxxopts::value<std::vector<std::string>>());
  add("qemu", "QEMU binary (default: qemu-system-x86_64 or qemu-system-aarch64, by arch)",
      cxxopts::value<std::string>()->default_value(""));
  add("qemu-arg", "extra QEMU argument (repeatable)", cxxopts::value<std::vector<std::string>>());
  add("refresh", "resolve the entry's package again even if it is cached");
  add("exec",
      "the user's loader to run instead of the spec loader's executable (words after -- are its arguments); "
      "with --image, its absolute path in the image",
      cxxopts::value<std::string>());
  add("gdb",
      "QEMU's gdbstub: on a unix socket gdb.sock in the receipt directory, or --gdb=tcp:127.0.0.1:PORT; adds "
      "nokaslr and suspends the guest deadlines; prints the gdb command",
      cxxopts::value<std::string>()->implicit_value("unix"));
  add("gdb-wait",
      "with the gdbstub, hold the guest at its first instruction until the debugger continues it");
  add("shell",
      "an interactive shell in the guest on this terminal: after the gate ran (default), its objects "
      "still loaded and pinned under /sys/fs/bpf/kgate; =on-failure only when it failed; =before before "
      "anything is loaded. 'exit' powers the guest off",
      cxxopts::value<std::string>()->implicit_value("after"));
  add("watch",
      "keep the guest up after the verdict and run the gate again in it each time the spec or an object "
      "changes on disk, one verdict per change; Ctrl-C powers it off and writes the last receipt");
  add("image",
      "run the spec's loader from this container image: oci-layout:DIR[:REF], or NAME@sha256:DIGEST pulled "
      "with skopeo",
      cxxopts::value<std::string>());
  add("file", "SRC:DEST, a file shipped into the guest at DEST (repeatable)",
      cxxopts::value<std::vector<std::string>>());
  add("sysroot", "a directory searched first for a dynamic loader's libraries (repeatable)",
      cxxopts::value<std::vector<std::string>>());
  add("h,help", "show this help");
  // Words after "--" are the loader's arguments, not kgate's.
  std::optional<std::vector<std::string>> loader_args;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) != "--") continue;
    loader_args.emplace(argv + i + 1, argv + argc);
    argc = i;
    break;
  }
  cxxopts::ParseResult args;
  if (auto done = parse_args(opts, argc, argv, args)) return *done;

  kgate::run::RunRequest req;
  if (args.count("request")) {
    auto base = kgate::run::read_request(args["request"].as<std::string>());
    if (!base) {
      std::cerr << "kgate: " << base.error().describe() << "\n";
      return kgate::exit_code(base.error().cls());
    }
    req = std::move(*base);
  }
  if (args.count("lockdown")) {
    auto l = kgate::run::parse_lockdown(args["lockdown"].as<std::string>());
    if (!l) return usage_error("--lockdown must be none, integrity or confidentiality");
    req.lockdown = *l;
  }
  if (args.count("arch")) {
    req.arch = kgate::vm::parse_arch(args["arch"].as<std::string>());
    if (!req.arch) return usage_error("--arch must be x86_64 or arm64");
  }
  if (args.count("entry")) {
    req.entry = args["entry"].as<std::string>();
    req.name.clear();
    req.kernel.clear();
  }
  if (args.count("kernel")) {
    req.kernel = args["kernel"].as<std::string>();
    req.entry.clear();
    req.name.clear();
  }
  if (args.count("modules")) req.modules_dir = args["modules"].as<std::string>();
  if (args.count("btf")) req.btf = args["btf"].as<std::string>();
  if (args.count("object")) req.object = args["object"].as<std::string>();
  if (args.count("spec")) req.spec = args["spec"].as<std::string>();
  if (args.count("gdb")) req.gdb = args["gdb"].as<std::string>();
  if (args.count("gdb-wait")) {
    req.gdb_wait = true;
    if (req.gdb.empty()) req.gdb = "unix";
  }
  if (!req.gdb.empty() && req.gdb != "unix" && !req.gdb.starts_with("tcp:"))
    return usage_error("--gdb takes no value (a unix socket) or tcp:HOST:PORT, not '" + req.gdb + "'");
  if (args.count("shell")) {
    if (auto done = shell_option(args["shell"].as<std::string>(), req)) return *done;
  }
  if (args.count("watch")) {
    if (req.shell != kgate::run::RunRequest::Shell::none)
      return usage_error("--watch and --shell exclude each other");
    req.watch = true;
  }
  if (args.count("exec")) req.exec = args["exec"].as<std::string>();
  if (args.count("image")) {
    auto source = kgate::spec::parse_image_source(args["image"].as<std::string>(), fs::current_path());
    if (!source) return usage_error("--image: " + source.error().describe());
    req.image = source->text();
    if (!req.exec.empty() && !req.exec.is_absolute())
      return usage_error("--exec with --image is the executable's absolute path in the image, not '" +
                         req.exec.string() + "'");
  }
  if (loader_args) req.exec_args = loader_args;
  if (args.count("file")) {
    for (const auto& f : args["file"].as<std::vector<std::string>>()) {
      auto colon = f.rfind(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 >= f.size() || f[colon + 1] != '/')
        return usage_error("--file takes SRC:DEST with DEST an absolute guest path, not '" + f + "'");
      req.files.push_back({f.substr(0, colon), f.substr(colon + 1)});
    }
  }
  if (args.count("sysroot"))
    for (const auto& s : args["sysroot"].as<std::vector<std::string>>()) req.sysroots.push_back(s);
  if (!req.entry.empty() && !req.kernel.empty())
    return usage_error("--entry and --kernel exclude each other");
  if (!req.modules_dir.empty() && req.kernel.empty()) return usage_error("--modules needs --kernel");
  if (req.catalog.empty() || !args["catalog"].as<std::string>().empty())
    req.catalog = find_catalog(args["catalog"].as<std::string>());
  // --entry names a matrix entry (kernel x lockdown) or, failing that, a catalog kernel. (A
  // request's entry was resolved when it was made.)
  if (args.count("entry")) {
    auto m = kgate::matrix::load_matrix(find_matrix(args["matrix"].as<std::string>()));
    // A matrix named on purpose must load; the default one may be absent (a bare catalog).
    if (!m && !args["matrix"].as<std::string>().empty()) return usage_error(m.error().describe());
    if (const auto* e = m ? m->find(req.entry) : nullptr) {
      if (args.count("lockdown") && req.lockdown != e->lockdown) {
        return usage_error("matrix entry '" + e->name + "' is lockdown=" +
                           std::string(kgate::run::lockdown_name(e->lockdown)) + "; drop --lockdown");
      }
      auto entry_arch = kgate::vm::parse_arch(e->arch);
      if (req.arch && entry_arch != req.arch) {
        return usage_error("matrix entry '" + e->name + "' is arch " + e->arch +
                           "; drop --arch or say --arch " + e->arch);
      }
      req.name = e->name;
      req.entry = e->kernel;
      req.lockdown = e->lockdown;
      req.arch = entry_arch;
    } else if (auto catalog = kgate::kernel::load_catalog(req.catalog);
               catalog && !catalog->find(req.entry)) {
      // Neither: say what both files name.
      std::string names;
      if (m)
        for (const auto& e : m->entries) names += (names.empty() ? "" : ", ") + e.name;
      std::string kernels;
      for (const auto& [name, _] : catalog->entries) kernels += (kernels.empty() ? "" : ", ") + name;
      std::cerr << "kgate: no matrix entry or catalog kernel is named '" << req.entry
                << "' (matrix entries: " << (names.empty() ? "none" : names)
                << "; catalog kernels: " << kernels << ")\n";
      return kgate::exit_code(FailureClass::usage);
    }
  }
  req.cache_root = kgate::kernel::Cache::default_root();
  if (args.count("count") || !args.count("request")) req.count = args["count"].as<int>();
  // The probe's 256 KiB ring buffer holds 5461 records of 48 bytes: 2730 triggers' worth, two per trigger.
  if (req.count < 1 || req.count > 1000) return usage_error("--count must be between 1 and 1000");
  if (args.count("boot-timeout")) req.boot_timeout_s = args["boot-timeout"].as<double>();
  if (args.count("request-timeout")) req.request_timeout_s = args["request-timeout"].as<double>();
  if ((req.boot_timeout_s && !valid_timeout(*req.boot_timeout_s)) ||
      (req.request_timeout_s && !valid_timeout(*req.request_timeout_s))) {
    return usage_error("timeouts must be between 0 and 86400 seconds");
  }
  if (args.count("append")) req.append = args["append"].as<std::vector<std::string>>();
  if (args.count("qemu-arg")) req.qemu_args = args["qemu-arg"].as<std::vector<std::string>>();
  if (args.count("qemu")) req.qemu = args["qemu"].as<std::string>();
  if (args.count("refresh")) req.refresh = true;
  if (req.entry.empty() && req.kernel.empty()) {
    // Else run_gate reports the catalog error, or that the catalog has no default for --arch.
    if (auto catalog = kgate::kernel::load_catalog(req.catalog)) {
      auto def = req.arch ? catalog->default_for(kgate::vm::arch_name(*req.arch)) : catalog->default_entry;
      if (def) req.entry = *def;
    }
  }
  std::string label = !req.kernel.empty() ? req.kernel.filename().string()
                      : !req.name.empty() ? req.name
                                          : req.entry;
  if (label.empty()) label = "run";
  if (args.count("receipt")) {
    req.out_dir = args["receipt"].as<std::string>();
  } else {
    req.out_dir = fs::path("kgate-out") / (label + "-" + timestamp() + "-" + std::to_string(::getpid()));
  }

  kgate::install_interrupt_handlers();
  ProgressLine line(label);
  // --watch: each run's verdict as it comes; the last one is not printed twice.
  std::optional<std::pair<FailureClass, std::string>> last;
  auto each = [&](const kgate::run::RunOutcome& o) {
    line.above([&] {
      print_outcome(o, label, req.count);
      std::cout << "kgate: watching the spec and objects for changes; Ctrl-C powers the guest off\n"
                << std::flush;
    });
    last.emplace(o.verdict, o.message);
  };
  auto outcome = kgate::run::run_gate(
      req, [&](std::string_view phase) { line.set(phase); },
      req.watch ? kgate::run::OutcomeFn(each) : kgate::run::OutcomeFn());
  line.stop();
  if (last && last->first == outcome.verdict && last->second == outcome.message) {
    std::cout << "receipt: " << outcome.receipt_path.string() << "\n";
    return kgate::exit_code(outcome.verdict);
  }

  return print_outcome(outcome, label, req.count);
}

int cmd_repro(int argc, char** argv) {
  cxxopts::Options opts("kgate repro",
                        "Run again what a receipt describes, from its directory's copies: the same kernel "
                        "by sha256, objects, spec and files by sha256, arch, lockdown, command line, count "
                        "and deadlines.\n  kgate repro RECEIPT_OR_DIR [options]");
  auto add = opts.add_options();
  add("count", "triggers per program instead of the recorded count (recorded as a difference)",
      cxxopts::value<int>());
  add("kernel", "boot this kernel file instead (a fix to try; recorded as a difference)",
      cxxopts::value<std::string>());
  add("receipt", "directory for the new receipt (default: RECEIPT_DIR/repro-TIMESTAMP)",
      cxxopts::value<std::string>());
  add("gdb", "QEMU's gdbstub, as for kgate run (recorded as a difference)",
      cxxopts::value<std::string>()->implicit_value("unix"));
  add("gdb-wait", "with the gdbstub, hold the guest at its first instruction");
  add("shell",
      "an interactive shell in the guest on this terminal: after the gate ran (default), its objects "
      "still loaded and pinned under /sys/fs/bpf/kgate; =on-failure only when it failed; =before before "
      "anything is loaded. 'exit' powers the guest off",
      cxxopts::value<std::string>()->implicit_value("after"));
  add("h,help", "show this help");
  // The receipt comes first, before the options.
  if (argc < 2 || argv[1][0] == '-') {
    cxxopts::ParseResult args;
    if (auto done = parse_args(opts, argc, argv, args)) return *done;
    return usage_error("kgate repro needs a receipt: kgate repro RECEIPT_OR_DIR");
  }
  fs::path from = argv[1];
  if (fs::is_directory(from)) from /= "receipt.json";
  argv[1] = argv[0];
  cxxopts::ParseResult args;
  if (auto done = parse_args(opts, argc - 1, argv + 1, args)) return *done;

  auto recorded = kgate::report::read_receipt(from);
  if (!recorded) return input_error(recorded.error());
  if (recorded->request.is_null())
    return input_error(kgate::Error(FailureClass::usage, from.string() + " holds no request"));
  auto base = kgate::run::request_from_json(recorded->request, from.string());
  if (!base) return input_error(base.error());
  kgate::run::RunRequest req = std::move(*base);
  const fs::path dir = from.parent_path().empty() ? fs::path(".") : from.parent_path();

  kgate::run::RunRequest::Replay rp;
  rp.receipt = kgate::absolute_path(from);
  rp.kgate_version = recorded->kgate_version;
  rp.qemu_version = recorded->qemu.version;
  rp.accel = recorded->qemu.accel;
  rp.host = recorded->host.is_object() ? recorded->host.value("name", "") : "";
  rp.verdict = recorded->verdict;
  rp.kernel_image_sha256 = recorded->kernel.image_sha256;
  using Copy = kgate::run::RunRequest::Replay::Copy;
  if (!recorded->spec.copy.empty())
    rp.spec = Copy{kgate::absolute_path(dir / recorded->spec.copy), recorded->spec.sha256};
  for (const auto& o : recorded->objects)
    if (!o.copy.empty()) rp.objects[o.name] = Copy{kgate::absolute_path(dir / o.copy), o.sha256};
  for (const auto& f : recorded->files) {
    const std::string copy = kgate::channel::get_string(f, "copy");
    if (!copy.empty())
      rp.files[kgate::channel::get_string(f, "dest")] =
          Copy{kgate::absolute_path(dir / copy), kgate::channel::get_string(f, "sha256")};
  }
  if (args.count("count")) {
    const int count = args["count"].as<int>();
    if (count < 1 || count > 1000) return usage_error("--count must be from 1 to 1000");
    if (count != req.count) rp.overrides.push_back(kgate::strprintf("count: %d -> %d", req.count, count));
    req.count = count;
  }
  if (args.count("kernel")) {
    const fs::path kernel = kgate::absolute_path(args["kernel"].as<std::string>());
    rp.overrides.push_back("kernel: " + (req.kernel.empty() ? "entry " + req.entry : req.kernel.string()) +
                           " -> " + kernel.string());
    req.kernel = kernel;
    req.entry.clear();
    rp.kernel_image_sha256.clear();
  }
  if (args.count("gdb")) req.gdb = args["gdb"].as<std::string>();
  if (args.count("gdb-wait")) {
    req.gdb_wait = true;
    if (req.gdb.empty()) req.gdb = "unix";
  }
  if (!req.gdb.empty()) {
    if (req.gdb != "unix" && !req.gdb.starts_with("tcp:"))
      return usage_error("--gdb takes no value (a unix socket) or tcp:HOST:PORT, not '" + req.gdb + "'");
    rp.overrides.push_back("gdb: " + req.gdb + (req.gdb_wait ? ", waiting" : "") +
                           " (nokaslr, no deadlines)");
  }
  if (args.count("shell")) {
    if (auto done = shell_option(args["shell"].as<std::string>(), req)) return *done;
    rp.overrides.push_back("shell: " + std::string(kgate::run::shell_name(req.shell)));
  }
  req.replay = std::move(rp);
  req.cache_root = kgate::kernel::Cache::default_root();  // a request does not carry it
  req.out_dir = args.count("receipt") ? fs::path(args["receipt"].as<std::string>())
                                      : dir / ("repro-" + timestamp() + "-" + std::to_string(::getpid()));
  const std::string label =
      req.name.empty() ? (req.entry.empty() ? std::string("repro") : req.entry) : req.name;

  kgate::install_interrupt_handlers();
  ProgressLine line(label);
  auto outcome = kgate::run::run_gate(req, [&](std::string_view phase) { line.set(phase); });
  line.stop();
  const int code = print_outcome(outcome, label, req.count);
  // Beside what it recorded: the verdict, and each program whose verdict changed.
  auto verdict_of = [](FailureClass c) {
    return c == FailureClass::pass ? std::string("pass") : "fail [" + std::string(kgate::class_name(c)) + "]";
  };
  std::cout << "recorded: " << verdict_of(recorded->verdict) << " (" << from.string() << ")\n"
            << "now:      " << verdict_of(outcome.verdict) << "\n";
  for (const auto& now : outcome.receipt.programs) {
    for (const auto& was : recorded->programs) {
      if (was.object != now.object || was.name != now.name || was.verdict == now.verdict) continue;
      std::cout << "  " << now.object << "/" << now.name << ": was " << was.verdict << ", now " << now.verdict
                << "\n";
    }
  }
  const nlohmann::json& differences =
      outcome.receipt.repro.is_object() ? outcome.receipt.repro["differences"] : nlohmann::json::array();
  for (const auto& d : differences) std::cout << "differs: " << d.get<std::string>() << "\n";
  return code;
}

int cmd_matrix(int argc, char** argv) {
  cxxopts::Options opts("kgate matrix",
                        "Run kernel-matrix entries, each in its own VM, and report them together.");
  auto add = opts.add_options();
  add("j,jobs", "VMs at once", cxxopts::value<int>()->default_value("1"));
  add("only", "comma-separated name globs, e.g. '6.6*,debian-6.1'",
      cxxopts::value<std::string>()->default_value(""));
  add("out", "output directory (default: a new one under ./kgate-out/)", cxxopts::value<std::string>());
  add("github", "print the JSON a GitHub Actions strategy.matrix reads with fromJSON, and run nothing");
  add("matrix", "kernel matrix file", cxxopts::value<std::string>()->default_value(""));
  add("catalog", "kernel catalog file", cxxopts::value<std::string>()->default_value(""));
  add("count", "triggers per program, passed to each run", cxxopts::value<int>());
  add("spec", "run spec (docs/spec.md) every entry runs, instead of kgate's probe",
      cxxopts::value<std::string>());
  add("object", "BPF object every entry runs (with --spec: replaces its one object)",
      cxxopts::value<std::string>());
  add("boot-timeout", "passed to each run", cxxopts::value<double>());
  add("request-timeout", "passed to each run", cxxopts::value<double>());
  add("qemu", "QEMU binary, passed to each run", cxxopts::value<std::string>());
  add("h,help", "show this help");
  cxxopts::ParseResult args;
  if (auto done = parse_args(opts, argc, argv, args)) return *done;
  auto m = kgate::matrix::load_matrix(find_matrix(args["matrix"].as<std::string>()));
  if (!m) {
    std::cerr << "kgate: " << m.error().describe() << "\n";
    return kgate::exit_code(m.error().cls());
  }
  auto entries = kgate::matrix::select(*m, args["only"].as<std::string>());
  if (!entries) return usage_error(entries.error().describe());
  if (args.count("github")) {
    std::cout << kgate::matrix::github_matrix(*entries).dump() << "\n";
    return 0;
  }
  int jobs = args["jobs"].as<int>();
  if (jobs < 1 || jobs > 64) return usage_error("--jobs must be between 1 and 64");
  // Checked here once: a bad value would make every child exit without a receipt.
  if (args.count("count") && (args["count"].as<int>() < 1 || args["count"].as<int>() > 1000))
    return usage_error("--count must be between 1 and 1000");
  for (const char* opt : {"boot-timeout", "request-timeout"}) {
    if (args.count(opt) && !valid_timeout(args[opt].as<double>()))
      return usage_error("timeouts must be between 0 and 86400 seconds");
  }

  kgate::matrix::RunnerOptions ro;
  std::error_code self_ec;
  ro.kgate = fs::read_symlink("/proc/self/exe", self_ec);
  if (self_ec) {
    std::cerr << "kgate: cannot find its own executable: " << self_ec.message() << "\n";
    return kgate::exit_code(FailureClass::infra);
  }
  ro.jobs = jobs;
  ro.out_dir = args.count("out")
                   ? fs::path(args["out"].as<std::string>())
                   : fs::path("kgate-out") / ("matrix-" + timestamp() + "-" + std::to_string(::getpid()));
  ro.out_dir = kgate::absolute_path(ro.out_dir);
  if (auto s = kgate::make_dirs(ro.out_dir); !s) {
    std::cerr << "kgate: " << s.error().describe() << "\n";
    return kgate::exit_code(FailureClass::infra);
  }
  // What every entry runs; each entry's request adds its kernel, lockdown and arch.
  ro.base.catalog = kgate::absolute_path(find_catalog(args["catalog"].as<std::string>()));
  if (args.count("count")) ro.base.count = args["count"].as<int>();
  if (args.count("boot-timeout")) ro.base.boot_timeout_s = args["boot-timeout"].as<double>();
  if (args.count("request-timeout")) ro.base.request_timeout_s = args["request-timeout"].as<double>();
  if (args.count("qemu")) ro.base.qemu = args["qemu"].as<std::string>();
  for (const char* opt : {"spec", "object"}) {
    if (!args.count(opt)) continue;
    fs::path file = args[opt].as<std::string>();
    // A file that is not there fails here once, not in every entry.
    if (!kgate::path_exists(file))
      return usage_error(std::string("--") + opt + " " + file.string() + ": no such file");
    (std::string(opt) == "spec" ? ro.base.spec : ro.base.object) = kgate::absolute_path(file);
  }

  kgate::install_interrupt_handlers();
  std::mutex out_mu;
  auto run = kgate::matrix::run_matrix(*entries, ro, [&](const kgate::matrix::EntryResult& r, bool done) {
    std::lock_guard lock(out_mu);
    std::cerr << "kgate: " << kgate::matrix::event_line(r, done) << "\n";
  });
  auto summary = kgate::matrix::summary_json(run);
  kgate::Status written = kgate::matrix::write_reports(run, ro.out_dir);
  std::cout << kgate::matrix::table(run);
  FailureClass all = kgate::matrix::overall(run);
  if (!written) {
    std::cerr << "kgate: " << written.error().describe() << "\n";
    all = FailureClass::infra;
  }
  std::cout << kgate::strprintf("%d of %zu entries passed%s; summary: %s\n", summary["passed"].get<int>(),
                                run.results.size(), run.interrupted ? " (interrupted)" : "",
                                (ro.out_dir / "matrix-summary.json").c_str());
  return kgate::exit_code(all);
}

// The BTF of the kernel booted from `boot`, written to `out`.
kgate::Status write_kernel_btf(const fs::path& boot, const fs::path& out) {
  auto bytes = kgate::read_file(boot);
  if (!bytes) return std::unexpected(bytes.error());
  auto btf = kgate::kernel::kernel_btf(*bytes);
  if (!btf) return std::unexpected(std::move(btf.error()).context(boot.string()));
  if (auto s = kgate::write_file_atomic(out, *btf); !s) return s;
  std::cout << "  btf     " << out.string() << " (" << btf->size() << " bytes)\n";
  return {};
}

int cmd_fetch(int argc, char** argv) {
  cxxopts::Options opts("kgate fetch", "Fetch and verify a catalog entry's kernel into the cache.");
  auto add = opts.add_options();
  add("e,entry", "catalog entry (default: the catalog's default)", cxxopts::value<std::string>());
  add("catalog", "kernel catalog file", cxxopts::value<std::string>()->default_value(""));
  add("refresh", "resolve the package again even if it is cached");
  add("btf-out", "also write the kernel's BTF to FILE (for bpftool btf dump ... format c, or --btf)",
      cxxopts::value<std::string>());
  add("h,help", "show this help");
  cxxopts::ParseResult args;
  if (auto done = parse_args(opts, argc, argv, args)) return *done;
  kgate::install_interrupt_handlers();  // Ctrl-C stops apt and dpkg, and the staging directories go
  auto catalog = kgate::kernel::load_catalog(find_catalog(args["catalog"].as<std::string>()));
  if (!catalog) {
    std::cerr << "kgate: " << catalog.error().describe() << "\n";
    return kgate::exit_code(catalog.error().cls());
  }
  std::string name = args.count("entry") ? args["entry"].as<std::string>() : catalog->default_entry;
  auto entry = catalog->find(name);
  auto cache = kgate::kernel::Cache::open(kgate::kernel::Cache::default_root());
  kgate::Status status = entry ? kgate::Status{} : kgate::Status(std::unexpected(entry.error()));
  if (status && !cache) status = std::unexpected(cache.error());
  if (status) {
    auto k = kgate::kernel::prepare_entry(*cache, **entry, args.count("refresh") > 0,
                                          kgate::Deadline(std::chrono::minutes(10)));
    if (!k) {
      status = std::unexpected(k.error());
    } else {
      const char* boot_kind = (*entry)->arch == "arm64" ? " (Image)"
                              : k->pvh                  ? " (vmlinux, PVH)"
                                                        : " (bzImage)";
      std::cout << name << ": " << k->source << " [" << (*entry)->arch << "]\n  release " << k->release
                << "\n  image   " << k->image_sha256 << "\n  boot    " << k->boot_sha256 << boot_kind << "\n";
      if (args.count("btf-out")) status = write_kernel_btf(k->boot, args["btf-out"].as<std::string>());
    }
  }
  if (!status) {
    // A failure can carry pages of a tool's output (apt, dpkg, skopeo): the terminal gets the
    // head and the tail, the whole text goes to a file under the cache that the message names.
    std::string message = status.error().describe();
    if (message.size() > kgate::report::failure_message_limit) {
      std::string base = "fetch-" + name + ".txt";
      std::replace(base.begin(), base.end(), '/', '_');
      const fs::path file = kgate::kernel::Cache::default_root() / "logs" / base;
      std::error_code ec;
      fs::create_directories(file.parent_path(), ec);
      if (kgate::write_file_atomic(file, message + "\n"))
        message =
            kgate::report::bounded_message(message, kgate::report::failure_message_limit, file.string());
    }
    std::cerr << "kgate: " << message << "\n";
    return kgate::exit_code(status.error().cls());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Started with stdin, stdout or stderr closed, kgate's own first files would take those
  // numbers, and a child's dup2 onto 0-2 would then overwrite them: hold them with /dev/null.
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) == -1 && ::open("/dev/null", O_RDWR) != fd) return 127;
  }
  if (argc < 2) {
    std::cerr << usage_text;
    return kgate::exit_code(FailureClass::usage);
  }
  std::string cmd = argv[1];
  if (cmd == "run") return cmd_run(argc - 1, argv + 1);
  if (cmd == "repro") return cmd_repro(argc - 1, argv + 1);
  if (cmd == "fetch") return cmd_fetch(argc - 1, argv + 1);
  if (cmd == "matrix") return cmd_matrix(argc - 1, argv + 1);
  if (cmd == "gates") return cmd_gates(argc - 1, argv + 1);
  if (cmd == "digest") return cmd_digest(argc - 1, argv + 1);
  if (cmd == "version" || cmd == "--version") {
    std::cout << "kgate " KGATE_VERSION "\n";
    return 0;
  }
  if (cmd == "help" && argc > 2) {
    const std::string topic = argv[2];
    if (topic == "exit-codes") {
      std::cout << kgate::exit_code_table();
      return 0;
    }
    // `kgate help COMMAND` is `kgate COMMAND --help`.
    char help[] = "--help";
    char* args[] = {argv[2], help, nullptr};
    if (topic == "run") return cmd_run(2, args);
    if (topic == "repro") return cmd_repro(2, args);
    if (topic == "fetch") return cmd_fetch(2, args);
    if (topic == "matrix") return cmd_matrix(2, args);
    if (topic == "gates") return cmd_gates(2, args);
    if (topic == "digest") return cmd_digest(2, args);
    return usage_error("no help on '" + topic + "': ask for a command or exit-codes");
  }
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::cout << usage_text;
    return 0;
  }
  return usage_error("unknown command '" + cmd + "'");
}

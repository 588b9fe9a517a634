// kgate run and kgate repro: one gate run in one VM, from options or from a receipt.
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

namespace kgate::cli {

namespace {

namespace fs = std::filesystem;

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

// A spec from `kgate spec init` whose proposals nobody confirmed yet: says which programs, and runs
// them anyway. (A spec that does not parse is the run's own usage error.)
void warn_proposed(const fs::path& spec_file) {
  if (spec_file.empty()) return;
  auto spec = kgate::spec::load_spec(spec_file);
  if (!spec) return;
  std::string names;
  for (const auto& o : spec->objects)
    for (const auto& p : o.programs)
      if (!p.proposed.empty()) names += (names.empty() ? "" : ", ") + p.name;
  if (!names.empty())
    std::cerr << "kgate: " << spec_file.string()
              << ": not yet confirmed (\"proposed\" by kgate spec init): " << names << "\n";
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

}  // namespace

cxxopts::Options run_options() {
  cxxopts::Options opts(
      "kgate run",
      "Boot a kernel in QEMU; load, attach and trigger kgate's probe or a spec's objects there; judge "
      "each program; report one verdict and write a receipt.");
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
  add("out,receipt",
      "output directory: receipt.json, console.log, qemu.log and the copies (default: a new one under "
      "./kgate-out/; --receipt is its older name)",
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
  return opts;
}

int cmd_run(int argc, char** argv) {
  auto opts = run_options();
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
  if (args.count("out")) {
    req.out_dir = args["out"].as<std::string>();
  } else {
    req.out_dir = fs::path("kgate-out") / (label + "-" + timestamp() + "-" + std::to_string(::getpid()));
  }

  warn_proposed(req.spec);
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

cxxopts::Options repro_options() {
  cxxopts::Options opts("kgate repro",
                        "Run again what a receipt describes, from its directory's copies: the same kernel "
                        "by sha256, objects, spec and files by sha256, arch, lockdown, command line, count "
                        "and deadlines.\n  kgate repro RECEIPT_OR_DIR [options]");
  auto add = opts.add_options();
  add("count", "triggers per program instead of the recorded count (recorded as a difference)",
      cxxopts::value<int>());
  add("kernel", "boot this kernel file instead (a fix to try; recorded as a difference)",
      cxxopts::value<std::string>());
  add("out,receipt", "output directory for the new receipt (default: RECEIPT_DIR/repro-TIMESTAMP)",
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
  return opts;
}

int cmd_repro(int argc, char** argv) {
  auto opts = repro_options();
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
  req.out_dir = args.count("out") ? fs::path(args["out"].as<std::string>())
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

}  // namespace kgate::cli

// kgate matrix: kernel-matrix entries in parallel VMs, one table and one summary.
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

namespace fs = std::filesystem;

cxxopts::Options matrix_options() {
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
  return opts;
}

int cmd_matrix(int argc, char** argv) {
  auto opts = matrix_options();
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

}  // namespace kgate::cli

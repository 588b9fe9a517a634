// kgate matrix: kernel-matrix entries in parallel VMs, one table and one summary.
#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <ctime>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>
#include "channel/fields.hpp"
#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/files.hpp"
#include "core/interrupt.hpp"
#include "core/json_doc.hpp"
#include "core/strings.hpp"
#include "core/terminal.hpp"
#include "kernel/btf.hpp"
#include "kernel/cache.hpp"
#include "kernel/catalog.hpp"
#include "kernel/prepare.hpp"
#include "matrix/baseline.hpp"
#include "matrix/matrix.hpp"
#include "matrix/merge.hpp"
#include "matrix/runner.hpp"
#include "report/receipt.hpp"
#include "run/lockdown.hpp"
#include "run/request.hpp"
#include "run/run.hpp"
#include "spec/spec.hpp"
#include "vm/arch.hpp"

namespace kgate::cli {

namespace fs = std::filesystem;

cxxopts::Options matrix_options() {
  cxxopts::Options opts(
      "kgate matrix",
      "Run kernel-matrix entries, each in its own VM, and report them together: a table, "
      "matrix-summary.json, junit.xml and matrix-summary.md (appended to "
      "$GITHUB_STEP_SUMMARY when set).\n  kgate matrix merge DIR... [--out DIR] [--baseline "
      "FILE]: shards' outputs as one.");
  opts.positional_help("[merge DIR...]");
  auto add = opts.add_options();
  add("j,jobs", "VMs at once", cxxopts::value<int>()->default_value("1"));
  add("only", "comma-separated name globs, e.g. '6.6*,debian-6.1'",
      cxxopts::value<std::string>()->default_value(""));
  add("lockdown", "only the selected entries at this lockdown level: none, integrity or confidentiality",
      cxxopts::value<std::string>());
  add("shard", "run only slice I of N of the selected entries (round robin in matrix order), e.g. 2/4",
      cxxopts::value<std::string>());
  add("out", "output directory (default: a new one under ./kgate-out/)", cxxopts::value<std::string>());
  add("github",
      "print the JSON a GitHub Actions strategy.matrix reads with fromJSON, and run nothing: one job per "
      "entry, or with --shards one per shard");
  add("shards",
      "with --github: N shard jobs ({\"shard\": \"I/N\", \"entries\": ...}) instead of one per entry",
      cxxopts::value<int>());
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
  add("baseline",
      "an earlier matrix-summary.json (or its directory): compare each program's verdict and instructions "
      "processed per entry with it, and fail on a regressed verdict or growth past --max-growth",
      cxxopts::value<std::string>());
  add("max-growth", "with --baseline: how many percent a program's instructions processed may grow",
      cxxopts::value<double>()->default_value(kgate::strprintf("%g", kgate::matrix::default_max_growth_pct)));
  add_positional_words(opts);
  add("h,help", "show this help");
  return opts;
}

namespace {

// The baseline's summary, from a matrix-summary.json or the directory holding one.
kgate::Result<nlohmann::json> read_baseline(fs::path file) {
  if (fs::is_directory(file)) file /= "matrix-summary.json";
  auto doc = kgate::read_json_doc(file);
  if (!doc) return std::unexpected(std::move(doc.error()).context("--baseline"));
  if (kgate::channel::get_string(doc->root(), "schema") != "kgate.matrix-summary/1")
    return kgate::fail(FailureClass::usage,
                       "--baseline " + file.string() + ": not a kgate.matrix-summary/1 file");
  return doc->root();
}

// Writes the reports (and the baseline comparison), appends the Markdown to $GITHUB_STEP_SUMMARY,
// prints the tables and the closing line; returns the exit code.
int report_matrix(const kgate::matrix::MatrixRun& run, const fs::path& out_dir,
                  const std::optional<nlohmann::json>& baseline, double max_growth) {
  auto summary = kgate::matrix::summary_json(run);
  kgate::Status written = kgate::matrix::write_reports(run, out_dir);
  std::string md = kgate::matrix::markdown(run);
  std::cout << kgate::matrix::table(run);
  FailureClass all = kgate::matrix::overall(run);
  std::string against;
  if (baseline) {
    auto c = kgate::matrix::compare_to_baseline(*baseline, summary, max_growth);
    std::cout << "\n" << kgate::matrix::baseline_table(c);
    md += "\n" + kgate::matrix::baseline_markdown(c);
    if (written)
      written = kgate::write_file_atomic(out_dir / "baseline-comparison.json",
                                         kgate::matrix::baseline_json(c).dump(2) + "\n");
    if (written) written = kgate::write_file_atomic(out_dir / "matrix-summary.md", md);
    against = kgate::strprintf("; against the baseline: %d of %zu rows fail", c.failures, c.rows.size());
    if (c.failures > 0 && all == FailureClass::pass) all = FailureClass::gate_failed;
  }
  if (const char* gh = std::getenv("GITHUB_STEP_SUMMARY"); written && gh && *gh) {
    std::ofstream(gh, std::ios::app) << md << "\n";
  }
  if (!written) {
    std::cerr << "kgate: " << written.error().describe() << "\n";
    all = FailureClass::infra;
  }
  std::cout << kgate::strprintf("%d of %zu entries passed%s%s; summary: %s\n", summary["passed"].get<int>(),
                                run.results.size(), run.interrupted ? " (interrupted)" : "", against.c_str(),
                                (out_dir / "matrix-summary.json").c_str());
  return kgate::exit_code(all);
}

fs::path default_out(const char* what) {
  return fs::path("kgate-out") / (std::string(what) + "-" + timestamp() + "-" + std::to_string(::getpid()));
}

}  // namespace

int cmd_matrix(int argc, char** argv) {
  auto opts = matrix_options();
  cxxopts::ParseResult args;
  if (auto done = parse_args(opts, argc, argv, args)) return *done;
  const auto words = positional_words(args);
  if (!words.empty() && words.front() != "merge")
    return usage_error("unexpected argument '" + words.front() + "'");
  std::optional<nlohmann::json> baseline;
  if (args.count("baseline")) {
    auto b = read_baseline(args["baseline"].as<std::string>());
    if (!b) return input_error(b.error());
    baseline = std::move(*b);
  }
  const double max_growth = args["max-growth"].as<double>();
  if (!(max_growth >= 0 && max_growth <= 1e6)) return usage_error("--max-growth must be a percentage from 0");

  if (!words.empty()) {
    // kgate matrix merge DIR...: only the output and baseline options apply.
    for (const char* opt : {"only", "lockdown", "shard", "github", "shards", "spec", "object", "count",
                            "boot-timeout", "request-timeout", "qemu", "jobs"}) {
      if (args.count(opt)) return usage_error(std::string("matrix merge does not take --") + opt);
    }
    const std::vector<fs::path> dirs(words.begin() + 1, words.end());
    if (dirs.empty()) return usage_error("matrix merge: name the output directories to merge");
    const fs::path out = kgate::absolute_path(args.count("out") ? fs::path(args["out"].as<std::string>())
                                                                : default_out("matrix-merge"));
    auto merged = kgate::matrix::merge_runs(dirs, out);
    if (!merged) return input_error(merged.error());
    return report_matrix(*merged, out, baseline, max_growth);
  }

  auto m = kgate::matrix::load_matrix(find_matrix(args["matrix"].as<std::string>()));
  if (!m) {
    std::cerr << "kgate: " << m.error().describe() << "\n";
    return kgate::exit_code(m.error().cls());
  }
  auto entries = kgate::matrix::select(*m, args["only"].as<std::string>());
  if (!entries) return usage_error(entries.error().describe());
  if (args.count("lockdown")) {
    auto level = kgate::run::parse_lockdown(args["lockdown"].as<std::string>());
    if (!level) return usage_error("--lockdown must be none, integrity or confidentiality");
    std::erase_if(*entries, [&](const kgate::matrix::Entry& e) { return e.lockdown != *level; });
    if (entries->empty())
      return usage_error("--lockdown " + args["lockdown"].as<std::string>() +
                         " leaves no entry of the selection");
  }
  if (args.count("shards") && !args.count("github")) return usage_error("--shards goes with --github");
  if (args.count("github")) {
    if (args.count("shard")) return usage_error("--github lists every shard: drop --shard");
    if (!args.count("shards")) {
      std::cout << kgate::matrix::github_matrix(*entries).dump() << "\n";
      return 0;
    }
    const int n = args["shards"].as<int>();
    if (n < 1 || n > 1000) return usage_error("--shards must be from 1 to 1000");
    std::cout << kgate::matrix::github_shards(*entries, n).dump() << "\n";
    return 0;
  }
  std::optional<kgate::matrix::Shard> shard;
  std::vector<std::string> selected;
  if (args.count("shard")) {
    auto sh = kgate::matrix::parse_shard(args["shard"].as<std::string>());
    if (!sh) return usage_error(sh.error().describe());
    shard = *sh;
    for (const auto& e : *entries) selected.push_back(e.name);
    *entries = kgate::matrix::shard_of(*entries, *shard);
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
  ro.out_dir = args.count("out") ? fs::path(args["out"].as<std::string>()) : default_out("matrix");
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
  run.shard = shard;
  run.selected = selected;
  return report_matrix(run, ro.out_dir, baseline, max_growth);
}

}  // namespace kgate::cli

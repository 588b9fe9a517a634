// kgate gates: runs a pipeline of gates (ci/gates.json) and writes one umbrella receipt.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/interrupt.hpp"
#include "core/strings.hpp"
#include "gate/executor.hpp"
#include "gate/group.hpp"
#include "gate/pipeline.hpp"
#include "gate/summary.hpp"

namespace kgate::cli {

namespace {

namespace fs = std::filesystem;
using gate::Gate;
using gate::GateResult;
using gate::GateStatus;

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// An argv as a shell would need it typed, for --dry-run.
std::string shell_quote(const std::string& s) {
  if (!s.empty() &&
      s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") ==
          std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

void print_list(const gate::Pipeline& p, const std::vector<size_t>& selected) {
  for (size_t i : selected) {
    const Gate& g = p.gates[i];
    std::cout << g.name;
    if (g.kind == gate::GateKind::ebpf_matrix) std::cout << " [ebpf-matrix " << g.entries << "]";
    if (!g.needs.empty()) std::cout << "  needs " << join(g.needs, ", ");
    if (g.always) std::cout << "  (always)";
    if (g.expect == gate::Expect::fail) {
      std::cout << "  (expect fail";
      for (size_t k = 0; k < g.expect_exit.size(); ++k)
        std::cout << (k ? " or " : ": exit ") << g.expect_exit[k];
      std::cout << ")";
    }
    if (!g.description.empty()) std::cout << "  -- " << g.description;
    std::cout << "\n";
  }
}

void print_dry_run(const gate::Pipeline& p, const std::vector<size_t>& selected, int jobs) {
  std::cout << strprintf("would run %zu gates of %s, at most %d at once, in this order:\n", selected.size(),
                         p.file.c_str(), jobs);
  for (size_t i : selected) {
    const Gate& g = p.gates[i];
    std::cout << "  " << g.name << strprintf(" (timeout %g s", g.timeout_s)
              << (g.needs.empty() ? "" : "; after " + join(g.needs, ", ")) << (g.always ? "; always" : "")
              << (g.expect == gate::Expect::fail ? "; must fail" : "") << ")\n    cd "
              << shell_quote(g.cwd.string()) << " &&";
    for (const auto& [k, v] : g.env) std::cout << " " << k << "=" << shell_quote(v);
    if (g.kind == gate::GateKind::command) {
      for (const auto& a : g.command) std::cout << " " << shell_quote(a);
    } else {
      std::cout << " kgate matrix --only " << shell_quote(g.entries) << " -j " << g.jobs;
      if (!g.matrix.empty()) std::cout << " --matrix " << shell_quote(g.matrix.string());
      if (!g.spec.empty()) std::cout << " --spec " << shell_quote(g.spec.string());
      if (!g.object.empty()) std::cout << " --object " << shell_quote(g.object.string());
      for (const auto& a : g.run_args) std::cout << " " << shell_quote(a);
    }
    std::cout << "\n";
  }
}

void print_event(const Gate& g, const GateResult& r, bool done, const fs::path& out_dir) {
  if (!done) {
    std::cerr << "kgate: " << g.name << ": started\n";
    return;
  }
  switch (r.status) {
    case GateStatus::passed:
      std::cerr << "kgate: " << g.name << ": passed" << (r.reason.empty() ? "" : ", " + r.reason)
                << strprintf(" (%.1f s)\n", r.duration_s);
      return;
    case GateStatus::skipped:
    case GateStatus::cancelled:
      if (!r.started) {
        std::cerr << "kgate: " << g.name << ": " << gate::status_name(r.status) << ": " << r.reason << "\n";
        return;
      }
      break;
    default: break;
  }
  const char* label = r.status == GateStatus::failed      ? "FAILED"
                      : r.status == GateStatus::timed_out ? "TIMED OUT"
                                                          : "CANCELLED";
  std::cerr << "kgate: " << g.name << ": " << label << ": " << r.reason
            << strprintf(" (%.1f s)", r.duration_s) << "\n";
  auto lines = gate::tail_lines(out_dir / r.log, 15);
  if (!lines.empty()) std::cerr << "  last lines of " << (out_dir / r.log).string() << ":\n";
  for (const auto& l : lines) std::cerr << "  | " << l << "\n";
}

}  // namespace

cxxopts::Options gates_options() {
  cxxopts::Options opts("kgate gates run", "Run a pipeline of gates and write one umbrella receipt.");
  opts.positional_help("run FILE");
  auto add = opts.add_options();
  add("verb", "run", cxxopts::value<std::string>());
  add("file", "the gates file (kgate.gates/1), e.g. ci/gates.json", cxxopts::value<std::string>());
  add("j,jobs", "gates at once (default: the number of cores)", cxxopts::value<int>());
  add("only", "run this gate and what it needs (repeatable)", cxxopts::value<std::vector<std::string>>());
  add("list", "print the gates in the order they can run, and their needs; run nothing");
  add("dry-run", "print what would run; run nothing");
  add("out", "output directory (default: a new one under ./kgate-out/)", cxxopts::value<std::string>());
  add("concurrency-group", "one run per KEY at a time: a newer run with the same key cancels this one",
      cxxopts::value<std::string>());
  add("matrix", "kernel matrix file for ebpf-matrix gates that name none",
      cxxopts::value<std::string>()->default_value(""));
  add("h,help", "show this help");
  opts.parse_positional({"verb", "file"});
  return opts;
}

int cmd_gates(int argc, char** argv) {
  auto opts = gates_options();
  cxxopts::ParseResult args;
  if (auto done = parse_args(opts, argc, argv, args)) return *done;
  if (!args.count("verb") || args["verb"].as<std::string>() != "run")
    return usage_error("gates: say 'kgate gates run FILE'");
  if (!args.count("file")) return usage_error("gates run: which gates file? (e.g. ci/gates.json)");
  int jobs = args.count("jobs") ? args["jobs"].as<int>()
                                : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (jobs < 1 || jobs > 1024) return usage_error("--jobs must be from 1 to 1024");
  const std::vector<std::string> only =
      args.count("only") ? args["only"].as<std::vector<std::string>>() : std::vector<std::string>{};

  auto pipeline = gate::load_pipeline(args["file"].as<std::string>());
  if (!pipeline) return input_error(pipeline.error());
  auto selected = gate::select_gates(*pipeline, only);
  if (!selected) return input_error(selected.error());
  if (args.count("list")) {
    print_list(*pipeline, *selected);
    return 0;
  }
  if (args.count("dry-run")) {
    print_dry_run(*pipeline, *selected, jobs);
    return 0;
  }

  install_interrupt_handlers();
  std::optional<gate::GroupLock> group;
  gate::ExecOptions eo;
  eo.jobs = jobs;
  eo.out_dir = args.count("out")
                   ? fs::path(args["out"].as<std::string>())
                   : fs::path("kgate-out") / ("gates-" + timestamp() + "-" + std::to_string(::getpid()));
  std::error_code ec;
  eo.kgate = fs::read_symlink("/proc/self/exe", ec);
  if (ec) eo.kgate = self_dir() / "kgate";
  eo.default_matrix = find_matrix(args["matrix"].as<std::string>());
  eo.catalog = find_catalog("");
  eo.cancel_reason = [&group] { return group ? group->superseded_reason() : std::string(); };
  if (auto st = make_dirs(eo.out_dir); !st) {
    std::cerr << "kgate: " << st.error().describe() << "\n";
    return exit_code(FailureClass::infra);
  }
  std::cerr << strprintf("kgate: %zu gates from %s, at most %d at once; output in %s\n", selected->size(),
                         pipeline->file.c_str(), jobs, eo.out_dir.c_str());

  // The group is taken once the output directory exists: a run that never gets it (a
  // signal while waiting, an older run that will not end) still writes its receipt.
  std::optional<Error> not_started;
  if (args.count("concurrency-group")) {
    auto g = gate::GroupLock::take(gate::default_group_dir(), args["concurrency-group"].as<std::string>(),
                                   Deadline(std::chrono::seconds(90)));
    if (g) {
      group.emplace(std::move(*g));
    } else {
      not_started = g.error();
      std::cerr << "kgate: " << g.error().describe() << "\n";
    }
  }
  if (!not_started) {
    // Old logs would be read as this run's tails: a reused --out starts clean, but only once
    // the group is this run's, so an older run of it still writing there keeps its logs.
    for (const char* stale : {"logs", "matrix"}) {
      std::error_code ec;
      fs::remove_all(eo.out_dir / stale, ec);
    }
  }
  auto where = gate::collect_provenance(pipeline->file);
  auto ex = not_started
                ? gate::not_run(*pipeline, *selected, not_started->describe())
                : gate::execute(*pipeline, *selected, eo, [&](const Gate& g, const GateResult& r, bool done) {
                    print_event(g, r, done, eo.out_dir);
                  });

  auto summary = gate::summary_json(*pipeline, ex, where, jobs, only);
  const fs::path summary_path = eo.out_dir / "verify-all-summary.json";
  Status written = write_file_atomic(
      summary_path, summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  if (written)
    written = write_file_atomic(eo.out_dir / "verify-all.junit.xml", gate::junit_xml(ex, eo.out_dir));
  const std::string md = gate::markdown(ex, eo.out_dir);
  if (written) written = write_file_atomic(eo.out_dir / "verify-all-summary.md", md);
  if (const char* gh = std::getenv("GITHUB_STEP_SUMMARY"); written && gh && *gh) {
    std::ofstream(gh, std::ios::app) << md << "\n";
  }

  for (const auto& r : ex.results) {
    std::cout << strprintf("%-10s %-24s %7s  %s\n", std::string(gate::status_name(r.status)).c_str(),
                           r.name.c_str(), r.started ? strprintf("%.1f s", r.duration_s).c_str() : "-",
                           r.reason.c_str());
  }
  if (ex.cancelled) std::cout << "cancelled: " << ex.cancel_reason << "\n";
  int code = 0;
  if (!written) {
    std::cerr << "kgate: " << written.error().describe() << "\n";
    code = exit_code(FailureClass::infra);
  } else {
    std::cout << "receipt: " << summary_path.string() << "\n";
    if (not_started) {
      code = exit_code(not_started->cls());
    } else if (ex.cancelled) {
      code = exit_code(FailureClass::interrupted);
    } else if (gate::count(ex).non_green() > 0) {
      code = exit_code(FailureClass::gate_failed);
    }
  }
  std::cerr << std::flush;
  std::cout << gate::closing_line(ex) << "\n" << std::flush;
  return code;
}

}  // namespace kgate::cli

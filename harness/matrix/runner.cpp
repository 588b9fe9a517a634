#include "matrix/runner.hpp"

#include <poll.h>
#include <sys/wait.h>

#include <cmath>
#include <csignal>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <optional>

#include "channel/fields.hpp"
#include "core/interrupt.hpp"
#include "core/strings.hpp"
#include "core/subprocess.hpp"
#include "core/text_table.hpp"
#include "report/receipt.hpp"
#include "run/request.hpp"

namespace kgate::matrix {

using nlohmann::json;

namespace {

// Bounds an entry whose child never ends: longer than any sum of a run's own deadlines.
constexpr auto entry_limit = std::chrono::minutes(45);

struct Running {
  size_t index;
  Child child;
  Clock::time_point start;
};

void collect(EntryResult& r, const fs::path& out_dir, int status) {
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  const fs::path file = out_dir / r.dir / "receipt.json";
  auto receipt =
      path_exists(file) ? report::read_receipt(file) : fail(FailureClass::no_verdict, "none written");
  if (!receipt) {
    r.verdict = FailureClass::no_verdict;
    r.message = "no receipt (kgate run " + describe_status(status) + "; " + receipt.error().describe() +
                "; see " + (r.dir / "kgate.log").string() + ")";
    return;
  }
  r.receipt = std::move(*receipt);
  r.verdict = r.receipt->verdict;
  r.message = r.receipt->failure_message;
  // The receipt and the exit code must agree; a disagreement is no verdict at all.
  if (exit_code(r.verdict) != r.exit_code) {
    r.message = strprintf("receipt says %s but kgate run exited %d",
                          std::string(class_name(r.verdict)).c_str(), r.exit_code);
    r.verdict = FailureClass::no_verdict;
  }
}

}  // namespace

run::RunRequest entry_request(const run::RunRequest& base, const Entry& e) {
  run::RunRequest r = base;
  r.name = e.name;
  r.entry = e.kernel;
  r.kernel.clear();
  r.modules_dir.clear();
  r.lockdown = e.lockdown;
  r.arch = vm::parse_arch(e.arch);
  return r;
}

MatrixRun run_matrix(const std::vector<Entry>& entries, const RunnerOptions& opts, const EntryEvent& event) {
  MatrixRun run;
  auto start = Clock::now();
  for (const auto& e : entries) {
    EntryResult r;
    r.entry = e;
    r.dir = e.name;
    run.results.push_back(std::move(r));
  }
  std::deque<size_t> pending;
  for (size_t i = 0; i < entries.size(); ++i) pending.push_back(i);
  std::list<Running> running;  // Child is move-only and not assignable

  auto finish = [&](Running& job, int status, bool over_limit) {
    EntryResult& r = run.results[job.index];
    r.wall_s = seconds_since(job.start);
    collect(r, opts.out_dir, status);
    if (over_limit) {
      r.verdict = FailureClass::timeout;
      r.exit_code = exit_code(FailureClass::timeout);
      r.message = "stopped after the matrix's per-entry limit of 45 minutes";
    }
    if (event) event(r, true);
  };

  while (!pending.empty() || !running.empty()) {
    while (!run.interrupted && !pending.empty() &&
           static_cast<int>(running.size()) < std::max(1, opts.jobs)) {
      size_t i = pending.front();
      pending.pop_front();
      EntryResult& r = run.results[i];
      fs::path dir = opts.out_dir / r.dir;
      Status ready = make_dirs(dir);
      if (ready)
        ready = write_file_atomic(dir / "request.json",
                                  run::request_json(entry_request(opts.base, r.entry)).dump(2) + "\n");
      std::vector<std::string> argv = {
          opts.kgate.string(), "run", "--request", (dir / "request.json").string(), "--out", dir.string()};
      argv.insert(argv.end(), opts.run_args.begin(), opts.run_args.end());
      auto child = ready ? Child::spawn(argv, {dir / "kgate.log", {}, {}})
                         : Result<Child>(std::unexpected(ready.error()));
      r.started = true;
      if (event) event(r, false);
      if (!child) {
        r.verdict = FailureClass::infra;
        r.exit_code = exit_code(FailureClass::infra);
        r.message = child.error().describe();
        if (event) event(r, true);
        continue;
      }
      running.push_back(Running{i, std::move(*child), Clock::now()});
    }
    if (running.empty()) break;

    std::vector<pollfd> fds;
    for (const auto& job : running) fds.push_back({job.child.pidfd(), POLLIN, 0});
    if (interrupt_fd() >= 0) fds.push_back({interrupt_fd(), POLLIN, 0});
    if (opts.stop_fd >= 0) fds.push_back({opts.stop_fd, POLLIN, 0});
    ::poll(fds.data(), fds.size(), 1000);
    const bool stop_asked = opts.stop_fd >= 0 && (fds.back().revents & POLLIN);

    std::optional<Deadline> grace;  // one shared moment for interrupted children to write receipts
    if (!run.interrupted && (interrupt_signal() != 0 || stop_asked)) {
      run.interrupted = true;
      // Each child stops its own QEMU and writes an interrupted receipt.
      for (auto& job : running) ::kill(job.child.pid(), SIGTERM);
      grace.emplace(opts.stop_grace);
    }
    for (auto it = running.begin(); it != running.end();) {
      auto& job = *it;
      std::optional<int> status = job.child.try_wait();
      bool over_limit = false;
      if (!status && run.interrupted) {
        if (auto st = job.child.wait(grace ? *grace : Deadline(std::chrono::seconds(0)), false)) status = *st;
        // Past the shared grace: SIGKILL at once, so stragglers do not each add a wait.
        if (!status) status = job.child.terminate(Millis(0));
      } else if (!status && Clock::now() - job.start > entry_limit) {
        over_limit = true;
        status = job.child.terminate(std::chrono::seconds(5));
      }
      if (status) {
        finish(job, *status, over_limit);
        it = running.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (size_t i : pending) {
    run.results[i].cancelled = true;
    run.results[i].verdict = FailureClass::interrupted;
    run.results[i].message = "cancelled before it started";
  }
  for (auto& r : run.results) {
    if (r.started && run.interrupted && r.verdict == FailureClass::interrupted) r.cancelled = true;
  }
  run.wall_s = seconds_since(start);
  return run;
}

std::string event_line(const EntryResult& r, bool done) {
  if (!done) return r.entry.name + ": started";
  return r.entry.name + ": " +
         (r.verdict == FailureClass::pass
              ? std::string("pass")
              : "FAIL [" + std::string(class_name(r.verdict)) + "] " + r.message) +
         strprintf(" (%.1f s)", r.wall_s);
}

Status write_reports(const MatrixRun& run, const fs::path& out_dir) {
  Status written =
      write_file_atomic(out_dir / "matrix-summary.json",
                        summary_json(run).dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  if (written) written = write_file_atomic(out_dir / "junit.xml", junit_xml(run));
  if (written) written = write_file_atomic(out_dir / "matrix-summary.md", markdown(run));
  return written;
}

FailureClass overall(const MatrixRun& run) {
  if (run.interrupted) return FailureClass::interrupted;
  for (const auto& r : run.results) {
    if (r.verdict != FailureClass::pass) return r.verdict;
  }
  // A shard may hold no entry (N above the selection's size): `kgate matrix merge` tells whether
  // every entry of the selection ran. An unsharded run of nothing is no verdict.
  return run.results.empty() && !run.shard ? FailureClass::no_verdict : FailureClass::pass;
}

namespace {
std::string release_of(const EntryResult& r) {
  return r.receipt ? channel::get_string(r.receipt->guest, "release") : "";
}
std::string accel_of(const EntryResult& r) {
  return r.receipt ? r.receipt->qemu.accel : "";
}
std::optional<double> boot_of(const EntryResult& r) {
  if (!r.receipt) return std::nullopt;
  for (const auto& [phase, s] : r.receipt->timings_s)
    if (phase == "boot") return s;
  return std::nullopt;
}

// Every program any entry reported ("object/name", in first-seen order), by entry name.
struct ProgramRows {
  std::vector<std::string> order;
  std::map<std::string, std::map<std::string, const report::ProgramResult*>> cells;
};

ProgramRows program_rows(const MatrixRun& run) {
  ProgramRows rows;
  for (const auto& r : run.results) {
    if (!r.receipt) continue;
    for (const auto& p : r.receipt->programs) {
      const std::string key = p.object + "/" + p.name;
      if (!rows.cells.contains(key)) rows.order.push_back(key);
      rows.cells[key][r.entry.name] = &p;
    }
  }
  return rows;
}

std::string joined(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : sep) + x;
  return out;
}

}  // namespace

namespace {
// Program x entry: a header row, then a row per program (`name` of its "object/program" key) with a
// column per entry, `cell` of its result there or "-" where the entry reported nothing about it.
TextRows program_grid(const MatrixRun& run, const std::string& header,
                      const std::function<std::string(const std::string&)>& name,
                      const std::function<std::string(const report::ProgramResult&)>& cell) {
  ProgramRows programs = program_rows(run);
  TextRows grid = {{header}};
  for (const auto& r : run.results) grid[0].push_back(r.entry.name);
  for (const auto& key : programs.order) {
    std::vector<std::string> row = {name(key)};
    for (const auto& r : run.results) {
      auto it = programs.cells[key].find(r.entry.name);
      row.push_back(it == programs.cells[key].end() ? std::string("-") : cell(*it->second));
    }
    grid.push_back(std::move(row));
  }
  return grid;
}
}  // namespace

json summary_json(const MatrixRun& run) {
  json entries = json::array();
  int passed = 0;
  for (const auto& r : run.results) {
    if (r.verdict == FailureClass::pass) ++passed;
    auto boot = boot_of(r);
    entries.push_back(
        {{"name", r.entry.name},
         {"kernel", r.entry.kernel},
         {"lockdown", std::string(run::lockdown_name(r.entry.lockdown))},
         {"arch", r.entry.arch},
         {"release", release_of(r)},
         {"accel", accel_of(r)},
         {"boot_s", boot ? json(*boot) : json(nullptr)},
         {"wall_s", std::round(r.wall_s * 1000) / 1000},
         {"verdict", r.verdict == FailureClass::pass ? "pass" : (r.cancelled ? "cancelled" : "fail")},
         {"class", class_name(r.verdict)},
         {"exit_code", r.cancelled && !r.started ? json(nullptr) : json(r.exit_code)},
         {"message", r.message},
         {"receipt", r.receipt ? json((r.dir / "receipt.json").string()) : json(nullptr)}});
  }
  // Program x entry: each program's verdict and verifier figures on every entry that ran it.
  json programs = json::array();
  ProgramRows rows = program_rows(run);
  for (const auto& key : rows.order) {
    json per_entry = json::object();
    for (const auto& [entry, p] : rows.cells[key]) {
      per_entry[entry] = {{"verdict", p->verdict},
                          {"reasons", p->reasons},
                          {"insns_processed", p->insns_processed},
                          {"run_count", p->run_count ? json(*p->run_count) : json(nullptr)}};
    }
    const size_t slash = key.find('/');
    programs.push_back(
        {{"object", key.substr(0, slash)}, {"name", key.substr(slash + 1)}, {"entries", per_entry}});
  }
  FailureClass all = overall(run);
  json summary = {{"schema", "kgate.matrix-summary/1"},
                  {"entries", entries},
                  {"programs", programs},
                  {"passed", passed},
                  {"total", run.results.size()},
                  {"interrupted", run.interrupted},
                  {"verdict", all == FailureClass::pass ? "pass" : "fail"},
                  {"exit_code", exit_code(all)},
                  {"wall_s", std::round(run.wall_s * 1000) / 1000}};
  if (run.shard)
    summary["shard"] = {{"index", run.shard->index}, {"count", run.shard->count}, {"selected", run.selected}};
  return summary;
}

std::string xml_escape(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 allows no control characters but tab, newline and carriage return.
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += '?';
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string junit_xml(const MatrixRun& run) {
  struct Case {
    std::string classname, name, failure_type, message, body;
    double time;
    std::string skipped = {};  // why, for a skipped program
  };
  std::vector<Case> cases;
  for (const auto& r : run.results) {
    Case c{"kgate.matrix", r.entry.name, "", "", "", r.wall_s};
    if (r.verdict != FailureClass::pass) {
      c.failure_type = std::string(class_name(r.verdict));
      c.message = r.message.empty() ? c.failure_type : r.message;
      if (r.receipt) {
        for (const auto& l : r.receipt->console_tail) c.body += l + "\n";
      }
    }
    cases.push_back(c);
    if (!r.receipt) continue;
    for (const auto& p : r.receipt->programs) {
      Case pc{"kgate.matrix." + r.entry.name, p.object + "/" + p.name, "", "", "", 0};
      if (p.verdict == "skipped") {
        pc.skipped = p.skip_reason.empty() ? "skipped" : p.skip_reason;
      } else if (!p.passed()) {
        pc.failure_type = p.reasons.empty() ? "gate_failed" : joined(p.reasons, ",");
        pc.message = p.error.empty() ? "did not pass" : p.error;
        // The verifier's last lines: the failing instruction and its source line.
        for (const auto& l : p.log_tail) pc.body += l + "\n";
      }
      cases.push_back(pc);
    }
  }
  int failures = 0, skipped = 0;
  for (const auto& c : cases) {
    failures += !c.failure_type.empty();
    skipped += !c.skipped.empty();
  }
  std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  xml += strprintf("<testsuites name=\"kgate\" tests=\"%zu\" failures=\"%d\" errors=\"0\" time=\"%.3f\">\n",
                   cases.size(), failures, run.wall_s);
  xml += strprintf(
      "  <testsuite name=\"kgate.matrix\" tests=\"%zu\" failures=\"%d\" errors=\"0\" skipped=\"%d\" "
      "time=\"%.3f\">\n",
      cases.size(), failures, skipped, run.wall_s);
  for (const auto& c : cases) {
    xml += strprintf("    <testcase classname=\"%s\" name=\"%s\" time=\"%.3f\"",
                     xml_escape(c.classname).c_str(), xml_escape(c.name).c_str(), c.time);
    if (!c.skipped.empty()) {
      xml += ">\n      <skipped message=\"" + xml_escape(c.skipped) + "\"/>\n    </testcase>\n";
      continue;
    }
    if (c.failure_type.empty()) {
      xml += "/>\n";
      continue;
    }
    xml += ">\n      <failure type=\"" + xml_escape(c.failure_type) + "\" message=\"" +
           xml_escape(c.message) + "\">" + xml_escape(c.body) + "</failure>\n    </testcase>\n";
  }
  xml += "  </testsuite>\n</testsuites>\n";
  return xml;
}

std::string table(const MatrixRun& run) {
  std::vector<std::vector<std::string>> rows = {{"ENTRY", "RELEASE", "LOCKDOWN", "ACCEL", "BOOT", "VERDICT"}};
  for (const auto& r : run.results) {
    auto boot = boot_of(r);
    std::string verdict = r.verdict == FailureClass::pass ? "pass"
                          : r.cancelled                   ? "cancelled"
                                                          : "FAIL " + std::string(class_name(r.verdict));
    rows.push_back({r.entry.name, release_of(r).empty() ? "-" : release_of(r),
                    std::string(run::lockdown_name(r.entry.lockdown)),
                    accel_of(r).empty() ? "-" : accel_of(r), boot ? strprintf("%.2f s", *boot) : "-",
                    verdict});
  }
  std::string out = text_columns(rows);
  // Program x entry: verdict and instructions processed (or the reasons of a failure).
  TextRows grid = program_grid(
      run, "PROGRAM", [](const std::string& key) { return key; },
      [](const report::ProgramResult& p) {
        if (p.passed())
          return p.insns_processed >= 0 ? strprintf("pass %lld", static_cast<long long>(p.insns_processed))
                                        : std::string("pass");
        return p.verdict == "skipped" ? std::string("skip") : "FAIL " + joined(p.reasons, ",");
      });
  if (grid.size() == 1) return out;
  return out + "\n" + text_columns(grid);
}

std::string markdown(const MatrixRun& run) {
  const json s = summary_json(run);
  std::string out =
      strprintf("### kgate matrix: %s, %d of %zu entries passed%s%s\n\n",
                s["verdict"].get<std::string>() == "pass" ? "pass" : "FAIL", s["passed"].get<int>(),
                run.results.size(), run.interrupted ? " (interrupted)" : "",
                run.shard ? strprintf(" (shard %d/%d)", run.shard->index, run.shard->count).c_str() : "");
  std::vector<std::vector<std::string>> rows = {{"entry", "release", "lockdown", "arch", "boot", "verdict"}};
  for (const auto& r : run.results) {
    auto boot = boot_of(r);
    std::string verdict = r.verdict == FailureClass::pass ? "pass"
                          : r.cancelled                   ? "cancelled"
                                        : "**FAIL** `" + std::string(class_name(r.verdict)) + "`";
    if (r.verdict != FailureClass::pass && !r.message.empty()) verdict += ": " + r.message.substr(0, 200);
    rows.push_back({r.entry.name, release_of(r).empty() ? "-" : release_of(r),
                    std::string(run::lockdown_name(r.entry.lockdown)), r.entry.arch,
                    boot ? strprintf("%.2f s", *boot) : "-", verdict});
  }
  out += markdown_table(rows);
  // Program x entry: the verdict and the verifier's instructions processed.
  TextRows grid = program_grid(
      run, "program", [](const std::string& key) { return "`" + key + "`"; },
      [](const report::ProgramResult& p) {
        if (p.passed())
          return p.insns_processed >= 0
                     ? strprintf("pass, %lld insns", static_cast<long long>(p.insns_processed))
                     : std::string("pass");
        return p.verdict == "skipped" ? std::string("skipped") : "**FAIL** " + joined(p.reasons, ", ");
      });
  if (grid.size() == 1) return out;
  return out + "\n" + markdown_table(grid);
}

}  // namespace kgate::matrix

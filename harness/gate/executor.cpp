#include "gate/executor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "core/files.hpp"
#include "core/interrupt.hpp"
#include "core/strings.hpp"
#include "core/subprocess.hpp"
#include "gate/capped_log.hpp"
#include "matrix/matrix.hpp"
#include "matrix/runner.hpp"
#include "spec/spec.hpp"

extern char** environ;

namespace kgate::gate {

using nlohmann::json;

std::string_view status_name(GateStatus s) {
  switch (s) {
    case GateStatus::passed: return "passed";
    case GateStatus::failed: return "failed";
    case GateStatus::skipped: return "skipped";
    case GateStatus::timed_out: return "timed_out";
    case GateStatus::cancelled: return "cancelled";
  }
  return "cancelled";
}

namespace {

// Why a running gate is being stopped: its own deadline, or the whole run's cancellation.
enum class Stopping { no, timeout, cancel };

// An ebpf-matrix gate: the kernel matrix runs on a thread of its own (its runner waits on
// its VMs), tells the executor it is done through an eventfd, and is asked to stop
// through a pipe it polls.
struct MatrixJob {
  std::thread thread;
  UniqueFd done;  // eventfd, readable once the thread has finished
  UniqueFd stop_r, stop_w;
  // Written by the thread before it signals `done`.
  bool ok = false;
  bool interrupted = false;
  std::string reason;
  json entries = json::array();
};

struct Slot {
  const Gate* gate = nullptr;
  GateResult result;
  enum { waiting, running, done } state = waiting;
  Clock::time_point started;
  std::optional<Child> child;
  UniqueFd output;               // a command's stdout and stderr, read by kgate (non-blocking)
  std::optional<CappedLog> log;  // where `output` goes
  std::unique_ptr<MatrixJob> matrix;
  Clock::time_point deadline;
  Stopping stopping = Stopping::no;
  std::optional<Clock::time_point> kill_at;
};

std::vector<std::string> environment_for(const Gate& g, const ExecOptions& opts) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& [k, v] : g.env) env[k] = v;
  env["KGATE_GATE"] = g.name;
  env["KGATE_GATES_OUT"] = absolute_path(opts.out_dir).string();
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

// A command gate's argv[0], looked up on the gate's own PATH when the gate sets one (execvpe
// would search kgate's); relative PATH entries are relative to the gate's directory, as they
// would be for a shell started there. Not found there is an error, never kgate's PATH instead.
Result<std::vector<std::string>> resolve_argv(const Gate& g) {
  std::vector<std::string> argv = g.command;
  auto path = g.env.find("PATH");
  if (path == g.env.end() || argv[0].find('/') != std::string::npos) return argv;
  fs::path found = find_program(argv[0], path->second, g.cwd);
  if (found.empty())
    return fail(FailureClass::usage, "'" + argv[0] + "' is not on the gate's PATH (" + path->second + ")");
  argv[0] = found.string();
  return argv;
}

// A gate's log, written by kgate itself (an ebpf-matrix gate's progress, a command that
// cannot start). O_CLOEXEC: the matrix thread writes while the main thread starts other
// gates' commands, which must not inherit it.
class LogFile {
 public:
  LogFile(const fs::path& path, bool append)
      : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644)) {}
  LogFile& operator<<(std::string_view text) {
    while (fd_.valid() && !text.empty()) {
      ssize_t n = ::write(fd_.get(), text.data(), text.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      text.remove_prefix(static_cast<size_t>(n));
    }
    return *this;
  }
  LogFile& operator<<(size_t n) { return *this << std::string_view(std::to_string(n)); }
  LogFile& operator<<(int n) { return *this << std::string_view(std::to_string(n)); }

 private:
  UniqueFd fd_;
};

void run_matrix_gate(MatrixJob& job, const Gate& g, const ExecOptions& opts, const fs::path& log_path) {
  LogFile log(log_path, false);
  auto finish = [&](bool ok, std::string reason) {
    job.ok = ok;
    job.reason = std::move(reason);
    if (!job.reason.empty()) log << "kgate: " << job.reason << "\n";
  };
  fs::path matrix_file = g.matrix.empty() ? opts.default_matrix : g.matrix;
  auto m = matrix::load_matrix(matrix_file);
  if (!m) return finish(false, m.error().describe());
  auto entries = matrix::select(*m, g.entries);
  if (!entries) return finish(false, entries.error().describe());
  matrix::RunnerOptions ro;
  ro.kgate = opts.kgate;
  ro.out_dir = opts.out_dir / "matrix" / g.name;
  ro.jobs = g.jobs;
  if (!g.spec.empty()) {
    // Checked once here, so that a broken spec is one message, not one refusal per entry.
    if (auto spec = spec::load_spec(g.spec); !spec) return finish(false, spec.error().describe());
    ro.base.spec = g.spec;
  }
  if (!g.object.empty()) {
    if (!path_exists(g.object)) return finish(false, "object " + g.object.string() + ": no such file");
    ro.base.object = g.object;
  }
  if (!opts.catalog.empty()) ro.base.catalog = absolute_path(opts.catalog);
  ro.run_args = g.run_args;
  ro.stop_fd = job.stop_r.get();
  ro.stop_grace = opts.kill_grace;
  if (auto st = make_dirs(ro.out_dir); !st) return finish(false, st.error().describe());
  log << "kgate: matrix " << matrix_file.string() << ", entries " << g.entries << ", " << entries->size()
      << " to run, -j " << g.jobs << "\n";
  auto run = matrix::run_matrix(*entries, ro, [&](const matrix::EntryResult& r, bool done) {
    log << "kgate: " << matrix::event_line(r, done) << "\n";
  });
  log << matrix::table(run);
  if (auto st = matrix::write_reports(run, ro.out_dir); !st)
    log << "kgate: " << st.error().describe() << "\n";
  std::string failed;
  for (const auto& r : run.results) {
    fs::path dir = fs::path("matrix") / g.name / r.dir;
    job.entries.push_back(
        {{"name", r.entry.name},
         {"verdict", r.verdict == FailureClass::pass ? "pass" : (r.cancelled ? "cancelled" : "fail")},
         {"class", class_name(r.verdict)},
         {"exit_code", r.exit_code},
         {"message", r.message},
         {"dir", dir.string()},
         {"receipt", r.receipt ? report::receipt_json(*r.receipt) : json(nullptr)}});
    if (r.verdict != FailureClass::pass)
      failed += (failed.empty() ? "" : ", ") + r.entry.name + " [" + std::string(class_name(r.verdict)) + "]";
  }
  job.interrupted = run.interrupted;
  if (run.results.empty()) return finish(false, "no entries ran");
  finish(matrix::overall(run) == FailureClass::pass, failed.empty() ? "" : "entries not passed: " + failed);
}

// The processes kgate adopted as a child subreaper: descendants of gates whose own parent
// ended (a daemon that called setsid left its gate's process group, and the group kill does
// not reach it). Each is killed and reaped when the run ends, until none is left.
void end_adopted(const std::vector<pid_t>& own) {
  const pid_t self = ::getpid();
  for (int round = 0; round < 50; ++round) {
    std::vector<pid_t> adopted;
    std::error_code ec;
    for (const auto& ent : fs::directory_iterator("/proc", ec)) {
      const std::string name = ent.path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      const pid_t pid = static_cast<pid_t>(std::stol(name));
      auto stat = read_proc_stat(pid);
      if (stat && stat->ppid == self && std::find(own.begin(), own.end(), pid) == own.end())
        adopted.push_back(pid);
    }
    if (adopted.empty()) return;
    for (pid_t pid : adopted) ::kill(pid, SIGKILL);
    for (pid_t pid : adopted) {
      int st = 0;
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
    }
  }
}

// Settles a finished command gate: its status from the exit status, its expectation and
// why it was stopped.
void settle_command(Slot& s, int status) {
  GateResult& r = s.result;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  const std::string how = describe_status(status);
  if (s.stopping == Stopping::cancel) {
    r.status = GateStatus::cancelled;
    r.reason = "cancelled while running (" + how + ")";
  } else if (s.stopping == Stopping::timeout) {
    r.status = GateStatus::timed_out;
    r.reason = strprintf("still running after its timeout of %g s; its process group was stopped (%s)",
                         s.gate->timeout_s, how.c_str());
  } else if (s.gate->expect == Expect::pass) {
    r.status = status == 0 ? GateStatus::passed : GateStatus::failed;
    if (status != 0) r.reason = how;
  } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    const auto& codes = s.gate->expect_exit;
    if (codes.empty() || std::find(codes.begin(), codes.end(), WEXITSTATUS(status)) != codes.end()) {
      r.status = GateStatus::passed;
      r.reason = "failed as expected (" + how + ")";
    } else {
      r.status = GateStatus::failed;
      std::string want;
      for (int c : codes) want += (want.empty() ? "" : " or ") + std::to_string(c);
      r.reason = "expected to fail with exit code " + want + ", but it " + how;
    }
  } else {
    r.status = GateStatus::failed;
    r.reason = status == 0 ? "expected to fail, but it passed"
                           : "expected to fail with an exit code, but it was " + how;
  }
}

void settle_matrix(Slot& s) {
  MatrixJob& job = *s.matrix;
  if (job.thread.joinable()) job.thread.join();
  GateResult& r = s.result;
  r.matrix = std::move(job.entries);
  r.exit_code = job.ok ? 0 : 1;
  if (s.stopping == Stopping::cancel) {
    r.status = GateStatus::cancelled;
    r.reason = "cancelled while running";
  } else if (s.stopping == Stopping::timeout) {
    r.status = GateStatus::timed_out;
    r.reason = strprintf("still running after its timeout of %g s; its VMs were stopped", s.gate->timeout_s);
  } else if (s.gate->expect == Expect::pass) {
    r.status = job.ok ? GateStatus::passed : GateStatus::failed;
    r.reason = job.reason;
  } else {
    r.status = job.ok ? GateStatus::failed : GateStatus::passed;
    r.reason =
        job.ok ? "expected to fail, but every entry passed" : "failed as expected (" + job.reason + ")";
  }
}

// Moves what a command wrote from its pipe to its log: a bounded number of reads while it runs,
// so that one chatty gate does not hold up the others; once it has exited, what is left in
// the pipe (a descendant that left its group may still hold the pipe open: the reads stop
// when it is empty, not at end of file).
void pump(Slot& s, bool exited) {
  static char buf[1 << 16];  // the executor's thread only
  for (int i = 0; s.output.valid() && i < (exited ? 1024 : 16); ++i) {
    ssize_t n = ::read(s.output.get(), buf, sizeof buf);
    if (n > 0) {
      s.log->write(std::string_view(buf, static_cast<size_t>(n)));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (n == 0) s.output.reset();
      break;
    }
  }
}

void start(Slot& s, const ExecOptions& opts, Clock::time_point run_start) {
  const Gate& g = *s.gate;
  GateResult& r = s.result;
  s.state = Slot::running;
  s.started = Clock::now();
  s.deadline =
      s.started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(g.timeout_s));
  r.started = true;
  r.start_s = std::chrono::duration<double>(s.started - run_start).count();
  r.log = fs::path("logs") / (g.name + ".log");
  const fs::path log = opts.out_dir / r.log;
  if (g.kind == GateKind::ebpf_matrix) {
    auto job = std::make_unique<MatrixJob>();
    job->done.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    int p[2];
    if (!job->done.valid() || ::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
      s.state = Slot::done;
      r.status = GateStatus::failed;
      r.reason = "cannot start the matrix: out of file descriptors";
      return;
    }
    job->stop_r.reset(p[0]);
    job->stop_w.reset(p[1]);
    MatrixJob* raw = job.get();
    job->thread = std::thread([raw, &g, &opts, log] {
      run_matrix_gate(*raw, g, opts, log);
      uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(raw->done.get(), &one, sizeof one);
    });
    s.matrix = std::move(job);
    return;
  }
  // The command writes to a pipe that kgate reads into the log, which keeps the log under the
  // gate's log_limit_mb. Both ends O_CLOEXEC, so that no other gate's command inherits them;
  // the child gets its end through /proc/self/fd, as run_capture does.
  UniqueFd out_w;
  auto child = [&]() -> Result<Child> {
    auto argv = resolve_argv(g);
    if (!argv) return std::unexpected(argv.error());
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return fail_errno("pipe", errno);
    s.output.reset(p[0]);
    out_w.reset(p[1]);
    ::fcntl(s.output.get(), F_SETFL, O_NONBLOCK);
    auto capped = CappedLog::open(log, g.log_limit_bytes);
    if (!capped) return std::unexpected(capped.error());
    s.log.emplace(std::move(*capped));
    SpawnOptions so;
    so.stdout_path = "/proc/self/fd/" + std::to_string(out_w.get());
    so.cwd = g.cwd;
    return Child::spawn(*argv, so, environment_for(g, opts));
  }();
  out_w.reset();
  if (!child) {
    s.output.reset();
    s.log.reset();
    s.state = Slot::done;
    r.exit_code = 127;
    r.duration_s = seconds_since(s.started);
    // A command that cannot start has failed; for an expect=fail gate that is not the
    // refusal it exists to prove.
    r.status = GateStatus::failed;
    r.reason = "cannot start: " + child.error().describe();
    LogFile(log, false) << "kgate: " << r.reason << "\n";
    return;
  }
  s.child.emplace(std::move(*child));
}

}  // namespace

Execution execute(const Pipeline& p, const std::vector<size_t>& selected, const ExecOptions& opts,
                  const GateEvent& event) {
  Execution ex;
  ex.started = std::chrono::system_clock::now();
  const auto run_start = Clock::now();
  std::vector<Slot> slots(selected.size());
  std::map<std::string, size_t> slot_of;
  for (size_t i = 0; i < selected.size(); ++i) {
    slots[i].gate = &p.gates[selected[i]];
    slots[i].result.name = slots[i].gate->name;
    slot_of[slots[i].gate->name] = i;
  }
  (void)make_dirs(opts.out_dir / "logs");
  // Descendants whose parent ends are re-parented to kgate rather than to init, so that none
  // outlives the run (end_adopted).
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  auto finish = [&](Slot& s) {
    s.state = Slot::done;
    s.result.duration_s = seconds_since(s.started);
    if (s.log) {
      pump(s, true);
      s.log->finish();
      s.result.log_bytes = s.log->total();
      s.result.log_dropped = s.log->dropped();
      s.output.reset();
      s.log.reset();
    }
    s.child.reset();
    s.matrix.reset();
    if (event) event(*s.gate, s.result, true);
  };
  const int jobs = std::max(1, opts.jobs);

  // Cancels the run: running gates are told to stop (a command's process group gets SIGTERM,
  // then SIGKILL after the grace; a matrix is asked through its stop pipe), and nothing else
  // starts.
  auto cancel = [&](Clock::time_point now, const std::vector<bool>& exited) {
    ex.cancelled = true;
    ex.cancel_reason = opts.cancel_reason ? opts.cancel_reason() : "";
    if (ex.cancel_reason.empty()) ex.cancel_reason = std::string("SIG") + ::sigabbrev_np(interrupt_signal());
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      if (s.state != Slot::running || exited[i]) continue;
      s.stopping = Stopping::cancel;
      if (s.child) {
        ::kill(-s.child->pid(), SIGTERM);
        s.kill_at = now + opts.kill_grace;
      } else {
        [[maybe_unused]] auto n = ::write(s.matrix->stop_w.get(), "x", 1);
      }
    }
  };

  for (;;) {
    // A signal that arrived while gates were being started or settled cancels before anything
    // more starts.
    if (!ex.cancelled && interrupt_signal() != 0)
      cancel(Clock::now(), std::vector<bool>(slots.size(), false));
    // Gates whose needs have all ended either run or are skipped.
    std::vector<size_t> ready;
    if (!ex.cancelled) {
      for (size_t i = 0; i < slots.size(); ++i) {
        Slot& s = slots[i];
        if (s.state != Slot::waiting) continue;
        bool ended = true;
        std::string not_green;
        for (const auto& n : s.gate->needs) {
          const Slot& need = slots[slot_of.at(n)];
          if (need.state != Slot::done) {
            ended = false;
            break;
          }
          if (need.result.status != GateStatus::passed) {
            not_green += (not_green.empty() ? "" : ", ") + n + " (" +
                         std::string(status_name(need.result.status)) + ")";
          }
        }
        if (!ended) continue;
        if (!not_green.empty() && !s.gate->always) {
          s.state = Slot::done;
          s.result.status = GateStatus::skipped;
          s.result.reason = "needs " + not_green;
          if (event) event(*s.gate, s.result, true);
          continue;  // gates come after their needs, so a gate that needs this one sees it later in this pass
        }
        ready.push_back(i);
      }
    }
    int running = 0;
    for (const auto& s : slots) running += s.state == Slot::running;
    for (size_t i : ready) {
      if (running >= jobs) break;
      Slot& s = slots[i];
      start(s, opts, run_start);
      if (event) event(*s.gate, s.result, false);
      if (s.state == Slot::done) {
        finish(s);
        continue;
      }
      ++running;
    }
    if (running == 0) {
      bool started_any = false;
      for (size_t i : ready) started_any |= slots[i].state != Slot::waiting;
      if (started_any) continue;  // gates that failed to start may let others settle
      break;
    }

    // Wait for a gate to end, a deadline, or a signal.
    std::vector<pollfd> fds;
    std::vector<size_t> fd_slot;
    Clock::time_point next = Clock::time_point::max();
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      if (s.state != Slot::running) continue;
      fds.push_back({s.child ? s.child->pidfd() : s.matrix->done.get(), POLLIN, 0});
      fd_slot.push_back(i);
      next = std::min(next, s.kill_at ? *s.kill_at : (s.stopping == Stopping::no ? s.deadline : next));
    }
    if (!ex.cancelled && interrupt_fd() >= 0) fds.push_back({interrupt_fd(), POLLIN, 0});
    const size_t outputs_at = fds.size();
    std::vector<size_t> output_slot;
    for (size_t i = 0; i < slots.size(); ++i) {
      if (slots[i].state != Slot::running || !slots[i].output.valid()) continue;
      fds.push_back({slots[i].output.get(), POLLIN, 0});
      output_slot.push_back(i);
    }
    int timeout_ms = -1;
    if (next != Clock::time_point::max()) {
      auto left = std::chrono::ceil<Millis>(next - Clock::now()).count();
      timeout_ms = static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
    }
    ::poll(fds.data(), fds.size(), timeout_ms);
    const auto now = Clock::now();
    for (size_t k = 0; k < output_slot.size(); ++k) {
      if (fds[outputs_at + k].revents & (POLLIN | POLLHUP | POLLERR)) pump(slots[output_slot[k]], false);
    }

    if (!ex.cancelled && interrupt_signal() != 0) {
      // A gate whose command has already exited is settled below as it ended, not cancelled.
      std::vector<bool> exited(slots.size(), false);
      for (size_t k = 0; k < fd_slot.size(); ++k) exited[fd_slot[k]] = (fds[k].revents & POLLIN) != 0;
      cancel(now, exited);
    }
    for (size_t k = 0; k < fd_slot.size(); ++k) {
      Slot& s = slots[fd_slot[k]];
      if (s.child) {
        if (fds[k].revents & POLLIN) {
          // Exited but not yet reaped, so its pid still names its group: whatever it left
          // running in that group goes with it. A gate's processes end with the gate.
          ::kill(-s.child->pid(), SIGKILL);
          if (auto st = s.child->try_wait()) {
            settle_command(s, *st);
            finish(s);
            continue;
          }
        }
        if (s.kill_at && now >= *s.kill_at) {
          s.child->kill();
          s.kill_at.reset();
        } else if (s.stopping == Stopping::no && now >= s.deadline) {
          s.stopping = Stopping::timeout;
          ::kill(-s.child->pid(), SIGTERM);
          s.kill_at = now + opts.kill_grace;
        }
      } else {
        if (fds[k].revents & POLLIN) {
          settle_matrix(s);
          finish(s);
          continue;
        }
        if (s.stopping == Stopping::no && now >= s.deadline) {
          s.stopping = Stopping::timeout;
          [[maybe_unused]] auto n = ::write(s.matrix->stop_w.get(), "x", 1);
        }
      }
    }
  }

  for (auto& s : slots) {
    if (s.state == Slot::done) continue;
    s.state = Slot::done;
    s.result.status = GateStatus::cancelled;
    s.result.reason = "cancelled before it started";
    if (event) event(*s.gate, s.result, true);
  }
  for (auto& s : slots) ex.results.push_back(std::move(s.result));
  end_adopted({});
  ex.ended = std::chrono::system_clock::now();
  ex.wall_s = seconds_since(run_start);
  return ex;
}

Execution not_run(const Pipeline& p, const std::vector<size_t>& selected, const std::string& why) {
  Execution ex;
  ex.started = ex.ended = std::chrono::system_clock::now();
  ex.cancelled = true;
  ex.cancel_reason = why;
  for (size_t i : selected) {
    GateResult r;
    r.name = p.gates[i].name;
    r.status = GateStatus::cancelled;
    r.reason = "cancelled before it started";
    ex.results.push_back(std::move(r));
  }
  return ex;
}

}  // namespace kgate::gate

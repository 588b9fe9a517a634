// Runs a pipeline's gates: at most `jobs` at once, each as soon as its needs have ended,
// each command in its own process group with its own log and deadline. A signal (SIGINT,
// SIGTERM, SIGHUP) cancels the run: running gates are stopped, whole process groups, and
// the rest are marked cancelled, so the caller can still write the receipt.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/deadline.hpp"
#include "gate/pipeline.hpp"

namespace kgate::gate {

enum class GateStatus { passed, failed, skipped, timed_out, cancelled };
std::string_view status_name(GateStatus s);

struct GateResult {
  std::string name;
  GateStatus status = GateStatus::cancelled;
  bool started = false;
  int exit_code = -1;  // the command's exit code, 128+N for signal N; -1 if it never ran
  std::string reason;  // why it is not green; for a green expect=fail gate, how it failed
  double start_s = 0;  // seconds after the run began
  double duration_s = 0;
  fs::path log;  // relative to the output directory
  // A command's output: how many bytes it wrote, and how many of them its capped log dropped
  // (gate.log_limit_bytes); 0 for an ebpf-matrix gate.
  std::uint64_t log_bytes = 0, log_dropped = 0;
  nlohmann::json matrix;  // ebpf-matrix: the entries, each with its receipt; null otherwise
};

struct ExecOptions {
  int jobs = 1;
  fs::path out_dir;         // logs/<gate>.log, matrix/<gate>/<entry>/...
  fs::path kgate;           // this executable: an ebpf-matrix gate's entries are `kgate run` children
  fs::path default_matrix;  // for ebpf-matrix gates that name none
  fs::path catalog;         // the kernel catalog every ebpf-matrix entry's request names
  Clock::duration kill_grace = std::chrono::seconds(5);  // from SIGTERM to SIGKILL
  // Asked once, when a signal cancels the run, for the receipt's reason ("SIGTERM", or
  // "superseded by ..." for a concurrency group).
  std::function<std::string()> cancel_reason;
};

struct Execution {
  std::vector<GateResult> results;  // the selected gates, in pipeline order
  bool cancelled = false;
  std::string cancel_reason;
  std::chrono::system_clock::time_point started, ended;
  double wall_s = 0;
};

// Called when a gate starts (done == false) and when it ends (done == true), from the
// calling thread.
using GateEvent = std::function<void(const Gate&, const GateResult&, bool done)>;

Execution execute(const Pipeline& p, const std::vector<size_t>& selected, const ExecOptions& opts,
                  const GateEvent& event);

// A run that never started (a concurrency group that could not be taken): every selected
// gate cancelled before it started, for `why`, so the receipt is still written.
Execution not_run(const Pipeline& p, const std::vector<size_t>& selected, const std::string& why);

}  // namespace kgate::gate

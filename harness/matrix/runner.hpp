#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "matrix/matrix.hpp"
#include "report/receipt.hpp"
#include "run/run.hpp"

namespace kgate::matrix {

// How one entry ended.
struct EntryResult {
  Entry entry;
  bool started = false;
  bool cancelled = false;  // never started, or stopped by an interrupt
  int exit_code = -1;
  FailureClass verdict = FailureClass::no_verdict;  // from its receipt; a missing receipt is no_verdict
  std::string message;
  std::optional<report::Receipt> receipt;  // read back; none when none was written or it is unreadable
  fs::path dir;                            // its receipt directory, relative to the matrix output directory
  double wall_s = 0;
};

struct MatrixRun {
  std::vector<EntryResult> results;  // in matrix order
  bool interrupted = false;
  double wall_s = 0;
  // With --shard: which slice this is, and every entry the selection named before slicing (so that
  // `kgate matrix merge` can tell a missing shard from a small matrix).
  std::optional<Shard> shard;
  std::vector<std::string> selected;
};

struct RunnerOptions {
  fs::path kgate;    // this executable: each entry is one `kgate run` child
  fs::path out_dir;  // <out_dir>/<entry>/ per entry
  int jobs = 1;      // VMs at once
  // Every entry runs this request with the entry's kernel, lockdown and arch filled in, written to
  // <out_dir>/<entry>/request.json and run as `kgate run --request` (run/request.hpp).
  run::RunRequest base;
  std::vector<std::string> run_args;  // options after it, overriding it (a gate's run_args)
  int stop_fd = -1;                   // readable: stop as on SIGTERM (the gate executor's timeout or cancel)
  // From SIGTERM to SIGKILL for the running entries, once stopped: time for each `kgate run`
  // to stop its QEMU and write its interrupted receipt.
  Clock::duration stop_grace = std::chrono::seconds(15);
};

// Called when an entry starts (done == false) and when it ends (done == true).
using EntryEvent = std::function<void(const EntryResult&, bool done)>;

// Runs the entries, at most `jobs` at a time, each as its own `kgate run`
// process (its own QEMU, deadlines and receipt), so that one entry's crash
// cannot take another's result with it. SIGINT/SIGTERM stops every running
// entry (each writes its interrupted receipt and stops its QEMU) and cancels
// the ones not started.
MatrixRun run_matrix(const std::vector<Entry>& entries, const RunnerOptions& opts, const EntryEvent& event);

// The request an entry runs: `base` with the entry's name, catalog kernel, lockdown and arch.
run::RunRequest entry_request(const run::RunRequest& base, const Entry& e);

// The line that says how an entry went, as `kgate matrix` and an ebpf-matrix gate print it:
// "<entry>: started", "<entry>: pass (2.1 s)", "<entry>: FAIL [boot_hang] ... (90.0 s)".
std::string event_line(const EntryResult& r, bool done);

// Writes matrix-summary.json, junit.xml and matrix-summary.md into `out_dir`.
Status write_reports(const MatrixRun& run, const fs::path& out_dir);

// Pure reports of a run.
FailureClass overall(const MatrixRun& run);  // pass only if every entry passed
nlohmann::json summary_json(const MatrixRun& run);
std::string junit_xml(const MatrixRun& run);
std::string table(const MatrixRun& run);
// GitHub-flavoured Markdown: a verdict line, the entry table and the program x entry table.
std::string markdown(const MatrixRun& run);
std::string xml_escape(std::string_view text);

}  // namespace kgate::matrix

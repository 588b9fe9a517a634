#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"

namespace kgate::report {

// 2: several objects, per-program verdicts with reasons and the verifier's statistics.
inline constexpr const char* receipt_schema = "kgate.receipt/2";

// What one program did in the guest, as the host judged it against its spec.
struct ProgramResult {
  std::string object;  // the spec's name for the object
  std::string name;
  std::string section;
  std::string type;
  std::string attach;                // the spec's mode: "auto", "test_run", "load_only"
  std::string verdict;               // "pass", "fail" or "skipped"
  std::vector<std::string> reasons;  // stable names (run/judge.hpp), empty on a pass
  std::string skip_reason;
  bool loaded = false;
  bool attached = false;
  // The verifier's numbers: from its statistics line (log_level 4), -1 where absent.
  std::int64_t insns_processed = -1;
  std::int64_t total_states = -1;
  std::int64_t peak_states = -1;
  std::int64_t verification_us = -1;
  std::string stack_depth;
  std::optional<std::uint32_t> verified_insns;  // bpf_prog_info, kernels 5.16+
  std::uint32_t xlated_bytes = 0;
  std::uint32_t jited_bytes = 0;
  double load_ms = 0;
  double attach_ms = 0;  // the guest's attach call, and destroying its link at detach
  double detach_ms = 0;
  std::optional<std::uint64_t> run_count;  // bpf_prog_info.run_cnt with BPF stats on
  std::uint64_t run_time_ns = 0;
  std::uint64_t required_runs = 0;
  std::uint64_t records = 0;        // ring buffer records counted as this program's
  std::uint64_t nonce_records = 0;  // of those, records carrying this run's nonce
  std::uint64_t required_records = 0;
  std::vector<std::int64_t> retvals;  // test_run
  std::string error;                  // every problem found, "; "-separated
  std::vector<std::string> log_tail;  // a refused program's verifier log, last lines
  bool passed() const { return verdict == "pass"; }
};

// Everything a run observed: plain data, filled in as the run goes, written
// whatever happened. Rendering is pure and byte-stable (sorted keys).
struct Receipt {
  std::string kgate_version;
  // The machine that ran it: {name, kernel (its release), cpus}; null in older receipts.
  nlohmann::json host;
  nlohmann::json request;  // the request this run answered (run::request_json); null if none
  std::string entry;
  std::string arch;  // the guest arch booted ("x86_64", "arm64"); empty if the run ended before
  struct {
    std::string catalog_entry;  // the catalog kernel; empty for --kernel
    std::string source;
    std::string release_expected;  // from the package; empty for a bare file
    std::string image_sha256;
    std::string boot_sha256;
    bool pvh = false;
  } kernel;
  struct {
    std::string sha256;
    std::string agent_sha256;
    std::vector<std::string> modules;
  } initramfs;
  struct {
    std::string binary;
    std::string version;
    std::string accel;
    std::string accel_note;  // why this accelerator
    std::string machine;
    std::vector<std::string> argv;
  } qemu;
  std::string cmdline;
  nlohmann::json guest;  // the agent's hello as received (release, lockdown, ...); null if none
  // The BPF objects this run loaded, in the spec's order.
  struct Object {
    std::string name;
    std::string path;  // the user's file; "" for kgate's built-in probe
    std::string sha256;
    std::uint64_t size = 0;
    std::string copy;  // the copy in the receipt directory, relative to it; "" for the built-in
    std::vector<double> load_rounds_ms;  // each load the agent made of it (a refused program costs one more)
  };
  std::vector<Object> objects;
  // The run spec: the user's file (--spec), "" for one kgate made (--object alone, the probe).
  struct {
    std::string file;
    std::string sha256;
    std::string copy;  // "spec.json" in the receipt directory, when there is a file
    std::string description;
  } spec;
  struct {
    std::string name;
    std::string sha256;
  } canary;
  nlohmann::json lockdown;   // run::lockdown_json(); null if the run ended before the proof
  nlohmann::json preflight;  // the kernel config check before boot; null if not reached
  nlohmann::json btf;        // where CO-RE relocations took their BTF from; null if not reached
  std::string nonce;
  int trigger_count = 0;
  std::vector<ProgramResult> programs;
  nlohmann::json leftovers;  // {"programs": [...], "links": [...]} from the agent; null if not reached
  // A user's loader (spec "loader"): the executable, its argv and environment, readiness, exit,
  // output tail and the kernel's view of its programs; null without one.
  nlohmann::json loader;
  // The files the run shipped into the guest: [{dest, source, sha256, size, copy}], each copied
  // into the receipt directory (copy relative to it), so that `kgate repro` has the same bytes.
  nlohmann::json files = nlohmann::json::array();
  // `kgate repro`: {from, recorded: {verdict, class}, differences: [...]}; null for another run.
  nlohmann::json repro;
  // --gdb: {gdb (the stub's socket or address), gdb_wait, command}; null without it.
  nlohmann::json debug;
  std::vector<std::pair<std::string, double>> timings_s;
  FailureClass verdict = FailureClass::no_verdict;
  std::string failure_message;
  std::string console_log;                // file name, relative to the receipt
  std::string kernel_log;                 // the guest's whole kernel log; "" until it was read
  std::vector<std::string> console_tail;  // on failure only
  nlohmann::json
      console_splats;  // kernel splats on the console: [{id, line_no, line, context}]; null: no console
};

// A failure message fit for the receipt and a terminal line: a message longer than `limit` keeps
// its head and tail around a note naming `file` (relative to the receipt), where the caller keeps
// the whole text (a tar listing, a guest's words, a long list).
inline constexpr std::size_t failure_message_limit = 4096;
std::string bounded_message(std::string_view text, std::size_t limit, std::string_view file);

nlohmann::json receipt_json(const Receipt& r);
// The inverse, for receipt.json files (the matrix's reports, a run repeated from its receipt):
// the schema must be this kgate's, and the verdict and failure class must agree; other fields
// read as their defaults where missing or of the wrong type. Class usage, naming `origin`.
Result<Receipt> receipt_from_json(const nlohmann::json& j, std::string_view origin);
Result<Receipt> read_receipt(const fs::path& file);
std::string render_receipt(const Receipt& r);
// Writes <dir>/receipt.json atomically.
Status write_receipt(const fs::path& dir, const Receipt& r);

}  // namespace kgate::report

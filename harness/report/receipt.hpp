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

inline constexpr const char* receipt_schema = "kgate.receipt/1";

// What one gate program did in the guest, as the host judged it.
struct ProgramResult {
  std::string name;
  std::string section;
  std::string type;
  bool loaded = false;
  bool attached = false;
  std::optional<std::uint32_t> verified_insns;
  std::optional<std::uint32_t> xlated_insns;
  std::optional<std::uint64_t> run_count;
  int events = 0;         // records carrying this program's name
  int nonce_matched = 0;  // of those, records carrying this run's nonce
  int required = 0;       // at least this many matched records to pass
  std::string error;
  bool passed() const { return loaded && attached && nonce_matched >= required && required > 0; }
};

// Everything a run observed: plain data, filled in as the run goes, written
// whatever happened. Rendering is pure and byte-stable (sorted keys).
struct Receipt {
  std::string kgate_version;
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
  struct {
    std::string name;
    std::string sha256;
  } object;
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
  std::vector<std::pair<std::string, double>> timings_s;
  FailureClass verdict = FailureClass::no_verdict;
  std::string failure_message;
  std::string console_log;                // file name, relative to the receipt
  std::vector<std::string> console_tail;  // on failure only
  nlohmann::json
      console_splats;  // kernel splats on the console: [{id, line_no, line, context}]; null: no console
};

nlohmann::json receipt_json(const Receipt& r);
std::string render_receipt(const Receipt& r);
// Writes <dir>/receipt.json atomically.
Status write_receipt(const fs::path& dir, const Receipt& r);

}  // namespace kgate::report

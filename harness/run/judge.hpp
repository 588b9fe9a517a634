// Judging one object's programs: what the spec expects against what the guest reported.
// Pure and table-tested (tests/unit/test_judge.cpp): no I/O, no clock, nothing from the
// running kernel but the observations passed in.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "channel/protocol.hpp"
#include "report/receipt.hpp"
#include "spec/spec.hpp"

namespace kgate::run {

// What the guest reported about one object, as received and bounded by proto's readers. A
// phase that never ran leaves its response at the default (ok false, empty lists).
struct ObjectObservation {
  proto::LoadResponse load;
  bool attach_reached = false;
  proto::AttachResponse attach;
  bool trigger_reached = false;
  proto::TriggerResponse trigger;
  bool drain_reached = false;
  proto::DrainResponse drain;
  std::vector<proto::Record> records;
  std::string records_error;  // a malformed drain body
  proto::DetachResponse detach;
};

// What the judge needs to know about the run beyond one object.
struct RunFacts {
  std::string nonce;    // this run's nonce, 16 hex digits
  int count = 1;        // trigger rounds
  std::string arch;     // "x86_64", "arm64"
  std::string release;  // the guest's uname -r
  std::int64_t agent_pid = 0;
  bool kernel_btf = false;                     // the guest has /sys/kernel/btf/vmlinux
  bool btf_file = false;                       // --btf was sent
  std::vector<std::string> lockdown_refusals;  // the kernel's "Lockdown:" lines
  std::string lockdown_level;                  // as observed in the guest
};

// Why a program is skipped on this run ("" when it is not): its spec's skip rules against the
// arch and the guest's kernel release, then the object's min_kernel.
std::string skip_reason(const spec::ObjectSpec& object, const spec::ProgramSpec* program,
                        const RunFacts& facts);

// Pure: compares two kernel releases by their leading dotted numbers ("6.1.0-56-amd64" vs
// "5.15"); true when `release` sorts before `version`.
bool release_below(std::string_view release, std::string_view version);

// Pure: each program of the spec's object (a run's spec lists every program of the object, in the
// object's order) with its verdict, its reasons and its verifier statistics.
std::vector<report::ProgramResult> judge_object(const spec::ObjectSpec& object, const ObjectObservation& obs,
                                                const RunFacts& facts);

// Pure: the first program the load refused for a CO-RE relocation (judged as a program's
// verdict is), or "(object)" when the object as a whole failed for one; "" when none was. A
// program loaded alone was expected to be refused: its refusal is the expected result.
std::string core_relocation_refusal(const proto::LoadResponse& load, const RunFacts& facts);

// Pure: programs the guest reported that the object does not have (a lying or confused guest).
std::vector<std::string> unknown_programs(const spec::ObjectSpec& object, const ObjectObservation& obs);

// What the guest reported about a user's loader. A phase that never ran leaves its response at
// the default.
struct LoaderObservation {
  bool start_reached = false;
  proto::LoaderResponse start;  // the kernel's view once ready (or at the deadline, or the exit)
  bool trigger_reached = false;
  proto::TriggerResponse trigger;
  bool stats_reached = false;
  proto::LoaderResponse stats;  // after the triggers
  bool stop_reached = false;
  proto::LoaderResponse stop;
};

// Pure: each program the loader spec names, with its verdict: found in the kernel's list by name
// (its first 15 bytes) and type, attached (a link), run by the triggers, gone after the stop.
// This run's nonce (16 hex digits) as a record or value would carry it.
std::string encoded_nonce(const std::string& nonce_hex, spec::NonceEncoding enc);

std::vector<report::ProgramResult> judge_loader(const spec::LoaderSpec& loader, const LoaderObservation& obs,
                                                const RunFacts& facts);

struct RunJudgement {
  FailureClass verdict = FailureClass::no_verdict;
  std::string message;  // every failing program with its reasons, then `problems`, "; "-separated
};
// Pure: the entry's verdict. It passes only when at least one program was judged, every judged
// program passed, and there are no run-level problems (leftovers, another kernel than expected).
RunJudgement judge_run(const std::vector<report::ProgramResult>& programs,
                       const std::vector<std::string>& problems);

// The reason names, stable in receipts (docs/spec.md).
namespace reason {
inline constexpr const char* verifier_reject = "verifier_reject";
inline constexpr const char* core_relocation = "core_relocation";
inline constexpr const char* btf_missing = "btf_missing";
inline constexpr const char* lockdown_refused = "lockdown_refused";
inline constexpr const char* attach_failed = "attach_failed";
inline constexpr const char* did_not_fire = "did_not_fire";
inline constexpr const char* nonce_missing = "nonce_missing";
inline constexpr const char* records_missing = "records_missing";
inline constexpr const char* test_run_mismatch = "test_run_mismatch";
inline constexpr const char* leaked = "leaked";
inline constexpr const char* unexpected_load = "unexpected_load";      // expect.loads false, but it loaded
inline constexpr const char* unexpected_attach = "unexpected_attach";  // expect.attaches false, but it did
inline constexpr const char* never_loaded = "never_loaded";            // a loader's program never appeared
inline constexpr const char* loader_exited = "loader_exited";  // the loader ended before it was stopped
}  // namespace reason

}  // namespace kgate::run

// The host<->agent protocol: every op, request and response, with its JSON mapping, in one
// place shared by the host (run/) and the guest agent (agent/). Frames carry the JSON header;
// bulk bytes (an object, a BTF file, a shipped file, ring buffer records) travel as the frame's
// body. The agent's hello names `protocol_version`; the host refuses any other.
//
// The guest is untrusted: every *_from_json reads through the checked getters of fields.hpp,
// never throws, and caps what it keeps (strings, list lengths), so a lying guest can produce a
// wrong report but never a crash or an unbounded receipt. A missing field reads as its default,
// which the judge treats as "not observed".
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/strings.hpp"

namespace kgate::proto {

inline constexpr int protocol_version = 5;
inline constexpr const char* port_name = "org.kgate.channel";

enum class Op {
  btf,      // body: the BTF libbpf takes for CO-RE from now on; an empty body: the kernel's own
  load,     // body: an object's bytes; answers a handle and per-program load results
  attach,   // attaches a loaded object's programs, each by its mode
  trigger,  // runs the trigger actions and test runs `count` times
  drain,    // drains the object's ring buffers once; run counts; map values. Body: the records
  detach,   // closes the object; reports what of it the kernel still holds
  dmesg,    // the kernel log
  poweroff,
  loader_start,  // starts a user's loader and waits until the kernel shows its programs (or a deadline)
  loader_stats,  // the loader's programs as the kernel shows them now (run counts)
  loader_stop,   // SIGTERM, a grace, SIGKILL; then waits for what it created to go
  shell,         // pins what is loaded, runs an interactive shell on the guest's console port until it exits
};
std::string_view op_name(Op op);
std::optional<Op> parse_op(std::string_view name);

// Caps on what the host keeps of a guest report.
inline constexpr std::size_t max_text_bytes = 64 * 1024;  // a verifier log tail, an error
inline constexpr std::size_t max_list = 4096;             // programs, maps, rings per object
inline constexpr std::size_t max_records = 65536;         // ring buffer records kept per drain

// ---- hello ----
struct Hello {
  int protocol = 0;
  std::string agent;
  std::string release;  // uname -r
  std::string version;  // uname -v
  std::string machine;  // uname -m
  std::string cmdline;
  std::string lockdown;  // /sys/kernel/security/lockdown as read
  std::string lsm;
  bool btf = false;  // /sys/kernel/btf/vmlinux readable
  std::int64_t pid = 0;
  nlohmann::json mounts;   // bounded copy: {name: "ok"|error}
  nlohmann::json modules;  // bounded copy
  double uptime_s = 0;
  // Bounded copy: the agent's start, /proc/uptime when it began ("exec_uptime_s"), and its steps
  // before the hello in milliseconds ("mounts_ms", "modules_ms", "port_ms").
  nlohmann::json startup;
};
nlohmann::json to_json(const Hello& h);
// Fills `h` from what the guest sent; returns the first missing required field ("" if none).
std::string hello_from_json(const nlohmann::json& j, Hello& h);

// ---- load ----
struct ProgramOption {
  std::string name;
  bool autoload = true;  // false: the spec skips it; it is not loaded
  bool alone = false;    // expected to be refused: loaded alone, with the full verifier log
};
struct LoadRequest {
  std::string name;  // the object's name (libbpf's object_name)
  std::vector<ProgramOption> programs;
  std::string nonce_global;  // a `const volatile` u64 in .rodata to set to `nonce` before load
  std::string nonce;         // 16 hex digits
};
nlohmann::json to_json(const LoadRequest& r);
LoadRequest load_request_from_json(const nlohmann::json& j);

// The verifier's statistics line (log_level 4), as parsed from its log; -1 where absent.
struct VerifierStats {
  std::int64_t insns_processed = -1;
  std::int64_t insn_limit = -1;
  std::int64_t max_states_per_insn = -1;
  std::int64_t total_states = -1;
  std::int64_t peak_states = -1;
  std::int64_t mark_read = -1;
  std::int64_t verification_us = -1;
  std::string stack_depth;  // "0", or "16+32" with subprograms
  bool found() const { return insns_processed >= 0; }
};
// Pure: finds the statistics lines anywhere in a verifier log ("processed N insns (limit L)
// max_states_per_insn M total_states T peak_states P mark_read R", "verification time N usec",
// "stack depth D"); the last of each counts.
VerifierStats parse_verifier_stats(std::string_view log);
nlohmann::json to_json(const VerifierStats& s);
VerifierStats verifier_stats_from_json(const nlohmann::json& j);

struct ProgramLoad {
  std::string name;
  std::string section;
  std::string type;  // libbpf's name: "tracepoint", "xdp", ...
  bool autoload = true;
  bool loaded = false;
  bool alone = false;  // loaded alone (expected to be refused), not part of the object's handle
  std::uint32_t prog_id = 0;
  int err = 0;        // errno of a refused load
  std::string error;  // what refused it
  // The verifier's log: the stats-level log of the load that counted, and for a rejected
  // program the tail of a full (level 1) log with the failing instruction and source line.
  std::string log;
  VerifierStats stats;
  std::optional<std::uint32_t> verified_insns;  // bpf_prog_info, kernels 5.16+
  std::uint32_t xlated_bytes = 0;
  std::uint32_t jited_bytes = 0;
  std::uint64_t load_ns = 0;  // the kernel's load of this program (boot-time stamps)
  std::string libbpf;         // libbpf's own messages about this program (CO-RE, attach targets)
};
struct MapLoad {
  std::string name;
  std::string type;
  std::uint32_t id = 0;
};
struct LoadResponse {
  bool ok = false;    // the object is loaded (possibly with rejected programs left out)
  int handle = 0;     // names the object in later requests
  std::string error;  // object-level failure (open, maps, BTF): no program could be judged
  int err = 0;
  std::string libbpf;            // libbpf's messages not tied to one program
  int rounds = 0;                // loads it took: one plus one per rejected program, and one alone for each
  std::vector<double> round_ms;  // each load's time in the guest, in order
  std::vector<ProgramLoad> programs;
  std::vector<MapLoad> maps;
};
nlohmann::json to_json(const LoadResponse& r);
LoadResponse load_response_from_json(const nlohmann::json& j);

// ---- attach ----
enum class AttachHow { none, auto_attach, uprobe, usdt };
struct AttachOption {
  std::string name;
  AttachHow how = AttachHow::auto_attach;
  std::string binary;  // uprobe/usdt
  std::string function;
  std::string provider;
  std::string probe;
  bool retprobe = false;
};
struct AttachRequest {
  int handle = 0;
  std::vector<AttachOption> programs;
};
nlohmann::json to_json(const AttachRequest& r);
AttachRequest attach_request_from_json(const nlohmann::json& j);

struct ProgramAttach {
  std::string name;
  bool attached = false;
  std::uint32_t link_id = 0;  // 0: the attachment created no link (perf-event before 5.15)
  int err = 0;
  std::string error;
  double ms = 0;  // the attach call, guest clock
};
struct AttachResponse {
  bool ok = false;
  std::string error;
  std::string libbpf;
  std::vector<ProgramAttach> programs;
};
nlohmann::json to_json(const AttachResponse& r);
AttachResponse attach_response_from_json(const nlohmann::json& j);

// ---- trigger ----
struct TriggerAction {
  std::string kind;  // spec::trigger_kind_name(): "getpid", "openat", "call", ...
  std::string path;
  std::string binary;
  std::vector<std::string> args;  // "{nonce}" already replaced by the host
};
struct TestRunAction {
  std::string program;
  std::string data_hex;  // the packet or context
  int repeat = 1;
};
struct TriggerRequest {
  int handle = 0;
  std::string nonce;           // 16 hex digits
  std::string nonce_map;       // an array map whose key 0 gets the nonce before the triggers
  int count = 1;               // rounds: each action and test run once per round
  bool uprobe_target = false;  // call the agent's own kgate_uprobe_target(nonce) each round
  std::vector<TriggerAction> actions;
  std::vector<TestRunAction> test_runs;
};
nlohmann::json to_json(const TriggerRequest& r);
TriggerRequest trigger_request_from_json(const nlohmann::json& j);

struct ActionResult {
  std::string kind;
  int done = 0;  // rounds completed
  std::string error;
};
struct TestRunResult {
  std::string program;
  int runs = 0;
  std::vector<std::int64_t> retvals;  // distinct return values seen, in order of first sight
  std::uint64_t duration_ns = 0;      // the kernel's average per run, last round
  int err = 0;
  std::string error;
};
struct TriggerResponse {
  bool ok = false;
  std::string error;
  std::vector<ActionResult> actions;
  std::vector<TestRunResult> test_runs;
};
nlohmann::json to_json(const TriggerResponse& r);
TriggerResponse trigger_response_from_json(const nlohmann::json& j);

// ---- drain ----
struct DrainRequest {
  int handle = 0;
  std::vector<std::string> maps;  // maps whose values to read (at most max_map_values each)
};
inline constexpr std::size_t max_map_values = 4096;
nlohmann::json to_json(const DrainRequest& r);
DrainRequest drain_request_from_json(const nlohmann::json& j);

struct RingDrain {
  std::string name;
  std::uint64_t records = 0;  // records in the body for this ring
  std::uint64_t dropped = 0;  // records read but not sent (over max_records)
};
struct ProgramRuns {
  std::string name;
  std::uint64_t run_cnt = 0;
  std::uint64_t run_time_ns = 0;
};
struct MapValues {
  std::string name;
  std::vector<std::string> values_hex;
  std::string error;
};
struct DrainResponse {
  bool ok = false;
  std::string error;
  bool stats_enabled = false;  // kernel.bpf_stats_enabled was on: run counts are real
  std::vector<RingDrain> rings;
  std::vector<ProgramRuns> programs;
  std::vector<MapValues> maps;
};
nlohmann::json to_json(const DrainResponse& r);
DrainResponse drain_response_from_json(const nlohmann::json& j);

// The drain body: per record, u32 ring index (into DrainResponse::rings), u32 length, bytes.
struct Record {
  std::uint32_t ring = 0;
  std::string bytes;
};
void append_record(std::string& body, std::uint32_t ring, const void* data, std::uint32_t size);
// Pure: the records of a drain body; stops (and says so in `error`) at a malformed one.
std::vector<Record> parse_records(std::string_view body, std::size_t rings, std::string* error);

// ---- detach ----
struct DetachResponse {
  bool ok = false;
  bool reported = false;  // the agent said what it left (false: nothing to judge leftovers by)
  double close_ms = 0;
  double wait_ms = 0;
  struct LinkClose {
    std::string program;
    double ms = 0;  // destroying the link, guest clock: the kernel's detach
  };
  std::vector<LinkClose> closes;  // in the order the links were destroyed
  std::vector<std::uint32_t> created_programs, created_links;
  std::vector<std::uint32_t> left_programs, left_links;
};
nlohmann::json to_json(const DetachResponse& r);
DetachResponse detach_response_from_json(const nlohmann::json& j);

// ---- a user's loader ----
struct LoaderWant {
  std::string name;  // the kernel keeps the first 15 bytes of a program's name
  std::string type;  // libbpf's program type name
  bool attached = true;
};
struct LoaderStartRequest {
  std::vector<std::string> argv;  // argv[0] is the executable's guest path
  std::vector<std::string> env;   // "NAME=value", the whole environment
  std::string cwd = "/";
  std::string root;  // when set: the loader runs with this directory as its root (an image's filesystem)
  std::vector<LoaderWant> programs;
  std::string ready_line;  // ready also when the loader prints a line holding this
  std::string nonce;       // when set: watch the loader's whole output for it
  std::string nonce_file;  // when set: a file the loader writes (the agent's path) holds nonce
  // When set: a map the loader pins here holds nonce_bytes (hex) at nonce_offset of some value.
  std::string nonce_map;
  std::string nonce_bytes;
  std::uint32_t nonce_offset = 0;
  int timeout_ms = 30000;
};
nlohmann::json to_json(const LoaderStartRequest& r);
LoaderStartRequest loader_start_request_from_json(const nlohmann::json& j);

struct KernelLink {
  std::uint32_t id = 0;
  std::string type;    // libbpf's link type name
  std::string target;  // what it is attached to, as far as bpf_link_info says (empty: not said)
};
// A program the kernel holds that was not there when the loader started.
struct KernelProgram {
  std::uint32_t id = 0;
  std::string name;
  std::string type;
  std::string tag;  // 16 hex digits
  std::uint64_t run_count = 0;
  std::uint64_t run_time_ns = 0;
  std::optional<std::uint32_t> verified_insns;
  std::uint32_t xlated_bytes = 0;
  std::uint32_t jited_bytes = 0;
  std::vector<KernelLink> links;
};
struct LoaderResponse {
  bool ok = false;  // the op itself worked (a loader that failed is an observation)
  std::string error;
  bool started = false;
  bool ready = false;
  double ready_ms = 0;
  bool exited = false;      // the loader is gone (before stop: on its own)
  int status = 0;           // its wait status, when exited
  bool killed = false;      // stop: it needed SIGKILL
  bool nonce_seen = false;  // the nonce asked for appeared in its output so far
  std::string output;       // the tail of its stdout and stderr, interleaved
  std::vector<KernelProgram> programs;
  std::vector<std::uint32_t> created_programs, created_links;  // stop: everything it made
  std::vector<std::uint32_t> left_programs, left_links;        // stop: what outlived it
};
nlohmann::json to_json(const LoaderResponse& r);
LoaderResponse loader_response_from_json(const nlohmann::json& j);

// ---- an interactive shell (kgate run --shell) ----
inline constexpr const char* shell_device = "/dev/hvc0";  // the virtio console port the host relays
inline constexpr const char* shell_pin_dir = "/sys/fs/bpf/kgate";
struct ShellRequest {
  bool pin = false;        // pin every loaded object's programs, maps and links under shell_pin_dir first
  int rows = 0, cols = 0;  // the host terminal's size (0: leave it)
  std::string term;        // the host's TERM
};
nlohmann::json to_json(const ShellRequest& r);
ShellRequest shell_request_from_json(const nlohmann::json& j);

struct ShellResponse {
  bool ok = false;  // the shell ran (its exit status is the user's business)
  std::string error;
  int status = 0;                     // its wait status
  int pinned = 0;                     // programs, maps and links pinned for it
  std::vector<std::string> problems;  // what could not be pinned or unpinned
  double open_s = 0;                  // how long it was open, guest clock
};
nlohmann::json to_json(const ShellResponse& r);
ShellResponse shell_response_from_json(const nlohmann::json& j);

// ---- small ones ----
struct Ack {
  bool ok = false;
  std::string error;
};
nlohmann::json to_json(const Ack& a);
Ack ack_from_json(const nlohmann::json& j);

// The request header every request carries: the op, its id, and the handle where it has one.
nlohmann::json request_header(Op op, int id, nlohmann::json fields = nlohmann::json::object());

// Hex for nonces and packets: core's.
using kgate::from_hex;
using kgate::to_hex;

}  // namespace kgate::proto

// The run spec (schema "kgate.spec/1", docs/spec.md): which BPF objects a gate loads and, per
// program, how it is attached, how it is triggered and what must be observed. Pure data, parsed
// and validated whole before any boot; nothing here depends on the running kernel (that comes
// back from the guest as observations, and run/judge.hpp compares the two).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"

namespace kgate::spec {

inline constexpr std::string_view spec_schema = "kgate.spec/1";

// How a program is attached in the guest.
enum class AttachMode {
  auto_attach,  // libbpf's auto-attach by section (tracepoint, raw_tp, tp_btf, kprobe, ksyscall,
                // fentry/fexit, lsm, uprobe with a path, usdt), or the uprobe/usdt target below
  test_run,     // BPF_PROG_TEST_RUN (xdp, tc/sched_cls, socket filter, flow_dissector, raw_tp, syscall)
  load_only,    // a verifier gate: loaded and judged, never attached
};
std::string_view attach_mode_name(AttachMode m);

// For uprobe/uretprobe and usdt programs whose section names no target, or to override it.
struct UprobeTarget {
  std::string binary;    // path in the guest ("{nonce}" replaced); "/proc/self/exe" is the agent
  std::string function;  // uprobe: the symbol
  std::string provider;  // usdt: provider and probe name
  std::string probe;
};

// What a test run feeds the program.
struct TestRun {
  std::string packet_hex;           // the packet or context bytes, hex; empty: `packet` names a built-in
  std::string packet = "ipv4-udp";  // built-in packets: "ipv4-udp", "ipv6-tcp", "none" (no data)
  int repeat = 1;                   // per trigger round: the kernel runs the program this often
};

// A built-in trigger the agent runs `count` times (kgate run --count), or a shipped command.
enum class TriggerKind {
  none,       // nothing: the program's own activity (or a test run) is what runs it
  getpid,     // the raw getpid syscall
  openat,     // create, write, close and unlink a file in a tmpfs (`path`)
  execve,     // fork and exec the small static helper in the image (the agent, told to exit)
  pipe,       // write and read 64 bytes through a pipe
  tcp,        // a TCP connect, send, receive and close over loopback
  udp,        // a UDP datagram sent and received over loopback
  nanosleep,  // sleep 1 us
  call,       // run `binary` (shipped in the guest) with `args`: it calls `function` (uprobes)
  command,    // run `args[0]` with the rest of `args`; must exit 0
};
std::string_view trigger_kind_name(TriggerKind k);

struct Trigger {
  TriggerKind kind = TriggerKind::none;
  std::string path;               // openat: "{nonce}" replaced; default "/tmp/kgate-trigger-{nonce}"
  std::string binary;             // call: the guest path of the binary
  std::string function;           // call: the function it calls (documents the uprobe target)
  std::vector<std::string> args;  // call, command: "{nonce}" replaced in each
};

// How a nonce is found in a record or map value: `encoding` at byte `offset`.
enum class NonceEncoding {
  u64le,  // the 64-bit nonce, little-endian
  u64be,
  hex,  // its 16 lowercase hex digits, as ASCII
};
std::string_view nonce_encoding_name(NonceEncoding e);

struct NonceAt {
  std::uint32_t offset = 0;
  NonceEncoding encoding = NonceEncoding::u64le;
};

// Selects a ring buffer's records: the bytes at `offset` equal `string` followed by a NUL byte (or
// the record's end). Unset: every record of the ring.
struct RecordFilter {
  std::uint32_t offset = 0;
  std::string string;
};

// A count in an expectation: a number, or "count", the run's --count times `times`.
struct MinCount {
  bool per_trigger = false;  // "count": multiplied by the run's trigger count
  std::uint64_t value = 1;
  std::uint64_t resolve(int trigger_count) const {
    return per_trigger ? value * static_cast<std::uint64_t>(trigger_count) : value;
  }
};

struct RecordsExpect {
  std::string ring;                   // a BPF_MAP_TYPE_RINGBUF map of the object
  std::optional<RecordFilter> where;  // which records are this program's
  MinCount min;                       // at least this many (of those carrying the nonce, if set)
  std::optional<NonceAt> nonce;       // each counted record must carry this run's nonce
  // Offsets of u32 fields that must equal the agent's pid (the process the triggers run in):
  // the built-in probe's tgid and its CO-RE-read task_struct->tgid.
  std::vector<std::uint32_t> agent_pid_at;
};

struct MapNonceExpect {
  std::string map;  // a map of the object whose values are read after the triggers
  NonceAt at;       // some value carries this run's nonce here
};

struct Expect {
  std::optional<MinCount> runs;  // bpf_prog_info.run_cnt at least this (BPF stats on)
  std::optional<RecordsExpect> records;
  std::optional<MapNonceExpect> map_nonce;
  std::optional<std::int64_t> retval;  // test_run: the program's return value
  bool attaches = true;                // false: expected to be refused at attach (negative control)
  bool loads = true;                   // false: expected to be refused by the verifier
};

// When a program is not judged: on an arch, or on kernels older than a version. The reason goes
// into the receipt.
struct Skip {
  std::vector<std::string> arches;  // "x86_64", "arm64"
  std::string kernel_below;         // "5.15": skipped on kernels whose release sorts before it
  std::string reason;
};

struct ProgramSpec {
  std::string name;  // the program's (function's) name in the object
  AttachMode attach = AttachMode::auto_attach;
  std::optional<UprobeTarget> target;
  TestRun test_run;
  Trigger trigger;
  Expect expect;
  std::vector<Skip> skip;
  // Set by `kgate spec init`: why it proposed this; the user confirms and deletes it. A run says
  // which programs still carry one.
  std::string proposed;
  int line = 0;           // where the program's key is in the spec file, for messages
  std::string json_path;  // "objects[0].programs.on_getpid", for messages
};

// How this run's nonce reaches the programs before the triggers.
struct NonceSource {
  enum class Kind { none, global, map } kind = Kind::none;
  std::string name;  // global: a `const volatile __u64` in .rodata, set before load;
                     // map: an array map whose key 0 gets the nonce (u64le) before the triggers
};

struct ObjectSpec {
  std::string name;                       // names the object in the receipt; unique in the spec
  std::map<std::string, fs::path> paths;  // arch name ("x86_64", "arm64") -> absolute path
  std::string builtin;                    // "probe": kgate's own object (no paths)
  NonceSource nonce;
  std::vector<std::string> maps;  // maps the object must have
  std::string min_kernel;         // "5.8": the object is skipped on older kernels
  bool needs_btf = true;          // CO-RE: kernel BTF (or --btf) is required
  // Programs the spec names. Programs of the object it does not name are loaded and attached by
  // default and judged on that alone (no trigger, no expectation beyond it).
  std::vector<ProgramSpec> programs;
  // `kgate run --object` alone: an unnamed program libbpf cannot attach by itself (xdp, cgroup,
  // struct_ops, ...) is loaded only, where a spec's check refuses it.
  bool others_load_only_fallback = false;
  int line = 0;
  std::string json_path;  // "objects[0]", for messages
  const ProgramSpec* find(std::string_view program) const;
};

// A file shipped into the guest before anything is loaded (a uprobe target, a trigger command).
struct FileSpec {
  std::map<std::string, fs::path> sources;  // arch name -> absolute path on the host
  std::string dest;                         // absolute, in the guest
  std::uint32_t mode = 0644;
};

// A program a user's loader is expected to load: found in the kernel's list by its name (the
// kernel keeps the first 15 bytes) and type, not loaded by kgate.
struct LoaderProgram {
  std::string name;
  std::string type;  // libbpf's name of the program type: "tracepoint", "kprobe", "xdp", ...
  Trigger trigger;
  std::optional<MinCount> runs;  // the kernel's run count must grow by at least this over the triggers
  bool attached = true;          // false: loaded only (no link expected)
  std::string link;              // when set: one of its links is of this type, as libbpf names it
  std::string target;            // when set: one of its links' targets (bpf_link_info) holds this
  int line = 0;
  std::string json_path;  // "loader.programs.NAME"
};

// A container image a loader runs from: an OCI layout directory (the digest-checked form) or a
// registry reference pinned by digest, which skopeo copies into the cache.
struct ImageSource {
  fs::path layout;     // absolute; empty for a registry reference
  std::string ref;     // the layout's org.opencontainers.image.ref.name, or empty for its only image
  std::string remote;  // "ghcr.io/org/agent@sha256:..." (a leading docker:// dropped); empty for a layout
  std::string text() const;  // "oci-layout:/abs/dir:ref" or "docker://name@sha256:..."
};
// "oci-layout:DIR", "oci-layout:DIR:REF" (DIR relative to base_dir), or a registry reference that
// carries "@sha256:" (with or without "docker://"). Anything else is a usage error saying the forms.
Result<ImageSource> parse_image_source(std::string_view text, const fs::path& base_dir);

// A user's own loader (their agent), run by kgate's agent in the guest: it loads and attaches its
// programs itself; kgate watches the kernel's list of programs and links.
struct LoaderSpec {
  std::map<std::string, fs::path> exec;       // arch name -> the executable on the host (no image)
  std::string dest = "/kgate/loader/loader";  // where it is shipped in the guest
  std::optional<ImageSource> image;           // the loader runs in this image's filesystem as its root
  std::string exec_in_image;      // with an image: the executable's path in it; empty: its entrypoint
  std::vector<std::string> args;  // "{nonce}" replaced in each
  bool args_given = false;        // with an image: args replace its Cmd only when given
  std::vector<std::string> env;   // "NAME=value"
  std::string cwd;                // empty: the image's WorkingDir, else "/"
  double ready_timeout_s = 30;    // every program loaded (and attached) by then
  std::string ready_line;         // or: the loader printed a line holding this
  double stop_grace_s = 5;        // SIGTERM, this long, then SIGKILL
  bool pins = false;              // true: programs or links it pins may outlive it (no leaked reason)
  // Where this run's nonce must reach the loader (any one set; none: not asked). It is given to
  // the loader by "{nonce}" in its args or env.
  bool nonce_in_output = false;  // "nonce": "output": in what it prints
  std::string nonce_file;        // "nonce": {"file": PATH}: in a file it writes (a path as it sees it)
  std::string nonce_map;         // "nonce": {"map": PATH}: in a value of the map it pins at PATH
  NonceAt nonce_map_at;          // where in the value, and how encoded
  bool wants_nonce() const { return nonce_in_output || !nonce_file.empty() || !nonce_map.empty(); }
  std::vector<LoaderProgram> programs;
  int line = 0;
};

struct Spec {
  fs::path file;  // empty for a spec made in code (the built-in probe, --object alone)
  std::string description;
  std::vector<ObjectSpec> objects;
  std::optional<LoaderSpec> loader;
  std::vector<FileSpec> files;
  // The line in `file` of every value by its JSON path ("objects[0].programs.on_getpid.trigger"),
  // so that checks made after parsing (check.hpp) can say where; empty for a spec made in code.
  std::map<std::string, int, std::less<>> lines;
  int line_of(std::string_view json_path) const;
};

// Parses and validates a spec's text: the schema, unknown and duplicate keys, types, ranges,
// attach/trigger combinations that cannot work. Errors are class usage and name the file, the
// line and the JSON path. Relative paths resolve against `base_dir` (the spec file's directory).
// Pure: reads no object file.
Result<Spec> parse_spec(std::string_view text, const fs::path& file, const fs::path& base_dir);
Result<Spec> load_spec(const fs::path& file);

// The spec of `kgate run --object FILE` alone: one object, every program attached by default.
Spec object_only_spec(const fs::path& object);

}  // namespace kgate::spec

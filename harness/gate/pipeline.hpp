// The gates file (ci/gates.json, schema "kgate.gates/1"): a pipeline of gates and the
// needs between them, parsed and checked whole before anything runs. Pure: no process
// is started and no file but the gates file is read.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"

namespace kgate::gate {

inline constexpr std::string_view pipeline_schema = "kgate.gates/1";

enum class GateKind { command, ebpf_matrix };
enum class Expect { pass, fail };

std::string_view kind_name(GateKind k);

// One gate, with the file's defaults applied and its paths made absolute.
struct Gate {
  std::string name;  // [A-Za-z0-9._-]+; names the gate's log file
  std::string description;
  GateKind kind = GateKind::command;
  std::vector<std::string> command;  // argv; a shell only when the author writes one
  fs::path cwd;                      // absolute
  std::map<std::string, std::string> env;
  double timeout_s = 0;
  std::uint64_t log_limit_bytes = 0;  // command gates: the log keeps this much of the output
  std::vector<std::string> needs;
  bool always = false;           // runs once its needs have ended, whatever their status
  Expect expect = Expect::pass;  // fail: green only when the command fails
  std::vector<int> expect_exit;  // expect=fail: green only on one of these exit codes; empty: any but 0
  // kind ebpf-matrix: kernel-matrix entries run in-process, like `kgate matrix`.
  std::string entries;                // comma-separated globs, as `kgate matrix --only`
  fs::path matrix;                    // absolute; empty: kgate's own kernels/matrix.json
  int jobs = 1;                       // VMs at once within the gate
  fs::path spec;                      // absolute; the run spec every entry runs (--spec); empty: the probe
  fs::path object;                    // absolute; the object every entry runs (--object); may be empty
  std::vector<std::string> run_args;  // passed to every `kgate run`
  int line = 0;                       // where the gate's name is in the file, for messages
};

struct Pipeline {
  fs::path file;
  std::string description;
  std::vector<Gate> gates;  // in an order where every gate comes after its needs (file order otherwise)
  const Gate* find(std::string_view name) const;
};

inline constexpr double default_timeout_s = 1800;
// A command's log is capped (its head and tail kept): a gate running `yes` would otherwise
// fill the disk before its timeout.
inline constexpr std::uint64_t default_log_limit_mb = 64;
inline constexpr std::uint64_t max_log_limit_mb = 65536;

// Parses and validates: the schema, unknown keys, bad types, missing commands, bad names,
// duplicates, unknown needs, cycles. Errors are class usage and say where: the file, the
// gate's name and line, and the JSON path of the bad value. Relative cwd and matrix paths
// are resolved against `base_dir` (the gates file's directory).
Result<Pipeline> parse_pipeline(std::string_view text, const fs::path& file, const fs::path& base_dir);
Result<Pipeline> load_pipeline(const fs::path& file);

// Indexes into p.gates of the named gates and everything they need, in pipeline order.
// Empty `only` selects every gate; an unknown name is an error.
Result<std::vector<size_t>> select_gates(const Pipeline& p, const std::vector<std::string>& only);

}  // namespace kgate::gate

#include "cli/commands.hpp"

#include <array>

namespace kgate::cli {

namespace {

constexpr std::array<Command, 9> table = {{
    {"run", "boot a kernel, load the gate object or a spec's objects, report a verdict", run_options,
     cmd_run},
    {"repro", "run again what a receipt describes, from its copies, beside the recorded verdict",
     repro_options, cmd_repro},
    {"matrix", "run kernel-matrix entries in parallel VMs: a table, receipts, a summary and JUnit",
     matrix_options, cmd_matrix},
    {"gates", "run a pipeline of gates (a gates file such as ci/gates.json): one umbrella receipt",
     gates_options, cmd_gates},
    {"digest", "check BPF objects against a digest lock, or inspect one object", digest_options, cmd_digest},
    {"spec", "write a starting run spec for a BPF object: 'kgate spec init X.bpf.o'", spec_options, cmd_spec},
    {"fetch", "fetch and verify a catalog entry's kernel into the cache, without booting it", fetch_options,
     cmd_fetch},
    {"kernels",
     "list the catalog's kernels and what is cached; pin OCI digests in kernels.lock; build from source",
     kernels_options, cmd_kernels},
    {"cache", "prune the cache of what no catalog entry and no recent run uses", cache_options, cmd_cache},
}};

}  // namespace

std::span<const Command> commands() {
  return table;
}

const Command* find_command(std::string_view name) {
  for (const auto& c : table)
    if (c.name == name) return &c;
  return nullptr;
}

}  // namespace kgate::cli

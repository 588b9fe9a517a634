// The kernel's BTF cut down to what a run's objects relocate against, made on the host.
//
// libbpf in the guest parses the kernel's whole BTF (4.4 MB for Debian's 6.1) for CO-RE: about
// 90 ms under TCG, most of a probe run's `load`. `bpftool gen min_core_btf` keeps only the types
// and members the objects' CO-RE relocations resolve to, which libbpf takes as `btf_custom_path`
// with the same results. kgate makes it once per kernel, object set and bpftool, and caches it.
//
// It is used only where it cannot change an outcome: every relocated type must have a candidate
// of its name and kind in the kernel's own BTF, since libbpf looks in modules' BTF only when the
// kernel's has none, and a custom BTF turns that search off. libbpf still reads the kernel's full
// BTF for what is not CO-RE (fentry, LSM and tp_btf targets, typed ksyms). A run falls back to the
// kernel's BTF, saying why, when bpftool is missing or fails, the kernel has no BTF, or no object
// has a CO-RE relocation.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "kernel/cache.hpp"
#include "kernel/prepare.hpp"

namespace kgate::run {

struct CoreBtfObject {
  std::string name;  // for messages
  std::string_view bytes;
};

struct CoreBtf {
  std::string bytes;    // empty: the guest's libbpf uses the kernel's own BTF
  nlohmann::json note;  // the receipt's btf.core: {"btf": "minimized", ...} or {"btf": "kernel", "why"}
};

// The minimized BTF for `objects` on `kernel`, from the cache or made with bpftool (found on PATH,
// then in /usr/sbin and /sbin). It never fails a run: whatever stands in its way (no bpftool, a
// bpftool that fails, a full disk) is the note's `why`, and the guest uses the kernel's BTF.
// Answers that hold for these inputs are cached; passing failures are tried again next run.
CoreBtf minimal_core_btf(kernel::Cache& cache, const kernel::PreparedKernel& kernel,
                         const std::vector<CoreBtfObject>& objects);

// Why a minimized BTF would give `objects` other results than the kernel's full BTF: a
// type_id_target relocation (bpf_core_type_id_kernel(): the id would be the minimized BTF's, not
// the kernel's), or a relocated type without a candidate of its name and kind there (libbpf would
// look for it in modules' BTF); empty when there is none. `kernel_btf` is raw BTF.
Result<std::string> core_btf_mismatch(std::string_view kernel_btf, const std::vector<CoreBtfObject>& objects);

}  // namespace kgate::run

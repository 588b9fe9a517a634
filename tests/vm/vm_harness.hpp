#pragma once
// Shared by the VM tests: runs the real kgate binary against real QEMU and the
// real Debian kernel, and reads back what it wrote. Nothing here stands in for
// QEMU, the kernel or libbpf.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/files.hpp"
#include "core/subprocess.hpp"

namespace kgate::vmtest {

fs::path kgate_binary();
// Exits 77 (skip) when QEMU or the kernel cannot be had, unless KGATE_REQUIRE_VM=1,
// where the missing prerequisite fails the test instead. "arm64" asks for
// qemu-system-aarch64 and the debian-6.1-arm64 kernel instead.
void require_vm_prerequisites(const std::string& arch = "x86_64");

struct KgateResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  nlohmann::json receipt;  // null if none was written
  fs::path dir;
};

KgateResult run_kgate(const fs::path& out_dir, const std::vector<std::string>& extra_args);
// `kgate <command> ARGS...`, its receipt read from out_dir.
KgateResult run_kgate_command(const std::string& command, const fs::path& out_dir,
                              const std::vector<std::string>& args);
// The Debian 6.1 kernel the suite fetched: its unpacked package tree and release.
struct DebianKernel {
  fs::path tree;
  std::string release;
};
DebianKernel fetched_debian_kernel();

// Writes an OCI image layout at `layout` with one zstd layer holding the kernel,
// its config and the virtio modules from `k`, named `ref`. Returns the digest
// that pins it (the index's manifest descriptor, as a registry reports it).
std::string build_oci_layout(const DebianKernel& k, const fs::path& layout, const std::string& ref);

// Writes an OCI image layout at `layout` with one zstd layer holding the tree `root` (as tar packs
// it: links as links), named `ref`, for linux/`goarch`, with `run_config` as its config's "config"
// (Entrypoint, Cmd, Env, WorkingDir) when it is not null. Returns the digest that pins it.
std::string write_oci_layout(const fs::path& root, const fs::path& layout, const std::string& ref,
                             const std::string& goarch, const nlohmann::json& run_config = nullptr);

// PIDs of processes whose command line mentions `needle` (e.g. a receipt directory).
std::vector<int> processes_mentioning(const std::string& needle);

}  // namespace kgate::vmtest

#include "vm_harness.hpp"

#include <dirent.h>
#include <sys/wait.h>

#include <cstdlib>
#include <stdexcept>

#include <iostream>
#include "core/compress.hpp"

namespace kgate::vmtest {

fs::path kgate_binary() {
  const char* root = std::getenv("KGATE_BUILD_ROOT");
  return fs::path(root ? root : ".") / "kgate";
}

void require_vm_prerequisites(const std::string& arch) {
  const bool required =
      std::getenv("KGATE_REQUIRE_VM") && std::string(std::getenv("KGATE_REQUIRE_VM")) == "1";
  const bool arm64 = arch == "arm64";
  const std::string qemu = arm64 ? "qemu-system-aarch64" : "qemu-system-x86_64";
  std::vector<std::string> fetch_argv = {kgate_binary().string(), "fetch"};
  if (arm64) fetch_argv.insert(fetch_argv.end(), {"--entry", "debian-6.1-arm64"});
  std::string missing;
  if (find_program(qemu).empty()) missing = qemu + " is not installed";
  if (missing.empty()) {
    auto fetch = run_capture(fetch_argv, Deadline(std::chrono::minutes(10)));
    if (!fetch) {
      missing = "kgate fetch: " + fetch.error().describe();
    } else if (!WIFEXITED(fetch->status) || WEXITSTATUS(fetch->status) != 0) {
      missing = "kgate fetch " + describe_status(fetch->status) + ": " + fetch->err;
    }
  }
  if (missing.empty()) return;
  if (required) {
    std::cerr << "VM test prerequisite missing (KGATE_REQUIRE_VM=1, so this fails): " << missing << "\n";
    std::exit(1);
  }
  std::cerr << "skipping VM test: " << missing << " (set KGATE_REQUIRE_VM=1 to fail instead)\n";
  std::exit(77);
}

KgateResult run_kgate(const fs::path& out_dir, const std::vector<std::string>& extra_args) {
  std::vector<std::string> args = {"--receipt", out_dir.string()};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  return run_kgate_command("run", out_dir, args);
}

KgateResult run_kgate_command(const std::string& command, const fs::path& out_dir,
                              const std::vector<std::string>& args) {
  std::vector<std::string> argv = {kgate_binary().string(), command};
  argv.insert(argv.end(), args.begin(), args.end());
  KgateResult r;
  r.dir = out_dir;
  auto cap = run_capture(argv, Deadline(std::chrono::minutes(5)));
  if (!cap) {
    r.err = cap.error().describe();
    return r;
  }
  r.exit_code = WIFEXITED(cap->status) ? WEXITSTATUS(cap->status) : 128 + WTERMSIG(cap->status);
  r.out = cap->out;
  r.err = cap->err;
  if (auto text = read_file(out_dir / "receipt.json"))
    r.receipt = nlohmann::json::parse(*text, nullptr, false);
  return r;
}

DebianKernel fetched_debian_kernel() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  fs::path cache = xdg && *xdg ? fs::path(xdg) / "kgate" : fs::path(std::getenv("HOME")) / ".cache/kgate";
  auto rec =
      nlohmann::json::parse(read_file(cache / "entries/debian-6.1.json").value_or("null"), nullptr, false);
  if (!rec.is_object()) throw std::runtime_error("no cached debian-6.1 record under " + cache.string());
  return {cache / "trees" / rec.value("tree", rec.value("package_sha256", "")), rec.value("release", "")};
}

std::string build_oci_layout(const DebianKernel& k, const fs::path& layout, const std::string& ref) {
  // The layer's tree: what a kernel image needs, copied from the package.
  fs::path root = layout.parent_path() / (layout.filename().string() + ".root");
  const fs::path mods = fs::path("lib/modules") / k.release;
  fs::create_directories(root / "boot");
  fs::create_directories(root / mods / "kernel/drivers/char");
  fs::copy_file(k.tree / "boot" / ("vmlinuz-" + k.release), root / "boot" / ("vmlinuz-" + k.release));
  fs::copy_file(k.tree / "boot" / ("config-" + k.release), root / "boot" / ("config-" + k.release));
  fs::copy(k.tree / mods / "kernel/drivers/virtio", root / mods / "kernel/drivers/virtio",
           fs::copy_options::recursive);
  fs::copy_file(k.tree / mods / "kernel/drivers/char/virtio_console.ko",
                root / mods / "kernel/drivers/char/virtio_console.ko");
  fs::copy_file(k.tree / mods / "modules.builtin", root / mods / "modules.builtin");
  return write_oci_layout(root, layout, ref, "amd64");
}

std::string write_oci_layout(const fs::path& root, const fs::path& layout, const std::string& ref,
                             const std::string& goarch, const nlohmann::json& run_config) {
  using nlohmann::json;
  auto must = [](auto r) {
    if (!r) throw std::runtime_error(r.error().describe());
    return std::move(*r);
  };
  fs::path tar_path = layout.parent_path() / (layout.filename().string() + ".tar");
  auto tar = must(run_capture(
      {"tar", "-cf", tar_path.string(), "--sort=name", "--owner=0", "--group=0", "-C", root.string(), "."},
      Deadline(std::chrono::seconds(60))));
  if (tar.status != 0) throw std::runtime_error("tar: " + tar.err);
  std::string layer_tar = must(read_file(tar_path));
  std::string layer = must(zstd_compress(layer_tar, 3));

  fs::create_directories(layout / "blobs/sha256");
  auto put = [&](const std::string& bytes, const char* media_type) {
    std::string hex = sha256_hex(bytes);
    if (auto w = write_file_atomic(layout / "blobs/sha256" / hex, bytes); !w)
      throw std::runtime_error("write blob");
    return json{{"mediaType", media_type}, {"digest", "sha256:" + hex}, {"size", bytes.size()}};
  };
  json config = {{"architecture", goarch},
                 {"os", "linux"},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:" + sha256_hex(layer_tar)}}}}};
  if (!run_config.is_null()) config["config"] = run_config;
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config", put(config.dump(), "application/vnd.oci.image.config.v1+json")},
                   {"layers", {put(layer, "application/vnd.oci.image.layer.v1.tar+zstd")}}};
  json desc = put(manifest.dump(), "application/vnd.oci.image.manifest.v1+json");
  desc["annotations"] = {{"org.opencontainers.image.ref.name", ref}};
  json index = {
      {"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"}, {"manifests", {desc}}};
  if (!write_file_atomic(layout / "index.json", index.dump()) ||
      !write_file_atomic(layout / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})")) {
    throw std::runtime_error("write layout");
  }
  return desc["digest"];
}

std::vector<int> processes_mentioning(const std::string& needle) {
  std::vector<int> pids;
  DIR* proc = ::opendir("/proc");
  if (!proc) return pids;
  while (dirent* ent = ::readdir(proc)) {
    int pid = std::atoi(ent->d_name);
    if (pid <= 0) continue;
    auto cmdline = read_file(fs::path("/proc") / ent->d_name / "cmdline");
    if (cmdline && cmdline->find(needle) != std::string::npos) pids.push_back(pid);
  }
  ::closedir(proc);
  return pids;
}

}  // namespace kgate::vmtest

#include "vm_harness.hpp"

#include <dirent.h>
#include <sys/wait.h>

#include <cstdlib>
#include <iostream>

namespace kgate::vmtest {

fs::path kgate_binary() {
  const char* root = std::getenv("KGATE_BUILD_ROOT");
  return fs::path(root ? root : ".") / "kgate";
}

void require_vm_prerequisites() {
  const bool required =
      std::getenv("KGATE_REQUIRE_VM") && std::string(std::getenv("KGATE_REQUIRE_VM")) == "1";
  std::string missing;
  if (find_program("qemu-system-x86_64").empty()) missing = "qemu-system-x86_64 is not installed";
  if (missing.empty()) {
    auto fetch = run_capture({kgate_binary().string(), "fetch"}, Deadline(std::chrono::minutes(10)));
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
  std::vector<std::string> argv = {kgate_binary().string(), "run", "--receipt", out_dir.string()};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
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

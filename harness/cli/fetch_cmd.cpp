// kgate fetch: a catalog entry's kernel into the cache, verified, without booting it.
#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <ctime>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>
#include "channel/fields.hpp"
#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/files.hpp"
#include "core/interrupt.hpp"
#include "core/strings.hpp"
#include "core/terminal.hpp"
#include "kernel/btf.hpp"
#include "kernel/cache.hpp"
#include "kernel/catalog.hpp"
#include "kernel/prepare.hpp"
#include "matrix/matrix.hpp"
#include "matrix/runner.hpp"
#include "report/receipt.hpp"
#include "run/request.hpp"
#include "run/run.hpp"
#include "spec/spec.hpp"
#include "vm/arch.hpp"

namespace kgate::cli {

namespace {

namespace fs = std::filesystem;

// The BTF of the kernel booted from `boot`, written to `out`.
kgate::Status write_kernel_btf(const fs::path& boot, const fs::path& out) {
  auto bytes = kgate::read_file(boot);
  if (!bytes) return std::unexpected(bytes.error());
  auto btf = kgate::kernel::kernel_btf(*bytes);
  if (!btf) return std::unexpected(std::move(btf.error()).context(boot.string()));
  if (auto s = kgate::write_file_atomic(out, *btf); !s) return s;
  std::cout << "  btf     " << out.string() << " (" << btf->size() << " bytes)\n";
  return {};
}

}  // namespace

cxxopts::Options fetch_options() {
  cxxopts::Options opts("kgate fetch", "Fetch and verify a catalog entry's kernel into the cache.");
  auto add = opts.add_options();
  add("e,entry", "catalog entry (default: the catalog's default)", cxxopts::value<std::string>());
  add("catalog", "kernel catalog file", cxxopts::value<std::string>()->default_value(""));
  add("refresh", "resolve the package again even if it is cached");
  add("btf-out", "also write the kernel's BTF to FILE (for bpftool btf dump ... format c, or --btf)",
      cxxopts::value<std::string>());
  add("h,help", "show this help");
  return opts;
}

int cmd_fetch(int argc, char** argv) {
  auto opts = fetch_options();
  cxxopts::ParseResult args;
  if (auto done = parse_args(opts, argc, argv, args)) return *done;
  kgate::install_interrupt_handlers();  // Ctrl-C stops apt and dpkg, and the staging directories go
  auto catalog = kgate::kernel::load_catalog(find_catalog(args["catalog"].as<std::string>()));
  if (!catalog) {
    std::cerr << "kgate: " << catalog.error().describe() << "\n";
    return kgate::exit_code(catalog.error().cls());
  }
  std::string name = args.count("entry") ? args["entry"].as<std::string>() : catalog->default_entry;
  auto entry = catalog->find(name);
  auto cache = kgate::kernel::Cache::open(kgate::kernel::Cache::default_root());
  kgate::Status status = entry ? kgate::Status{} : kgate::Status(std::unexpected(entry.error()));
  if (status && !cache) status = std::unexpected(cache.error());
  if (status) {
    auto k = kgate::kernel::prepare_entry(*cache, **entry, args.count("refresh") > 0,
                                          kgate::Deadline(std::chrono::minutes(10)));
    if (!k) {
      status = std::unexpected(k.error());
    } else {
      const char* boot_kind = (*entry)->arch == "arm64" ? " (Image)"
                              : k->pvh                  ? " (vmlinux, PVH)"
                                                        : " (bzImage)";
      std::cout << name << ": " << k->source << " [" << (*entry)->arch << "]\n  release " << k->release
                << "\n  image   " << k->image_sha256 << "\n  boot    " << k->boot_sha256 << boot_kind << "\n";
      if (args.count("btf-out")) status = write_kernel_btf(k->boot, args["btf-out"].as<std::string>());
    }
  }
  if (!status) {
    // A failure can carry pages of a tool's output (apt, dpkg, skopeo): the terminal gets the
    // head and the tail, the whole text goes to a file under the cache that the message names.
    std::string message = status.error().describe();
    if (message.size() > kgate::report::failure_message_limit) {
      std::string base = "fetch-" + name + ".txt";
      std::replace(base.begin(), base.end(), '/', '_');
      const fs::path file = kgate::kernel::Cache::default_root() / "logs" / base;
      std::error_code ec;
      fs::create_directories(file.parent_path(), ec);
      if (kgate::write_file_atomic(file, message + "\n"))
        message =
            kgate::report::bounded_message(message, kgate::report::failure_message_limit, file.string());
    }
    std::cerr << "kgate: " << message << "\n";
    return kgate::exit_code(status.error().cls());
  }
  return 0;
}

}  // namespace kgate::cli

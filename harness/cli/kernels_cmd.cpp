// kgate kernels (pin, list) and kgate cache (prune): the kernels a catalog names, their pins, and
// the cache that holds them.
#include <algorithm>
#include <ctime>
#include <iostream>
#include <map>
#include <thread>

#include "cli/commands.hpp"
#include "core/interrupt.hpp"
#include "core/strings.hpp"
#include "core/text_table.hpp"
#include "kernel/build.hpp"
#include "kernel/cache.hpp"
#include "kernel/cache_admin.hpp"
#include "kernel/catalog.hpp"
#include "kernel/pins.hpp"

namespace kgate::cli {

namespace {

namespace fs = std::filesystem;

std::string human_bytes(std::uint64_t b) {
  if (b >= (1u << 30)) return strprintf("%.1f GiB", static_cast<double>(b) / (1u << 30));
  if (b >= (1u << 20)) return strprintf("%.1f MiB", static_cast<double>(b) / (1u << 20));
  return strprintf("%.1f KiB", static_cast<double>(b) / 1024);
}

std::string when(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

int pin(const fs::path& catalog_file, std::vector<std::string> names, bool check) {
  // The lock itself may be what is out of date: the catalog is read without it.
  auto catalog = kernel::load_catalog(catalog_file, false);
  if (!catalog) return input_error(catalog.error());
  const bool all = names.empty();
  if (all)
    for (const auto& [name, e] : catalog->entries)
      if (!kernel::pin_reference(e).empty()) names.push_back(name);
  if (names.empty()) return usage_error("kernels pin: " + catalog_file.string() + " names no OCI entry");
  const fs::path lock_file = kernel::kernel_pins_path(catalog_file);
  std::vector<kernel::KernelPin> locked;
  if (path_exists(lock_file)) {
    auto text = read_file(lock_file);
    auto parsed = text ? kernel::parse_kernel_pins(*text, lock_file.string())
                       : Result<std::vector<kernel::KernelPin>>(std::unexpected(text.error()));
    // Pinning every entry rewrites a lock that cannot be read; pinning some would drop the others.
    if (!parsed && check) return input_error(parsed.error());
    if (!parsed && !all)
      return input_error(std::move(parsed.error()).context("pin every entry to rewrite the lock"));
    if (parsed) locked = std::move(*parsed);
  }
  int moved = 0;
  std::map<std::string, kernel::KernelPin> now;
  for (const auto& name : names) {
    auto e = catalog->find(name);
    if (!e) return input_error(e.error());
    const kernel::CatalogEntry& entry = **e;
    auto digest = kernel::resolve_pin(entry, Deadline(std::chrono::seconds(120)));
    if (!digest) return input_error(std::move(digest.error()).context("pin " + name));
    const std::string reference = kernel::pin_reference(entry);
    const kernel::KernelPin* was = nullptr;
    for (const auto& p : locked)
      if (p.entry == name && p.arch == entry.arch) was = &p;
    std::string state;
    if (!entry.source.digest.empty()) {
      // Pinned in the catalog itself: compared, never locked (the two would contradict each other).
      state = entry.source.digest == *digest ? "same (pinned in the catalog)"
                                             : "MOVED: the catalog pins " + entry.source.digest;
      moved += entry.source.digest == *digest ? 0 : 1;
      if (was) {
        state += "; the lock pins it too: drop one";
        ++moved;
      }
    } else {
      now[name] = {name, entry.arch, reference, *digest};
      if (!check) {
        state = "pinned";
      } else if (!was) {
        state = "NOT PINNED";
        ++moved;
      } else if (was->reference != reference) {
        state = "MOVED: the lock pinned " + was->reference + ", the catalog names " + reference;
        ++moved;
      } else if (was->digest != *digest) {
        state = "MOVED: the lock pins " + was->digest;
        ++moved;
      } else {
        state = "same";
      }
    }
    std::cout << name << " " << entry.arch << " " << reference << " " << *digest << "  " << state << "\n";
  }
  if (check) {
    // The lock must also be one the catalog accepts: a line for an entry it no longer has is stale.
    auto with_lock = *catalog;
    if (auto st = kernel::apply_kernel_pins(with_lock, locked, lock_file.string()); !st) {
      std::cout << "stale: " << st.error().describe() << "\n";
      ++moved;
    }
    std::cout << (moved == 0 ? "kernels pin --check: every pin is what its reference points at now\n"
                             : strprintf("kernels pin --check: %d problems (moved, not pinned or stale): run "
                                         "`kgate kernels pin` and review the lock's diff\n",
                                         moved));
    return moved == 0 ? 0 : exit_code(FailureClass::digest_mismatch);
  }
  // The lock keeps the pins of the other OCI entries that are still the catalog's and unpinned there.
  std::vector<kernel::KernelPin> out;
  for (const auto& p : locked) {
    auto it = catalog->entries.find(p.entry);
    if (now.contains(p.entry) || it == catalog->entries.end() || !it->second.source.digest.empty() ||
        kernel::pin_reference(it->second) != p.reference)
      continue;
    out.push_back(p);
  }
  for (auto& [_, p] : now) out.push_back(p);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.entry < b.entry; });
  if (auto st = write_file_atomic(lock_file, kernel::render_kernel_pins(out)); !st)
    return input_error(st.error());
  std::cout << "wrote " << lock_file.string() << "\n";
  return 0;
}

int list(const fs::path& catalog_file) {
  auto catalog = kernel::load_catalog(catalog_file);
  if (!catalog) return input_error(catalog.error());
  auto cache = kernel::Cache::open(kernel::Cache::default_root());
  if (!cache) return input_error(cache.error());
  TextRows rows = {{"ENTRY", "ARCH", "SOURCE", "PIN", "CACHED", "RELEASE", "SIZE", "LAST USED (UTC)"}};
  for (const auto& k : kernel::list_kernels(*cache, *catalog)) {
    const bool oci = k.source.starts_with("oci");
    rows.push_back({k.entry, k.arch, k.source, oci ? (k.pin.empty() ? "UNPINNED" : k.pin.substr(0, 19)) : "-",
                    k.cached ? "yes" : "no", k.release.empty() ? "-" : k.release,
                    k.cached ? human_bytes(k.bytes) : "-", k.last_used ? when(*k.last_used) : "-"});
  }
  std::cout << text_columns(rows) << "catalog: " << catalog_file.string()
            << "; cache: " << cache->root().string() << "\n";
  return 0;
}

int build(const fs::path& catalog_file, const std::string& name, const cxxopts::ParseResult& args) {
  auto catalog = kernel::load_catalog(catalog_file);
  if (!catalog) return input_error(catalog.error());
  auto e = catalog->find(name);
  if (!e) return input_error(e.error());
  kernel::BuildOptions bo;
  if (args.count("tarball")) bo.tarball = args["tarball"].as<std::string>();
  bo.jobs = args.count("jobs") ? args["jobs"].as<int>()
                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (bo.jobs < 1 || bo.jobs > 1024) return usage_error("--jobs must be from 1 to 1024");
  bo.refresh = args.count("refresh") > 0;
  bo.progress = [&](const std::string& step) { std::cerr << "kgate: " << name << ": " << step << "\n"; };
  install_interrupt_handlers();
  auto cache = kernel::Cache::open(kernel::Cache::default_root());
  if (!cache) return input_error(cache.error());
  auto built = kernel::build_kernel(*cache, **e, bo, Deadline(std::chrono::hours(6)));
  if (!built) return input_error(built.error());
  std::cout << name << ": linux " << built->release
            << (built->was_cached
                    ? " (built before; recorded again)"
                    : strprintf(" built in %.0f s (log: %s)", built->seconds, built->log.c_str()))
            << "\nrun it: kgate run --entry " << name << "\n";
  return 0;
}

}  // namespace

cxxopts::Options kernels_options() {
  cxxopts::Options opts(
      "kgate kernels",
      "The kernels a catalog names.\n  kgate kernels list: each entry, its pin and what the "
      "cache holds of it (release, size, last use).\n  kgate kernels pin [ENTRY...] [--check]: "
      "resolve each OCI entry's reference to its manifest digest with skopeo and write "
      "kernels.lock beside the catalog; --check says which moved instead.\n  kgate kernels build ENTRY: "
      "build a kernel-org entry from its tarball and config fragment (minutes), cached by both.");
  opts.positional_help("list | pin [ENTRY...] | build ENTRY");
  auto add = opts.add_options();
  add("catalog", "kernel catalog file", cxxopts::value<std::string>()->default_value(""));
  add("check", "with pin: compare what the references point at now with the lock; write nothing");
  add("tarball",
      "with build: the release's tarball (checked against the catalog's sha256) instead of its url",
      cxxopts::value<std::string>());
  add("j,jobs", "with build: make -j (default: the number of cores)", cxxopts::value<int>());
  add("refresh", "with build: build again even if this tarball and fragment were built before");
  add_positional_words(opts);
  add("h,help", "show this help");
  return opts;
}

int cmd_kernels(int argc, char** argv) {
  auto opts = kernels_options();
  cxxopts::ParseResult args;
  if (auto done = parse_args(opts, argc, argv, args)) return *done;
  auto words = positional_words(args);
  const fs::path catalog = find_catalog(args["catalog"].as<std::string>());
  if (!words.empty() && words.front() == "list" && words.size() == 1 && !args.count("check"))
    return list(catalog);
  if (!words.empty() && words.front() == "build" && words.size() == 2) return build(catalog, words[1], args);
  if (!words.empty() && words.front() == "pin")
    return pin(catalog, std::vector<std::string>(words.begin() + 1, words.end()), args.count("check") > 0);
  return usage_error(
      "kernels: say 'kgate kernels list', 'kgate kernels pin [ENTRY...] [--check]' or 'kgate kernels build "
      "ENTRY'");
}

cxxopts::Options cache_options() {
  cxxopts::Options opts(
      "kgate cache",
      "kgate's cache (~/.cache/kgate, or $XDG_CACHE_HOME/kgate).\n  kgate cache prune: remove "
      "what no catalog entry and no recent run uses; it waits for running kgates to finish "
      "and never removes what one holds.");
  opts.positional_help("prune");
  auto add = opts.add_options();
  add("older-than", "days without use after which what no catalog entry names goes",
      cxxopts::value<double>()->default_value("30"));
  add("dry-run", "say what would go; remove nothing");
  add("wait", "seconds to wait for running kgates to let go of the cache",
      cxxopts::value<double>()->default_value("60"));
  add("catalog", "kernel catalog file (its entries are kept)",
      cxxopts::value<std::string>()->default_value(""));
  add_positional_words(opts);
  add("h,help", "show this help");
  return opts;
}

int cmd_cache(int argc, char** argv) {
  auto opts = cache_options();
  cxxopts::ParseResult args;
  if (auto done = parse_args(opts, argc, argv, args)) return *done;
  if (positional_words(args) != std::vector<std::string>{"prune"})
    return usage_error("cache: say 'kgate cache prune'");
  const double days = args["older-than"].as<double>();
  if (!(days >= 0 && days <= 36500)) return usage_error("--older-than must be a number of days from 0");
  if (!valid_timeout(args["wait"].as<double>()))
    return usage_error("--wait must be between 0 and 86400 seconds");
  auto catalog = kernel::load_catalog(find_catalog(args["catalog"].as<std::string>()));
  if (!catalog) return input_error(catalog.error());
  install_interrupt_handlers();
  auto cache = kernel::Cache::open_exclusive(kernel::Cache::default_root(),
                                             Deadline(std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(args["wait"].as<double>()))));
  if (!cache) return input_error(cache.error());
  const bool dry = args.count("dry-run") > 0;
  auto report =
      kernel::prune_cache(*cache, *catalog, std::chrono::seconds(static_cast<long long>(days * 86400)), dry);
  if (!report) return input_error(report.error());
  for (const auto& r : report->removed) std::cout << (dry ? "would remove " : "removed ") << r << "\n";
  std::cout << strprintf("%s %zu, %s; kept %zu (%s)\n", dry ? "would remove" : "removed",
                         report->removed.size(), human_bytes(report->bytes).c_str(), report->kept,
                         cache->root().c_str());
  return 0;
}

}  // namespace kgate::cli

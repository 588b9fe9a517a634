#include "kernel/build.hpp"

#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/arch.hpp"
#include "core/strings.hpp"
#include "core/subprocess.hpp"
#include "kernel/kconfig.hpp"
#include "kernel/prepare.hpp"

namespace kgate::kernel {

namespace {

using nlohmann::json;

// Bumped when the steps below change what a build makes.
constexpr std::string_view recipe = "kgate-kernel-build/1";

std::string make_arch(const CatalogEntry& e) {
  return e.arch == "arm64" ? "arm64" : "x86_64";
}

// Runs one step with its output appended to the log; fails naming the step and the log.
Status run_step(const std::vector<std::string>& argv, const fs::path& log, const Deadline& deadline) {
  {
    std::string line = "\n$";
    for (const auto& a : argv) line += " " + a;
    std::ofstream(log, std::ios::app) << line << "\n";
  }
  std::vector<std::string> sh = {"/bin/sh", "-c", "exec \"$@\" >>\"$0\" 2>&1", log.string()};
  sh.insert(sh.end(), argv.begin(), argv.end());
  auto child = Child::spawn(sh);
  if (!child) return std::unexpected(child.error());
  auto status = child->wait(deadline);
  if (!status) {
    child->terminate(std::chrono::seconds(5));
    return std::unexpected(std::move(status.error()).context(argv[0] + " (log: " + log.string() + ")"));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    const std::string tail = read_file(log).value_or("");
    const auto lines = split_lines(tail);
    std::string last;
    for (size_t i = lines.size() > 12 ? lines.size() - 12 : 0; i < lines.size(); ++i)
      last += "\n  | " + std::string(lines[i]);
    return fail(FailureClass::infra,
                strprintf("%s %s; the log's last lines (all of it: %s):%s", argv[0].c_str(),
                          describe_status(*status).c_str(), log.c_str(), last.c_str()));
  }
  return {};
}

}  // namespace

std::string kernel_build_key(const CatalogEntry& e) {
  const KernelSource& s = e.source;
  return sha256_hex(std::string(recipe) + " " + s.release + " " + s.tarball_sha256 + " " + s.config_sha256 +
                    " " + s.base + " " + e.arch);
}

std::vector<std::vector<std::string>> kernel_build_steps(const CatalogEntry& e, const fs::path& src,
                                                         const fs::path& out, int jobs) {
  std::vector<std::string> make = {"make", "-C", src.string(), "O=" + out.string(), "ARCH=" + make_arch(e)};
  if (e.arch == "arm64" && host_arch() == Arch::x86_64) make.push_back("CROSS_COMPILE=aarch64-linux-gnu-");
  auto with = [&](std::vector<std::string> tail) {
    auto argv = make;
    argv.insert(argv.end(), tail.begin(), tail.end());
    return argv;
  };
  return {with({e.source.base}),
          {(src / "scripts/kconfig/merge_config.sh").string(), "-m", "-O", out.string(),
           (out / ".config").string(), e.source.config.string()},
          with({"olddefconfig"}),
          with({"-j" + std::to_string(jobs), e.arch == "arm64" ? "Image" : "bzImage"}),
          with({"-s", "kernelrelease"})};
}

Result<BuiltKernel> build_kernel(Cache& cache, const CatalogEntry& e, const BuildOptions& opts,
                                 const Deadline& deadline) {
  if (e.source.type != "kernel-org")
    return fail(FailureClass::usage,
                e.name + " is a " + e.source.type + " entry: only kernel-org entries are built");
  const auto start = Clock::now();
  auto say = [&](const std::string& s) {
    if (opts.progress) opts.progress(s);
  };
  BuiltKernel built;
  built.key = kernel_build_key(e);
  const fs::path logs = cache.root() / "logs";
  if (auto s = make_dirs(logs); !s) return std::unexpected(s.error());
  built.log = logs / ("build-" + e.name + ".txt");

  auto lock = cache.lock("build-" + built.key.substr(0, 16), Deadline(std::chrono::hours(2)));
  if (!lock) return std::unexpected(lock.error());
  const fs::path tree = cache.tree_path(built.key);
  auto record = [&](const std::string& release, const std::string& image_sha, const std::string& config_sha) {
    json rec = {{"entry", e.name},
                {"source", "kernel-org linux-" + e.source.release + " sha256:" + e.source.tarball_sha256 +
                               " config sha256:" + e.source.config_sha256 + " on " + e.source.base},
                {"tree", built.key},
                {"release", release},
                {"modules_rel", "lib/modules/" + release},
                {"image_sha256", image_sha},
                {"config_sha256", config_sha},
                {"source_spec", source_spec(e)},
                {"arch", e.arch}};
    return write_file_atomic(cache.entry_path(e.name), rec.dump(2) + "\n");
  };
  // Built before (same tarball, fragment, base and arch): recorded again, not rebuilt.
  if (auto done = read_file(tree / "build.json"); done && !opts.refresh) {
    json j = json::parse(*done, nullptr, false);
    auto str = [&](const char* key) {
      return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>()
                                                                    : std::string();
    };
    if (!str("release").empty() && cache.verified_blob(str("image_sha256")) &&
        cache.verified_blob(str("config_sha256"))) {
      if (auto s = record(str("release"), str("image_sha256"), str("config_sha256")); !s)
        return std::unexpected(s.error());
      built.release = str("release");
      built.was_cached = true;
      return built;
    }
  }

  // The tarball: given, the entry's copy, or downloaded from its url with curl; by sha256 only.
  fs::path tarball = !opts.tarball.empty() ? opts.tarball : e.source.tarball;
  auto staging = TempDir::create("kernel-build", cache.root() / "trees");
  if (!staging) return std::unexpected(staging.error());
  if (tarball.empty()) {
    const fs::path curl = find_program("curl");
    if (curl.empty())
      return fail(FailureClass::infra, "no tarball for " + e.name + " and no curl to fetch " + e.source.url +
                                           ": give --tarball FILE, or \"tarball\" in the catalog");
    tarball = staging->path() / fs::path(e.source.url).filename();
    say("download " + e.source.url);
    if (auto s =
            run_step({curl.string(), "-fsSL", "-o", tarball.string(), e.source.url}, built.log, deadline);
        !s)
      return std::unexpected(s.error());
  }
  say("check " + tarball.string());
  auto sha = sha256_file(tarball);
  if (!sha)
    return std::unexpected(std::move(sha.error()).context("read tarball").reclass(FailureClass::usage));
  if (*sha != e.source.tarball_sha256)
    return fail(FailureClass::digest_mismatch, tarball.string() + " has sha256 " + *sha +
                                                   ", the catalog pins " + e.source.tarball_sha256 +
                                                   " for linux-" + e.source.release);
  const fs::path src = staging->path() / "src", out = staging->path() / "out";
  if (auto s = make_dirs(src); !s) return std::unexpected(s.error());
  (void)write_file_atomic(built.log, "kgate kernels build " + e.name + ": linux-" + e.source.release + "\n");
  say("unpack");
  if (auto s = run_step({"tar", "-xf", tarball.string(), "-C", src.string(), "--strip-components=1"},
                        built.log, deadline);
      !s)
    return std::unexpected(s.error());
  const auto steps = kernel_build_steps(e, src, out, opts.jobs);
  for (size_t i = 0; i + 1 < steps.size(); ++i) {
    say(i == 0   ? e.source.base
        : i == 1 ? "merge " + e.source.config.filename().string()
        : i == 2 ? "olddefconfig"
                 : "compile");
    if (i == 0)
      if (auto s = make_dirs(out); !s) return std::unexpected(s.error());
    if (auto s = run_step(steps[i], built.log, deadline); !s) return std::unexpected(s.error());
    if (i != 2) continue;
    // Every option the fragment sets must have survived olddefconfig: a dependency it lacks
    // drops it silently, and the kernel would then fail the gate for a reason no one wrote.
    auto fragment = parse_kconfig(read_file(e.source.config).value_or(""), e.source.config.string());
    auto final_config = parse_kconfig(read_file(out / ".config").value_or(""), ".config");
    if (!fragment) return std::unexpected(fragment.error());
    if (!final_config) return std::unexpected(final_config.error());
    std::string dropped;
    for (const auto& [option, value] : fragment->values)
      if (!final_config->values.contains(option) || final_config->values.at(option) != value)
        dropped += (dropped.empty() ? "" : ", ") + option + "=" + value;
    if (!dropped.empty())
      return fail(FailureClass::usage, e.source.config.string() + ": olddefconfig dropped " + dropped +
                                           " (a dependency the fragment does not set)");
  }
  auto release = run_capture(steps.back(), deadline);
  if (!release || release->status != 0) return fail(FailureClass::infra, "make kernelrelease failed");
  built.release = first_line(release->out);
  say("store " + built.release);
  // The tree prepare_entry reads: the image and config in boot/, modules.builtin (every driver
  // is built in), as a package would lay them out.
  const fs::path root = staging->path() / "root";
  const fs::path mods = root / "lib/modules" / built.release;
  if (auto s = make_dirs(mods); !s) return std::unexpected(s.error());
  const fs::path image = out / "arch" / (e.arch == "arm64" ? "arm64" : "x86") / "boot" /
                         (e.arch == "arm64" ? "Image" : "bzImage");
  auto image_bytes = read_file(image);
  auto config_bytes = read_file(out / ".config");
  if (!image_bytes || !config_bytes) return fail(FailureClass::infra, "the build made no " + image.string());
  std::error_code ec;
  fs::copy_file(out / "modules.builtin", mods / "modules.builtin", ec);
  if (ec && !write_file_atomic(mods / "modules.builtin", ""))
    return fail(FailureClass::infra, "write modules.builtin");
  auto image_sha = cache.put_blob(*image_bytes);
  auto config_sha = cache.put_blob(*config_bytes);
  if (!image_sha || !config_sha) return fail(FailureClass::infra, "store the built kernel in the cache");
  const json done = {{"release", built.release},
                     {"image_sha256", *image_sha},
                     {"config_sha256", *config_sha},
                     {"key", built.key}};
  if (auto s = write_file_atomic(root / "build.json", done.dump(2) + "\n"); !s)
    return std::unexpected(s.error());
  if (auto s = install_dir(root, tree, true); !s) return std::unexpected(s.error());
  if (auto s = record(built.release, *image_sha, *config_sha); !s) return std::unexpected(s.error());
  built.seconds = seconds_since(start);
  return built;
}

}  // namespace kgate::kernel

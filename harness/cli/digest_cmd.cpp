// kgate digest: the BPF object digest check's command line.
#include <iostream>

#include "bpf/digest.hpp"
#include "bpf/structure.hpp"
#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/files.hpp"

namespace kgate::cli {

namespace {

namespace fs = std::filesystem;

int failed(const Error& e) {
  std::cerr << "kgate digest: " << e.describe() << "\n";
  return exit_code(e.cls());
}

// Built objects (not a release directory) may be older than the clang installed now.
enum class Objects { built, release };

void note_installed_clang(const std::optional<std::string>& built) {
  if (!built) return;  // nothing recorded to compare with: clang need not be run
  if (auto note = bpf::installed_clang_note(built, bpf::installed_clang_version()))
    std::cout << "note: " << *note << "\n";
}

int check(const fs::path& lock_path, const fs::path& dir, const std::vector<std::string>& arches,
          Objects objects) {
  auto lock = bpf::load_lock(lock_path);
  if (!lock) return failed(lock.error());
  auto report = bpf::check_objects(*lock, dir, arches);
  if (!report) return failed(report.error());
  std::cout << "objects in " << dir.string() << " ("
            << (report->clang ? "built by " + *report->clang : std::string("clang not recorded")) << ")\n";
  if (objects == Objects::built) note_installed_clang(report->clang);
  std::cout << bpf::render_report(*report);
  FailureClass outcome = report->outcome();
  std::cout << "kgate digest: " << report->summary(lock_path.string()) << "\n";
  return exit_code(outcome);
}

int update(const fs::path& lock_path, const fs::path& dir, const std::vector<std::string>& arches) {
  bpf::DigestLock old;
  if (path_exists(lock_path)) {
    auto loaded = bpf::load_lock(lock_path);
    if (!loaded) return failed(loaded.error());
    old = std::move(*loaded);
  }
  auto lock = bpf::update_lock(std::move(old), dir, arches);
  if (!lock) return failed(lock.error());
  // update_lock() has read clang-version.txt; this second read only feeds the note.
  if (auto built = bpf::read_clang_version(dir)) note_installed_clang(*built);
  if (auto ok = write_file_atomic(lock_path, bpf::write_lock(*lock)); !ok) return failed(ok.error());
  std::size_t n = 0;
  for (const auto& [_, entries] : lock->objects) n += entries.size();
  std::cout << "kgate digest: wrote " << lock_path.string() << " (" << n << " objects from " << dir.string()
            << ")\n";
  return 0;
}

int inspect(const fs::path& file) {
  auto bytes = read_file(file);
  if (!bytes) return failed(std::move(bytes.error()).reclass(FailureClass::usage));
  auto info = bpf::inspect_object(*bytes);
  if (!info) return failed(std::move(info.error()).context(file.string()));
  // libbpf's own ELF reader sees only what kgate's reader found sound and a BPF object.
  Result<bpf::ObjectLayout> layout = bpf::open_inspected_object(*bytes, *info, file.filename().string());
  std::cout << file.string() << ": " << bpf::render_inspection(*info, layout);
  return 0;
}

}  // namespace

cxxopts::Options digest_options() {
  cxxopts::Options opts(
      "kgate digest",
      "Check gate BPF objects against bpf/digests.lock: a yes or no per object and, on no,\n"
      "which section of which object differs and why.");
  auto add = opts.add_options();
  add("check", "check the built objects against LOCK", cxxopts::value<std::string>(), "LOCK");
  add("update", "rewrite LOCK from the built objects", cxxopts::value<std::string>(), "LOCK");
  add("verify-release", "check a directory of shipped <name>.<arch>.bpf.o files against --lock",
      cxxopts::value<std::string>(), "DIR");
  add("lock", "the lock for --verify-release (default: bpf/digests.lock)", cxxopts::value<std::string>(),
      "LOCK");
  add("inspect", "show one object's sections, programs, maps and CO-RE relocations",
      cxxopts::value<std::string>(), "FILE");
  add("arch", "x86 (or x86_64, amd64) or arm64 (or aarch64), repeatable (default: every arch in the lock)",
      cxxopts::value<std::vector<std::string>>(), "ARCH");
  add("objects", "the built objects (default: bpf/ beside the kgate executable, else the installed ones)",
      cxxopts::value<std::string>(), "DIR");
  add("h,help", "show this help");
  return opts;
}

int cmd_digest(int argc, char** argv) {
  auto opts = digest_options();
  cxxopts::ParseResult args;
  if (auto rc = parse_args(opts, argc, argv, args)) return *rc;

  int modes = 0;
  for (const char* m : {"check", "update", "verify-release", "inspect"}) modes += args.count(m) > 0 ? 1 : 0;
  if (modes != 1) return usage_error("digest: give one of --check, --update, --verify-release or --inspect");
  if (args.count("lock") && !args.count("verify-release"))
    return usage_error("digest: --lock goes with --verify-release (--check and --update name their lock)");
  if (args.count("objects") && (args.count("verify-release") || args.count("inspect")))
    return usage_error("digest: --objects goes with --check and --update");
  std::vector<std::string> arches;
  if (args.count("arch")) arches = args["arch"].as<std::vector<std::string>>();
  for (std::string& a : arches) {
    const bpf::GateArch* arch = bpf::parse_gate_arch(a);
    if (arch == nullptr)
      return usage_error("digest: unknown arch '" + a + "' (" + std::string(bpf::gate_arch_choices) + ")");
    a = arch->name;
  }

  if (args.count("inspect")) return inspect(args["inspect"].as<std::string>());
  // A build's objects are beside its kgate; an installed kgate's in its data directory.
  fs::path objects = args.count("objects")                  ? fs::path(args["objects"].as<std::string>())
                     : fs::is_directory(self_dir() / "bpf") ? self_dir() / "bpf"
                                                            : data_dir() / "bpf";
  if (args.count("check")) return check(args["check"].as<std::string>(), objects, arches, Objects::built);
  if (args.count("update")) return update(args["update"].as<std::string>(), objects, arches);
  std::string lock = args.count("lock") ? args["lock"].as<std::string>() : "";
  return check(find_project_file(lock, "KGATE_DIGESTS_LOCK", fs::path("bpf") / "digests.lock"),
               args["verify-release"].as<std::string>(), arches, Objects::release);
}

}  // namespace kgate::cli

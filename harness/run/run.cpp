#include "run/run.hpp"

#include <sys/utsname.h>
#include <unistd.h>
#include <thread>

#include <sys/random.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <algorithm>
#include <cmath>

#include "bpf/structure.hpp"
#include "channel/fields.hpp"
#include "channel/frame.hpp"
#include "channel/protocol.hpp"
#include "channel/transport.hpp"
#include "core/file_watch.hpp"
#include "core/interrupt.hpp"
#include "core/strings.hpp"
#include "core/subprocess.hpp"
#include "core/terminal.hpp"
#include "image/closure.hpp"
#include "image/recipe.hpp"
#include "kernel/cache.hpp"
#include "kernel/catalog.hpp"
#include "kernel/kconfig.hpp"
#include "kernel/prepare.hpp"
#include "run/core_btf.hpp"
#include "run/embedded.hpp"
#include "run/initramfs_cache.hpp"
#include "run/judge.hpp"
#include "run/loader_image.hpp"
#include "run/lockdown.hpp"
#include "run/plan.hpp"
#include "run/request.hpp"
#include "run/shell_image.hpp"
#include "spec/check.hpp"
#include "vm/console.hpp"
#include "vm/qemu_argv.hpp"

namespace kgate::run {
namespace {

using channel::Frame;
using channel::FrameType;
using nlohmann::json;

constexpr const char* kgate_version = KGATE_VERSION;

// The receipt's view of a user's loader: readiness, exit, output tail, and every program it created
// as the kernel showed it (run counts at readiness and after the triggers).
json loader_json(const LoaderObservation& o) {
  json programs = json::array();
  for (const auto& p : o.start.programs) {
    json links = json::array();
    for (const auto& l : p.links) {
      json link = {{"id", l.id}, {"type", l.type}};
      if (!l.target.empty()) link["target"] = l.target;
      links.push_back(std::move(link));
    }
    json after = nullptr;
    for (const auto& q : o.stats.programs)
      if (q.id == p.id) after = q.run_count;
    programs.push_back({{"id", p.id},
                        {"name", p.name},
                        {"type", p.type},
                        {"tag", p.tag},
                        {"links", links},
                        {"run_count_ready", p.run_count},
                        {"run_count_after_triggers", after}});
  }
  auto status_of = [](const proto::LoaderResponse& r) -> json {
    if (!r.exited) return nullptr;
    if (WIFEXITED(r.status)) return {{"exit_code", WEXITSTATUS(r.status)}};
    if (WIFSIGNALED(r.status)) return {{"signal", WTERMSIG(r.status)}};
    return {{"wait_status", r.status}};
  };
  const proto::LoaderResponse& last = o.stop_reached ? o.stop : o.start;
  std::vector<std::string> tail;
  std::size_t pos = 0;
  while (pos < last.output.size()) {
    std::size_t nl = last.output.find('\n', pos);
    if (nl == std::string::npos) nl = last.output.size();
    tail.push_back(last.output.substr(pos, std::min<std::size_t>(nl - pos, 512)));
    pos = nl + 1;
  }
  if (tail.size() > 50) tail.erase(tail.begin(), tail.end() - 50);
  return {{"started", o.start.started},
          {"start_error", o.start.error},
          {"ready", o.start.ready},
          {"ready_ms", std::round(o.start.ready_ms * 10) / 10},
          {"exited_before_stop", o.start_reached && o.start.exited},
          {"exit", status_of(last)},
          {"killed", o.stop.killed},
          {"nonce_seen", last.nonce_seen},
          {"output_tail", tail},
          {"programs", programs},
          {"left", {{"programs", o.stop.left_programs}, {"links", o.stop.left_links}}}};
}

std::string random_nonce() {
  std::uint64_t v = 0;
  while (::getrandom(&v, sizeof v, 0) != sizeof v) {
  }
  return strprintf("%016llx", static_cast<unsigned long long>(v));
}

// QEMU's version, cached per binary (path, size, mtime): asking QEMU costs ~20 ms.
std::string qemu_version(const kernel::Cache& cache, const fs::path& qemu) {
  struct stat st {};
  if (::stat(qemu.c_str(), &st) != 0) return "unknown";
  std::string key = sha256_hex(strprintf("%s %jd %jd.%09ld", qemu.c_str(), intmax_t(st.st_size),
                                         intmax_t(st.st_mtim.tv_sec), st.st_mtim.tv_nsec));
  fs::path file = cache.root() / "qemu" / key;
  if (auto v = read_file(file)) return *v;
  auto cap = run_capture({qemu.string(), "--version"}, Deadline(std::chrono::seconds(10)));
  if (!cap || cap->status != 0) return "unknown";
  std::string line = cap->out.substr(0, cap->out.find('\n'));
  (void)write_file_atomic(file, line);
  return line;
}

// One object of the spec in this run: its bytes and what the guest reported about it.
struct ObjectRun {
  const spec::ObjectSpec* spec = nullptr;
  std::size_t receipt_index = 0;  // its entry in Receipt::objects
  std::string bytes;
  std::string sha256;
  std::vector<std::string> programs;  // as the host's libbpf lists them
  ObjectObservation obs;
};

// A file the spec ships into the guest, read before boot.
struct ShippedFile {
  const spec::FileSpec* spec = nullptr;
  std::string bytes;
};

// One gate run in progress: owns QEMU, the channel and the receipt being filled.
class GateRun {
 public:
  GateRun(const RunRequest& req, const ProgressFn& progress, const OutcomeFn& each)
      : req_(req), progress_(progress), each_(each) {}

  RunOutcome execute();

 private:
  Status prepare();
  // The catalog entry or --kernel file, and so the arch, before anything is fetched.
  Status choose_kernel();
  // The spec (--spec, --object, or the built-in probe) checked against its objects for the
  // arch, before any boot; copies of the objects and spec go into the receipt directory.
  Status resolve_spec();
  // What can be checked on the host before anything is fetched: the kernel command line's length
  // and the --btf file.
  Status check_inputs() const;
  std::vector<std::string> cmdline_words() const;  // lockdown= and --append
  Status boot();
  Status preflight();
  // Kernel splats on the console fail an entry even when its programs passed.
  void scan_console();
  Status exercise();
  // Load, attach, trigger, flush; with `hold` the object stays loaded for a shell, and
  // detach_object() ends it later.
  Status exercise_object(ObjectRun& o, bool hold);
  Status detach_object(ObjectRun& o);
  // A user's loader: started, watched until ready, triggered (spec "loader"); stop_loader() stops it,
  // at once or, with `hold`, after a shell.
  Status exercise_loader(bool hold);
  Status stop_loader();
  // --shell: the user's terminal relayed to a shell on the guest's console port until it exits;
  // with `pin`, what is loaded is pinned under /sys/fs/bpf/kgate meanwhile.
  Status open_shell(bool pin);
  // Whether what has been observed so far already fails the gate (--shell=on-failure).
  bool failing_so_far() const;
  // --watch: after each run in the guest, its verdict and receipt; then the next change on disk.
  // Returns when a signal asks to stop (the guest is then powered off as usual).
  Status watch();
  // The verdict of what r_ holds, judged on a copy, written as the receipt and told to each_.
  void emit_run(const std::vector<fs::path>& changed);
  // Writes r_ as the receipt and returns the outcome it says.
  RunOutcome written_outcome() const;
  // The spec, objects and observations of the previous run forgotten, the boot's kept.
  void forget_run();
  // The files a run's bytes came from (the spec, each object) and the sha256 it used of each.
  std::map<fs::path, std::string> watched_files() const;
  // The loader's container image: verified, unpacked (or taken from the cache), its executable found.
  Status prepare_image();
  std::vector<std::string> loader_env() const;  // the image's Env, then the spec's, and a PATH
  // `kgate repro`: the spec from its copy, the objects and files from theirs, each checked.
  Result<spec::Spec> replayed_spec() const;
  Status use_copies();
  json repro_json() const;
  // --gdb: where the stub listens, and the gdb command line that attaches to it.
  std::string gdb_endpoint() const;
  std::string gdb_command() const;
  Status prove_lockdown_level();
  RunFacts run_facts() const;
  Status power_off();
  // Sends one request and returns the response header; `body` receives the response body.
  // `extra_s` lengthens this request's deadline (a loader's readiness wait).
  Result<json> request(proto::Op op, json fields, std::string body = {}, std::string* reply_body = nullptr,
                       double extra_s = 0);
  // The two halves of request(): the id sent, then its response.
  Result<int> send_request(proto::Op op, json fields, std::string body, const Deadline& deadline);
  Result<json> receive_response(proto::Op op, int id, const Deadline& deadline, std::string* reply_body);
  void judge();
  // Reclassifies a failure by what actually happened to QEMU and the guest.
  Error classify(Error e);
  void phase(const char* name);
  void end_phase();
  std::vector<int> watch_fds() const;

  const RunRequest& req_;
  const ProgressFn& progress_;
  const OutcomeFn& each_;
  // --watch: the receipt as the boot left it, which each run in the same guest starts from; the
  // run number; a run that could not start (a spec with an error), which is its verdict.
  report::Receipt booted_;
  int run_number_ = 1;
  Clock::time_point run_start_ = Clock::now();
  std::optional<Error> run_error_;
  report::Receipt r_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point phase_start_ = start_;
  std::string phase_name_;

  std::optional<kernel::Catalog> catalog_;
  const kernel::CatalogEntry* entry_ = nullptr;  // into catalog_; null with --kernel
  std::optional<kernel::Cache> cache_;
  kernel::PreparedKernel kernel_;
  PreparedInitramfs initramfs_;
  std::optional<LoaderImage> image_;  // a loader's container image
  std::vector<Segment> segments_;     // appended to the initramfs: the image's tree, then the files
  fs::path initrd_;                   // the initramfs with the segments after it
  std::string image_exec_;            // the loader's executable in the image
  std::vector<std::string> wanted_modules_;
  vm::Arch arch_ = vm::Arch::x86_64;
  vm::Accel accel_ = vm::Accel::tcg;
  double boot_timeout_s_ = 0, request_timeout_s_ = 0;
  std::optional<TempDir> tmp_;
  std::optional<Child> qemu_;
  std::optional<channel::Transport> channel_;
  UniqueFd shell_port_;  // --shell: QEMU's end of the guest's console port
  std::optional<ShellImage> shell_image_;
  bool hello_seen_ = false;
  bool power_off_sent_ = false;
  int next_id_ = 1;
  proto::Hello hello_;
  spec::Spec spec_;  // objects_ point into it
  std::vector<ObjectRun> objects_;
  std::vector<ShippedFile> files_;
  LoaderObservation loader_;
  bool canary_reached_ = false;
  proto::LoadResponse canary_load_;
  proto::DetachResponse canary_detach_;
  std::string dmesg_;
  CoreBtf core_btf_;              // the minimized BTF made before boot, and the receipt's note of it
  bool core_btf_in_use_ = false;  // the agent holds it as its CO-RE BTF
};

void GateRun::phase(const char* name) {
  end_phase();
  phase_name_ = name;
  phase_start_ = Clock::now();
  if (progress_) progress_(name);
}

void GateRun::end_phase() {
  if (!phase_name_.empty()) r_.timings_s.emplace_back(phase_name_, seconds_since(phase_start_));
  phase_name_.clear();
}

std::vector<int> GateRun::watch_fds() const {
  std::vector<int> fds;
  if (qemu_) fds.push_back(qemu_->pidfd());
  if (interrupt_fd() >= 0) fds.push_back(interrupt_fd());
  return fds;
}

Status GateRun::choose_kernel() {
  if (!req_.kernel.empty()) {
    r_.entry = "file:" + req_.kernel.filename().string();
    arch_ = req_.arch.value_or(vm::Arch::x86_64);
    r_.arch = vm::arch_name(arch_);
    return {};
  }
  auto catalog = kernel::load_catalog(req_.catalog);
  if (!catalog) return std::unexpected(catalog.error());
  catalog_.emplace(std::move(*catalog));
  std::string name = req_.entry;
  if (name.empty() && req_.arch) {
    auto def = catalog_->default_for(vm::arch_name(*req_.arch));
    if (!def) return std::unexpected(def.error());
    name = *def;
  } else if (name.empty()) {
    name = catalog_->default_entry;
  }
  r_.entry = req_.name.empty() ? name : req_.name;
  r_.kernel.catalog_entry = name;
  auto entry = catalog_->find(name);
  if (!entry) return std::unexpected(entry.error());
  entry_ = *entry;
  auto arch = vm::parse_arch(entry_->arch);
  if (!arch) return fail(FailureClass::usage, "kernel " + name + ": unknown arch '" + entry_->arch + "'");
  if (req_.arch && *req_.arch != *arch) {
    return fail(FailureClass::usage, "kernel " + name + " is " + entry_->arch + ", but --arch " +
                                         std::string(vm::arch_name(*req_.arch)) + " was asked for");
  }
  arch_ = *arch;
  r_.arch = vm::arch_name(arch_);
  return {};
}

Status GateRun::resolve_spec() {
  if (!req_.spec.empty()) {
    auto s = req_.replay && req_.replay->spec ? replayed_spec() : spec::load_spec(req_.spec);
    if (!s) return std::unexpected(s.error());
    spec_ = std::move(*s);
    if (!req_.object.empty()) {
      if (spec_.objects.size() != 1)
        return fail(FailureClass::usage,
                    strprintf("--object replaces the one object of a spec, and %s names %zu",
                              req_.spec.c_str(), spec_.objects.size()));
      spec_.objects[0].builtin.clear();
      spec_.objects[0].paths = {{std::string(vm::arch_name(arch_)), absolute_path(req_.object)}};
    }
  } else if (!req_.object.empty()) {
    spec_ = spec::object_only_spec(req_.object);
  } else {
    spec_ = builtin_probe_spec();
  }
  const std::string arch_key(vm::arch_name(arch_));
  if (!req_.exec.empty() || req_.exec_args || !req_.image.empty()) {
    if (!spec_.loader)
      return fail(
          FailureClass::usage,
          "--exec, --image and a loader's arguments after -- need a --spec with a \"loader\" naming the "
          "programs it loads (docs/spec.md#loader)");
    if (!req_.image.empty()) {
      auto source = spec::parse_image_source(req_.image, fs::current_path());
      if (!source) return std::unexpected(std::move(source.error()).context("--image"));
      // The image replaces a loader shipped from the host.
      std::erase_if(spec_.files, [&](const spec::FileSpec& f) { return f.dest == spec_.loader->dest; });
      spec_.loader->exec.clear();
      spec_.loader->image = std::move(*source);
    }
    if (!req_.exec.empty() && spec_.loader->image) {
      if (!req_.exec.is_absolute())
        return fail(FailureClass::usage,
                    "--exec " + req_.exec.string() + ": with an image, the executable's absolute path in it");
      spec_.loader->exec_in_image = req_.exec.lexically_normal().string();
    } else if (!req_.exec.empty()) {
      spec_.loader->exec = {{arch_key, absolute_path(req_.exec)}};
      for (auto& f : spec_.files)
        if (f.dest == spec_.loader->dest) f.sources = spec_.loader->exec;
    }
    if (req_.exec_args) {
      spec_.loader->args = *req_.exec_args;
      spec_.loader->args_given = true;
    }
  }
  for (const auto& f : req_.files) {
    // --file: a file for this run, beside the spec's (the same dest replaces the spec's).
    std::error_code ec;
    const bool exec = (fs::status(f.source, ec).permissions() & fs::perms::owner_exec) != fs::perms::none;
    std::erase_if(spec_.files, [&](const spec::FileSpec& s) { return s.dest == f.dest; });
    spec_.files.push_back({{{arch_key, absolute_path(f.source)}}, f.dest, exec ? 0755u : 0644u});
  }
  if (req_.replay) {
    if (auto s = use_copies(); !s) return s;
  }
  auto checked = spec::check_spec(spec_, vm::arch_name(arch_), {{"probe", probe_object(arch_)}});
  if (!checked) return std::unexpected(checked.error());

  r_.spec.description = spec_.description;
  if (!spec_.file.empty()) {
    auto text = read_file(req_.replay && req_.replay->spec ? req_.replay->spec->path : spec_.file);
    if (!text) return std::unexpected(text.error());
    r_.spec.file = absolute_path(spec_.file).string();
    r_.spec.sha256 = sha256_hex(*text);
    r_.spec.copy = "spec.json";
    if (auto w = write_file_atomic(req_.out_dir / r_.spec.copy, *text); !w)
      return std::unexpected(std::move(w.error()).context("copy the spec into the receipt directory"));
  }
  for (auto& c : *checked) {
    // Programs the spec does not name run by their defaults, stated here so that the plan and
    // the judge read one spec.
    auto& obj = spec_.objects[c.index];
    for (auto& p : spec::unnamed_programs(obj, c.layout)) obj.programs.push_back(std::move(p));
    // In the object's order, as libbpf lists them: the receipt's order.
    auto position = [&](const spec::ProgramSpec& p) {
      for (std::size_t i = 0; i < c.layout.programs.size(); ++i)
        if (c.layout.programs[i].name == p.name) return i;
      return c.layout.programs.size();
    };
    std::stable_sort(
        obj.programs.begin(), obj.programs.end(),
        [&](const spec::ProgramSpec& a, const spec::ProgramSpec& b) { return position(a) < position(b); });
    ObjectRun run;
    run.spec = &obj;
    run.sha256 = c.sha256;
    for (const auto& p : c.layout.programs) run.programs.push_back(p.name);
    report::Receipt::Object ro{obj.name, c.path.string(), c.sha256, c.size, "", {}};
    if (!c.path.empty()) {
      // The bytes this run loaded, so that it can be run again from the receipt directory alone.
      ro.copy = "objects/" + obj.name + "." + std::string(vm::arch_name(arch_)) + ".bpf.o";
      Status w = make_dirs(req_.out_dir / "objects");
      if (w) w = write_file_atomic(req_.out_dir / ro.copy, c.bytes);
      if (!w)
        return std::unexpected(std::move(w.error()).context("copy the object into the receipt directory"));
    }
    run.bytes = std::move(c.bytes);
    run.receipt_index = r_.objects.size();
    r_.objects.push_back(std::move(ro));
    objects_.push_back(std::move(run));
  }
  if (spec_.loader) {
    // A dynamic loader brings its ELF interpreter and library closure, as found on this host.
    const std::string arch(vm::arch_name(arch_));
    if (auto exec = spec_.loader->exec.find(arch); exec != spec_.loader->exec.end() && !req_.replay) {
      auto libs = image::library_closure(exec->second, spec_.loader->dest, req_.sysroots);
      if (!libs)
        return std::unexpected(
            std::move(libs.error()).context("the spec's loader").reclass(FailureClass::usage));
      json shipped = json::array();
      for (const auto& l : *libs) {
        shipped.push_back({{"name", l.name}, {"source", l.source.string()}, {"dest", l.dest}});
        const bool taken = std::any_of(spec_.files.begin(), spec_.files.end(),
                                       [&](const spec::FileSpec& f) { return f.dest == l.dest; });
        if (!taken) spec_.files.push_back({{{arch, l.source}}, l.dest, 0755});
      }
      r_.loader["libraries"] = shipped;
    }
  }
  if (spec_.loader && spec_.loader->image) {
    // The files go into the image's filesystem: the loader sees them at their dest.
    for (auto& f : spec_.files) f.dest = guest_image_root + f.dest;
  }
  // The guest holds them in memory.
  constexpr std::size_t max_shipped_bytes = std::size_t{1} << 30;
  std::size_t shipped_bytes = 0;
  for (const auto& f : spec_.files) {
    auto source = f.sources.find(std::string(vm::arch_name(arch_)));
    if (source == f.sources.end())
      return fail(FailureClass::usage, "the spec ships " + f.dest + " with no source for " + r_.arch);
    auto bytes = read_file(source->second);
    if (!bytes)
      return fail(FailureClass::usage, "a file the spec ships (" + f.dest + "): " + bytes.error().describe());
    // In the initramfs: a mount over the place would hide it, and the gate's own files are not
    // the spec's to replace.
    const bool in_image = spec_.loader && spec_.loader->image;
    const std::string seen = in_image ? f.dest.substr(std::string_view(guest_image_root).size()) : f.dest;
    for (const char* mounted : {"/dev/", "/proc/", "/sys/"})
      if (seen.starts_with(mounted))
        return fail(FailureClass::usage, "the spec ships " + seen + " under " + mounted +
                                             ", which the guest mounts over: it would be hidden");
    if (!in_image &&
        (seen == "/init" || seen.starts_with("/etc/kgate/") || seen.starts_with("/lib/modules/")))
      return fail(FailureClass::usage, "the spec ships " + seen +
                                           ", where kgate's agent and its modules are (/init, /etc/kgate/, "
                                           "/lib/modules/)");
    shipped_bytes += bytes->size();
    if (shipped_bytes > max_shipped_bytes)
      return fail(FailureClass::usage,
                  strprintf("the spec's files are more than %zu MiB (%s makes it %zu bytes)",
                            max_shipped_bytes >> 20, source->second.c_str(), shipped_bytes));
    {
      // The bytes this run shipped, so that it can be run again from the receipt directory alone.
      const std::string copy = strprintf("files/%zu-%s", files_.size(), source->second.filename().c_str());
      Status w = make_dirs(req_.out_dir / "files");
      if (w) w = write_file_atomic(req_.out_dir / copy, *bytes);
      if (!w)
        return std::unexpected(
            std::move(w.error()).context("copy a shipped file into the receipt directory"));
      r_.files.push_back({{"dest", f.dest},
                          {"source", absolute_path(source->second).string()},
                          {"sha256", sha256_hex(*bytes)},
                          {"size", bytes->size()},
                          {"copy", copy}});
    }
    if (spec_.loader && f.dest == spec_.loader->dest) {
      r_.loader["source"] = absolute_path(source->second).string();
      r_.loader["sha256"] = sha256_hex(*bytes);
      r_.loader["size"] = bytes->size();
      r_.loader["dest"] = f.dest;
    }
    files_.push_back({&f, std::move(*bytes)});
  }
  return {};
}

namespace {
// A receipt directory's copy, when its bytes are still the ones the receipt names.
Result<std::string> checked_copy(const RunRequest::Replay::Copy& c, const std::string& what) {
  auto bytes = read_file(c.path);
  if (!bytes) return std::unexpected(std::move(bytes.error()).context("the receipt's copy of " + what));
  if (const std::string sha = sha256_hex(*bytes); sha != c.sha256)
    return fail(FailureClass::digest_mismatch, "the receipt's copy of " + what + " (" + c.path.string() +
                                                   ") has sha256 " + sha + ", the receipt says " + c.sha256);
  return bytes;
}
}  // namespace

Result<spec::Spec> GateRun::replayed_spec() const {
  auto text = checked_copy(*req_.replay->spec, "the spec");
  if (!text) return std::unexpected(text.error());
  // Its relative paths as in the original's directory: an image layout is found there.
  return spec::parse_spec(*text, req_.spec, req_.spec.parent_path());
}

Status GateRun::use_copies() {
  const RunRequest::Replay& rp = *req_.replay;
  const std::string arch(vm::arch_name(arch_));
  for (auto& obj : spec_.objects) {
    auto copy = rp.objects.find(obj.name);
    if (copy == rp.objects.end()) continue;  // kgate's built-in probe: in this kgate
    if (auto b = checked_copy(copy->second, "object " + obj.name); !b) return std::unexpected(b.error());
    obj.builtin.clear();
    obj.paths = {{arch, copy->second.path}};
  }
  const bool image = spec_.loader && spec_.loader->image;
  for (const auto& [recorded, copy] : rp.files) {
    if (auto b = checked_copy(copy, recorded); !b) return std::unexpected(b.error());
    // A file the recorded run shipped (the spec's, --file's, a loader's library): the copy. An
    // image's files were recorded where they landed, in its filesystem.
    const std::string dest = image && recorded.starts_with(std::string(guest_image_root) + "/")
                                 ? recorded.substr(std::string_view(guest_image_root).size())
                                 : recorded;
    auto f = std::find_if(spec_.files.begin(), spec_.files.end(),
                          [&](const spec::FileSpec& x) { return x.dest == dest; });
    if (f == spec_.files.end()) {
      spec_.files.push_back({{{arch, copy.path}}, dest, 0755});
    } else {
      f->sources = {{arch, copy.path}};
    }
    if (spec_.loader && dest == spec_.loader->dest) spec_.loader->exec = {{arch, copy.path}};
  }
  return {};
}

json host_json() {
  utsname u{};
  ::uname(&u);
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return {{"name", std::string(name)},
          {"kernel", std::string(u.release)},
          {"cpus", static_cast<int>(std::thread::hardware_concurrency())}};
}

json GateRun::repro_json() const {
  const RunRequest::Replay& rp = *req_.replay;
  json differences = rp.overrides;
  auto differs = [&](const char* what, const std::string& was, const std::string& now) {
    if (was != now) differences.push_back(std::string(what) + ": " + was + " -> " + now);
  };
  differs("kgate", rp.kgate_version, kgate_version);
  if (!rp.host.empty()) differs("host", rp.host, r_.host.value("name", ""));
  if (!r_.qemu.version.empty()) differs("qemu", rp.qemu_version, r_.qemu.version);
  if (!r_.qemu.accel.empty()) differs("accel", rp.accel, r_.qemu.accel);
  return {{"from", rp.receipt.string()},
          {"recorded",
           {{"verdict", rp.verdict == FailureClass::pass ? "pass" : "fail"},
            {"class", rp.verdict == FailureClass::pass ? json(nullptr) : json(class_name(rp.verdict))}}},
          {"differences", differences}};
}

std::string GateRun::gdb_endpoint() const {
  return req_.gdb == "unix" ? absolute_path(req_.out_dir / "gdb.sock").string() : req_.gdb;
}

std::string GateRun::gdb_command() const {
  // The kernel as an ELF file, when kgate has one: the extracted vmlinux (PVH boots), or the
  // user's --kernel file. Debian's vmlinux carries no debug information: its symbols and lines are
  // in linux-image-<release>-dbg, a download of several hundred MB that kgate does not fetch.
  const std::string elf = kernel_.pvh ? kernel_.boot.string() : std::string();
  std::string target = req_.gdb == "unix" ? "target remote " + gdb_endpoint()
                                          : "target remote " + req_.gdb.substr(req_.gdb.find(':') + 1);
  return "gdb -ex '" + target + "'" + (elf.empty() ? "" : " " + elf);
}

Status GateRun::check_inputs() const {
  // A kgate built without this arch's agent says so before anything is fetched.
  if (auto agent = built_agent(arch_); !agent) return std::unexpected(agent.error());
  // The kernel copies at most COMMAND_LINE_SIZE - 1 bytes of its command line (2048 on x86_64
  // and on arm64 in 6.1) and drops the rest without a word: the agent would not even see rdinit=.
  constexpr std::size_t command_line_size = 2048;
  const std::string cmdline = vm::kernel_cmdline(arch_, cmdline_words());
  const std::size_t kgate_part = vm::kernel_cmdline(arch_, {}).size();
  if (cmdline.size() >= command_line_size)
    return fail(FailureClass::usage,
                strprintf("the kernel command line would be %zu characters, %zu of them from --append and "
                          "lockdown=; the kernel takes at most %zu (COMMAND_LINE_SIZE %zu on %s)",
                          cmdline.size(), cmdline.size() - kgate_part, command_line_size - 1,
                          command_line_size, r_.arch.c_str()));
  if (!req_.btf.empty()) {
    if (auto btf = bpf::vet_btf(req_.btf); !btf)
      return std::unexpected(
          Error(FailureClass::usage, "--btf " + req_.btf.string() + ": " + btf.error().describe()));
  }
  return {};
}

std::vector<std::string> GateRun::cmdline_words() const {
  std::vector<std::string> words;
  if (req_.lockdown != Lockdown::none)
    words.push_back("lockdown=" + std::string(lockdown_name(req_.lockdown)));
  if (!req_.gdb.empty()) words.push_back("nokaslr");  // symbols at their link addresses
  words.insert(words.end(), req_.append.begin(), req_.append.end());
  return words;
}

Status GateRun::prepare() {
  phase("spec");
  if (req_.shell != RunRequest::Shell::none && !interactive_terminal())
    return fail(FailureClass::usage, "--shell needs a terminal: stdin and stdout are not one");
  if (auto s = choose_kernel(); !s) return s;
  if (auto s = check_inputs(); !s) return s;
  if (auto s = resolve_spec(); !s) return s;

  phase("kernel");
  auto cache = kernel::Cache::open(req_.cache_root);
  if (!cache) return std::unexpected(cache.error());
  cache_.emplace(std::move(*cache));
  if (!req_.kernel.empty()) {
    auto k = kernel::prepare_file(*cache_, req_.kernel, req_.modules_dir, req_.refresh, r_.arch);
    if (!k) return std::unexpected(k.error());
    kernel_ = std::move(*k);
    // The virtio transport of the arch's machine (vm::virtio_mmio_machine), then the console.
    if (!req_.modules_dir.empty()) {
      wanted_modules_ = {arch_ == vm::Arch::arm64 ? "virtio_mmio" : "virtio_pci", "virtio_console"};
    }
  } else {
    auto k = kernel::prepare_entry(*cache_, *entry_, req_.refresh, Deadline(std::chrono::minutes(10)));
    if (!k) return std::unexpected(k.error());
    kernel_ = std::move(*k);
    wanted_modules_ = entry_->modules;
  }
  if (req_.replay && !req_.replay->kernel_image_sha256.empty() &&
      kernel_.image_sha256 != req_.replay->kernel_image_sha256)
    return fail(
        FailureClass::usage,
        "the receipt's kernel is " + req_.replay->kernel_image_sha256 + ", and " +
            (req_.kernel.empty() ? "the entry " + r_.entry + " now gives " : req_.kernel.string() + " is ") +
            kernel_.image_sha256 +
            ": not the same bytes (a catalog entry that moved, a rebuilt kernel file); try one with "
            "--kernel FILE, recorded as a difference");
  r_.kernel.source = kernel_.source;
  r_.kernel.release_expected = kernel_.release;
  r_.kernel.image_sha256 = kernel_.image_sha256;
  r_.kernel.boot_sha256 = kernel_.boot_sha256;
  r_.kernel.pvh = kernel_.pvh;

  phase("initramfs");
  auto initramfs = prepare_initramfs(*cache_, kernel_, wanted_modules_, req_.refresh, arch_);
  if (!initramfs) return std::unexpected(std::move(initramfs.error()).context("initramfs"));
  initramfs_ = std::move(*initramfs);
  r_.initramfs.sha256 = initramfs_.sha256;
  r_.initramfs.agent_sha256 = initramfs_.agent_sha256;
  r_.initramfs.modules = initramfs_.modules;
  if (spec_.loader && spec_.loader->image) {
    phase("image");
    if (auto s = prepare_image(); !s) return s;
  }
  if (req_.shell != RunRequest::Shell::none) {
    // Before the files, so that a loader's own libraries land over the shell's.
    phase("shell_image");
    auto shell = prepare_shell_image(*cache_, arch_, req_.refresh, Deadline(std::chrono::minutes(10)));
    if (!shell) return std::unexpected(std::move(shell.error()).context("the guest shell's tools (--shell)"));
    r_.debug["shell"] = {{"when", std::string(shell_name(req_.shell))},
                         {"packages", shell->packages},
                         {"segment_sha256", shell->segment.sha256},
                         {"fetched", shell->fetched}};
    segments_.push_back(shell->segment);
    shell_image_ = std::move(*shell);
  }
  if (!files_.empty()) {
    // The files the spec ships are an archive after the image's, so that one lands over the
    // image's file of the same name.
    phase("files");
    std::vector<image::GuestFile> list;
    for (auto& f : files_) list.push_back({f.spec->dest, f.spec->mode, std::move(f.bytes)});
    files_.clear();
    auto segment = files_segment(*cache_, list);
    if (!segment) return std::unexpected(std::move(segment.error()).context("the files the spec ships"));
    segments_.push_back(std::move(*segment));
  }
  auto initrd = initrd_with_segments(*cache_, initramfs_, segments_);
  if (!initrd) return std::unexpected(std::move(initrd.error()).context("initrd"));
  initrd_ = *initrd;
  // A --btf file is the user's; under --watch the objects change while the guest keeps its BTF
  // (and parses the kernel's once for all reloads).
  if (req_.btf.empty() && !req_.watch) {
    phase("core_btf");
    std::vector<CoreBtfObject> objects;
    for (const auto& o : objects_) objects.push_back({o.spec->name, o.bytes});
    objects.push_back({"the lockdown canary", canary_object(arch_)});
    core_btf_ = minimal_core_btf(*cache_, kernel_, objects);
  }
  return preflight();
}

Status GateRun::prepare_image() {
  const spec::LoaderSpec& l = *spec_.loader;
  auto img = prepare_loader_image(*cache_, *l.image, arch_, req_.refresh, Deadline(std::chrono::minutes(10)));
  if (!img) return std::unexpected(std::move(img.error()).context("the loader's image"));
  image_ = std::move(*img);
  const kernel::ImageConfig& config = image_->image.image_config;
  json layers = image_->image.layer_digests;
  r_.loader["image"] = {{"reference", l.image->text()},
                        {"digest", image_->image.pinned_digest},
                        {"manifest", image_->image.manifest_digest},
                        {"layers", layers},
                        {"config",
                         {{"entrypoint", config.entrypoint},
                          {"cmd", config.cmd},
                          {"env", config.env},
                          {"working_dir", config.working_dir},
                          {"user", config.user}}},
                        {"tree_bytes", image_->segment.bytes},
                        {"segment_sha256", image_->segment.sha256},
                        {"unpacked", image_->unpacked}};
  if (!config.user.empty() && config.user != "0" && config.user != "root" && config.user != "0:0")
    r_.loader["image"]["user_note"] = "the loader runs as root, not as the config's User " + config.user;
  // The executable: --exec or the spec's, else the image's Entrypoint (else its Cmd).
  std::string exec = l.exec_in_image;
  if (exec.empty())
    exec = !config.entrypoint.empty() ? config.entrypoint.front()
           : !config.cmd.empty()      ? config.cmd.front()
                                      : "";
  if (exec.empty())
    return fail(FailureClass::usage,
                "the image " + l.image->text() +
                    " has neither Entrypoint nor Cmd: give the loader's \"exec\" (or --exec)");
  auto found = find_in_image(*image_, exec, loader_env());
  if (!found) return std::unexpected(found.error());
  auto host = file_in_image(*image_, *found);
  if (!host) return std::unexpected(host.error());
  auto sha = sha256_file(*host);
  if (!sha) return std::unexpected(sha.error());
  image_exec_ = *found;
  r_.loader["dest"] = *found;
  r_.loader["sha256"] = *sha;
  segments_.push_back(image_->segment);
  return {};
}

std::vector<std::string> GateRun::loader_env() const {
  const spec::LoaderSpec& l = *spec_.loader;
  const RunFacts facts = run_facts();
  std::vector<std::string> env;
  // The image's environment, then the spec's, a name given again replacing the earlier value.
  auto put = [&](const std::string& e) {
    const std::string name = e.substr(0, e.find('='));
    std::erase_if(env, [&](const std::string& x) { return x.substr(0, x.find('=')) == name; });
    env.push_back(e);
  };
  if (image_)
    for (const auto& e : image_->image.image_config.env) put(e);
  for (const auto& e : l.env) put(with_nonce(e, facts.nonce));
  if (std::none_of(env.begin(), env.end(), [](const std::string& e) { return e.starts_with("PATH="); }))
    env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  return env;
}

Status GateRun::preflight() {
  phase("preflight");
  // The config shipped beside the kernel, else the one the kernel embeds (IKCONFIG).
  std::string text, origin;
  if (!kernel_.config.empty()) {
    auto t = read_file(kernel_.config);
    if (!t) return std::unexpected(t.error());
    text = std::move(*t);
    origin = "config file";
  } else if (auto image = read_file(kernel_.boot)) {
    auto embedded = kernel::extract_ikconfig(*image);
    // An image kgate cannot unpack (an lz4 bzImage) has no readable IKCONFIG: not checked, and said so.
    if (!embedded) {
      r_.preflight = {{"config", "unreadable: " + embedded.error().describe()}, {"checked", false}};
      return {};
    }
    if (*embedded) {
      text = std::move(**embedded);
      origin = "IKCONFIG";
    }
  }
  r_.preflight = {{"config", origin.empty() ? "none found" : origin}, {"checked", !origin.empty()}};
  if (origin.empty()) return {};  // nothing to check against; the receipt says so
  auto config = kernel::parse_kconfig(text, origin);
  if (!config) return std::unexpected(config.error());
  kernel::PreflightNeeds needs;
  needs.lockdown = req_.lockdown != Lockdown::none;
  needs.machine = vm::traits(arch_).machine;
  needs.arch = vm::arch_name(arch_);
  needs.btf_file_given = !req_.btf.empty();
  needs.virtio_console_module_available = std::find(initramfs_.modules.begin(), initramfs_.modules.end(),
                                                    "virtio_console") != initramfs_.modules.end();
  std::vector<kernel::PreflightProblem> warnings;
  auto problems = kernel::preflight(*config, needs, &warnings);
  auto list = [](const std::vector<kernel::PreflightProblem>& ps) {
    json out = json::array();
    for (const auto& p : ps) out.push_back({{"option", p.option}, {"why", p.why}});
    return out;
  };
  r_.preflight["problems"] = list(problems);
  r_.preflight["warnings"] = list(warnings);
  if (!problems.empty()) return fail(FailureClass::usage, kernel::describe_problems(r_.entry, problems));
  return {};
}

Status GateRun::boot() {
  phase("boot");
  const vm::ArchTraits& traits = vm::traits(arch_);
  const std::string qemu_name = req_.qemu.empty() ? std::string(traits.qemu) : req_.qemu;
  fs::path qemu = find_program(qemu_name);
  if (qemu.empty()) {
    return fail(FailureClass::infra,
                "'" + qemu_name + "' not found on PATH: install " + std::string(traits.package) +
                    (arch_ == vm::Arch::arm64 ? " (scripts/setup.sh --arm64)" : " (scripts/setup.sh)"));
  }
  const vm::AccelChoice accel = vm::choose_accel(qemu, cache_->root() / "host", arch_, kernel_.boot);
  accel_ = accel.accel;
  r_.qemu.accel_note = accel.note;
  const bool kvm = accel_ == vm::Accel::kvm;
  boot_timeout_s_ = req_.boot_timeout_s.value_or(kvm ? 20.0 : 90.0);
  request_timeout_s_ = req_.request_timeout_s.value_or(kvm ? 10.0 : 60.0);
  if (!req_.gdb.empty()) {
    // A debugger may hold the guest at any point: no deadline may fire meanwhile.
    boot_timeout_s_ = request_timeout_s_ = 86400;
  }

  auto tmp = TempDir::create("kgate");
  if (!tmp) return std::unexpected(tmp.error());
  tmp_.emplace(std::move(*tmp));
  fs::path socket = tmp_->path() / "channel.sock";
  auto listener = channel::listen_unix(socket);
  if (!listener) return std::unexpected(listener.error());
  std::optional<UniqueFd> shell_listener;
  if (req_.shell != RunRequest::Shell::none) {
    auto l = channel::listen_unix(tmp_->path() / "shell.sock");
    if (!l) return std::unexpected(l.error());
    shell_listener.emplace(std::move(*l));
  }

  vm::VmSpec spec;
  spec.qemu = qemu;
  spec.arch = arch_;
  spec.machine = traits.machine;
  spec.accel = accel_;
  spec.cpu = accel.cpu;
  spec.kernel = kernel_.boot;
  spec.initrd = initrd_;
  if (!segments_.empty()) {
    // The guest holds the segments' files in memory, and the initrd until it is unpacked.
    std::error_code ec;
    std::uint64_t bytes = fs::file_size(initrd_, ec);
    for (const auto& seg : segments_) bytes += seg.bytes;
    spec.memory_mib += static_cast<int>(bytes >> 20) + 32;
  }
  spec.cmdline = vm::kernel_cmdline(arch_, cmdline_words());
  spec.console_log = absolute_path(req_.out_dir / "console.log");
  spec.channel_socket = socket;
  if (shell_listener) spec.shell_socket = tmp_->path() / "shell.sock";
  spec.port_name = proto::port_name;
  spec.extra = req_.qemu_args;
  if (!req_.gdb.empty()) {
    const std::string endpoint = gdb_endpoint();
    if (req_.gdb == "unix") {
      spec.extra.insert(
          spec.extra.end(),
          {"-chardev", "socket,id=gdb,path=" + endpoint + ",server=on,wait=off", "-gdb", "chardev:gdb"});
    } else {
      spec.extra.insert(spec.extra.end(), {"-gdb", req_.gdb});
    }
    if (req_.gdb_wait) spec.extra.push_back("-S");
    r_.debug.update({{"gdb", endpoint}, {"gdb_wait", req_.gdb_wait}, {"command", gdb_command()}});
    // Said before QEMU starts, on stderr: the user attaches from another terminal.
    std::fprintf(
        stderr, "kgate: gdb stub at %s; attach with: %s%s\n", endpoint.c_str(), gdb_command().c_str(),
        req_.gdb_wait ? " (the guest waits at its first instruction: continue or detach to start it)" : "");
    if (!kernel_.pvh)
      std::fprintf(stderr,
                   "kgate: no vmlinux with symbols here: pass gdb your kernel's vmlinux (Debian's debug "
                   "symbols are in linux-image-<release>-dbg, several hundred MB, not fetched)\n");
  }
  auto argv = vm::qemu_argv(spec);
  r_.qemu.binary = qemu.string();
  r_.qemu.version = qemu_version(*cache_, qemu);
  r_.qemu.accel = std::string(vm::accel_name(accel_));
  r_.qemu.machine = spec.machine;
  r_.qemu.argv = argv;
  r_.cmdline = spec.cmdline;
  r_.console_log = "console.log";

  r_.timings_s.emplace_back("pre_qemu", seconds_since(start_));
  // The console log exists from here on, even if QEMU is stopped before it opens it (which
  // truncates it, as it would anyway).
  if (auto s = write_file_atomic(spec.console_log, ""); !s) return s;
  auto child = Child::spawn(argv, {req_.out_dir / "qemu.log", {}, {}});
  if (!child) return std::unexpected(std::move(child.error()).context("start QEMU"));
  qemu_.emplace(std::move(*child));

  Deadline deadline(
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(boot_timeout_s_)));
  auto conn = channel::accept_one(listener->get(), deadline, watch_fds());
  if (!conn) {
    Error e = std::move(conn.error());
    if (e.cls() == FailureClass::timeout) e.reclass(FailureClass::boot_hang);
    return std::unexpected(std::move(e).context("QEMU did not connect to the channel"));
  }
  if (!*conn) return fail(FailureClass::infra, "QEMU ended before connecting to the channel");
  channel_.emplace(std::move(**conn));
  if (shell_listener) {
    auto shell = channel::accept_one(shell_listener->get(), deadline, watch_fds());
    if (!shell)
      return std::unexpected(std::move(shell.error()).context("QEMU did not connect the shell's port"));
    if (!*shell) return fail(FailureClass::infra, "QEMU ended before connecting the shell's port");
    shell_port_ = std::move(**shell);
  }
  auto hello = channel_->receive(deadline, watch_fds());
  if (!hello) {
    Error e = std::move(hello.error());
    if (e.cls() == FailureClass::timeout) {
      return std::unexpected(
          std::move(e)
              .reclass(FailureClass::boot_hang)
              .context(
                  strprintf("no hello from the agent within the boot deadline of %.1f s", boot_timeout_s_)));
    }
    return std::unexpected(std::move(e).context("waiting for hello"));
  }
  if (!*hello) return fail(FailureClass::no_verdict, "the guest ended before saying hello");
  if ((*hello)->type != FrameType::hello) {
    return fail(FailureClass::no_verdict,
                "expected hello, got a " + std::string(channel::type_name((*hello)->type)) + " frame");
  }
  if (std::string missing = proto::hello_from_json((*hello)->header, hello_); !missing.empty())
    return fail(FailureClass::no_verdict, "the agent's hello lacks '" + missing + "'");
  if (hello_.protocol != proto::protocol_version) {
    return fail(FailureClass::no_verdict, strprintf("the agent speaks protocol %d, this kgate %d",
                                                    hello_.protocol, proto::protocol_version));
  }
  r_.guest = proto::to_json(hello_);
  hello_seen_ = true;
  return {};
}

Result<json> GateRun::request(proto::Op op, json fields, std::string body, std::string* reply_body,
                              double extra_s) {
  Deadline deadline(std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(request_timeout_s_ + extra_s)));
  auto id = send_request(op, std::move(fields), std::move(body), deadline);
  if (!id) return std::unexpected(id.error());
  return receive_response(op, *id, deadline, reply_body);
}

Result<int> GateRun::send_request(proto::Op op, json fields, std::string body, const Deadline& deadline) {
  const int id = next_id_++;
  json header = proto::request_header(op, id, std::move(fields));
  if (auto s = channel_->send({FrameType::request, header, std::move(body)}, deadline, watch_fds()); !s) {
    return std::unexpected(std::move(s.error()).context("send " + std::string(proto::op_name(op))));
  }
  return id;
}

Result<json> GateRun::receive_response(proto::Op op, int id, const Deadline& deadline,
                                       std::string* reply_body) {
  const std::string name(proto::op_name(op));
  auto frame = channel_->receive(deadline, watch_fds());
  if (!frame) return std::unexpected(std::move(frame.error()).context("agent answering '" + name + "'"));
  if (!*frame) return fail(FailureClass::no_verdict, "the guest ended during '" + name + "'");
  const json& h = (*frame)->header;
  if ((*frame)->type != FrameType::response || channel::get_string(h, "op") != name ||
      channel::get_int(h, "id") != id) {
    std::string shown = h.dump(-1, ' ', false, json::error_handler_t::replace);
    if (shown.size() > 512) shown = shown.substr(0, 512) + "...";
    return fail(FailureClass::no_verdict,
                "the agent answered '" + name + "' with an unexpected frame: " + shown);
  }
  if (reply_body) *reply_body = std::move((*frame)->body);
  return h;
}

Status GateRun::exercise() {
  r_.nonce = random_nonce();
  r_.trigger_count = req_.count;

  // Without --btf, libbpf reads the kernel's own; a kernel without it fails CO-RE (and preflight).
  r_.btf = {{"source", hello_.btf ? "kernel" : "none"}};
  if (!req_.btf.empty()) {
    phase("btf");
    auto bytes = read_file(req_.btf);
    if (!bytes)
      return std::unexpected(std::move(bytes.error()).context("read --btf").reclass(FailureClass::usage));
    r_.btf = {{"source", "file"}, {"path", absolute_path(req_.btf).string()}, {"sha256", sha256_hex(*bytes)}};
    auto sent = request(proto::Op::btf, json::object(), std::move(*bytes));
    if (!sent) return std::unexpected(sent.error());
    if (proto::Ack ack = proto::ack_from_json(*sent); !ack.ok)
      return fail(FailureClass::infra, "the agent could not keep the BTF file: " + ack.error);
  } else if (!core_btf_.note.is_null()) {
    r_.btf["core"] = core_btf_.note;
    if (!hello_.btf) {
      r_.btf["core"] = {{"btf", "kernel"}, {"why", "the guest has no /sys/kernel/btf/vmlinux"}};
    } else if (!core_btf_.bytes.empty() && !core_btf_in_use_) {
      phase("btf");
      auto sent = request(proto::Op::btf, json::object(), core_btf_.bytes);
      if (!sent) return std::unexpected(sent.error());
      if (proto::Ack ack = proto::ack_from_json(*sent); !ack.ok)
        return fail(FailureClass::infra, "the agent could not keep the minimized BTF: " + ack.error);
      core_btf_in_use_ = true;
    }
  }
  using Shell = RunRequest::Shell;
  if (req_.shell == Shell::before) {
    if (auto s = open_shell(false); !s) return s;
  }
  // A shell after the gate sees everything still loaded and attached: the loader keeps running and
  // no object is detached until it closes.
  const bool hold = req_.shell == Shell::after || req_.shell == Shell::on_failure;
  if (spec_.loader) {
    if (auto s = exercise_loader(hold); !s) return s;
  }
  for (auto& o : objects_) {
    if (auto s = exercise_object(o, hold); !s) return s;
  }
  if (hold) {
    if (req_.shell == Shell::after || failing_so_far()) {
      if (auto s = open_shell(true); !s) return s;
    } else {
      r_.debug["shell"]["opened"] = false;
      r_.debug["shell"]["why"] = "the gate has not failed";
    }
    if (spec_.loader) {
      if (auto s = stop_loader(); !s) return s;
    }
    for (auto& o : objects_) {
      if (auto s = detach_object(o); !s) return s;
    }
  }
  return prove_lockdown_level();
}

bool GateRun::failing_so_far() const {
  RunFacts facts = run_facts();
  auto failed = [](const std::vector<report::ProgramResult>& ps) {
    return std::any_of(ps.begin(), ps.end(),
                       [](const report::ProgramResult& p) { return p.verdict == "fail"; });
  };
  for (const auto& o : objects_) {
    if (!o.obs.load.ok) return true;
    // Judged as if the detach to come leaves nothing behind.
    ObjectObservation obs = o.obs;
    obs.detach.reported = true;
    if (failed(judge_object(*o.spec, obs, facts))) return true;
  }
  if (spec_.loader) {
    LoaderObservation obs = loader_;
    obs.stop = obs.stats_reached ? obs.stats : obs.start;
    obs.stop_reached = true;
    if (failed(judge_loader(*spec_.loader, obs, facts))) return true;
  }
  return false;
}

Status GateRun::open_shell(bool pin) {
  phase("shell");
  json& record = r_.debug["shell"];
  record["opened"] = true;
  auto raw = RawTerminal::enter(STDIN_FILENO);
  if (!raw) return std::unexpected(std::move(raw.error()).reclass(FailureClass::usage).context("--shell"));
  proto::ShellRequest sr;
  sr.pin = pin;
  sr.rows = raw->rows();
  sr.cols = raw->cols();
  if (const char* term = std::getenv("TERM")) sr.term = term;
  // No deadline while the user has the shell: only the agent's answer, QEMU's end or a signal ends it.
  const Deadline unbounded(std::chrono::hours(24 * 365));
  auto id = send_request(proto::Op::shell, proto::to_json(sr), {}, unbounded);
  if (!id) return std::unexpected(id.error());
  auto relayed = relay_terminal(shell_port_.get(), channel_->fd(), watch_fds());
  raw->restore();
  if (!relayed) return std::unexpected(relayed.error());
  if (!*relayed) return fail(FailureClass::no_verdict, "the shell ended without the agent's answer");
  Deadline deadline(
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(request_timeout_s_)));
  auto resp = receive_response(proto::Op::shell, *id, deadline, nullptr);
  if (!resp) return std::unexpected(resp.error());
  proto::ShellResponse shell = proto::shell_response_from_json(*resp);
  record["pinned"] = shell.pinned;
  record["problems"] = shell.problems;
  record["open_s"] = shell.open_s;
  record["status"] = describe_status(shell.status);
  if (!shell.ok) return fail(FailureClass::infra, "the guest shell: " + shell.error);
  return {};
}

Status GateRun::exercise_loader(bool hold) {
  const spec::LoaderSpec& l = *spec_.loader;
  const RunFacts facts = run_facts();
  proto::LoaderStartRequest start;
  std::vector<std::string> args = l.args;
  if (image_) {
    // As a container runtime starts it: Entrypoint and Cmd, the spec's args replacing Cmd; an
    // executable the spec names takes the spec's args alone.
    const kernel::ImageConfig& config = image_->image.image_config;
    start.argv = {image_exec_};
    if (l.exec_in_image.empty()) {
      const bool from_entrypoint = !config.entrypoint.empty();
      const auto& first = from_entrypoint ? config.entrypoint : config.cmd;
      std::vector<std::string> rest(first.begin() + 1, first.end());
      if (from_entrypoint && !l.args_given) rest.insert(rest.end(), config.cmd.begin(), config.cmd.end());
      if (!from_entrypoint && l.args_given) rest.clear();
      args.insert(args.begin(), rest.begin(), rest.end());
    }
    start.root = guest_image_root;
    start.cwd = !l.cwd.empty() ? l.cwd : !config.working_dir.empty() ? config.working_dir : "/";
  } else {
    start.argv = {l.dest};
    start.cwd = l.cwd.empty() ? "/" : l.cwd;
  }
  for (const auto& a : args) start.argv.push_back(with_nonce(a, facts.nonce));
  start.env = loader_env();
  if (l.wants_nonce()) start.nonce = facts.nonce;
  if (!l.nonce_file.empty()) start.nonce_file = (image_ ? guest_image_root : "") + l.nonce_file;
  if (!l.nonce_map.empty()) {
    start.nonce_map = l.nonce_map;
    start.nonce_bytes = to_hex(encoded_nonce(facts.nonce, l.nonce_map_at.encoding));
    start.nonce_offset = l.nonce_map_at.offset;
  }
  for (const auto& p : l.programs) start.programs.push_back({p.name, p.type, p.attached});
  start.ready_line = l.ready_line;
  start.timeout_ms = static_cast<int>(l.ready_timeout_s * 1000);
  r_.loader["argv"] = start.argv;
  r_.loader["env"] = start.env;
  r_.loader["cwd"] = start.cwd;

  phase("loader");
  auto started = request(proto::Op::loader_start, proto::to_json(start), {}, nullptr, l.ready_timeout_s);
  if (!started) return std::unexpected(started.error());
  loader_.start = proto::loader_response_from_json(*started);
  loader_.start_reached = true;
  if (loader_.start.ready && !loader_.start.exited) {
    phase("trigger");
    proto::TriggerRequest trig;
    trig.nonce = facts.nonce;
    trig.count = facts.count;
    for (const auto& p : l.programs) {
      if (p.trigger.kind == spec::TriggerKind::none) continue;
      proto::TriggerAction a = trigger_action(p.trigger, facts.nonce);
      bool seen = std::any_of(trig.actions.begin(), trig.actions.end(), [&](const proto::TriggerAction& b) {
        return b.kind == a.kind && b.path == a.path && b.binary == a.binary && b.args == a.args;
      });
      if (!seen) trig.actions.push_back(std::move(a));
    }
    auto t = request(proto::Op::trigger, proto::to_json(trig));
    if (!t) return std::unexpected(t.error());
    loader_.trigger = proto::trigger_response_from_json(*t);
    loader_.trigger_reached = true;
    auto stats = request(proto::Op::loader_stats, json::object());
    if (!stats) return std::unexpected(stats.error());
    loader_.stats = proto::loader_response_from_json(*stats);
    loader_.stats_reached = true;
  }
  return hold ? Status{} : stop_loader();
}

Status GateRun::stop_loader() {
  const spec::LoaderSpec& l = *spec_.loader;
  phase("loader_stop");
  auto stopped = request(proto::Op::loader_stop, {{"grace_ms", static_cast<int>(l.stop_grace_s * 1000)}}, {},
                         nullptr, l.stop_grace_s + 5);
  if (!stopped) return std::unexpected(stopped.error());
  loader_.stop = proto::loader_response_from_json(*stopped);
  loader_.stop_reached = true;
  return {};
}

Status GateRun::exercise_object(ObjectRun& o, bool hold) {
  const RunFacts facts = run_facts();
  ObjectObservation& obs = o.obs;
  phase("load");
  auto load = request(proto::Op::load, proto::to_json(load_request(*o.spec, o.programs, facts)), o.bytes);
  if (!load) return std::unexpected(load.error());
  obs.load = proto::load_response_from_json(*load);
  if (core_btf_in_use_) {
    // The minimized BTF holds only what matched; libbpf's account of a relocation that did not
    // names the kernel's candidates only when it searched the kernel's whole BTF. Load again so.
    if (std::string refused = core_relocation_refusal(obs.load, facts); !refused.empty()) {
      if (auto s = detach_object(o); !s) return s;
      // What the first load left in the kernel is the object's result: judged as it is.
      if (!obs.detach.left_programs.empty() || !obs.detach.left_links.empty()) return {};
      phase("load");
      auto reset = request(proto::Op::btf, json::object());
      if (!reset) return std::unexpected(reset.error());
      if (proto::Ack ack = proto::ack_from_json(*reset); !ack.ok)
        return fail(FailureClass::infra, "the agent could not return to the kernel's BTF: " + ack.error);
      core_btf_in_use_ = false;
      r_.btf["core"]["fell_back"] = o.spec->name + ": " + refused +
                                    " failed a CO-RE relocation with the minimized BTF; loaded again "
                                    "with the kernel's, for libbpf's full account";
      obs = ObjectObservation{};
      load = request(proto::Op::load, proto::to_json(load_request(*o.spec, o.programs, facts)), o.bytes);
      if (!load) return std::unexpected(load.error());
      obs.load = proto::load_response_from_json(*load);
    }
  }
  r_.objects[o.receipt_index].load_rounds_ms = obs.load.round_ms;
  // A refused program is judged below: the refusal is the result.
  if (!obs.load.ok) return {};

  phase("attach");
  auto attach = request(proto::Op::attach, proto::to_json(attach_request(*o.spec, obs.load)));
  if (!attach) return std::unexpected(attach.error());
  obs.attach = proto::attach_response_from_json(*attach);
  obs.attach_reached = true;

  phase("trigger");
  auto trig = request(proto::Op::trigger, proto::to_json(trigger_request(*o.spec, obs.load, facts)));
  if (!trig) return std::unexpected(trig.error());
  obs.trigger = proto::trigger_response_from_json(*trig);
  obs.trigger_reached = true;

  phase("flush");
  std::string records;
  auto drain =
      request(proto::Op::drain, proto::to_json(drain_request(*o.spec, obs.load.handle)), {}, &records);
  if (!drain) return std::unexpected(drain.error());
  obs.drain = proto::drain_response_from_json(*drain);
  obs.drain_reached = true;
  obs.records = proto::parse_records(records, obs.drain.rings.size(), &obs.records_error);
  return hold ? Status{} : detach_object(o);
}

Status GateRun::detach_object(ObjectRun& o) {
  ObjectObservation& obs = o.obs;
  if (!obs.load.ok) return {};  // nothing was loaded
  phase("detach");
  auto detach = request(proto::Op::detach, {{"handle", obs.load.handle}});
  if (!detach) return std::unexpected(detach.error());
  obs.detach = proto::detach_response_from_json(*detach);
  // How long the guest waited for the kernel to free what was detached.
  r_.timings_s.emplace_back("detach_guest_wait", obs.detach.wait_ms / 1000.0);
  return {};
}

RunFacts GateRun::run_facts() const {
  RunFacts f;
  f.nonce = r_.nonce;
  f.count = req_.count;
  f.arch = std::string(vm::arch_name(arch_));
  f.release = hello_.release;
  f.agent_pid = hello_.pid;
  f.kernel_btf = hello_.btf;
  f.btf_file = !req_.btf.empty();
  return f;
}

Status GateRun::prove_lockdown_level() {
  phase("canary");
  std::string_view canary = canary_object(arch_);
  r_.canary.name = "canary_write_user";
  r_.canary.sha256 = sha256_hex(canary);
  proto::LoadRequest req;
  req.name = "canary_write_user";
  auto load = request(proto::Op::load, proto::to_json(req), std::string(canary));
  if (!load) return std::unexpected(load.error());
  canary_load_ = proto::load_response_from_json(*load);
  canary_reached_ = true;
  // Unload it again (it is never attached): nothing of the canary may stay behind.
  if (canary_load_.ok) {
    auto close = request(proto::Op::detach, {{"handle", canary_load_.handle}});
    if (!close) return std::unexpected(close.error());
    canary_detach_ = proto::detach_response_from_json(*close);
  } else {
    canary_detach_.reported = true;  // nothing was loaded, so nothing can be left
  }

  phase("dmesg");
  auto log = request(proto::Op::dmesg, json::object());
  if (!log) return std::unexpected(log.error());
  dmesg_ = channel::get_string(*log, "text");
  // The console shows notices and worse (vm::kernel_cmdline); this is every level, at the end. A
  // file that cannot be written leaves kernel_log empty; the gate's result does not depend on it.
  if (write_file_atomic(req_.out_dir / "kernel.log", dmesg_)) r_.kernel_log = "kernel.log";
  return {};
}

Status GateRun::power_off() {
  phase("poweroff");
  power_off_sent_ = true;
  auto resp = request(proto::Op::poweroff, json::object());
  if (!resp) return std::unexpected(resp.error());
  auto status = qemu_->wait(Deadline(std::chrono::seconds(accel_ == vm::Accel::kvm ? 10 : 30)));
  if (!status)
    return std::unexpected(std::move(status.error()).reclass(FailureClass::timeout).context("power-off"));
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return fail(FailureClass::infra, "QEMU " + describe_status(*status) + " after power-off");
  }
  return {};
}

void GateRun::judge() {
  // The canary's one program, in the shape the lockdown proof reads.
  json canary = {{"ok", false}, {"error", canary_load_.error}, {"log", ""}};
  for (const auto& p : canary_load_.programs) {
    canary = {{"ok", p.loaded},
              {"error", p.error.empty() ? canary_load_.error : p.error},
              {"log", p.log + "\n" + p.libbpf}};
  }
  LockdownProof proof = prove_lockdown(req_.lockdown, r_.guest, canary, dmesg_);
  RunFacts facts = run_facts();
  facts.lockdown_refusals = proof.dmesg_lockdown;
  facts.lockdown_level = proof.observed;
  std::vector<std::string> problems;
  json left_programs = json::array(), left_links = json::array();
  for (const auto& o : objects_) {
    auto programs = judge_object(*o.spec, o.obs, facts);
    // An object that did not load is reported through its programs; on its own only when none
    // of them failed for it.
    const bool told = std::any_of(programs.begin(), programs.end(),
                                  [](const report::ProgramResult& p) { return p.verdict == "fail"; });
    r_.programs.insert(r_.programs.end(), programs.begin(), programs.end());
    if (!o.obs.load.ok && !o.obs.load.error.empty() && !told)
      problems.push_back("object " + o.spec->name + ": " + o.obs.load.error);
    if (auto extra = unknown_programs(*o.spec, o.obs); !extra.empty()) {
      std::string shown;
      for (std::size_t i = 0; i < extra.size() && i < 5; ++i)
        shown += (i ? ", " : "") + extra[i].substr(0, 64);
      problems.push_back(strprintf("the agent reported %zu programs that object %s does not have: %s%s",
                                   extra.size(), o.spec->name.c_str(), shown.c_str(),
                                   extra.size() > 5 ? ", ..." : ""));
    }
    for (auto id : o.obs.detach.left_programs) left_programs.push_back(id);
    for (auto id : o.obs.detach.left_links) left_links.push_back(id);
    if (!o.obs.records_error.empty())
      problems.push_back("object " + o.spec->name + ": the guest's records: " + o.obs.records_error);
    for (const auto& ring : o.obs.drain.rings) {
      if (ring.dropped > 0)
        problems.push_back(strprintf("the agent dropped %llu records of ring '%s'",
                                     static_cast<unsigned long long>(ring.dropped), ring.name.c_str()));
    }
  }
  if (spec_.loader) {
    auto programs = judge_loader(*spec_.loader, loader_, facts);
    r_.programs.insert(r_.programs.end(), programs.begin(), programs.end());
    r_.loader.update(loader_json(loader_));
    for (auto id : loader_.stop.left_programs) left_programs.push_back(id);
    for (auto id : loader_.stop.left_links) left_links.push_back(id);
  }
  r_.leftovers = {{"programs", left_programs}, {"links", left_links}};
  if (canary_reached_) {
    if (!canary_detach_.reported) {
      problems.push_back("the agent reported nothing about what the lockdown canary left behind");
    } else if (!canary_detach_.left_programs.empty() || !canary_detach_.left_links.empty()) {
      problems.push_back(
          "the lockdown canary left behind in the guest: " +
          json({{"programs", canary_detach_.left_programs}, {"links", canary_detach_.left_links}}).dump());
    }
  }
  if (!kernel_.release.empty() && hello_.release != kernel_.release) {
    problems.push_back("the guest runs " + hello_.release + ", the entry's package ships " + kernel_.release);
  }
  RunJudgement j = judge_run(r_.programs, problems);
  r_.verdict = j.verdict;
  r_.failure_message = j.message;
  r_.lockdown = lockdown_json(proof);
  // A lockdown level other than the one asked for voids the entry, whatever the programs did.
  if (!proof.consistent) {
    r_.verdict = FailureClass::lockdown_mismatch;
    r_.failure_message = proof.mismatch + (j.message.empty() ? "" : "; also: " + j.message);
  }
}

void GateRun::scan_console() {
  auto console = read_file(req_.out_dir / "console.log");
  if (!console) {
    // QEMU never started, or, if it ran, its console is gone: no splat scan, so no pass.
    if (r_.verdict == FailureClass::pass) {
      r_.verdict = FailureClass::infra;
      r_.failure_message = "could not read the console to scan it: " + console.error().describe();
    }
    return;
  }
  auto patterns = vm::parse_console_patterns(console_patterns(), "built-in console-patterns.json");
  if (!patterns) {
    // A build that ships a broken list must not pass anything; other failures keep their class.
    if (r_.verdict == FailureClass::pass) {
      r_.verdict = FailureClass::infra;
      r_.failure_message = patterns.error().describe();
    }
    return;
  }
  r_.console_splats = json::array();
  for (const auto& s : vm::find_splats(*console, *patterns)) {
    r_.console_splats.push_back({{"id", s.id},
                                 {"line_no", s.line_no},
                                 {"line", s.line},
                                 {"lead_in", s.lead_in},
                                 {"context", s.context}});
  }
  if (r_.verdict == FailureClass::pass && !r_.console_splats.empty()) {
    r_.verdict = FailureClass::gate_failed;
    const json& first = r_.console_splats.front();
    r_.failure_message = strprintf("the console shows %zu kernel splat(s); first, %s at line %zu: %s",
                                   r_.console_splats.size(), first["id"].get<std::string>().c_str(),
                                   first["line_no"].get<size_t>(), first["line"].get<std::string>().c_str());
  }
}

Error GateRun::classify(Error e) {
  if (interrupt_signal() != 0) {
    return Error(FailureClass::interrupted, strprintf("interrupted by signal %d", interrupt_signal()));
  }
  if (!qemu_) return e;
  // A guest that dies takes QEMU with it (panic=-1, -no-reboot): give it a moment.
  std::optional<int> status = qemu_->try_wait();
  if (!status && (e.cls() == FailureClass::no_verdict || e.cls() == FailureClass::infra)) {
    if (auto st = qemu_->wait(Deadline(std::chrono::seconds(2)))) status = *st;
  }
  if (!status) return e;
  auto console = read_file(req_.out_dir / "console.log").value_or("");
  auto found = vm::scan_console(console);
  if (found.agent_fatal || found.init_died) {
    return Error(FailureClass::agent_crash, "the guest agent died: " + found.first_line);
  }
  if (found.panic) return Error(FailureClass::kernel_panic, found.first_line);
  if (power_off_sent_ && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) return e;
  std::string qemu_log = read_file(req_.out_dir / "qemu.log").value_or("");
  std::string tail;
  for (const auto& l : vm::tail_lines(qemu_log, 5)) tail += (tail.empty() ? "" : " | ") + l;
  return Error(FailureClass::infra, "QEMU " + describe_status(*status) + " unexpectedly" +
                                        (tail.empty() ? std::string() : " (qemu.log: " + tail + ")") +
                                        "; while " + e.describe());
}

std::map<fs::path, std::string> GateRun::watched_files() const {
  std::map<fs::path, std::string> files;
  if (!req_.spec.empty()) files[absolute_path(req_.spec)] = r_.spec.sha256;
  for (const auto& o : objects_) {
    auto path = o.spec->paths.find(std::string(vm::arch_name(arch_)));
    if (path != o.spec->paths.end()) files[absolute_path(path->second)] = o.sha256;
  }
  return files;
}

void GateRun::emit_run(const std::vector<fs::path>& changed) {
  end_phase();
  const report::Receipt observed = r_;
  if (run_error_) {
    r_.verdict = run_error_->cls();
    r_.failure_message = run_error_->describe();
  } else {
    judge();
  }
  scan_console();
  r_.timings_s.emplace_back("total", seconds_since(run_start_));
  json files = json::array();
  for (const auto& f : changed) files.push_back(f.string());
  r_.debug["watch"] = {{"run", run_number_}, {"changed", files}, {"qemu_pid", qemu_->pid()}};
  if (each_) each_(written_outcome());
  r_ = observed;
}

void GateRun::forget_run() {
  r_ = booted_;
  r_.objects.clear();
  r_.files = json::array();
  r_.spec = {};
  objects_.clear();
  files_.clear();
  spec_ = {};
  canary_reached_ = false;
  canary_load_ = {};
  canary_detach_ = {};
  dmesg_.clear();
  run_error_.reset();
}

Status GateRun::watch() {
  std::vector<fs::path> changed;
  for (;;) {
    emit_run(changed);
    phase("watch");
    auto files = FileWatch::create(watched_files());
    if (!files) return std::unexpected(files.error());
    auto seen = files->wait(watch_fds());
    if (!seen) return std::unexpected(seen.error());
    if (seen->empty()) {
      if (interrupt_signal() == 0)
        return fail(FailureClass::no_verdict, "QEMU ended while kgate watched for changes");
      // The signal that ends watching; the guest is powered off as for any run.
      clear_interrupt();
      r_.debug["watch"] = {{"run", run_number_}, {"stopped_by", "signal"}, {"qemu_pid", qemu_->pid()}};
      return {};
    }
    changed = std::move(*seen);
    run_start_ = Clock::now();
    const json shipped = r_.files;
    forget_run();
    ++run_number_;
    if (progress_) progress_("reload");
    Status s = resolve_spec();
    // The files a spec ships are in the guest's initramfs: they cannot change under a booted guest.
    if (s && r_.files != shipped)
      s = fail(
          FailureClass::usage,
          "the files the spec ships changed: --watch reloads the spec and its objects in the same guest, "
          "not the files of its initramfs; start kgate again");
    if (!s) {
      run_error_ = s.error();
      continue;
    }
    if (auto run = exercise(); !run) return run;
  }
}

RunOutcome GateRun::execute() {
  r_.kgate_version = kgate_version;
  r_.host = host_json();
  r_.request = request_json(req_);
  r_.entry = req_.name.empty() ? req_.entry : req_.name;
  Status status = make_dirs(req_.out_dir);
  // A reused receipt directory must not lend an old run's console to this one.
  for (const char* old : {"receipt.json", "console.log", "kernel.log", "qemu.log", "spec.json", "objects",
                          "files", "failure.txt"}) {
    std::error_code ec;
    fs::remove_all(req_.out_dir / old, ec);
  }
  if (status) status = prepare();
  if (status) status = boot();
  if (status && req_.watch) booted_ = r_;
  if (status) status = exercise();
  if (status && req_.watch) status = watch();
  if (status) status = power_off();
  end_phase();

  if (!status) {
    Error e = classify(std::move(status.error()));
    r_.verdict = e.cls();
    r_.failure_message = e.describe();
  } else if (run_error_) {
    r_.verdict = run_error_->cls();
    r_.failure_message = run_error_->describe();
  } else {
    judge();
  }
  if (qemu_ && !qemu_->try_wait()) qemu_->terminate(std::chrono::seconds(2));
  scan_console();
  if (r_.failure_message.size() > report::failure_message_limit) {
    // The whole text beside the receipt; the receipt and the terminal get its head and tail.
    (void)write_file_atomic(req_.out_dir / "failure.txt", r_.failure_message + "\n");
    r_.failure_message =
        report::bounded_message(r_.failure_message, report::failure_message_limit, "failure.txt");
  }
  r_.timings_s.emplace_back("total", seconds_since(start_));
  if (req_.replay) r_.repro = repro_json();
  if (r_.verdict != FailureClass::pass) {
    if (auto console = read_file(req_.out_dir / "console.log"))
      r_.console_tail = vm::tail_lines(*console, 40);
  }
  return written_outcome();
}

RunOutcome GateRun::written_outcome() const {
  RunOutcome out;
  out.verdict = r_.verdict;
  out.message = r_.failure_message;
  out.receipt_path = req_.out_dir / "receipt.json";
  if (auto s = report::write_receipt(req_.out_dir, r_); !s) {
    // The receipt is the product: failing to write it is itself a failure.
    out.verdict = FailureClass::infra;
    out.message = "could not write the receipt: " + s.error().describe();
  }
  out.receipt = r_;
  return out;
}

}  // namespace

std::string_view shell_name(RunRequest::Shell s) {
  switch (s) {
    case RunRequest::Shell::none: return "none";
    case RunRequest::Shell::before: return "before";
    case RunRequest::Shell::after: return "after";
    case RunRequest::Shell::on_failure: return "on-failure";
  }
  return "none";
}

std::optional<RunRequest::Shell> parse_shell(std::string_view s) {
  for (auto v : {RunRequest::Shell::before, RunRequest::Shell::after, RunRequest::Shell::on_failure})
    if (s == shell_name(v)) return v;
  return std::nullopt;
}

RunOutcome run_gate(const RunRequest& request, const ProgressFn& progress, const OutcomeFn& each) {
  GateRun run(request, progress, each);
  return run.execute();
}

}  // namespace kgate::run

#include "agent/loader.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "agent/objects.hpp"
#include "core/strings.hpp"

namespace kgate::agent {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t max_output = 64 * 1024;
constexpr std::size_t max_name = 15;  // BPF_OBJ_NAME_LEN less the NUL

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

std::set<std::uint32_t> as_set(const std::vector<std::uint32_t>& v) {
  return {v.begin(), v.end()};
}

// True when the file holds `nonce` within its first MiB.
bool file_holds(const std::string& path, const std::string& nonce) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  std::string text;
  char buf[4096];
  while (text.size() < (1u << 20)) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text.find(nonce) != std::string::npos;
}

// True when some value of the map pinned at `path` holds `bytes` at `offset` (the first 65536 keys).
bool pinned_map_holds(const std::string& path, const std::string& bytes, std::uint32_t offset) {
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd.valid()) return false;
  bpf_map_info info{};
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return false;
  if (offset > info.value_size || info.value_size - offset < bytes.size()) return false;
  // A per-CPU map's value is one slot per possible CPU, each rounded up to 8 bytes.
  const bool per_cpu = info.type == BPF_MAP_TYPE_PERCPU_ARRAY || info.type == BPF_MAP_TYPE_PERCPU_HASH ||
                       info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
  const int cpus = per_cpu ? std::max(1, libbpf_num_possible_cpus()) : 1;
  const std::size_t slot = per_cpu ? (info.value_size + 7) / 8 * 8 : info.value_size;
  std::string key(std::max<__u32>(info.key_size, 1), '\0'), next(key.size(), '\0');
  std::string value(slot * static_cast<std::size_t>(cpus), '\0');
  auto holds = [&] {
    for (int c = 0; c < cpus; ++c)
      if (value.compare(c * slot + offset, bytes.size(), bytes) == 0) return true;
    return false;
  };
  const void* prev = nullptr;
  for (int i = 0; i < 65536 && bpf_map_get_next_key(fd.get(), prev, next.data()) == 0; ++i) {
    key = next;
    prev = key.data();
    if (bpf_map_lookup_elem(fd.get(), key.data(), value.data()) == 0 && holds()) return true;
  }
  return false;
}

// In the loader's child, before exec: a mount namespace of its own, where the guest's /proc, /sys
// (with bpffs, tracefs and debugfs under it) and /dev are bound into `root`, and then `root` becomes
// its root. Everything bound goes with the namespace when the loader exits.
bool enter_root(const std::string& root) {
  auto complain = [&](const std::string& what) {
    std::fprintf(stderr, "kgate-agent: %s for the image root %s: %s\n", what.c_str(), root.c_str(),
                 std::strerror(errno));
    return false;
  };
  if (::unshare(CLONE_NEWNS) != 0) return complain("unshare(CLONE_NEWNS)");
  ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);  // nothing propagates back
  for (const char* dir : {"proc", "sys", "dev"}) {
    const std::string target = root + "/" + dir;
    if (::mkdir(target.c_str(), 0755) != 0 && errno != EEXIST) return complain("mkdir " + target);
    if (::mount((std::string("/") + dir).c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
      return complain(std::string("bind /") + dir);
  }
  if (::chroot(root.c_str()) != 0) return complain("chroot");
  if (::chdir("/") != 0) return complain("chdir /");
  return true;
}

// What a link is attached to, as far as bpf_link_info says (a perf_event link on kernels before 6.6
// says nothing: empty).
std::string link_target(int fd, const bpf_link_info& info) {
  auto attach = [](__u32 t) {
    const char* s = libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(t));
    return std::string(s ? s : "attach type " + std::to_string(t));
  };
  switch (info.type) {
    case BPF_LINK_TYPE_RAW_TRACEPOINT: {
      char name[128] = {};
      bpf_link_info again{};
      again.raw_tracepoint.tp_name = reinterpret_cast<__u64>(name);
      again.raw_tracepoint.tp_name_len = sizeof name;
      __u32 len = sizeof again;
      if (bpf_obj_get_info_by_fd(fd, &again, &len) != 0) return {};
      return std::string(name, ::strnlen(name, sizeof name));
    }
    case BPF_LINK_TYPE_TRACING:
      return attach(info.tracing.attach_type) + " btf_id " + std::to_string(info.tracing.target_btf_id) +
             (info.tracing.target_obj_id ? " of object " + std::to_string(info.tracing.target_obj_id) : "");
    case BPF_LINK_TYPE_CGROUP:
      return attach(info.cgroup.attach_type) + " cgroup " + std::to_string(info.cgroup.cgroup_id);
    case BPF_LINK_TYPE_NETNS:
      return attach(info.netns.attach_type) + " netns " + std::to_string(info.netns.netns_ino);
    case BPF_LINK_TYPE_XDP: return "ifindex " + std::to_string(info.xdp.ifindex);
    default: return {};
  }
}

}  // namespace

Loader::~Loader() {
  if (pid_ > 0 && !exited_) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void Loader::pump_output() {
  if (!out_.valid()) return;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(out_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      out_.reset();  // every writer is gone: nothing more to read, nothing to watch
      break;
    }
    if (n < 0) break;
    output_.append(buf, static_cast<std::size_t>(n));
    if (nonce_in_output() && !nonce_seen_) {
      // Across the end of the previous read too.
      const std::size_t window = std::min(output_.size(), static_cast<std::size_t>(n) + nonce_.size());
      nonce_seen_ = output_.find(nonce_, output_.size() - window) != std::string::npos;
    }
    if (output_.size() > max_output) output_.erase(0, output_.size() - max_output);
    if (ready_line_.empty() || line_seen_) continue;
    pending_.append(buf, static_cast<std::size_t>(n));
    for (std::size_t nl; (nl = pending_.find('\n')) != std::string::npos; pending_.erase(0, nl + 1)) {
      if (pending_.substr(0, nl).find(ready_line_) != std::string::npos) line_seen_ = true;
    }
    if (pending_.size() > 4096) pending_.erase(0, pending_.size() - 4096);
  }
}

bool Loader::reap() {
  if (exited_ || pid_ <= 0) return exited_;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = status;
  }
  return exited_;
}

std::vector<proto::KernelProgram> Loader::created() {
  std::vector<proto::KernelProgram> out;
  for (std::uint32_t id : live_ids(bpf_prog_get_next_id)) {
    if (before_programs_.contains(id) || out.size() >= 256) continue;
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;  // freed meanwhile
    UniqueFd owned(fd);
    bpf_prog_info info{};
    __u32 len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) continue;
    seen_programs_.insert(id);
    proto::KernelProgram p;
    p.id = id;
    p.name = std::string(info.name, ::strnlen(info.name, sizeof info.name));
    p.type = libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(info.type)) ?: "unknown";
    p.tag = to_hex(std::string_view(reinterpret_cast<const char*>(info.tag), sizeof info.tag));
    p.run_count = info.run_cnt;
    p.run_time_ns = info.run_time_ns;
    if (len >= offsetof(bpf_prog_info, verified_insns) + sizeof info.verified_insns)
      p.verified_insns = info.verified_insns;
    p.xlated_bytes = info.xlated_prog_len;
    p.jited_bytes = info.jited_prog_len;
    out.push_back(std::move(p));
  }
  for (std::uint32_t id : live_ids(bpf_link_get_next_id)) {
    if (before_links_.contains(id)) continue;
    int fd = bpf_link_get_fd_by_id(id);
    if (fd < 0) continue;
    UniqueFd owned(fd);
    bpf_link_info info{};
    __u32 len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) continue;
    seen_links_.insert(id);
    for (auto& p : out) {
      if (p.id == info.prog_id && p.links.size() < 64)
        p.links.push_back({id, libbpf_bpf_link_type_str(static_cast<bpf_link_type>(info.type)) ?: "unknown",
                           link_target(fd, info)});
    }
  }
  return out;
}

void Loader::look_for_nonce() {
  if (nonce_seen_ || nonce_.empty()) return;
  if (!nonce_file_.empty()) nonce_seen_ = file_holds(nonce_file_, nonce_);
  if (!nonce_map_.empty()) nonce_seen_ = pinned_map_holds(nonce_map_, nonce_bytes_, nonce_offset_);
}

void Loader::fill(proto::LoaderResponse& r) {
  pump_output();
  reap();
  r.ok = true;
  r.started = pid_ > 0;
  r.exited = exited_;
  r.status = status_;
  r.nonce_seen = nonce_seen_;
  r.output = output_.size() > 16 * 1024 ? output_.substr(output_.size() - 16 * 1024) : output_;
  r.programs = created();
}

proto::LoaderResponse Loader::start(const proto::LoaderStartRequest& req) {
  loopback_up();
  proto::LoaderResponse r;
  if (pid_ > 0) {
    r.error = "a loader is running already";
    return r;
  }
  if (req.argv.empty() || req.argv[0].empty() || req.argv[0][0] != '/') {
    r.error = "the loader's argv[0] must be an absolute path";
    return r;
  }
  before_programs_ = as_set(live_ids(bpf_prog_get_next_id));
  before_links_ = as_set(live_ids(bpf_link_get_next_id));
  ready_line_ = req.ready_line;
  nonce_ = req.nonce;
  nonce_file_ = req.nonce_file;
  nonce_map_ = req.nonce_map;
  nonce_bytes_ = from_hex(req.nonce_bytes).value_or("");
  nonce_offset_ = req.nonce_offset;
  if (!nonce_map_.empty() && nonce_bytes_.empty()) {
    r.error = "nonce_bytes must be hex digits";
    return r;
  }

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    r.error = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  std::vector<char*> argv, envp;
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : req.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string cwd = req.cwd.empty() ? "/" : req.cwd;
  const auto t0 = Clock::now();
  pid_t pid = ::fork();
  if (pid < 0) {
    r.error = std::string("fork: ") + std::strerror(errno);
    return r;
  }
  if (pid == 0) {
    // The child: its own process group (stop signals all of it), output into the pipe.
    ::setpgid(0, 0);
    ::dup2(write_end.get(), 1);
    ::dup2(write_end.get(), 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (!req.root.empty() && !enter_root(req.root)) ::_exit(126);
    if (::chdir(cwd.c_str()) != 0) {
      std::fprintf(stderr, "kgate-agent: chdir %s: %s\n", cwd.c_str(), std::strerror(errno));
      ::_exit(126);
    }
    ::execve(argv[0], argv.data(), envp.data());
    std::fprintf(stderr, "kgate-agent: exec %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  pid_ = pid;
  ::setpgid(pid, pid);
  write_end.reset();
  ::fcntl(read_end.get(), F_SETFL, ::fcntl(read_end.get(), F_GETFL) | O_NONBLOCK);
  out_ = std::move(read_end);

  const auto deadline = t0 + std::chrono::milliseconds(std::max(1, req.timeout_ms));
  for (;;) {
    fill(r);
    bool all = !req.programs.empty();
    for (const auto& want : req.programs) {
      const std::string name = want.name.substr(0, max_name);
      bool found = std::any_of(r.programs.begin(), r.programs.end(), [&](const proto::KernelProgram& p) {
        return p.name == name && p.type == want.type && (!want.attached || !p.links.empty());
      });
      all = all && found;
    }
    if (all || line_seen_) {
      r.ready = true;
      r.ready_ms = ms_since(t0);
      return r;
    }
    if (exited_ || Clock::now() >= deadline) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

proto::LoaderResponse Loader::stats() {
  proto::LoaderResponse r;
  if (pid_ <= 0) {
    r.error = "no loader was started";
    return r;
  }
  look_for_nonce();  // a file or a map: read after the triggers, not while the loader starts
  fill(r);
  return r;
}

proto::LoaderResponse Loader::stop(int grace_ms) {
  proto::LoaderResponse r;
  if (pid_ <= 0) {
    r.error = "no loader was started";
    return r;
  }
  fill(r);  // the programs as they were, before the stop
  if (!exited_) {
    ::kill(-pid_, SIGTERM);
    ::kill(pid_, SIGTERM);
    const auto until = Clock::now() + std::chrono::milliseconds(std::max(0, grace_ms));
    while (!reap() && Clock::now() < until) {
      pump_output();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!exited_) {
      r.killed = true;
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      int status = 0;
      if (::waitpid(pid_, &status, 0) == pid_) {
        exited_ = true;
        status_ = status;
      }
    }
  }
  ::kill(-pid_, SIGKILL);  // what it left in its group
  pump_output();
  look_for_nonce();
  r.exited = exited_;
  r.status = status_;
  r.nonce_seen = nonce_seen_;
  r.output = output_.size() > 16 * 1024 ? output_.substr(output_.size() - 16 * 1024) : output_;
  r.created_programs.assign(seen_programs_.begin(), seen_programs_.end());
  r.created_links.assign(seen_links_.begin(), seen_links_.end());
  StillAlive left = wait_until_freed(r.created_programs, r.created_links, std::chrono::seconds(5));
  r.left_programs = std::move(left.programs);
  r.left_links = std::move(left.links);
  return r;
}

}  // namespace kgate::agent

#include "agent/system.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

namespace kgate::agent {

// With read(2), not iostreams: the agent links no locale machinery (a smaller binary to unpack
// and exec in every guest).
std::string slurp(const char* path) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return {};
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

struct MountSpec {
  const char* source;
  const char* target;
  const char* type;
  bool required;
};

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

Result<nlohmann::json> mount_filesystems() {
  static constexpr MountSpec specs[] = {
      {"devtmpfs", "/dev", "devtmpfs", true},
      {"proc", "/proc", "proc", true},
      {"sysfs", "/sys", "sysfs", true},
      {"tracefs", "/sys/kernel/tracing", "tracefs", false},
      {"debugfs", "/sys/kernel/debug", "debugfs", false},
      {"bpffs", "/sys/fs/bpf", "bpf", false},
      {"securityfs", "/sys/kernel/security", "securityfs", false},
  };
  nlohmann::json out = nlohmann::json::object();
  for (const auto& m : specs) {
    ::mkdir(m.target, 0755);
    if (::mount(m.source, m.target, m.type, MS_NOSUID, nullptr) != 0 && errno != EBUSY) {
      int e = errno;
      if (m.required) return fail_errno(std::string("mount ") + m.type + " on " + m.target, e);
      out[m.type] = std::string("failed: ") + std::strerror(e);
    } else {
      out[m.type] = "ok";
    }
  }
  return out;
}

Result<nlohmann::json> load_modules() {
  nlohmann::json loaded = nlohmann::json::array();
  const std::string list = slurp("/etc/kgate/modules");
  for (std::size_t pos = 0, end; pos < list.size(); pos = end + 1) {
    end = list.find('\n', pos);
    if (end == std::string::npos) end = list.size();
    const std::string name = list.substr(pos, end - pos);
    if (name.empty()) continue;
    auto start = std::chrono::steady_clock::now();
    std::string path = "/lib/modules/" + name + ".ko";
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return fail_errno("open " + path, errno);
    if (::syscall(SYS_finit_module, fd.get(), "", 0) != 0 && errno != EEXIST) {
      return fail_errno("load module " + name, errno);
    }
    loaded.push_back({{"name", name}, {"ms", ms_since(start)}});
  }
  return loaded;
}

Result<UniqueFd> open_port(const std::string& name, int timeout_ms) {
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::milliseconds(timeout_ms);
  // The port's sysfs entry and its /dev node appear shortly after virtio_console
  // loads (measured 5-20 ms); there is no udev to tell us, so poll briefly.
  for (;;) {
    if (DIR* dir = ::opendir("/sys/class/virtio-ports")) {
      while (dirent* ent = ::readdir(dir)) {
        if (ent->d_name[0] == '.') continue;
        std::string base = std::string("/sys/class/virtio-ports/") + ent->d_name;
        if (trim(slurp((base + "/name").c_str())) != name) continue;
        std::string dev = std::string("/dev/") + ent->d_name;
        int fd = ::open(dev.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd >= 0) {
          ::closedir(dir);
          return UniqueFd(fd);
        }
      }
      ::closedir(dir);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(FailureClass::infra,
                  "no virtio-serial port named '" + name + "' after " + std::to_string(timeout_ms) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

double uptime_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

nlohmann::json describe_system() {
  struct utsname u {};
  ::uname(&u);
  nlohmann::json hello = {
      {"release", u.release},
      {"version", u.version},
      {"machine", u.machine},
      {"cmdline", trim(slurp("/proc/cmdline"))},
      {"lockdown", trim(slurp("/sys/kernel/security/lockdown"))},
      {"lsm", trim(slurp("/sys/kernel/security/lsm"))},
      {"btf", ::access("/sys/kernel/btf/vmlinux", R_OK) == 0},
      {"pid", ::getpid()},
  };
  hello["uptime_s"] = uptime_s();
  return hello;
}

std::string kernel_log(size_t max_bytes) {
  int size = ::klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, nullptr, 0);
  if (size <= 0) return {};
  std::string buf(static_cast<size_t>(size), '\0');
  int n = ::klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf.data(), size);
  if (n <= 0) return {};
  buf.resize(static_cast<size_t>(n));
  if (buf.size() > max_bytes) buf.erase(0, buf.size() - max_bytes);
  return buf;
}

void power_off() {
  ::sync();
  ::reboot(RB_POWER_OFF);
  // Only reached if the kernel refused; exiting PID 1 panics, which the host reports.
  std::_Exit(1);
}

}  // namespace kgate::agent

#include "files.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <system_error>

#include "unique_fd.hpp"

namespace kgate {

Result<std::optional<std::string>> read_file_if_exists(const fs::path& path) {
  auto bytes = read_file(path);
  if (!bytes && bytes.error().err() == ENOENT) return std::nullopt;
  if (!bytes) return std::unexpected(std::move(bytes).error());
  return std::move(*bytes);
}

Result<std::string> read_file(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail_errno("open " + path.string(), errno);
  std::string out;
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("read " + path.string(), errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool path_exists(const fs::path& path) noexcept {
  std::error_code ec;
  return fs::exists(path, ec);
}

fs::path absolute_path(const fs::path& path) noexcept {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec);
  return ec ? path : p;
}

Status make_dirs(const fs::path& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return fail_errno("create directory " + path.string(), ec.value());
  return {};
}

Status install_dir(const fs::path& staged, const fs::path& dest, bool replace) {
  if (::rename(staged.c_str(), dest.c_str()) == 0) return {};
  if (errno != EEXIST && errno != ENOTEMPTY) return fail_errno("rename into " + dest.string(), errno);
  if (!replace) return {};
  if (::renameat2(AT_FDCWD, staged.c_str(), AT_FDCWD, dest.c_str(), RENAME_EXCHANGE) == 0) return {};
  if (errno != EINVAL) return fail_errno("swap " + staged.string() + " into " + dest.string(), errno);
  // A file system without RENAME_EXCHANGE: the old tree is moved aside first, which leaves a moment
  // with neither.
  fs::path aside = staged;
  aside += ".old";
  if (::rename(dest.c_str(), aside.c_str()) != 0) return fail_errno("rename " + dest.string(), errno);
  if (::rename(staged.c_str(), dest.c_str()) != 0) {
    const int e = errno;
    ::rename(aside.c_str(), dest.c_str());
    return fail_errno("rename into " + dest.string(), e);
  }
  ::rename(aside.c_str(), staged.c_str());
  return {};
}

Status write_file_atomic(const fs::path& path, std::string_view data) {
  if (path.has_parent_path()) {
    if (auto s = make_dirs(path.parent_path()); !s) return s;
  }
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return fail_errno("create " + tmp.string(), errno);
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        int e = errno;
        ::unlink(tmp.c_str());
        return fail_errno("write " + tmp.string(), e);
      }
      done += static_cast<size_t>(n);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return fail_errno("rename into " + path.string(), e);
  }
  return {};
}

namespace {
std::string to_hex(const unsigned char* md, unsigned len) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex(len * 2, '0');
  for (unsigned i = 0; i < len; ++i) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  return hex;
}
}  // namespace

std::string sha256_hex(std::span<const std::uint8_t> bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return to_hex(md, len);
}

std::string sha256_hex(std::string_view bytes) {
  return sha256_hex(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

Result<std::string> sha256_file(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail_errno("open " + path.string(), errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno("stat " + path.string(), errno);
  if (st.st_size == 0) return sha256_hex(std::string_view{});
  void* map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (map == MAP_FAILED) return fail_errno("mmap " + path.string(), errno);
  std::string hex =
      sha256_hex(std::span(static_cast<const std::uint8_t*>(map), static_cast<size_t>(st.st_size)));
  ::munmap(map, static_cast<size_t>(st.st_size));
  return hex;
}

Result<TempDir> TempDir::create(std::string_view prefix, const fs::path& parent) {
  const char* base = std::getenv("TMPDIR");
  std::string dir = !parent.empty() ? parent.string() : std::string(base && *base ? base : "/tmp");
  std::string tmpl = dir + "/" + std::string(prefix) + ".XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return fail_errno("mkdtemp " + tmpl, errno);
  return TempDir(fs::path(tmpl));
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) {
  other.path_.clear();
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

fs::path TempDir::keep() {
  fs::path p = path_;
  path_.clear();
  return p;
}

}  // namespace kgate

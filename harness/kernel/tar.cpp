#include "kernel/tar.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <memory>

namespace kgate::kernel {

namespace fs = std::filesystem;

namespace {

// A kernel image holds a few thousand files; a layer that lists more than this is refused before
// its listing fills the memory.
constexpr std::size_t kMaxMembers = 1'000'000;
constexpr std::size_t kMaxName = 4096;  // PATH_MAX

using Reader = std::unique_ptr<archive, decltype(&archive_read_free)>;
using Writer = std::unique_ptr<archive, decltype(&archive_write_free)>;

std::string error_of(archive* a) {
  const char* s = archive_error_string(a);
  return s ? s : "unknown libarchive error";
}

// A reader of plain tar (ustar, pax, GNU; no compression: layers are decompressed and their digests
// checked before they get here), or of an empty file.
Reader new_reader() {
  Reader a(archive_read_new(), &archive_read_free);
  archive_read_support_format_tar(a.get());
  archive_read_support_format_empty(a.get());
  return a;
}

TarMember member_of(archive_entry* e) {
  TarMember m;
  const char* name = archive_entry_pathname(e);
  m.name = name ? name : "";
  if (const char* target = archive_entry_hardlink(e)) {
    m.type = 'h';
    m.link = target;
    return m;
  }
  switch (archive_entry_filetype(e)) {
    case AE_IFREG: m.type = '-'; break;
    case AE_IFDIR: m.type = 'd'; break;
    case AE_IFLNK: {
      m.type = 'l';
      const char* target = archive_entry_symlink(e);
      m.link = target ? target : "";
      break;
    }
    case AE_IFCHR: m.type = 'c'; break;
    case AE_IFBLK: m.type = 'b'; break;
    case AE_IFIFO: m.type = 'p'; break;
    case AE_IFSOCK: m.type = 's'; break;
    default: m.type = '?';
  }
  return m;
}

// Reads the next header: true with `e` set, false at the end, or an error naming `where`.
Result<bool> next_header(archive* a, archive_entry*& e, const std::string& where, const Deadline& deadline) {
  if (deadline.expired())
    return fail(FailureClass::timeout, where + ": reading the tar took longer than its deadline");
  int r = archive_read_next_header(a, &e);
  if (r == ARCHIVE_EOF) return false;
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return fail(FailureClass::usage, where + ": " + error_of(a));
  if (!archive_entry_pathname(e))
    return fail(FailureClass::usage, where + ": a member whose name libarchive cannot read");
  return true;
}

Result<std::vector<TarMember>> list_members(archive* a, const std::string& where, const Deadline& deadline) {
  std::vector<TarMember> out;
  archive_entry* e = nullptr;
  for (;;) {
    auto more = next_header(a, e, where, deadline);
    if (!more) return std::unexpected(more.error());
    if (!*more) break;
    if (out.size() == kMaxMembers)
      return fail(FailureClass::usage, where + ": more than " + std::to_string(kMaxMembers) + " members");
    TarMember m = member_of(e);
    if (m.name.size() > kMaxName || m.link.size() > kMaxName)
      return fail(FailureClass::usage,
                  where + ": a member name or link longer than " + std::to_string(kMaxName) + " bytes");
    out.push_back(std::move(m));
  }
  return out;
}

bool has_dotdot(std::string_view path) {
  std::size_t pos = 0;
  while (pos <= path.size()) {
    std::size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    if (path.substr(pos, end - pos) == "..") return true;
    pos = end + 1;
  }
  return false;
}

bool is_whiteout(std::string_view name) {
  while (name.ends_with('/')) name.remove_suffix(1);
  auto slash = name.rfind('/');
  return (slash == std::string_view::npos ? name : name.substr(slash + 1)).starts_with(".wh.");
}

Status copy_data(archive* in, archive* out, const std::string& what) {
  for (;;) {
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(in, &buf, &size, &offset);
    if (r == ARCHIVE_EOF) return {};
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return fail(FailureClass::usage, what + ": " + error_of(in));
    if (archive_write_data_block(out, buf, size, offset) < ARCHIVE_WARN)
      return fail(FailureClass::usage, what + ": " + error_of(out));
  }
}

}  // namespace

bool link_leaves_tree(std::string_view target) {
  return target.empty() || target.front() == '/' || has_dotdot(target);
}

Result<std::vector<TarMember>> list_tar(const fs::path& tar, const std::string& where,
                                        const Deadline& deadline) {
  Reader a = new_reader();
  if (archive_read_open_filename(a.get(), tar.c_str(), 64 * 1024) != ARCHIVE_OK)
    return fail(FailureClass::usage, where + ": " + error_of(a.get()));
  return list_members(a.get(), where, deadline);
}

Result<std::vector<TarMember>> list_tar_bytes(std::string_view tar, const std::string& where) {
  Reader a = new_reader();
  if (archive_read_open_memory(a.get(), tar.data(), tar.size()) != ARCHIVE_OK)
    return fail(FailureClass::usage, where + ": " + error_of(a.get()));
  return list_members(a.get(), where, Deadline(std::chrono::hours(1)));
}

std::string unsafe_tar_member(const TarMember& m) {
  auto unsafe_path = [](std::string_view p) -> std::string {
    if (p.empty()) return "an empty name";
    if (p.front() == '/') return "an absolute path";
    if (has_dotdot(p)) return "a path with a '..' component";
    return {};
  };
  switch (m.type) {
    case '-':
    case 'd':
    case 'l': return unsafe_path(m.name);
    case 'h': {
      if (auto why = unsafe_path(m.name); !why.empty()) return why;
      if (auto why = unsafe_path(m.link); !why.empty()) return "a hard link to " + why;
      return {};
    }
    case 'c': return "a character device";
    case 'b': return "a block device";
    case 'p': return "a FIFO";
    case 's': return "a socket";
    default: return "of a tar type kernel images do not need";
  }
}

// Names are checked here again (not only in the listing before), and the members written under
// root by full path, with libarchive refusing ".." itself (ARCHIVE_EXTRACT_SECURE_NODOTDOT); no
// symbolic link that could leave root is created, so following the links root holds stays in it.
// ARCHIVE_EXTRACT_SECURE_SYMLINKS is not used: it would refuse a layer that writes under a link
// inside the tree (lib -> usr/lib), which is safe once no link leaves it.
Result<std::vector<std::string>> extract_tar(const fs::path& tar, const fs::path& root,
                                             const std::string& where, const Deadline& deadline) {
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(root, ec);
  if (ec) return fail_errno("resolve " + root.string(), ec.value());
  Reader in = new_reader();
  if (archive_read_open_filename(in.get(), tar.c_str(), 64 * 1024) != ARCHIVE_OK)
    return fail(FailureClass::usage, where + ": " + error_of(in.get()));
  Writer out(archive_write_disk_new(), &archive_write_free);
  archive_write_disk_set_options(
      out.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_UNLINK | ARCHIVE_EXTRACT_SECURE_NODOTDOT);

  std::vector<std::string> dropped;
  archive_entry* e = nullptr;
  for (;;) {
    auto more = next_header(in.get(), e, where, deadline);
    if (!more) return std::unexpected(more.error());
    if (!*more) break;
    const TarMember m = member_of(e);
    if (std::string why = unsafe_tar_member(m); !why.empty())
      return fail(FailureClass::usage, where + ": member \"" + m.name + "\" is " + why + "; refused");
    if (is_whiteout(m.name)) continue;
    if (m.type == 'l' && link_leaves_tree(m.link)) {
      std::string name = fs::path(m.name).lexically_normal().generic_string();
      while (name.ends_with('/')) name.pop_back();
      dropped.push_back(std::move(name));
      continue;
    }
    const fs::path at = base / m.name;
    if (m.type != 'd' && fs::is_directory(fs::symlink_status(at, ec))) {
      // A lower layer's directory that this layer replaces with a file or a link goes, whole.
      fs::remove_all(at, ec);
      if (ec) return fail_errno(where + ": replace the directory " + m.name, ec.value());
    }
    archive_entry_set_pathname(e, at.c_str());
    if (m.type == 'h') archive_entry_set_hardlink(e, (base / m.link).c_str());
    const std::string what = where + ": unpack \"" + m.name + "\"";
    if (archive_write_header(out.get(), e) < ARCHIVE_WARN)
      return fail(FailureClass::usage, what + ": " + error_of(out.get()));
    if (archive_entry_size(e) > 0) {
      if (auto s = copy_data(in.get(), out.get(), what); !s) return std::unexpected(s.error());
    }
    if (archive_write_finish_entry(out.get()) < ARCHIVE_WARN)
      return fail(FailureClass::usage, what + ": " + error_of(out.get()));
  }
  if (archive_write_close(out.get()) != ARCHIVE_OK)
    return fail(FailureClass::usage, where + ": unpack: " + error_of(out.get()));
  return dropped;
}

}  // namespace kgate::kernel

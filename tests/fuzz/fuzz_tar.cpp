// Fuzz target for the OCI layer path: libarchive's reading of a tar kgate was given, the check that
// refuses members that would unpack outside the tree, and the unpacking itself. A layer is as
// untrusted as the image. Seeds are hostile archives made here: ".." and absolute names, symbolic
// links out of the tree and members written under them, hard links out of the tree, device nodes
// and FIFOs, GNU long names and pax headers, whiteouts, truncation.
//
// Properties, for every input: reading fails only as a usage error; the check refuses exactly what
// an independent rule refuses; and when every member is accepted, unpacking into a fresh directory
// inside a sentinel directory writes nothing beside it and leaves no symbolic link that leaves it.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "driver.hpp"
#include "kernel/tar.hpp"

namespace fs = std::filesystem;
using kgate::kernel::TarMember;

namespace {

bool unsafe_path(std::string_view p) {
  if (p.empty() || p.front() == '/') return true;
  for (std::size_t pos = 0; pos <= p.size();) {
    std::size_t end = p.find('/', pos);
    if (end == std::string_view::npos) end = p.size();
    if (p.substr(pos, end - pos) == "..") return true;
    pos = end + 1;
  }
  return false;
}

bool safe(const TarMember& m) {
  switch (m.type) {
    case '-':
    case 'd':
    case 'l': return !unsafe_path(m.name);
    case 'h': return !unsafe_path(m.name) && !unsafe_path(m.link);
    default: return false;
  }
}

// The scratch directories, made once and removed at exit: sentinel/root is unpacked into; the
// sentinel must hold nothing else afterwards.
struct Scratch {
  fs::path dir;
  Scratch() {
    std::string tmpl = (fs::temp_directory_path() / "kgate-fuzz-tar.XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) std::abort();
    dir = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

const fs::path& sentinel() {
  static const Scratch scratch;
  return scratch.dir;
}

void unpack_and_check(std::string_view bytes) {
  const fs::path root = sentinel() / "root";
  const fs::path tar = sentinel() / "layer.tar";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directory(root);
  {
    FILE* f = std::fopen(tar.c_str(), "wb");
    KGATE_FUZZ_CHECK(f != nullptr);
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  auto dropped = kgate::kernel::extract_tar(tar, root, "layer", kgate::Deadline(std::chrono::seconds(60)));
  if (!dropped) KGATE_FUZZ_CHECK(dropped.error().cls() == kgate::FailureClass::usage);
  fs::remove(tar, ec);
  // Nothing beside root.
  for (const auto& e : fs::directory_iterator(sentinel())) KGATE_FUZZ_CHECK(e.path() == root);
  // No link in root leaves it.
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code lec;
    if (it->is_symlink(lec))
      KGATE_FUZZ_CHECK(!kgate::kernel::link_leaves_tree(fs::read_symlink(it->path(), lec).native()));
  }
  fs::remove_all(root, ec);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto members = kgate::kernel::list_tar_bytes(bytes, "layer");
  if (!members) {
    KGATE_FUZZ_CHECK(members.error().cls() == kgate::FailureClass::usage);
    (void)members.error().describe();
    return 0;
  }
  bool all_safe = true;
  for (const TarMember& m : *members) {
    const bool refused = !kgate::kernel::unsafe_tar_member(m).empty();
    KGATE_FUZZ_CHECK(refused == !safe(m));
    KGATE_FUZZ_CHECK(m.type == 'l' || m.type == 'h' || m.link.empty());
    all_safe = all_safe && !refused;
  }
  if (all_safe && members->size() <= 64) unpack_and_check(bytes);
  return 0;
}

namespace {

// One ustar header block (and the member's data, padded to 512 bytes).
struct Member {
  char type =
      '0';  // '0' file, '5' dir, '2' symlink, '1' hard link, '3'/'4' devices, '6' FIFO, 'L' GNU long name
  std::string name;
  std::string link;
  std::string data;
};

void octal(char* field, std::size_t width, std::uint64_t v) {
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1), static_cast<unsigned long long>(v));
}

std::string block(const Member& m) {
  char h[512] = {};
  std::memcpy(h, m.name.data(), std::min<std::size_t>(m.name.size(), 100));
  octal(h + 100, 8, m.type == '5' ? 0755 : 0644);
  octal(h + 108, 8, 0);
  octal(h + 116, 8, 0);
  octal(h + 124, 12, m.data.size());
  octal(h + 136, 12, 0);
  h[156] = m.type;
  std::memcpy(h + 157, m.link.data(), std::min<std::size_t>(m.link.size(), 100));
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h + 148, 8, "%06o", sum);
  std::string out(h, sizeof h);
  out += m.data;
  out.append((512 - m.data.size() % 512) % 512, '\0');
  return out;
}

std::string archive(const std::vector<Member>& members) {
  std::string out;
  for (const auto& m : members) out += block(m);
  return out + std::string(1024, '\0');
}

// One pax extended header record: "<length> <key>=<value>\n", the length counting itself.
std::string pax(const std::string& key, const std::string& value) {
  const std::string body = " " + key + "=" + value + "\n";
  std::size_t n = body.size() + 1;
  while (std::to_string(n).size() + body.size() != n) ++n;
  return std::to_string(n) + body;
}

// A name longer than ustar's 100 bytes, as GNU tar writes it: an 'L' member holding it first.
std::vector<Member> long_named(const std::string& name, char type, const std::string& data) {
  return {{'L', "././@LongLink", "", name + '\0'}, {type, name.substr(0, 99), "", data}};
}

}  // namespace

std::vector<std::string> kgate_fuzz_seeds() {
  std::vector<std::string> seeds;
  const std::vector<Member> kernel = {
      {'5', "boot/", "", ""},
      {'0', "boot/vmlinuz-6.1.0-18-amd64", "", "kernel"},
      {'2', "boot/vmlinuz", "vmlinuz-6.1.0-18-amd64", ""},
      {'5', "lib/modules/6.1.0-18-amd64/", "", ""},
      {'2', "lib/modules/6.1.0-18-amd64/build", "/usr/src/linux-headers-6.1.0-18-amd64", ""},
      {'2', "lib/modules/6.1.0-18-amd64/source", "../../../usr/src/linux", ""},
      {'0', "lib/modules/6.1.0-18-amd64/kernel/virtio_console.ko", "", "module"},
      {'1', "lib/modules/6.1.0-18-amd64/kernel/vc.ko", "lib/modules/6.1.0-18-amd64/kernel/virtio_console.ko",
       ""},
      {'0', "usr/.wh..wh..opq", "", ""},
      {'0', "etc/.wh.motd", "", ""},
  };
  seeds.push_back(archive(kernel));
  seeds.push_back(archive({{'0', "../evil", "", "x"}}));
  seeds.push_back(archive({{'0', "/tmp/evil", "", "x"}}));
  seeds.push_back(archive({{'0', "a/../../evil", "", "x"}}));
  // A link out of the tree, then a member written under it, in one layer.
  seeds.push_back(archive({{'2', "escape", "/tmp", ""}, {'0', "escape/pwned", "", "x"}}));
  seeds.push_back(archive({{'2', "up", "..", ""}, {'0', "up/pwned", "", "x"}}));
  seeds.push_back(archive({{'2', "in", "sub", ""}, {'5', "sub/", "", ""}, {'0', "in/file", "", "x"}}));
  // Hard links out of the tree, and to a link that leaves it.
  seeds.push_back(archive({{'1', "h", "/etc/passwd", ""}}));
  seeds.push_back(archive({{'1', "h", "../outside", ""}}));
  seeds.push_back(archive({{'2', "s", "/etc/passwd", ""}, {'1', "h", "s", ""}}));
  // Devices and FIFOs.
  seeds.push_back(archive({{'3', "dev/null", "", ""}}));
  seeds.push_back(archive({{'4', "dev/sda", "", ""}}));
  seeds.push_back(archive({{'6', "fifo", "", ""}}));
  // Long names and a pax header that renames the next member.
  seeds.push_back(archive(long_named(std::string(300, 'a') + "/file", '0', "x")));
  seeds.push_back(archive(long_named(std::string(200, 'b') + "/../../evil", '0', "x")));
  seeds.push_back(
      archive({{'x', "pax", "", pax("path", "../../../../pax-evil")}, {'0', "innocent", "", "x"}}));
  seeds.push_back(archive({{'x', "pax", "", pax("linkpath", "/etc/shadow")}, {'2', "l", "ok", ""}}));
  // Truncated archives, and no archive at all.
  std::string whole = archive(kernel);
  seeds.push_back(whole.substr(0, 700));
  seeds.push_back(whole.substr(0, 512));
  seeds.push_back(std::string(1024, '\0'));
  seeds.push_back("not a tar at all");
  return seeds;
}

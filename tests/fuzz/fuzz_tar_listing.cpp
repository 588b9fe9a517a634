// Fuzz target for the reader of `tar --list --verbose --numeric-owner --quoting-style=c`, which lists
// the layers of an OCI image kgate was given, and for the check that then refuses members that would
// unpack outside the tree. The names come from the image, so the listing is as untrusted as the image.
// Seeds are listings as GNU tar writes them: every member type, C-quoted names with each escape.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "driver.hpp"
#include "kernel/oci.hpp"

using kgate::kernel::TarMember;

namespace {

bool is_link(char type) {
  return type == 'l' || type == 'h';
}

// A name the check must refuse, worked out here on its own.
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

// GNU tar's c quoting style, with every byte outside printable ASCII as three octal digits (so that a
// digit after it is not read as part of it).
std::string c_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f) {
      out += '\\';
      out += static_cast<char>('0' + (u >> 6));
      out += static_cast<char>('0' + ((u >> 3) & 7));
      out += static_cast<char>('0' + (u & 7));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string listing_line(const TarMember& m) {
  std::string line = std::string(1, m.type) + "rw-r--r-- 0/0 0 2024-01-01 00:00 " + c_quote(m.name);
  if (m.type == 'l') line += " -> " + c_quote(m.link);
  if (m.type == 'h') line += " link to " + c_quote(m.link);
  return line + "\n";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kgate::kernel;
  std::string_view listing(reinterpret_cast<const char*>(data), size);
  auto members = parse_tar_listing(listing);
  if (!members) {
    KGATE_FUZZ_CHECK(members.error().cls() == kgate::FailureClass::usage);
    (void)members.error().describe();
    return 0;
  }
  // One member a non-empty line, its type the line's first byte.
  std::vector<std::string_view> lines;
  for (std::size_t pos = 0; pos < listing.size();) {
    std::size_t end = listing.find('\n', pos);
    if (end == std::string_view::npos) end = listing.size();
    if (end > pos) lines.push_back(listing.substr(pos, end - pos));
    pos = end + 1;
  }
  KGATE_FUZZ_CHECK(members->size() == lines.size());
  bool quotable = true;  // a listing line that starts with a quote reads it as the type
  for (std::size_t i = 0; i < members->size(); ++i) {
    const TarMember& m = (*members)[i];
    KGATE_FUZZ_CHECK(m.type == lines[i].front());
    KGATE_FUZZ_CHECK(is_link(m.type) || m.link.empty());
    std::string why = unsafe_tar_member(m);
    KGATE_FUZZ_CHECK(why.empty() == safe(m));
    quotable = quotable && m.type != '"';
  }
  // Written again as tar would write them, the members read back the same.
  if (quotable) {
    std::string again;
    for (const TarMember& m : *members) again += listing_line(m);
    auto reread = parse_tar_listing(again);
    KGATE_FUZZ_CHECK(reread.has_value() && reread->size() == members->size());
    for (std::size_t i = 0; i < members->size(); ++i) {
      const TarMember &a = (*members)[i], &b = (*reread)[i];
      KGATE_FUZZ_CHECK(a.type == b.type && a.name == b.name && a.link == b.link);
    }
  }
  return 0;
}

namespace {

// What GNU tar 1.34 lists for a kernel image layer, size and date columns as it aligns them.
constexpr std::string_view kernel_layer =
    R"(drwxr-xr-x 0/0               0 2024-03-01 12:00 "boot/"
-rw-r--r-- 0/0         7999008 2024-03-01 12:00 "boot/vmlinuz-6.1.0-18-amd64"
-rw-r--r-- 0/0          260133 2024-03-01 12:00 "boot/config-6.1.0-18-amd64"
lrwxrwxrwx 0/0               0 2024-03-01 12:00 "boot/vmlinuz" -> "vmlinuz-6.1.0-18-amd64"
drwxr-xr-x 0/0               0 2024-03-01 12:00 "lib/modules/6.1.0-18-amd64/"
lrwxrwxrwx 0/0               0 2024-03-01 12:00 "lib/modules/6.1.0-18-amd64/build" -> "/usr/src/linux-headers-6.1.0-18-amd64"
lrwxrwxrwx 0/0               0 2024-03-01 12:00 "lib/modules/6.1.0-18-amd64/source" -> "../../../usr/src/linux"
-rw-r--r-- 0/0           43520 2024-03-01 12:00 "lib/modules/6.1.0-18-amd64/kernel/drivers/char/virtio_console.ko"
hrw-r--r-- 0/0               0 2024-03-01 12:00 "lib/modules/6.1.0-18-amd64/kernel/vc.ko" link to "lib/modules/6.1.0-18-amd64/kernel/drivers/char/virtio_console.ko"
-rw-r--r-- 1000/1000         0 2024-03-01 12:00 "usr/.wh..wh..opq"
-rw-r--r-- 1000/1000         0 2024-03-01 12:00 "etc/.wh.motd"
)";

// Names that need quoting: every named escape, octal bytes (UTF-8, a NUL), "?\?" as tar writes it to
// avoid a trigraph, and a name made of two quoted strings back to back.
constexpr std::string_view quoted_names =
    R"(-rw-r--r-- 0/0 12 2024-03-01 12:00 "lib/firmware/caf\303\251 \"quoted\" back\\slash.bin"
-rw-r--r-- 0/0 12 2024-03-01 12:00 "tab\there new\nline cr\r bell\a bs\b ff\f vt\v"
-rw-r--r-- 0/0 12 2024-03-01 12:00 "what?\?(x) it\'s \0 \1 \12 \177 \377"
-rw-r--r-- 0/0 12 2024-03-01 12:00 "two ""parts"
lrwxrwxrwx 0/0 0 2024-03-01 12:00 "odd -> name" -> "target \"with\" -> arrow"
hrw-r--r-- 0/0 0 2024-03-01 12:00 "a link to b" link to "b link to c"
)";

// Members the check refuses: paths that leave the tree, devices, FIFOs, sockets, other types.
constexpr std::string_view refused =
    R"(-rw-r--r-- 0/0 12 2024-03-01 12:00 "/etc/passwd"
drwxr-xr-x 0/0 0 2024-03-01 12:00 "../outside/"
-rw-r--r-- 0/0 12 2024-03-01 12:00 "boot/../../x"
-rw-r--r-- 0/0 12 2024-03-01 12:00 ""
hrw-r--r-- 0/0 0 2024-03-01 12:00 "etc/shadow-copy" link to "../../etc/shadow"
hrw-r--r-- 0/0 0 2024-03-01 12:00 "etc/abs" link to "/etc/shadow"
crw-rw-rw- 0/0 1,3 2024-03-01 12:00 "dev/null"
brw-rw---- 0/6 8,0 2024-03-01 12:00 "dev/sda"
prw-r--r-- 0/0 0 2024-03-01 12:00 "run/fifo"
srwxr-xr-x 0/0 0 2024-03-01 12:00 "run/sock"
Crw-r--r-- 0/0 0 2024-03-01 12:00 "contiguous"
)";

// Lines the reader refuses: tar's volume header, unterminated or malformed quoting, links without
// a target or with text after it, octal beyond a byte.
constexpr std::string_view near_misses[] = {
    "V--------- 0/0 0 2024-03-01 12:00 \"label\"--Volume Header--\n",
    "-rw-r--r-- 0/0 12 2024-03-01 12:00 boot/vmlinuz\n",
    "-rw-r--r-- 0/0 12 2024-03-01 12:00 \"boot/vmlinuz\n",
    "-rw-r--r-- 0/0 12 2024-03-01 12:00 \"boot\\\"\n",
    "-rw-r--r-- 0/0 12 2024-03-01 12:00 \"bad \\x41 escape\"\n",
    "-rw-r--r-- 0/0 12 2024-03-01 12:00 \"big \\777 octal\"\n",
    "lrwxrwxrwx 0/0 0 2024-03-01 12:00 \"dangling\"\n",
    "lrwxrwxrwx 0/0 0 2024-03-01 12:00 \"l\" -> \"t\" trailing\n",
    "hrw-r--r-- 0/0 0 2024-03-01 12:00 \"h\" link to \"t\n",
    "-rw-r--r-- 0/0 12 2024-03-01 12:00 \"name\" -> \"not a link\"\n",
    "\n\n\r\n",
    "\"\"\n",
};

}  // namespace

std::vector<std::string> kgate_fuzz_seeds() {
  std::vector<std::string> seeds = {std::string(kernel_layer), std::string(quoted_names),
                                    std::string(refused)};
  // The three together, CR LF line ends, no final newline.
  seeds.push_back(std::string(kernel_layer) + std::string(quoted_names) + std::string(refused));
  std::string crlf;
  for (char c : kernel_layer) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  seeds.push_back(crlf);
  seeds.emplace_back(kernel_layer.substr(0, kernel_layer.size() - 1));
  for (std::string_view s : near_misses) seeds.emplace_back(s);
  return seeds;
}

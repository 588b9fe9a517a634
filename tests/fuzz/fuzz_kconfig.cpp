// Fuzz target for the kernel configuration readers: parse_kconfig, which reads a .config given with a
// kernel or found in its package or image, and extract_ikconfig, which digs the gzip-compressed copy
// a kernel built with CONFIG_IKCONFIG=y carries out of the image. Seeds are slices of Debian's 6.1
// configuration (tests/data/kconfig, read from $KGATE_SOURCE_ROOT, which meson sets), hand-written
// corners of the format, and images holding "IKCFG_ST" + gzip + "IKCFG_ED" as kernel/config_data.S
// lays it out, plain and compressed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/compress.hpp"
#include "core/files.hpp"
#include "driver.hpp"
#include "kernel/kconfig.hpp"
#include "support/synthetic.hpp"

using namespace kgate::kernel;
using namespace std::literals;

namespace {

bool valid_name(std::string_view s) {
  if (!s.starts_with("CONFIG_") || s.size() == 7) return false;
  for (char c : s.substr(7))
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  return true;
}

// A quoted value's content: the quotes dropped, each backslash taken as quoting the byte after it.
std::string unquoted(std::string_view v) {
  std::string out;
  for (std::size_t i = 1; i + 1 < v.size(); ++i) out += v[i] == '\\' ? v[++i] : v[i];
  return out;
}

// The configuration as a .config: reading it back must give the same values.
std::string write_config(const KernelConfig& config) {
  std::string out = "#\n# Automatically generated file; DO NOT EDIT.\n#\n";
  for (const auto& [name, value] : config.values)
    out += value == "n" ? "# " + name + " is not set\n" : name + "=" + value + "\n";
  return out;
}

void check_config(const KernelConfig& config) {
  KGATE_FUZZ_CHECK(!config.values.empty());
  for (const auto& [name, value] : config.values) {
    KGATE_FUZZ_CHECK(valid_name(name) && !value.empty());
    Tristate t = config.get(name);
    KGATE_FUZZ_CHECK(t == (value == "n" ? Tristate::no : value == "m" ? Tristate::module : Tristate::yes));
    // The short name finds it too, unless it is itself CONFIG_...: get() takes that as the full name.
    if (std::string_view short_name = std::string_view(name).substr(7); !short_name.starts_with("CONFIG_"))
      KGATE_FUZZ_CHECK(config.get(short_name) == t);
    if (value.starts_with('"')) {
      KGATE_FUZZ_CHECK(value.size() >= 2 && value.back() == '"');
      KGATE_FUZZ_CHECK(config.value(name) == unquoted(value));
    } else {
      KGATE_FUZZ_CHECK(config.value(name) == value);
    }
  }
  auto again = parse_kconfig(write_config(config), "fuzz/written.config");
  KGATE_FUZZ_CHECK(again.has_value() && again->values == config.values);

  PreflightNeeds plain;
  PreflightNeeds asking;
  asking.btf_file_given = true;
  asking.lockdown = true;
  asking.tracepoint_configs = {"CONFIG_TRACEPOINTS", "KPROBE_EVENTS"};
  asking.virtio_console_module_available = true;
  asking.machine = "microvm";
  for (const PreflightNeeds& needs : {plain, asking}) {
    std::vector<PreflightProblem> warnings;
    auto problems = preflight(config, needs, &warnings);
    for (const auto* list : {&problems, &warnings})
      for (const PreflightProblem& p : *list) KGATE_FUZZ_CHECK(valid_name(p.option) && !p.why.empty());
    KGATE_FUZZ_CHECK(describe_problems("fuzz", problems).empty() == problems.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (auto config = parse_kconfig(input, "fuzz/.config")) {
    check_config(*config);
  } else {
    KGATE_FUZZ_CHECK(config.error().cls() == kgate::FailureClass::usage);
    (void)config.error().describe();
  }

  auto embedded = extract_ikconfig(input);
  if (!embedded) {
    KGATE_FUZZ_CHECK(embedded.error().cls() == kgate::FailureClass::usage);
    (void)embedded.error().describe();
    return 0;
  }
  // Neither a bzImage nor compressed, the image is searched as it is: no start marker, no config.
  bool bzimage = size >= 0x206 && input.substr(0x202, 4) == "HdrS";
  if (!bzimage && kgate::detect_compression(input) == kgate::Compression::none &&
      input.find("IKCFG_ST\x1f\x8b\x08"sv) == std::string_view::npos)
    KGATE_FUZZ_CHECK(!embedded->has_value());
  if (embedded->has_value()) {
    KGATE_FUZZ_CHECK((*embedded)->size() <= std::size_t{64} << 20);
    if (auto config = parse_kconfig(**embedded, "fuzz/IKCONFIG")) check_config(*config);
  }
  return 0;
}

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "fuzz_kconfig: %s\n", why.c_str());
  std::exit(1);
}

// Lines [first, first + count) of Debian's 6.1 configuration (1-based, as an editor shows them).
std::string debian_slice(std::size_t first, std::size_t count) {
  const char* root = std::getenv("KGATE_SOURCE_ROOT");
  if (root == nullptr || *root == '\0')
    die("KGATE_SOURCE_ROOT is not set: run it through `meson test`, or set it to the source tree");
  auto text = kgate::read_file(kgate::fs::path(root) / "tests/data/kconfig/debian-6.1-amd64.config");
  if (!text) die(text.error().describe());
  std::string out;
  std::size_t line = 1, pos = 0;
  for (; pos < text->size() && line < first + count; ++line) {
    std::size_t end = std::min(text->find('\n', pos), text->size() - 1) + 1;
    if (line >= first) out.append(*text, pos, end - pos);
    pos = end;
  }
  if (line < first + count)
    die("debian-6.1-amd64.config has fewer than " + std::to_string(first + count - 1) + " lines");
  return out;
}

// What kernel/config_data.S lays out, with code-like bytes on both sides.
std::string embedded(std::string_view config) {
  return std::string(256, '\x90') + kgate::testing::ikconfig_blob(config) + std::string(256, '\xcc');
}

// What the reader must take as it is, or refuse with a line number.
constexpr std::string_view corners =
    "# comment\r\n"
    "\n"
    "CONFIG_Y=y\r\n"
    "CONFIG_M=m   \t\n"
    "CONFIG_N=n\n"
    "# CONFIG_NOT is not set\n"
    "#CONFIG_ALSO_COMMENT is not set\n"
    "# CONFIG_ is not set\n"
    "CONFIG_HEX=0xdeadBEEF\n"
    "CONFIG_BARE_HEX=01b6\n"
    "CONFIG_NEG=-1\n"
    "CONFIG_EMPTY=\"\"\n"
    "CONFIG_LSM=\"landlock,lockdown,yama\"\n"
    "CONFIG_ESC=\"a \\\"quoted\\\" \\\\ back\\slash\ttab\"\n"
    "CONFIG_Y=m\n"
    "CONFIG_lower_1=y";

constexpr std::string_view near_misses[] = {
    "CONFIG_A=y\nCONFIG_B=yes\n",
    "CONFIG_A=\"unterminated\n",
    "CONFIG_A=\"after\" the quote\n",
    "CONFIG_A=\"ctl \x01 byte\"\n",
    "CONFIG_A=\"ends \\\n",
    "CONFIG_=y\n",
    "CONFIG_A-B=y\n",
    "CONFIG_A\n",
    "NOT_CONFIG=y\n",
    "CONFIG_A=0x\n",
    "# only comments\n\n# CONFIG_ is not set\n",
    "",
    // More malformed lines than the error lists.
    "x\nx\nx\nx\nx\nx\nx\nx\nx\nx\nx\nx\nx\nCONFIG_OK=y\n",
};

}  // namespace

std::vector<std::string> kgate_fuzz_seeds() {
  // The head (strings, numbers, "is not set") and the security section (CONFIG_LSM, lockdown).
  const std::string head = debian_slice(1, 200), security = debian_slice(9700, 110);
  std::vector<std::string> seeds = {head, security, std::string(corners)};
  for (std::string_view s : near_misses) seeds.emplace_back(s);

  const std::string image = embedded(head + security);
  seeds.push_back(image);
  seeds.push_back("a stray IKCFG_ST first, " + image);
  seeds.push_back(kgate::testing::gzip_bytes(image));  // a compressed vmlinux
  auto zstd = kgate::zstd_compress(image, 3);
  if (!zstd) die(zstd.error().describe());
  seeds.push_back(*zstd);
  seeds.push_back(image.substr(0, image.rfind("IKCFG_ED")));  // no end marker
  std::string corrupt = image;
  corrupt[image.find("IKCFG_ST") + 8 + 100] ^= 0x55;  // inside the deflate stream
  seeds.push_back(corrupt);
  seeds.push_back(embedded(corners));
  seeds.push_back(embedded("no options here\n"));
  return seeds;
}

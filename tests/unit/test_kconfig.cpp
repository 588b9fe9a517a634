#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/files.hpp"
#include "kernel/kconfig.hpp"
#include "support/synthetic.hpp"

using namespace kgate::kernel;
using namespace kgate::testing;
using namespace std::literals;

namespace {

// $KGATE_SOURCE_ROOT (meson sets it), else the tree this file was compiled from: __FILE__ may be
// absolute, relative to a build directory ("../tests/unit/...") or to the root itself ("tests/unit/...").
std::string source_root() {
  if (const char* env = std::getenv("KGATE_SOURCE_ROOT"); env && *env) return env;
  std::string_view file = __FILE__;
  std::size_t at = file.rfind("tests/unit/");
  return at == std::string_view::npos || at == 0 ? "." : std::string(file.substr(0, at - 1));
}

// The configuration of Debian's linux-image-6.1.0-56-amd64, as shipped in /boot.
const std::string& debian_text() {
  static const std::string text = [] {
    auto t = kgate::read_file(source_root() + "/tests/data/kconfig/debian-6.1-amd64.config");
    REQUIRE_MESSAGE(t.has_value(), (t ? "" : t.error().describe()));
    return *t;
  }();
  return text;
}

// The Debian text with the line `from` (which must be there) replaced by `to`.
std::string edited(std::string text, std::string_view from, std::string_view to) {
  std::string needle = "\n" + std::string(from) + "\n";
  std::size_t at = text.find(needle);
  REQUIRE_MESSAGE(at != std::string::npos, from);
  text.replace(at + 1, from.size(), to);
  return text;
}

std::string unset(std::string text, std::string_view option, std::string_view was) {
  return edited(std::move(text), std::string(option) + "=" + std::string(was),
                "# " + std::string(option) + " is not set");
}

KernelConfig parse(std::string_view text) {
  auto c = parse_kconfig(text, "test.config");
  REQUIRE_MESSAGE(c.has_value(), (c ? "" : c.error().describe()));
  return std::move(*c);
}

std::vector<std::string> options(const std::vector<PreflightProblem>& problems) {
  std::vector<std::string> out;
  for (const auto& p : problems) out.push_back(p.option);
  return out;
}

PreflightNeeds carried() {
  PreflightNeeds n;
  n.virtio_console_module_available = true;
  return n;
}

// What kernel/config_data.S lays out, with unrelated bytes on both sides.
std::string embedded(std::string_view config) {
  return std::string(4096, '\x90') + ikconfig_blob(config) + std::string(4096, '\xcc');
}

// A minimal bzImage whose gzip payload is an x86-64 ELF executable followed by `body`.
std::string bzimage_around(std::string_view body) {
  return bzimage_bytes(bzimage_payload(kgate::Compression::gzip, elf_executable("") + std::string(body)));
}

}  // namespace

TEST_CASE("the Debian 6.1 config parses, and get() and value() read it") {
  KernelConfig c = parse(debian_text());
  CHECK(c.values.size() == 6441 + 2336);  // CONFIG_ lines and "is not set" lines, none repeated
  CHECK(c.get("CONFIG_BPF_SYSCALL") == Tristate::yes);
  CHECK(c.get("BPF_SYSCALL") == Tristate::yes);
  CHECK(c.get("VIRTIO_CONSOLE") == Tristate::module);
  CHECK(c.values.at("CONFIG_IKCONFIG") == "n");  // "# CONFIG_IKCONFIG is not set"
  CHECK(c.get("IKCONFIG") == Tristate::no);
  CHECK(c.get("NO_SUCH_OPTION") == Tristate::no);
  CHECK(c.value("NO_SUCH_OPTION") == "");
  CHECK(c.values.at("CONFIG_LSM") ==
        "\"landlock,lockdown,yama,loadpin,safesetid,integrity,apparmor,selinux,smack,tomoyo,bpf\"");
  CHECK(c.value("LSM") ==
        "landlock,lockdown,yama,loadpin,safesetid,integrity,apparmor,selinux,smack,tomoyo,bpf");
  CHECK(c.get("LSM") == Tristate::yes);
  CHECK(c.value("NR_CPUS") == "8192");
  CHECK(c.get("NR_CPUS") == Tristate::yes);
  CHECK(c.value("PHYSICAL_START") == "0x1000000");
  CHECK(c.value("LOCALVERSION") == "");
  CHECK(c.get("LOCALVERSION") == Tristate::yes);  // an empty string is still set
}

TEST_CASE("the Debian 6.1 config meets every need once kgate carries virtio_console") {
  KernelConfig c = parse(debian_text());
  std::vector<PreflightProblem> warnings{{"stale", "replaced"}};
  CHECK(preflight(c, carried(), &warnings).empty());
  CHECK(warnings.empty());  // PVH=y, BPF_JIT=y, LOCK_DOWN_KERNEL_FORCE_NONE=y

  PreflightNeeds locked = carried();
  locked.lockdown = true;
  CHECK(preflight(c, locked).empty());

  PreflightNeeds microvm = carried();
  microvm.machine = "microvm";
  CHECK(preflight(c, microvm).empty());

  PreflightNeeds with_btf = carried();
  with_btf.btf_file_given = true;
  CHECK(preflight(c, with_btf).empty());
}

TEST_CASE("virtio modules are refused when kgate cannot carry them") {
  KernelConfig c = parse(debian_text());
  auto problems = preflight(c, PreflightNeeds{});
  CHECK(options(problems) == std::vector<std::string>{"CONFIG_VIRTIO_CONSOLE", "CONFIG_VIRTIO_PCI"});
  REQUIRE(problems.size() == 2);
  CHECK(problems[0].why.find("=m") != std::string::npos);
  CHECK(describe_problems("debian-6.1", problems) ==
        "debian-6.1: kernel config lacks CONFIG_VIRTIO_CONSOLE=y (the virtio-serial channel to the guest "
        "agent; "
        "it is =m and kgate found no module of it to carry); CONFIG_VIRTIO_PCI=y (the virtio transport of "
        "the q35 "
        "machine; it is =m and kgate found no module of it to carry)");

  PreflightNeeds microvm;
  microvm.machine = "microvm";
  CHECK(options(preflight(c, microvm)) ==
        std::vector<std::string>{"CONFIG_VIRTIO_CONSOLE", "CONFIG_VIRTIO_MMIO"});
}

TEST_CASE("arm64 on virt: the PL011 console and the mmio transport") {
  // The x86 config stands in for the arm64 one in all but its serial console.
  PreflightNeeds arm64 = carried();
  arm64.arch = "arm64";
  arm64.machine = "virt";
  CHECK(options(preflight(parse(debian_text()), arm64)) ==
        std::vector<std::string>{"CONFIG_SERIAL_AMBA_PL011_CONSOLE"});
  KernelConfig with_pl011 = parse(std::string(debian_text()) + "CONFIG_SERIAL_AMBA_PL011_CONSOLE=y\n");
  CHECK(preflight(with_pl011, arm64).empty());
  PreflightNeeds bare;
  bare.arch = "arm64";
  bare.machine = "virt";
  CHECK(options(preflight(with_pl011, bare)) ==
        std::vector<std::string>{"CONFIG_VIRTIO_CONSOLE", "CONFIG_VIRTIO_MMIO"});
}

TEST_CASE("a kernel without BTF is refused unless --btf is given") {
  KernelConfig c = parse(unset(debian_text(), "CONFIG_DEBUG_INFO_BTF", "y"));
  auto problems = preflight(c, carried());
  CHECK(options(problems) == std::vector<std::string>{"CONFIG_DEBUG_INFO_BTF"});
  CHECK(describe_problems("debian-6.1", problems) ==
        "debian-6.1: kernel config lacks CONFIG_DEBUG_INFO_BTF=y (BTF for CO-RE; or pass --btf FILE)");

  PreflightNeeds with_btf = carried();
  with_btf.btf_file_given = true;
  CHECK(preflight(c, with_btf).empty());
}

TEST_CASE("a kernel without a virtio console is refused even with modules to carry") {
  KernelConfig c = parse(unset(debian_text(), "CONFIG_VIRTIO_CONSOLE", "m"));
  auto problems = preflight(c, carried());
  CHECK(options(problems) == std::vector<std::string>{"CONFIG_VIRTIO_CONSOLE"});
  CHECK(describe_problems("k", problems) ==
        "k: kernel config lacks CONFIG_VIRTIO_CONSOLE=y (the virtio-serial channel to the guest agent)");

  // Built in, it needs no module; a built-in console still needs its transport.
  KernelConfig builtin = parse(edited(debian_text(), "CONFIG_VIRTIO_CONSOLE=m", "CONFIG_VIRTIO_CONSOLE=y"));
  CHECK(options(preflight(builtin, PreflightNeeds{})) == std::vector<std::string>{"CONFIG_VIRTIO_PCI"});
}

TEST_CASE("lockdown needs the lockdown LSM, started, and securityfs") {
  SUBCASE("no lockdown LSM") {
    std::string text = unset(debian_text(), "CONFIG_SECURITY_LOCKDOWN_LSM", "y");
    text = unset(text, "CONFIG_SECURITY_LOCKDOWN_LSM_EARLY", "y");
    KernelConfig c = parse(text);
    CHECK(preflight(c, carried()).empty());  // an entry without lockdown does not care
    PreflightNeeds locked = carried();
    locked.lockdown = true;
    auto problems = preflight(c, locked);
    CHECK(options(problems) == std::vector<std::string>{"CONFIG_SECURITY_LOCKDOWN_LSM"});
    CHECK(describe_problems("debian-6.1-integrity", problems) ==
          "debian-6.1-integrity: kernel config lacks CONFIG_SECURITY_LOCKDOWN_LSM=y (lockdown= needs the "
          "lockdown LSM)");
  }
  SUBCASE("no CONFIG_SECURITY at all") {
    std::string text = unset(debian_text(), "CONFIG_SECURITY", "y");
    text = unset(text, "CONFIG_SECURITYFS", "y");
    text = unset(text, "CONFIG_SECURITY_LOCKDOWN_LSM", "y");
    PreflightNeeds locked = carried();
    locked.lockdown = true;
    auto problems = preflight(parse(text), locked);
    CHECK(options(problems) == std::vector<std::string>{"CONFIG_SECURITY_LOCKDOWN_LSM", "CONFIG_SECURITYFS"});
    REQUIRE(!problems.empty());
    CHECK(problems[0].why.find("CONFIG_SECURITY=y") != std::string::npos);
  }
  SUBCASE("built but never started: not early and not in CONFIG_LSM") {
    std::string text = unset(debian_text(), "CONFIG_SECURITY_LOCKDOWN_LSM_EARLY", "y");
    text = edited(
        text,
        "CONFIG_LSM=\"landlock,lockdown,yama,loadpin,safesetid,integrity,apparmor,selinux,smack,tomoyo,bpf\"",
        "CONFIG_LSM=\"landlock,yama,apparmor,bpf\"");
    PreflightNeeds locked = carried();
    locked.lockdown = true;
    auto problems = preflight(parse(text), locked);
    CHECK(options(problems) == std::vector<std::string>{"CONFIG_SECURITY_LOCKDOWN_LSM_EARLY"});
    CHECK(describe_problems("e", problems) ==
          "e: kernel config lacks CONFIG_SECURITY_LOCKDOWN_LSM_EARLY=y (the lockdown LSM never starts, so "
          "lockdown= would be ignored: CONFIG_LSM=\"landlock,yama,apparmor,bpf\" does not list lockdown; set "
          "this or add lockdown to CONFIG_LSM)");
  }
  SUBCASE("not early, but CONFIG_LSM lists lockdown") {
    PreflightNeeds locked = carried();
    locked.lockdown = true;
    CHECK(preflight(parse(unset(debian_text(), "CONFIG_SECURITY_LOCKDOWN_LSM_EARLY", "y")), locked).empty());
  }
  SUBCASE("no securityfs to read the level from") {
    PreflightNeeds locked = carried();
    locked.lockdown = true;
    CHECK(options(preflight(parse(unset(debian_text(), "CONFIG_SECURITYFS", "y")), locked)) ==
          std::vector<std::string>{"CONFIG_SECURITYFS"});
  }
}

TEST_CASE("a lockdown forced by the config is a warning") {
  std::string text = unset(debian_text(), "CONFIG_LOCK_DOWN_KERNEL_FORCE_NONE", "y");
  PreflightNeeds locked = carried();
  locked.lockdown = true;
  std::vector<PreflightProblem> warnings;

  KernelConfig conf = parse(text + "CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY=y\n");
  CHECK(preflight(conf, carried(), &warnings).empty());
  CHECK(options(warnings) == std::vector<std::string>{"CONFIG_LOCK_DOWN_KERNEL_FORCE_NONE"});
  CHECK(preflight(conf, locked, &warnings).empty());
  CHECK(warnings.size() == 1);  // an entry asking for integrity would get confidentiality

  KernelConfig integrity = parse(text + "CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY=y\n");
  CHECK(preflight(integrity, carried(), &warnings).empty());
  CHECK(warnings.size() == 1);
  CHECK(preflight(integrity, locked, &warnings).empty());
  CHECK(warnings.empty());  // lockdown= can only raise the forced level

  // Forcing does nothing when the LSM never starts.
  std::string idle = unset(text, "CONFIG_SECURITY_LOCKDOWN_LSM_EARLY", "y");
  idle = edited(
      idle,
      "CONFIG_LSM=\"landlock,lockdown,yama,loadpin,safesetid,integrity,apparmor,selinux,smack,tomoyo,bpf\"",
      "CONFIG_LSM=\"yama\"");
  CHECK(preflight(parse(idle + "CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY=y\n"), carried(), &warnings)
            .empty());
  CHECK(warnings.empty());
}

TEST_CASE("PVH and the JIT are warnings, not problems") {
  std::string text = unset(debian_text(), "CONFIG_PVH", "y");
  text = unset(text, "CONFIG_BPF_JIT", "y");
  std::vector<PreflightProblem> warnings;
  CHECK(preflight(parse(text), carried(), &warnings).empty());
  CHECK(options(warnings) == std::vector<std::string>{"CONFIG_PVH", "CONFIG_BPF_JIT"});
  CHECK(preflight(parse(text), carried()).empty());  // no warnings list: still fine

  // PVH is an x86 option: on other architectures its absence is no news.
  CHECK(preflight(parse(unset(text, "CONFIG_X86", "y")), carried(), &warnings).empty());
  CHECK(options(warnings) == std::vector<std::string>{"CONFIG_BPF_JIT"});
}

TEST_CASE("every unmet need is reported, in a fixed order") {
  KernelConfig bare = parse("CONFIG_64BIT=y\n# CONFIG_BPF_SYSCALL is not set\n");
  PreflightNeeds needs;
  needs.lockdown = true;
  auto problems = preflight(bare, needs);
  CHECK(options(problems) ==
        std::vector<std::string>{"CONFIG_BPF_SYSCALL", "CONFIG_DEBUG_INFO_BTF", "CONFIG_BPF_EVENTS",
                                 "CONFIG_TRACEPOINTS", "CONFIG_FTRACE_SYSCALLS", "CONFIG_UPROBES",
                                 "CONFIG_UPROBE_EVENTS", "CONFIG_VIRTIO_CONSOLE", "CONFIG_VIRTIO_PCI",
                                 "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_DEVTMPFS", "CONFIG_BLK_DEV_INITRD",
                                 "CONFIG_RD_ZSTD", "CONFIG_SECURITY_LOCKDOWN_LSM", "CONFIG_SECURITYFS"});
  std::string line = describe_problems("x", problems);
  CHECK(line.starts_with("x: kernel config lacks CONFIG_BPF_SYSCALL=y (the bpf() system call); "));
  CHECK(line.find('\n') == std::string::npos);
  CHECK(describe_problems("x", {}) == "");
}

TEST_CASE("the probe's tracepoint configs are checked as given") {
  KernelConfig c = parse(debian_text());
  PreflightNeeds needs = carried();
  needs.tracepoint_configs = {"KPROBE_EVENTS", "CONFIG_NO_SUCH_TRACEPOINT_OPTION"};
  CHECK(options(preflight(c, needs)) == std::vector<std::string>{"CONFIG_NO_SUCH_TRACEPOINT_OPTION"});

  // No tracepoint: CONFIG_TRACEPOINTS is not asked for.
  KernelConfig no_tp =
      parse(unset(unset(debian_text(), "CONFIG_TRACEPOINTS", "y"), "CONFIG_FTRACE_SYSCALLS", "y"));
  needs.tracepoint_configs.clear();
  CHECK(preflight(no_tp, needs).empty());
  CHECK(options(preflight(no_tp, carried())) ==
        std::vector<std::string>{"CONFIG_TRACEPOINTS", "CONFIG_FTRACE_SYSCALLS"});
}

TEST_CASE("the parser's corner cases") {
  SUBCASE("comments, blank lines, CRLF, trailing blanks and repeats") {
    KernelConfig c = parse(
        "#\n# Linux/x86 6.6.0 Kernel Configuration\n\n  \r\n"
        "CONFIG_A=y\r\nCONFIG_B=m  \n# CONFIG_C is not set\n# CONFIG_D is not set, really\n"
        "CONFIG_A=n\nCONFIG_S=\"say \\\"hi\\\"\t\\\\o/\"\nCONFIG_H=ffff\nCONFIG_I=-3");
    CHECK(c.get("A") == Tristate::no);
    CHECK(c.get("B") == Tristate::module);
    CHECK(c.values.at("CONFIG_C") == "n");
    CHECK(!c.values.contains("CONFIG_D"));
    CHECK(c.value("S") == "say \"hi\"\t\\o/");
    CHECK(c.value("H") == "ffff");
    CHECK(c.value("I") == "-3");
  }
  SUBCASE("a string that reads y is a string") {
    KernelConfig c = parse("CONFIG_S=\"m\"\n");
    CHECK(c.get("S") == Tristate::yes);
    CHECK(c.value("S") == "m");
  }
  SUBCASE("nothing to read") {
    for (std::string_view text : {""sv, "\n\n"sv, "#\n# only comments\n"sv}) {
      auto c = parse_kconfig(text, "empty.config");
      REQUIRE(!c.has_value());
      CHECK(c.error().cls() == kgate::FailureClass::usage);
      CHECK(c.error().describe() == "empty.config: no CONFIG_ options: not a kernel .config");
    }
  }
}

TEST_CASE("malformed lines are refused with their line numbers") {
  struct Case {
    std::string_view line;
    std::string_view message;
  };
  const Case cases[] = {
      {"FOO=y", "bad.config:2: expected CONFIG_NAME=value or a # comment: \"FOO=y\""},
      {"CONFIG_X", "bad.config:2: expected CONFIG_NAME=value or a # comment: \"CONFIG_X\""},
      {"CONFIG_=y", "bad.config:2: malformed option name: \"CONFIG_=y\""},
      {"CONFIG_A-B=y", "bad.config:2: malformed option name: \"CONFIG_A-B=y\""},
      {"CONFIG_X=maybe",
       "bad.config:2: expected y, m, n, a number or a quoted string after '=': \"CONFIG_X=maybe\""},
      {"CONFIG_X=", "bad.config:2: expected y, m, n, a number or a quoted string after '=': \"CONFIG_X=\""},
      {"CONFIG_X=\"open", "bad.config:2: malformed quoted string: \"CONFIG_X=\\x22open\""},
      {"CONFIG_X=\"a\"b\"", "bad.config:2: malformed quoted string: \"CONFIG_X=\\x22a\\x22b\\x22\""},
      {"CONFIG_X=\"a\x01"
       "b\"",
       "bad.config:2: malformed quoted string: \"CONFIG_X=\\x22a\\x01b\\x22\""},
      {" CONFIG_X=y", "bad.config:2: expected CONFIG_NAME=value or a # comment: \" CONFIG_X=y\""},
      {"CONFIG_X=y\0"sv,
       "bad.config:2: expected y, m, n, a number or a quoted string after '=': \"CONFIG_X=y\\x00\""},
  };
  for (const auto& [line, message] : cases) {
    CAPTURE(line);
    auto c = parse_kconfig("CONFIG_OK=y\n" + std::string(line) + "\nCONFIG_OK2=m\n", "bad.config");
    REQUIRE(!c.has_value());
    CHECK(c.error().cls() == kgate::FailureClass::usage);
    CHECK(c.error().describe() == message);
  }

  SUBCASE("the first is described, the rest counted by line") {
    std::string text = "CONFIG_A=y\nbogus\nCONFIG_B=y\nCONFIG_C=what\nmore bogus\n";
    auto c = parse_kconfig(text, "two.config");
    REQUIRE(!c.has_value());
    CHECK(c.error().describe() ==
          "two.config:2: expected CONFIG_NAME=value or a # comment: \"bogus\"; 2 more malformed lines: 4, 5");
  }
  SUBCASE("many are cut short") {
    std::string text;
    for (int i = 0; i < 20; ++i) text += "junk\n";
    auto c = parse_kconfig(text, "junk.config");
    REQUIRE(!c.has_value());
    CHECK(c.error().describe() ==
          "junk.config:1: expected CONFIG_NAME=value or a # comment: \"junk\"; 19 more malformed lines: "
          "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ...");
  }
  SUBCASE("a long line is shown in part") {
    auto c = parse_kconfig(std::string(200, 'x'), "long.config");
    REQUIRE(!c.has_value());
    CHECK(c.error().describe() ==
          "long.config:1: expected CONFIG_NAME=value or a # comment: \"" + std::string(60, 'x') + "\"...");
  }
  SUBCASE("a binary file") {
    auto c = parse_kconfig(
        "\x7f"
        "ELF\x02\x01\x01\0\0\0"sv,
        "vmlinux");
    REQUIRE(!c.has_value());
    CHECK(c.error().describe().starts_with("vmlinux:1: expected CONFIG_NAME=value"));
  }
}

TEST_CASE("IKCONFIG is found between its markers") {
  const std::string config = "#\n# Linux/x86 6.6.0 Kernel Configuration\n#\nCONFIG_BPF_SYSCALL=y\n";

  SUBCASE("in a vmlinux") {
    auto got = extract_ikconfig(embedded(config));
    REQUIRE_MESSAGE(got.has_value(), (got ? "" : got.error().describe()));
    REQUIRE(got->has_value());
    CHECK(**got == config);
    CHECK(parse(**got).get("BPF_SYSCALL") == Tristate::yes);
  }
  SUBCASE("the whole Debian config") {
    auto got = extract_ikconfig(embedded(debian_text()));
    REQUIRE(got.has_value());
    REQUIRE(got->has_value());
    CHECK(**got == debian_text());
  }
  SUBCASE("in a bzImage's payload") {
    auto got = extract_ikconfig(bzimage_around(embedded(config)));
    REQUIRE_MESSAGE(got.has_value(), (got ? "" : got.error().describe()));
    REQUIRE(got->has_value());
    CHECK(**got == config);
  }
  SUBCASE("in a compressed image") {
    auto got = extract_ikconfig(gzip_bytes(embedded(config)));
    REQUIRE(got.has_value());
    REQUIRE(got->has_value());
    CHECK(**got == config);
  }
  SUBCASE("after a stray start marker that no gzip data follows") {
    auto got = extract_ikconfig("IKCFG_ST is mentioned here" + embedded(config));
    REQUIRE(got.has_value());
    REQUIRE(got->has_value());
    CHECK(**got == config);
  }
}

TEST_CASE("no IKCONFIG, and a damaged one") {
  SUBCASE("absent") {
    for (const std::string& image : {std::string(), std::string(8192, '\0'), "IKCFG_ST then nothing"s,
                                     bzimage_around(std::string(4096, '\x90'))}) {
      auto got = extract_ikconfig(image);
      REQUIRE_MESSAGE(got.has_value(), (got ? "" : got.error().describe()));
      CHECK(!got->has_value());
    }
  }
  SUBCASE("no end marker") {
    std::string image = embedded("CONFIG_A=y\n");
    image.resize(image.rfind("IKCFG_ED"));
    auto got = extract_ikconfig(image);
    REQUIRE(!got.has_value());
    CHECK(got.error().cls() == kgate::FailureClass::usage);
    CHECK(got.error().describe() == "IKCONFIG: start marker without the end marker IKCFG_ED");
  }
  SUBCASE("corrupt gzip") {
    std::string image = embedded(debian_text());
    std::size_t at = image.find("IKCFG_ST") + 8 + 200;
    for (std::size_t i = 0; i < 64; ++i) image[at + i] = static_cast<char>(image[at + i] ^ 0x5a);
    auto got = extract_ikconfig(image);
    REQUIRE(!got.has_value());
    CHECK(got.error().cls() == kgate::FailureClass::usage);
    CHECK(got.error().describe().starts_with("IKCONFIG: decompress gzip: "));
  }
  SUBCASE("a damaged bzImage is an error, not an absence") {
    std::string image = bzimage_around(embedded("CONFIG_A=y\n"));
    image.resize(image.size() - bzimage_tail_size - 100);  // into the payload
    auto got = extract_ikconfig(image);
    REQUIRE(!got.has_value());
    CHECK(got.error().describe().starts_with("IKCONFIG: bzImage: "));
  }
}

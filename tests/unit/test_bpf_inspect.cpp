#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>

#include "bpf/btf_ext.hpp"
#include "bpf/digest.hpp"
#include "bpf/lock.hpp"
#include "bpf/object.hpp"
#include "bpf/structure.hpp"
#include "core/files.hpp"
#include "support/synthetic.hpp"

using namespace kgate::bpf;
using kgate::FailureClass;
using namespace std::literals;

namespace {

std::string env_dir(const char* name) {
  const char* v = std::getenv(name);
  REQUIRE_MESSAGE((v != nullptr && *v != '\0'), name << " is not set: run it through `meson test`");
  return v;
}

// The build's own gate objects (bpf/meson.build), which the build makes by default.
const std::string& built(const std::string& file) {
  static std::map<std::string, std::string> cache;
  auto [it, fresh] = cache.try_emplace(file);
  if (fresh) {
    auto bytes = kgate::read_file(kgate::fs::path(env_dir("KGATE_BUILD_ROOT")) / "bpf" / file);
    REQUIRE_MESSAGE(bytes.has_value(), (bytes ? "" : bytes.error().describe()));
    it->second = std::move(*bytes);
  }
  return it->second;
}

// tests/digest/registers.bpf.c's objects, which tests/meson.build builds for this test.
const std::string& test_object(const std::string& file) {
  static std::map<std::string, std::string> cache;
  auto [it, fresh] = cache.try_emplace(file);
  if (fresh) {
    auto bytes = kgate::read_file(kgate::fs::path(env_dir("KGATE_BUILD_ROOT")) / "tests" / file);
    REQUIRE_MESSAGE(bytes.has_value(), (bytes ? "" : bytes.error().describe()));
    it->second = std::move(*bytes);
  }
  return it->second;
}

ObjectInfo inspect(std::string_view bytes) {
  auto info = inspect_object(bytes);
  REQUIRE_MESSAGE(info.has_value(), (info ? "" : info.error().describe()));
  return std::move(*info);
}

std::vector<const CoreRelo*> uprobe_relos(const ObjectInfo& info) {
  std::vector<const CoreRelo*> out;
  for (const CoreRelo& r : info.core_relos)
    if (r.section.starts_with("uprobe")) out.push_back(&r);
  return out;
}

bool names(const std::vector<const CoreRelo*>& relos, std::string_view type) {
  return std::ranges::any_of(relos, [&](const CoreRelo* r) { return r->type_name == type; });
}

const CoreRelo& relo(const ObjectInfo& info, std::string_view path) {
  auto it = std::ranges::find_if(info.core_relos, [&](const CoreRelo& r) { return r.path == path; });
  REQUIRE_MESSAGE(it != info.core_relos.end(), "no CO-RE relocation " << path);
  return *it;
}

const Section& section(const ObjectInfo& info, std::string_view name) {
  auto it = std::ranges::find_if(info.sections, [&](const Section& s) { return s.name == name; });
  REQUIRE_MESSAGE(it != info.sections.end(), "no section " << name);
  return *it;
}

// A .BTF.ext in little-endian order: the 32-byte header, no func_info or line_info, and a
// core_relo subsection with `record_size` and one section of the given records.
std::string btf_ext(std::vector<RawCoreRelo> relos, std::uint32_t record_size = 16,
                    std::uint32_t hdr_len = 32) {
  auto u32 = [](std::uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
  std::string sub = u32(record_size);
  if (!relos.empty()) sub += u32(relos[0].sec_name_off) + u32(static_cast<std::uint32_t>(relos.size()));
  for (const RawCoreRelo& r : relos) {
    std::string rec = u32(r.insn_off) + u32(r.type_id) + u32(r.access_str_off) + u32(r.kind);
    rec.resize(record_size, '\0');
    sub += rec;
  }
  std::string hdr = "\x9f\xeb\x01\x00"s + u32(hdr_len) + u32(0) + u32(0) + u32(0) + u32(0);
  if (hdr_len >= 32) hdr += u32(0) + u32(static_cast<std::uint32_t>(sub.size()));
  hdr.resize(std::max<std::size_t>(hdr.size(), hdr_len), '\0');
  return hdr + sub;
}

}  // namespace

TEST_CASE("the arm64 probe's uprobe relocations name user_pt_regs, the x86 probe's pt_regs") {
  ObjectInfo arm64 = inspect(built("probe.arm64.bpf.o"));
  CHECK(arm64.machine == 247);
  CHECK(arm64.elf64);
  CHECK(arm64.little_endian);
  CHECK(arm64.has_btf);
  CHECK(arm64.has_btf_ext);
  CHECK(arm64.problems.empty());
  auto a = uprobe_relos(arm64);
  REQUIRE(!a.empty());
  CHECK(names(a, "user_pt_regs"));
  CHECK_FALSE(names(a, "pt_regs"));
  CHECK(std::ranges::any_of(a, [](const CoreRelo* r) { return r->path == "user_pt_regs.regs[0]"; }));
  CHECK(register_arch(arm64) == "arm64");

  ObjectInfo x86 = inspect(built("probe.x86.bpf.o"));
  auto x = uprobe_relos(x86);
  REQUIRE(!x.empty());
  CHECK(names(x, "pt_regs"));
  CHECK_FALSE(names(x, "user_pt_regs"));
  CHECK(std::ranges::any_of(x, [](const CoreRelo* r) {
    return r->path == "pt_regs.di" && r->kind == "field_byte_offset" && r->type_kind == "struct";
  }));
  CHECK(register_arch(x86) == "x86");
  // The tracepoint program reads task_struct through CO-RE in both.
  CHECK(std::ranges::any_of(x86.core_relos, [](const CoreRelo& r) {
    return r.section == "tracepoint/syscalls/sys_enter_getpid" && r.path == "task_struct.tgid";
  }));
}

TEST_CASE("an x86 object is not an arm64 object, and says why") {
  ObjectInfo x86 = inspect(built("probe.x86.bpf.o"));
  CHECK(arch_problems(x86, *find_gate_arch("x86")).empty());
  auto problems = arch_problems(x86, *find_gate_arch("arm64"));
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("built for x86, not arm64") != std::string::npos);
  CHECK(problems[0].find("user_pt_regs") != std::string::npos);
  CHECK(arch_problems(inspect(built("probe.arm64.bpf.o")), *find_gate_arch("x86")).size() == 1);
  // The canary reads no registers: it fits both, and x86 and arm64 builds are the same bytes.
  ObjectInfo canary = inspect(built("canary_write_user.arm64.bpf.o"));
  CHECK(register_arch(canary).empty());
  for (const GateArch& arch : gate_arches) CHECK(arch_problems(canary, arch).empty());
  CHECK(built("canary_write_user.x86.bpf.o") == built("canary_write_user.arm64.bpf.o"));
}

TEST_CASE("a relocation says which arch it is for by the register it reads, not the type's name alone") {
  ObjectInfo pc = inspect(test_object("registers.arm64_pt_regs.bpf.o"));
  REQUIRE(pc.problems.empty());
  const CoreRelo& read_pc = relo(pc, "pt_regs.pc");
  CHECK(read_pc.field == "pc");
  REQUIRE(relo_arch(read_pc) != nullptr);
  CHECK(relo_arch(read_pc)->name == "arm64");
  CHECK(relo_arch(relo(pc, "pt_regs.sp")) == nullptr);  // both pt_regs have sp
  CHECK(register_arch(pc) == "arm64");
  CHECK(register_reads(pc, *find_gate_arch("arm64")) == std::vector<std::string>{"pt_regs.pc"});
  CHECK(arch_problems(pc, *find_gate_arch("arm64")).empty());
  auto problems = arch_problems(pc, *find_gate_arch("x86"));
  REQUIRE(problems.size() == 1);
  CHECK(
      problems[0].starts_with("built for arm64, not x86: its CO-RE relocations name pt_regs.pc, arm64's "
                              "register, where x86 objects read pt_regs with x86's fields (di, "));

  // The kernel's own layout (vmlinux.h): pc sits in an anonymous struct in an anonymous union.
  ObjectInfo kernel = inspect(test_object("registers.arm64_kernel_pt_regs.bpf.o"));
  const CoreRelo& nested = relo(kernel, "pt_regs.<anonymous 0>.<anonymous 1>.pc");
  CHECK(nested.field == "pc");
  CHECK(register_arch(kernel) == "arm64");

  // libbpf's ___flavor names are x86's pt_regs too; a field_exists check reads nothing.
  ObjectInfo flavor = inspect(test_object("registers.x86_flavor.bpf.o"));
  const CoreRelo& di = relo(flavor, "pt_regs___x86.di");
  CHECK(di.type_name == "pt_regs___x86");
  REQUIRE(relo_arch(di) != nullptr);
  CHECK(relo_arch(di)->name == "x86");
  const CoreRelo& exists = relo(flavor, "pt_regs___arm64.orig_x0");
  CHECK(exists.kind == "field_exists");
  CHECK(relo_arch(exists) == nullptr);
  CHECK(register_arch(flavor) == "x86");
  problems = arch_problems(flavor, *find_gate_arch("arm64"));
  REQUIRE(problems.size() == 1);
  CHECK(
      problems[0].starts_with("built for x86, not arm64: its CO-RE relocations name pt_regs___x86.di, x86's "
                              "register, where arm64 objects read user_pt_regs, or pt_regs with arm64's"));
  CHECK(arch_problems(flavor, *find_gate_arch("x86")).empty());
}

TEST_CASE("relo_arch by struct, field and kind") {
  auto arch_of = [](std::string type, std::string field, std::string kind = "field_byte_offset",
                    std::string type_kind = "struct") {
    CoreRelo r;
    r.type_name = type;
    r.type_kind = type_kind;
    r.field = field;
    r.path = type + "." + field;
    r.kind = kind;
    const GateArch* a = relo_arch(r);
    return a == nullptr ? std::string("-") : std::string(a->name);
  };
  CHECK(arch_of("pt_regs", "di") == "x86");
  CHECK(arch_of("pt_regs", "orig_ax") == "x86");
  CHECK(arch_of("pt_regs", "r15") == "x86");
  CHECK(arch_of("pt_regs", "pc") == "arm64");
  CHECK(arch_of("pt_regs", "regs") == "arm64");
  CHECK(arch_of("pt_regs", "orig_x0") == "arm64");
  CHECK(arch_of("pt_regs", "syscallno") == "arm64");
  CHECK(arch_of("pt_regs", "sp") == "-");
  CHECK(arch_of("pt_regs", "gpr") == "-");  // s390's, or riscv's: neither gate arch
  CHECK(arch_of("user_pt_regs", "regs") == "arm64");
  CHECK(arch_of("user_pt_regs", "sp") == "arm64");  // only arm64 has user_pt_regs
  CHECK(arch_of("user_pt_regs", "di") == "-");
  CHECK(arch_of("pt_regs___x86", "di") == "x86");
  CHECK(arch_of("pt_regs___arm64", "pc") == "arm64");
  CHECK(arch_of("user_pt_regs___v2", "pstate") == "arm64");
  CHECK(arch_of("pt_regs", "di", "field_byte_size") == "x86");
  CHECK(arch_of("pt_regs", "di", "field_exists") == "-");
  CHECK(arch_of("pt_regs", "", "type_exists") == "-");
  CHECK(arch_of("pt_regs", "di", "field_byte_offset", "int") == "-");
  CHECK(arch_of("task_struct", "pc") == "-");
  CHECK(arch_of("my_pt_regs", "di") == "-");

  CHECK(essential_type_name("pt_regs___x86") == "pt_regs");
  CHECK(essential_type_name("pt_regs") == "pt_regs");
  CHECK(essential_type_name("a___b___c") == "a___b");
  CHECK(essential_type_name("pt_regs___") == "pt_regs___");
  CHECK(essential_type_name("pt_regs____x86") == "pt_regs____x86");
  CHECK(essential_type_name("___x") == "___x");
  CHECK(essential_type_name("a___b") == "a");
  CHECK(essential_type_name("") == "");
}

TEST_CASE("libbpf opens the arm64 object from memory and lists its programs and maps") {
  auto layout = open_object(built("probe.arm64.bpf.o"), "probe.arm64");
  REQUIRE_MESSAGE(layout.has_value(), (layout ? "" : layout.error().describe()));
  REQUIRE(layout->programs.size() == 2);
  CHECK(layout->programs[0].name == "on_getpid");
  CHECK(layout->programs[0].type == "tracepoint");
  CHECK(layout->programs[1].name == "on_uprobe");
  CHECK(layout->programs[1].section == "uprobe//proc/self/exe:kgate_uprobe_target");
  CHECK(layout->programs[1].insns > 0);
  std::vector<std::string> maps;
  for (const MapInfo& m : layout->maps) maps.push_back(m.name + ":" + m.type);
  std::ranges::sort(maps);
  CHECK(maps == std::vector<std::string>{"events:ringbuf", "kgate_nonce:array"});

  auto junk = open_object(
      "\x7f"
      "ELF not really",
      "junk");
  REQUIRE_FALSE(junk.has_value());
  CHECK(junk.error().cls() == FailureClass::usage);
  CHECK(junk.error().describe().find("libbpf cannot open junk") != std::string::npos);
  // libbpf's own error codes are named by libbpf_strerror, not left as numbers.
  CHECK(junk.error().describe().find("Unknown error") == std::string::npos);
}

TEST_CASE("open_inspected_object hands libbpf only sound BPF objects") {
  const std::string& probe = built("probe.arm64.bpf.o");
  auto layout = open_inspected_object(probe, inspect(probe), "probe.arm64");
  REQUIRE_MESSAGE(layout.has_value(), (layout ? "" : layout.error().describe()));
  CHECK(layout->programs.size() == 2);

  // An x86-64 executable: kgate reads it, libbpf never sees it.
  std::string exe = kgate::testing::pvh_elf();
  auto refused = open_inspected_object(exe, inspect(exe), "pvh");
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().cls() == FailureClass::usage);
  CHECK(refused.error().describe().find("not a BPF object for any gate arch (x86: not a BPF object: machine "
                                        "EM_X86_64 (62)") != std::string::npos);

  // A BPF object whose relocations read both arches' registers fits neither.
  ObjectInfo both = inspect(probe);
  CoreRelo x86 = *uprobe_relos(both).front();
  x86.type_name = "pt_regs";
  x86.field = "di";
  x86.path = "pt_regs.di";
  both.core_relos.push_back(x86);
  CHECK(register_arch(both).empty());
  auto mixed = open_inspected_object(probe, both, "mixed");
  REQUIRE_FALSE(mixed.has_value());
  CHECK(mixed.error().describe().find("built for") != std::string::npos);

  ObjectInfo damaged = inspect(probe);
  damaged.problems.push_back(".BTF: libbpf cannot read it");
  auto not_opened = open_inspected_object(probe, damaged, "damaged");
  REQUIRE_FALSE(not_opened.has_value());
  CHECK(not_opened.error().describe().find("kgate found problems") != std::string::npos);
}

TEST_CASE("gate arches by the names the rest of kgate uses") {
  CHECK(parse_gate_arch("x86")->name == "x86");
  CHECK(parse_gate_arch("x86_64")->name == "x86");
  CHECK(parse_gate_arch("amd64")->name == "x86");
  CHECK(parse_gate_arch("arm64")->name == "arm64");
  CHECK(parse_gate_arch("aarch64")->name == "arm64");
  for (std::string_view bad : {"", "riscv", "X86", "i386", "arm"}) CHECK(parse_gate_arch(bad) == nullptr);
  // Only the gate arches' own names are file names and lock keys.
  CHECK(find_gate_arch("x86_64") == nullptr);
  CHECK_FALSE(split_object_file_name("probe.aarch64.bpf.o").has_value());
}

TEST_CASE("inspect_object refuses what is not ELF, and reads a foreign ELF without judging it") {
  for (std::string_view bad : {""sv, "hello"sv, "<html>404</html>"sv,
                               "\x7f"
                               "EL"sv}) {
    auto info = inspect_object(bad);
    REQUIRE_FALSE(info.has_value());
    CHECK(info.error().cls() == FailureClass::usage);
    CHECK(info.error().describe().find("not an ELF file") != std::string::npos);
  }
  auto truncated = inspect_object(std::string_view(built("probe.arm64.bpf.o")).substr(0, 100));
  REQUIRE_FALSE(truncated.has_value());
  CHECK(truncated.error().cls() == FailureClass::usage);

  ObjectInfo exe = inspect(kgate::testing::pvh_elf());
  CHECK(exe.machine == EM_X86_64);
  auto problems = arch_problems(exe, *find_gate_arch("x86"));
  REQUIRE(!problems.empty());
  CHECK(problems[0] == "not a BPF object: machine EM_X86_64 (62), not EM_BPF");
  CHECK(std::ranges::any_of(problems, [](const std::string& p) { return p.starts_with("no .BTF section"); }));
}

TEST_CASE("a damaged .BTF is a problem of the object, not an error") {
  std::string bytes = built("probe.arm64.bpf.o");
  ObjectInfo info = inspect(bytes);
  // The .BTF header's magic, found by content: the section's first bytes.
  std::size_t at = bytes.find("\x9f\xeb\x01\x00\x18\x00\x00\x00"sv);
  REQUIRE(at != std::string::npos);
  bytes[at] = 'X';
  ObjectInfo damaged = inspect(bytes);
  CHECK(damaged.core_relos.empty());
  REQUIRE(damaged.problems.size() == 1);
  CHECK(damaged.problems[0].starts_with(".BTF: libbpf cannot read it"));
  CHECK(section(damaged, ".BTF").sha256 != section(info, ".BTF").sha256);
  CHECK(section(damaged, ".text").sha256 == section(info, ".text").sha256);
}

TEST_CASE("parse_core_relos reads the records and refuses what does not fit") {
  RawCoreRelo one{7, 8, 3, 12, 0}, two{7, 24, 4, 14, 8};
  auto ok = parse_core_relos(btf_ext({one, two}), true);
  REQUIRE_MESSAGE(ok.has_value(), (ok ? "" : ok.error().describe()));
  REQUIRE(ok->size() == 2);
  CHECK((*ok)[1].sec_name_off == 7);
  CHECK((*ok)[1].insn_off == 24);
  CHECK((*ok)[1].type_id == 4);
  CHECK((*ok)[1].access_str_off == 14);
  CHECK((*ok)[1].kind == 8);
  // Records longer than struct bpf_core_relo: the tail is skipped.
  auto longer = parse_core_relos(btf_ext({one, two}, 24), true);
  REQUIRE(longer.has_value());
  CHECK((*longer)[1].insn_off == 24);
  // A header from before CO-RE has no core_relo subsection.
  auto old = parse_core_relos(btf_ext({}, 16, 24).substr(0, 24), true);
  REQUIRE(old.has_value());
  CHECK(old->empty());

  auto error_of = [](std::string_view bytes, bool little = true) {
    auto r = parse_core_relos(bytes, little);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().cls() == FailureClass::usage);
    return r.error().describe();
  };
  std::string valid = btf_ext({one, two});
  CHECK(error_of(valid.substr(0, 6)).find("shorter than its header") != std::string::npos);
  CHECK(error_of("\x00\x00" + valid.substr(2)).find("bad magic") != std::string::npos);
  CHECK(error_of(valid, false).find("byte order") != std::string::npos);
  std::string v2 = valid;
  v2[2] = 2;
  CHECK(error_of(v2).find("version 2") != std::string::npos);
  CHECK(error_of(valid.substr(0, valid.size() - 1)).find("runs past the section") != std::string::npos);
  CHECK(error_of(btf_ext({one}, 12)).find("record size 12") != std::string::npos);
  CHECK(error_of(btf_ext({one}, 18)).find("record size 18") != std::string::npos);
  std::string many = valid;
  many[32 + 8] = '\x7f';  // num_info: 127 records in 32 bytes
  CHECK(error_of(many).find("runs past the subsection") != std::string::npos);
  std::string none = valid;
  std::memset(&none[32 + 8], 0, 4);
  CHECK(error_of(none).find("no records") != std::string::npos);
  std::string huge_hdr = valid;
  huge_hdr[7] = '\x7f';
  CHECK(error_of(huge_hdr).find("header length") != std::string::npos);
  CHECK(core_relo_kind_name(0) == "field_byte_offset");
  CHECK(core_relo_kind_name(12) == "type_matches");
  CHECK(core_relo_kind_name(99) == "kind 99");
}

TEST_CASE("the committed lock parses, and writes back byte for byte") {
  auto text = kgate::read_file(kgate::fs::path(env_dir("KGATE_SOURCE_ROOT")) / "bpf" / "digests.lock");
  REQUIRE(text.has_value());
  auto lock = parse_lock(*text, "digests.lock");
  REQUIRE_MESSAGE(lock.has_value(), (lock ? "" : lock.error().describe()));
  CHECK(lock->arches() == std::vector<std::string>{"x86", "arm64"});
  REQUIRE(lock->objects.contains("probe"));
  const LockEntry& e = lock->objects.at("probe").at("arm64");
  CHECK(e.clang.find("clang version") != std::string::npos);
  CHECK(std::ranges::any_of(e.sections, [](const LockedSection& s) { return s.name == ".BTF.ext"; }));
  CHECK(write_lock(*lock) == *text);
}

TEST_CASE("parse_lock refuses anything but its schema") {
  std::string sha(64, 'a');
  auto doc = [&](std::string entry, std::string name = "probe", std::string arch = "arm64") {
    return R"({"schema": "kgate.digests/1", "objects": {")" + name + R"(": {")" + arch + R"(": )" + entry +
           "}}}";
  };
  std::string good = R"({"sha256": ")" + sha + R"(", "size": 10, "clang": "clang version 14",
                         "sections": [{"name": ".text", "sha256": ")" +
                     sha + R"(", "size": 0}]})";
  REQUIRE(parse_lock(doc(good), "t").has_value());
  auto error_of = [](const std::string& text) {
    auto r = parse_lock(text, "t.lock");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().cls() == FailureClass::usage);
    return r.error().describe();
  };
  CHECK(error_of("{").find("not valid JSON") != std::string::npos);
  CHECK(error_of("[]").find("must be a JSON object") != std::string::npos);
  CHECK(error_of(R"({"schema": "kgate.digests/2", "objects": {}})").find("'schema'") != std::string::npos);
  CHECK(error_of(R"({"schema": "kgate.digests/1", "objects": {}})").find("'objects'") != std::string::npos);
  CHECK(error_of(R"({"schema": "kgate.digests/1", "objects": {"p": {}}, "x": 1})").find("unknown key 'x'") !=
        std::string::npos);
  CHECK(error_of(doc(good, "probe", "riscv")).find("unknown arch") != std::string::npos);
  CHECK(error_of(doc(good, "../probe")).find("object name") != std::string::npos);
  std::string upper = good;
  upper.replace(upper.find(sha), 64, std::string(64, 'A'));
  CHECK(error_of(doc(upper)).find("'sha256'") != std::string::npos);
  std::string negative = good;
  negative.replace(negative.find("10"), 2, "-1");
  CHECK(error_of(doc(negative)).find("'size'") != std::string::npos);
  std::string extra = good;
  extra.replace(extra.find("\"size\": 0"), 9, "\"size\": 0, \"flags\": 1");
  CHECK(error_of(doc(extra)).find("sections[0]: unknown key 'flags'") != std::string::npos);
  std::string no_clang = good;
  no_clang.replace(no_clang.find("\"clang version 14\""), 18, "\"\"");
  CHECK(error_of(doc(no_clang)).find("'clang'") != std::string::npos);
}

TEST_CASE("object file names") {
  CHECK(object_file_name("probe", "arm64") == "probe.arm64.bpf.o");
  auto split = split_object_file_name("canary_write_user.x86.bpf.o");
  REQUIRE(split.has_value());
  CHECK(split->first == "canary_write_user");
  CHECK(split->second == "x86");
  for (std::string_view bad :
       {"probe.bpf.o", "probe.riscv.bpf.o", "probe.arm64.o", ".arm64.bpf.o", "a b.x86.bpf.o"})
    CHECK_FALSE(split_object_file_name(bad).has_value());
}

TEST_CASE("valid_utf8 and escape_bytes") {
  for (std::string_view good : {""sv, "license"sv, "uprobe//proc/self/exe:f"sv, "caf\xc3\xa9"sv,
                                "\xe2\x82\xac"sv, "\xf0\x9f\x98\x80"sv, "\xf4\x8f\xbf\xbf"sv, "\x7f"sv})
    CHECK_MESSAGE(valid_utf8(good), escape_bytes(good));
  for (std::string_view bad :
       {"\xff"sv, "lic\x80nse"sv, "\xc3"sv, "\xc0\xaf"sv, "\xe0\x80\xaf"sv, "\xed\xa0\x80"sv,
        "\xf4\x90\x80\x80"sv, "\xf8\x88\x80\x80\x80"sv, "\xe2\x82"sv, "\xe2\x28\xa1"sv})
    CHECK_FALSE_MESSAGE(valid_utf8(bad), escape_bytes(bad));
  CHECK(escape_bytes("lic\xffnse\n\\") == "lic\\xffnse\\x0a\\x5c");
}

TEST_CASE("update_lock refuses a section name that is not UTF-8, which no lock could match") {
  // The "license" section's name, found through the section headers (ELF64, little-endian).
  std::string bytes = built("probe.arm64.bpf.o");
  auto u16 = [&](std::size_t at) {
    std::uint16_t v;
    std::memcpy(&v, &bytes[at], 2);
    return v;
  };
  auto u64 = [&](std::size_t at) {
    std::uint64_t v;
    std::memcpy(&v, &bytes[at], 8);
    return v;
  };
  std::uint64_t shoff = u64(0x28);
  std::uint16_t shentsize = u16(0x3a), shnum = u16(0x3c), shstrndx = u16(0x3e);
  std::uint64_t strtab = u64(shoff + shstrndx * shentsize + 0x18);
  bool renamed = false;
  for (std::uint16_t i = 1; i < shnum && !renamed; ++i) {
    std::uint32_t name_off;
    std::memcpy(&name_off, &bytes[shoff + i * shentsize], 4);
    if (std::string_view(&bytes[strtab + name_off]) == "license") {
      bytes[strtab + name_off + 3] = '\xff';
      renamed = true;
    }
  }
  REQUIRE(renamed);
  ObjectInfo info = inspect(bytes);
  CHECK(std::ranges::any_of(info.sections, [](const Section& s) { return s.name == "lic\xffnse"; }));

  auto dir = kgate::TempDir::create("kgate-test-lock-");
  REQUIRE(dir.has_value());
  REQUIRE(kgate::write_file_atomic(dir->path() / "probe.arm64.bpf.o", bytes).has_value());
  REQUIRE(kgate::write_file_atomic(dir->path() / "clang-version.txt", "clang version 14\n").has_value());
  auto lock = update_lock(DigestLock{}, dir->path(), {"arm64"});
  REQUIRE_FALSE(lock.has_value());
  CHECK(lock.error().cls() == FailureClass::usage);
  CHECK(lock.error().describe().find("name \"lic\\xffnse\" is not valid UTF-8") != std::string::npos);

  // The same directory with the section's own name locks, and the alias names the arch.
  REQUIRE(
      kgate::write_file_atomic(dir->path() / "probe.arm64.bpf.o", built("probe.arm64.bpf.o")).has_value());
  auto good = update_lock(DigestLock{}, dir->path(), {"aarch64"});
  REQUIRE_MESSAGE(good.has_value(), (good ? "" : good.error().describe()));
  CHECK(good->arches() == std::vector<std::string>{"arm64"});
}

TEST_CASE("installed_clang_note names objects built by another clang than the installed one") {
  using kgate::Result;
  std::optional<std::string> v14 = "Debian clang version 14.0.6";
  Result<std::optional<std::string>> same = v14;
  CHECK_FALSE(installed_clang_note(v14, same).has_value());
  // A release directory records no clang: nothing to compare.
  CHECK_FALSE(installed_clang_note(std::nullopt, same).has_value());
  Result<std::optional<std::string>> newer = std::optional<std::string>("Debian clang version 15.0.7");
  auto note = installed_clang_note(v14, newer);
  REQUIRE(note.has_value());
  CHECK(note->find("built by Debian clang version 14.0.6, another clang than the one installed now "
                   "(Debian clang version 15.0.7)") != std::string::npos);
  CHECK(note->find("ninja -C build -t clean && ninja -C build") != std::string::npos);
  Result<std::optional<std::string>> none = std::optional<std::string>();
  auto absent = installed_clang_note(v14, none);
  REQUIRE(absent.has_value());
  CHECK(absent->find("no clang is installed") != std::string::npos);
  Result<std::optional<std::string>> broken =
      kgate::fail(FailureClass::infra, "clang --version exited with 1");
  REQUIRE(installed_clang_note(v14, broken).has_value());
}

TEST_CASE("compare_object names the section that differs, the arch and the clang") {
  const std::string& bytes = built("probe.arm64.bpf.o");
  ObjectInfo info = inspect(bytes);
  LockEntry locked = lock_entry(info, "clang version 14");
  const GateArch& arm64 = *find_gate_arch("arm64");

  ObjectCheck same = compare_object("probe.arm64.bpf.o", arm64, info, locked, "clang version 14");
  CHECK(same.verdict == Verdict::match);
  CHECK(same.details.empty());

  std::string flipped = bytes;
  std::size_t at = flipped.find("kgate_uprobe_target");  // in .strtab
  REQUIRE(at != std::string::npos);
  flipped[at] ^= 1;
  ObjectCheck diff = compare_object("probe.arm64.bpf.o", arm64, inspect(flipped), locked, "clang version 14");
  CHECK(diff.verdict == Verdict::mismatch);
  std::vector<std::string> sections;
  for (const std::string& d : diff.details)
    if (d.starts_with("section ")) sections.push_back(d.substr(0, d.find(' ', 8)));
  CHECK(sections.size() == 1);
  CHECK(std::ranges::any_of(diff.details,
                            [](const std::string& d) { return d.starts_with("a BPF object for arm64"); }));

  ObjectCheck other_clang =
      compare_object("probe.arm64.bpf.o", arm64, inspect(flipped), locked, "clang version 15");
  CHECK(std::ranges::any_of(other_clang.details, [](const std::string& d) {
    return d.find("Build with the pinned clang (clang version 14)") != std::string::npos;
  }));
  ObjectCheck unknown = compare_object("probe.arm64.bpf.o", arm64, inspect(flipped), locked, std::nullopt);
  CHECK(std::ranges::any_of(unknown.details, [](const std::string& d) {
    return d.starts_with("the clang that built it is not known");
  }));

  ObjectCheck wrong = compare_object("probe.arm64.bpf.o", arm64, inspect(built("probe.x86.bpf.o")), locked,
                                     "clang version 14");
  CHECK(wrong.verdict == Verdict::mismatch);
  REQUIRE(!wrong.details.empty());
  CHECK(wrong.details[0].starts_with("built for x86, not arm64"));

  // Right bytes, wrong arch: the lock itself is wrong, and that is a mismatch too.
  ObjectCheck locked_wrong = compare_object("probe.arm64.bpf.o", arm64, inspect(built("probe.x86.bpf.o")),
                                            lock_entry(inspect(built("probe.x86.bpf.o")), "c"), "c");
  CHECK(locked_wrong.verdict == Verdict::mismatch);

  DigestReport report;
  report.objects = {same, diff};
  CHECK(report.outcome() == FailureClass::digest_mismatch);
  CHECK(report.summary("l") == "1 of 2 objects match l; 1 differs");
  CHECK(render_report(report).find("probe.arm64.bpf.o: no\n  ") != std::string::npos);
  report.objects.push_back({"x.arm64.bpf.o", Verdict::bad_input, "", 0, {"not an ELF file"}});
  CHECK(report.outcome() == FailureClass::usage);
  report.objects = {same};
  CHECK(report.outcome() == FailureClass::pass);
  CHECK(report.summary("l") == "the object matches l");
}

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/files.hpp"
#include "image/cpio.hpp"
#include "image/initramfs.hpp"
#include "image/recipe.hpp"

namespace fs = std::filesystem;
using kgate::image::CpioEntry;

namespace {

fs::path source_root() {
  if (const char* root = std::getenv("KGATE_SOURCE_ROOT"); root && *root) return root;
  return fs::path(__FILE__).parent_path() / ".." / "..";
}

// The small archive of tests/data/golden/small.cpio, in a scrambled order.
std::vector<CpioEntry> small_entries() {
  return {
      {"etc/motd", S_IFREG | 0644, "hello from kgate\n"},
      {"dev/console", S_IFCHR | 0600, {}, 5, 1},
      {"etc", S_IFDIR | 0755, {}},
      {"etc/issue", S_IFLNK | 0777, "motd"},
      {"dev", S_IFDIR | 0755, {}},
  };
}

// One member as read back from a newc archive by this test's own reader.
struct Member {
  std::string name, data;
  unsigned long ino, mode, uid, gid, nlink, mtime, rdev_major, rdev_minor;
};

unsigned long field(std::string_view header, int index) {
  return std::stoul(std::string(header.substr(6 + 8 * static_cast<size_t>(index), 8)), nullptr, 16);
}

std::vector<Member> parse_newc(std::string_view archive) {
  std::vector<Member> members;
  size_t pos = 0;
  for (;;) {
    REQUIRE(pos % 4 == 0);
    REQUIRE(archive.size() >= pos + 110);
    std::string_view header = archive.substr(pos, 110);
    REQUIRE(header.substr(0, 6) == "070701");
    REQUIRE(field(header, 12) == 0);  // check
    CHECK(field(header, 7) == 0);     // devmajor
    CHECK(field(header, 8) == 0);     // devminor
    size_t namesize = field(header, 11), filesize = field(header, 6);
    REQUIRE(archive.size() >= pos + 110 + namesize);
    REQUIRE(archive[pos + 110 + namesize - 1] == '\0');
    Member m{std::string(archive.substr(pos + 110, namesize - 1)),
             {},
             field(header, 0),
             field(header, 1),
             field(header, 2),
             field(header, 3),
             field(header, 4),
             field(header, 5),
             field(header, 9),
             field(header, 10)};
    pos = (pos + 110 + namesize + 3) & ~size_t{3};
    REQUIRE(archive.size() >= pos + filesize);
    m.data = archive.substr(pos, filesize);
    pos = (pos + filesize + 3) & ~size_t{3};
    members.push_back(std::move(m));
    if (members.back().name == "TRAILER!!!") break;
  }
  CHECK(pos == archive.size());
  return members;
}

}  // namespace

TEST_CASE("cpio: small archive matches the golden file byte for byte") {
  auto golden = kgate::read_file(source_root() / "tests/data/golden/small.cpio");
  REQUIRE(golden);
  CHECK(kgate::image::write_cpio(small_entries()) == *golden);
}

TEST_CASE("cpio: the golden file reads back as sorted newc with fixed owners and times") {
  auto golden = kgate::read_file(source_root() / "tests/data/golden/small.cpio");
  REQUIRE(golden);
  std::vector<Member> members = parse_newc(*golden);
  REQUIRE(members.size() == 6);
  std::vector<std::string> names;
  for (const Member& m : members) names.push_back(m.name);
  CHECK(names ==
        std::vector<std::string>{"dev", "dev/console", "etc", "etc/issue", "etc/motd", "TRAILER!!!"});
  for (size_t i = 0; i + 1 < members.size(); ++i) {
    const Member& m = members[i];
    CAPTURE(m.name);
    CHECK(m.ino == i + 1);
    CHECK(m.uid == 0);
    CHECK(m.gid == 0);
    CHECK(m.mtime == 0);
    CHECK(m.nlink == (S_ISDIR(m.mode) ? 2u : 1u));
  }
  CHECK(members[0].mode == (S_IFDIR | 0755));
  CHECK(members[1].mode == (S_IFCHR | 0600));
  CHECK(members[1].rdev_major == 5);
  CHECK(members[1].rdev_minor == 1);
  CHECK(members[3].mode == (S_IFLNK | 0777));
  CHECK(members[3].data == "motd");
  CHECK(members[4].mode == (S_IFREG | 0644));
  CHECK(members[4].data == "hello from kgate\n");
  const Member& trailer = members.back();
  CHECK(trailer.ino == 0);
  CHECK(trailer.mode == 0);
  CHECK(trailer.data.empty());
}

TEST_CASE("cpio: output does not depend on input order") {
  std::vector<CpioEntry> entries = small_entries();
  std::string first = kgate::image::write_cpio(entries);
  std::ranges::reverse(entries);
  CHECK(kgate::image::write_cpio(entries) == first);
  std::ranges::sort(entries, {}, &CpioEntry::path);
  CHECK(kgate::image::write_cpio(entries) == first);
}

TEST_CASE("cpio: pads names and data of every length to 4 bytes") {
  for (size_t len = 1; len <= 9; ++len) {
    CAPTURE(len);
    std::string name(len, 'n');
    std::string archive = kgate::image::write_cpio({{name, S_IFREG | 0644, std::string(len, 'd')}});
    std::vector<Member> members = parse_newc(archive);
    REQUIRE(members.size() == 2);
    CHECK(members[0].name == name);
    CHECK(members[0].data == std::string(len, 'd'));
  }
}

TEST_CASE("cpio: check_entries rejects bad input with a usage error") {
  auto rejects = [](std::vector<CpioEntry> entries, std::string_view needle) {
    auto s = kgate::image::check_entries(entries);
    REQUIRE_FALSE(s);
    CHECK(s.error().cls() == kgate::FailureClass::usage);
    CAPTURE(s.error().describe());
    CHECK(s.error().describe().find(needle) != std::string::npos);
  };
  CHECK(kgate::image::check_entries(small_entries()));
  CHECK(kgate::image::check_entries({}));
  rejects({{"", S_IFREG | 0644, ""}}, "empty path");
  rejects({{"/init", S_IFREG | 0755, ""}}, "absolute path /init");
  rejects({{"..", S_IFDIR | 0755, ""}}, "not canonical");
  rejects({{"a", S_IFDIR | 0755, ""}, {"a/../b", S_IFREG | 0644, ""}}, "not canonical: a/../b");
  rejects({{"a", S_IFDIR | 0755, ""}, {"a//b", S_IFREG | 0644, ""}}, "not canonical");
  rejects({{"a", S_IFDIR | 0755, ""}, {"a/", S_IFDIR | 0755, ""}}, "not canonical");
  rejects({{"./a", S_IFREG | 0644, ""}}, "not canonical");
  rejects({{"TRAILER!!!", S_IFREG | 0644, ""}}, "reserved path");
  rejects({{"init", S_IFREG | 0755, "x"}, {"init", S_IFREG | 0755, "y"}}, "duplicate path init");
  rejects({{"dev/console", S_IFCHR | 0600, "", 5, 1}}, "parent directory of dev/console");
  rejects({{"a", S_IFREG | 0644, ""}, {"a/b", S_IFREG | 0644, ""}}, "parent directory of a/b");
  rejects({{"a", S_IFDIR | 0755, ""}, {"a/b/c", S_IFREG | 0644, ""}}, "parent directory of a/b/c");
  rejects({{"x", 0644, ""}}, "unsupported file type");
  rejects({{"d", S_IFDIR | 0755, "data"}}, "cannot hold data");
  rejects({{"l", S_IFLNK | 0777, ""}}, "has no target");
  rejects({{"f", S_IFREG | 0644, "", 1, 3}}, "device number on non-device f");
}

namespace {
std::string gate_recipe() {
  const char* root = std::getenv("KGATE_SOURCE_ROOT");
  REQUIRE(root != nullptr);
  auto text = kgate::read_file(std::filesystem::path(root) / "images" / "gate.json");
  REQUIRE(text.has_value());
  return *text;
}
std::string gate_cpio(const kgate::image::InitramfsInputs& inputs) {
  auto archive = kgate::image::build_initramfs_cpio(gate_recipe(), "images/gate.json", inputs);
  REQUIRE(archive.has_value());
  return *archive;
}
}  // namespace

TEST_CASE("initramfs: images/gate.json's layout, modules in load order, byte-stable") {
  kgate::image::InitramfsInputs inputs{
      "\x7f"
      "ELF agent",
      {{"virtio_ring", "ring"}, {"virtio", "core"}}};
  std::string archive = gate_cpio(inputs);
  CHECK(archive == gate_cpio(inputs));
  std::vector<Member> members = parse_newc(archive);
  std::vector<std::string> names;
  for (const Member& m : members) names.push_back(m.name);
  CHECK(names == std::vector<std::string>{"dev", "dev/console", "etc", "etc/kgate", "etc/kgate/modules",
                                          "init", "lib", "lib/modules", "lib/modules/virtio.ko",
                                          "lib/modules/virtio_ring.ko", "proc", "run", "sys", "tmp",
                                          "TRAILER!!!"});
  auto find = [&](std::string_view name) { return *std::ranges::find(members, name, &Member::name); };
  CHECK(find("dev/console").mode == (S_IFCHR | 0600));
  CHECK(find("dev/console").rdev_major == 5);
  CHECK(find("dev/console").rdev_minor == 1);
  CHECK(find("tmp").mode == (S_IFDIR | 0755));
  CHECK(find("init").mode == (S_IFREG | 0755));
  CHECK(find("init").data == inputs.agent);
  CHECK(find("lib/modules/virtio.ko").mode == (S_IFREG | 0644));
  CHECK(find("lib/modules/virtio.ko").data == "core");
  CHECK(find("etc/kgate/modules").mode == (S_IFREG | 0644));
  CHECK(find("etc/kgate/modules").data == "virtio_ring\nvirtio\n");

  CHECK(parse_newc(gate_cpio({"agent", {}})).size() == 13);
}

TEST_CASE("recipes: a malformed recipe is a usage error naming the entry") {
  using kgate::image::expand_recipe;
  auto refuses = [](const std::string& recipe, const std::string& needle) {
    CAPTURE(recipe);
    auto r = expand_recipe(recipe, {{{"agent", "x"}}, {}, {}}, "images/t.json");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().cls() == kgate::FailureClass::usage);
    CHECK(r.error().describe().find(needle) != std::string::npos);
  };
  auto entries = [](const std::string& list) {
    return R"({"schema": "kgate.image/1", "entries": [)" + list + "]}";
  };
  refuses("[]", "a recipe is a JSON object");
  refuses(R"({"schema": "kgate.image/2", "entries": []})", "kgate.image/1");
  refuses(entries(R"({"path": "a", "type": "fifo"})"), "entries[0] (a): type \"fifo\"");
  refuses(entries(R"({"path": "a", "type": "dir", "size": 1})"), "unknown key \"size\"");
  refuses(entries(R"({"path": "init", "type": "file", "from": "shell"})"), "names no input");
  refuses(entries(R"({"path": "init", "type": "file"})"), "\"from\" (an input) or \"text\"");
  refuses(entries(R"({"path": "d", "type": "dir", "mode": "755x"})"), "octal");
  refuses(entries(R"({"path": "c", "type": "char", "major": 5})"), "\"minor\"");
  refuses(entries(R"({"path": "a/b", "type": "dir"})"), "parent directory of a/b");
  auto ok = expand_recipe(
      entries(R"({"path": "etc", "type": "dir"}, {"path": "etc/motd", "type": "file", "text": "hi"})"), {},
      "images/t.json");
  REQUIRE(ok.has_value());
  CHECK(ok->size() == 2);
}

TEST_CASE("recipes: programs come from the packages with their libraries, and images/shell.json reads") {
  using kgate::image::expand_recipe;
  using kgate::image::recipe_needs;
  const std::string recipe = R"({"schema": "kgate.image/1", "packages": ["busybox-static", "bpftool"],
    "entries": [{"path": "kgate", "type": "dir"}, {"path": "kgate/bin", "type": "dir"},
                {"path": "kgate/bin/tool", "type": "program", "from": "/usr/sbin/tool"},
                {"path": "kgate/bin/other", "type": "program", "from": "usr/bin/other", "mode": "0700"}]})";
  auto needs = recipe_needs(recipe, "images/t.json");
  REQUIRE(needs.has_value());
  CHECK(needs->packages == std::vector<std::string>{"busybox-static", "bpftool"});
  CHECK(needs->programs == std::vector<std::string>{"usr/sbin/tool", "usr/bin/other"});

  kgate::image::RecipeInputs inputs;
  inputs.programs["usr/sbin/tool"] = {
      "TOOL",
      {{"/lib/x86_64-linux-gnu/libc.so.6", 0644, "LIBC"}, {"/lib64/ld-linux-x86-64.so.2", 0755, "LD"}}};
  inputs.programs["usr/bin/other"] = {"OTHER", {{"/lib/x86_64-linux-gnu/libc.so.6", 0644, "LIBC"}}};
  auto entries = expand_recipe(recipe, inputs, "images/t.json");
  REQUIRE(entries.has_value());
  std::vector<std::string> names;
  for (const auto& e : *entries) names.push_back(e.path);
  // Each library once, with the directories on its way.
  CHECK(names == std::vector<std::string>{"kgate", "kgate/bin", "kgate/bin/tool", "kgate/bin/other", "lib",
                                          "lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu/libc.so.6", "lib64",
                                          "lib64/ld-linux-x86-64.so.2"});
  CHECK((*entries)[2].mode == (S_IFREG | 0755));
  CHECK((*entries)[3].mode == (S_IFREG | 0700));

  // A program not read, one with no packages, a bad package name, an unknown top-level key.
  CHECK_FALSE(expand_recipe(recipe, {}, "images/t.json").has_value());
  auto bare = recipe_needs(R"({"schema": "kgate.image/1", "entries": [
      {"path": "t", "type": "program", "from": "bin/t"}]})",
                           "images/t.json");
  REQUIRE_FALSE(bare.has_value());
  CHECK(bare.error().describe().find("need \"packages\"") != std::string::npos);
  auto bad =
      recipe_needs(R"({"schema": "kgate.image/1", "packages": ["a b"], "entries": []})", "images/t.json");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().describe().find("Debian package names") != std::string::npos);
  auto unknown = recipe_needs(R"({"schema": "kgate.image/1", "entries": [], "extra": 1})", "images/t.json");
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().describe().find("unknown key \"extra\"") != std::string::npos);
  auto escape = recipe_needs(R"({"schema": "kgate.image/1", "packages": ["p"], "entries": [
      {"path": "t", "type": "program", "from": "../etc/shadow"}]})",
                             "images/t.json");
  CHECK_FALSE(escape.has_value());

  const char* root = std::getenv("KGATE_SOURCE_ROOT");
  REQUIRE(root != nullptr);
  auto shell = kgate::read_file(std::filesystem::path(root) / "images" / "shell.json");
  REQUIRE(shell.has_value());
  auto shell_needs = recipe_needs(*shell, "images/shell.json");
  REQUIRE(shell_needs.has_value());
  CHECK(shell_needs->programs == std::vector<std::string>{"bin/busybox", "usr/sbin/bpftool"});
}

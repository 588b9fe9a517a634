#include "bpf/digest.hpp"

#include <elf.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>
#include <system_error>

#include "core/strings.hpp"
#include "core/subprocess.hpp"

namespace kgate::bpf {

namespace {

constexpr std::string_view clang_version_file = "clang-version.txt";

std::string bytes_text(std::uint64_t n) {
  return std::to_string(n) + (n == 1 ? " byte" : " bytes");
}

// Sections keyed by name and occurrence ("name", "name#2"), since ELF allows a name twice.
template <class S>
std::vector<std::pair<std::string, const S*>> keyed(const std::vector<S>& sections) {
  std::map<std::string, int> seen;
  std::vector<std::pair<std::string, const S*>> out;
  for (const S& s : sections) {
    int n = ++seen[s.name];
    out.emplace_back(n == 1 ? s.name : s.name + "#" + std::to_string(n), &s);
  }
  return out;
}

std::vector<std::string> section_differences(const ObjectInfo& actual, const LockEntry& locked) {
  std::vector<std::string> out;
  auto have = keyed(actual.sections);
  auto want = keyed(locked.sections);
  auto find = [](const auto& list, const std::string& key) {
    auto it = std::ranges::find_if(list, [&](const auto& p) { return p.first == key; });
    return it == list.end() ? nullptr : it->second;
  };
  for (const auto& [key, w] : want) {
    const Section* h = find(have, key);
    if (h == nullptr) {
      out.push_back("section " + key + " is missing (the lock has " + bytes_text(w->size) + ")");
    } else if (h->size != w->size || h->sha256 != w->sha256) {
      std::string line = "section " + key + " differs: ";
      if (h->size != w->size) line += bytes_text(h->size) + " (lock " + bytes_text(w->size) + "), ";
      line += "sha256 " + h->sha256 + (h->sha256 == w->sha256 ? " (same)" : " (lock " + w->sha256 + ")");
      out.push_back(std::move(line));
    }
  }
  for (const auto& [key, h] : have)
    if (find(want, key) == nullptr)
      out.push_back("section " + key + " is not in the lock (" + bytes_text(h->size) + ")");
  return out;
}

std::vector<fs::path> object_files(const fs::path& dir, std::error_code& ec) {
  std::vector<fs::path> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (split_object_file_name(it->path().filename().string())) out.push_back(it->path());
  std::ranges::sort(out);
  return out;
}

// The gate arches named (aliases allowed), by their own names, each once, in gate_arches order.
Result<std::vector<std::string>> select_arches(const DigestLock& lock,
                                               const std::vector<std::string>& arches) {
  if (arches.empty()) return lock.arches();
  std::set<std::string_view> named;
  for (const std::string& a : arches) {
    const GateArch* arch = parse_gate_arch(a);
    if (arch == nullptr)
      return fail(FailureClass::usage, "unknown arch '" + a + "' (" + std::string(gate_arch_choices) + ")");
    named.insert(arch->name);
  }
  std::vector<std::string> out;
  for (const GateArch& a : gate_arches)
    if (named.contains(a.name)) out.emplace_back(a.name);
  return out;
}

// Why a section name of the object at `path` cannot go into the lock; nullopt when none.
std::optional<std::string> unlockable_section_name(const fs::path& path, const ObjectInfo& info) {
  for (std::size_t i = 0; i < info.sections.size(); ++i) {
    const std::string& name = info.sections[i].name;
    if (!valid_utf8(name))
      return strprintf(
          "%s: not locked: section %zu's name \"%s\" is not valid UTF-8, which the lock (JSON text) "
          "cannot hold as it is",
          path.string().c_str(), i + 1, escape_bytes(name).c_str());
  }
  return std::nullopt;
}

}  // namespace

ObjectCheck compare_object(std::string file, const GateArch& arch, const ObjectInfo& actual,
                           const LockEntry& locked, const std::optional<std::string>& clang) {
  ObjectCheck c{std::move(file), Verdict::match, actual.sha256, actual.size, {}};
  std::vector<std::string> structure = arch_problems(actual, arch);
  bool same = actual.sha256 == locked.sha256 && actual.size == locked.size;
  if (same && structure.empty()) {
    if (clang && *clang != locked.clang)
      c.details.push_back("built by " + *clang + ", the lock by " + locked.clang +
                          ", and still the same bytes");
    return c;
  }
  c.verdict = Verdict::mismatch;
  if (structure.empty() && actual.problems.empty()) {
    std::vector<std::string> reads = register_reads(actual, arch);
    std::string named = "read no registers";
    for (std::size_t i = 0; i < reads.size(); ++i) named = (i == 0 ? "name " : named + ", ") + reads[i];
    c.details.push_back("a BPF object for " + std::string(arch.name) +
                        " (EM_BPF, little-endian, .BTF and .BTF.ext, CO-RE relocations " + named +
                        "), with other bytes than the lock's");
  }
  for (std::string& s : structure) c.details.push_back(std::move(s));
  for (const std::string& p : actual.problems) c.details.push_back(p);
  if (!clang) {
    c.details.push_back("the clang that built it is not known (no " + std::string(clang_version_file) +
                        " beside it); the lock's objects were built by " + locked.clang);
  } else if (*clang != locked.clang) {
    c.details.push_back("built by " + *clang + ", the lock by " + locked.clang +
                        ": another clang gives other bytes. Build with the pinned clang (" + locked.clang +
                        "), or run `kgate digest --update` if this clang is to be the new pin");
  }
  if (!same) {
    c.details.push_back("sha256 " + actual.sha256 + ", " + bytes_text(actual.size) + "; the lock has " +
                        locked.sha256 + ", " + bytes_text(locked.size));
    std::vector<std::string> sections = section_differences(actual, locked);
    if (sections.empty())
      sections.push_back(
          "no section's bytes differ: the ELF header, the section header table or padding does");
    for (std::string& s : sections) c.details.push_back(std::move(s));
  }
  return c;
}

FailureClass DigestReport::outcome() const {
  auto any = [&](Verdict v) {
    return std::ranges::any_of(objects, [&](const auto& o) { return o.verdict == v; });
  };
  if (any(Verdict::bad_input)) return FailureClass::usage;
  if (any(Verdict::mismatch)) return FailureClass::digest_mismatch;
  return FailureClass::pass;
}

std::string DigestReport::summary(const std::string& lock_name) const {
  std::size_t match = 0, mismatch = 0, bad = 0;
  for (const ObjectCheck& o : objects)
    (o.verdict == Verdict::match ? match : o.verdict == Verdict::mismatch ? mismatch : bad) += 1;
  std::size_t n = objects.size();
  if (match == n && n == 1) return "the object matches " + lock_name;
  if (match == n) return strprintf("all %zu objects match %s", n, lock_name.c_str());
  std::string out = strprintf("%zu of %zu objects match %s", match, n, lock_name.c_str());
  if (mismatch > 0) out += strprintf("; %zu differ%s", mismatch, mismatch == 1 ? "s" : "");
  if (bad > 0) out += strprintf("; %zu could not be checked", bad);
  return out;
}

Result<std::optional<std::string>> read_clang_version(const fs::path& dir) {
  auto text = read_file_if_exists(dir / clang_version_file);
  if (!text) return std::unexpected(std::move(text).error());
  if (!*text) return std::nullopt;
  std::string line = first_line(**text);
  if (line.empty()) return std::nullopt;
  return line;
}

Result<std::optional<std::string>> installed_clang_version() {
  fs::path clang = find_program("clang");
  if (clang.empty()) return std::nullopt;
  auto run = run_capture({clang.string(), "--version"}, Deadline(std::chrono::seconds(30)));
  if (!run) return std::unexpected(std::move(run.error()).context(clang.string() + " --version"));
  if (run->status != 0)
    return fail(FailureClass::infra, clang.string() + " --version " + describe_status(run->status));
  std::string line = first_line(run->out);
  if (line.empty()) return fail(FailureClass::infra, clang.string() + " --version printed nothing");
  return line;
}

std::optional<std::string> installed_clang_note(const std::optional<std::string>& built,
                                                const Result<std::optional<std::string>>& installed) {
  if (!built) return std::nullopt;
  if (!installed)
    return "cannot tell whether the clang installed now built these objects: " + installed.error().describe();
  if (!*installed)
    return "no clang is installed (none on PATH): cannot tell whether the clang that built these objects "
           "is still the installed one";
  if (**installed == *built) return std::nullopt;
  return "the objects were built by " + *built + ", another clang than the one installed now (" +
         **installed +
         "); ninja does not rebuild them for that (it compares mtimes, and a package update keeps the "
         "package's build times). Rebuild from clean (`ninja -C build -t clean && ninja -C build`) before "
         "trusting or updating them";
}

namespace {
// A directory of built or shipped objects, and the clang recorded there (nullopt: none).
Result<std::optional<std::string>> objects_dir_clang(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return fail(FailureClass::usage, dir.string() + ": not a directory of BPF objects");
  return read_clang_version(dir);
}
}  // namespace

Result<DigestReport> check_objects(const DigestLock& lock, const fs::path& dir,
                                   std::vector<std::string> arches) {
  auto selected = select_arches(lock, arches);
  if (!selected) return std::unexpected(selected.error());
  auto clang = objects_dir_clang(dir);
  if (!clang) return std::unexpected(std::move(clang).error());

  DigestReport report;
  report.clang = *clang;
  for (const std::string& arch_name : *selected) {
    const GateArch& arch = *find_gate_arch(arch_name);
    bool any = false;
    for (const auto& [name, entries] : lock.objects) {
      auto entry = entries.find(arch_name);
      if (entry == entries.end()) continue;
      any = true;
      std::string file = object_file_name(name, arch_name);
      auto bytes = read_file(dir / file);
      if (!bytes) {
        report.objects.push_back({file, Verdict::bad_input, "", 0, {bytes.error().describe()}});
        continue;
      }
      auto info = inspect_object(*bytes);
      if (!info) {
        report.objects.push_back({file,
                                  Verdict::bad_input,
                                  sha256_hex(*bytes),
                                  bytes->size(),
                                  {(dir / file).string() + ": " + info.error().describe()}});
        continue;
      }
      report.objects.push_back(compare_object(file, arch, *info, entry->second, *clang));
    }
    if (!any) return fail(FailureClass::usage, "the lock has no " + arch_name + " objects");
  }
  // Objects of the selected arches that the lock does not know: a new gate, or a stale lock.
  std::error_code ec;
  auto files = object_files(dir, ec);
  if (ec) return fail_errno("list " + dir.string(), ec.value());
  for (const fs::path& p : files) {
    auto [name, arch] = *split_object_file_name(p.filename().string());
    auto known = lock.objects.find(name);
    if (std::ranges::find(*selected, arch) == selected->end()) continue;
    if (known != lock.objects.end() && known->second.contains(arch)) continue;
    report.objects.push_back({p.filename().string(),
                              Verdict::mismatch,
                              "",
                              0,
                              {"not in the lock: a new object, or a lock that was not updated "
                               "(`kgate digest --update`)"}});
  }
  return report;
}

Result<DigestLock> update_lock(DigestLock lock, const fs::path& dir, std::vector<std::string> arches) {
  if (arches.empty())
    for (const GateArch& a : gate_arches) arches.emplace_back(a.name);
  auto selected = select_arches(DigestLock{}, arches);
  if (!selected) return std::unexpected(selected.error());
  auto clang = objects_dir_clang(dir);
  if (!clang) return std::unexpected(std::move(clang).error());
  if (!*clang)
    return fail(FailureClass::usage, (dir / clang_version_file).string() +
                                         " is missing: the lock records the clang that built the objects, "
                                         "which the build writes there");
  // A directory that exists but cannot be listed is the host's problem (infra), as in check_objects.
  std::error_code ec;
  auto files = object_files(dir, ec);
  if (ec) return fail_errno("list " + dir.string(), ec.value());

  // Entries of the selected arches are replaced as a whole: an object that is gone leaves the lock.
  for (auto& [_, entries] : lock.objects)
    for (const std::string& a : *selected) entries.erase(a);
  std::set<std::string> found;
  for (const fs::path& p : files) {
    auto [name, arch] = *split_object_file_name(p.filename().string());
    if (std::ranges::find(*selected, arch) == selected->end()) continue;
    auto bytes = read_file(p);
    if (!bytes) return std::unexpected(std::move(bytes.error()).reclass(FailureClass::usage));
    auto info = inspect_object(*bytes);
    if (!info) return std::unexpected(std::move(info.error()).context(p.string()));
    if (auto why = unlockable_section_name(p, *info)) return fail(FailureClass::usage, *why);
    std::vector<std::string> problems = arch_problems(*info, *find_gate_arch(arch));
    for (const std::string& q : info->problems) problems.push_back(q);
    if (!problems.empty()) {
      std::string why;
      for (const std::string& q : problems) why += (why.empty() ? "" : "; ") + q;
      return fail(FailureClass::usage, p.string() + ": not locked: " + why);
    }
    lock.objects[name][arch] = lock_entry(*info, **clang);
    found.insert(arch);
  }
  for (const std::string& a : *selected)
    if (!found.contains(a))
      return fail(FailureClass::usage, dir.string() + " has no " + a + " objects (*." + a + ".bpf.o)");
  std::erase_if(lock.objects, [](const auto& o) { return o.second.empty(); });
  return lock;
}

std::string render_report(const DigestReport& report) {
  std::string out;
  for (const ObjectCheck& o : report.objects) {
    switch (o.verdict) {
      case Verdict::match:
        out += o.file + ": yes (sha256 " + o.sha256 + ", " + bytes_text(o.size) + ")\n";
        break;
      case Verdict::mismatch: out += o.file + ": no\n"; break;
      case Verdict::bad_input: out += o.file + ": not checked\n"; break;
    }
    for (const std::string& d : o.details) out += "  " + d + "\n";
  }
  return out;
}

std::string render_inspection(const ObjectInfo& info, const Result<ObjectLayout>& layout) {
  std::string out =
      strprintf("%s, %s, %s, %s\n", machine_name(info.machine).c_str(), info.elf64 ? "ELF64" : "ELF32",
                info.little_endian ? "little-endian" : "big-endian",
                info.elf_type == ET_REL ? "relocatable" : strprintf("type %u", info.elf_type).c_str());
  out += "sha256 " + info.sha256 + ", " + bytes_text(info.size) + "\n";
  std::string registers;
  std::size_t arches = 0;
  for (const GateArch& a : gate_arches) {
    std::vector<std::string> reads = register_reads(info, a);
    if (reads.empty()) continue;
    ++arches;
    for (const std::string& r : reads) registers += (registers.empty() ? "" : ", ") + r;
    registers += " (" + std::string(a.name) + ")";
  }
  out += "registers: " +
         (arches == 0   ? std::string("none read (fits any arch)")
          : arches == 1 ? registers
                        : registers + ": both arches', so it fits neither") +
         "\n";
  out += "sections:\n";
  for (const Section& s : info.sections)
    out += strprintf("  %-44s %8llu  %s\n", s.name.c_str(), static_cast<unsigned long long>(s.size),
                     s.sha256.c_str());
  if (layout) {
    out += "programs (libbpf, not loaded):\n";
    for (const ProgramInfo& p : layout->programs)
      out += strprintf("  %s  %s  %s, %zu instructions\n", p.name.c_str(), p.section.c_str(), p.type.c_str(),
                       p.insns);
    out += "maps:\n";
    for (const MapInfo& m : layout->maps)
      out += strprintf("  %s  %s, max_entries %u\n", m.name.c_str(), m.type.c_str(), m.max_entries);
  } else {
    out += "libbpf: " + layout.error().describe() + "\n";
  }
  out += "CO-RE relocations:\n";
  for (const CoreRelo& r : info.core_relos)
    out += strprintf("  %s, insn %u: %s  %s %s  %s\n", r.section.c_str(), r.insn_off / 8, r.kind.c_str(),
                     r.type_kind.c_str(), r.type_name.c_str(),
                     r.path.empty() ? r.access.c_str() : r.path.c_str());
  for (const std::string& p : info.problems) out += "problem: " + p + "\n";
  return out;
}

}  // namespace kgate::bpf

// The digest check behind `kgate digest`: built or shipped gate objects against bpf/digests.lock.
// Every object gets a yes or no; a no says which sections differ, whether the file is a BPF object
// for the expected arch at all, and whether another clang built it. The CLI only prints a report.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/lock.hpp"
#include "bpf/object.hpp"
#include "bpf/structure.hpp"
#include "core/error.hpp"
#include "core/files.hpp"

namespace kgate::bpf {

enum class Verdict {
  match,      // the bytes are the lock's, and it is a BPF object for its arch
  mismatch,   // it is not: digest_mismatch
  bad_input,  // it could not be checked (missing, unreadable, not ELF): usage
};

struct ObjectCheck {
  std::string file;  // "probe.arm64.bpf.o"
  Verdict verdict = Verdict::match;
  std::string sha256;  // of the file, when it could be read
  std::uint64_t size = 0;
  // On a mismatch, what differs and why, most telling first; on bad input, the error; on a match,
  // anything worth a note.
  std::vector<std::string> details;
};

// Compares one object with its lock entry. `clang` is the first line of `clang --version` of the
// clang that built it, nullopt when that is not known.
ObjectCheck compare_object(std::string file, const GateArch& arch, const ObjectInfo& actual,
                           const LockEntry& locked, const std::optional<std::string>& clang);

struct DigestReport {
  std::vector<ObjectCheck> objects;
  std::optional<std::string> clang;  // what the directory's clang-version.txt says, if it has one
  // usage when an object could not be checked, else digest_mismatch when one differs, else pass.
  FailureClass outcome() const;
  // One line: "4 objects match bpf/digests.lock", "1 of 4 objects differs from ...".
  std::string summary(const std::string& lock_name) const;
};

// The first line of DIR/clang-version.txt, which the build writes next to the objects; nullopt
// when there is none.
Result<std::optional<std::string>> read_clang_version(const fs::path& dir);

// The first line of `clang --version` of the clang on PATH now; nullopt when there is none.
// Fails (class infra) when it cannot be run or exits non-zero.
Result<std::optional<std::string>> installed_clang_version();

// Whether built objects are stale: ninja rebuilds them when the clang binary's mtime changes, and
// a distribution update keeps the package's build time, so objects built by a replaced clang stay.
// `built` is their clang-version.txt, `installed` what installed_clang_version() gave. Nothing to
// say when they agree or the build recorded no clang; else a note that the objects were built by
// another clang than the installed one, and need a clean rebuild before they are trusted or locked,
// or that the installed clang could not be asked.
std::optional<std::string> installed_clang_note(const std::optional<std::string>& built,
                                                const Result<std::optional<std::string>>& installed);

// Checks DIR's <name>.<arch>.bpf.o against every lock entry of `arches` (all of the lock's when
// empty). A locked object missing from DIR cannot be checked (bad input); an object in DIR that
// the lock lacks is a mismatch. Fails (usage) for an arch that is not a gate arch or has no entry.
Result<DigestReport> check_objects(const DigestLock& lock, const fs::path& dir,
                                   std::vector<std::string> arches);

// The lock with the entries of `arches` (every gate arch when empty) replaced by DIR's objects of
// those arches, and the clang of DIR/clang-version.txt. Fails (usage) when DIR has none of them,
// no clang-version.txt, or an object that is not a BPF object for its arch.
Result<DigestLock> update_lock(DigestLock lock, const fs::path& dir, std::vector<std::string> arches);

// The report as text, one "FILE: yes" or "FILE: no" line per object with its details indented.
std::string render_report(const DigestReport& report);

// What inspect_object() and open_inspected_object() found in one file, for `kgate digest --inspect`.
std::string render_inspection(const ObjectInfo& info, const Result<ObjectLayout>& layout);

}  // namespace kgate::bpf

#include "run/core_btf.hpp"

#include <bpf/btf.h>
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <set>
#include <utility>

#include "bpf/libbpf_log.hpp"
#include "bpf/object.hpp"
#include "core/files.hpp"
#include "core/strings.hpp"
#include "core/subprocess.hpp"
#include "kernel/btf.hpp"

namespace kgate::run {
namespace {

using json = nlohmann::json;

// Bump when what is cached or how it is made changes.
constexpr const char* record_version = "kgate.core-btf/1";

// bpftool on PATH, else where Debian installs it (/usr/sbin is not on every user's PATH).
fs::path find_bpftool() {
  if (fs::path p = find_program("bpftool"); !p.empty()) return p;
  for (const char* dir : {"/usr/sbin", "/sbin"}) {
    fs::path p = fs::path(dir) / "bpftool";
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

// What identifies the bpftool a result was made with, without running it on every warm run.
std::string tool_identity(const fs::path& tool) {
  struct stat st {};
  if (tool.empty() || ::stat(tool.c_str(), &st) != 0) return "none";
  return strprintf("%s %lld %lld.%09ld", tool.c_str(), static_cast<long long>(st.st_size),
                   static_cast<long long>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec);
}

json kernel_note(std::string why) {
  return {{"btf", "kernel"}, {"why", std::move(why)}};
}

// The record the cache keeps under the key (the note, naming the BTF's blob), and whether it may
// be kept: an answer that holds for these inputs is; a failure that may not happen next time (a
// bpftool that crashed or was interrupted, a full disk) is not.
struct Made {
  json record;
  bool keep = true;
};

Made passing(std::string why) {
  return {kernel_note(std::move(why)), false};
}

Made make_record(kernel::Cache& cache, const kernel::PreparedKernel& kernel,
                 const std::vector<CoreBtfObject>& objects, const fs::path& tool) {
  bool any_relo = false;
  for (const auto& o : objects) {
    auto info = bpf::inspect_object(o.bytes);
    if (info && std::any_of(info->core_relos.begin(), info->core_relos.end(),
                            [](const bpf::CoreRelo& r) { return r.kind != "type_id_local"; }))
      any_relo = true;
  }
  if (!any_relo) return {kernel_note("no object has a CO-RE relocation against the kernel")};
  if (tool.empty()) return {kernel_note("bpftool not found (on PATH, /usr/sbin or /sbin)")};
  auto boot = read_file(kernel.boot);
  if (!boot) return passing("the kernel's file cannot be read: " + boot.error().describe());
  auto kbtf = kernel::kernel_btf(*boot);
  if (!kbtf) return {kernel_note("the kernel's BTF cannot be read on the host: " + kbtf.error().describe())};
  boot->clear();
  boot->shrink_to_fit();
  auto mismatch = core_btf_mismatch(*kbtf, objects);
  if (!mismatch) return {kernel_note(mismatch.error().describe())};
  if (!mismatch->empty()) return {kernel_note(*mismatch)};

  auto dir = TempDir::create("kgate-core-btf");
  if (!dir) return passing("a scratch directory for bpftool: " + dir.error().describe());
  const fs::path input = dir->path() / "vmlinux.btf", output = dir->path() / "min.btf";
  if (auto st = write_file_atomic(input, *kbtf); !st)
    return passing("bpftool's input: " + st.error().describe());
  std::vector<std::string> argv = {tool.string(), "gen", "min_core_btf", input.string(), output.string()};
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const fs::path obj = dir->path() / strprintf("object%zu.bpf.o", i);
    if (auto st = write_file_atomic(obj, objects[i].bytes); !st)
      return passing("bpftool's input: " + st.error().describe());
    argv.push_back(obj.string());
  }
  auto ran = run_capture(argv, Deadline(std::chrono::seconds(60)));
  if (!ran) return passing("bpftool gen min_core_btf: " + ran.error().describe());
  if (!WIFEXITED(ran->status) || WEXITSTATUS(ran->status) != 0) {
    // An exit status is bpftool's answer for these inputs; a signal (a crash, a kill) is not.
    std::string err = first_line(ran->err);
    Made m{kernel_note("bpftool gen min_core_btf " + describe_status(ran->status) +
                       (err.empty() ? "" : ": " + err))};
    m.keep = WIFEXITED(ran->status);
    return m;
  }
  auto min = read_file(output);
  if (!min) return passing("bpftool gen min_core_btf wrote nothing readable: " + min.error().describe());
  std::uint32_t types = 0;
  {
    bpf::LibbpfLog quiet;
    bpf::BtfPtr b(btf__new(min->data(), static_cast<std::uint32_t>(min->size())));
    if (!b) return {kernel_note("bpftool gen min_core_btf wrote BTF libbpf cannot read")};
    types = btf__type_cnt(b.get()) - 1;
  }
  std::string version = "bpftool";
  if (auto v = run_capture({tool.string(), "version"}, Deadline(std::chrono::seconds(10)));
      v && WIFEXITED(v->status) && WEXITSTATUS(v->status) == 0)
    version = first_line(v->out);
  // "/usr/sbin/bpftool v7.1.0": the tool's name, not where this host keeps it.
  if (auto slash = version.find_last_of('/', version.find(' ')); slash != std::string::npos)
    version = version.substr(slash + 1);
  auto sha = cache.put_blob(*min);
  if (!sha) return passing("the cache: " + sha.error().describe());
  return {json{{"btf", "minimized"},
               {"sha256", *sha},
               {"bytes", min->size()},
               {"types", types},
               {"kernel_bytes", kbtf->size()},
               {"tool", version}}};
}

}  // namespace

Result<std::string> core_btf_mismatch(std::string_view kernel_btf,
                                      const std::vector<CoreBtfObject>& objects) {
  bpf::BtfPtr k;
  {
    bpf::LibbpfLog quiet;
    k.reset(btf__new(kernel_btf.data(), static_cast<std::uint32_t>(kernel_btf.size())));
  }
  if (!k) return fail(FailureClass::usage, "libbpf cannot read the kernel's BTF");
  std::set<std::pair<std::string_view, std::string_view>> present;  // (kind, essential name)
  for (std::uint32_t id = 1; id < btf__type_cnt(k.get()); ++id) {
    const btf_type* t = btf__type_by_id(k.get(), id);
    const char* name = btf__name_by_offset(k.get(), t->name_off);
    if (name != nullptr && *name != '\0')
      present.emplace(bpf::btf_kind_name(t), bpf::essential_type_name(name));
  }
  for (const auto& o : objects) {
    auto info = bpf::inspect_object(o.bytes);
    if (!info) return std::unexpected(std::move(info.error()).context(o.name));
    for (const auto& r : info->core_relos) {
      // A local type id needs no kernel type; an anonymous or unreadable one fails alike either way.
      if (r.kind == "type_id_target")
        return o.name + ": its CO-RE relocation at " + r.section + "+" + std::to_string(r.insn_off) +
               " asks for the kernel's own id of " + (r.type_name.empty() ? "a type" : r.type_name) +
               " (bpf_core_type_id_kernel), which only the kernel's whole BTF gives";
      if (r.kind == "type_id_local" || r.type_name.empty() || r.type_kind.empty()) continue;
      if (!present.contains({r.type_kind, bpf::essential_type_name(r.type_name)}))
        return o.name + ": its CO-RE relocation at " + r.section + "+" + std::to_string(r.insn_off) +
               " reads " + r.type_kind + " " + r.type_name +
               ", which the kernel's BTF does not have (libbpf then looks in modules' BTF)";
    }
  }
  return std::string();
}

CoreBtf minimal_core_btf(kernel::Cache& cache, const kernel::PreparedKernel& kernel,
                         const std::vector<CoreBtfObject>& objects) {
  CoreBtf out;
  const fs::path tool = find_bpftool();
  std::vector<std::string> digests;
  for (const auto& o : objects) digests.push_back(sha256_hex(o.bytes));
  std::sort(digests.begin(), digests.end());
  std::string key_text = std::string(record_version) + "\nkernel " + kernel.boot_sha256 + "\ntool " +
                         tool_identity(tool) + "\nobjects";
  for (const auto& d : digests) key_text += " " + d;
  const std::string key = sha256_hex(key_text);

  // A record whose BTF blob is gone (pruned, damaged) is made again.
  auto cached = [&]() -> std::optional<std::pair<json, std::string>> {
    auto ref = cache.get_ref("core-btf", key);
    if (!ref || !*ref) return std::nullopt;
    auto path = cache.verified_blob(**ref);
    auto text =
        path ? read_file(*path) : Result<std::string>(std::unexpected(Error(FailureClass::infra, "")));
    if (!text) return std::nullopt;
    json record = json::parse(*text, nullptr, false);
    if (!record.is_object() || !record.contains("btf")) return std::nullopt;
    if (record.value("btf", "") != "minimized") return std::pair{std::move(record), std::string()};
    auto btf_path = cache.verified_blob(record.value("sha256", ""));
    auto bytes = btf_path ? read_file(*btf_path) : Result<std::string>(std::unexpected(btf_path.error()));
    if (!bytes) return std::nullopt;
    return std::pair{std::move(record), std::move(*bytes)};
  };
  auto hit = cached();
  if (hit) {
    out.note = std::move(hit->first);
    out.bytes = std::move(hit->second);
    out.note["cached"] = true;
    return out;
  }
  Made made = make_record(cache, kernel, objects, tool);
  out.note = std::move(made.record);
  out.note["cached"] = false;
  if (out.note.value("btf", "") == "minimized") {
    auto btf_path = cache.verified_blob(out.note.value("sha256", ""));
    auto bytes = btf_path ? read_file(*btf_path) : Result<std::string>(std::unexpected(btf_path.error()));
    if (!bytes) {
      out.note = kernel_note("the minimized BTF just made cannot be read back: " + bytes.error().describe());
      out.note["cached"] = false;
      return out;
    }
    out.bytes = std::move(*bytes);
  }
  if (made.keep) {
    // A cache that cannot keep the record costs the next run the making, nothing else.
    json kept = out.note;
    kept.erase("cached");
    if (auto sha = cache.put_blob(kept.dump())) (void)cache.set_ref("core-btf", key, *sha);
  }
  return out;
}

}  // namespace kgate::run

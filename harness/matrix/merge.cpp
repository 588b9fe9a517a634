#include "matrix/merge.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "channel/fields.hpp"
#include "core/files.hpp"
#include "core/json_doc.hpp"
#include "core/strings.hpp"
#include "report/receipt.hpp"
#include "run/lockdown.hpp"

namespace kgate::matrix {

using nlohmann::json;

namespace {

Result<EntryResult> entry_from(const json& e, const fs::path& dir, const std::string& where) {
  auto bad = [&](const std::string& what) { return fail(FailureClass::usage, where + ": " + what); };
  if (!e.is_object()) return bad("not an object");
  EntryResult r;
  r.entry.name = channel::get_string(e, "name");
  r.entry.kernel = channel::get_string(e, "kernel");
  r.entry.arch = channel::get_string(e, "arch", "x86_64");
  auto lockdown = run::parse_lockdown(channel::get_string(e, "lockdown", "none"));
  auto cls = class_named(channel::get_string(e, "class"));
  if (r.entry.name.empty() || !lockdown || !cls) return bad("no name, lockdown or class it can read");
  r.entry.lockdown = *lockdown;
  r.verdict = *cls;
  r.message = channel::get_string(e, "message");
  r.cancelled = channel::get_string(e, "verdict") == "cancelled";
  r.started = e.contains("exit_code") && e["exit_code"].is_number_integer();
  r.exit_code = r.started ? e["exit_code"].get<int>() : -1;
  r.wall_s = e.contains("wall_s") && e["wall_s"].is_number() ? e["wall_s"].get<double>() : 0;
  const std::string receipt = channel::get_string(e, "receipt");
  if (receipt.empty()) return r;
  const fs::path rel = fs::path(receipt).lexically_normal();
  if (rel.is_absolute() || rel.empty() || *rel.begin() == "..")
    return bad("receipt '" + receipt + "' is not inside the output directory");
  r.dir = rel.parent_path();
  auto read = report::read_receipt(dir / rel);
  if (!read) {
    r.verdict = FailureClass::no_verdict;
    r.message = "its receipt cannot be read: " + read.error().describe();
    return r;
  }
  r.receipt = std::move(*read);
  return r;
}

}  // namespace

Result<MatrixRun> read_run(const fs::path& dir) {
  const fs::path file = dir / "matrix-summary.json";
  auto doc = read_json_doc(file);
  if (!doc) return std::unexpected(doc.error());
  const json& s = doc->root();
  if (!s.is_object() || channel::get_string(s, "schema") != "kgate.matrix-summary/1")
    return fail(FailureClass::usage, file.string() + ": not a kgate.matrix-summary/1 file");
  MatrixRun run;
  const json& entries = channel::get_array(s, "entries");
  for (size_t i = 0; i < entries.size(); ++i) {
    auto r = entry_from(entries[i], dir, file.string() + strprintf(": entries[%zu]", i));
    if (!r) return std::unexpected(r.error());
    run.results.push_back(std::move(*r));
  }
  run.interrupted = s.value("interrupted", false);
  run.wall_s = s.contains("wall_s") && s["wall_s"].is_number() ? s["wall_s"].get<double>() : 0;
  if (s.contains("shard")) {
    const json& sh = s["shard"];
    auto index = channel::get_int(sh, "index");
    auto count = channel::get_int(sh, "count");
    if (!index || !count || *index < 1 || *index > *count)
      return fail(FailureClass::usage, file.string() + ": shard: no index and count it can read");
    run.shard = Shard{static_cast<int>(*index), static_cast<int>(*count)};
    run.selected = channel::get_strings(sh, "selected");
  }
  return run;
}

Result<MatrixRun> merge_runs(const std::vector<fs::path>& dirs, const fs::path& out_dir) {
  if (dirs.empty()) return fail(FailureClass::usage, "matrix merge: name the output directories to merge");
  MatrixRun merged;
  std::map<std::string, fs::path> holder;  // entry name -> the directory it came from
  std::map<int, fs::path> shard_seen;
  std::optional<std::vector<std::string>> selection;
  int count = 0;
  std::vector<std::pair<fs::path, MatrixRun>> runs;
  for (const auto& dir : dirs) {
    auto run = read_run(dir);
    if (!run) return std::unexpected(std::move(run.error()).context("matrix merge"));
    if (run->shard) {
      if (count != 0 && run->shard->count != count)
        return fail(FailureClass::usage, strprintf("matrix merge: %s is shard %d/%d, another is of %d",
                                                   dir.c_str(), run->shard->index, run->shard->count, count));
      count = run->shard->count;
      if (auto [at, fresh] = shard_seen.emplace(run->shard->index, dir); !fresh)
        return fail(FailureClass::usage,
                    strprintf("matrix merge: %s and %s are both shard %d/%d", at->second.c_str(), dir.c_str(),
                              run->shard->index, count));
      if (selection && *selection != run->selected)
        return fail(FailureClass::usage,
                    "matrix merge: " + dir.string() + " is a shard of another selection of entries");
      selection = run->selected;
    }
    for (const auto& r : run->results) {
      if (auto [at, fresh] = holder.emplace(r.entry.name, dir); !fresh)
        return fail(FailureClass::usage, "matrix merge: entry '" + r.entry.name + "' is in both " +
                                             at->second.string() + " and " + dir.string());
    }
    runs.emplace_back(dir, std::move(*run));
  }
  if (selection && runs.size() != shard_seen.size())
    return fail(FailureClass::usage,
                "matrix merge: shard outputs and unsharded outputs cannot be merged together");

  if (auto st = make_dirs(out_dir); !st) return std::unexpected(st.error());
  std::map<std::string, EntryResult> by_name;
  std::vector<std::string> order;
  for (auto& [dir, run] : runs) {
    merged.interrupted = merged.interrupted || run.interrupted;
    merged.wall_s = std::max(merged.wall_s, run.wall_s);
    for (auto& r : run.results) {
      // The entry's directory travels with it, so that the merged output stands alone.
      // A real directory only: a link there could copy anything the link names into the output.
      std::error_code link_ec;
      if (!r.dir.empty() && fs::symlink_status(dir / r.dir, link_ec).type() == fs::file_type::directory) {
        std::error_code same_ec;
        if (!fs::exists(out_dir / r.dir) || !fs::equivalent(dir / r.dir, out_dir / r.dir, same_ec)) {
          std::error_code ec;
          fs::remove_all(out_dir / r.dir, ec);
          fs::create_directories((out_dir / r.dir).parent_path(), ec);
          fs::copy(dir / r.dir, out_dir / r.dir,
                   fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
          if (ec)
            return fail(FailureClass::infra, "matrix merge: copy " + (dir / r.dir).string() + " to " +
                                                 (out_dir / r.dir).string() + ": " + ec.message());
        }
      }
      order.push_back(r.entry.name);
      by_name.emplace(r.entry.name, std::move(r));
    }
  }
  // In the selection's order when there is one; the entries no shard holds are no verdict.
  if (selection) {
    for (const auto& name : *selection) {
      if (by_name.contains(name)) {
        merged.results.push_back(std::move(by_name.at(name)));
        continue;
      }
      EntryResult missing;
      missing.entry.name = name;
      missing.verdict = FailureClass::no_verdict;
      int shard = 0;
      for (size_t k = 0; k < selection->size(); ++k)
        if ((*selection)[k] == name) shard = static_cast<int>(k % count) + 1;
      missing.message = strprintf("not run: shard %d/%d is not among the merged outputs", shard, count);
      merged.results.push_back(std::move(missing));
    }
    for (const auto& name : order)
      if (std::find(selection->begin(), selection->end(), name) == selection->end())
        return fail(FailureClass::usage, "matrix merge: entry '" + name + "' is in no shard's selection");
  } else {
    for (const auto& name : order) merged.results.push_back(std::move(by_name.at(name)));
  }
  return merged;
}

}  // namespace kgate::matrix

#include "gate/summary.hpp"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <ctime>
#include <thread>

#include "core/strings.hpp"
#include "core/subprocess.hpp"
#include "core/text_table.hpp"
#include "core/unique_fd.hpp"
#include "matrix/runner.hpp"

namespace kgate::gate {

using nlohmann::json;

namespace {

double ms_round(double s) {
  return std::round(s * 1000) / 1000;
}

json gate_json(const Gate& g, const GateResult& r) {
  json j = {{"name", g.name},
            {"kind", kind_name(g.kind)},
            {"status", status_name(r.status)},
            {"exit_code", r.started ? json(r.exit_code) : json(nullptr)},
            {"reason", r.reason},
            {"start_s", r.started ? json(ms_round(r.start_s)) : json(nullptr)},
            {"duration_s", r.started ? json(ms_round(r.duration_s)) : json(nullptr)},
            {"log", r.started ? json(r.log.string()) : json(nullptr)},
            {"needs", g.needs},
            {"always", g.always},
            {"expect", g.expect == Expect::fail ? "fail" : "pass"},
            {"timeout_s", g.timeout_s}};
  if (!g.description.empty()) j["description"] = g.description;
  if (!g.expect_exit.empty()) j["expect_exit"] = g.expect_exit;
  if (g.kind == GateKind::command) {
    j["command"] = g.command;
    j["log_limit_bytes"] = g.log_limit_bytes;
    j["log_bytes"] = r.started ? json(r.log_bytes) : json(nullptr);
    j["log_dropped_bytes"] = r.started ? json(r.log_dropped) : json(nullptr);
  } else {
    j["entries"] = g.entries;
    j["matrix"] = r.matrix.is_null() ? json::array() : r.matrix;
  }
  return j;
}

}  // namespace

Provenance collect_provenance(const fs::path& gates_file) {
  Provenance p;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) p.hostname = host;
  utsname u{};
  if (::uname(&u) == 0) p.kernel = u.release;
  p.cores = static_cast<int>(std::thread::hardware_concurrency());
  p.kgate_version = KGATE_VERSION;
  const fs::path dir = absolute_path(gates_file).parent_path();
  auto head =
      run_capture({"git", "-C", dir.string(), "rev-parse", "HEAD"}, Deadline(std::chrono::seconds(10)));
  if (head && head->status == 0) {
    std::string commit = head->out.substr(0, head->out.find('\n'));
    if (commit.size() == 40) {
      p.git_commit = commit;
      auto st = run_capture({"git", "-C", dir.string(), "status", "--porcelain", "--untracked-files=no"},
                            Deadline(std::chrono::seconds(30)));
      p.git_dirty = st && st->status == 0 && !st->out.empty();
    }
  }
  return p;
}

Counts count(const Execution& ex) {
  Counts c;
  for (const auto& r : ex.results) {
    switch (r.status) {
      case GateStatus::passed: ++c.passed; break;
      case GateStatus::failed: ++c.failed; break;
      case GateStatus::skipped: ++c.skipped; break;
      case GateStatus::timed_out: ++c.timed_out; break;
      case GateStatus::cancelled: ++c.cancelled; break;
    }
  }
  return c;
}

std::vector<std::string> non_green(const Execution& ex) {
  std::vector<std::string> out;
  for (const auto& r : ex.results) {
    if (r.status != GateStatus::passed) out.push_back(r.name);
  }
  return out;
}

std::string iso_utc(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return strprintf("%s.%03dZ", buf, static_cast<int>(ms % 1000));
}

json summary_json(const Pipeline& p, const Execution& ex, const Provenance& where, int jobs,
                  const std::vector<std::string>& only) {
  json gates = json::array();
  for (const auto& r : ex.results) gates.push_back(gate_json(*p.find(r.name), r));
  Counts c = count(ex);
  return {{"schema", summary_schema},
          {"kgate_version", where.kgate_version},
          {"gates_file", p.file.string()},
          {"started_at", iso_utc(ex.started)},
          {"ended_at", iso_utc(ex.ended)},
          {"wall_s", ms_round(ex.wall_s)},
          {"host", {{"hostname", where.hostname}, {"kernel", where.kernel}, {"cores", where.cores}}},
          {"git", where.git_commit ? json{{"commit", *where.git_commit}, {"dirty", where.git_dirty}}
                                   : json(nullptr)},
          {"jobs", jobs},
          {"only", only},
          {"cancelled", ex.cancelled},
          {"cancel_reason", ex.cancelled ? json(ex.cancel_reason) : json(nullptr)},
          {"gates", gates},
          {"counts",
           {{"passed", c.passed},
            {"failed", c.failed},
            {"skipped", c.skipped},
            {"timed_out", c.timed_out},
            {"cancelled", c.cancelled},
            {"total", ex.results.size()}}},
          {"non_green", non_green(ex)},
          {"verdict", c.non_green() == 0 && !ex.results.empty() ? "pass" : "fail"}};
}

std::vector<std::string> tail_lines(const fs::path& file, size_t n, size_t max_bytes) {
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return {};
  off_t size = ::lseek(fd.get(), 0, SEEK_END);
  if (size <= 0) return {};
  const off_t want = std::min<off_t>(size, static_cast<off_t>(max_bytes));
  std::string buf(static_cast<size_t>(want), '\0');
  ssize_t got = ::pread(fd.get(), buf.data(), buf.size(), size - want);
  if (got <= 0) return {};
  buf.resize(static_cast<size_t>(got));
  std::vector<std::string> lines;
  for (auto l : split_lines(buf)) lines.emplace_back(l);
  if (want < size && !lines.empty()) {
    // The first line read may be cut: dropped, unless it is all there is (output that is one
    // huge line), which is then shown as its end.
    if (lines.size() > 1) {
      lines.erase(lines.begin());
    } else {
      lines.front() = "..." + lines.front();
    }
  }
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - static_cast<long>(n));
  return lines;
}

std::string junit_xml(const Execution& ex, const fs::path& out_dir) {
  using matrix::xml_escape;
  std::string cases;
  int tests = 0, failures = 0, errors = 0, skipped = 0;
  for (const auto& r : ex.results) {
    ++tests;
    cases += strprintf("    <testcase classname=\"kgate.gates\" name=\"%s\" time=\"%.3f\"",
                       xml_escape(r.name).c_str(), r.duration_s);
    std::string body;
    if (r.started) {
      for (const auto& l : tail_lines(out_dir / r.log, 40)) body += l + "\n";
    }
    switch (r.status) {
      case GateStatus::passed: cases += "/>\n"; break;
      case GateStatus::skipped:
        ++skipped;
        cases += ">\n      <skipped message=\"" + xml_escape(r.reason) + "\"/>\n    </testcase>\n";
        break;
      case GateStatus::failed:
      case GateStatus::timed_out:
        ++failures;
        cases += strprintf(">\n      <failure type=\"%s\" message=\"%s\">%s</failure>\n    </testcase>\n",
                           std::string(status_name(r.status)).c_str(), xml_escape(r.reason).c_str(),
                           xml_escape(body).c_str());
        break;
      case GateStatus::cancelled:
        ++errors;
        cases += strprintf(">\n      <error type=\"cancelled\" message=\"%s\"/>\n    </testcase>\n",
                           xml_escape(r.reason).c_str());
        break;
    }
    for (const auto& e : r.matrix.is_array() ? r.matrix : json::array()) {
      ++tests;
      const bool pass = e.value("verdict", "") == "pass";
      cases += strprintf("    <testcase classname=\"kgate.gates.%s\" name=\"%s\"", xml_escape(r.name).c_str(),
                         xml_escape(e.value("name", "")).c_str());
      if (pass) {
        cases += "/>\n";
      } else if (e.value("verdict", "") == "cancelled") {
        ++errors;
        cases += strprintf(">\n      <error type=\"cancelled\" message=\"%s\"/>\n    </testcase>\n",
                           xml_escape(e.value("message", "")).c_str());
      } else {
        ++failures;
        cases +=
            strprintf(">\n      <failure type=\"%s\" message=\"%s\"/>\n    </testcase>\n",
                      xml_escape(e.value("class", "")).c_str(), xml_escape(e.value("message", "")).c_str());
      }
    }
  }
  std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  xml += strprintf("<testsuites name=\"kgate\" tests=\"%d\" failures=\"%d\" errors=\"%d\" time=\"%.3f\">\n",
                   tests, failures, errors, ex.wall_s);
  xml += strprintf(
      "  <testsuite name=\"kgate.gates\" tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"%d\" "
      "time=\"%.3f\">\n",
      tests, failures, errors, skipped, ex.wall_s);
  xml += cases;
  xml += "  </testsuite>\n</testsuites>\n";
  return xml;
}

std::string markdown(const Execution& ex, const fs::path& out_dir) {
  Counts c = count(ex);
  const auto cell = [](const std::string& s) { return markdown_cell(s); };
  std::string md = strprintf("## kgate verify-all: %d passed, %d failed\n\n", c.passed, c.non_green());
  if (ex.cancelled) md += "**Cancelled:** " + cell(ex.cancel_reason) + "\n\n";
  md += "| gate | status | time | detail |\n|---|---|---|---|\n";
  for (const auto& r : ex.results) {
    const char* mark =
        r.status == GateStatus::passed ? "✅" : (r.status == GateStatus::skipped ? "⏭️" : "❌");
    md += strprintf(
        "| %s | %s %s | %s | %s |\n", cell(r.name).c_str(), mark, std::string(status_name(r.status)).c_str(),
        r.started ? strprintf("%.1f s", r.duration_s).c_str() : "",
        cell(r.reason + (r.started && r.status != GateStatus::passed ? " (" + r.log.string() + ")" : ""))
            .c_str());
  }
  for (const auto& r : ex.results) {
    if (!r.started || r.status == GateStatus::passed) continue;
    auto lines = tail_lines(out_dir / r.log, 20);
    if (lines.empty()) continue;
    md += "\n<details><summary>" + cell(r.name) + ": last lines of " + r.log.string() + "</summary>\n\n```\n";
    for (const auto& l : lines) {
      std::string safe = l;
      for (size_t at = 0; (at = safe.find("```", at)) != std::string::npos; at += 3)
        safe.replace(at, 3, "'''");
      md += safe + "\n";
    }
    md += "```\n</details>\n";
  }
  return md;
}

std::string closing_line(const Execution& ex) {
  Counts c = count(ex);
  return strprintf("verify-all: %d passed, %d failed", c.passed, c.non_green());
}

}  // namespace kgate::gate

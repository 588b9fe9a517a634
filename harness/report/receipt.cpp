#include "report/receipt.hpp"

#include <cmath>
#include <map>

#include "channel/fields.hpp"

namespace kgate::report {

using nlohmann::json;

namespace {
json optional_json(const auto& v) {
  return v ? json(*v) : json(nullptr);
}
}  // namespace

json receipt_json(const Receipt& r) {
  json programs = json::array();
  for (const auto& p : r.programs) {
    json pj = {{"object", p.object},
               {"name", p.name},
               {"section", p.section},
               {"type", p.type},
               {"attach", p.attach},
               {"verdict", p.verdict},
               {"reasons", p.reasons},
               {"loaded", p.loaded},
               {"attached", p.attached},
               {"verifier",
                {{"insns_processed", p.insns_processed},
                 {"total_states", p.total_states},
                 {"peak_states", p.peak_states},
                 {"verification_us", p.verification_us},
                 {"stack_depth", p.stack_depth},
                 {"verified_insns", optional_json(p.verified_insns)},
                 {"xlated_bytes", p.xlated_bytes},
                 {"jited_bytes", p.jited_bytes},
                 {"load_ms", std::round(p.load_ms * 1000.0) / 1000.0}}},
               {"attach_ms", std::round(p.attach_ms * 1000.0) / 1000.0},
               {"detach_ms", std::round(p.detach_ms * 1000.0) / 1000.0},
               {"run_count", optional_json(p.run_count)},
               {"run_time_ns", p.run_time_ns},
               {"required_runs", p.required_runs},
               {"records", p.records},
               {"nonce_records", p.nonce_records},
               {"required_records", p.required_records},
               {"retvals", p.retvals},
               {"passed", p.passed()}};
    if (!p.skip_reason.empty()) pj["skip_reason"] = p.skip_reason;
    if (!p.error.empty()) pj["error"] = p.error;
    if (!p.log_tail.empty()) pj["verifier_log_tail"] = p.log_tail;
    programs.push_back(std::move(pj));
  }
  json objects = json::array();
  for (const auto& o : r.objects) {
    json rounds = json::array();
    for (double ms : o.load_rounds_ms) rounds.push_back(std::round(ms * 1000.0) / 1000.0);
    objects.push_back({{"name", o.name},
                       {"path", o.path},
                       {"sha256", o.sha256},
                       {"size", o.size},
                       {"copy", o.copy},
                       {"load_rounds_ms", rounds}});
  }
  json timings = json::object();
  // A phase entered more than once (load to detach, once per object) counts its total.
  std::map<std::string, double> total;
  for (const auto& [phase, s] : r.timings_s) total[phase] += s;
  for (const auto& [phase, s] : total) timings[phase] = std::round(s * 1000.0) / 1000.0;
  json failure = nullptr;
  if (r.verdict != FailureClass::pass) {
    failure = {{"class", class_name(r.verdict)},
               {"exit_code", exit_code(r.verdict)},
               {"message", r.failure_message}};
  }
  return {
      {"schema", receipt_schema},
      {"kgate_version", r.kgate_version},
      {"host", r.host},
      {"request", r.request},
      {"entry", r.entry},
      {"arch", r.arch},
      {"kernel",
       {{"catalog_entry", r.kernel.catalog_entry},
        {"source", r.kernel.source},
        {"release_expected", r.kernel.release_expected},
        {"release", channel::get_string(r.guest, "release")},
        {"image_sha256", r.kernel.image_sha256},
        {"boot_sha256", r.kernel.boot_sha256},
        {"pvh", r.kernel.pvh}}},
      {"initramfs",
       {{"sha256", r.initramfs.sha256},
        {"agent_sha256", r.initramfs.agent_sha256},
        {"modules", r.initramfs.modules}}},
      {"qemu",
       {{"binary", r.qemu.binary},
        {"version", r.qemu.version},
        {"accel", r.qemu.accel},
        {"accel_note", r.qemu.accel_note},
        {"machine", r.qemu.machine},
        {"argv", r.qemu.argv}}},
      {"cmdline", r.cmdline},
      {"guest", r.guest},
      {"objects", objects},
      {"spec",
       {{"file", r.spec.file},
        {"sha256", r.spec.sha256},
        {"copy", r.spec.copy},
        {"description", r.spec.description}}},
      {"canary", {{"name", r.canary.name}, {"sha256", r.canary.sha256}}},
      {"lockdown", r.lockdown},
      {"preflight", r.preflight},
      {"btf", r.btf},
      {"nonce", r.nonce},
      {"trigger_count", r.trigger_count},
      {"programs", programs},
      {"leftovers", r.leftovers},
      {"loader", r.loader},
      {"files", r.files},
      {"repro", r.repro},
      {"debug", r.debug},
      {"timings_s", timings},
      {"verdict", r.verdict == FailureClass::pass ? "pass" : "fail"},
      {"failure", failure},
      {"console_log", r.console_log},
      {"kernel_log", r.kernel_log},
      {"console_tail", r.console_tail},
      {"console_splats", r.console_splats},
  };
}

std::string bounded_message(std::string_view text, std::size_t limit, std::string_view file) {
  if (text.size() <= limit) return std::string(text);
  const std::string note = " [... " + std::to_string(text.size()) +
                           " bytes in all; the whole message is in " + std::string(file) + " ...] ";
  const std::size_t keep = limit > note.size() ? limit - note.size() : 0;
  const std::size_t head = keep * 2 / 3, tail = keep - head;
  return std::string(text.substr(0, head)) + note + std::string(text.substr(text.size() - tail));
}

std::string render_receipt(const Receipt& r) {
  // Console lines, paths and guest text are bytes, not always UTF-8: replace what
  // is not, rather than throw and lose the receipt.
  return receipt_json(r).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Status write_receipt(const fs::path& dir, const Receipt& r) {
  return write_file_atomic(dir / "receipt.json", render_receipt(r));
}

}  // namespace kgate::report

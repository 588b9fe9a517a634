#include "run/judge.hpp"

#include <algorithm>
#include <cstring>

#include "core/strings.hpp"
#include "core/subprocess.hpp"

namespace kgate::run {

namespace {

std::vector<long> leading_numbers(std::string_view v) {
  std::vector<long> out;
  long cur = -1;
  for (char c : v) {
    if (c >= '0' && c <= '9') {
      cur = (cur < 0 ? 0 : cur) * 10 + (c - '0');
      if (cur > 1'000'000) return out;
    } else if (c == '.' && cur >= 0) {
      out.push_back(cur);
      cur = -1;
    } else {
      break;
    }
  }
  if (cur >= 0) out.push_back(cur);
  return out;
}

std::vector<std::string> last_lines(const std::string& text, std::size_t n) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos) lines.emplace_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - static_cast<long>(n));
  return lines;
}

// The verifier's own words on why it stopped, with the source line it was checking: the last log
// line that is not one of its statistics lines, and the "; <source>" line before it (from
// .BTF.ext line info). "" when the log has no such line.
std::string verifier_cause(const std::string& log) {
  auto lines = last_lines(log, 64);
  auto is_stats = [](const std::string& l) {
    return l.starts_with("verification time ") || l.starts_with("stack depth ") ||
           l.starts_with("processed ") || l.starts_with("libbpf: ");
  };
  for (std::size_t i = lines.size(); i-- > 0;) {
    if (is_stats(lines[i])) continue;
    std::string cause = lines[i];
    for (std::size_t j = i; j-- > 0;) {
      if (lines[j].starts_with("; ") && lines[j].size() > 2) {
        cause += " (at \"" + lines[j].substr(2) + "\")";
        break;
      }
    }
    return cause;
  }
  return {};
}

bool contains(const std::string& s, std::string_view what) {
  return s.find(what) != std::string::npos;
}

// Why a load was refused, by the words of libbpf, the verifier and the kernel's log.
std::string classify_reject(const proto::ProgramLoad& p, const RunFacts& facts) {
  const std::string all = p.libbpf + "\n" + p.log + "\n" + p.error;
  // Before the CO-RE words: a BTF libbpf cannot parse is followed by "failed to perform CO-RE
  // relocations".
  if (contains(all, "failed to parse target BTF")) return reason::btf_missing;
  if (contains(all, "CO-RE relocation") || contains(all, "failed to resolve CO-RE") ||
      contains(all, "invalid CO-RE") || contains(all, "<invalid CO-RE relocation>") ||
      contains(all, "relo #") || contains(all, "unknown#195896080"))
    return reason::core_relocation;
  if ((!facts.kernel_btf && !facts.btf_file) || contains(all, "failed to find valid kernel BTF") ||
      contains(all, "vmlinux BTF is not found") || contains(all, "failed to load vmlinux BTF"))
    return reason::btf_missing;
  for (const auto& l : facts.lockdown_refusals) {
    // The write-user line is the canary's own refusal, no evidence about this program.
    if (contains(l, "bpf") && !contains(l, "write user RAM")) return reason::lockdown_refused;
  }
  if (contains(all, "Lockdown") || contains(all, "lockdown")) return reason::lockdown_refused;
  return reason::verifier_reject;
}

bool has_at(std::string_view bytes, std::size_t offset, std::string_view what) {
  return offset <= bytes.size() && bytes.size() - offset >= what.size() &&
         bytes.substr(offset, what.size()) == what;
}

bool record_matches(std::string_view rec, const spec::RecordFilter& f) {
  if (!has_at(rec, f.offset, f.string)) return false;
  std::size_t end = f.offset + f.string.size();
  return end == rec.size() || rec[end] == '\0';
}

bool u32_at_equals(std::string_view rec, std::uint32_t offset, std::int64_t want) {
  if (offset > rec.size() || rec.size() - offset < 4) return false;
  std::uint32_t v = 0;
  std::memcpy(&v, rec.data() + offset, 4);
  return static_cast<std::int64_t>(v) == want;
}

template <class T>
const T* by_name(const std::vector<T>& list, const std::string& name) {
  for (const auto& x : list)
    if (x.name == name) return &x;
  return nullptr;
}

}  // namespace

std::string core_relocation_refusal(const proto::LoadResponse& load, const RunFacts& facts) {
  for (const auto& p : load.programs)
    if (p.autoload && !p.loaded && !p.alone && classify_reject(p, facts) == reason::core_relocation)
      return p.name;
  if (!load.ok && contains(load.error + "\n" + load.libbpf, "CO-RE")) return "(object)";
  return {};
}

std::string encoded_nonce(const std::string& nonce_hex, spec::NonceEncoding enc) {
  std::uint64_t v = std::strtoull(nonce_hex.c_str(), nullptr, 16);
  std::string out(8, '\0');
  switch (enc) {
    case spec::NonceEncoding::u64le:
      for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (8 * i));
      return out;
    case spec::NonceEncoding::u64be:
      for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (8 * (7 - i)));
      return out;
    case spec::NonceEncoding::hex: return nonce_hex;
  }
  return out;
}

bool release_below(std::string_view release, std::string_view version) {
  auto a = leading_numbers(release), b = leading_numbers(version);
  if (a.empty() || b.empty()) return false;
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
}

std::string skip_reason(const spec::ObjectSpec& object, const spec::ProgramSpec* program,
                        const RunFacts& facts) {
  if (program) {
    for (const auto& s : program->skip) {
      bool arch =
          !s.arches.empty() && std::find(s.arches.begin(), s.arches.end(), facts.arch) != s.arches.end();
      bool old =
          !s.kernel_below.empty() && !facts.release.empty() && release_below(facts.release, s.kernel_below);
      if (arch || old) return s.reason;
    }
  }
  if (!object.min_kernel.empty() && !facts.release.empty() && release_below(facts.release, object.min_kernel))
    return "the object needs kernel " + object.min_kernel + " or later; the guest runs " + facts.release;
  return {};
}

std::vector<std::string> unknown_programs(const spec::ObjectSpec& object, const ObjectObservation& obs) {
  std::vector<std::string> out;
  for (const auto& p : obs.load.programs) {
    if (object.find(p.name) == nullptr && std::find(out.begin(), out.end(), p.name) == out.end())
      out.push_back(p.name);
  }
  return out;
}

std::vector<report::ProgramResult> judge_object(const spec::ObjectSpec& object, const ObjectObservation& obs,
                                                const RunFacts& facts) {
  std::vector<report::ProgramResult> out;
  // The programs the host knows the object has, as the spec lists them (every one, for a run):
  // a guest cannot add programs to the receipt by naming them.
  std::vector<std::string> names;
  for (const auto& p : object.programs) names.push_back(p.name);
  for (const auto& name : names) {
    const spec::ProgramSpec* ps = object.find(name);
    const spec::ProgramSpec defaults{};
    const spec::ProgramSpec& want = ps ? *ps : defaults;
    const proto::ProgramLoad* load = by_name(obs.load.programs, name);
    report::ProgramResult r;
    r.object = object.name;
    r.name = name;
    r.attach = std::string(spec::attach_mode_name(want.attach));
    std::vector<std::string> problems;
    auto fail_with = [&](const char* why, std::string text) {
      if (std::find(r.reasons.begin(), r.reasons.end(), why) == r.reasons.end()) r.reasons.push_back(why);
      problems.push_back(std::move(text));
    };
    if (load) {
      r.section = load->section;
      r.type = load->type;
      r.loaded = load->loaded;
      proto::VerifierStats st = proto::parse_verifier_stats(load->log);
      r.insns_processed = st.insns_processed;
      r.total_states = st.total_states;
      r.peak_states = st.peak_states;
      r.verification_us = st.verification_us;
      r.stack_depth = st.stack_depth;
      r.verified_insns = load->verified_insns;
      r.xlated_bytes = load->xlated_bytes;
      r.jited_bytes = load->jited_bytes;
      r.load_ms = static_cast<double>(load->load_ns) / 1e6;
    }
    r.skip_reason = skip_reason(object, ps, facts);
    if (!r.skip_reason.empty()) {
      r.verdict = "skipped";
      out.push_back(std::move(r));
      continue;
    }

    // Load.
    if (!load) {
      fail_with(reason::verifier_reject,
                obs.load.error.empty() ? "the guest reported nothing about this program" : obs.load.error);
    } else if (!want.expect.loads) {
      if (load->loaded)
        fail_with(reason::unexpected_load, "loaded, but the spec expects the verifier to refuse it");
    } else if (!load->loaded) {
      const std::string why = classify_reject(*load, facts);
      std::string text = load->error.empty() ? "not loaded" : load->error;
      if (why == reason::lockdown_refused)
        text = "refused under lockdown=" + facts.lockdown_level + ": " + text;
      if (why == reason::btf_missing && !facts.kernel_btf && !facts.btf_file)
        text += " (the kernel has no BTF and no --btf was given)";
      else if (why == reason::btf_missing && facts.btf_file)
        text += " (the BTF file given with --btf)";
      if (std::string cause = verifier_cause(load->log); !cause.empty()) text += ": " + cause;
      r.log_tail = last_lines(load->log + (load->libbpf.empty() ? "" : "\n" + load->libbpf), 25);
      fail_with(why.c_str(), text);
    }

    const bool judged_further = load && load->loaded && want.expect.loads;
    // Attach.
    if (judged_further && want.attach == spec::AttachMode::auto_attach) {
      const proto::ProgramAttach* a = by_name(obs.attach.programs, name);
      r.attached = a && a->attached;
      if (a) r.attach_ms = a->ms;
      for (const auto& c : obs.detach.closes)
        if (c.program == name) r.detach_ms += c.ms;
      if (!want.expect.attaches) {
        if (r.attached)
          fail_with(reason::unexpected_attach, "attached, but the spec expects the attach to fail");
      } else if (!obs.attach_reached) {
        fail_with(reason::attach_failed, "the run ended before attaching");
      } else if (!r.attached) {
        fail_with(reason::attach_failed,
                  "attach: " + (a && !a->error.empty() ? a->error : std::string("failed")));
      }
    }
    const bool active = judged_further && want.expect.attaches &&
                        (want.attach != spec::AttachMode::auto_attach || r.attached) &&
                        want.attach != spec::AttachMode::load_only;

    // Triggers.
    if (active && want.trigger.kind != spec::TriggerKind::none) {
      if (!obs.trigger_reached) {
        fail_with(reason::did_not_fire, "the run ended before the triggers");
      } else {
        for (const auto& a : obs.trigger.actions) {
          if (a.kind == spec::trigger_kind_name(want.trigger.kind) && !a.error.empty())
            fail_with(reason::did_not_fire, "trigger " + a.kind + ": " + a.error);
        }
      }
    }
    // Run counts.
    if (const auto* runs = obs.drain_reached ? by_name(obs.drain.programs, name) : nullptr) {
      r.run_count = runs->run_cnt;
      r.run_time_ns = runs->run_time_ns;
    }
    std::optional<spec::MinCount> min_runs = want.expect.runs;
    if (!min_runs &&
        (want.trigger.kind != spec::TriggerKind::none || want.attach == spec::AttachMode::test_run))
      min_runs = spec::MinCount{true, 1};
    if (active && min_runs) {
      r.required_runs = min_runs->resolve(facts.count);
      if (!obs.drain_reached) {
        fail_with(reason::did_not_fire, "the run ended before the run counts were read");
      } else if (!obs.drain.stats_enabled) {
        fail_with(reason::did_not_fire, "the kernel's BPF run statistics could not be turned on");
      } else if (!r.run_count || *r.run_count < r.required_runs) {
        fail_with(reason::did_not_fire, strprintf("ran %llu times, needs %llu",
                                                  static_cast<unsigned long long>(r.run_count.value_or(0)),
                                                  static_cast<unsigned long long>(r.required_runs)));
      }
    }
    // Test run.
    if (active && want.attach == spec::AttachMode::test_run) {
      const proto::TestRunResult* t = nullptr;
      for (const auto& x : obs.trigger.test_runs)
        if (x.program == name) t = &x;
      if (t) r.retvals = t->retvals;
      if (!obs.trigger_reached || !t) {
        fail_with(reason::test_run_mismatch, "no test run was reported");
      } else if (!t->error.empty()) {
        fail_with(reason::test_run_mismatch, "test run: " + t->error);
      } else if (want.expect.retval &&
                 (t->retvals.size() != 1 || t->retvals.front() != *want.expect.retval)) {
        std::string seen;
        for (auto v : t->retvals) seen += (seen.empty() ? "" : ", ") + std::to_string(v);
        fail_with(reason::test_run_mismatch, strprintf("test run returned %s, expected %lld", seen.c_str(),
                                                       static_cast<long long>(*want.expect.retval)));
      }
    }
    // Ring buffer records.
    if (active && want.expect.records) {
      const auto& re = *want.expect.records;
      r.required_records = re.min.resolve(facts.count);
      std::size_t ring_index = obs.drain.rings.size();
      for (std::size_t i = 0; i < obs.drain.rings.size(); ++i)
        if (obs.drain.rings[i].name == re.ring) ring_index = i;
      const std::string nonce = re.nonce ? encoded_nonce(facts.nonce, re.nonce->encoding) : std::string();
      for (const auto& rec : obs.records) {
        if (rec.ring != ring_index) continue;
        if (re.where && !record_matches(rec.bytes, *re.where)) continue;
        ++r.records;
        bool own = std::all_of(re.agent_pid_at.begin(), re.agent_pid_at.end(), [&](std::uint32_t off) {
          return facts.agent_pid > 0 && u32_at_equals(rec.bytes, off, facts.agent_pid);
        });
        if (re.nonce && !facts.nonce.empty() && own && has_at(rec.bytes, re.nonce->offset, nonce))
          ++r.nonce_records;
      }
      if (!obs.drain_reached) {
        fail_with(reason::records_missing, "the run ended before the ring buffers were drained");
      } else if (ring_index == obs.drain.rings.size()) {
        fail_with(reason::records_missing, "the guest reported no ring buffer '" + re.ring + "'");
      } else if (r.records < r.required_records) {
        fail_with(reason::records_missing,
                  strprintf("%llu records in '%s', needs %llu", static_cast<unsigned long long>(r.records),
                            re.ring.c_str(), static_cast<unsigned long long>(r.required_records)));
      } else if (re.nonce && r.nonce_records < r.required_records) {
        fail_with(reason::nonce_missing, strprintf("%llu of %llu records carry this run's nonce, needs %llu",
                                                   static_cast<unsigned long long>(r.nonce_records),
                                                   static_cast<unsigned long long>(r.records),
                                                   static_cast<unsigned long long>(r.required_records)));
      }
    }
    // A nonce in a map's values.
    if (active && want.expect.map_nonce) {
      const auto& mn = *want.expect.map_nonce;
      const std::string nonce = encoded_nonce(facts.nonce, mn.at.encoding);
      bool found = false;
      const proto::MapValues* mv = by_name(obs.drain.maps, mn.map);
      if (mv && !facts.nonce.empty()) {
        for (const auto& hex : mv->values_hex) {
          auto bytes = proto::from_hex(hex);
          if (bytes && has_at(*bytes, mn.at.offset, nonce)) found = true;
        }
      }
      if (!found) {
        fail_with(reason::nonce_missing, "no value of map '" + mn.map + "' carries this run's nonce" +
                                             (mv && !mv->error.empty() ? " (" + mv->error + ")" : ""));
      }
    }
    // Anything of it the kernel still holds after detach.
    if (load && load->loaded && obs.detach.reported) {
      bool leaked_prog =
          load->prog_id != 0 && std::find(obs.detach.left_programs.begin(), obs.detach.left_programs.end(),
                                          load->prog_id) != obs.detach.left_programs.end();
      const proto::ProgramAttach* a = by_name(obs.attach.programs, name);
      bool leaked_link = a && a->link_id != 0 &&
                         std::find(obs.detach.left_links.begin(), obs.detach.left_links.end(), a->link_id) !=
                             obs.detach.left_links.end();
      if (leaked_prog || leaked_link)
        fail_with(reason::leaked, std::string("still held by the kernel after detach: ") +
                                      (leaked_prog ? "its program" : "") +
                                      (leaked_prog && leaked_link ? " and " : "") +
                                      (leaked_link ? "its link" : ""));
    } else if (load && load->loaded && !obs.detach.reported) {
      fail_with(reason::leaked, "the agent reported nothing about what it left behind");
    }

    for (const auto& p : problems) r.error += (r.error.empty() ? "" : "; ") + p;
    r.verdict = problems.empty() ? "pass" : "fail";
    out.push_back(std::move(r));
  }
  return out;
}

namespace {

const proto::KernelProgram* kernel_program(const std::vector<proto::KernelProgram>& seen, std::uint32_t id) {
  for (const auto& p : seen)
    if (p.id == id) return &p;
  return nullptr;
}

}  // namespace

std::vector<report::ProgramResult> judge_loader(const spec::LoaderSpec& loader, const LoaderObservation& obs,
                                                const RunFacts& facts) {
  std::vector<report::ProgramResult> out;
  for (const auto& want : loader.programs) {
    report::ProgramResult r;
    r.object = "loader";
    r.name = want.name;
    r.type = want.type;
    r.attach = "loader";
    std::vector<std::string> problems;
    auto fail_with = [&](const char* why, std::string text) {
      if (std::find(r.reasons.begin(), r.reasons.end(), why) == r.reasons.end()) r.reasons.push_back(why);
      problems.push_back(std::move(text));
    };
    const std::string kernel_name = want.name.substr(0, 15);
    const proto::KernelProgram* k = nullptr;
    for (const auto& p : obs.start.programs)
      if (p.name == kernel_name && p.type == want.type && (!k || (k->links.empty() && !p.links.empty())))
        k = &p;

    if (!obs.start_reached || !obs.start.started) {
      fail_with(reason::never_loaded, obs.start.error.empty()
                                          ? "the run ended before the loader started"
                                          : "the loader did not start: " + obs.start.error);
    } else if (!k) {
      std::string text = "the loader never loaded it (no " + want.type + " program named '" + kernel_name +
                         "' in the kernel " +
                         (obs.start.exited  ? std::string("before the loader exited")
                          : obs.start.ready ? std::string("when it was ready")
                                            : strprintf("within %.0f s", loader.ready_timeout_s)) +
                         ")";
      fail_with(reason::never_loaded, text);
    }
    if (k) {
      r.loaded = true;
      r.attached = !k->links.empty();
      r.verified_insns = k->verified_insns;
      // The kernel keeps the verifier's processed-instruction count as verified_insns (5.16+).
      if (k->verified_insns) r.insns_processed = *k->verified_insns;
      r.xlated_bytes = k->xlated_bytes;
      r.jited_bytes = k->jited_bytes;
      if (want.attached && !r.attached)
        fail_with(reason::attach_failed, "loaded, but never attached (no link)");
      if (r.attached && !want.link.empty() &&
          std::none_of(k->links.begin(), k->links.end(),
                       [&](const proto::KernelLink& l) { return l.type == want.link; })) {
        std::string types;
        for (const auto& l : k->links) types += (types.empty() ? "" : ", ") + l.type;
        fail_with(reason::attach_failed, "attached by " + types + ", not by a " + want.link + " link");
      }
      if (r.attached && !want.target.empty() &&
          std::none_of(k->links.begin(), k->links.end(), [&](const proto::KernelLink& l) {
            return l.target.find(want.target) != std::string::npos;
          })) {
        std::string targets;
        for (const auto& l : k->links)
          targets += (targets.empty() ? "" : ", ") + (l.target.empty() ? "(not said)" : l.target);
        fail_with(reason::attach_failed, "attached to " + targets + ", not to " + want.target);
      }
    }
    if (obs.start_reached && obs.start.exited) {
      const auto last = last_lines(obs.start.output, 1);
      fail_with(reason::loader_exited,
                "the loader ended before it was stopped (it " + describe_status(obs.start.status) +
                    "): " + (last.empty() ? std::string() : last.back().substr(0, 300)));
    }
    // Runs: the kernel's count over the triggers. A program that is not there, or not attached, has
    // its reason already; the triggers only run once every program is.
    const bool in_place = k && (!want.attached || r.attached);
    if (in_place && want.runs && !obs.start.ready) {
      fail_with(reason::did_not_fire,
                "not triggered: the loader was not ready (another program was missing)");
    } else if (in_place && want.runs) {
      r.required_runs = want.runs->resolve(facts.count);
      const proto::KernelProgram* after =
          obs.stats_reached ? kernel_program(obs.stats.programs, k->id) : nullptr;
      if (after) r.run_count = after->run_count - std::min(after->run_count, k->run_count);
      if (after) r.run_time_ns = after->run_time_ns - std::min(after->run_time_ns, k->run_time_ns);
      if (!obs.trigger_reached || !obs.stats_reached) {
        fail_with(reason::did_not_fire, "the run ended before the triggers");
      } else if (!after) {
        fail_with(reason::did_not_fire, "gone from the kernel before its run count was read");
      } else if (*r.run_count < r.required_runs) {
        fail_with(reason::did_not_fire, strprintf("ran %llu times over the triggers, needs %llu",
                                                  static_cast<unsigned long long>(*r.run_count),
                                                  static_cast<unsigned long long>(r.required_runs)));
      }
      for (const auto& a : obs.trigger.actions) {
        if (a.kind == spec::trigger_kind_name(want.trigger.kind) && !a.error.empty())
          fail_with(reason::did_not_fire, "trigger " + a.kind + ": " + a.error);
      }
    }
    // Whatever it created must be gone once it was stopped.
    if (k && !loader.pins) {
      if (!obs.stop_reached) {
        fail_with(reason::leaked, "the run ended before the loader was stopped");
      } else {
        const auto& left = obs.stop.left_programs;
        bool prog = std::find(left.begin(), left.end(), k->id) != left.end();
        bool link = std::any_of(k->links.begin(), k->links.end(), [&](const proto::KernelLink& l) {
          return std::find(obs.stop.left_links.begin(), obs.stop.left_links.end(), l.id) !=
                 obs.stop.left_links.end();
        });
        if (prog || link)
          fail_with(reason::leaked, std::string("still held by the kernel after the loader was stopped: ") +
                                        (prog ? "its program" : "") + (prog && link ? " and " : "") +
                                        (link ? "its link" : ""));
      }
    }
    // A replayer can print the right words, but not this run's nonce.
    if (loader.wants_nonce() && obs.start_reached && obs.start.started) {
      const proto::LoaderResponse& last = obs.stop_reached    ? obs.stop
                                          : obs.stats_reached ? obs.stats
                                                              : obs.start;
      const std::string where = loader.nonce_in_output       ? "the loader's output"
                                : !loader.nonce_file.empty() ? "the file " + loader.nonce_file
                                                             : "the pinned map " + loader.nonce_map;
      if (!last.nonce_seen) fail_with(reason::nonce_missing, "this run's nonce never appeared in " + where);
    }
    for (const auto& p : problems) r.error += (r.error.empty() ? "" : "; ") + p;
    r.verdict = problems.empty() ? "pass" : "fail";
    out.push_back(std::move(r));
  }
  return out;
}

RunJudgement judge_run(const std::vector<report::ProgramResult>& programs,
                       const std::vector<std::string>& problems) {
  RunJudgement j;
  std::vector<std::string> all;
  std::size_t judged = 0;
  for (const auto& p : programs) {
    if (p.verdict == "skipped") continue;
    ++judged;
    if (p.verdict != "pass") {
      std::string reasons;
      for (const auto& r : p.reasons) reasons += (reasons.empty() ? "" : ",") + r;
      all.push_back(p.name + " [" + reasons + "]: " + p.error);
    }
  }
  if (judged == 0)
    all.insert(all.begin(), "no program was judged (every program was skipped, or none was found)");
  all.insert(all.end(), problems.begin(), problems.end());
  j.verdict = all.empty() ? FailureClass::pass : FailureClass::gate_failed;
  for (const auto& p : all) j.message += (j.message.empty() ? "" : "; ") + p;
  return j;
}

}  // namespace kgate::run

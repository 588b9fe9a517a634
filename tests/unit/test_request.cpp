#include <doctest/doctest.h>

#include "core/files.hpp"
#include "run/request.hpp"

using namespace kgate;
using nlohmann::json;

namespace {
run::RunRequest sample() {
  run::RunRequest r;
  r.name = "debian-6.1-integrity";
  r.entry = "debian-6.1";
  r.spec = "/repo/ci/ebpf-gate.json";
  r.catalog = "/repo/kernels/catalog.json";
  r.arch = vm::Arch::x86_64;
  r.count = 3;
  r.lockdown = run::Lockdown::integrity;
  r.request_timeout_s = 30;
  r.append = {"rcupdate.rcu_expedited=1"};
  r.out_dir = "/tmp/out";
  r.exec = "/repo/dist/agent";
  r.exec_args = std::vector<std::string>{"--config", "/etc/agent.yaml"};
  r.files = {{"/repo/ci/agent.yaml", "/etc/agent.yaml"}};
  r.sysroots = {"/opt/sysroot-arm64"};
  return r;
}
}  // namespace

TEST_CASE("request: what decides a run goes to JSON and back, and nothing else") {
  json j = run::request_json(sample());
  CHECK(j["schema"] == "kgate.request/1");
  CHECK(j["lockdown"] == "integrity");
  CHECK(j["arch"] == "x86_64");
  CHECK(j["boot_timeout_s"].is_null());
  CHECK_FALSE(j.contains("out_dir"));  // where results go belongs to the invocation
  auto back = run::request_from_json(j, "r.json");
  REQUIRE_MESSAGE(back.has_value(), back.error().describe());
  CHECK(run::request_json(*back) == j);
  CHECK(back->out_dir.empty());
  CHECK(back->lockdown == run::Lockdown::integrity);
  CHECK(back->count == 3);
  CHECK(back->request_timeout_s == 30);
  CHECK_FALSE(back->boot_timeout_s.has_value());
  CHECK(back->exec == "/repo/dist/agent");
  CHECK(back->exec_args == std::vector<std::string>{"--config", "/etc/agent.yaml"});
  REQUIRE(back->files.size() == 1);
  CHECK(back->files[0].dest == "/etc/agent.yaml");
  CHECK(back->sysroots == std::vector<fs::path>{"/opt/sysroot-arm64"});

  // A request written before the loader's keys existed still reads, with none of them.
  json older = j;
  for (const char* key : {"exec", "exec_args", "files", "sysroots"}) older.erase(key);
  auto old = run::request_from_json(older, "old.json");
  REQUIRE_MESSAGE(old.has_value(), old.error().describe());
  CHECK(old->exec.empty());
  CHECK_FALSE(old->exec_args.has_value());

  // Relative paths are made absolute: the request means the same from any directory.
  run::RunRequest rel;
  rel.spec = "ci/gate.json";
  CHECK(fs::path(run::request_json(rel)["spec"].get<std::string>()).is_absolute());
}

TEST_CASE("request: a request kgate would not make is refused, naming the key") {
  json good = run::request_json(sample());
  auto with = [&](const char* key, json v) {
    json d = good;
    d[key] = std::move(v);
    return d;
  };
  json missing = good;
  missing.erase("count");
  struct Row {
    json doc;
    const char* message;
  };
  const Row rows[] = {
      {with("schema", "kgate.request/2"), "schema: must be \"kgate.request/1\""},
      {with("colour", "red"), "unknown key \"colour\""},
      {missing, "missing key \"count\""},
      {with("count", 0), "count: must be an integer from 1 to 1000"},
      {with("count", "8"), "count: must be an integer"},
      {with("spec", "relative.json"), "spec: must be an absolute path"},
      {with("arch", "riscv64"), "arch: must be null, \"x86_64\" or \"arm64\""},
      {with("lockdown", "full"), "lockdown: must be none, integrity or confidentiality"},
      {with("append", "a b"), "append: must be an array of strings"},
      {with("boot_timeout_s", -1), "boot_timeout_s: must be null or seconds"},
      {with("kernel", "/boot/vmlinuz"), "entry and kernel exclude each other"},
      {with("files", json::array({{{"source", "rel"}, {"dest", "/x"}}})), "files: each must be"},
      {with("exec_args", "--flag"), "exec_args: must be an array of strings"},
      {with("sysroots", json::array({"rel"})), "sysroots: must be absolute"},
      {json::array(), "a request is a JSON object"},
  };
  for (const auto& row : rows) {
    auto r = run::request_from_json(row.doc, "r.json");
    REQUIRE_MESSAGE(!r.has_value(), row.message);
    CHECK(r.error().cls() == FailureClass::usage);
    CHECK_MESSAGE(r.error().describe().find(row.message) != std::string::npos, r.error().describe());
  }
}

TEST_CASE("request: read from a request file, or from the receipt that recorded it") {
  auto tmp = TempDir::create("kgate-request");
  REQUIRE(tmp.has_value());
  json req = run::request_json(sample());
  REQUIRE(write_file_atomic(tmp->path() / "request.json", req.dump()).has_value());
  auto a = run::read_request(tmp->path() / "request.json");
  REQUIRE_MESSAGE(a.has_value(), a.error().describe());
  CHECK(a->name == "debian-6.1-integrity");
  json receipt = {{"schema", "kgate.receipt/2"}, {"verdict", "fail"}, {"request", req}};
  REQUIRE(write_file_atomic(tmp->path() / "receipt.json", receipt.dump()).has_value());
  auto b = run::read_request(tmp->path() / "receipt.json");
  REQUIRE_MESSAGE(b.has_value(), b.error().describe());
  CHECK(run::request_json(*b) == req);
  // A file is read strictly: a key given twice is refused with its line.
  std::string twice = req.dump();
  twice.insert(1, "\"count\": 9,\n");
  REQUIRE(write_file_atomic(tmp->path() / "twice.json", twice).has_value());
  auto d = run::read_request(tmp->path() / "twice.json");
  REQUIRE_FALSE(d.has_value());
  CHECK(d.error().describe().find("appears twice") != std::string::npos);
  receipt.erase("request");
  REQUIRE(write_file_atomic(tmp->path() / "old.json", receipt.dump()).has_value());
  auto c = run::read_request(tmp->path() / "old.json");
  REQUIRE_FALSE(c.has_value());
  CHECK(c.error().describe().find("recorded no request") != std::string::npos);
}

#include <doctest/doctest.h>

#include <poll.h>
#include <sys/wait.h>

#include <set>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/subprocess.hpp"
#include "kernel/cache.hpp"

using namespace kgate;

TEST_CASE("every failure class has its own exit code; only pass is 0") {
  std::set<int> codes;
  const FailureClass all[] = {
      FailureClass::pass,         FailureClass::gate_failed,     FailureClass::usage,
      FailureClass::kernel_panic, FailureClass::boot_hang,       FailureClass::timeout,
      FailureClass::infra,        FailureClass::digest_mismatch, FailureClass::lockdown_mismatch,
      FailureClass::agent_crash,  FailureClass::no_verdict,      FailureClass::interrupted};
  for (auto c : all) {
    CAPTURE(class_name(c));
    CHECK(codes.insert(exit_code(c)).second);
    CHECK((exit_code(c) == 0) == (c == FailureClass::pass));
  }
}

TEST_CASE("errors chain context from the outside in") {
  Error e(FailureClass::timeout, "timed out after 30 s");
  e.context("connect virtio-serial").context("boot debian-6.1");
  CHECK(e.describe() == "boot debian-6.1: connect virtio-serial: timed out after 30 s");
  CHECK(e.cls() == FailureClass::timeout);
}

TEST_CASE("sha256 of known vectors") {
  CHECK(sha256_hex(std::string_view("")) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex(std::string_view("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("run_capture returns output and status; a deadline ends a hung child") {
  auto cap = run_capture({"sh", "-c", "echo out; echo err >&2; exit 3"}, Deadline(std::chrono::seconds(10)));
  REQUIRE(cap.has_value());
  CHECK(cap->out == "out\n");
  CHECK(cap->err == "err\n");
  CHECK(WEXITSTATUS(cap->status) == 3);

  auto start = Clock::now();
  auto hung = run_capture({"sleep", "30"}, Deadline(std::chrono::milliseconds(200)));
  REQUIRE_FALSE(hung.has_value());
  CHECK(hung.error().cls() == FailureClass::timeout);
  CHECK(seconds_since(start) < 10);

  auto missing = run_capture({"/nonexistent/program"}, Deadline(std::chrono::seconds(5)));
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().describe().find("exec /nonexistent/program") != std::string::npos);
}

TEST_CASE("a Child that ignores SIGTERM is killed after its grace period and reaped") {
  auto tmp = TempDir::create("kgate-test");
  REQUIRE(tmp.has_value());
  fs::path ready = tmp->path() / "ready";
  auto child = Child::spawn({"sh", "-c", "trap '' TERM; touch " + ready.string() + "; sleep 30"});
  REQUIRE(child.has_value());
  // Signal only once the trap is in place, or the test would race the shell.
  for (int i = 0; i < 500 && !fs::exists(ready); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(fs::exists(ready));
  int status = child->terminate(std::chrono::milliseconds(200));
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}

namespace {

// The live members of process group `pgrp`, read from /proc (a zombie is dead: it only waits to be
// reaped, by init once its parent is gone).
std::vector<pid_t> live_members(pid_t pgrp) {
  std::vector<pid_t> found;
  for (const auto& ent : fs::directory_iterator("/proc")) {
    const std::string name = ent.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (auto st = read_proc_stat(pid); st && st->pgrp == pgrp && st->state != 'Z') found.push_back(pid);
  }
  return found;
}

}  // namespace

TEST_CASE("a Child's process group ends with it, even when its leader has already exited") {
  // A QEMU wrapper that starts QEMU in the background and exits: the leader is gone (and, once
  // waited for, reaped) before anything signals its group.
  auto tmp = TempDir::create("kgate-test");
  REQUIRE(tmp.has_value());
  const fs::path pidfile = tmp->path() / "sleeper";
  auto child = Child::spawn({"sh", "-c",
                             "sleep 300 & echo $! > " + pidfile.string() + ".tmp && mv " + pidfile.string() +
                                 ".tmp " + pidfile.string() + "; exit 0"});
  REQUIRE(child.has_value());
  const pid_t pgrp = child->pid();
  SUBCASE("waited for") {
    auto st = child->wait(Deadline(std::chrono::seconds(30)));
    REQUIRE(st.has_value());
    CHECK(WIFEXITED(*st));
  }
  SUBCASE("destroyed once exited") {
    pollfd p = {child->pidfd(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 30000) == 1);
    Child gone = std::move(*child);
  }
  SUBCASE("terminated once exited") {
    pollfd p = {child->pidfd(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 30000) == 1);
    CHECK(WIFEXITED(child->terminate(std::chrono::seconds(2))));
  }
  const std::string sleeper = read_file(pidfile).value_or("");
  REQUIRE_FALSE(sleeper.empty());
  // SIGKILL takes effect asynchronously: allow it a generous moment, as a loaded machine needs.
  std::vector<pid_t> left = live_members(pgrp);
  for (int i = 0; i < 500 && !left.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    left = live_members(pgrp);
  }
  CHECK_MESSAGE(left.empty(), "process group " << pgrp << " still has " << left.size() << " live member(s)");
  for (pid_t pid : left) ::kill(pid, SIGKILL);  // the test's own sleeper, by its pid
}

TEST_CASE("cache: a blob whose bytes changed is refused as digest_mismatch") {
  auto tmp = TempDir::create("kgate-test");
  REQUIRE(tmp.has_value());
  auto cache = kernel::Cache::open(tmp->path() / "cache");
  REQUIRE(cache.has_value());
  auto sha = cache->put_blob("kernel bytes");
  REQUIRE(sha.has_value());
  auto ok = cache->verified_blob(*sha);
  REQUIRE(ok.has_value());
  CHECK(read_file(*ok).value() == "kernel bytes");

  // Same size, other bytes: the seal no longer matches (ctime moved), so it is hashed again.
  REQUIRE(write_file_atomic(*ok, "kernel bytez").has_value());
  auto bad = cache->verified_blob(*sha);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().cls() == FailureClass::digest_mismatch);
  CHECK(bad.error().describe().find("refusing to use it") != std::string::npos);

  CHECK(cache->verified_blob("nothex").error().cls() == FailureClass::usage);
  CHECK_FALSE(cache->get_ref("vmlinux", "absent").value().has_value());
  REQUIRE(cache->set_ref("vmlinux", "k", *sha).has_value());
  CHECK(cache->get_ref("vmlinux", "k").value().value() == *sha);
}

TEST_CASE("exit codes: docs/exit-codes.md holds the table kgate help exit-codes prints") {
  const char* root = std::getenv("KGATE_SOURCE_ROOT");
  REQUIRE(root != nullptr);
  auto doc = kgate::read_file(std::filesystem::path(root) / "docs" / "exit-codes.md");
  REQUIRE(doc.has_value());
  const std::string table = kgate::exit_code_table();
  CHECK(table.find("| 130 | `interrupted` |") != std::string::npos);
  CHECK_MESSAGE(doc->find(table) != std::string::npos,
                "docs/exit-codes.md's table differs from harness/core/error.cpp's; it must read:\n"
                    << table);
}

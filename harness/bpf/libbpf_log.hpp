// libbpf reports through one process-wide print callback. While a LibbpfLog lives, libbpf's
// messages are collected in it instead of going to stderr, so that a caller can put them in an
// Error's context (or drop them: a malformed .BTF in a release directory is reported once, by
// kgate). Instances are serialized by a process-wide mutex, held for their lifetime.
#pragma once

#include <mutex>
#include <string>

#include <bpf/libbpf.h>

namespace kgate::bpf {

class LibbpfLog {
 public:
  LibbpfLog();
  ~LibbpfLog();
  LibbpfLog(const LibbpfLog&) = delete;
  LibbpfLog& operator=(const LibbpfLog&) = delete;

  // The messages so far, warnings only, each line as libbpf wrote it.
  const std::string& text() const;

 private:
  std::unique_lock<std::mutex> lock_;
  libbpf_print_fn_t previous_;
};

}  // namespace kgate::bpf

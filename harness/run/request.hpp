// A run request as data: what `kgate run` boots, with what and under which spec, serializable so
// that a receipt records the request it answered, and a matrix entry's child (or a person
// repeating a run) receives a request rather than a re-spelled command line.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "core/error.hpp"
#include "core/files.hpp"
#include "run/run.hpp"

namespace kgate::run {

inline constexpr std::string_view request_schema = "kgate.request/1";

// Everything that decides what runs, paths made absolute; not where the results go (out_dir) or
// where the cache lives (cache_root): those belong to the machine running it. Deterministic:
// keys sorted, unset options null.
nlohmann::json request_json(const RunRequest& r);

// The inverse. Strict: the schema, every key and each value's type (class usage, naming `origin`
// and the key), so that a request that says something kgate would not do is refused, not guessed.
// out_dir and cache_root are left empty.
Result<RunRequest> request_from_json(const nlohmann::json& j, std::string_view origin);

// A request file: a request.json, or a receipt.json, whose "request" is the one it answered.
Result<RunRequest> read_request(const fs::path& file);

}  // namespace kgate::run

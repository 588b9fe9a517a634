#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kgate::channel {

// Reading what the guest sent. The guest is not trusted: a field may be missing
// or of the wrong type, and nlohmann's value() would throw on the latter. These
// never throw; a wrong type reads as absent.
std::string get_string(const nlohmann::json& j, std::string_view key, std::string fallback = {});
bool get_bool(const nlohmann::json& j, std::string_view key, bool fallback = false);
std::optional<std::int64_t> get_int(const nlohmann::json& j, std::string_view key);
std::optional<double> get_number(const nlohmann::json& j, std::string_view key);
// The array at `key`, or an empty array.
const nlohmann::json& get_array(const nlohmann::json& j, std::string_view key);
// The strings of the array at `key` (other elements skipped), at most `cap` of them, each cut to
// `max_bytes`.
std::vector<std::string> get_strings(const nlohmann::json& j, std::string_view key,
                                     std::size_t cap = SIZE_MAX, std::size_t max_bytes = SIZE_MAX);

}  // namespace kgate::channel

#include "channel/fields.hpp"

namespace kgate::channel {
namespace {
const nlohmann::json* field(const nlohmann::json& j, std::string_view key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}
}  // namespace

std::string get_string(const nlohmann::json& j, std::string_view key, std::string fallback) {
  const auto* f = field(j, key);
  return f && f->is_string() ? f->get<std::string>() : fallback;
}

bool get_bool(const nlohmann::json& j, std::string_view key, bool fallback) {
  const auto* f = field(j, key);
  return f && f->is_boolean() ? f->get<bool>() : fallback;
}

std::optional<std::int64_t> get_int(const nlohmann::json& j, std::string_view key) {
  const auto* f = field(j, key);
  if (!f) return std::nullopt;
  if (f->is_number_unsigned()) {
    auto v = f->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<std::int64_t>(v);
  }
  if (f->is_number_integer()) return f->get<std::int64_t>();
  return std::nullopt;
}

std::optional<double> get_number(const nlohmann::json& j, std::string_view key) {
  const auto* f = field(j, key);
  return f && f->is_number() ? std::optional<double>(f->get<double>()) : std::nullopt;
}

const nlohmann::json& get_array(const nlohmann::json& j, std::string_view key) {
  static const nlohmann::json empty = nlohmann::json::array();
  const auto* f = field(j, key);
  return f && f->is_array() ? *f : empty;
}

std::vector<std::string> get_strings(const nlohmann::json& j, std::string_view key, std::size_t cap,
                                     std::size_t max_bytes) {
  std::vector<std::string> out;
  for (const auto& e : get_array(j, key)) {
    if (out.size() >= cap) break;
    if (e.is_string()) out.push_back(e.get_ref<const std::string&>().substr(0, max_bytes));
  }
  return out;
}

}  // namespace kgate::channel

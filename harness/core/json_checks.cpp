#include "json_checks.hpp"

namespace kgate {

Status only_keys(const nlohmann::json& obj, std::initializer_list<std::string_view> allowed,
                 const std::string& where) {
  for (const auto& [key, _] : obj.items()) {
    bool ok = false;
    for (auto a : allowed) ok = ok || key == a;
    if (!ok) return fail(FailureClass::usage, where + ": unknown key '" + key + "'");
  }
  return {};
}

}  // namespace kgate

#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "error.hpp"

namespace kgate {

// Checks for kgate's own JSON files (catalog, console patterns): an unknown key
// is an error (class usage) naming where, so a typo never drops a setting silently.
Status only_keys(const nlohmann::json& obj, std::initializer_list<std::string_view> allowed,
                 const std::string& where);

}  // namespace kgate

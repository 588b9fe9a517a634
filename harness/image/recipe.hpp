// Guest image recipes (images/*.json, "schema": "kgate.image/1"): what goes into an initramfs,
// as data, expanded into cpio entries with the inputs of one run.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "image/cpio.hpp"

namespace kgate::image {

struct RecipeInputs {
  std::map<std::string, std::string, std::less<>> files;     // named inputs ("agent") -> bytes
  std::vector<std::pair<std::string, std::string>> modules;  // name, bytes (decompressed), in load order
};

// The entries a recipe makes from `inputs` (images/README.md says the format). A malformed recipe,
// an unknown key or type, a "from" that names no input, or entries check_entries refuses, are class
// usage naming `origin` and the entry.
Result<std::vector<CpioEntry>> expand_recipe(std::string_view recipe, const RecipeInputs& inputs,
                                             std::string_view origin);

}  // namespace kgate::image

// Guest image recipes (images/*.json, "schema": "kgate.image/1"): what goes into an initramfs,
// as data, expanded into cpio entries with the inputs of one run.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "image/cpio.hpp"

namespace kgate::image {

// A file a run adds to the guest beside a recipe's (the files a spec or --exec ships).
struct GuestFile {
  std::string path;  // absolute guest path
  std::uint32_t mode = 0644;
  std::string data;
};

// A "program" entry's executable, read from the recipe's packages, with its library closure.
struct RecipeProgram {
  std::string data;
  std::vector<GuestFile> libraries;  // at the guest paths the dynamic linker looks in
};

struct RecipeInputs {
  std::map<std::string, std::string, std::less<>> files;       // named inputs ("agent") -> bytes
  std::vector<std::pair<std::string, std::string>> modules;    // name, bytes (decompressed), in load order
  std::map<std::string, RecipeProgram, std::less<>> programs;  // by the entry's "from"
};

// What a recipe draws on beyond its own text: the Debian packages ("packages") whose files its
// "program" entries take (each entry's "from", a path in the packages' unpacked tree).
struct RecipeNeeds {
  std::vector<std::string> packages;
  std::vector<std::string> programs;
};
Result<RecipeNeeds> recipe_needs(std::string_view recipe, std::string_view origin);

// The entries a recipe makes from `inputs` (images/README.md says the format). A malformed recipe,
// an unknown key or type, a "from" that names no input, or entries check_entries refuses, are class
// usage naming `origin` and the entry.
Result<std::vector<CpioEntry>> expand_recipe(std::string_view recipe, const RecipeInputs& inputs,
                                             std::string_view origin);

// The entries of a generic file list: each file and every directory on its way (0755), sorted
// out by write_cpio. A path that is not absolute and canonical, or two files at one path, is class
// usage naming it.
Result<std::vector<CpioEntry>> file_list_entries(const std::vector<GuestFile>& files);

}  // namespace kgate::image

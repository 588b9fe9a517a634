#include "cli/common.hpp"

#include "cli/commands.hpp"

#include <ctime>
#include <iostream>

#include "core/error.hpp"
#include "core/files.hpp"

namespace kgate::cli {

namespace fs = std::filesystem;

int usage_error(const std::string& msg) {
  std::cerr << "kgate: " << msg << "\n\n" << usage_text();
  return exit_code(FailureClass::usage);
}

bool valid_timeout(double s) {
  return s > 0 && s <= 86400;
}

int input_error(const Error& e) {
  std::cerr << "kgate: " << e.describe() << "\n";
  return exit_code(e.cls());
}

namespace {

// cxxopts says "Argument 'nan' failed to parse" (its quotes may be typographic) without the
// option: the option is found on the command line, as "--opt VALUE", "--opt=VALUE", "-o VALUE"
// or "-oVALUE", the last one given.
std::string bad_value_message(const std::string& what, int argc, char** argv) {
  const std::string prefix = "Argument ", suffix = " failed to parse";
  if (!what.starts_with(prefix) || !what.ends_with(suffix)) return what;
  std::string value = what.substr(prefix.size(), what.size() - prefix.size() - suffix.size());
  for (const std::string_view quote : {"\u2018", "\u2019", "'"}) {
    if (value.starts_with(quote)) value.erase(0, quote.size());
    if (value.ends_with(quote)) value.erase(value.size() - quote.size());
  }
  for (int i = argc - 1; i >= 1; --i) {
    const std::string_view arg = argv[i];
    std::string option;
    if (arg.starts_with("--") && arg.find('=') != std::string_view::npos &&
        arg.substr(arg.find('=') + 1) == value) {
      option = arg.substr(0, arg.find('='));
    } else if (arg == value && i > 1 && argv[i - 1][0] == '-' && argv[i - 1][1] != '\0') {
      option = argv[i - 1];
    } else if (arg.size() > 2 && arg[0] == '-' && arg[1] != '-' && arg.substr(2) == value) {
      option = arg.substr(0, 2);
    }
    if (!option.empty()) return option + ": '" + value + "' is not a valid value";
  }
  return "'" + value + "' is not a valid value for its option";
}

}  // namespace

std::optional<int> parse_args(cxxopts::Options& opts, int argc, char** argv, cxxopts::ParseResult& args) {
  try {
    args = opts.parse(argc, argv);
  } catch (const cxxopts::exceptions::incorrect_argument_type& e) {
    return usage_error(bad_value_message(e.what(), argc, argv));
  } catch (const cxxopts::exceptions::exception& e) {
    return usage_error(e.what());
  }
  if (args.count("help")) {
    std::cout << opts.help();
    return 0;
  }
  if (!args.unmatched().empty()) return usage_error("unexpected argument '" + args.unmatched().front() + "'");
  return std::nullopt;
}

void add_positional_words(cxxopts::Options& opts) {
  opts.add_options()("words", "", cxxopts::value<std::vector<std::string>>());
  opts.parse_positional({"words"});
}

std::vector<std::string> positional_words(const cxxopts::ParseResult& args) {
  return args.count("words") ? args["words"].as<std::vector<std::string>>() : std::vector<std::string>{};
}

fs::path self_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path(".") : p.parent_path();
}

fs::path find_project_file(const std::string& given, const char* env_name, const fs::path& rel) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv(env_name); env && *env) return env;
  for (const fs::path& p : {rel, self_dir() / ".." / rel, fs::path(KGATE_DATA_DIR) / rel}) {
    if (path_exists(p)) return p;
  }
  // A package's kgate is built with no source tree to fall back to (meson -Dsource_tree=false).
  if (const fs::path source = KGATE_SOURCE_ROOT; !source.empty() && path_exists(source / rel))
    return source / rel;
  return rel;
}

fs::path find_catalog(const std::string& given) {
  return find_project_file(given, "KGATE_CATALOG", fs::path("kernels") / "catalog.json");
}
fs::path data_dir() {
  return KGATE_DATA_DIR;
}

fs::path find_matrix(const std::string& given) {
  return find_project_file(given, "KGATE_MATRIX", fs::path("kernels") / "matrix.json");
}

std::string timestamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

}  // namespace kgate::cli

// Text made of the commands' option tables: kgate --help, the man pages and the bash completion.
// Nothing here is kept by hand beside the tables; meson runs `kgate help man` and `kgate help
// completion` at build time and installs what they print.
#include <map>
#include <sstream>

#include "cli/commands.hpp"
#include "core/error.hpp"

namespace kgate::cli {

namespace {

// cxxopts keeps an Options' description to itself; its help text starts with it.
std::string description(const cxxopts::Options& opts) {
  const std::string help = opts.help({}, true);
  const auto usage = help.find("\nUsage:\n");
  return usage == std::string::npos ? std::string() : help.substr(0, usage);
}

// What follows the program name on the usage line ("[OPTION...] run FILE").
std::string synopsis_tail(const cxxopts::Options& opts) {
  const std::string help = opts.help({}, true);
  const std::string mark = "\nUsage:\n  " + opts.program();
  const auto at = help.find(mark);
  if (at == std::string::npos) return "";
  const auto start = at + mark.size();
  const std::string tail = help.substr(start, help.find('\n', start) - start);
  return tail.substr(std::min(tail.find_first_not_of(' '), tail.size()));
}

// Text as troff shows it: backslashes and hyphens escaped, no line taken for a request.
std::string roff(std::string_view text) {
  std::string out;
  bool line_start = true;
  for (char c : text) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-') {
      out += "\\-";
    } else {
      out += c;
    }
    line_start = c == '\n';
  }
  return out;
}

// The options --help lists: not the ones that take positional words (cxxopts hides those).
std::vector<cxxopts::HelpOptionDetails> all_options(const cxxopts::Options& opts) {
  const std::string help = opts.help({}, false);
  std::vector<cxxopts::HelpOptionDetails> out;
  for (const auto& g : opts.groups())
    for (const auto& o : opts.group_help(g).options)
      if (!o.l.empty() && help.find("--" + o.l.front()) != std::string::npos) out.push_back(o);
  return out;
}

// The table's name for the value, else the option's own name: --entry ENTRY.
std::string value_name(const cxxopts::HelpOptionDetails& o) {
  if (!o.arg_help.empty()) return o.arg_help;
  std::string name = o.l.empty() ? std::string("VALUE") : o.l.front();
  for (char& c : name) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

std::string title(std::string_view page) {
  std::string t(page);
  for (char& c : t) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return ".TH " + t + " 1 \"\" \"kgate " KGATE_VERSION "\" \"kgate manual\"\n";
}

// exit_code_table()'s Markdown rows ("| 0 | `pass` | meaning |") as a tagged list.
std::string exit_status_list() {
  std::string out;
  std::istringstream rows(exit_code_table());
  for (std::string row; std::getline(rows, row);) {
    std::vector<std::string> cells;
    for (size_t at = 1; at < row.size();) {
      const size_t bar = row.find('|', at);
      if (bar == std::string::npos) break;
      std::string cell = row.substr(at, bar - at);
      std::erase(cell, '`');
      cells.push_back(cell.substr(std::min(cell.find_first_not_of(' '), cell.size()),
                                  cell.find_last_not_of(' ') - cell.find_first_not_of(' ') + 1));
      at = bar + 1;
    }
    if (cells.size() != 3 || cells[0].empty() || !std::isdigit(static_cast<unsigned char>(cells[0][0])))
      continue;
    out += ".TP\n\\fB" + cells[0] + "\\fR  " + roff(cells[1]) + "\n" + roff(cells[2]) + "\n";
  }
  return out;
}

// Values an option takes from a fixed set, for completion.
const std::map<std::string, std::string, std::less<>> choices = {
    {"arch", "x86_64 arm64"},
    {"lockdown", "none integrity confidentiality"},
    {"shell", "before after on-failure"},
};

}  // namespace

std::string usage_text() {
  std::string out = "usage: kgate <command> [options]\n\ncommands:\n";
  for (const auto& c : commands())
    out += "  " + std::string(c.name) + std::string(9 - c.name.size(), ' ') + std::string(c.summary) + "\n";
  out +=
      "  version  print kgate's version\n"
      "\n"
      "  help     'kgate help COMMAND': a command's options; 'kgate help exit-codes': what each exit code "
      "means\n"
      "\n"
      "'kgate <command> --help' lists a command's options too; 'man kgate-<command>' once installed.\n";
  return out;
}

std::string man_page(const Command& c) {
  const auto opts = c.options();
  const std::string page = "kgate-" + std::string(c.name);
  std::string out = title(page);
  out += ".SH NAME\n" + roff(page) + " \\- " + roff(c.summary) + "\n";
  out += ".SH SYNOPSIS\n.B kgate " + roff(c.name) + "\n" + roff(synopsis_tail(opts)) + "\n";
  out += ".SH DESCRIPTION\n" + roff(description(opts)) + "\n";
  out += ".SH OPTIONS\n";
  for (const auto& o : all_options(opts)) {
    std::string names;
    if (!o.s.empty()) names += "\\fB\\-" + roff(o.s) + "\\fR, ";
    for (size_t i = 0; i < o.l.size(); ++i)
      names += (i ? ", " : "") + std::string("\\fB\\-\\-") + roff(o.l[i]) + "\\fR";
    if (!o.is_boolean) {
      const std::string v = "\\fI" + roff(value_name(o)) + "\\fR";
      names += o.has_implicit ? "[=" + v + "]" : " " + v;
    }
    std::string desc = roff(o.desc);
    if (o.has_default && !o.is_boolean && !o.default_value.empty())
      desc += " (default: " + roff(o.default_value) + ")";
    out += ".TP\n" + names + "\n" + desc + "\n";
  }
  out += ".SH EXIT STATUS\nSee \\fBkgate\\fR(1), or run \\fBkgate help exit\\-codes\\fR.\n";
  out += ".SH SEE ALSO\n\\fBkgate\\fR(1)\n";
  return out;
}

std::string man_page_index() {
  std::string out = title("kgate");
  out += ".SH NAME\nkgate \\- boot real kernels in QEMU and gate eBPF objects on each of them\n";
  out += ".SH SYNOPSIS\n.B kgate\n\\fICOMMAND\\fR [\\fIOPTIONS\\fR]\n";
  out += ".SH COMMANDS\n";
  for (const auto& c : commands())
    out += ".TP\n\\fBkgate\\-" + roff(c.name) + "\\fR(1)\n" + roff(c.summary) + "\n";
  out += ".TP\n\\fBkgate version\\fR\nprint kgate's version\n";
  out +=
      ".TP\n\\fBkgate help\\fR [\\fICOMMAND\\fR | \\fBexit\\-codes\\fR]\na command's options, or what each "
      "exit "
      "code means\n";
  out += ".SH EXIT STATUS\n" + exit_status_list();
  out += ".SH FILES\n.TP\n\\fI~/.cache/kgate\\fR\nkernels, images and initramfs segments, shared by runs\n";
  out += ".SH SEE ALSO\n";
  std::string sep;
  for (const auto& c : commands()) {
    out += sep + "\\fBkgate\\-" + roff(c.name) + "\\fR(1)";
    sep = ", ";
  }
  return out + "\n";
}

std::string bash_completion() {
  std::string out =
      "# bash completion for kgate, made by 'kgate help completion' from its option tables\n"
      "_kgate() {\n"
      "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
      "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
      "    COMPREPLY=($(compgen -W '";
  for (const auto& c : commands()) out += std::string(c.name) + " ";
  out +=
      "version help' -- \"$cur\"))\n"
      "    return\n"
      "  fi\n"
      "  local options= valued= \n"
      "  case ${COMP_WORDS[1]} in\n";
  std::string help_topics = "exit-codes man completion";
  for (const auto& c : commands()) {
    help_topics += " " + std::string(c.name);
    std::string options, valued;
    for (const auto& o : all_options(c.options())) {
      for (const auto& l : o.l) {
        options += " --" + l;
        if (!o.is_boolean && !o.has_implicit) valued += "|--" + l;
      }
    }
    out += "    " + std::string(c.name) + ") options='" + (options.empty() ? "" : options.substr(1)) +
           "'; valued='" + (valued.empty() ? "" : valued.substr(1)) + "' ;;\n";
  }
  out += "    help) COMPREPLY=($(compgen -W '" + help_topics +
         "' -- \"$cur\")); return ;;\n"
         "    *) return ;;\n"
         "  esac\n"
         "  case $prev in\n";
  for (const auto& [name, words] : choices)
    out += "    --" + name + ") COMPREPLY=($(compgen -W '" + words + "' -- \"$cur\")); return ;;\n";
  out +=
      "  esac\n"
      "  if [ -n \"$valued\" ] && eval \"case \\$prev in $valued) true ;; *) false ;; esac\"; then\n"
      "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
      "    return\n"
      "  fi\n"
      "  if [[ $cur == -* ]]; then\n"
      "    COMPREPLY=($(compgen -W \"$options\" -- \"$cur\"))\n"
      "  else\n"
      "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
      "  fi\n"
      "}\n"
      "complete -o filenames -F _kgate kgate\n";
  return out;
}

}  // namespace kgate::cli

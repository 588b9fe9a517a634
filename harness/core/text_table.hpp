// Tables of text cells: columns for a terminal, GitHub-flavoured Markdown for step summaries.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kgate {

using TextRows = std::vector<std::vector<std::string>>;

// Each column padded to its widest cell, two spaces apart; one line per row.
std::string text_columns(const TextRows& rows);

// A Markdown table; the first row is the header. Cells are escaped with markdown_cell.
std::string markdown_table(const TextRows& rows);

// A cell no pipe or line break can cut short.
std::string markdown_cell(std::string_view text);

}  // namespace kgate

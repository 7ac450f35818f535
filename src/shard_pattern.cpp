#include "reshard/shard_pattern.hpp"

#include <charconv>

namespace reshard {

Result<ShardPattern> ShardPattern::parse(const std::string& pattern) {
  ShardPattern p;
  p.text_ = pattern;
  std::string literal;
  for (std::size_t i = 0; i < pattern.size();) {
    if (pattern[i] != '{') {
      literal += pattern[i++];
      continue;
    }
    const auto close = pattern.find('}', i);
    if (close == std::string::npos) return Status::Invalid("pattern '" + pattern + "' has an unclosed '{'");
    const std::string name = pattern.substr(i + 1, close - i - 1);
    bool* seen = name == "i" ? &p.has_index_ : name == "row" ? &p.has_row_ : name == "col" ? &p.has_col_ : nullptr;
    if (seen == nullptr) {
      return Status::Invalid("pattern '" + pattern + "' has unknown placeholder {" + name +
                             "} (use {i}, {row}, {col})");
    }
    if (*seen) return Status::Invalid("pattern '" + pattern + "' repeats {" + name + "}");
    *seen = true;
    if (!literal.empty()) p.pieces_.push_back({literal, ""});
    literal.clear();
    if (!p.pieces_.empty() && !p.pieces_.back().placeholder.empty()) {
      return Status::Invalid("pattern '" + pattern + "' has two placeholders with nothing between them");
    }
    p.pieces_.push_back({"", name});
    i = close + 1;
  }
  if (!literal.empty()) p.pieces_.push_back({literal, ""});
  const auto last_slash = pattern.rfind('/');
  if (last_slash != std::string::npos && pattern.find_first_of("{}") < last_slash) {
    return Status::Invalid("pattern '" + pattern + "' may only use placeholders in the file name");
  }
  return p;
}

std::string ShardPattern::render(std::uint64_t index, std::uint64_t row_block, std::uint64_t col_block) const {
  std::string out;
  for (const auto& piece : pieces_) {
    if (piece.placeholder.empty())
      out += piece.literal;
    else if (piece.placeholder == "i")
      out += std::to_string(index);
    else if (piece.placeholder == "row")
      out += std::to_string(row_block);
    else
      out += std::to_string(col_block);
  }
  return out;
}

std::string ShardPattern::directory() const {
  const auto brace = text_.find('{');
  const auto slash = text_.rfind('/', brace);
  return slash == std::string::npos ? std::string() : text_.substr(0, slash + 1);
}

std::optional<ShardName> ShardPattern::match(const std::string& name) const {
  ShardName out;
  std::size_t pos = 0;
  for (std::size_t k = 0; k < pieces_.size(); ++k) {
    const auto& piece = pieces_[k];
    if (piece.placeholder.empty()) {
      if (name.compare(pos, piece.literal.size(), piece.literal) != 0) return std::nullopt;
      pos += piece.literal.size();
      continue;
    }
    std::size_t end = pos;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
    if (end == pos) return std::nullopt;
    // "007" would render back as "7": only canonical numbers are shard names.
    if (name[pos] == '0' && end - pos > 1) return std::nullopt;
    std::uint64_t value = 0;
    if (std::from_chars(name.data() + pos, name.data() + end, value).ec != std::errc()) return std::nullopt;
    (piece.placeholder == "i" ? out.index : piece.placeholder == "row" ? out.row_block : out.col_block) = value;
    pos = end;
  }
  if (pos != name.size()) return std::nullopt;
  return out;
}

}  // namespace reshard

// File-name patterns such as "data/m/shard_{i}.npz" or
// "s3://b/m/part_{row}_{col}.npz": rendering a shard's name and recognising
// shard names in a listing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "reshard/status.hpp"

namespace reshard {

struct ShardName {
  std::optional<std::uint64_t> index;      // {i}
  std::optional<std::uint64_t> row_block;  // {row}
  std::optional<std::uint64_t> col_block;  // {col}
};

class ShardPattern {
 public:
  // {i}, or {row} and/or {col}, each at most once; or none: one file, for
  // schemes of one shard ("single").
  static Result<ShardPattern> parse(const std::string& pattern);

  const std::string& text() const { return text_; }
  bool has_index() const { return has_index_; }
  bool has_row() const { return has_row_; }
  bool has_col() const { return has_col_; }
  bool names_one_file() const { return !has_index_ && !has_row_ && !has_col_; }

  std::string render(std::uint64_t index, std::uint64_t row_block, std::uint64_t col_block) const;
  // The part before the first placeholder, cut back to the last '/': the
  // directory a listing has to look in.
  std::string directory() const;
  // Where the dataset's control files go (_SUCCESS, _reshard/): the
  // directory, or "<file>." for a pattern naming one file, so that several
  // one-file datasets can share a folder: out/a.h5ad._SUCCESS,
  // out/a.h5ad._reshard/manifest.json.
  std::string control_prefix() const { return names_one_file() ? text_ + "." : directory(); }
  // Parses a full name; nullopt when it is not one of this pattern's names.
  std::optional<ShardName> match(const std::string& name) const;

 private:
  struct Piece {
    std::string literal;  // when placeholder is empty
    std::string placeholder;
  };
  std::string text_;
  std::vector<Piece> pieces_;
  bool has_index_ = false;
  bool has_row_ = false;
  bool has_col_ = false;
};

}  // namespace reshard

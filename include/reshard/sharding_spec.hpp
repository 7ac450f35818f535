// Sharding schemes: how global (row, col) coordinates map to shard files and
// to local coordinates inside them. Text and JSON forms: docs/schemes.md.
#pragma once

#include <algorithm>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reshard/status.hpp"

namespace reshard {

enum class Axis { kRows, kCols, kGrid };
enum class HashKind { kNone, kMod, kMix, kJump, kRendezvous };
enum class Layout { kCsr, kCsc };

struct GlobalShape {
  std::uint64_t nrows = 0;
  std::uint64_t ncols = 0;
  bool operator==(const GlobalShape&) const = default;
};

struct ShardingSpec {
  Axis axis = Axis::kRows;
  std::uint64_t block_rows = 0;  // rows:block and grid
  std::uint64_t block_cols = 0;  // cols:block and grid
  // rows:ranges=0,1000,5000 (and cols:, grid:row_ranges=...,col_ranges=...):
  // the first row (column) of each shard, ascending from 0; the last shard
  // runs to the end of the axis. Empty when the axis is split by block.
  std::vector<std::uint64_t> row_starts;
  std::vector<std::uint64_t> col_starts;
  HashKind hash = HashKind::kNone;
  std::uint64_t num_shards = 0;  // hashed schemes
  std::uint64_t seed = 0;
  std::uint64_t workers = 0;  // 0: not stated
  std::optional<GlobalShape> shape;
  Layout layout = Layout::kCsr;

  // "rows:block=250000", "grid:block=1000x500", "cols:hash=jump,shards=17".
  static Result<ShardingSpec> parse_text(std::string_view text);
  static Result<ShardingSpec> from_json(const nlohmann::json& json);
  std::string to_text() const;
  nlohmann::json to_json() const;

  bool hashed() const { return hash != HashKind::kNone; }
  // Hashing on rows puts whole rows in a shard, so the writer keeps row_ids.
  bool hashes_rows() const { return hashed() && axis == Axis::kRows; }
  bool ranged() const { return !row_starts.empty() || !col_starts.empty(); }
  // One shard holding the whole matrix ("single", i.e. rows:ranges=0).
  bool single() const { return axis == Axis::kRows && row_starts.size() == 1 && col_starts.empty(); }
  Status validate() const;
  bool operator==(const ShardingSpec&) const = default;
};

// Where a shard sits: its row and column ranges for block schemes; for a
// hashed scheme the hashed axis spans everything and `row_block`/`col_block`
// are 0.
struct ShardBox {
  std::uint64_t row_begin = 0;
  std::uint64_t row_end = 0;
  std::uint64_t col_begin = 0;
  std::uint64_t col_end = 0;
  std::uint64_t row_block = 0;
  std::uint64_t col_block = 0;
  std::uint64_t rows() const { return row_end - row_begin; }
  std::uint64_t cols() const { return col_end - col_begin; }
};

// x / d for a fixed d, by one multiplication when x and d fit 32 bits (a
// 64-bit division takes tens of cycles, once per entry when bucketing by
// column block): with m = floor((2^64 - 1) / d) + 1, floor(m * x / 2^64) is
// exact for every 32-bit x and 32-bit d (Lemire, Kaser and Kurz, "Faster
// remainder by direct computation", 2019). Divides otherwise.
class BlockDivisor {
 public:
  BlockDivisor() = default;
  explicit BlockDivisor(std::uint64_t d) : d_(d), magic_(d > 1 && d <= 0xFFFFFFFFULL ? ~std::uint64_t{0} / d + 1 : 0) {}
  std::uint64_t quotient(std::uint64_t x) const {
    if (magic_ != 0 && x <= 0xFFFFFFFFULL) {
      __extension__ using Product = unsigned __int128;  // GCC and Clang; one mul instruction
      return static_cast<std::uint64_t>((static_cast<Product>(magic_) * x) >> 64);
    }
    return x / d_;
  }

 private:
  std::uint64_t d_ = 1;
  std::uint64_t magic_ = 0;
};

// A scheme bound to a global shape: answers which shard holds an entry.
class ShardMap {
 public:
  static Result<ShardMap> bind(const ShardingSpec& spec, GlobalShape shape);

  const ShardingSpec& spec() const { return spec_; }
  GlobalShape shape() const { return shape_; }
  std::uint64_t shard_count() const { return shard_count_; }
  std::uint64_t row_blocks() const { return row_blocks_; }
  std::uint64_t col_blocks() const { return col_blocks_; }

  std::uint64_t shard_of(std::uint64_t row, std::uint64_t col) const {
    switch (spec_.axis) {
      case Axis::kRows: return spec_.hashed() ? hashed_shard_of(row) : row_block_of(row);
      case Axis::kCols: return spec_.hashed() ? hashed_shard_of(col) : col_block_of(col);
      case Axis::kGrid: return row_block_of(row) * col_blocks_ + col_block_of(col);
    }
    return 0;
  }
  // Block position of a row (column) under a block or ranges scheme.
  std::uint64_t row_block_of(std::uint64_t row) const { return block_of(row, row_block_divisor_, spec_.row_starts); }
  std::uint64_t col_block_of(std::uint64_t col) const { return block_of(col, col_block_divisor_, spec_.col_starts); }
  // The shard of a row (rows:hash) or column (cols:hash) id.
  std::uint64_t hashed_shard_of(std::uint64_t key) const;

  // Block position of a shard; for hashed schemes the full extent of the
  // non-hashed axis and an empty range on the hashed one.
  ShardBox box(std::uint64_t shard) const;

  // For hashed schemes: the ascending global ids each listed shard holds, in
  // one pass over the hashed axis.
  std::vector<std::vector<std::uint64_t>> hashed_ids(const std::vector<std::uint64_t>& shards) const;

  // Shard from its {row}/{col} block position in a file name.
  std::optional<std::uint64_t> shard_at(std::uint64_t row_block, std::uint64_t col_block) const;

 private:
  static std::uint64_t block_of(std::uint64_t x, const BlockDivisor& block, const std::vector<std::uint64_t>& starts) {
    if (starts.empty()) return block.quotient(x);
    return static_cast<std::uint64_t>(std::upper_bound(starts.begin(), starts.end(), x) - starts.begin()) - 1;
  }

  ShardingSpec spec_;
  GlobalShape shape_;
  std::uint64_t shard_count_ = 0;
  std::uint64_t row_blocks_ = 1;
  std::uint64_t col_blocks_ = 1;
  // Of spec_.block_rows and spec_.block_cols, when the axis is split by block.
  BlockDivisor row_block_divisor_;
  BlockDivisor col_block_divisor_;
};

std::string axis_name(Axis axis);
std::string hash_name(HashKind hash);

}  // namespace reshard

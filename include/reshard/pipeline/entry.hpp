// The unit the shuffle moves: one stored entry with global coordinates.
#pragma once

#include <cstdint>
#include <type_traits>

namespace reshard {

struct Entry {
  std::uint64_t row = 0;
  std::uint64_t col = 0;
  std::uint64_t value_bits = 0;  // raw little-endian value, zero-extended
  // Source order: (source shard index << kOrderShardShift) | position in that
  // shard's data array. Breaks ties between duplicate (row, col) entries so
  // output bytes never depend on arrival order.
  std::uint64_t order = 0;
};
static_assert(std::is_trivially_copyable_v<Entry> && sizeof(Entry) == 32);

inline constexpr unsigned kOrderShardShift = 40;

}  // namespace reshard

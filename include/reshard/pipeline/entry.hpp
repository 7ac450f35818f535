// The unit the shuffle moves: one stored entry with global coordinates.
#pragma once

#include <cstdint>
#include <type_traits>

namespace reshard {

// No default member initializers: arrays of entries are WorkArrays, sized
// without being zeroed (work_array.hpp).
struct Entry {
  std::uint64_t row;
  std::uint64_t col;
  std::uint64_t value_bits;  // raw little-endian value, zero-extended
  // Source order: (source shard index << kOrderShardShift) | position in that
  // shard's data array. Breaks ties between duplicate (row, col) entries so
  // output bytes never depend on arrival order.
  std::uint64_t order;
};
static_assert(std::is_trivial_v<Entry> && sizeof(Entry) == 32);

inline constexpr unsigned kOrderShardShift = 40;

}  // namespace reshard

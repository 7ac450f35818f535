// The unit the shuffle moves: one stored entry with global coordinates, and
// the run of one source shard's entries it travels in.
#pragma once

#include <cstdint>
#include <span>
#include <type_traits>

namespace reshard {

// No default member initializers: arrays of entries are WorkArrays, sized
// without being zeroed (work_array.hpp).
struct Entry {
  std::uint64_t row;
  std::uint64_t col;
  std::uint64_t value_bits;  // raw little-endian value, zero-extended
};
static_assert(std::is_trivial_v<Entry> && sizeof(Entry) == 24);

// One source shard's entries for one destination shard, in the source's
// storage order. Entries carry no source position: where they came from is
// the segment's `source`, and their order in it. Assembly breaks ties
// between duplicate (row, col) entries by (source, position), so output
// bytes never depend on which rank read a source or on arrival order. A
// source gives a destination shard exactly one segment.
struct SourceSegment {
  std::span<const Entry> entries;
  std::uint64_t source = 0;
};

}  // namespace reshard

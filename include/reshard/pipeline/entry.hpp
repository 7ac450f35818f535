// The unit the shuffle moves: one stored entry, its global coordinates packed
// into one 64-bit key in the destination's storage order, and the run of one
// source shard's entries it travels in.
#pragma once

#include <bit>
#include <cstdint>
#include <span>
#include <type_traits>

#include "reshard/sharding_spec.hpp"

namespace reshard {

// No default member initializers: arrays of entries are WorkArrays, sized
// without being zeroed (work_array.hpp).
struct Entry {
  std::uint64_t key;         // EntryKeyCodec::key(row, col)
  std::uint64_t value_bits;  // raw little-endian value, zero-extended
};
static_assert(std::is_trivial_v<Entry> && sizeof(Entry) == 16);

// Packs global (row, col) into (major << minor_bits) | minor, major and minor
// being the destination's storage axes (rows and columns for CSR). Keys then
// sort as a shard's entries are stored, so assembly compares one word, and
// an entry is 16 bytes instead of 24 through bucket, spill and exchange. A
// matrix whose two extents need more than 64 bits in all is refused when
// planning (fits).
class EntryKeyCodec {
 public:
  // Bits for the indices 0 .. extent-1 of one axis.
  static std::uint32_t bits_for(std::uint64_t extent) {
    return extent <= 1 ? 0 : static_cast<std::uint32_t>(std::bit_width(extent - 1));
  }
  static bool fits(GlobalShape shape) {
    const std::uint32_t rows = bits_for(shape.nrows);
    const std::uint32_t cols = bits_for(shape.ncols);
    return rows + cols <= 64 && rows < 64 && cols < 64;
  }

  EntryKeyCodec(Layout destination_layout, GlobalShape shape)
      : csr_(destination_layout == Layout::kCsr), minor_bits_(bits_for(csr_ ? shape.ncols : shape.nrows)) {}
  // The codec of a destination scheme: bucket and assemble must agree on it.
  explicit EntryKeyCodec(const ShardMap& destination) : EntryKeyCodec(destination.spec().layout, destination.shape()) {}

  std::uint64_t key(std::uint64_t row, std::uint64_t col) const {
    return csr_ ? (row << minor_bits_) | col : (col << minor_bits_) | row;
  }
  std::uint64_t major(std::uint64_t key) const { return key >> minor_bits_; }
  std::uint64_t minor(std::uint64_t key) const { return key & ((std::uint64_t{1} << minor_bits_) - 1); }
  std::uint64_t row(std::uint64_t key) const { return csr_ ? major(key) : minor(key); }
  std::uint64_t col(std::uint64_t key) const { return csr_ ? minor(key) : major(key); }
  bool csr() const { return csr_; }

 private:
  bool csr_ = true;
  std::uint32_t minor_bits_ = 0;
};

// One source shard's entries for one destination shard, in the source's
// storage order. Entries carry no source position: where they came from is
// the segment's `source`, and their order in it. Assembly breaks ties
// between duplicate (row, col) entries by (source, position), so output
// bytes never depend on which rank read a source or on arrival order. A
// source gives a destination shard exactly one segment. `sorted`: its keys
// are known not to decrease (BucketBlock::sorted), so assembly need not look.
struct SourceSegment {
  std::span<const Entry> entries;
  std::uint64_t source = 0;
  bool sorted = false;
};

}  // namespace reshard

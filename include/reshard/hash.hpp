// The hash functions that sharding schemes and the fingerprint are defined
// by. They are part of the on-disk contract (docs/formats.md): changing one
// changes where data lands.
#pragma once

#include <cstdint>

#include "reshard/inline.hpp"

namespace reshard {

// splitmix64's output function applied to x + golden gamma (Steele, Lea,
// Flood 2014): the standard finalizer.
RESHARD_ALWAYS_INLINE constexpr std::uint64_t splitmix64(std::uint64_t x) {
  std::uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm"
// (2014): moves only ~1/(n+1) of keys when n grows by one.
constexpr std::uint32_t jump_consistent_hash(std::uint64_t key, std::uint32_t buckets) {
  std::int64_t b = -1;
  std::int64_t j = 0;
  while (j < static_cast<std::int64_t>(buckets)) {
    b = j;
    key = key * 2862933555777941757ULL + 1;
    j = static_cast<std::int64_t>(static_cast<double>(b + 1) *
                                  (static_cast<double>(1LL << 31) / static_cast<double>((key >> 33) + 1)));
  }
  return static_cast<std::uint32_t>(b);
}

// Highest random weight: the bucket whose weight mix(key, bucket) is largest.
constexpr std::uint32_t rendezvous_hash(std::uint64_t key, std::uint32_t buckets) {
  std::uint32_t best = 0;
  std::uint64_t best_weight = 0;
  for (std::uint32_t s = 0; s < buckets; ++s) {
    const std::uint64_t weight = splitmix64(key ^ splitmix64(s));
    if (s == 0 || weight > best_weight) {
      best = s;
      best_weight = weight;
    }
  }
  return best;
}

// entry_hash's first step, which depends on the row alone: loops that see a
// row's entries one after another compute it once per row (a third of the
// hash's multiplications).
RESHARD_ALWAYS_INLINE constexpr std::uint64_t row_hash(std::uint64_t row) { return splitmix64(row); }

// entry_hash from row_hash(row).
RESHARD_ALWAYS_INLINE constexpr std::uint64_t entry_hash_of_row_hash(std::uint64_t hashed_row, std::uint64_t col,
                                                                     std::uint64_t value_bits) {
  return splitmix64(splitmix64(hashed_row ^ col) ^ value_bits);
}

// The fingerprint term of one stored entry (docs/formats.md).
RESHARD_ALWAYS_INLINE constexpr std::uint64_t entry_hash(std::uint64_t row, std::uint64_t col,
                                                         std::uint64_t value_bits) {
  return entry_hash_of_row_hash(row_hash(row), col, value_bits);
}

// row_hash of the last row asked for: recomputed only when the row changes,
// so a CSR loop pays it once per row, and a CSC loop (a new row at nearly
// every entry, a branch that is then as predictable) no more than before.
class RowHashCache {
 public:
  RESHARD_ALWAYS_INLINE std::uint64_t of(std::uint64_t row) {
    if (row != row_) {
      row_ = row;
      hashed_ = row_hash(row);
    }
    return hashed_;
  }

 private:
  // Starts as the hash of a real row id, so the first call needs no flag.
  std::uint64_t row_ = ~std::uint64_t{0};
  std::uint64_t hashed_ = row_hash(~std::uint64_t{0});
};

}  // namespace reshard

// The order-independent fingerprint of a set of stored entries: the count and
// the wrapping sum of entry_hash(row, col, value_bits) with GLOBAL
// coordinates. Equal fingerprints before and after a reshard are the
// exactly-once check (docs/formats.md shows how to recompute it with numpy).
#pragma once

#include <cstdint>
#include <string>

#include "reshard/hash.hpp"

namespace reshard {

struct Fingerprint {
  std::uint64_t count = 0;
  std::uint64_t sum = 0;

  RESHARD_ALWAYS_INLINE void add(std::uint64_t row, std::uint64_t col, std::uint64_t value_bits) {
    ++count;
    sum += entry_hash(row, col, value_bits);
  }
  void merge(const Fingerprint& other) {
    count += other.count;
    sum += other.sum;
  }
  bool operator==(const Fingerprint&) const = default;
  // "nnz=<count> sum=<16 hex digits>"
  std::string to_string() const;
  std::string sum_hex() const;
};

}  // namespace reshard

#include <gtest/gtest.h>

#include "reshard/fingerprint.hpp"

namespace reshard {
namespace {

TEST(Fingerprint, OrderIndependentAndCountsDuplicates) {
  Fingerprint a;
  a.add(1, 2, 3);
  a.add(4, 5, 6);
  a.add(4, 5, 6);
  Fingerprint b;
  b.add(4, 5, 6);
  b.add(1, 2, 3);
  b.add(4, 5, 6);
  EXPECT_EQ(a, b);
  Fingerprint c;
  c.add(1, 2, 3);
  c.add(4, 5, 6);
  EXPECT_NE(a, c) << "a lost duplicate must show";
  Fingerprint swapped;
  swapped.add(2, 1, 3);
  swapped.add(4, 5, 6);
  swapped.add(4, 5, 6);
  EXPECT_NE(a.sum, swapped.sum) << "transposed coordinates must show";
}

TEST(Fingerprint, MatchesTheDocumentedFormula) {
  // docs/formats.md: h = splitmix64(splitmix64(splitmix64(r) ^ c) ^ v).
  Fingerprint f;
  f.add(7, 11, 0x3FF0000000000000ULL);  // 1.0 as float64
  EXPECT_EQ(f.sum, splitmix64(splitmix64(splitmix64(7) ^ 11) ^ 0x3FF0000000000000ULL));
  Fingerprint merged;
  merged.merge(f);
  merged.merge(f);
  EXPECT_EQ(merged.count, 2u);
  EXPECT_EQ(merged.sum, f.sum * 2);
  EXPECT_EQ(Fingerprint{}.to_string(), "nnz=0 sum=0000000000000000");
}

// Loops over a row's entries hash the row once (RowHashCache): every term
// must still be entry_hash's, for rows in any order, repeated or not, and
// for the largest row id, which the cache starts from.
TEST(Fingerprint, RowHashCacheGivesEntryHashForAnyRowSequence) {
  RowHashCache cache;
  const std::uint64_t largest = ~std::uint64_t{0};
  for (const std::uint64_t row : {largest, largest, std::uint64_t{5}, std::uint64_t{5}, std::uint64_t{0}, largest,
                                  std::uint64_t{5}, std::uint64_t{1} << 40, std::uint64_t{0}}) {
    EXPECT_EQ(entry_hash_of_row_hash(cache.of(row), 9, 0x40), entry_hash(row, 9, 0x40)) << row;
  }
}

}  // namespace
}  // namespace reshard

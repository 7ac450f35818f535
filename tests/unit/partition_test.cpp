#include "reshard/planning/partition.hpp"
#include "reshard/planning/weights.hpp"

#include <gtest/gtest.h>

#include <random>

#include "reshard/format/npy.hpp"

namespace reshard {
namespace {

// The least bottleneck over every way to cut n items into `parts` non-empty
// contiguous ranges, by enumerating the cut sets.
std::uint64_t brute_force_bottleneck(const std::vector<std::uint64_t>& costs, std::uint64_t parts) {
  const std::size_t n = costs.size();
  std::uint64_t best = UINT64_MAX;
  for (std::uint32_t mask = 0; mask < (1u << (n - 1)); ++mask) {
    if (static_cast<std::uint64_t>(__builtin_popcount(mask)) != parts - 1) continue;
    std::vector<std::uint64_t> starts = {0};
    for (std::size_t i = 1; i < n; ++i) {
      if (mask & (1u << (i - 1))) starts.push_back(i);
    }
    best = std::min(best, bottleneck_of(costs, starts));
  }
  return best;
}

TEST(BalancedPartition, IsOptimalOnEverySmallCaseTried) {
  std::mt19937_64 random(11);
  int cases = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const std::size_t n = 1 + random() % 9;
    std::vector<std::uint64_t> costs(n);
    // Skewed costs with zeros, as real rows are.
    for (auto& c : costs) c = (random() % 4 == 0) ? 0 : (random() % 3 == 0 ? random() % 1000 : random() % 10);
    for (std::uint64_t parts = 1; parts <= n; ++parts) {
      const Partition p = balanced_partition(costs, parts);
      ASSERT_EQ(p.starts.size(), parts);
      ASSERT_EQ(p.starts.front(), 0u);
      for (std::size_t i = 1; i < p.starts.size(); ++i) ASSERT_LT(p.starts[i - 1], p.starts[i]);
      ASSERT_LT(p.starts.back(), n);
      const std::uint64_t best = brute_force_bottleneck(costs, parts);
      EXPECT_EQ(p.bottleneck, best) << "trial " << trial << " parts " << parts;
      EXPECT_EQ(bottleneck_of(costs, p.starts), best) << "trial " << trial << " parts " << parts;
      ++cases;
    }
  }
  EXPECT_GT(cases, 1000);
}

TEST(BalancedPartition, SplitsAHotPrefixFinerThanEqualCounts) {
  // 4 heavy rows then 96 light ones: equal row counts put all the weight in
  // the first of 4 ranges; the balanced split gives each heavy row its own
  // range and the light ones join the last.
  std::vector<std::uint64_t> costs(100, 1);
  for (int i = 0; i < 4; ++i) costs[i] = 100;
  const Partition p = balanced_partition(costs, 4);
  EXPECT_EQ(bottleneck_of(costs, {0, 25, 50, 75}), 421u);
  EXPECT_EQ(p.bottleneck, 196u);
  EXPECT_EQ(p.starts, (std::vector<std::uint64_t>{0, 1, 2, 3}));
}

TEST(BalancedPartition, FewerItemsThanPartsAndEmptyInput) {
  EXPECT_EQ(balanced_partition({5, 7}, 4).starts, (std::vector<std::uint64_t>{0, 1}));
  EXPECT_EQ(balanced_partition({}, 3).starts, (std::vector<std::uint64_t>{0}));
  EXPECT_EQ(balanced_partition({0, 0, 0}, 2).starts.size(), 2u);
}

Result<std::vector<double>> weights_from(const std::string& text, std::uint64_t extent) {
  return parse_weights(ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), "w.csv", extent,
                       "rows");
}

TEST(Weights, CsvWithHeaderAndCommentsDefaultsMissingIdsToOne) {
  auto weights = weights_from("index,weight\n# forecast\n2, 5.5\n0,0\r\n", 4);
  ASSERT_TRUE(weights.ok()) << weights.status().message();
  EXPECT_EQ(*weights, (std::vector<double>{0, 1, 5.5, 1}));
}

TEST(Weights, BadCsvNamesTheFileAndLine) {
  EXPECT_EQ(weights_from("0,1\n1\n", 4).status().message(), "w.csv line 2: expected 'index,weight'");
  EXPECT_EQ(weights_from("0,1\nx,2\n", 4).status().message(), "w.csv line 2: index 'x' is not a non-negative integer");
  EXPECT_EQ(weights_from("0,1\n9,2\n", 4).status().message(), "w.csv line 2: index 9 is not below the matrix's 4 rows");
  EXPECT_EQ(weights_from("0,1\n0,2\n", 4).status().message(), "w.csv line 2: index 0 is given twice");
  EXPECT_EQ(weights_from("0,-1\n", 4).status().message(), "w.csv line 1: weight -1 is not a finite number >= 0");
  EXPECT_EQ(weights_from("0,abc\n", 4).status().message(), "w.csv line 1: weight 'abc' is not a number");
}

TEST(Weights, NpyVectorsOfFloatsAndIntegers) {
  const double values[3] = {2.5, 0, 7};
  Bytes npy_bytes = npy::encode({'f', 8}, {3}, ByteView(reinterpret_cast<const std::uint8_t*>(values), 24));
  auto weights = parse_weights(npy_bytes, "w.npy", 5, "columns");
  ASSERT_TRUE(weights.ok()) << weights.status().message();
  EXPECT_EQ(*weights, (std::vector<double>{2.5, 0, 7, 1, 1}));
  auto too_long = parse_weights(npy_bytes, "w.npy", 2, "columns");
  EXPECT_EQ(too_long.status().message(), "weights w.npy: 3 weights but the matrix has 2 columns");
  const std::int32_t ints[2] = {3, 4};
  auto from_ints =
      parse_weights(npy::encode(npy::int32_dtype(), {2}, ByteView(reinterpret_cast<const std::uint8_t*>(ints), 8)),
                    "w.npy", 2, "rows");
  ASSERT_TRUE(from_ints.ok());
  EXPECT_EQ(*from_ints, (std::vector<double>{3, 4}));
}

TEST(Weights, IntegerCostsKeepProportions) {
  const auto costs = integer_costs({1, 3, 0});
  EXPECT_EQ(costs[1], 3 * costs[0]);
  EXPECT_EQ(costs[2], 0u);
}

}  // namespace
}  // namespace reshard

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "reshard/hash.hpp"
#include "reshard/sharding_spec.hpp"
#include "support/golden.hpp"

namespace reshard {
namespace {

ShardingSpec parse(const std::string& text) {
  auto spec = ShardingSpec::parse_text(text);
  EXPECT_TRUE(spec.ok()) << text << ": " << spec.status().message();
  return spec.ok() ? *spec : ShardingSpec{};
}

std::string parse_error(const std::string& text) {
  auto spec = ShardingSpec::parse_text(text);
  return spec.ok() ? std::string("<parsed>") : spec.status().message();
}

TEST(ShardingSpec, ParsesEveryKind) {
  auto rows = parse("rows:block=250000");
  EXPECT_EQ(rows.axis, Axis::kRows);
  EXPECT_EQ(rows.block_rows, 250000u);
  auto grid = parse("grid:block=100x30,workers=8,shape=1000x90,layout=csc");
  EXPECT_EQ(grid.block_rows, 100u);
  EXPECT_EQ(grid.block_cols, 30u);
  EXPECT_EQ(grid.workers, 8u);
  ASSERT_TRUE(grid.shape.has_value());
  EXPECT_EQ(grid.shape->ncols, 90u);
  EXPECT_EQ(grid.layout, Layout::kCsc);
  auto hashed = parse("cols:hash=rendezvous,shards=9,seed=4");
  EXPECT_EQ(hashed.hash, HashKind::kRendezvous);
  EXPECT_EQ(hashed.num_shards, 9u);
  EXPECT_EQ(hashed.seed, 4u);
}

TEST(ShardingSpec, TextAndJsonRoundTrip) {
  for (const char* text : {"rows:block=7", "cols:block=3,layout=csc", "grid:block=2x5,shape=10x10",
                           "rows:hash=jump,shards=17,seed=3,workers=4", "cols:hash=mod,shards=2"}) {
    const ShardingSpec spec = parse(text);
    EXPECT_EQ(spec.to_text(), text);
    auto back = ShardingSpec::from_json(spec.to_json());
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(*back, spec) << text;
  }
}

TEST(ShardingSpec, OneLineErrors) {
  EXPECT_EQ(parse_error("diagonal:block=3"), "unknown scheme kind 'diagonal' (expected rows, cols or grid)");
  EXPECT_EQ(parse_error("rows:hash=md5,shards=3"), "unknown hash 'md5' (expected mod, mix, jump or rendezvous)");
  EXPECT_EQ(parse_error("rows:block=0"), "block must be > 0");
  EXPECT_EQ(parse_error("rows:block=-5"), "block '-5' is not a non-negative integer");
  EXPECT_EQ(parse_error("rows:hash=jump,shards=0"), "shards must be > 0");
  EXPECT_EQ(parse_error("rows:hash=jump"), "hashed scheme needs shards=N with N > 0");
  EXPECT_EQ(parse_error("grid:block=5"), "block '5' must look like NxM");
  EXPECT_EQ(parse_error("rows:block=5,colour=red"), "unknown scheme option 'colour'");
  EXPECT_EQ(parse_error("rows"), "scheme 'rows' must look like 'rows:block=R'");
  EXPECT_EQ(parse_error("rows:block=100,block=200"), "scheme option 'block' is given more than once");
  EXPECT_EQ(parse_error("rows:hash=mix,seed=1,shards=4,seed=2"), "scheme option 'seed' is given more than once");
  EXPECT_EQ(parse_error("rows:block=10,workers=0"), "workers must be > 0 (leave it out for the default)");
  EXPECT_FALSE(ShardingSpec::from_json(nlohmann::json{{"axis", "rows"}, {"block_rows", -1}}).ok());
  EXPECT_FALSE(ShardingSpec::from_json(nlohmann::json{{"axis", "rows"}, {"bogus", 1}}).ok());
}

TEST(ShardingSpec, SingleIsOneRangeOfRowsAndPrintsAsSingle) {
  const ShardingSpec single = parse("single");
  EXPECT_TRUE(single.single());
  EXPECT_EQ(single, parse("rows:ranges=0"));
  EXPECT_EQ(parse("rows:ranges=0").to_text(), "single");
  EXPECT_EQ(parse("single,layout=csc").layout, Layout::kCsc);
  EXPECT_FALSE(parse("rows:ranges=0,5").single());
  auto map = ShardMap::bind(single, {7, 3});
  ASSERT_TRUE(map.ok());
  EXPECT_EQ(map->shard_count(), 1u);
  EXPECT_EQ(map->box(0).rows(), 7u);
  EXPECT_EQ(map->box(0).cols(), 3u);
  EXPECT_FALSE(ShardingSpec::parse_text("singles").ok());
}

TEST(ShardingSpec, RangesParseRoundTripAndRefuseWhatIsNotAList) {
  auto rows = parse("rows:ranges=0,1000,5000,workers=2");
  EXPECT_EQ(rows.row_starts, (std::vector<std::uint64_t>{0, 1000, 5000}));
  EXPECT_EQ(rows.workers, 2u);
  auto grid = parse("grid:row_ranges=0,3,col_ranges=0,1,4");
  EXPECT_EQ(grid.row_starts, (std::vector<std::uint64_t>{0, 3}));
  EXPECT_EQ(grid.col_starts, (std::vector<std::uint64_t>{0, 1, 4}));
  for (const char* text : {"rows:ranges=0,1000,5000,workers=2", "cols:ranges=0,7,layout=csc",
                           "grid:row_ranges=0,3,col_ranges=0,1,4,shape=10x10", "single", "single,layout=csc"}) {
    const ShardingSpec spec = parse(text);
    EXPECT_EQ(spec.to_text(), text);
    auto back = ShardingSpec::from_json(spec.to_json());
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(*back, spec) << text;
  }
  EXPECT_EQ(parse_error("rows:ranges=5,10"), "ranges must start at 0 (the first shard's first index), not 5");
  EXPECT_EQ(parse_error("rows:ranges=0,10,10"), "ranges must be strictly ascending: 10 follows 10");
  EXPECT_EQ(parse_error("rows:ranges=0,x"), "row range start 'x' is not a non-negative integer");
  EXPECT_EQ(parse_error("rows:block=4,ranges=0,2"), "rows scheme takes block=R or ranges, not both");
  EXPECT_EQ(parse_error("grid:row_ranges=0,2"),
            "grid scheme takes block=RxC, or both row_ranges=0,... and col_ranges=0,...");
  EXPECT_EQ(parse_error("rows:row_ranges=0,2"), "scheme option 'row_ranges' is for grid schemes; use ranges=...");
  EXPECT_EQ(parse_error("rows:hash=jump,shards=2,ranges=0"), "hashed scheme takes no ranges");
  EXPECT_FALSE(ShardingSpec::from_json(nlohmann::json{{"axis", "rows"}, {"row_starts", {0, -3}}}).ok());
  EXPECT_FALSE(ShardingSpec::from_json(nlohmann::json{{"axis", "rows"}, {"row_starts", nlohmann::json::array()}}).ok());
}

TEST(ShardMap, RangesMapEveryIndexToTheRangeThatHoldsIt) {
  auto rows = *ShardMap::bind(parse("rows:ranges=0,1,5"), {9, 3});
  EXPECT_EQ(rows.shard_count(), 3u);
  const std::uint64_t expected[9] = {0, 1, 1, 1, 1, 2, 2, 2, 2};
  for (std::uint64_t r = 0; r < 9; ++r) EXPECT_EQ(rows.shard_of(r, 2), expected[r]) << r;
  EXPECT_EQ(rows.box(1).row_begin, 1u);
  EXPECT_EQ(rows.box(1).row_end, 5u);
  EXPECT_EQ(rows.box(2).row_end, 9u) << "the last range runs to the end";
  auto grid = *ShardMap::bind(parse("grid:row_ranges=0,6,col_ranges=0,1"), {9, 3});
  EXPECT_EQ(grid.shard_count(), 4u);
  EXPECT_EQ(grid.shard_of(7, 0), 2u);
  EXPECT_EQ(grid.shard_of(5, 2), 1u);
  EXPECT_EQ(grid.box(3).cols(), 2u);
  auto beyond = ShardMap::bind(parse("rows:ranges=0,4,9"), {9, 3});
  ASSERT_FALSE(beyond.ok());
  EXPECT_EQ(beyond.status().message(), "row range start 9 is not inside the matrix's 9 rows");
}

TEST(ShardMap, BlockSchemesMapAndBox) {
  auto rows = *ShardMap::bind(parse("rows:block=4"), {10, 6});
  EXPECT_EQ(rows.shard_count(), 3u);
  EXPECT_EQ(rows.shard_of(9, 5), 2u);
  EXPECT_EQ(rows.box(2).rows(), 2u) << "the last block is short";
  EXPECT_EQ(rows.box(2).cols(), 6u);
  auto cols = *ShardMap::bind(parse("cols:block=4"), {10, 6});
  EXPECT_EQ(cols.shard_count(), 2u);
  EXPECT_EQ(cols.shard_of(9, 5), 1u);
  EXPECT_EQ(cols.box(1).col_begin, 4u);
  auto grid = *ShardMap::bind(parse("grid:block=4x4"), {10, 6});
  EXPECT_EQ(grid.shard_count(), 6u);
  EXPECT_EQ(grid.col_blocks(), 2u);
  EXPECT_EQ(grid.shard_of(5, 5), 1u * 2 + 1);  // row-major block index
  const ShardBox b = grid.box(5);
  EXPECT_EQ(b.row_block, 2u);
  EXPECT_EQ(b.col_block, 1u);
  EXPECT_EQ(b.rows(), 2u);
  EXPECT_EQ(b.cols(), 2u);
  EXPECT_EQ(grid.shard_at(2, 1), 5u);
  EXPECT_FALSE(grid.shard_at(3, 0).has_value());
  // An empty matrix still has one (empty) shard per axis.
  EXPECT_EQ(ShardMap::bind(parse("rows:block=4"), {0, 0})->shard_count(), 1u);
}

// The multiply-shift quotient against the division it stands for, at the
// edges of its 32-bit range and past them (where it divides), for divisors
// that are powers of two, one off them, primes and the 32-bit maximum.
TEST(BlockDivisor, QuotientIsTheDivisionsAtEveryEdge) {
  const std::uint64_t top32 = 0xFFFFFFFFULL;
  const std::vector<std::uint64_t> divisors = {
      1, 2, 3, 7, 12500, 65535, 65536, 65537, 1000003, top32 / 2, top32 - 1, top32, top32 + 1, 1ULL << 40, ~0ULL};
  std::vector<std::uint64_t> xs = {0, 1, top32 - 1, top32, top32 + 1, 1ULL << 40, ~0ULL - 1, ~0ULL};
  std::uint64_t state = 7;
  for (int i = 0; i < 2000; ++i) {
    state = splitmix64(state);
    xs.push_back(state & top32);
    xs.push_back(state);
  }
  for (const std::uint64_t d : divisors) {
    const BlockDivisor divisor(d);
    std::vector<std::uint64_t> near = xs;
    for (const std::uint64_t k : std::initializer_list<std::uint64_t>{1, 2, 3, top32 / d}) {
      if (k == 0 || d > ~0ULL / k) continue;
      near.push_back(d * k - 1);
      near.push_back(d * k);
      if (d * k < ~0ULL) near.push_back(d * k + 1);
    }
    for (const std::uint64_t x : near) ASSERT_EQ(divisor.quotient(x), x / d) << x << " / " << d;
  }
}

TEST(ShardMap, ShapeMismatchIsRefused) {
  auto map = ShardMap::bind(parse("rows:block=4,shape=10x6"), {10, 7});
  ASSERT_FALSE(map.ok());
  EXPECT_EQ(map.status().message(), "scheme says shape 10x6 but the matrix is 10x7");
}

TEST(ShardMap, HashesMatchTheNumpyReference) {
  const auto golden = testing::golden_expectations();
  std::vector<std::uint64_t> keys;
  for (const auto& k : golden["hash_keys"]) keys.push_back(std::stoull(k.get<std::string>()));
  ASSERT_FALSE(golden["hashes"].empty());
  for (const auto& [text, expected] : golden["hashes"].items()) {
    const ShardingSpec spec = parse(text);
    auto map = *ShardMap::bind(spec, {1ULL << 62, 1});
    for (std::size_t i = 0; i < keys.size(); ++i) {
      ASSERT_EQ(map.hashed_shard_of(keys[i]), expected[i].get<std::uint64_t>()) << text << " key " << keys[i];
    }
  }
}

TEST(ShardMap, HashedIdsPartitionTheAxis) {
  auto map = *ShardMap::bind(parse("cols:hash=mix,shards=5"), {3, 1000});
  auto ids = map.hashed_ids({0, 1, 2, 3, 4});
  std::vector<int> seen(1000, 0);
  for (std::uint64_t s = 0; s < 5; ++s) {
    EXPECT_TRUE(std::is_sorted(ids[s].begin(), ids[s].end()));
    for (auto id : ids[s]) {
      EXPECT_EQ(map.hashed_shard_of(id), s);
      ++seen[id];
    }
  }
  for (int count : seen) EXPECT_EQ(count, 1);
  EXPECT_EQ(map.shard_of(2, 17), map.hashed_shard_of(17));
}

TEST(ShardMap, JumpMovesAboutOneInNPlusOne) {
  // Growing from N to N+1 shards moves ~1/(N+1) of keys, and only to the new shard.
  const std::uint64_t n = 16;
  auto before = *ShardMap::bind(parse("rows:hash=jump,shards=16"), {100000, 1});
  auto after = *ShardMap::bind(parse("rows:hash=jump,shards=17"), {100000, 1});
  std::uint64_t moved = 0;
  for (std::uint64_t key = 0; key < 100000; ++key) {
    if (before.hashed_shard_of(key) != after.hashed_shard_of(key)) {
      ++moved;
      EXPECT_EQ(after.hashed_shard_of(key), n);
    }
  }
  const double fraction = static_cast<double>(moved) / 100000.0;
  EXPECT_NEAR(fraction, 1.0 / 17.0, 0.01);
}

TEST(Hash, Splitmix64KnownValues) {
  // The first outputs of the reference splitmix64 generator seeded with 0 are
  // the finalizer applied to 0, gamma, 2*gamma, ...
  EXPECT_EQ(splitmix64(0), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(splitmix64(0x9E3779B97F4A7C15ULL), 0x6E789E6AA1B965F4ULL);
}

}  // namespace
}  // namespace reshard

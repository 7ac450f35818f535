// Stages in isolation, with a one-rank communicator: no mpiexec needed.
#include <gtest/gtest.h>

#include <cstring>

#include "reshard/pipeline/assemble.hpp"
#include "reshard/pipeline/exchange.hpp"

namespace reshard {
namespace {

Plan plan_for(const std::string& new_scheme, GlobalShape shape, int ranks) {
  Plan plan;
  plan.shape = shape;
  plan.destination_map = *ShardMap::bind(*ShardingSpec::parse_text(new_scheme), shape);
  plan.owner = DestinationOwner(plan.destination_map.shard_count(), ranks);
  for (std::uint64_t d = 0; d < plan.destination_map.shard_count(); ++d) {
    plan.destinations.push_back({d, "shard_" + std::to_string(d), plan.destination_map.box(d)});
  }
  return plan;
}

TEST(Exchange, SelfCommKeepsEverythingLocalAndCountsRounds) {
  auto comm = make_self_comm();
  Buckets buckets(2);
  for (std::uint64_t k = 0; k < 10; ++k) buckets.by_shard[k % 2].push_back({k, k, k, k});
  ExchangeStats stats;
  auto entries = exchange(*comm, buckets, DestinationOwner(2, 1), 32 * 3, stats);
  EXPECT_EQ(entries.size(), 10u);
  EXPECT_EQ(stats.bytes_sent, 0u);
  EXPECT_EQ(stats.entries_kept_local, 10u);
  EXPECT_EQ(entries[4].value_bits, 8u) << "shard 0's bucket first, in order";
  EXPECT_EQ(entries[9].value_bits, 9u);
}

TEST(Assemble, SortsByColumnKeepsDuplicatesInSourceOrder) {
  Plan plan = plan_for("rows:block=2", {4, 5}, 1);
  // Shard 1 holds rows 2..3. Entry values tell them apart.
  std::vector<Entry> entries = {
      {3, 4, 100, (1ULL << kOrderShardShift) | 0},
      {2, 3, 101, (0ULL << kOrderShardShift) | 7},
      {3, 1, 102, (0ULL << kOrderShardShift) | 2},
      {3, 1, 103, (0ULL << kOrderShardShift) | 1},  // duplicate (3,1), earlier in source order
  };
  auto shard = assemble_shard(std::move(entries), plan.destinations[1], plan, {'i', 8}, {});
  EXPECT_EQ(shard.nrows, 2u);
  EXPECT_EQ(shard.ncols, 5u);
  EXPECT_EQ(shard.indptr, (std::vector<std::uint64_t>{0, 1, 4}));
  EXPECT_EQ(shard.indices, (std::vector<std::uint64_t>{3, 1, 1, 4}));
  std::vector<std::int64_t> values(4);
  std::memcpy(values.data(), shard.values.data(), 32);
  EXPECT_EQ(values, (std::vector<std::int64_t>{101, 103, 102, 100}));
  Fingerprint expected;
  expected.add(3, 4, 100);
  expected.add(2, 3, 101);
  expected.add(3, 1, 102);
  expected.add(3, 1, 103);
  EXPECT_EQ(shard.fingerprint, expected);
}

TEST(Assemble, CscLayoutAndHashedIds) {
  Plan plan = plan_for("cols:hash=mod,shards=2,layout=csc", {3, 6}, 1);
  std::vector<const DestinationShard*> owned = {&plan.destinations[1]};
  auto ids = hashed_ids_for(plan, owned);
  ASSERT_EQ(ids[0], (std::vector<std::uint64_t>{1, 3, 5}));
  std::vector<Entry> entries = {{2, 5, 1, 0}, {0, 5, 2, 1}, {1, 1, 3, 2}};
  auto shard = assemble_shard(std::move(entries), plan.destinations[1], plan, {'i', 4}, ids[0]);
  EXPECT_EQ(shard.layout, Layout::kCsc);
  EXPECT_EQ(shard.ncols, 3u);
  EXPECT_EQ(shard.indptr, (std::vector<std::uint64_t>{0, 1, 1, 3}));  // local cols of 1, 3, 5
  EXPECT_EQ(shard.indices, (std::vector<std::uint64_t>{1, 0, 2}));    // rows, ascending within a column
  ASSERT_TRUE(shard.col_ids.has_value());
  EXPECT_EQ(shard.values.size(), 12u);
  Fingerprint expected;
  expected.add(2, 5, 1);
  expected.add(0, 5, 2);
  expected.add(1, 1, 3);
  EXPECT_EQ(shard.fingerprint, expected);
}

TEST(GroupByDestination, OnlyOwnedShardsInOrder) {
  Plan plan = plan_for("rows:block=1", {4, 2}, 2);
  // Rank 1 owns shards 1 and 3.
  std::vector<Entry> entries = {{3, 0, 1, 0}, {1, 1, 2, 0}, {3, 1, 3, 0}};
  std::vector<const DestinationShard*> owned;
  auto groups = group_by_destination(std::move(entries), plan, 1, owned);
  ASSERT_EQ(owned.size(), 2u);
  EXPECT_EQ(owned[0]->index, 1u);
  EXPECT_EQ(owned[1]->index, 3u);
  EXPECT_EQ(groups[0].size(), 1u);
  EXPECT_EQ(groups[1].size(), 2u);
}

}  // namespace
}  // namespace reshard

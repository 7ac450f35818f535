// Stages in isolation, with a one-rank communicator: no mpiexec needed.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "reshard/pipeline/assemble.hpp"
#include "reshard/pipeline/exchange.hpp"
#include "support/temp_dir.hpp"

namespace reshard {
namespace {

using testing::TempDir;

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

BucketBlock block_of(std::vector<Entry> entries, std::vector<BucketBlock::Segment> segments) {
  BucketBlock block;
  block.entries = std::move(entries);
  block.segments = std::move(segments);
  return block;
}

TEST(Exchange, SelfCommKeepsEverythingLocalAndCountsRounds) {
  auto comm = make_self_comm();
  Buckets buckets(2);
  buckets.add(block_of({{0, 0, 0, 0}, {2, 2, 2, 2}, {1, 1, 1, 1}}, {{0, 2}, {1, 1}}));
  buckets.add(block_of({{4, 4, 4, 4}, {3, 3, 3, 3}}, {{0, 1}, {1, 1}}));
  ExchangeStats stats;
  const std::vector<std::vector<std::uint64_t>> held = {buckets.held()};
  auto wave = exchange_wave(*comm, buckets, held, DestinationOwner(2, 1), {0, 1}, 32 * 3, stats);
  ASSERT_TRUE(wave.ok()) << wave.status().message();
  EXPECT_EQ(wave->shards, (std::vector<std::uint64_t>{0, 1}));
  std::vector<std::uint64_t> counts;
  for (const auto& parts : wave->parts) {
    counts.push_back(0);
    for (const auto& part : parts) counts.back() += part.size();
  }
  EXPECT_EQ(counts, (std::vector<std::uint64_t>{3, 2}));
  EXPECT_EQ(stats.bytes_sent, 0u);
  EXPECT_EQ(stats.entries_kept_local, 5u);
  EXPECT_EQ(stats.waves, 1u);
  std::vector<std::uint64_t> shard0;
  for (const auto& part : wave->parts[0]) {
    for (const auto& e : part) shard0.push_back(e.value_bits);
  }
  EXPECT_EQ(shard0, (std::vector<std::uint64_t>{0, 2, 4})) << "blocks in the order they were added";
}

TEST(Buckets, SpilledEntriesComeBackIdentical) {
  TempDir dir;
  auto scratch = ScratchFile::create(dir.path());
  ASSERT_TRUE(scratch.ok()) << scratch.status().message();
  Buckets buckets(3);
  buckets.add(block_of({{1, 0, 10, 0}, {2, 0, 11, 1}, {5, 2, 12, 2}}, {{0, 2}, {2, 1}}));
  EXPECT_EQ(buckets.resident_bytes(), 3 * sizeof(Entry));
  ASSERT_TRUE(buckets.spill(*scratch).ok());
  EXPECT_EQ(buckets.resident_bytes(), 0u);
  EXPECT_EQ(buckets.spilled_bytes(), 3 * sizeof(Entry));
  buckets.add(block_of({{3, 0, 13, 3}, {7, 1, 14, 4}}, {{0, 1}, {1, 1}}));
  EXPECT_EQ(buckets.held(), (std::vector<std::uint64_t>{3, 1, 1}));
  std::vector<Entry> shard0(3);
  ASSERT_TRUE(buckets.copy_shard(0, shard0.data()).ok());
  EXPECT_EQ(shard0[0].value_bits, 10u) << "spilled piece";
  EXPECT_EQ(shard0[1].value_bits, 11u);
  EXPECT_EQ(shard0[2].value_bits, 13u) << "resident piece";
  Entry shard2{};
  ASSERT_TRUE(buckets.copy_shard(2, &shard2).ok());
  EXPECT_EQ(shard2.row, 5u);
  EXPECT_EQ(shard2.order, 2u);
}

TEST(ScratchFile, LeavesNothingInTheDirectory) {
  TempDir dir;
  auto scratch = ScratchFile::create(dir.path());
  ASSERT_TRUE(scratch.ok()) << scratch.status().message();
  const Bytes payload = {1, 2, 3, 4, 5};
  auto at = scratch->append(payload);
  ASSERT_TRUE(at.ok());
  auto second = scratch->append(payload);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, 5u);
  Bytes back(5);
  ASSERT_TRUE(scratch->read_at(*second, back.data(), 5).ok());
  EXPECT_EQ(back, payload);
  EXPECT_FALSE(scratch->read_at(8, back.data(), 5).ok()) << "reading past the end is an error";
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "the scratch file is unlinked from the start";
}

TEST(ScratchFile, MissingDirectoryIsAStorageError) {
  auto scratch = ScratchFile::create("/nonexistent/scratch");
  ASSERT_FALSE(scratch.ok());
  EXPECT_EQ(scratch.status().exit_code(), 4);
  EXPECT_NE(scratch.status().message().find("/nonexistent/scratch"), std::string::npos);
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
  auto shard = assemble_shard({std::span<const Entry>(entries)}, plan.destinations[1], plan, {'i', 8}, {});
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
  // Split in two parts: the order of parts must not matter.
  const std::span<const Entry> all(entries);
  auto shard = assemble_shard({all.subspan(2), all.first(2)}, plan.destinations[1], plan, {'i', 4}, ids[0]);
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

}  // namespace
}  // namespace reshard

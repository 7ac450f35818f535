// The memory model and the wave planner: pure functions over counts.
#include "reshard/pipeline/memory_budget.hpp"

#include <gtest/gtest.h>

#include <set>

namespace reshard {
namespace {

TEST(ParseByteSize, UnitsArePowersOf1024) {
  EXPECT_EQ(*parse_byte_size("1048576"), 1048576u);
  EXPECT_EQ(*parse_byte_size("64MiB"), 64ULL << 20);
  EXPECT_EQ(*parse_byte_size("64m"), 64ULL << 20);
  EXPECT_EQ(*parse_byte_size("1.5G"), 3ULL << 29);
  EXPECT_EQ(*parse_byte_size("2TiB"), 2ULL << 40);
  for (const char* bad : {"", "lots", "12 parsecs", "-5MiB", "0"}) {
    auto parsed = parse_byte_size(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().exit_code(), 2);
    }
  }
}

TEST(FormatBytes, PicksAReadableUnit) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(3ULL << 20), "3.0 MiB");
  EXPECT_EQ(format_bytes(5ULL << 29), "2.5 GiB");
  // A need and a limit one decimal cannot tell apart get their exact counts.
  EXPECT_EQ(format_bytes_against(6'360'000'000, 6'340'000'000), "5.9 GiB (6360000000 bytes against 6340000000)");
  EXPECT_EQ(format_bytes_against(5ULL << 29, 1ULL << 30), "2.5 GiB");
}

TEST(MemoryProbe, ResidentSetIsBelowPhysicalMemory) {
  const std::uint64_t rss = resident_set_bytes();
  EXPECT_GT(rss, 0u);
  EXPECT_LT(rss, physical_memory_bytes());
  // Two ranks on a node share it: each gets half of what one would.
  EXPECT_NEAR(static_cast<double>(default_memory_limit(2)), static_cast<double>(default_memory_limit(1)) / 2, 1.0);
  EXPECT_NEAR(static_cast<double>(default_memory_limit(1)),
              kDefaultMemoryFraction * static_cast<double>(physical_memory_bytes()), 1.0);
}

// Two ranks, four shards; rank p owns shard d when d % 2 == p.
WaveProblem four_shards(std::uint64_t working) {
  WaveProblem problem;
  problem.ranks = 2;
  problem.held = {{100, 0, 50, 10}, {100, 40, 50, 10}};
  problem.owner = {0, 1, 0, 1};
  problem.majors = {10, 10, 10, 10};
  problem.ids = {0, 0, 0, 0};
  problem.resident = {0, 0};
  problem.working_bytes = working;
  return problem;
}

std::uint64_t need_alone(const WaveProblem& problem, std::uint64_t shard) {
  std::uint64_t total = 0;
  for (const auto& held : problem.held) total += held[shard];
  return memory_cost::kEntryBytes * total + memory_cost::assemble(total, problem.majors[shard], problem.ids[shard]);
}

TEST(PlanWaves, EverythingInOneWaveWhenItFits) {
  auto plan = plan_waves(four_shards(1ULL << 30));
  ASSERT_FALSE(plan.too_large);
  ASSERT_EQ(plan.waves.size(), 1u);
  EXPECT_EQ(plan.waves[0], (std::vector<std::uint64_t>{0, 1, 2, 3}));
}

TEST(PlanWaves, SplitsSoEveryWaveFitsAndCoversEveryShardOnce) {
  auto problem = four_shards(0);
  problem.working_bytes = need_alone(problem, 0);  // the largest shard exactly fits alone
  auto plan = plan_waves(problem);
  ASSERT_FALSE(plan.too_large);
  EXPECT_GT(plan.waves.size(), 1u);
  EXPECT_LE(plan.peak_bytes, problem.working_bytes);
  std::set<std::uint64_t> seen;
  std::uint64_t previous = 0;
  for (const auto& wave : plan.waves) {
    for (auto d : wave) {
      EXPECT_TRUE(seen.insert(d).second) << "shard " << d << " twice";
      EXPECT_GE(d, previous);
      previous = d;
    }
  }
  EXPECT_EQ(seen.size(), 4u);
}

TEST(PlanWaves, NamesTheShardThatCannotFitAlone) {
  auto problem = four_shards(0);
  problem.working_bytes = need_alone(problem, 0) - 1;
  auto plan = plan_waves(problem);
  ASSERT_TRUE(plan.too_large);
  EXPECT_EQ(plan.too_large->shard, 0u);
  EXPECT_EQ(plan.too_large->owner, 0);
  EXPECT_EQ(plan.too_large->entries, 200u);
  EXPECT_EQ(plan.too_large->bytes_needed, need_alone(problem, 0));
  EXPECT_TRUE(plan.waves.empty());
}

TEST(PlanWaves, ResidentBucketsCountAgainstTheBudget) {
  auto problem = four_shards(0);
  problem.working_bytes = need_alone(problem, 0);
  problem.resident = {0, 1000};
  EXPECT_FALSE(plan_waves(problem).too_large) << "the sender of shard 0 has room to spare";
  problem.resident = {1, 0};
  EXPECT_TRUE(plan_waves(problem).too_large) << "one resident byte on shard 0's owner tips it over";
  problem.resident = {0, 0};
  EXPECT_FALSE(plan_waves(problem).too_large);
}

TEST(ChooseWaves, KeepsResidentBucketsWhenTheyCostNoWave) {
  auto problem = four_shards(1ULL << 30);
  problem.resident = {1000, 1000};
  const WaveChoice choice = choose_waves(problem);
  EXPECT_FALSE(choice.spill_resident);
  EXPECT_EQ(choice.plan.waves.size(), 1u);
  problem.resident = {0, 0};
  EXPECT_FALSE(choose_waves(problem).spill_resident) << "nothing held, nothing to spill";
}

TEST(ChooseWaves, SpillsResidentBucketsThatWouldAddWaves) {
  // Every shard fits a wave of its own with the budget free, and all of
  // them fit one wave; resident bytes on rank 0 leave room for one at a time.
  auto problem = four_shards(0);
  std::uint64_t all = 0;
  for (std::uint64_t d = 0; d < 4; ++d) all += need_alone(problem, d);
  problem.working_bytes = all;
  ASSERT_EQ(plan_waves(problem).waves.size(), 1u);
  problem.resident = {all - need_alone(problem, 0), 0};
  ASSERT_GT(plan_waves(problem).waves.size(), 1u) << "the resident bytes must cost waves for this test";
  const WaveChoice choice = choose_waves(problem);
  EXPECT_TRUE(choice.spill_resident);
  ASSERT_FALSE(choice.plan.too_large);
  EXPECT_EQ(choice.plan.waves.size(), 1u);
}

TEST(ChooseWaves, SpillsWhenTheWavesDoNotFitWithResidentBuckets) {
  auto problem = four_shards(0);
  problem.working_bytes = need_alone(problem, 0);
  problem.resident = {1, 0};
  ASSERT_TRUE(plan_waves(problem).too_large);
  const WaveChoice choice = choose_waves(problem);
  EXPECT_TRUE(choice.spill_resident);
  EXPECT_FALSE(choice.plan.too_large);
}

TEST(PlanWaves, SkippedShardsAreInNoWave) {
  auto problem = four_shards(1ULL << 30);
  problem.owner[1] = -1;
  auto plan = plan_waves(problem);
  ASSERT_EQ(plan.waves.size(), 1u);
  EXPECT_EQ(plan.waves[0], (std::vector<std::uint64_t>{0, 2, 3}));
}

}  // namespace
}  // namespace reshard

// The whole job on one rank through SelfComm: every scheme pair, then the
// refusals that must leave the destination untouched.
#include <gtest/gtest.h>

#include <filesystem>

#include "reshard/pipeline/job.hpp"
#include "support/temp_dir.hpp"
#include "support/test_matrix.hpp"

namespace reshard {
namespace {

namespace fs = std::filesystem;

JobConfig config_for(const testing::TempDir& dir, const std::string& old_scheme, const std::string& new_scheme) {
  JobConfig config;
  config.src_pattern = dir / "src/shard_{i}.npz";
  config.dst_pattern = dir / "dst/shard_{i}.npz";
  config.old_spec = *ShardingSpec::parse_text(old_scheme);
  config.new_spec = *ShardingSpec::parse_text(new_scheme);
  return config;
}

// Shard files only: the destination also holds _SUCCESS and _reshard/.
std::size_t files_in(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return 0;
  std::size_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) n += entry.path().filename().string().rfind("shard_", 0) == 0;
  return n;
}

struct SchemePair {
  const char* old_scheme;
  const char* new_scheme;
};

class SerialReshard : public ::testing::TestWithParam<SchemePair> {};

TEST_P(SerialReshard, PreservesEveryEntry) {
  testing::TempDir dir;
  const GlobalShape shape{53, 41};
  const auto entries = testing::random_entries(shape, 700, 5);
  auto config = config_for(dir, GetParam().old_scheme, GetParam().new_scheme);
  testing::write_sharded(entries, shape, config.old_spec, config.src_pattern);
  auto comm = make_self_comm();
  auto outcome = run_reshard(*comm, config, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status().message();
  EXPECT_EQ(outcome->report["nnz"].get<std::uint64_t>(), entries.size());
  EXPECT_EQ(outcome->report["source_fingerprint"], outcome->report["destination_fingerprint"]);
  auto expected = entries;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(testing::read_sharded(shape, config.new_spec, config.dst_pattern), expected);
}

INSTANTIATE_TEST_SUITE_P(Schemes, SerialReshard,
                         ::testing::Values(SchemePair{"rows:block=10", "cols:block=7"},
                                           SchemePair{"cols:block=7", "rows:block=10"},
                                           SchemePair{"rows:block=10", "rows:block=13"},
                                           SchemePair{"rows:block=10", "grid:block=9x8"},
                                           SchemePair{"grid:block=9x8,shape=53x41", "rows:block=6"},
                                           SchemePair{"rows:block=10", "rows:hash=mix,shards=4"},
                                           SchemePair{"rows:hash=jump,shards=4", "rows:hash=jump,shards=5"},
                                           SchemePair{"cols:hash=rendezvous,shards=3", "cols:block=20,layout=csc"},
                                           SchemePair{"rows:block=100", "cols:hash=mod,shards=6"}));

TEST(SerialReshardRefusals, AnotherJobsDestinationNeedsOverwrite) {
  testing::TempDir dir;
  const GlobalShape shape{20, 10};
  auto config = config_for(dir, "rows:block=5", "cols:block=5");
  testing::write_sharded(testing::random_entries(shape, 50, 1), shape, config.old_spec, config.src_pattern);
  auto comm = make_self_comm();
  ASSERT_TRUE(run_reshard(*comm, config, nullptr).ok());
  // The same job again is a no-op success.
  auto again = run_reshard(*comm, config, nullptr);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_TRUE(again->report["already_published"].get<bool>());
  // Another job onto the published dataset is refused...
  config.new_spec = *ShardingSpec::parse_text("cols:block=3");
  auto other = run_reshard(*comm, config, nullptr);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().exit_code(), 2);
  EXPECT_NE(other.status().message().find("--overwrite"), std::string::npos) << other.status().message();
  EXPECT_EQ(files_in(dir / "dst"), 2u);
  // ...unless asked.
  config.overwrite = true;
  auto replaced = run_reshard(*comm, config, nullptr);
  ASSERT_TRUE(replaced.ok()) << replaced.status().message();
  EXPECT_EQ(files_in(dir / "dst"), 4u);
}

TEST(SerialReshardRefusals, StaleShardsRemovedOnOverwrite) {
  testing::TempDir dir;
  const GlobalShape shape{20, 10};
  auto config = config_for(dir, "rows:block=5", "cols:block=2");
  testing::write_sharded(testing::random_entries(shape, 50, 1), shape, config.old_spec, config.src_pattern);
  auto comm = make_self_comm();
  ASSERT_TRUE(run_reshard(*comm, config, nullptr).ok());
  EXPECT_EQ(files_in(dir / "dst"), 5u);
  config.new_spec = *ShardingSpec::parse_text("cols:block=5");
  config.overwrite = true;
  ASSERT_TRUE(run_reshard(*comm, config, nullptr).ok());
  EXPECT_EQ(files_in(dir / "dst"), 2u) << "shards 2..4 of the old layout must go";
}

TEST(SerialReshardRefusals, DestinationInsideSource) {
  testing::TempDir dir;
  const GlobalShape shape{20, 10};
  auto config = config_for(dir, "rows:block=5", "cols:block=5");
  testing::write_sharded(testing::random_entries(shape, 50, 1), shape, config.old_spec, config.src_pattern);
  auto comm = make_self_comm();
  for (const std::string& dst : {dir / "src/shard_{i}.npz", dir / "src/out_{i}.npz", dir / "src/sub/x_{i}.npz"}) {
    config.dst_pattern = dst;
    auto outcome = run_reshard(*comm, config, nullptr);
    ASSERT_FALSE(outcome.ok()) << dst;
    EXPECT_EQ(outcome.status().exit_code(), 2);
  }
  EXPECT_EQ(files_in(dir / "src"), 4u) << "the source directory gained or lost files";
}

TEST(SerialReshardRefusals, MissingShardAndWrongHeight) {
  testing::TempDir dir;
  const GlobalShape shape{20, 10};
  auto config = config_for(dir, "rows:block=5", "cols:block=5");
  testing::write_sharded(testing::random_entries(shape, 50, 1), shape, config.old_spec, config.src_pattern);
  fs::remove(dir / "src/shard_2.npz");
  auto comm = make_self_comm();
  auto outcome = run_reshard(*comm, config, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().message(), "missing source shard " + (dir / "src/shard_2.npz"));
  // The shards say block 5; claiming block 4 puts every shard in the wrong place.
  testing::write_sharded(testing::random_entries(shape, 50, 1), shape, config.old_spec, config.src_pattern);
  config.old_spec = *ShardingSpec::parse_text("rows:block=4");
  outcome = run_reshard(*comm, config, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().exit_code(), 2);
  EXPECT_NE(outcome.status().message().find("does not match"), std::string::npos) << outcome.status().message();
  EXPECT_EQ(files_in(dir / "dst"), 0u);
}

}  // namespace
}  // namespace reshard

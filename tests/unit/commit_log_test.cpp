// The manifest journal (issue 11.4): rounds append segments instead of
// rewriting the manifest, readers fold them in, and whole writes compact.
#include <gtest/gtest.h>

#include <filesystem>

#include "reshard/comm.hpp"
#include "reshard/pipeline/commit.hpp"
#include "reshard/store/posix_store.hpp"
#include "support/temp_dir.hpp"

namespace reshard {
namespace {

Manifest manifest_with(std::size_t shards) {
  Manifest m;
  m.job_id = "job-journal";
  m.src_pattern = "src/shard_{i}.npz";
  m.dst_pattern = "dst/shard_{i}.npz";
  m.shape = {10, 10};
  m.source_fingerprint = Fingerprint{0, 0};
  for (std::size_t i = 0; i < shards; ++i) {
    m.shards.push_back({i, "dst/shard_" + std::to_string(i) + ".npz", ShardState::kPending, 0, 0, 0, {}});
  }
  return m;
}

WrittenShard written(std::uint64_t index) {
  WrittenShard w;
  w.index = index;
  w.nnz = index + 1;
  w.bytes = 100 + index;
  w.crc32c = static_cast<std::uint32_t>(0xC0FFEE + index);
  w.fingerprint = {index + 1, 7 * index};
  return w;
}

std::size_t files_in(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return 0;
  return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(dir), {}));
}

TEST(CommitLog, RoundsAppendSegmentsAndLeaveTheManifestAlone) {
  testing::TempDir temp;
  auto store = make_posix_store();
  auto comm = make_self_comm();
  const std::string dir = temp / "dst/";
  CommitLog log(*store, dir, manifest_with(100));
  ASSERT_TRUE(log.begin(false).ok());
  const auto manifest_bytes = store->read_all(manifest_key(dir));
  ASSERT_TRUE(manifest_bytes.ok());
  for (std::uint64_t round = 0; round < 5; ++round) {
    ASSERT_TRUE(log.record_round(*comm, {written(2 * round), written(2 * round + 1)}).ok());
  }
  EXPECT_EQ(*store->read_all(manifest_key(dir)), *manifest_bytes) << "a round must not rewrite the manifest";
  EXPECT_EQ(files_in(journal_directory(dir)), 5u);
  auto loaded = load_manifest(*store, dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->has_value());
  for (std::uint64_t i = 0; i < 100; ++i) {
    const ShardRecord& r = (**loaded).shards[i];
    EXPECT_EQ(r.state == ShardState::kWritten, i < 10) << i;
    if (i < 10) {
      EXPECT_EQ(r.nnz, i + 1);
      EXPECT_EQ(r.crc32c, 0xC0FFEE + i);
      EXPECT_EQ(r.key, "dst/shard_" + std::to_string(i) + ".npz");
    }
  }
}

TEST(CommitLog, WholeWriteFoldsTheJournalAndForgottenShardsStayPending) {
  testing::TempDir temp;
  auto store = make_posix_store();
  auto comm = make_self_comm();
  const std::string dir = temp / "dst/";
  CommitLog log(*store, dir, manifest_with(10));
  ASSERT_TRUE(log.begin(false).ok());
  ASSERT_TRUE(log.record_round(*comm, {written(0), written(1)}).ok());
  ASSERT_TRUE(log.record_round(*comm, {written(2)}).ok());
  log.forget({1});
  ASSERT_TRUE(log.save().ok());
  EXPECT_EQ(files_in(journal_directory(dir)), 0u) << "folded segments are removed";
  auto loaded = load_manifest(*store, dir);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((**loaded).shards[0].state, ShardState::kWritten);
  EXPECT_EQ((**loaded).shards[1].state, ShardState::kPending) << "a stale segment must not bring it back";
  EXPECT_EQ((**loaded).shards[2].state, ShardState::kWritten);
  // Segments after the whole write continue the numbering and fold again.
  ASSERT_TRUE(log.record_round(*comm, {written(1)}).ok());
  loaded = load_manifest(*store, dir);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((**loaded).shards[1].state, ShardState::kWritten);
}

TEST(CommitLog, SegmentsLeftBelowTheManifestsStartAreIgnored) {
  testing::TempDir temp;
  auto store = make_posix_store();
  auto comm = make_self_comm();
  const std::string dir = temp / "dst/";
  {
    CommitLog earlier(*store, dir, manifest_with(4));
    ASSERT_TRUE(earlier.begin(false).ok());
    ASSERT_TRUE(earlier.record_round(*comm, {written(3)}).ok());
  }
  // A new run of the job that starts over: its begin() numbers past the
  // segment already there, so that segment no longer counts.
  CommitLog restarted(*store, dir, manifest_with(4));
  ASSERT_TRUE(restarted.begin(false).ok());
  auto loaded = load_manifest(*store, dir);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((**loaded).shards[3].state, ShardState::kPending);
}

TEST(CommitLog, CorruptSegmentIsAnErrorNamingIt) {
  testing::TempDir temp;
  auto store = make_posix_store();
  auto comm = make_self_comm();
  const std::string dir = temp / "dst/";
  CommitLog log(*store, dir, manifest_with(4));
  ASSERT_TRUE(log.begin(false).ok());
  ASSERT_TRUE(log.record_round(*comm, {written(0)}).ok());
  const std::string key = journal_segment_key(dir, 0);
  ASSERT_TRUE(store->write_atomic(key, Bytes{'{', 'x'}).ok());
  auto loaded = load_manifest(*store, dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find(key), std::string::npos) << loaded.status().message();
}

}  // namespace
}  // namespace reshard

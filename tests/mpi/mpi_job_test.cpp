// The pipeline under a real MPI communicator (registered for 1-4 ranks).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>

#include "reshard/mpi_comm.hpp"
#include "reshard/pipeline/exchange.hpp"
#include "reshard/pipeline/job.hpp"
#include "support/temp_dir.hpp"
#include "support/test_matrix.hpp"

namespace reshard {
namespace {

// Rank 0 makes the directory; everyone uses its name.
std::string shared_dir(Comm& comm, std::unique_ptr<testing::TempDir>& owner) {
  Bytes name;
  if (comm.rank() == 0) {
    owner = std::make_unique<testing::TempDir>();
    name.assign(owner->path().begin(), owner->path().end());
  }
  const auto all = comm.allgather(name);
  return std::string(all[0].begin(), all[0].end());
}

TEST(MpiComm, AlltoallvInManyRoundsDeliversEverything) {
  auto comm = make_world_comm();
  const auto ranks = static_cast<std::uint64_t>(comm->size());
  const auto me = static_cast<std::uint64_t>(comm->rank());
  // Rank r sends (r + 1) * (p + 1) * 5 elements of 8 bytes to rank p.
  std::vector<std::uint64_t> counts(ranks);
  Bytes send;
  for (std::uint64_t p = 0; p < ranks; ++p) {
    const std::uint64_t n = (me + 1) * (p + 1) * 5;
    counts[p] = n * 8;
    for (std::uint64_t k = 0; k < n; ++k) append_le<std::uint64_t>(send, (me << 32) | (p << 16) | k);
  }
  std::vector<std::uint64_t> recv_counts;
  // 24-byte messages: three elements per round, many rounds.
  ByteArray got = comm->alltoallv(send, counts, recv_counts, 8, 24);
  EXPECT_GT(comm->last_exchange_rounds(), 1u);
  std::uint64_t offset = 0;
  for (std::uint64_t src = 0; src < ranks; ++src) {
    const std::uint64_t n = (src + 1) * (me + 1) * 5;
    ASSERT_EQ(recv_counts[src], n * 8);
    for (std::uint64_t k = 0; k < n; ++k) {
      ASSERT_EQ(load_le<std::uint64_t>(got.data() + offset), (src << 32) | (me << 16) | k);
      offset += 8;
    }
  }
}

TEST(MpiComm, AlltoallvPiecesReadsScatteredPiecesAcrossRounds) {
  auto comm = make_world_comm();
  const auto ranks = static_cast<std::uint64_t>(comm->size());
  const auto me = static_cast<std::uint64_t>(comm->rank());
  // Rank r sends rank p the elements 0 .. n-1 with n = 7 + 3r + 2p, cut into
  // pieces of 1, 2, 3, ... elements (plus an empty piece first), each piece
  // in its own buffer, so pieces begin and end inside rounds of 4 elements.
  std::vector<std::vector<Bytes>> buffers(ranks);
  std::vector<std::vector<ByteView>> pieces(ranks);
  for (std::uint64_t p = 0; p < ranks; ++p) {
    const std::uint64_t n = 7 + 3 * me + 2 * p;
    buffers[p].emplace_back();
    for (std::uint64_t k = 0, size = 1; k < n; ++size) {
      Bytes& piece = buffers[p].emplace_back();
      for (std::uint64_t i = 0; i < size && k < n; ++i, ++k) {
        append_le<std::uint64_t>(piece, (me << 32) | (p << 16) | k);
      }
    }
    for (const auto& buffer : buffers[p]) pieces[p].push_back(buffer);
  }
  std::vector<std::uint64_t> recv_counts;
  const ByteArray got = comm->alltoallv_pieces(pieces, recv_counts, 8, 32);
  std::uint64_t offset = 0;
  std::uint64_t most = 0;
  for (std::uint64_t src = 0; src < ranks; ++src) {
    const std::uint64_t n = 7 + 3 * src + 2 * me;
    most = std::max(most, n);
    ASSERT_EQ(recv_counts[src], n * 8);
    for (std::uint64_t k = 0; k < n; ++k) {
      ASSERT_EQ(load_le<std::uint64_t>(got.data() + offset), (src << 32) | (me << 16) | k);
      offset += 8;
    }
  }
  EXPECT_EQ(offset, got.size());
  EXPECT_GE(comm->last_exchange_rounds(), (most + 3) / 4);
}

// Pieces of a megabyte and more go as messages of their own (cut at the
// round size), small ones between them packed: every byte still arrives in
// order, whatever mix each rank sends each peer.
TEST(MpiComm, AlltoallvPiecesMixesLoneAndPackedMessages) {
  auto comm = make_world_comm();
  const auto ranks = static_cast<std::uint64_t>(comm->size());
  const auto me = static_cast<std::uint64_t>(comm->rank());
  const std::uint64_t large = (kLoneMessageBytes + kLoneMessageBytes / 2) / 8;  // elements
  // To rank p: 3 small pieces, a large one, 2 small, a large one (its
  // length depending on me and p), 1 small; element k of what goes to p is
  // (me, p, k).
  std::vector<std::vector<Bytes>> buffers(ranks);
  std::vector<std::vector<ByteView>> pieces(ranks);
  for (std::uint64_t p = 0; p < ranks; ++p) {
    std::uint64_t k = 0;
    for (const std::uint64_t n : {std::uint64_t{3}, std::uint64_t{5}, std::uint64_t{1}, large, std::uint64_t{2},
                                  std::uint64_t{7}, large + 13 * me + p, std::uint64_t{4}}) {
      Bytes& piece = buffers[p].emplace_back();
      for (std::uint64_t i = 0; i < n; ++i, ++k) append_le<std::uint64_t>(piece, (me << 48) | (p << 32) | k);
    }
    for (const auto& buffer : buffers[p]) pieces[p].push_back(buffer);
  }
  std::vector<std::uint64_t> recv_counts;
  const ByteArray got = comm->alltoallv_pieces(pieces, recv_counts, 8, kLoneMessageBytes);
  std::uint64_t offset = 0;
  for (std::uint64_t src = 0; src < ranks; ++src) {
    const std::uint64_t n = 3 + 5 + 1 + large + 2 + 7 + large + 13 * src + me + 4;
    ASSERT_EQ(recv_counts[src], n * 8) << "from rank " << src;
    for (std::uint64_t k = 0; k < n; ++k, offset += 8) {
      ASSERT_EQ(load_le<std::uint64_t>(got.data() + offset), (src << 48) | (me << 32) | k) << src << ", " << k;
    }
  }
  EXPECT_EQ(offset, got.size());
  // Packed, lone (cut in 2), packed, lone (cut in 2), packed: at least 7
  // rounds whenever a rank sends to another.
  if (ranks > 1) {
    EXPECT_GE(comm->last_exchange_rounds(), 7u);
  }
}

// Each rank buckets two sources with entries for every rank's shard; the
// receiver learns each segment's source and sorted flag from its sender,
// and gets its entries in place.
TEST(MpiExchange, SegmentsArriveWithTheirSourceAndSortedFlag) {
  auto comm = make_world_comm();
  const auto ranks = static_cast<std::uint64_t>(comm->size());
  const auto me = static_cast<std::uint64_t>(comm->rank());
  Buckets buckets(ranks);
  for (const std::uint64_t source : {2 * me, 2 * me + 1}) {
    BucketBlock block;
    block.source = source;
    block.sorted = source % 2 == 0;
    for (std::uint64_t d = 0; d < ranks; ++d) {
      // d + 1 entries for shard d, each naming its source and shard.
      for (std::uint64_t k = 0; k <= d; ++k) block.entries.push_back({d, (source << 16) | (d << 8) | k});
      block.segments.push_back({d, d + 1});
    }
    buckets.add(std::move(block));
  }
  std::vector<std::vector<std::uint64_t>> held(ranks, buckets.held());
  std::vector<std::uint64_t> wave(ranks);
  std::iota(wave.begin(), wave.end(), 0);
  ExchangeStats stats;
  auto received =
      exchange_wave(*comm, buckets, held, DestinationOwner(ranks, static_cast<int>(ranks)), wave, 1ULL << 30, stats);
  ASSERT_TRUE(received.ok()) << received.status().message();
  ASSERT_EQ(received->shards, (std::vector<std::uint64_t>{me}));
  std::vector<std::uint64_t> sources;
  for (const auto& part : received->parts[0]) {
    sources.push_back(part.source);
    EXPECT_EQ(part.sorted, part.source % 2 == 0) << "source " << part.source;
    ASSERT_EQ(part.entries.size(), me + 1);
    for (std::uint64_t k = 0; k <= me; ++k) {
      EXPECT_EQ(part.entries[k].value_bits, (part.source << 16) | (me << 8) | k);
    }
  }
  std::sort(sources.begin(), sources.end());
  std::vector<std::uint64_t> every_source(2 * ranks);
  std::iota(every_source.begin(), every_source.end(), 0);
  EXPECT_EQ(sources, every_source);
}

TEST(MpiComm, AgreeReturnsTheLowestFailingRank) {
  auto comm = make_world_comm();
  const Status local = comm->rank() == comm->size() - 1 ? Status::Invalid("rank says no") : Status::Ok();
  const Status agreed = agree(*comm, local);
  ASSERT_FALSE(agreed.ok());
  EXPECT_EQ(agreed.message(), "rank says no");
  EXPECT_EQ(agreed.exit_code(), 2);
}

struct Case {
  const char* old_scheme;
  const char* new_scheme;
  std::uint64_t max_message_bytes;
};

class MpiReshard : public ::testing::TestWithParam<Case> {};

TEST_P(MpiReshard, EveryEntryOnceOnAnyRankCount) {
  auto comm = make_world_comm();
  std::unique_ptr<testing::TempDir> owner;
  const std::string dir = shared_dir(*comm, owner);
  const GlobalShape shape{97, 61};
  const auto entries = testing::random_entries(shape, 3000, 11);
  JobConfig config;
  config.src_pattern = dir + "/src/part_{i}.npz";
  config.dst_pattern = dir + "/dst/part_{i}.npz";
  config.old_spec = *ShardingSpec::parse_text(GetParam().old_scheme);
  config.new_spec = *ShardingSpec::parse_text(GetParam().new_scheme);
  config.max_message_bytes = GetParam().max_message_bytes;
  if (comm->rank() == 0) testing::write_sharded(entries, shape, config.old_spec, config.src_pattern);
  comm->barrier();
  auto outcome = run_reshard(*comm, config, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status().message();
  comm->barrier();
  if (comm->rank() != 0) return;
  auto expected = entries;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(testing::read_sharded(shape, config.new_spec, config.dst_pattern), expected);
  const auto& report = outcome->report;
  EXPECT_EQ(report["source_fingerprint"], report["destination_fingerprint"]);
  EXPECT_EQ(report["ranks"].get<int>(), comm->size());
  if (comm->size() > 1 && config.max_message_bytes < 1024) {
    EXPECT_GT(report["exchange_rounds"].get<std::uint64_t>(), 1u) << "the multi-round path must run";
  }
  // Every stored entry was either kept local or sent exactly once.
  EXPECT_EQ(report["totals"]["entries_sent"].get<std::uint64_t>() +
                report["totals"]["entries_kept_local"].get<std::uint64_t>(),
            entries.size());
}

INSTANTIATE_TEST_SUITE_P(Schemes, MpiReshard,
                         ::testing::Values(Case{"rows:block=10", "cols:block=9", 1ULL << 30},
                                           Case{"rows:block=10", "cols:block=9", 96},
                                           Case{"grid:block=20x20,shape=97x61", "rows:hash=jump,shards=7", 1ULL << 30},
                                           Case{"rows:hash=jump,shards=7", "rows:hash=jump,shards=8", 64}));

TEST(MpiReshardFailure, OneRanksBadShardStopsEveryRank) {
  auto comm = make_world_comm();
  std::unique_ptr<testing::TempDir> owner;
  const std::string dir = shared_dir(*comm, owner);
  const GlobalShape shape{40, 10};
  JobConfig config;
  config.src_pattern = dir + "/src/part_{i}.npz";
  config.dst_pattern = dir + "/dst/part_{i}.npz";
  config.old_spec = *ShardingSpec::parse_text("rows:block=10");
  config.new_spec = *ShardingSpec::parse_text("cols:block=5");
  if (comm->rank() == 0) {
    testing::write_sharded(testing::random_entries(shape, 100, 3), shape, config.old_spec, config.src_pattern);
    // Corrupt the last shard's payload (not its directory): the header
    // reads, the full decode fails on whichever rank reads it.
    const std::string victim = dir + "/src/part_3.npz";
    auto size = std::filesystem::file_size(victim);
    std::FILE* f = std::fopen(victim.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, 60, SEEK_SET);
    const char junk[16] = "garbagegarbage!";
    std::fwrite(junk, 1, sizeof(junk), f);
    std::fclose(f);
    ASSERT_EQ(std::filesystem::file_size(victim), size);
  }
  comm->barrier();
  auto outcome = run_reshard(*comm, config, nullptr);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().exit_code(), 2);
  EXPECT_NE(outcome.status().message().find("part_3.npz"), std::string::npos) << outcome.status().message();
  comm->barrier();
  if (comm->rank() == 0) {
    EXPECT_FALSE(std::filesystem::exists(dir + "/dst")) << "nothing may be written";
  }
}

}  // namespace
}  // namespace reshard

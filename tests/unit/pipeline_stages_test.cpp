// Stages in isolation, with a one-rank communicator: no mpiexec needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <tuple>

#include "reshard/format/npz.hpp"
#include "reshard/parallel.hpp"
#include "reshard/pipeline/assemble.hpp"
#include "reshard/pipeline/bucket.hpp"
#include "reshard/pipeline/exchange.hpp"
#include "support/temp_dir.hpp"

namespace reshard {
namespace {

using testing::TempDir;

// An assembled shard's index arrays as words, whatever width they are kept at.
std::vector<std::uint64_t> words_of(IndexView view) {
  std::vector<std::uint64_t> words(view.size());
  for (std::uint64_t k = 0; k < view.size(); ++k) words[k] = view[k];
  return words;
}
std::vector<std::uint64_t> indices_of(const AssembledShard& shard) { return words_of(shard.index_view()); }
std::vector<std::uint64_t> indptr_of(const AssembledShard& shard) { return words_of(shard.indptr_view()); }

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

// An entry by its coordinates, as tests write them; the shuffle carries them
// packed in Entry::key by the destination's EntryKeyCodec.
struct Triple {
  std::uint64_t row;
  std::uint64_t col;
  std::uint64_t value_bits;
};
std::vector<Entry> keyed(const Plan& plan, const std::vector<Triple>& triples) {
  const EntryKeyCodec codec(plan.destination_map);
  std::vector<Entry> entries;
  for (const auto& t : triples) entries.push_back({codec.key(t.row, t.col), t.value_bits});
  return entries;
}

BucketBlock block_of(std::uint64_t source, std::vector<Entry> entries, std::vector<BucketBlock::Segment> segments) {
  BucketBlock block;
  block.source = source;
  block.entries.assign(entries.begin(), entries.end());
  block.segments = std::move(segments);
  return block;
}

// A source shard of 2000 majors (rows of CSR, columns of CSC) of uneven
// length and some empty, minor indices below 900, encoded and decoded by
// the library's npz code. With `major_ids`, a hashed shard: major i is
// global id 3 * i + 1.
LoadedSource loaded_source(const SourceShard& shard, std::uint64_t nnz_wanted, npz::SparseFormat format,
                           bool major_ids) {
  std::vector<std::uint64_t> indptr{0};
  std::vector<std::uint64_t> indices;
  std::vector<double> values;
  std::uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  for (std::uint64_t r = 0; r < 2000; ++r) {
    const std::uint64_t length = r % 7 == 3 ? 0 : next() % (2 * nnz_wanted / 2000 + 1);
    std::uint64_t col = next() % 4;
    for (std::uint64_t j = 0; j < length && col < 900; ++j, col += 1 + next() % 2) {
      indices.push_back(col);
      values.push_back(static_cast<double>(indices.size()));
    }
    indptr.push_back(indices.size());
  }
  const bool csr = format == npz::SparseFormat::kCsr;
  npz::EncodeInput input;
  input.format = format;
  input.nrows = csr ? 2000 : 900;
  input.ncols = csr ? 900 : 2000;
  input.indptr = indptr;
  input.indices = indices;
  input.value_dtype = {'f', 8};
  input.values = ByteView(reinterpret_cast<const std::uint8_t*>(values.data()), values.size() * sizeof(double));
  std::vector<std::uint64_t> ids;
  for (std::uint64_t i = 0; i < 2000; ++i) ids.push_back(3 * i + 1);
  if (major_ids) (csr ? input.row_ids : input.col_ids) = ids;
  auto bytes = npz::encode(input, zip::WriteOptions{zip::Method::kStored});
  EXPECT_TRUE(bytes.ok()) << bytes.status().message();
  auto decoded = npz::decode(std::move(bytes).value(), 1);
  EXPECT_TRUE(decoded.ok()) << decoded.status().message();
  LoadedSource source;
  source.shard = &shard;
  source.decoded = std::move(decoded).value();
  return source;
}

// A 2000x900 CSR source shard at rows 1000...
LoadedSource loaded_csr_source(const SourceShard& shard, std::uint64_t nnz_wanted) {
  return loaded_source(shard, nnz_wanted, npz::SparseFormat::kCsr, false);
}

TEST(EntryKeyCodec, KeysSortInTheDestinationsStorageOrderAndDecode) {
  const GlobalShape shape{1000, 300};  // 10 bits of rows, 9 of columns
  const EntryKeyCodec csr(Layout::kCsr, shape);
  const EntryKeyCodec csc(Layout::kCsc, shape);
  EXPECT_EQ(csr.key(2, 5), (2u << 9) | 5u);
  EXPECT_EQ(csc.key(2, 5), (5u << 10) | 2u);
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> cells = {{0, 0}, {0, 299}, {1, 0}, {999, 1}, {998, 299}};
  for (const auto& [r1, c1] : cells) {
    for (const auto& [r2, c2] : cells) {
      EXPECT_EQ(csr.key(r1, c1) < csr.key(r2, c2), std::tie(r1, c1) < std::tie(r2, c2));
      EXPECT_EQ(csc.key(r1, c1) < csc.key(r2, c2), std::tie(c1, r1) < std::tie(c2, r2));
    }
    for (const auto* codec : {&csr, &csc}) {
      EXPECT_EQ(codec->row(codec->key(r1, c1)), r1);
      EXPECT_EQ(codec->col(codec->key(r1, c1)), c1);
    }
  }
}

TEST(EntryKeyCodec, FitsUpToSixtyFourBitsOfIndices) {
  EXPECT_TRUE(EntryKeyCodec::fits({1ULL << 40, 1ULL << 24}));
  EXPECT_FALSE(EntryKeyCodec::fits({(1ULL << 40) + 1, 1ULL << 24}));
  EXPECT_TRUE(EntryKeyCodec::fits({1, 1ULL << 63}));
  EXPECT_FALSE(EntryKeyCodec::fits({1, (1ULL << 63) + 1}));
  EXPECT_TRUE(EntryKeyCodec::fits({0, 0}));
  // The largest indices of a 64-bit shape come back whole.
  const EntryKeyCodec codec(Layout::kCsr, {1ULL << 40, 1ULL << 24});
  const std::uint64_t key = codec.key((1ULL << 40) - 1, (1ULL << 24) - 1);
  EXPECT_EQ(key, ~std::uint64_t{0});
  EXPECT_EQ(codec.row(key), (1ULL << 40) - 1);
  EXPECT_EQ(codec.col(key), (1ULL << 24) - 1);
}

TEST(Bucket, SameBlockOnAnyThreadCountWithSkippedShards) {
  const GlobalShape shape{4000, 900};
  const auto map = *ShardMap::bind(*ShardingSpec::parse_text("cols:block=100"), shape);
  SourceShard shard;
  shard.index = 5;
  shard.box = {1000, 3000, 0, 900};
  const LoadedSource source = loaded_csr_source(shard, 400000);
  ASSERT_GT(source.decoded.matrix.nnz, 3 * kMinEntriesPerBucketRange) << "too small to be split over 3 threads";
  std::vector<bool> skip(map.shard_count(), false);
  skip[2] = skip[8] = true;
  const BucketBlock one = bucket_source(source, map, skip, 1);
  EXPECT_EQ(one.source, 5u);
  std::uint64_t expected_kept = 0;
  source.for_each_global_entry([&](std::uint64_t, std::uint64_t col, std::uint64_t, std::uint64_t) {
    expected_kept += col / 100 == 2 || col / 100 == 8 ? 0 : 1;
  });
  ASSERT_EQ(one.entries.size(), expected_kept);
  EXPECT_EQ(one.fingerprint.count, expected_kept);
  // Within each destination, source order; rows are global.
  const EntryKeyCodec codec(Layout::kCsr, shape);
  std::uint64_t at = 0;
  for (const auto& segment : one.segments) {
    EXPECT_NE(segment.shard, 2u);
    EXPECT_NE(segment.shard, 8u);
    for (std::uint64_t i = at; i < at + segment.count; ++i) {
      const std::uint64_t row = codec.row(one.entries[i].key);
      const std::uint64_t col = codec.col(one.entries[i].key);
      EXPECT_EQ(col / 100, segment.shard);
      EXPECT_GE(row, 1000u);
      EXPECT_LT(row, 3000u);
      EXPECT_LT(col, 900u);
      if (i > at) {
        // The source's storage order: CSR, so ascending (row, col).
        const std::uint64_t before = one.entries[i - 1].key;
        ASSERT_TRUE(std::make_pair(codec.row(before), codec.col(before)) < std::make_pair(row, col)) << i;
      }
    }
    at += segment.count;
  }
  for (const int threads : {2, 3, 7}) {
    const BucketBlock many = bucket_source(source, map, skip, threads);
    ASSERT_EQ(many.entries.size(), one.entries.size()) << threads << " threads";
    EXPECT_EQ(std::memcmp(many.entries.data(), one.entries.data(), one.entries.size() * sizeof(Entry)), 0)
        << threads << " threads";
    ASSERT_EQ(many.segments.size(), one.segments.size());
    for (std::size_t i = 0; i < one.segments.size(); ++i) {
      EXPECT_EQ(many.segments[i].shard, one.segments[i].shard);
      EXPECT_EQ(many.segments[i].count, one.segments[i].count);
    }
    EXPECT_EQ(many.fingerprint, one.fingerprint) << threads << " threads";
  }
}

TEST(Exchange, SelfCommKeepsEverythingLocalAndCountsRounds) {
  auto comm = make_self_comm();
  Buckets buckets(2);
  buckets.add(block_of(10, {{0, 0}, {2, 2}, {1, 1}}, {{0, 2}, {1, 1}}));
  buckets.add(block_of(11, {{4, 4}, {3, 3}}, {{0, 1}, {1, 1}}));
  ExchangeStats stats;
  const std::vector<std::vector<std::uint64_t>> held = {buckets.held()};
  auto wave = exchange_wave(*comm, buckets, held, DestinationOwner(2, 1), {0, 1}, 32 * 3, stats);
  ASSERT_TRUE(wave.ok()) << wave.status().message();
  EXPECT_EQ(wave->shards, (std::vector<std::uint64_t>{0, 1}));
  std::vector<std::uint64_t> counts;
  for (const auto& parts : wave->parts) {
    counts.push_back(0);
    for (const auto& part : parts) counts.back() += part.entries.size();
  }
  EXPECT_EQ(counts, (std::vector<std::uint64_t>{3, 2}));
  EXPECT_EQ(stats.bytes_sent, 0u);
  EXPECT_EQ(stats.entries_kept_local, 5u);
  EXPECT_EQ(stats.waves, 1u);
  std::vector<std::uint64_t> shard0;
  std::vector<std::uint64_t> sources;
  for (const auto& part : wave->parts[0]) {
    sources.push_back(part.source);
    for (const auto& e : part.entries) shard0.push_back(e.value_bits);
  }
  EXPECT_EQ(sources, (std::vector<std::uint64_t>{10, 11})) << "each block's source";
  EXPECT_EQ(shard0, (std::vector<std::uint64_t>{0, 2, 4})) << "blocks in the order they were added";
}

// The source shards of the bucket cases: a CSR one at rows 1000-3000 and a
// CSC one at columns 1000-3000 of a 7000 x 7000 matrix.
constexpr GlobalShape kBucketCaseShape{7000, 7000};
struct BucketCaseShards {
  SourceShard csr;
  SourceShard csc;
  BucketCaseShards() {
    csr.index = 3;
    csr.box = {1000, 3000, 0, 900};
    csc.index = 4;
    csc.box = {0, 900, 1000, 3000};
  }
};
struct BucketCase {
  const SourceShard* shard;
  npz::SparseFormat format;
  bool ids;
  const char* scheme;
  bool sorted = false;  // what BucketBlock::sorted should be, where a test asks
};

// A rows scheme from a CSR source (a cols scheme from CSC) takes the path
// that counts a major's entries from indptr and computes the shard once per
// major: the same block as grouping every entry by shard_of, on plain and
// hashed sources.
TEST(Bucket, SchemeAlongTheSourcesMajorMatchesGroupingEveryEntry) {
  const GlobalShape shape = kBucketCaseShape;
  const BucketCaseShards shards;
  const std::vector<BucketCase> cases = {
      {&shards.csr, npz::SparseFormat::kCsr, false, "rows:hash=mix,shards=7"},
      {&shards.csr, npz::SparseFormat::kCsr, false, "rows:block=300"},
      {&shards.csr, npz::SparseFormat::kCsr, true, "rows:hash=jump,shards=5"},
      {&shards.csc, npz::SparseFormat::kCsc, false, "cols:hash=mix,shards=7"},
      {&shards.csc, npz::SparseFormat::kCsc, false, "cols:block=300"},
      {&shards.csc, npz::SparseFormat::kCsc, true, "cols:block=1000"},
  };
  for (const BucketCase& c : cases) {
    const std::string name = std::string(c.scheme) + (c.format == npz::SparseFormat::kCsc ? " from CSC" : " from CSR") +
                             (c.ids ? " with ids" : "");
    const LoadedSource source = loaded_source(*c.shard, 400000, c.format, c.ids);
    const auto map = *ShardMap::bind(*ShardingSpec::parse_text(c.scheme), shape);
    // Skipped: the shard of the middle entry, so one that has entries.
    std::vector<bool> skip(map.shard_count(), false);
    source.for_each_global_entry([&](std::uint64_t row, std::uint64_t col, std::uint64_t, std::uint64_t k) {
      if (k == source.decoded.matrix.nnz / 2) skip[map.shard_of(row, col)] = true;
    });
    const EntryKeyCodec codec(map);
    std::vector<std::vector<Entry>> by_shard(map.shard_count());
    Fingerprint kept;
    source.for_each_global_entry([&](std::uint64_t row, std::uint64_t col, std::uint64_t bits, std::uint64_t) {
      const std::uint64_t d = map.shard_of(row, col);
      if (skip[d]) return;
      by_shard[d].push_back({codec.key(row, col), bits});
      kept.add(row, col, bits);
    });
    std::vector<Entry> expected;
    std::vector<BucketBlock::Segment> expected_segments;
    for (std::uint64_t d = 0; d < map.shard_count(); ++d) {
      if (by_shard[d].empty()) continue;
      expected.insert(expected.end(), by_shard[d].begin(), by_shard[d].end());
      expected_segments.push_back({d, by_shard[d].size()});
    }
    ASSERT_GT(expected_segments.size(), 2u) << name;
    ASSERT_LT(expected.size(), source.decoded.matrix.nnz) << name << ": a shard is skipped";
    for (const int threads : {1, 2, 3}) {
      const BucketBlock block = bucket_source(source, map, skip, threads);
      ASSERT_EQ(block.entries.size(), expected.size()) << name << ", " << threads << " threads";
      EXPECT_EQ(std::memcmp(block.entries.data(), expected.data(), expected.size() * sizeof(Entry)), 0)
          << name << ", " << threads << " threads";
      ASSERT_EQ(block.segments.size(), expected_segments.size()) << name;
      for (std::size_t i = 0; i < expected_segments.size(); ++i) {
        EXPECT_EQ(block.segments[i].shard, expected_segments[i].shard) << name;
        EXPECT_EQ(block.segments[i].count, expected_segments[i].count) << name;
      }
      EXPECT_EQ(block.fingerprint, kept) << name << ", " << threads << " threads";
    }
  }
}

// Whether every segment's keys never decrease, read from the block itself.
bool every_segment_sorted(const BucketBlock& block) {
  std::uint64_t at = 0;
  for (const auto& segment : block.segments) {
    for (std::uint64_t i = at + 1; i < at + segment.count; ++i) {
      if (block.entries[i].key < block.entries[i - 1].key) return false;
    }
    at += segment.count;
  }
  return true;
}

// BucketBlock::sorted lets assembly skip its search for descents, so it must
// never be set on a block with one: only a canonical CSR (CSC) source going
// to a CSR (CSC) destination sets it.
TEST(Bucket, SortedOnlyWhenTheSourceStoresTheDestinationsOrder) {
  const GlobalShape shape = kBucketCaseShape;
  const BucketCaseShards shards;
  const std::vector<BucketCase> cases = {
      {&shards.csr, npz::SparseFormat::kCsr, false, "cols:block=100", true},
      {&shards.csr, npz::SparseFormat::kCsr, true, "rows:hash=mix,shards=7", true},
      {&shards.csr, npz::SparseFormat::kCsr, false, "grid:block=700x300", true},
      {&shards.csr, npz::SparseFormat::kCsr, false, "cols:block=100,layout=csc", false},
      {&shards.csc, npz::SparseFormat::kCsc, true, "cols:hash=jump,shards=5,layout=csc", true},
      {&shards.csc, npz::SparseFormat::kCsc, false, "rows:block=300", false},
  };
  for (const BucketCase& c : cases) {
    const LoadedSource source = loaded_source(*c.shard, 200000, c.format, c.ids);
    ASSERT_TRUE(source.decoded.matrix.minor_sorted) << "loaded_source writes each major's indices ascending";
    const auto map = *ShardMap::bind(*ShardingSpec::parse_text(c.scheme), shape);
    const BucketBlock block = bucket_source(source, map, std::vector<bool>(map.shard_count(), false), 2);
    EXPECT_EQ(block.sorted, c.sorted) << c.scheme;
    EXPECT_EQ(every_segment_sorted(block), c.sorted) << c.scheme << ": the cases unflagged have descents";
  }
  // The same source, re-encoded with one row's first two indices swapped.
  const LoadedSource canonical = loaded_source(shards.csr, 200000, npz::SparseFormat::kCsr, false);
  const npz::SparseMatrix& m = canonical.decoded.matrix;
  std::vector<std::uint64_t> indptr;
  std::vector<std::uint64_t> indices;
  for (std::uint64_t i = 0; i < m.major.element_count(); ++i) {
    indptr.push_back(static_cast<std::uint64_t>(npy::integer_at(m.major, i)));
  }
  for (std::uint64_t i = 0; i < m.nnz; ++i) indices.push_back(static_cast<std::uint64_t>(npy::integer_at(m.minor, i)));
  std::size_t row = 0;
  while (indptr[row + 1] - indptr[row] < 2) ++row;
  std::swap(indices[indptr[row]], indices[indptr[row] + 1]);
  npz::EncodeInput input;
  input.nrows = m.nrows;
  input.ncols = m.ncols;
  input.indptr = indptr;
  input.indices = indices;
  input.value_dtype = m.value_dtype;
  input.values = m.data.data;
  auto bytes = npz::encode(input, zip::WriteOptions{zip::Method::kStored});
  ASSERT_TRUE(bytes.ok());
  auto decoded = npz::decode(std::move(bytes).value(), 1);
  ASSERT_TRUE(decoded.ok());
  EXPECT_FALSE(decoded->matrix.minor_sorted);
  LoadedSource swapped;
  swapped.shard = &shards.csr;
  swapped.decoded = std::move(decoded).value();
  const auto map = *ShardMap::bind(*ShardingSpec::parse_text("cols:block=100"), shape);
  EXPECT_FALSE(bucket_source(swapped, map, std::vector<bool>(map.shard_count(), false), 1).sorted)
      << "a row whose indices fall";
}

TEST(Buckets, SpilledEntriesComeBackIdentical) {
  TempDir dir;
  auto scratch = ScratchFile::create(dir.path());
  ASSERT_TRUE(scratch.ok()) << scratch.status().message();
  Buckets buckets(3);
  buckets.add(block_of(10, {{1, 10}, {2, 11}, {5, 12}}, {{0, 2}, {2, 1}}));
  EXPECT_EQ(buckets.resident_bytes(), 3 * sizeof(Entry));
  ASSERT_TRUE(buckets.spill(*scratch).ok());
  EXPECT_EQ(buckets.resident_bytes(), 0u);
  EXPECT_EQ(buckets.spilled_bytes(), 3 * sizeof(Entry));
  BucketBlock sorted_block = block_of(11, {{3, 13}, {7, 14}}, {{0, 1}, {1, 1}});
  sorted_block.sorted = true;
  buckets.add(std::move(sorted_block));
  EXPECT_EQ(buckets.held(), (std::vector<std::uint64_t>{3, 1, 1}));
  std::vector<Entry> shard0(3);
  ASSERT_TRUE(buckets.copy_shard(0, shard0.data()).ok());
  EXPECT_EQ(shard0[0].value_bits, 10u) << "spilled piece";
  EXPECT_EQ(shard0[1].value_bits, 11u);
  EXPECT_EQ(shard0[2].value_bits, 13u) << "resident piece";
  Entry shard2{};
  ASSERT_TRUE(buckets.copy_shard(2, &shard2).ok());
  EXPECT_EQ(shard2.key, 5u);
  // (source, count, sorted), spilled or not.
  const auto listed = [&](std::uint64_t shard) {
    std::vector<std::tuple<std::uint64_t, std::uint64_t, bool>> out;
    for (const auto& s : buckets.segments(shard)) out.emplace_back(s.source, s.count, s.sorted);
    return out;
  };
  using Segments = std::vector<std::tuple<std::uint64_t, std::uint64_t, bool>>;
  EXPECT_EQ(listed(0), (Segments{{10, 2, false}, {11, 1, true}}));
  EXPECT_EQ(listed(2), (Segments{{10, 1, false}}));
  std::vector<SourceSegment> resident;
  ASSERT_TRUE(buckets.resident_segments(1, resident));
  ASSERT_EQ(resident.size(), 1u);
  EXPECT_TRUE(resident[0].sorted) << "the block's flag reaches its segments in place";
}

TEST(Buckets, ReleasingASentShardFreesItsPagesAndKeepsItsNeighbours) {
  // One block: 1001 entries for shard 0, 100003 for shard 1 (1.6 MB, many
  // whole pages), 999 for shard 2; sizes that put both boundaries of shard
  // 1's segment inside pages shared with its neighbours.
  std::vector<Entry> entries;
  const std::uint64_t counts[3] = {1001, 100003, 999};
  for (std::uint64_t shard = 0; shard < 3; ++shard) {
    for (std::uint64_t k = 0; k < counts[shard]; ++k) entries.push_back({shard * 1000000 + k + 1, shard + 7});
  }
  Buckets buckets(3);
  buckets.add(block_of(4, entries, {{0, counts[0]}, {1, counts[1]}, {2, counts[2]}}));
  std::vector<SourceSegment> sent;
  ASSERT_TRUE(buckets.resident_segments(1, sent));
  const Entry* middle = sent[0].entries.data() + counts[1] / 2;
  ASSERT_EQ(middle->value_bits, 8u);

  buckets.release_shard(1);
  EXPECT_EQ(middle->key, 0u) << "the page inside the segment went back to the kernel and reads as zeros";
  std::vector<Entry> back(counts[1]);
  EXPECT_FALSE(buckets.copy_shard(1, back.data()).ok());
  std::vector<SourceSegment> again;
  EXPECT_FALSE(buckets.resident_segments(1, again));
  for (const std::uint64_t shard : {0u, 2u}) {
    std::vector<Entry> kept(counts[shard]);
    ASSERT_TRUE(buckets.copy_shard(shard, kept.data()).ok());
    for (std::uint64_t k = 0; k < counts[shard]; ++k) {
      ASSERT_EQ(kept[k].key, shard * 1000000 + k + 1) << "shard " << shard << " entry " << k;
      ASSERT_EQ(kept[k].value_bits, shard + 7);
    }
  }
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
  // Source 0 in its storage order holds (3,1) twice; source 1 holds it
  // once more. Given source 1 first: the order of parts must not matter.
  const std::vector<Triple> source0 = {{3, 1, 103}, {3, 1, 102}, {2, 3, 101}};
  const std::vector<Triple> source1 = {{3, 1, 104}, {3, 4, 100}};
  const auto entries0 = keyed(plan, source0);
  const auto entries1 = keyed(plan, source1);
  const std::vector<SourceSegment> parts = {{entries1, 1}, {entries0, 0}};
  auto shard = assemble_shard(parts, plan.destinations[1], plan, {'i', 8}, {});
  EXPECT_EQ(shard.nrows, 2u);
  EXPECT_EQ(shard.ncols, 5u);
  EXPECT_EQ(indptr_of(shard), (std::vector<std::uint64_t>{0, 1, 5}));
  EXPECT_EQ(shard.index_width, 4u) << "a small shard keeps its indices as int32, as scipy would store them";
  EXPECT_EQ(indices_of(shard), (std::vector<std::uint64_t>{3, 1, 1, 1, 4}));
  std::vector<std::int64_t> values(5);
  std::memcpy(values.data(), shard.values.data(), 40);
  EXPECT_EQ(values, (std::vector<std::int64_t>{101, 103, 102, 104, 100})) << "duplicates by (source, position)";
  Fingerprint expected;
  for (const auto* source : {&source0, &source1}) {
    for (const Triple& e : *source) expected.add(e.row, e.col, e.value_bits);
  }
  EXPECT_EQ(shard.fingerprint, expected);
}

TEST(Assemble, CscLayoutAndHashedIds) {
  Plan plan = plan_for("cols:hash=mod,shards=2,layout=csc", {3, 6}, 1);
  std::vector<const DestinationShard*> owned = {&plan.destinations[1]};
  auto ids = hashed_ids_for(plan, owned);
  ASSERT_EQ(ids[0], (std::vector<std::uint64_t>{1, 3, 5}));
  const std::vector<Entry> entries = keyed(plan, {{2, 5, 1}, {0, 5, 2}, {1, 1, 3}});
  // Two sources' segments: the order of parts must not matter.
  const std::span<const Entry> all(entries);
  auto shard = assemble_shard({{all.subspan(2), 1}, {all.first(2), 0}}, plan.destinations[1], plan, {'i', 4}, ids[0]);
  EXPECT_EQ(shard.layout, Layout::kCsc);
  EXPECT_EQ(shard.ncols, 3u);
  EXPECT_EQ(indptr_of(shard), (std::vector<std::uint64_t>{0, 1, 1, 3}));  // local cols of 1, 3, 5
  EXPECT_EQ(indices_of(shard), (std::vector<std::uint64_t>{1, 0, 2}));    // rows, ascending within a column
  ASSERT_TRUE(shard.col_ids.has_value());
  EXPECT_EQ(shard.values.size(), 12u);
  Fingerprint expected;
  expected.add(2, 5, 1);
  expected.add(0, 5, 2);
  expected.add(1, 1, 3);
  EXPECT_EQ(shard.fingerprint, expected);
}

// Runs as a rank receives them: two row-disjoint sorted runs, one run that
// interleaves with both, a row that holds a third of the entries, and empty
// rows. Only rows for which keep(row) is true.
std::vector<std::vector<Triple>> merge_test_runs(std::uint64_t rows, const std::function<bool(std::uint64_t)>& keep) {
  std::vector<std::vector<Triple>> runs(3);
  std::uint64_t state = 99;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  std::uint64_t value = 0;
  for (std::uint64_t r = 0; r < rows; ++r) {
    if (!keep(r) || r % 5 == 1) continue;
    const std::uint64_t hot = r == rows / 3 || r == rows / 3 + 1 ? 150000 : 0;
    const std::size_t disjoint = r < rows / 2 ? 0 : 1;
    for (std::uint64_t c = next() % 3; c < 700 + hot; c += 1 + next() % 4) {
      // A few entries go to the interleaving run, some duplicating a column.
      const bool interleave = next() % 8 == 0;
      runs[interleave ? 2 : disjoint].push_back({r, c, value++});
      if (interleave && next() % 2 == 0) runs[disjoint].push_back({r, c, value++});
    }
  }
  return runs;
}

void expect_same_arrays(const AssembledShard& got, const AssembledShard& want, int threads) {
  EXPECT_EQ(got.indptr, want.indptr) << threads << " threads";
  EXPECT_EQ(got.indices, want.indices) << threads << " threads";
  EXPECT_EQ(got.values, want.values) << threads << " threads";
  EXPECT_EQ(got.fingerprint, want.fingerprint) << threads << " threads";
}

// The segments are sources 1, 3 and 2 (the interleaving one): duplicates go
// in (source, position) order. A segment need not be sorted: assembly splits
// it into sorted runs, or sorts by counting when there are too many. Values
// are stored at `dtype`'s width (their low bytes).
void expect_merge_matches_reference(const Plan& plan, const DestinationShard& shard, std::vector<std::uint64_t> ids,
                                    const std::vector<std::vector<Triple>>& runs, npy::DType dtype = {'i', 8},
                                    bool gives_back_pages = true) {
  const std::uint32_t width = dtype.itemsize;
  const std::uint64_t value_mask = width == 8 ? ~std::uint64_t{0} : (std::uint64_t{1} << (8 * width)) - 1;
  const std::uint64_t sources[3] = {1, 3, 2};
  std::vector<std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, std::size_t, std::uint64_t>> tagged;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    for (std::size_t k = 0; k < runs[r].size(); ++k) {
      tagged.emplace_back(runs[r][k].row, runs[r][k].col, sources[r], k, runs[r][k].value_bits);
    }
  }
  std::sort(tagged.begin(), tagged.end());
  std::vector<Triple> reference;
  for (const auto& [row, col, source, position, bits] : tagged) {
    ASSERT_EQ(bits & value_mask, bits) << "a value wider than " << width << " bytes";
    reference.push_back({row, col, bits});
  }
  ASSERT_GT(reference.size(), 5u * (1u << 16)) << "too small to be split over 5 threads";
  std::vector<std::vector<Entry>> entries;
  for (const auto& run : runs) entries.push_back(keyed(plan, run));
  const std::vector<SourceSegment> parts = {
      {entries[2], sources[2]}, {entries[0], sources[0]}, {entries[1], sources[1]}};
  const AssembledShard one = assemble_shard(parts, shard, plan, dtype, ids, 1);
  const std::vector<std::uint64_t> one_indices = indices_of(one);
  ASSERT_EQ(one_indices.size(), reference.size());
  std::vector<std::uint64_t> local_rows = ids;
  if (ids.empty()) {
    for (std::uint64_t r = shard.box.row_begin; r < shard.box.row_end; ++r) local_rows.push_back(r);
  }
  std::vector<std::uint64_t> indptr(local_rows.size() + 1, 0);
  Fingerprint fingerprint;
  for (std::size_t k = 0; k < reference.size(); ++k) {
    const auto local = std::lower_bound(local_rows.begin(), local_rows.end(), reference[k].row) - local_rows.begin();
    ++indptr[static_cast<std::size_t>(local) + 1];
    ASSERT_EQ(one_indices[k], reference[k].col) << k;
    std::uint64_t bits = 0;
    std::memcpy(&bits, one.values.data() + width * k, width);
    ASSERT_EQ(bits, reference[k].value_bits) << k;
    fingerprint.add(reference[k].row, reference[k].col, reference[k].value_bits);
  }
  for (std::size_t i = 0; i + 1 < indptr.size(); ++i) indptr[i + 1] += indptr[i];
  EXPECT_EQ(indptr_of(one), indptr);
  EXPECT_EQ(one.fingerprint, fingerprint);
  for (const int threads : {2, 3, 5}) {
    expect_same_arrays(assemble_shard(parts, shard, plan, dtype, ids, threads), one, threads);
  }
  // Segments flagged sorted where they are (as a canonical source's are)
  // are not searched for descents, and assemble the same arrays.
  const auto sorted = [](const std::vector<Entry>& segment) {
    return std::is_sorted(segment.begin(), segment.end(), [](const Entry& a, const Entry& b) { return a.key < b.key; });
  };
  const std::vector<SourceSegment> flagged = {{entries[2], sources[2], sorted(entries[2])},
                                              {entries[0], sources[0], sorted(entries[0])},
                                              {entries[1], sources[1], sorted(entries[1])}};
  ASSERT_TRUE(flagged[1].sorted || flagged[2].sorted) << "no segment to skip";
  for (const int threads : {1, 2, 3}) {
    expect_same_arrays(assemble_shard(flagged, shard, plan, dtype, ids, threads), one, threads);
  }
  // Giving merged runs back changes nothing in the arrays, while the
  // copies' pages are gone (read as zeros) afterwards.
  for (const int threads : {1, 3}) {
    std::vector<std::vector<Entry>> copies = entries;
    const std::vector<SourceSegment> copied_parts = {
        {copies[2], sources[2]}, {copies[0], sources[0]}, {copies[1], sources[1]}};
    expect_same_arrays(assemble_shard(copied_parts, shard, plan, dtype, ids, threads, ConsumedEntries::kGiveBack), one,
                       threads);
    if (!gives_back_pages) continue;
    const Entry& middle = copies[0][copies[0].size() / 2];
    EXPECT_EQ(middle.key, 0u) << threads << " threads: a merged run's inner pages went back to the kernel";
    EXPECT_EQ(middle.value_bits, 0u) << threads << " threads";
  }
}

TEST(Assemble, ParallelMergeOfBlockRowsMatchesAReferenceSort) {
  Plan plan = plan_for("rows:block=1000", {3000, 200000}, 1);
  const auto& shard = plan.destinations[1];
  const auto runs = merge_test_runs(1000, [](std::uint64_t) { return true; });
  std::vector<std::vector<Triple>> shifted = runs;
  for (auto& run : shifted) {
    for (auto& e : run) e.row += 1000;  // into shard 1's rows, so local != global
  }
  expect_merge_matches_reference(plan, shard, {}, shifted);
}

TEST(Assemble, ParallelMergeOfHashedRowsMatchesAReferenceSort) {
  Plan plan = plan_for("rows:hash=mod,shards=2", {4000, 200000}, 1);
  std::vector<const DestinationShard*> owned = {&plan.destinations[1]};
  auto ids = hashed_ids_for(plan, owned);
  const auto runs = merge_test_runs(4000, [](std::uint64_t r) { return r % 2 == 1; });
  expect_merge_matches_reference(plan, plan.destinations[1], ids[0], runs);
}

// Segment 0 cut into three stretches stored in reverse (as a CSC source
// gives a CSR destination): two descents, put where the scan for descents
// cuts its slices on 3 and on 2 threads (expect_merge_matches_reference
// passes segment 2 first, then 0, then 1), so the entry at a slice's start is
// checked against the one before it.
std::vector<std::vector<Triple>> with_descents_at_slice_cuts(std::vector<std::vector<Triple>> runs) {
  const std::uint64_t n = runs[0].size() + runs[1].size() + runs[2].size();
  const std::uint64_t start = runs[2].size();
  const std::uint64_t first_descent = even_cut(n, 3, 1) - start;
  const std::uint64_t second_descent = even_cut(n, 2, 1) - start;
  auto& run = runs[0];
  EXPECT_TRUE(0 < first_descent && first_descent < second_descent && second_descent < run.size());
  const auto x = static_cast<std::ptrdiff_t>(run.size() - second_descent);
  const auto y = static_cast<std::ptrdiff_t>(run.size() - first_descent);
  std::vector<Triple> reordered(run.begin() + y, run.end());
  reordered.insert(reordered.end(), run.begin() + x, run.begin() + y);
  reordered.insert(reordered.end(), run.begin(), run.begin() + x);
  run = std::move(reordered);
  return runs;
}

TEST(Assemble, SegmentsWithDescentsMergeAsTheReferenceSortsThem) {
  Plan plan = plan_for("rows:block=1000", {3000, 200000}, 1);
  auto runs = with_descents_at_slice_cuts(merge_test_runs(1000, [](std::uint64_t) { return true; }));
  for (auto& run : runs) {
    for (auto& e : run) e.row += 1000;
  }
  expect_merge_matches_reference(plan, plan.destinations[1], {}, runs);
}

// More sorted stretches than a merge takes (segment 0 reversed: every entry
// is a run of its own): assembly sorts by counting instead, whatever the
// thread count.
TEST(Assemble, TooManyRunsAreSortedByCountingOnAnyThreadCount) {
  Plan plan = plan_for("rows:block=1000", {3000, 200000}, 1);
  auto runs = merge_test_runs(1000, [](std::uint64_t) { return true; });
  std::reverse(runs[0].begin(), runs[0].end());
  for (auto& run : runs) {
    for (auto& e : run) e.row += 1000;
  }
  // The counting sort leaves its input alone: no pages go back.
  expect_merge_matches_reference(plan, plan.destinations[1], {}, runs, {'i', 8}, false);
}

// The merge has a loop for each pair of widths: int32 or int64 indices,
// 4- or 8-byte values or any other width.
TEST(Assemble, EveryIndexAndValueWidthMergesAsTheReferenceSortsThem) {
  for (const npy::DType dtype : {npy::DType{'f', 4}, npy::DType{'i', 2}, npy::DType{'u', 1}}) {
    SCOPED_TRACE(std::string(1, dtype.kind) + std::to_string(dtype.itemsize));
    Plan plan = plan_for("rows:hash=mod,shards=2", {4000, 200000}, 1);
    auto ids = hashed_ids_for(plan, {&plan.destinations[1]});
    auto runs = merge_test_runs(4000, [](std::uint64_t r) { return r % 2 == 1; });
    for (auto& run : runs) {
      for (auto& e : run) e.value_bits &= (std::uint64_t{1} << (8 * dtype.itemsize)) - 1;
    }
    expect_merge_matches_reference(plan, plan.destinations[1], ids[0], runs, dtype);
  }
  // Columns past int32: the shard keeps int64 indices.
  Plan wide = plan_for("rows:block=1000", {3000, std::uint64_t{1} << 40}, 1);
  auto runs = merge_test_runs(1000, [](std::uint64_t) { return true; });
  for (auto& run : runs) {
    for (auto& e : run) e.col *= 1000003;  // order kept, most columns past 2^31
  }
  expect_merge_matches_reference(wide, wide.destinations[0], {}, runs);
  const AssembledShard probe = assemble_shard({}, wide.destinations[0], wide, {'i', 8}, {}, 1);
  EXPECT_EQ(probe.index_width, 8u);
}

}  // namespace
}  // namespace reshard

#include <gtest/gtest.h>

#include <string>

#include "reshard/crc32c.hpp"
#include "reshard/manifest.hpp"

namespace reshard {
namespace {

Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

TEST(Crc32c, StandardCheckValueAndChaining) {
  // The CRC-32C check value from RFC 3720 / the iSCSI spec.
  EXPECT_EQ(crc32c(text("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c(text("")), 0u);
  // 32 zero bytes, RFC 3720 B.4.
  EXPECT_EQ(crc32c(Bytes(32, 0)), 0x8A9136AAu);
  const Bytes whole = text("hello, crc32c world: long enough to use the 8-byte loop");
  const std::uint32_t first = crc32c(ByteView(whole).subspan(0, 13));
  EXPECT_EQ(crc32c(ByteView(whole).subspan(13), first), crc32c(whole));
}

Manifest sample() {
  Manifest m;
  m.src_pattern = "data/m/shard_{i}.npz";
  m.dst_pattern = "data/out/shard_{i}.npz";
  m.old_scheme = "rows:block=10";
  m.new_scheme = "cols:block=5";
  m.compression = "deflate:1";
  m.shape = {20, 10};
  m.sources = {{0, "data/m/shard_0.npz", 100, "100:1.2:3", 0xDEADBEEF}, {1, "data/m/shard_1.npz", 90, "90:1.3:4", 7}};
  m.shards = {{0, "data/out/shard_0.npz", ShardState::kWritten, 12, 345, 0xCAFEF00D, {12, 0xFFFFFFFFFFFFFFFFULL}},
              {1, "data/out/shard_1.npz", ShardState::kPending, 0, 0, 0, {}}};
  m.source_fingerprint = Fingerprint{30, 42};
  m.job_id = compute_job_id(m);
  return m;
}

TEST(Manifest, EncodeDecodeRoundTrip) {
  const Manifest m = sample();
  auto back = Manifest::decode(m.encode());
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->job_id, m.job_id);
  EXPECT_EQ(back->sources, m.sources);
  ASSERT_EQ(back->shards.size(), 2u);
  EXPECT_EQ(back->shards[0].crc32c, 0xCAFEF00Du);
  EXPECT_EQ(back->shards[0].fingerprint.sum, 0xFFFFFFFFFFFFFFFFULL);
  EXPECT_EQ(back->shards[1].state, ShardState::kPending);
  EXPECT_EQ(*back->source_fingerprint, (Fingerprint{30, 42}));
  EXPECT_EQ(back->encode(), m.encode());
}

TEST(Manifest, JobIdDependsOnSourcesAndSchemesOnly) {
  Manifest m = sample();
  const std::string id = compute_job_id(m);
  EXPECT_EQ(id.size(), 32u);
  m.shards[1].state = ShardState::kWritten;
  m.committed = true;
  EXPECT_EQ(compute_job_id(m), id) << "progress must not change the job id";
  Manifest changed_source = sample();
  changed_source.sources[1].tail_crc ^= 1;
  EXPECT_NE(compute_job_id(changed_source), id);
  Manifest changed_scheme = sample();
  changed_scheme.new_scheme = "cols:block=6";
  EXPECT_NE(compute_job_id(changed_scheme), id);
}

TEST(Manifest, RejectsGarbage) {
  EXPECT_FALSE(Manifest::decode(text("{not json")).ok());
  EXPECT_FALSE(Manifest::decode(text("{\"format_version\": 99}")).ok());
  EXPECT_FALSE(SuccessMarker::decode(text("[]")).ok());
}

TEST(SuccessMarker, RoundTrip) {
  SuccessMarker s{"abc", 7, {7, 99}, 3, 1.5, "2026-01-01T00:00:00Z"};
  auto back = SuccessMarker::decode(s.encode());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->job_id, "abc");
  EXPECT_EQ(back->fingerprint, (Fingerprint{7, 99}));
  EXPECT_EQ(back->shard_count, 3u);
}

TEST(SequenceName, RoundTripsAndRefusesWhatIsNotOne) {
  EXPECT_EQ(sequence_name(7), "00000000000000000007.json");
  EXPECT_EQ(sequence_number(sequence_name(0)), std::optional<std::uint64_t>(0));
  EXPECT_EQ(sequence_number(sequence_name(UINT64_MAX)), std::optional<std::uint64_t>(UINT64_MAX));
  EXPECT_EQ(sequence_number("18446744073709551616.json"), std::nullopt);  // 2^64
  EXPECT_EQ(sequence_number("99999999999999999999.json"), std::nullopt);
  EXPECT_EQ(sequence_number("0000000000000000000a.json"), std::nullopt);
  EXPECT_EQ(sequence_number("00000000000000000001.jsn"), std::nullopt);
  EXPECT_EQ(sequence_number("1.json"), std::nullopt);
  EXPECT_EQ(journal_segment_number(journal_segment_key("d/", 42), "d/"), std::optional<std::uint64_t>(42));
  EXPECT_EQ(journal_segment_number("e/_reshard/journal/" + sequence_name(42), "d/"), std::nullopt);
}

}  // namespace
}  // namespace reshard

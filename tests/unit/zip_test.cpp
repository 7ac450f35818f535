#include <gtest/gtest.h>

#include <algorithm>

#include "reshard/format/zip.hpp"

namespace reshard::zip {
namespace {

Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

Bytes extract_named(const Bytes& archive, const std::string& name) {
  auto members = read_directory(archive, archive.size());
  EXPECT_TRUE(members.ok()) << members.status().message();
  for (const auto& m : *members) {
    if (m.name != name) continue;
    auto offset = member_data_offset(ByteView(archive).subspan(m.local_header_offset), m);
    EXPECT_TRUE(offset.ok());
    auto content = extract(ByteView(archive).subspan(*offset, m.compressed_size), m);
    EXPECT_TRUE(content.ok()) << content.status().message();
    return *content;
  }
  ADD_FAILURE() << "no member " << name;
  return {};
}

class ZipRoundTrip : public ::testing::TestWithParam<std::tuple<Method, bool>> {};

TEST_P(ZipRoundTrip, WritesWhatItReads) {
  const auto [method, zip64] = GetParam();
  const Bytes a = text(std::string(1000, 'a') + "tail");
  const Bytes b = text("");
  const Bytes c = text("hello zip");
  auto archive = write_archive({{"a.npy", a}, {"b.npy", b}, {"c.npy", c}}, {method, 6, zip64});
  ASSERT_TRUE(archive.ok());
  EXPECT_EQ(extract_named(*archive, "a.npy"), a);
  EXPECT_EQ(extract_named(*archive, "b.npy"), b);
  EXPECT_EQ(extract_named(*archive, "c.npy"), c);
  auto again = write_archive({{"a.npy", a}, {"b.npy", b}, {"c.npy", c}}, {method, 6, zip64});
  EXPECT_EQ(*archive, *again) << "archives must be byte-for-byte deterministic";
}

INSTANTIATE_TEST_SUITE_P(MethodsAndZip64, ZipRoundTrip,
                         ::testing::Combine(::testing::Values(Method::kStored, Method::kDeflate), ::testing::Bool()));

TEST(Zip, DirectoryFromTailOnly) {
  const Bytes payload(200000, 7);
  auto archive = write_archive({{"big.npy", payload}, {"shape.npy", text("xy")}}, {Method::kStored, 1, false});
  ASSERT_TRUE(archive.ok());
  const ByteView whole(*archive);
  const ByteView tail = whole.subspan(whole.size() - 1000);
  EXPECT_EQ(directory_bytes_needed(tail, whole.size()), 0u);
  auto members = read_directory(tail, whole.size(), whole.size() - 1000);
  ASSERT_TRUE(members.ok()) << members.status().message();
  ASSERT_EQ(members->size(), 2u);
  EXPECT_EQ((*members)[1].name, "shape.npy");
}

TEST(Zip, DetectsCorruption) {
  auto archive = write_archive({{"a.npy", text("some content here")}}, {Method::kDeflate, 1, false});
  ASSERT_TRUE(archive.ok());
  // Not a zip at all.
  auto none = read_directory(text("plain text, no archive"), 22);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("not a valid zip"), std::string::npos);
  // Truncated: the end record is gone.
  Bytes truncated(archive->begin(), archive->end() - 10);
  EXPECT_FALSE(read_directory(truncated, truncated.size()).ok());
  // A flipped payload byte fails inflate or the CRC.
  Bytes flipped = *archive;
  flipped[40] ^= 0xFF;
  auto members = read_directory(flipped, flipped.size());
  ASSERT_TRUE(members.ok());
  const auto& m = (*members)[0];
  auto offset = member_data_offset(ByteView(flipped).subspan(m.local_header_offset), m);
  ASSERT_TRUE(offset.ok());
  EXPECT_FALSE(extract(ByteView(flipped).subspan(*offset, m.compressed_size), m).ok());
}

TEST(Zip, Zip64LocatorOffsetNearTwoToThe64IsRefusedNotWrapped) {
  auto archive = write_archive({{"a.npy", text("some content here")}}, {Method::kStored, 0, true});
  ASSERT_TRUE(archive.ok());
  const std::uint8_t locator_sig[] = {0x50, 0x4b, 0x06, 0x07};
  auto at = std::search(archive->begin(), archive->end(), std::begin(locator_sig), std::end(locator_sig));
  ASSERT_NE(at, archive->end()) << "the ZIP64 writer wrote no locator";
  // offset + record size wraps past 2^64 and lands inside the buffer unless
  // the check is written without the sum.
  const std::uint64_t hostile = ~std::uint64_t{0} - 8;
  for (int i = 0; i < 8; ++i) *(at + 8 + i) = static_cast<std::uint8_t>(hostile >> (8 * i));
  auto members = read_directory(*archive, archive->size());
  ASSERT_FALSE(members.ok());
  EXPECT_NE(members.status().message().find("ZIP64 end record out of range"), std::string::npos)
      << members.status().message();
}

TEST(Zip, Zip64LocalHeaderOffsetNearTwoToThe64IsRefusedNotWrapped) {
  auto archive = write_archive({{"a.npy", text("some content here")}}, {Method::kStored, 0, true});
  ASSERT_TRUE(archive.ok());
  const std::uint8_t central_sig[] = {0x50, 0x4b, 0x01, 0x02};
  auto at = std::search(archive->begin(), archive->end(), std::begin(central_sig), std::end(central_sig));
  ASSERT_NE(at, archive->end());
  const std::size_t name_len = *(at + 28) | (*(at + 29) << 8);
  // The ZIP64 extra field after the name: id, length, then the uncompressed
  // size, the compressed size and the local header offset, 8 bytes each.
  auto offset_field = at + 46 + static_cast<std::ptrdiff_t>(name_len) + 4 + 16;
  const std::uint64_t hostile = ~std::uint64_t{0} - 20;
  for (int i = 0; i < 8; ++i) *(offset_field + i) = static_cast<std::uint8_t>(hostile >> (8 * i));
  auto members = read_directory(*archive, archive->size());
  ASSERT_FALSE(members.ok());
  EXPECT_NE(members.status().message().find("extends past the central directory"), std::string::npos)
      << members.status().message();
}

TEST(Zip, Crc32KnownValue) {
  // The CRC-32 check value from the standard: crc32("123456789").
  EXPECT_EQ(crc32(text("123456789")), 0xCBF43926u);
}

}  // namespace
}  // namespace reshard::zip

namespace reshard::zip {
namespace {

TEST(ZipThreads, ArchiveBytesDoNotDependOnThreadCount) {
  Bytes big(3 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>((i * 2654435761u) >> 13);
  const Bytes small = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<MemberToWrite> members = {{"a.npy", big}, {"b.npy", small}, {"c.npy", big}};
  for (auto method : {Method::kDeflate, Method::kStored}) {
    WriteOptions one{method, 6, false, 1};
    WriteOptions four{method, 6, false, 4};
    auto a = write_archive(members, one);
    auto b = write_archive(members, four);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b);
  }
}

}  // namespace
}  // namespace reshard::zip

namespace reshard::zip {
namespace {

TEST(ZipPieces, PrefixAndContentEqualOneJoinedMember) {
  const Bytes header = {'h', 'e', 'a', 'd'};
  Bytes body(70000);
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<std::uint8_t>(i % 251);
  Bytes joined = header;
  joined.insert(joined.end(), body.begin(), body.end());
  for (auto method : {Method::kStored, Method::kDeflate}) {
    for (bool zip64 : {false, true}) {
      const WriteOptions options{method, 6, zip64, 2};
      Bytes split;
      std::vector<ByteView> pieces;
      const Status streamed =
          write_archive_streamed({{"x.npy", body, header}, {"y.npy", header}}, options, [&](ByteView piece) {
            pieces.push_back(piece);
            append_bytes(split, piece);
            return Status::Ok();
          });
      auto whole = write_archive({{"x.npy", joined}, {"y.npy", header}}, options);
      ASSERT_TRUE(streamed.ok() && whole.ok());
      EXPECT_EQ(split, *whole);
      if (method == Method::kStored) {
        const bool body_in_place =
            std::any_of(pieces.begin(), pieces.end(), [&](ByteView piece) { return piece.data() == body.data(); });
        EXPECT_TRUE(body_in_place) << "a stored member is written from the caller's buffer";
      }
    }
  }
}

}  // namespace
}  // namespace reshard::zip

namespace reshard::zip {
namespace {

TEST(ZipCrc32, ChainsAcrossPiecesIncludingEmptyOnes) {
  const Bytes whole = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
  EXPECT_EQ(crc32(whole), 0xCBF43926u);  // the standard check value
  const ByteView view(whole);
  EXPECT_EQ(crc32(view.subspan(4), crc32(view.first(4))), crc32(whole));
  EXPECT_EQ(crc32(ByteView(), crc32(whole)), crc32(whole)) << "an empty piece (null data) changes nothing";
}

}  // namespace
}  // namespace reshard::zip

namespace reshard::zip {
namespace {

// Compressible but not trivial: small numbers, as index arrays are.
Bytes index_like(std::size_t size) {
  Bytes out(size);
  std::uint32_t x = 12345;
  for (std::size_t i = 0; i < size; ++i) {
    x = x * 1103515245u + 12345u;
    out[i] = static_cast<std::uint8_t>((x >> 16) % 23);
  }
  return out;
}

TEST(ZipIgzip, ChunkedMembersInflateToTheirBytesForEveryLevel) {
  // 2.5 chunks with a prefix across the first cut, one chunk exactly, one
  // empty member, one tiny.
  const Bytes header = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  const Bytes big = index_like(kIgzipChunkBytes * 5 / 2);
  const Bytes exact = index_like(kIgzipChunkBytes);
  const Bytes empty;
  const Bytes tiny = {1, 2, 3};
  Bytes big_joined = header;
  big_joined.insert(big_joined.end(), big.begin(), big.end());
  for (int level = 0; level <= 3; ++level) {
    WriteOptions options{Method::kDeflate, level, false, 2, Deflater::kIgzip};
    auto archive = write_archive(
        {{"big.npy", big, header}, {"exact.npy", exact}, {"empty.npy", empty}, {"tiny.npy", tiny}}, options);
    ASSERT_TRUE(archive.ok()) << archive.status().message();
    EXPECT_EQ(extract_named(*archive, "big.npy"), big_joined) << "level " << level;
    EXPECT_EQ(extract_named(*archive, "exact.npy"), exact) << "level " << level;
    EXPECT_EQ(extract_named(*archive, "empty.npy"), empty) << "level " << level;
    EXPECT_EQ(extract_named(*archive, "tiny.npy"), tiny) << "level " << level;
    auto members = read_directory(*archive, archive->size());
    ASSERT_TRUE(members.ok());
    // 23 symbols carry 4.52 bits per byte: deflated, about 0.57 of the input.
    // Level 0 uses fixed Huffman tables that suit text, and stores this.
    if (level > 0) {
      EXPECT_LT((*members)[0].compressed_size, big.size() * 7 / 10) << "level " << level << " did not compress";
    }
  }
}

TEST(ZipIgzip, BytesDoNotDependOnThreadCount) {
  const Bytes big = index_like(kIgzipChunkBytes * 3 + 17);
  const std::vector<MemberToWrite> members = {{"a.npy", big}, {"b.npy", big}};
  auto one = write_archive(members, {Method::kDeflate, 1, false, 1, Deflater::kIgzip});
  auto three = write_archive(members, {Method::kDeflate, 1, false, 3, Deflater::kIgzip});
  ASSERT_TRUE(one.ok() && three.ok());
  EXPECT_EQ(*one, *three);
}

TEST(ZipIgzip, LevelsOutsideItsRangeAreRefused) {
  auto archive = write_archive({{"a.npy", text("x")}}, {Method::kDeflate, 4, false, 1, Deflater::kIgzip});
  ASSERT_FALSE(archive.ok());
  EXPECT_NE(archive.status().message().find("0..3"), std::string::npos) << archive.status().message();
}

// A deflated member, as the local header and the bytes after its data say:
// flag bit 3, zeros where the sizes and CRC would be, then a descriptor that
// repeats the central directory's values (8-byte sizes under ZIP64).
TEST(ZipStreamed, DeflatedMembersCarryTheirSizesInADataDescriptor) {
  const Bytes a = index_like(kIgzipChunkBytes + 999);
  const Bytes b = text("short");
  for (bool zip64 : {false, true}) {
    for (Deflater deflater : {Deflater::kLibdeflate, Deflater::kIgzip}) {
      auto archive = write_archive({{"a.npy", a}, {"b.npy", b}}, {Method::kDeflate, 1, zip64, 2, deflater});
      ASSERT_TRUE(archive.ok()) << archive.status().message();
      auto members = read_directory(*archive, archive->size());
      ASSERT_TRUE(members.ok()) << members.status().message();
      ASSERT_EQ(members->size(), 2u);
      for (const MemberInfo& m : *members) {
        const std::uint8_t* local = archive->data() + m.local_header_offset;
        EXPECT_EQ(load_le<std::uint16_t>(local + 6), 0x0008) << m.name;
        EXPECT_EQ(load_le<std::uint32_t>(local + 14), 0u) << m.name << ": CRC in the local header";
        const std::uint32_t size32 = zip64 ? 0xFFFFFFFFu : 0u;
        EXPECT_EQ(load_le<std::uint32_t>(local + 18), size32) << m.name;
        EXPECT_EQ(load_le<std::uint32_t>(local + 22), size32) << m.name;
        auto data = member_data_offset(ByteView(*archive).subspan(m.local_header_offset), m);
        ASSERT_TRUE(data.ok());
        const std::uint8_t* descriptor = archive->data() + *data + m.compressed_size;
        EXPECT_EQ(load_le<std::uint32_t>(descriptor), 0x08074b50u) << m.name;
        EXPECT_EQ(load_le<std::uint32_t>(descriptor + 4), m.crc32) << m.name;
        if (zip64) {
          EXPECT_EQ(load_le<std::uint64_t>(descriptor + 8), m.compressed_size) << m.name;
          EXPECT_EQ(load_le<std::uint64_t>(descriptor + 16), m.uncompressed_size) << m.name;
        } else {
          EXPECT_EQ(load_le<std::uint32_t>(descriptor + 8), m.compressed_size) << m.name;
          EXPECT_EQ(load_le<std::uint32_t>(descriptor + 12), m.uncompressed_size) << m.name;
        }
      }
      EXPECT_EQ(extract_named(*archive, "a.npy"), a);
      EXPECT_EQ(extract_named(*archive, "b.npy"), b);
    }
  }
  // Stored members keep their sizes up front and no descriptor.
  auto stored = write_archive({{"b.npy", b}}, {Method::kStored, 0, false});
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(load_le<std::uint16_t>(stored->data() + 6), 0);
  EXPECT_EQ(load_le<std::uint32_t>(stored->data() + 22), b.size());
}

// The sink gets the file chunk by chunk while later chunks are still being
// compressed: no piece is larger than one chunk's output, and a failing sink
// stops the archive with its own error.
TEST(ZipStreamed, HandsOverChunkSizedPiecesAndStopsOnASinkError) {
  const Bytes big = index_like(kIgzipChunkBytes * 6 + 5);
  const WriteOptions options{Method::kDeflate, 1, false, 2, Deflater::kIgzip};
  std::size_t calls = 0;
  std::size_t largest = 0;
  Bytes joined;
  ASSERT_TRUE(write_archive_streamed({{"a.npy", big}}, options, [&](ByteView piece) {
                ++calls;
                largest = std::max(largest, piece.size());
                append_bytes(joined, piece);
                return Status::Ok();
              }).ok());
  EXPECT_GE(calls, 7u + 3u) << "header, seven chunks, descriptor, directory";
  EXPECT_LE(largest, kIgzipChunkBytes + kIgzipChunkBytes / 4096 + 4096);
  auto whole = write_archive({{"a.npy", big}}, options);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(joined, *whole);
  std::size_t accepted = 0;
  const Status failed = write_archive_streamed({{"a.npy", big}}, options, [&](ByteView) {
    return ++accepted == 3 ? Status::Storage("disk full") : Status::Ok();
  });
  EXPECT_EQ(failed.kind(), ErrorKind::kStorage);
  EXPECT_EQ(failed.message(), "disk full");
  EXPECT_EQ(accepted, 3u) << "nothing more is handed over after a refusal";
}

}  // namespace
}  // namespace reshard::zip

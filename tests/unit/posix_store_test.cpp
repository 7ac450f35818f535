#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "reshard/store/posix_store.hpp"
#include "support/temp_dir.hpp"

namespace reshard {
namespace {

Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

TEST(PosixStore, WriteReadStatListRemove) {
  testing::TempDir dir;
  auto store = make_posix_store();
  const std::string key = dir / "nested/deeper/a.bin";
  ASSERT_TRUE(store->write_atomic(key, text("hello world")).ok());
  auto info = store->stat(key);
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->size, 11u);
  auto part = store->read(key, 6, 5);
  ASSERT_TRUE(part.ok());
  EXPECT_EQ(*part, text("world"));
  ASSERT_TRUE(store->write_atomic(key, text("replaced")).ok());
  EXPECT_EQ(*store->read_all(key), text("replaced"));
  ASSERT_TRUE(store->write_atomic(dir / "nested/deeper/b.bin", text("b")).ok());
  auto listing = store->list(dir / "nested/deeper/");
  ASSERT_TRUE(listing.ok());
  EXPECT_EQ(*listing, (std::vector<std::string>{dir / "nested/deeper/a.bin", dir / "nested/deeper/b.bin"}))
      << "no temp files may be left behind";
  ASSERT_TRUE(store->remove(key).ok());
  EXPECT_FALSE(store->stat(key)->has_value());
  EXPECT_TRUE(store->remove(key).ok()) << "removing a missing key succeeds";
}

// Files of 8 MiB and more are written with O_DIRECT through an 8 MiB
// aligned buffer, the last block padded and the file truncated back; on a
// filesystem that refuses O_DIRECT (tmpfs on older kernels) they fall back
// to buffered writes. Either way the bytes and the size must be exact.
void expect_large_pieces_round_trip(const std::string& directory) {
  auto store = make_posix_store();
  std::uint64_t state = 7;
  const auto random_bytes = [&state](std::size_t n) {
    Bytes out(n);
    for (auto& b : out) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      b = static_cast<std::uint8_t>(state >> 56);
    }
    return out;
  };
  constexpr std::size_t kMiB = std::size_t{1} << 20;
  // Sizes: exactly the buffer, an odd tail, several buffers with pieces
  // that straddle buffer boundaries, and just under the direct threshold.
  const std::vector<std::vector<std::size_t>> layouts = {
      {8 * kMiB}, {41, 8 * kMiB + 12345}, {3 * kMiB + 1, 9 * kMiB, 0, 5 * kMiB + 4095, 128}, {8 * kMiB - 1}};
  for (std::size_t l = 0; l < layouts.size(); ++l) {
    std::vector<Bytes> pieces;
    Bytes whole;
    for (const std::size_t n : layouts[l]) {
      pieces.push_back(random_bytes(n));
      whole.insert(whole.end(), pieces.back().begin(), pieces.back().end());
    }
    const std::vector<ByteView> views(pieces.begin(), pieces.end());
    const std::string key = directory + "/large_" + std::to_string(l) + ".bin";
    // Streamed as the pieces, the way an encoder hands a file over.
    const Status written = store->write_atomic_streamed(key, whole.size(), [&](const ByteSink& sink) {
      for (const ByteView view : views) RESHARD_RETURN_IF_ERROR(sink(view));
      return Status::Ok();
    });
    ASSERT_TRUE(written.ok()) << written.message();
    EXPECT_EQ(std::filesystem::file_size(key), whole.size()) << key;
    auto back = store->read_all(key);
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_TRUE(*back == whole) << key << ": bytes differ";
  }
  auto listing = store->list(directory + "/");
  ASSERT_TRUE(listing.ok());
  EXPECT_EQ(listing->size(), layouts.size()) << "no temp files may be left behind";
}

TEST(PosixStore, LargeFilesRoundTripExactly) {
  testing::TempDir dir;
  expect_large_pieces_round_trip(dir.path());
}

TEST(PosixStore, LargeFilesRoundTripExactlyOnTmpfs) {
  if (!std::filesystem::is_directory("/dev/shm")) GTEST_SKIP() << "no /dev/shm here";
  const std::string directory = "/dev/shm/reshard_test_" + std::to_string(::getpid());
  std::filesystem::create_directories(directory);
  expect_large_pieces_round_trip(directory);
  std::filesystem::remove_all(directory);
}

TEST(PosixStore, ErrorsNameThePath) {
  testing::TempDir dir;
  auto store = make_posix_store();
  auto missing = store->read(dir / "nope.npz", 0, 4);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.npz"), std::string::npos);
  EXPECT_EQ(missing.status().kind(), ErrorKind::kInvalidInput);
  ASSERT_TRUE(store->write_atomic(dir / "short", text("abc")).ok());
  auto past_end = store->read(dir / "short", 0, 10);
  ASSERT_FALSE(past_end.ok());
  EXPECT_NE(past_end.status().message().find("shorter than expected"), std::string::npos);
}

TEST(PosixStore, CanonicalDirectories) {
  testing::TempDir dir;
  auto store = make_posix_store();
  EXPECT_EQ(store->canonical_directory(dir.path() + "/a/../b/"), store->canonical_directory(dir.path() + "/b/"));
  EXPECT_EQ(store->canonical_directory(dir.path() + "/b/").rfind("file://", 0), 0u);
}

}  // namespace
}  // namespace reshard

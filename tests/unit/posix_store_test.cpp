#include <gtest/gtest.h>

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

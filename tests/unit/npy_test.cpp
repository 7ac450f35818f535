#include <gtest/gtest.h>

#include <cstring>

#include "reshard/format/npy.hpp"
#include "support/raw_npy.hpp"

namespace reshard::npy {
namespace {

using testing::raw_npy;

TEST(Npy, EncodeThenParseRoundTrips) {
  const std::int32_t values[3] = {7, -1, 42};
  const Bytes npy = encode(int32_dtype(), {3}, ByteView(reinterpret_cast<const std::uint8_t*>(values), 12));
  EXPECT_EQ((npy.size() - 12) % 64, 0u) << "numpy pads the header to 64 bytes";
  auto view = parse(npy);
  ASSERT_TRUE(view.ok()) << view.status().message();
  EXPECT_EQ(view->dtype, int32_dtype());
  ASSERT_EQ(view->shape, std::vector<std::uint64_t>{3});
  EXPECT_EQ(integer_at(*view, 0), 7);
  EXPECT_EQ(integer_at(*view, 1), -1);
  EXPECT_EQ(integer_at(*view, 2), 42);
}

TEST(Npy, ScalarAndTwoDimensionalShapes) {
  const Bytes scalar = encode({'S', 3}, {}, ByteView(reinterpret_cast<const std::uint8_t*>("csr"), 3));
  auto view = parse(scalar);
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(view->shape.empty());
  EXPECT_EQ(view->element_count(), 1u);
  auto two = parse(raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n", 48));
  ASSERT_TRUE(two.ok()) << two.status().message();
  EXPECT_EQ(two->shape, (std::vector<std::uint64_t>{2, 3}));
}

TEST(Npy, RejectsObjectBigEndianAndFortranArrays) {
  auto object = parse(raw_npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n", 8));
  ASSERT_FALSE(object.ok());
  EXPECT_NE(object.status().message().find("object"), std::string::npos);
  auto big = parse(raw_npy("{'descr': '>i4', 'fortran_order': False, 'shape': (1,), }\n", 4));
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("big-endian"), std::string::npos);
  auto fortran = parse(raw_npy("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }\n", 32));
  ASSERT_FALSE(fortran.ok());
  EXPECT_NE(fortran.status().message().find("Fortran"), std::string::npos);
  // One-byte types have no byte order: '>i1' is fine.
  EXPECT_TRUE(parse(raw_npy("{'descr': '>i1', 'fortran_order': False, 'shape': (1,), }\n", 1)).ok());
}

TEST(Npy, RejectsTruncatedPayload) {
  auto view = parse(raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }\n", 31));
  ASSERT_FALSE(view.ok());
  EXPECT_NE(view.status().message().find("truncated"), std::string::npos);
  EXPECT_FALSE(parse(Bytes{1, 2, 3}).ok());
}

// 2^61 elements of 8 bytes is 2^64: the product wraps to 0, which a plain
// multiplication let through as an empty payload over 16 real bytes
// (issue 11.3); (2^32, 2^32) wraps in the element count itself.
TEST(Npy, ShapeWhoseByteSizeWrapsIsRefused) {
  for (const std::string shape : {"(2305843009213693952,)", "(4294967296, 4294967296)", "(3, 6148914691236517206)"}) {
    auto view = parse(raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }\n", 16));
    ASSERT_FALSE(view.ok()) << shape;
    EXPECT_NE(view.status().message().find("larger than any file"), std::string::npos) << view.status().message();
  }
}

TEST(Npy, DtypeNames) {
  EXPECT_EQ((DType{'f', 4}).name(), "float32");
  EXPECT_EQ((DType{'i', 8}).descr(), "<i8");
  EXPECT_EQ((DType{'b', 1}).descr(), "|b1");
  EXPECT_EQ((DType{'U', 12}).descr(), "<U3");
}

}  // namespace
}  // namespace reshard::npy

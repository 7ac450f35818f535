// The codec against files real scipy wrote (tests/golden/make_golden.py) and
// the numpy reference's fingerprints of them.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "reshard/fingerprint.hpp"
#include "reshard/format/npz.hpp"
#include "support/golden.hpp"

namespace reshard::npz {
namespace {

using testing::golden_expectations;
using testing::golden_path;
using testing::read_file;

class GoldenFile : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenFile, DecodesLikeScipy) {
  const auto expectations = golden_expectations();
  nlohmann::json expected;
  for (const auto& f : expectations["files"]) {
    if (f["file"] == GetParam()) expected = f;
  }
  ASSERT_FALSE(expected.is_null()) << "no expectation for " << GetParam();
  const Bytes file = read_file(golden_path(GetParam()));
  ASSERT_FALSE(file.empty());
  auto decoded = decode(file);
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  const SparseMatrix& m = decoded->matrix;
  EXPECT_EQ(format_name(m.format), expected["format"].get<std::string>());
  EXPECT_EQ(m.nrows, expected["shape"][0].get<std::uint64_t>());
  EXPECT_EQ(m.ncols, expected["shape"][1].get<std::uint64_t>());
  EXPECT_EQ(m.nnz, expected["nnz"].get<std::uint64_t>());
  EXPECT_EQ(m.value_dtype.name(), expected["value_dtype"].get<std::string>());
  if (expected.contains("index_dtype")) {
    EXPECT_EQ(m.index_dtype.name(), expected["index_dtype"].get<std::string>());
  }
  Fingerprint fp;
  m.for_each_entry([&](std::uint64_t r, std::uint64_t c, std::uint64_t v, std::uint64_t) { fp.add(r, c, v); });
  EXPECT_EQ(fp.count, expected["fingerprint_count"].get<std::uint64_t>());
  EXPECT_EQ(fp.sum_hex(), expected["fingerprint_sum"].get<std::string>());
}

INSTANTIATE_TEST_SUITE_P(ScipyWritten, GoldenFile,
                         ::testing::Values("csr_f64_deflate.npz", "csr_f64_stored.npz", "csc_f32.npz", "coo_i32.npz",
                                           "csr_i64_index64.npz", "csr_bool.npz", "csr_noncanonical.npz",
                                           "csr_empty.npz", "csr_zip64.npz"));

TEST(NpzGolden, NonCanonicalEntriesKeepStorageOrder) {
  auto decoded = decode(read_file(golden_path("csr_noncanonical.npz")));
  ASSERT_TRUE(decoded.ok());
  std::vector<std::pair<std::uint64_t, std::uint64_t>> coords;
  decoded->matrix.for_each_entry(
      [&](std::uint64_t r, std::uint64_t c, std::uint64_t, std::uint64_t) { coords.emplace_back(r, c); });
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> expected = {{0, 4}, {0, 1}, {1, 0}, {1, 0}, {2, 2}};
  EXPECT_EQ(coords, expected);
}

// minor_sorted is scipy's has_sorted_indices, except that equal neighbours
// (duplicates) count as sorted: what assembly needs is keys that never
// decrease.
TEST(NpzGolden, MinorSortedMeansNoRowsIndicesDecrease) {
  for (const char* canonical : {"csr_f64_deflate.npz", "csr_f64_stored.npz", "csc_f32.npz", "csr_i64_index64.npz"}) {
    auto decoded = decode(read_file(golden_path(canonical)));
    ASSERT_TRUE(decoded.ok()) << canonical;
    EXPECT_TRUE(decoded->matrix.minor_sorted) << canonical;
  }
  auto messy = decode(read_file(golden_path("csr_noncanonical.npz")));
  ASSERT_TRUE(messy.ok());
  EXPECT_FALSE(messy->matrix.minor_sorted) << "row 0 stores columns 4 then 1";
  auto coo = decode(read_file(golden_path("coo_i32.npz")));
  ASSERT_TRUE(coo.ok());
  EXPECT_FALSE(coo->matrix.minor_sorted) << "COO has no rows to be sorted within";

  // Indices that fall from one row to the next, a duplicate and an empty
  // row are sorted; one fall inside a row, even in the last row, is not.
  const double values[6] = {1, 2, 3, 4, 5, 6};
  const std::vector<std::uint64_t> indptr = {0, 2, 2, 4, 6};
  EncodeInput input;
  input.nrows = 4;
  input.ncols = 9;
  input.indptr = indptr;
  input.value_dtype = {'f', 8};
  input.values = ByteView(reinterpret_cast<const std::uint8_t*>(values), sizeof(values));
  const std::vector<std::uint64_t> falls_between_rows = {7, 8, 0, 0, 3, 5};
  const std::vector<std::uint64_t> falls_in_last_row = {7, 8, 0, 0, 5, 3};
  for (const auto& [indices, sorted] : {std::pair{falls_between_rows, true}, std::pair{falls_in_last_row, false}}) {
    input.indices = indices;
    auto bytes = encode(input, {zip::Method::kStored});
    ASSERT_TRUE(bytes.ok());
    auto decoded = decode(*bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status().message();
    EXPECT_EQ(decoded->matrix.minor_sorted, sorted) << indices[4] << ", " << indices[5];
  }
}

TEST(NpzGolden, ShapeAndFormatFromMembersAlone) {
  const Bytes file = read_file(golden_path("csc_f32.npz"));
  auto decoded = decode(file);
  ASSERT_TRUE(decoded.ok());
  // Re-encode the two small arrays the way the planner reads them.
  const std::int64_t shape[2] = {7, 5};
  const Bytes shape_npy =
      npy::encode(npy::int64_dtype(), {2}, ByteView(reinterpret_cast<const std::uint8_t*>(shape), 16));
  const Bytes format_npy = npy::encode({'S', 3}, {}, ByteView(reinterpret_cast<const std::uint8_t*>("csc"), 3));
  auto header = decode_shape_and_format(shape_npy, format_npy);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->format, SparseFormat::kCsc);
  EXPECT_EQ(header->nrows, decoded->matrix.nrows);
  EXPECT_EQ(header->ncols, decoded->matrix.ncols);
}

TEST(NpzEncode, RoundTripsAndChoosesIndexWidth) {
  const std::vector<std::uint64_t> indptr = {0, 2, 2, 3};
  const std::vector<std::uint64_t> indices = {1, 4, 0};
  const double values[3] = {1.5, -2.0, 3.25};
  const std::vector<std::uint64_t> ids = {3, 8, 11};
  EncodeInput input;
  input.nrows = 3;
  input.ncols = 5;
  input.indptr = indptr;
  input.indices = indices;
  input.value_dtype = {'f', 8};
  input.values = ByteView(reinterpret_cast<const std::uint8_t*>(values), 24);
  input.row_ids = std::span<const std::uint64_t>(ids);
  for (auto method : {zip::Method::kStored, zip::Method::kDeflate}) {
    auto bytes = encode(input, {method, 1, false});
    ASSERT_TRUE(bytes.ok());
    auto decoded = decode(*bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status().message();
    const auto& m = decoded->matrix;
    EXPECT_EQ(m.index_dtype, npy::int32_dtype());
    EXPECT_EQ(m.nnz, 3u);
    ASSERT_TRUE(m.row_ids.has_value());
    EXPECT_EQ(npy::integer_at(*m.row_ids, 2), 11);
    std::vector<std::tuple<std::uint64_t, std::uint64_t, double>> got;
    m.for_each_entry([&](std::uint64_t r, std::uint64_t c, std::uint64_t bits, std::uint64_t) {
      double v;
      std::memcpy(&v, &bits, 8);
      got.emplace_back(r, c, v);
    });
    const std::vector<std::tuple<std::uint64_t, std::uint64_t, double>> expected = {
        {0, 1, 1.5}, {0, 4, -2.0}, {2, 0, 3.25}};
    EXPECT_EQ(got, expected);
  }
  // Past int32, indices widen to int64 as scipy does.
  const std::vector<std::uint64_t> one_ptr = {0, 1};
  const std::vector<std::uint64_t> one_index = {(1ULL << 32)};
  input.nrows = 1;
  input.ncols = (1ULL << 32) + 1;
  input.indptr = one_ptr;
  input.indices = one_index;
  input.values = ByteView(reinterpret_cast<const std::uint8_t*>(values), 8);
  input.row_ids.reset();
  auto wide = encode(input, {});
  ASSERT_TRUE(wide.ok());
  auto decoded = decode(*wide);
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(decoded->matrix.index_dtype, npy::int64_dtype());
}

// Indices handed over 4 bytes wide are written as they are when the file
// stores int32, converted when it stores int64: the same file either way.
TEST(NpzEncode, IndicesAtEitherWidthGiveTheSameFile) {
  const std::vector<std::uint64_t> indptr = {0, 2, 2, 3};
  const std::vector<std::uint64_t> wide = {1, 4, 0};
  const std::vector<std::uint32_t> narrow = {1, 4, 0};
  const ByteView narrow_bytes(reinterpret_cast<const std::uint8_t*>(narrow.data()), narrow.size() * 4);
  const double values[3] = {1.5, -2.0, 3.25};
  for (const std::uint64_t ncols : {std::uint64_t{5}, (std::uint64_t{1} << 31) + 7}) {
    EncodeInput input;
    input.nrows = 3;
    input.ncols = ncols;
    input.indptr = indptr;
    input.value_dtype = {'f', 8};
    input.values = ByteView(reinterpret_cast<const std::uint8_t*>(values), 24);
    for (auto method : {zip::Method::kStored, zip::Method::kDeflate}) {
      input.indices = wide;
      auto from_wide = encode(input, {method, 1, false});
      input.indices = IndexView(narrow_bytes, 4);
      auto from_narrow = encode(input, {method, 1, false});
      ASSERT_TRUE(from_wide.ok() && from_narrow.ok());
      EXPECT_EQ(*from_narrow, *from_wide) << ncols << " columns";
      auto decoded = decode(*from_narrow);
      ASSERT_TRUE(decoded.ok()) << decoded.status().message();
      EXPECT_EQ(decoded->matrix.index_dtype, ncols == 5 ? npy::int32_dtype() : npy::int64_dtype());
      std::vector<std::uint64_t> columns;
      decoded->matrix.for_each_entry(
          [&](std::uint64_t, std::uint64_t c, std::uint64_t, std::uint64_t) { columns.push_back(c); });
      EXPECT_EQ(columns, wide);
    }
  }
}

}  // namespace
}  // namespace reshard::npz

namespace reshard::npz {
namespace {

TEST(NpzDecodeInPlace, SameArraysAsTheCopyingDecoderForEveryGoldenFile) {
  for (const auto& entry : std::filesystem::directory_iterator(RESHARD_GOLDEN_DIR)) {
    if (entry.path().extension() != ".npz") continue;
    std::ifstream f(entry.path(), std::ios::binary);
    const Bytes file((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto copied = decode(ByteView(file));
    auto in_place = decode(Bytes(file), 3);
    ASSERT_EQ(copied.ok(), in_place.ok()) << entry.path();
    if (!copied.ok()) continue;
    const auto& a = copied->matrix;
    const auto& b = in_place->matrix;
    EXPECT_EQ(a.nnz, b.nnz) << entry.path();
    EXPECT_TRUE(std::equal(a.data.data.begin(), a.data.data.end(), b.data.data.begin(), b.data.data.end()));
    EXPECT_TRUE(std::equal(a.minor.data.begin(), a.minor.data.end(), b.minor.data.begin(), b.minor.data.end()));
    EXPECT_TRUE(std::equal(a.major.data.begin(), a.major.data.end(), b.major.data.begin(), b.major.data.end()));
  }
}

}  // namespace
}  // namespace reshard::npz

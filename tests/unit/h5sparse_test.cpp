// The HDF5 codec against files real anndata and h5py wrote
// (tests/golden/h5/make_golden_h5.py), malformed files, and its own output.
#include "reshard/format/h5sparse.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>

#include "reshard/fingerprint.hpp"
#include "support/golden.hpp"

namespace reshard::h5sparse {
namespace {

using testing::golden_path;
using testing::read_file;

nlohmann::json h5_expectations() {
  std::ifstream in(golden_path("h5/expected.json"));
  return nlohmann::json::parse(in);
}

Fingerprint fingerprint_of(const npz::SparseMatrix& m) {
  Fingerprint fp;
  m.for_each_entry([&](std::uint64_t r, std::uint64_t c, std::uint64_t v, std::uint64_t) { fp.add(r, c, v); });
  return fp;
}

TEST(H5Golden, DecodesWhatAnndataAndH5pyWroteLikeScipy) {
  const auto expectations = h5_expectations();
  ASSERT_GE(expectations["files"].size(), 5u);
  for (const auto& expected : expectations["files"]) {
    const std::string name = expected["file"];
    SCOPED_TRACE(name);
    const Bytes file = read_file(golden_path("h5/" + name));
    ASSERT_FALSE(file.empty());
    // /X by default, /matrix found for 10x files; layers only when asked.
    const std::string group = expected["group"] == "/layers/counts" ? "/layers/counts" : "";
    auto summary = summarize(file, group);
    ASSERT_TRUE(summary.ok()) << summary.status().message();
    EXPECT_EQ(summary->group, expected["group"].get<std::string>());
    EXPECT_EQ(npz::format_name(summary->shape_and_format.format), expected["format"].get<std::string>());
    EXPECT_EQ(summary->shape_and_format.nrows, expected["shape"][0].get<std::uint64_t>());
    EXPECT_EQ(summary->shape_and_format.ncols, expected["shape"][1].get<std::uint64_t>());
    if (expected.contains("compressed")) {
      EXPECT_EQ(summary->compressed, expected["compressed"].get<bool>());
    }
    auto decoded = decode(file, group);
    ASSERT_TRUE(decoded.ok()) << decoded.status().message();
    const auto& m = decoded->matrix;
    EXPECT_EQ(m.nnz, expected["nnz"].get<std::uint64_t>());
    EXPECT_EQ(m.value_dtype.name(), expected["value_dtype"].get<std::string>());
    if (expected.contains("index_dtype")) {
      EXPECT_EQ(m.index_dtype.name(), expected["index_dtype"].get<std::string>());
    }
    const Fingerprint fp = fingerprint_of(m);
    EXPECT_EQ(fp.count, expected["fingerprint_count"].get<std::uint64_t>());
    EXPECT_EQ(fp.sum_hex(), expected["fingerprint_sum"].get<std::string>());
  }
}

TEST(H5Golden, MalformedFilesGiveOneLineNamingTheProblem) {
  const auto expectations = h5_expectations();
  ASSERT_GE(expectations["bad"].size(), 5u);
  for (const auto& bad : expectations["bad"]) {
    const std::string name = bad["file"];
    SCOPED_TRACE(name);
    auto decoded = decode(read_file(golden_path("h5/" + name)), "");
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().kind(), ErrorKind::kInvalidInput);
    const std::string message = decoded.status().message();
    if (bad.contains("error")) {
      EXPECT_EQ(message, bad["error"].get<std::string>());
    } else {
      EXPECT_EQ(message.rfind(bad["error_prefix"].get<std::string>(), 0), 0u) << message;
    }
    EXPECT_EQ(message.find('\n'), std::string::npos);
  }
  auto missing = decode(read_file(golden_path("h5/anndata_csr_f32.h5ad")), "/layers/counts");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "no group '/layers/counts'");
}

struct Encoded {
  npz::EncodeInput input;
  std::vector<std::uint64_t> indptr;
  std::vector<std::uint64_t> indices;
  std::vector<double> values;
  std::vector<std::uint64_t> ids;
};

Encoded small_input() {
  Encoded e;
  e.indptr = {0, 2, 2, 3};
  e.indices = {1, 4, 0};
  e.values = {1.5, -2.0, 3.25};
  e.ids = {3, 8, 11};
  e.input.nrows = 3;
  e.input.ncols = 5;
  e.input.value_dtype = {'f', 8};
  return e;
}

void point(Encoded& e) {
  e.input.indptr = e.indptr;
  e.input.indices = e.indices;
  e.input.values = ByteView(reinterpret_cast<const std::uint8_t*>(e.values.data()), e.values.size() * 8);
}

TEST(H5Encode, RoundTripsDeterministicallyWithAndWithoutGzip) {
  Encoded e = small_input();
  point(e);
  e.input.row_ids = std::span<const std::uint64_t>(e.ids);
  for (int gzip : {0, 6}) {
    SCOPED_TRACE(gzip);
    WriteOptions options;
    options.gzip_level = gzip;
    auto bytes = encode(e.input, options);
    ASSERT_TRUE(bytes.ok()) << bytes.status().message();
    auto again = encode(e.input, options);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*bytes, *again) << "the same shard must give the same bytes";
    auto summary = summarize(*bytes, "");
    ASSERT_TRUE(summary.ok()) << summary.status().message();
    EXPECT_EQ(summary->compressed, gzip > 0);
    const std::vector<std::string> datasets = {"data", "indices", "indptr", "row_ids"};
    EXPECT_EQ(summary->datasets, datasets);
    auto decoded = decode(*bytes, "");
    ASSERT_TRUE(decoded.ok()) << decoded.status().message();
    const auto& m = decoded->matrix;
    EXPECT_EQ(m.index_dtype, npy::int32_dtype());
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
}

// Large enough for decode() to walk the indices in up to 4 slices: 2000
// rows of 600 sorted indices in [0, 1000), with `change` applied to them.
Bytes large_csr_file(const std::function<void(std::vector<std::uint64_t>&)>& change) {
  Encoded e;
  for (std::uint64_t r = 0; r <= 2000; ++r) e.indptr.push_back(r * 600);
  for (std::uint64_t r = 0; r < 2000; ++r) {
    for (std::uint64_t j = 0; j < 600; ++j) e.indices.push_back(j);
  }
  change(e.indices);
  e.values.assign(e.indices.size(), 1.0);
  e.input.nrows = 2000;
  e.input.ncols = 1000;
  e.input.value_dtype = {'f', 8};
  point(e);
  auto bytes = encode(e.input, WriteOptions{});
  EXPECT_TRUE(bytes.ok()) << bytes.status().message();
  return bytes.ok() ? *bytes : Bytes{};
}

// What decode() on `threads` threads says of the file: its error, or
// whether it found every row's indices sorted.
std::string decoded_on(const Bytes& file, int threads) {
  auto decoded = decode(file, "", threads);
  if (!decoded.ok()) return decoded.status().message();
  return decoded->matrix.minor_sorted ? "sorted" : "not sorted";
}

TEST(H5Decode, ChecksIndicesAlikeOnEveryThreadCount) {
  const Bytes sorted = large_csr_file([](auto&) {});
  const Bytes fallen = large_csr_file([](auto& indices) { std::swap(indices[1199000], indices[1199001]); });
  const Bytes bad = large_csr_file([](auto& indices) { indices[1190000] = 1003; });
  for (const int threads : {1, 2, 4}) {
    SCOPED_TRACE(threads);
    EXPECT_EQ(decoded_on(sorted, threads), "sorted");
    EXPECT_EQ(decoded_on(fallen, threads), "not sorted");
    EXPECT_NE(decoded_on(bad, threads).find("indices[1190000] = 1003 is out of range [0, 1000)"), std::string::npos)
        << decoded_on(bad, threads);
  }
}

TEST(H5Encode, CscInANamedGroupAndEmptyShards) {
  Encoded e = small_input();
  e.input.format = npz::SparseFormat::kCsc;
  e.input.nrows = 5;
  e.input.ncols = 3;
  point(e);
  WriteOptions options;
  options.group = "/layers/counts";
  auto bytes = encode(e.input, options);
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  EXPECT_FALSE(decode(*bytes, "").ok()) << "no /X in this file";
  auto decoded = decode(*bytes, "/layers/counts");
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(decoded->matrix.format, npz::SparseFormat::kCsc);
  EXPECT_EQ(decoded->matrix.nnz, 3u);
  // An empty shard: zero-length datasets, no chunks.
  Encoded empty = small_input();
  empty.indptr = {0, 0, 0, 0};
  empty.indices.clear();
  empty.values.clear();
  point(empty);
  options.gzip_level = 1;
  auto empty_bytes = encode(empty.input, options);
  ASSERT_TRUE(empty_bytes.ok()) << empty_bytes.status().message();
  auto empty_decoded = decode(*empty_bytes, "/layers/counts");
  ASSERT_TRUE(empty_decoded.ok()) << empty_decoded.status().message();
  EXPECT_EQ(empty_decoded->matrix.nnz, 0u);
  EXPECT_EQ(empty_decoded->matrix.nrows, 3u);
}

TEST(H5Keys, ChosenBySuffix) {
  EXPECT_TRUE(is_hdf5_key("s/shard_1.h5ad"));
  EXPECT_TRUE(is_hdf5_key("m.h5"));
  EXPECT_TRUE(is_hdf5_key("m.hdf5"));
  EXPECT_FALSE(is_hdf5_key("m.npz"));
  EXPECT_FALSE(is_hdf5_key("m.h5ad.npz"));
}

}  // namespace
}  // namespace reshard::h5sparse

// Every malformed-shard case decode() must reject with a message that says
// what is wrong.
#include <gtest/gtest.h>

#include <map>

#include "reshard/format/npz.hpp"
#include "support/raw_npy.hpp"

namespace reshard::npz {
namespace {

template <typename T>
Bytes array_npy(const std::vector<T>& values, npy::DType dtype) {
  return npy::encode(dtype, {values.size()},
                     ByteView(reinterpret_cast<const std::uint8_t*>(values.data()), values.size() * sizeof(T)));
}

// A valid 3x4 CSR matrix; tests replace or drop members to break it.
std::map<std::string, Bytes> valid_members() {
  std::map<std::string, Bytes> m;
  m["indices"] = array_npy<std::int32_t>({0, 3, 1}, npy::int32_dtype());
  m["indptr"] = array_npy<std::int32_t>({0, 2, 2, 3}, npy::int32_dtype());
  m["format"] = npy::encode({'S', 3}, {}, ByteView(reinterpret_cast<const std::uint8_t*>("csr"), 3));
  m["shape"] = array_npy<std::int64_t>({3, 4}, npy::int64_dtype());
  m["data"] = array_npy<double>({1.0, 2.0, 3.0}, {'f', 8});
  return m;
}

Bytes archive(const std::map<std::string, Bytes>& members) {
  std::vector<zip::MemberToWrite> list;
  for (const auto& [name, bytes] : members) list.push_back({name + ".npy", bytes});
  return *zip::write_archive(list, {});
}

std::string error_of(const std::map<std::string, Bytes>& members) {
  auto decoded = decode(archive(members));
  return decoded.ok() ? std::string("<decoded fine>") : decoded.status().message();
}

using testing::raw_npy;

TEST(NpzErrors, ValidBaselineDecodes) { EXPECT_EQ(error_of(valid_members()), "<decoded fine>"); }

TEST(NpzErrors, MissingMembers) {
  for (const char* name : {"indices", "indptr", "data", "shape", "format"}) {
    auto m = valid_members();
    m.erase(name);
    EXPECT_NE(error_of(m).find(std::string("missing array '") + name + "'"), std::string::npos) << name;
  }
}

TEST(NpzErrors, IndptrLengthMustMatchRows) {
  auto m = valid_members();
  m["indptr"] = array_npy<std::int32_t>({0, 2, 2, 3, 3}, npy::int32_dtype());
  EXPECT_EQ(error_of(m), "indptr length 5 does not match 3 rows");
}

TEST(NpzErrors, IndptrMustStartAtZeroAndNotDecrease) {
  auto m = valid_members();
  m["indptr"] = array_npy<std::int32_t>({1, 2, 2, 3}, npy::int32_dtype());
  EXPECT_EQ(error_of(m), "indptr starts at 1, not 0");
  m["indptr"] = array_npy<std::int32_t>({0, 2, 1, 3}, npy::int32_dtype());
  EXPECT_EQ(error_of(m), "indptr decreases at position 2");
  m["indptr"] = array_npy<std::int32_t>({0, 1, 1, 2}, npy::int32_dtype());
  EXPECT_EQ(error_of(m), "indptr ends at 2 but there are 3 stored entries");
}

TEST(NpzErrors, IndicesInRange) {
  auto m = valid_members();
  m["indices"] = array_npy<std::int32_t>({0, 4, 1}, npy::int32_dtype());
  EXPECT_EQ(error_of(m), "indices[1] = 4 is out of range [0, 4)");
  m["indices"] = array_npy<std::int32_t>({0, -1, 1}, npy::int32_dtype());
  EXPECT_EQ(error_of(m), "indices[1] = -1 is out of range [0, 4)");
}

TEST(NpzErrors, LengthsAgree) {
  auto m = valid_members();
  m["data"] = array_npy<double>({1.0, 2.0}, {'f', 8});
  EXPECT_EQ(error_of(m), "indices length 3 does not match data length 2");
}

TEST(NpzErrors, DtypesAndLayouts) {
  auto m = valid_members();
  m["data"] = raw_npy("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }\n", 24);
  EXPECT_NE(error_of(m).find("object (pickled) arrays are not supported"), std::string::npos);
  m = valid_members();
  m["indices"] = raw_npy("{'descr': '>i4', 'fortran_order': False, 'shape': (3,), }\n", 12);
  EXPECT_NE(error_of(m).find("big-endian"), std::string::npos);
  m = valid_members();
  m["data"] = raw_npy("{'descr': '<f8', 'fortran_order': True, 'shape': (3,), }\n", 24);
  EXPECT_NE(error_of(m).find("Fortran-order"), std::string::npos);
  m = valid_members();
  m["data"] = raw_npy("{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }\n", 48);
  EXPECT_NE(error_of(m).find("complex data"), std::string::npos);
  m = valid_members();
  m["indices"] = array_npy<double>({0, 1, 2}, {'f', 8});
  EXPECT_NE(error_of(m).find("'indices' has dtype float64"), std::string::npos);
  m = valid_members();
  m["format"] = npy::encode({'S', 3}, {}, ByteView(reinterpret_cast<const std::uint8_t*>("bsr"), 3));
  EXPECT_NE(error_of(m).find("sparse format 'bsr' is not supported"), std::string::npos);
}

TEST(NpzErrors, TruncatedAndNonZipFiles) {
  const Bytes good = archive(valid_members());
  for (std::size_t keep : {std::size_t{0}, std::size_t{10}, good.size() / 2, good.size() - 1}) {
    Bytes cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(keep));
    auto decoded = decode(cut);
    ASSERT_FALSE(decoded.ok()) << "kept " << keep << " bytes";
    EXPECT_NE(decoded.status().message().find("zip"), std::string::npos) << decoded.status().message();
  }
  const std::string text = "this is a text file, not an archive at all";
  auto decoded = decode(Bytes(text.begin(), text.end()));
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("not a valid zip archive"), std::string::npos);
}

TEST(NpzErrors, CooChecksRanges) {
  std::map<std::string, Bytes> m;
  m["row"] = array_npy<std::int32_t>({0, 2}, npy::int32_dtype());
  m["col"] = array_npy<std::int32_t>({1, 9}, npy::int32_dtype());
  m["format"] = npy::encode({'S', 3}, {}, ByteView(reinterpret_cast<const std::uint8_t*>("coo"), 3));
  m["shape"] = array_npy<std::int64_t>({3, 4}, npy::int64_dtype());
  m["data"] = array_npy<float>({1.0F, 2.0F}, {'f', 4});
  EXPECT_EQ(error_of(m), "col[1] = 9 is out of range [0, 4)");
}

// A CSR matrix large enough that decode() walks its indices in up to 4
// slices (kMinIndicesPerCheckSlice entries each): 2000 rows of 600 sorted
// indices in [0, 1000). `indices` is handed to tests to break.
struct LargeCsr {
  static constexpr std::int32_t kRows = 2000;
  static constexpr std::int32_t kPerRow = 600;
  std::vector<std::int32_t> indices;
  LargeCsr() {
    for (std::int32_t r = 0; r < kRows; ++r) {
      for (std::int32_t j = 0; j < kPerRow; ++j) indices.push_back(j);
    }
  }
  Bytes archive_file() const {
    std::vector<std::int32_t> indptr;
    for (std::int32_t r = 0; r <= kRows; ++r) indptr.push_back(r * kPerRow);
    auto m = valid_members();
    m["indices"] = array_npy<std::int32_t>(indices, npy::int32_dtype());
    m["indptr"] = array_npy<std::int32_t>(indptr, npy::int32_dtype());
    m["shape"] = array_npy<std::int64_t>({kRows, 1000}, npy::int64_dtype());
    m["data"] = array_npy<double>(std::vector<double>(indices.size(), 1.0), {'f', 8});
    return archive(m);
  }
};

// What decode() on `threads` threads says of the file: its error, or
// whether it found every row's indices sorted.
std::string decoded_on(const Bytes& file, int threads) {
  auto decoded = decode(Bytes(file), threads);
  if (!decoded.ok()) return decoded.status().message();
  return decoded->matrix.minor_sorted ? "sorted" : "not sorted";
}

TEST(NpzErrors, IndicesCheckedInSlicesNameTheFirstBadPosition) {
  LargeCsr csr;
  // One bad index in each quarter, the first late in its quarter: a slice
  // that reported its own error, or the last one found, would name another.
  for (const std::size_t at : {280000, 320000, 610000, 1190000}) csr.indices[at] = 1000 + static_cast<int>(at % 7);
  const Bytes file = csr.archive_file();
  for (const int threads : {1, 2, 3, 4}) {
    EXPECT_EQ(decoded_on(file, threads), "indices[280000] = 1000 is out of range [0, 1000)") << threads << " threads";
  }
  // Only the last quarter is wrong: every slice is walked.
  LargeCsr last;
  last.indices[1190000] = -3;
  for (const int threads : {1, 2, 4}) {
    EXPECT_EQ(decoded_on(last.archive_file(), threads), "indices[1190000] = -3 is out of range [0, 1000)")
        << threads << " threads";
  }
}

TEST(NpzErrors, SortedOnlyWhenEverySliceIsSorted) {
  LargeCsr csr;
  for (const int threads : {1, 2, 4}) EXPECT_EQ(decoded_on(csr.archive_file(), threads), "sorted") << threads;
  // A fall inside one row, in the first quarter and then in the last.
  for (const std::size_t at : {1000, 1199000}) {
    LargeCsr fallen;
    std::swap(fallen.indices[at], fallen.indices[at + 1]);
    for (const int threads : {1, 2, 4}) {
      EXPECT_EQ(decoded_on(fallen.archive_file(), threads), "not sorted") << "at " << at << ", " << threads;
    }
  }
}

}  // namespace
}  // namespace reshard::npz

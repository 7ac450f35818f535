// scipy.sparse .npz files (what save_npz writes) over byte buffers: decoding
// with full validation, and deterministic encoding of CSR/CSC shards.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "reshard/bytes.hpp"
#include "reshard/format/index_view.hpp"
#include "reshard/format/npy.hpp"
#include "reshard/format/zip.hpp"
#include "reshard/inline.hpp"
#include "reshard/status.hpp"

namespace reshard::npz {

enum class SparseFormat { kCsr, kCsc, kCoo };
std::string format_name(SparseFormat format);

struct ShapeAndFormat {
  SparseFormat format = SparseFormat::kCsr;
  std::uint64_t nrows = 0;
  std::uint64_t ncols = 0;
};

// A validated sparse matrix whose arrays point into DecodedShard::buffers.
struct SparseMatrix {
  SparseFormat format = SparseFormat::kCsr;
  std::uint64_t nrows = 0;
  std::uint64_t ncols = 0;
  std::uint64_t nnz = 0;
  npy::DType index_dtype;  // of indices (csr/csc) or row/col (coo)
  npy::DType value_dtype;
  npy::ArrayView major;  // indptr (csr/csc) or row (coo)
  npy::ArrayView minor;  // indices (csr/csc) or col (coo)
  npy::ArrayView data;
  std::optional<npy::ArrayView> row_ids;  // hashed shards: global id of each local row
  std::optional<npy::ArrayView> col_ids;
  // CSR (CSC) only: every row's (column's) indices are non-decreasing, as
  // scipy's canonical format keeps them. Found while checking their range.
  bool minor_sorted = false;

  // Calls f(local_row, local_col, value_bits, position) for every stored
  // entry in storage order; value bits are the raw little-endian value
  // zero-extended to 64 bits, position its index in `data`.
  template <typename F>
  void for_each_entry(F&& f) const {
    for_each_entry_in(0, nnz, f);
  }
  // The same for the entries at positions [begin, end) only, so disjoint
  // ranges can be walked on different threads.
  template <typename F>
  void for_each_entry_in(std::uint64_t begin, std::uint64_t end, F&& f) const;
  // Calls f(local_major, count) for every row (CSR) or column (CSC) with
  // count > 0 of its entries at positions [begin, end), in storage order:
  // one call per major, reading indptr only. Not for COO.
  template <typename F>
  void for_each_major_in(std::uint64_t begin, std::uint64_t end, F&& f) const;
};

struct DecodedShard {
  std::vector<Bytes> buffers;  // owns what the views in `matrix` point into
  SparseMatrix matrix;
};

// Decodes and validates a whole .npz file.
Result<DecodedShard> decode(ByteView file);
// The same, keeping the file as the first buffer so stored members are used
// in place, and inflating up to `threads` members at once.
Result<DecodedShard> decode(Bytes&& file, int threads);

// Builds and validates a matrix from its arrays, named as save_npz names its
// members without ".npy" ("data", "indptr", "indices" or "row", "col", and
// optionally "row_ids", "col_ids"); the views must outlive the result. Every
// container (npz, HDF5) checks its arrays here, the indices of CSR and CSC
// on up to `threads` threads.
Result<SparseMatrix> matrix_from_arrays(SparseFormat format, std::uint64_t nrows, std::uint64_t ncols,
                                        const std::map<std::string, npy::ArrayView>& arrays, int threads = 1);

// Decodes just the `shape` and `format` members; used when planning, before
// shards are read in full.
Result<ShapeAndFormat> decode_shape_and_format(ByteView shape_npy, ByteView format_npy);

// Where a shard's entries are, without their values: what `mpi_reshard plan`
// reads. Views point into the buffers given to decode_structure.
struct SparseStructure {
  SparseFormat format = SparseFormat::kCsr;
  std::uint64_t nrows = 0;
  std::uint64_t ncols = 0;
  std::uint64_t nnz = 0;
  npy::ArrayView major;                 // indptr (csr/csc) or row (coo)
  std::optional<npy::ArrayView> minor;  // indices or col, when read
  std::optional<npy::ArrayView> row_ids;
  std::optional<npy::ArrayView> col_ids;
};

// `arrays` maps member names without ".npy" ("indptr", "indices", "row",
// "col", "row_ids", "col_ids") to their npy bytes. The major array is
// required; the minor one may be left out. Checked as decode() checks them.
Result<SparseStructure> decode_structure(const ShapeAndFormat& shape, const std::map<std::string, ByteView>& arrays);

struct EncodeInput {
  SparseFormat format = SparseFormat::kCsr;  // csr or csc
  std::uint64_t nrows = 0;
  std::uint64_t ncols = 0;
  // At 4 bytes wide when the file stores int32 indices (8 for int64), these
  // are written from the caller's buffer like the values; else converted.
  IndexView indptr;
  IndexView indices;
  npy::DType value_dtype;
  ByteView values;  // nnz * value_dtype.itemsize bytes
  // Hashed shards carry the global id of each local row (column) as int64.
  std::optional<std::span<const std::uint64_t>> row_ids;
  std::optional<std::span<const std::uint64_t>> col_ids;
};

// Encodes with int32 indices when every index and the nnz fit, int64
// otherwise, members in save_npz's order.
Result<Bytes> encode(const EncodeInput& input, const zip::WriteOptions& options);
// The same bytes handed to `sink` as they are made (zip::write_archive_streamed):
// stored arrays go out from the caller's buffers, deflated ones through a
// few reused buffers, so the file is never whole in memory.
Status encode_streamed(const EncodeInput& input, const zip::WriteOptions& options, const ByteSink& sink);

// Whether indices of a matrix with these extents fit int32, as scipy decides.
bool fits_int32(std::uint64_t nrows, std::uint64_t ncols, std::uint64_t nnz);

// ---- implementation of the template ----
namespace detail {
template <typename Index>
Index load_index(const std::uint8_t* base, std::uint64_t i) {
  Index v;
  std::memcpy(&v, base + i * sizeof(Index), sizeof(Index));
  return v;
}
inline std::uint64_t load_value_bits(const std::uint8_t* base, std::uint64_t i, std::uint32_t width) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, base + i * width, width);
  return bits;
}
// The same with the width known when compiling (0: read at run time): a
// copy of a run-time length is a call to memcpy per entry.
template <std::uint32_t kWidth>
std::uint64_t load_value_bits_as(const std::uint8_t* base, std::uint64_t i, std::uint32_t width) {
  if constexpr (kWidth == 0) {
    return load_value_bits(base, i, width);
  } else {
    std::uint64_t bits = 0;
    std::memcpy(&bits, base + i * kWidth, kWidth);
    return bits;
  }
}
// Calls f(outer, begin, end) for every outer index (row of CSR, column of
// CSC) with entries at positions [begin, end) within [first, last), in
// order: the one walk of indptr that the entry and major walks share.
// The outer index (row of CSR, column of CSC) holding `position`, one of
// the nnz stored positions: the last whose indptr word is <= position
// (indptr, nmajor + 1 words, validated non-decreasing from 0 to nnz).
template <typename Major>
std::uint64_t major_holding(const std::uint8_t* indptr, std::uint64_t nmajor, std::uint64_t position) {
  std::uint64_t lo = 0;
  std::uint64_t hi = nmajor;
  while (lo < hi) {
    const std::uint64_t mid = lo + (hi - lo + 1) / 2;
    if (static_cast<std::uint64_t>(load_index<Major>(indptr, mid)) <= position) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}
template <typename Major, typename F>
void for_each_major_range_as(const SparseMatrix& m, std::uint64_t first, std::uint64_t last, F& f) {
  const std::uint8_t* majors = m.major.data.data();
  const std::uint64_t nmajor = m.format == SparseFormat::kCsr ? m.nrows : m.ncols;
  for (std::uint64_t outer = major_holding<Major>(majors, nmajor, first); outer < nmajor; ++outer) {
    const auto begin = std::max(first, static_cast<std::uint64_t>(load_index<Major>(majors, outer)));
    const auto end = std::min(last, static_cast<std::uint64_t>(load_index<Major>(majors, outer + 1)));
    if (end > begin) f(outer, begin, end);
    if (end >= last) break;
  }
}
template <typename Major, typename F>
void for_each_major_as(const SparseMatrix& m, std::uint64_t first, std::uint64_t last, F& f) {
  auto count = [&](std::uint64_t outer, std::uint64_t begin, std::uint64_t end)
                   RESHARD_ALWAYS_INLINE { f(outer, end - begin); };
  for_each_major_range_as<Major>(m, first, last, count);
}
template <typename Major, typename Minor, std::uint32_t kWidth, typename F>
void for_each_compressed_as(const SparseMatrix& m, std::uint64_t first, std::uint64_t last, F& f) {
  const std::uint8_t* minors = m.minor.data.data();
  const std::uint8_t* values = m.data.data.data();
  const std::uint32_t width = m.value_dtype.itemsize;
  auto entries = [&](std::uint64_t outer, std::uint64_t begin, std::uint64_t end) RESHARD_ALWAYS_INLINE {
    for (std::uint64_t k = begin; k < end; ++k) {
      const auto inner = static_cast<std::uint64_t>(load_index<Minor>(minors, k));
      const std::uint64_t bits = load_value_bits_as<kWidth>(values, k, width);
      if (m.format == SparseFormat::kCsr) {
        f(outer, inner, bits, k);
      } else {
        f(inner, outer, bits, k);
      }
    }
  };
  for_each_major_range_as<Major>(m, first, last, entries);
}
// float32/int32 and float64/int64 values, the common ones, get their own loop.
template <typename Major, typename Minor, typename F>
void for_each_compressed(const SparseMatrix& m, std::uint64_t first, std::uint64_t last, F& f) {
  switch (m.value_dtype.itemsize) {
    case 4: return for_each_compressed_as<Major, Minor, 4>(m, first, last, f);
    case 8: return for_each_compressed_as<Major, Minor, 8>(m, first, last, f);
    default: return for_each_compressed_as<Major, Minor, 0>(m, first, last, f);
  }
}
template <typename Row, typename Col, typename F>
void for_each_coo(const SparseMatrix& m, std::uint64_t first, std::uint64_t last, F& f) {
  const std::uint32_t width = m.value_dtype.itemsize;
  for (std::uint64_t k = first; k < last; ++k) {
    f(static_cast<std::uint64_t>(load_index<Row>(m.major.data.data(), k)),
      static_cast<std::uint64_t>(load_index<Col>(m.minor.data.data(), k)),
      load_value_bits(m.data.data.data(), k, width), k);
  }
}
}  // namespace detail

template <typename F>
void SparseMatrix::for_each_entry_in(std::uint64_t begin, std::uint64_t end, F&& f) const {
  if (begin >= end) return;
  const bool major64 = major.dtype.itemsize == 8;
  const bool minor64 = minor.dtype.itemsize == 8;
  if (format == SparseFormat::kCoo) {
    if (major64 && minor64)
      detail::for_each_coo<std::int64_t, std::int64_t>(*this, begin, end, f);
    else if (major64)
      detail::for_each_coo<std::int64_t, std::int32_t>(*this, begin, end, f);
    else if (minor64)
      detail::for_each_coo<std::int32_t, std::int64_t>(*this, begin, end, f);
    else
      detail::for_each_coo<std::int32_t, std::int32_t>(*this, begin, end, f);
    return;
  }
  if (major64 && minor64)
    detail::for_each_compressed<std::int64_t, std::int64_t>(*this, begin, end, f);
  else if (major64)
    detail::for_each_compressed<std::int64_t, std::int32_t>(*this, begin, end, f);
  else if (minor64)
    detail::for_each_compressed<std::int32_t, std::int64_t>(*this, begin, end, f);
  else
    detail::for_each_compressed<std::int32_t, std::int32_t>(*this, begin, end, f);
}

template <typename F>
void SparseMatrix::for_each_major_in(std::uint64_t begin, std::uint64_t end, F&& f) const {
  if (begin >= end || format == SparseFormat::kCoo) return;
  if (major.dtype.itemsize == 8) {
    detail::for_each_major_as<std::int64_t>(*this, begin, end, f);
  } else {
    detail::for_each_major_as<std::int32_t>(*this, begin, end, f);
  }
}

}  // namespace reshard::npz

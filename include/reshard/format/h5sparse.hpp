// Sparse matrices in HDF5 the way AnnData stores them (.h5ad): a group
// (default /X) with attributes encoding-type (csr_matrix or csc_matrix),
// encoding-version and shape, and datasets data, indices and indptr. Also
// read: 10x Genomics' /matrix (CSC, a `shape` dataset) and the older
// h5sparse_format/h5sparse_shape attributes. Over byte buffers (HDF5 file
// images through the core driver): no I/O, no MPI.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "reshard/bytes.hpp"
#include "reshard/format/npz.hpp"
#include "reshard/status.hpp"

namespace reshard::h5sparse {

// Keys ending .h5, .h5ad or .hdf5 hold HDF5; every other key holds .npz.
bool is_hdf5_key(std::string_view key);

inline constexpr const char* kDefaultGroup = "/X";

// What planning needs from a file: its matrix's shape and layout, where it
// was found, which datasets it has, the bytes decoding takes and whether any
// dataset is filtered (gzip).
struct Summary {
  npz::ShapeAndFormat shape_and_format;
  std::string group;  // the group read: `group` as asked, or /matrix for 10x files
  std::vector<std::string> datasets;
  std::uint64_t decoded_bytes = 0;
  bool compressed = false;
  std::uint64_t nnz = 0;  // length of `data`
  std::uint32_t value_itemsize = 0;
  std::uint32_t index_itemsize = 0;
  std::uint32_t indptr_itemsize = 0;
};

// `group` empty: /X, or /matrix when the file has no /X (10x). decode and
// read_major_range check the indices on up to `threads` threads, as
// npz::decode does.
Result<Summary> summarize(ByteView file, const std::string& group);
Result<npz::DecodedShard> decode(ByteView file, const std::string& group, int threads = 1);

// One file read in parts by every rank (the `single` scheme). These are the
// format's only functions that do I/O: HDF5 opens a local path read-only
// and reads hyperslabs, so that no rank reads or holds more than its part.
// Object stores have no such path: their HDF5 files are read whole.
Result<Summary> summarize_file(const std::string& path, const std::string& group);
// indptr at each position: where each part's entries begin.
Result<std::vector<std::uint64_t>> indptr_at(const std::string& path, const std::string& group,
                                             const std::vector<std::uint64_t>& positions);
// Rows [begin, end) of a CSR matrix (columns of a CSC one) as a matrix of
// end - begin rows (columns), its indptr rebased to 0 (int64).
Result<npz::DecodedShard> read_major_range(const std::string& path, const std::string& group, std::uint64_t begin,
                                           std::uint64_t end, int threads = 1);

struct WriteOptions {
  std::string group = kDefaultGroup;
  int gzip_level = 0;  // 0: no filter
  // Chunk length of filtered datasets, in elements (h5py and AnnData leave
  // it to h5py's heuristics; a fixed size keeps the bytes deterministic).
  std::uint64_t chunk_elements = 1 << 18;
  // Global index of local row (column) 0, naming obs (var) entries when the
  // input carries no row_ids (col_ids).
  std::uint64_t first_row = 0;
  std::uint64_t first_col = 0;
};

// A minimal .h5ad that anndata.read_h5ad opens: root attributes, the matrix
// group, and obs/var dataframes whose index holds the global row and column
// numbers. Deterministic (no object timestamps).
Result<Bytes> encode(const npz::EncodeInput& input, const WriteOptions& options);

}  // namespace reshard::h5sparse

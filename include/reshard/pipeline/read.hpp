// Stage 2, read: fetch one source shard through the store, decode and check
// it against the plan, and expose its entries with global coordinates.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reshard/format/npz.hpp"
#include "reshard/inline.hpp"
#include "reshard/pipeline/plan.hpp"
#include "reshard/store/store.hpp"

namespace reshard {

struct SourceHeader {
  npz::ShapeAndFormat shape_and_format;
  ObjectInfo info;
  // CRC-32 of the file's tail that holds the zip directory: part of the
  // source's identity, so a rewritten shard is noticed even if its mtime
  // was preserved.
  std::uint32_t tail_crc = 0;
  // Sum of the members' uncompressed sizes: the memory decoding takes.
  std::uint64_t decoded_bytes = 0;
  // Member names, sorted, and "none", "deflate" or "mixed": what decides
  // whether the file could be copied as a destination shard unchanged.
  std::vector<std::string> members;
  std::string compression;
  // HDF5 sources: the group holding the matrix (empty for .npz).
  std::string group;
};

// .npz: reads only the zip directory and the tiny `shape` and `format`
// members. HDF5 (.h5/.h5ad keys): reads the whole file, since its metadata
// may be anywhere in it; `hdf5_group` empty means /X, or 10x's /matrix.
Result<SourceHeader> read_source_header(Store& store, const std::string& key, const std::string& hdf5_group = "");

// Chosen arrays of a shard, each read with one ranged request, and every
// member's directory entry (its sizes), keyed by name without ".npy".
struct SourceMembers {
  std::map<std::string, zip::MemberInfo> members;
  std::vector<Bytes> buffers;              // what `arrays` point into
  std::map<std::string, ByteView> arrays;  // npy bytes of `names`
};
Result<SourceMembers> read_source_members(Store& store, const std::string& key, std::uint64_t size,
                                          const std::vector<std::string>& names);

struct LoadedSource {
  const SourceShard* shard = nullptr;
  npz::DecodedShard decoded;
  std::uint64_t bytes_read = 0;
  std::uint32_t file_crc32c = 0;  // of the whole file, for reuse as a destination

  // Calls f(global_row, global_col, value_bits, position) for every entry.
  template <typename F>
  void for_each_global_entry(F&& f) const {
    for_each_global_entry_in(0, decoded.matrix.nnz, f);
  }
  // The same for positions [begin, end), for one thread's share.
  template <typename F>
  void for_each_global_entry_in(std::uint64_t begin, std::uint64_t end, F&& f) const {
    const auto& m = decoded.matrix;
    const std::uint64_t row_offset = shard->box.row_begin;
    const std::uint64_t col_offset = shard->box.col_begin;
    if (m.row_ids) {
      const auto* ids = m.row_ids->data.data();
      m.for_each_entry_in(
          begin, end, [&](std::uint64_t r, std::uint64_t c, std::uint64_t v, std::uint64_t k) RESHARD_ALWAYS_INLINE {
            f(npz::detail::load_index<std::uint64_t>(ids, r), c + col_offset, v, k);
          });
    } else if (m.col_ids) {
      const auto* ids = m.col_ids->data.data();
      m.for_each_entry_in(
          begin, end, [&](std::uint64_t r, std::uint64_t c, std::uint64_t v, std::uint64_t k) RESHARD_ALWAYS_INLINE {
            f(r + row_offset, npz::detail::load_index<std::uint64_t>(ids, c), v, k);
          });
    } else {
      m.for_each_entry_in(begin, end,
                          [&](std::uint64_t r, std::uint64_t c, std::uint64_t v, std::uint64_t k)
                              RESHARD_ALWAYS_INLINE { f(r + row_offset, c + col_offset, v, k); });
    }
  }
  // Calls f(global_major, count) for every row (CSR) or column (CSC) with
  // count > 0 entries at positions [begin, end), reading indptr only.
  template <typename F>
  void for_each_global_major_in(std::uint64_t begin, std::uint64_t end, F&& f) const {
    const auto& m = decoded.matrix;
    const bool csr = m.format == npz::SparseFormat::kCsr;
    const auto& ids = csr ? m.row_ids : m.col_ids;
    if (ids) {
      const auto* id = ids->data.data();
      m.for_each_major_in(begin, end, [&](std::uint64_t major, std::uint64_t count) {
        f(npz::detail::load_index<std::uint64_t>(id, major), count);
      });
    } else {
      const std::uint64_t offset = csr ? shard->box.row_begin : shard->box.col_begin;
      m.for_each_major_in(begin, end, [&](std::uint64_t major, std::uint64_t count) { f(major + offset, count); });
    }
  }
};

// `threads` members inflate at once.
Result<LoadedSource> read_source(Store& store, const SourceShard& shard, const ShardMap& source_map, int threads = 1);

// The two halves of read_source, so the next shard's bytes can be fetched
// while the current one is bucketed.
Result<Bytes> fetch_source(Store& store, const SourceShard& shard);
Result<LoadedSource> decode_source(const Store& store, const SourceShard& shard, const ShardMap& source_map,
                                   Bytes&& file, int threads);

}  // namespace reshard

// Stage 5, assemble: turn the entries a rank received into its destination
// shards' compressed arrays, sorted so the output is canonical and the bytes
// do not depend on the rank count or arrival order.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "reshard/fingerprint.hpp"
#include "reshard/format/index_view.hpp"
#include "reshard/format/npy.hpp"
#include "reshard/pipeline/entry.hpp"
#include "reshard/pipeline/plan.hpp"

namespace reshard {

struct AssembledShard {
  const DestinationShard* shard = nullptr;
  std::uint64_t nrows = 0;
  std::uint64_t ncols = 0;
  Layout layout = Layout::kCsr;
  // indptr and the local minor indices, little-endian, at the width the
  // shard's file stores them: 4 bytes when scipy would choose int32 for the
  // shard (npz::fits_int32), else 8. The writer then uses them as they are.
  std::uint32_t index_width = 8;
  ByteArray indptr;
  ByteArray indices;
  npy::DType value_dtype;
  ByteArray values;
  std::optional<std::vector<std::uint64_t>> row_ids;  // rows:hash destinations
  std::optional<std::vector<std::uint64_t>> col_ids;  // cols:hash destinations
  // Recomputed from the assembled arrays, mapping local indices back to
  // global ones: an independent path from the entries' coordinates.
  Fingerprint fingerprint;

  std::uint64_t nnz() const { return indices.size() / index_width; }
  IndexView index_view() const { return IndexView(indices, index_width); }
  IndexView indptr_view() const { return IndexView(indptr, index_width); }
};

// For hashed destination schemes: the global ids of each owned shard's rows
// (columns). Empty vectors for block schemes.
std::vector<std::vector<std::uint64_t>> hashed_ids_for(const Plan& plan,
                                                       const std::vector<const DestinationShard*>& owned);

// What assembly may do with the entries it has merged.
enum class ConsumedEntries {
  kKeep,
  // The caller reads them no more: the whole pages of each merged run go
  // back to the kernel as soon as the run is merged, so a shard's input
  // shrinks while its arrays grow (the job's peak is input plus output
  // otherwise), and the output takes warm pages instead of fresh ones.
  kGiveBack,
};

// Sort order within a shard: by local major index, then minor index, then
// (source, position in it), so duplicates keep their source order; the
// order of `parts` does not matter. Sorted runs are merged on up to
// `threads` threads; the arrays do not depend on it.
AssembledShard assemble_shard(const std::vector<SourceSegment>& parts, const DestinationShard& shard, const Plan& plan,
                              npy::DType value_dtype, std::vector<std::uint64_t> hashed_ids, int threads = 1,
                              ConsumedEntries consumed = ConsumedEntries::kKeep);

}  // namespace reshard

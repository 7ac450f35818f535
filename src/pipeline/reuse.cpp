#include "reshard/pipeline/reuse.hpp"

#include <algorithm>

#include "reshard/crc32c.hpp"
#include "reshard/format/h5sparse.hpp"

namespace reshard {
namespace {

bool same_box(const ShardBox& a, const ShardBox& b) {
  return a.row_begin == b.row_begin && a.row_end == b.row_end && a.col_begin == b.col_begin && a.col_end == b.col_end;
}

// The members npz::encode writes for a destination of this scheme.
std::vector<std::string> expected_members(const ShardingSpec& spec) {
  std::vector<std::string> names = {"data.npy", "format.npy", "indices.npy", "indptr.npy", "shape.npy"};
  if (spec.hashed()) names.push_back(spec.axis == Axis::kRows ? "row_ids.npy" : "col_ids.npy");
  std::sort(names.begin(), names.end());
  return names;
}

template <typename Major, typename Minor>
bool minor_ascending(const npz::SparseMatrix& m) {
  const std::uint64_t nmajor = m.format == npz::SparseFormat::kCsr ? m.nrows : m.ncols;
  const std::uint8_t* majors = m.major.data.data();
  const std::uint8_t* minors = m.minor.data.data();
  for (std::uint64_t i = 0; i < nmajor; ++i) {
    const auto begin = static_cast<std::uint64_t>(npz::detail::load_index<Major>(majors, i));
    const auto end = static_cast<std::uint64_t>(npz::detail::load_index<Major>(majors, i + 1));
    for (std::uint64_t k = begin + 1; k < end; ++k) {
      if (npz::detail::load_index<Minor>(minors, k) < npz::detail::load_index<Minor>(minors, k - 1)) return false;
    }
  }
  return true;
}

}  // namespace

std::vector<std::optional<std::uint64_t>> find_reuse_candidates(const Plan& plan,
                                                                const zip::WriteOptions& compression) {
  std::vector<std::optional<std::uint64_t>> candidates(plan.sources.size());
  const ShardingSpec& from = plan.source_map.spec();
  const ShardingSpec& to = plan.destination_map.spec();
  const std::string wanted_compression = compression.method == zip::Method::kStored ? "none" : "deflate";
  const auto wanted_format = to.layout == Layout::kCsr ? npz::SparseFormat::kCsr : npz::SparseFormat::kCsc;
  const auto members = expected_members(to);
  // Hashed schemes hold the same rows (columns) in shard i only when they
  // hash alike; block schemes when the boxes coincide.
  const bool same_hashing = from.hashed() && to.hashed() && from.axis == to.axis && from.hash == to.hash &&
                            from.num_shards == to.num_shards && from.seed == to.seed;
  if (from.hashed() != to.hashed() || (from.hashed() && !same_hashing)) return candidates;
  // Only an .npz can stand for an .npz: HDF5 sources never match the
  // members above, and nothing is copied into an HDF5 destination.
  if (!plan.destinations.empty() && h5sparse::is_hdf5_key(plan.destinations.front().key)) return candidates;
  for (const auto& source : plan.sources) {
    if (source.format != wanted_format || source.compression != wanted_compression || source.members != members) {
      continue;
    }
    if (same_hashing) {
      candidates[source.index] = source.index;
      continue;
    }
    // Block schemes: the destination shard holding the box's first entry.
    if (source.box.rows() == 0 || source.box.cols() == 0) continue;
    const std::uint64_t d = plan.destination_map.shard_of(source.box.row_begin, source.box.col_begin);
    if (same_box(plan.destinations[d].box, source.box)) candidates[source.index] = d;
  }
  return candidates;
}

bool decoded_matches_output(const npz::SparseMatrix& m) {
  if (m.format == npz::SparseFormat::kCoo) return false;
  const std::uint32_t itemsize = npz::fits_int32(m.nrows, m.ncols, m.nnz) ? 4 : 8;
  if (m.major.dtype.itemsize != itemsize || m.minor.dtype.itemsize != itemsize) return false;
  return itemsize == 4 ? minor_ascending<std::int32_t, std::int32_t>(m)
                       : minor_ascending<std::int64_t, std::int64_t>(m);
}

Result<CopyOutcome> copy_reused_shard(Store& source_store, Store& destination_store, const ReusedShard& shard) {
  const SourceShard& source = *shard.source;
  const DestinationShard& destination = *shard.destination;
  const std::string context =
      "copying " + source_store.url(source.key) + " to " + destination_store.url(destination.key);
  ObjectInfo planned;
  planned.size = source.bytes;
  planned.version = source.version;
  CopyOutcome outcome;
  auto copied = destination_store.copy_from(source_store, source.key, planned, destination.key);
  if (!copied.ok()) return copied.status().with_context(context);
  outcome.server_side = *copied;
  if (!outcome.server_side) {
    auto bytes = source_store.read_all(source.key);
    if (!bytes.ok()) return bytes.status().with_context(context);
    if (crc32c(*bytes) != shard.crc32c) {
      return Status::Invalid(context + ": the source changed while the job ran (checksum differs from the read)");
    }
    RESHARD_RETURN_IF_ERROR(destination_store.write_atomic(destination.key, *bytes).with_context(context));
  }
  outcome.written.index = destination.index;
  outcome.written.key = destination.key;
  outcome.written.bytes = source.bytes;
  outcome.written.nnz = shard.nnz;
  outcome.written.crc32c = shard.crc32c;
  outcome.written.fingerprint = shard.fingerprint;
  return outcome;
}

}  // namespace reshard

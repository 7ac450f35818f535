// Stage 1, plan: find the source shards, read their headers, derive and check
// the global shape, decide which rank reads each source shard (round-robin)
// and which rank owns each destination shard, and refuse bad destinations
// before anything is written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reshard/comm.hpp"
#include "reshard/format/npz.hpp"
#include "reshard/pipeline/job_config.hpp"
#include "reshard/shard_pattern.hpp"
#include "reshard/sharding_spec.hpp"
#include "reshard/store/store.hpp"

namespace reshard {

struct SourceShard {
  std::uint64_t index = 0;
  std::string key;
  ShardBox box;
  std::uint64_t nrows = 0;  // from the file's header
  std::uint64_t ncols = 0;
  std::uint64_t bytes = 0;
  std::string version;
  std::uint32_t tail_crc = 0;
  std::uint64_t decoded_bytes = 0;  // uncompressed arrays
  npz::SparseFormat format = npz::SparseFormat::kCsr;
  std::vector<std::string> members;  // sorted
  std::string compression;           // "none", "deflate" or "mixed"
  std::string group;                 // HDF5 sources: the group holding the matrix
  // A part of one file that every rank reads a share of (the `single`
  // scheme on a local HDF5 file): its rows, or columns for CSC, in
  // [major_begin, major_end); `box` is the part's.
  bool part_of_file = false;
  std::uint64_t major_begin = 0;
  std::uint64_t major_end = 0;
  int reader = 0;  // rank that reads it
};

struct DestinationShard {
  std::uint64_t index = 0;
  std::string key;
  ShardBox box;
};

// Which rank owns each destination shard; kNobody for shards that need no
// writing (kept from an earlier run), whose entries are dropped.
class DestinationOwner {
 public:
  static constexpr int kNobody = -1;
  DestinationOwner() = default;
  DestinationOwner(std::uint64_t shard_count, int ranks);  // round-robin
  explicit DestinationOwner(std::vector<int> owners) : owners_(std::move(owners)) {}
  int owner_of(std::uint64_t shard) const { return owners_[shard]; }

 private:
  std::vector<int> owners_;
};

struct Plan {
  GlobalShape shape;
  ShardMap source_map;
  ShardMap destination_map;
  std::vector<SourceShard> sources;  // ascending index
  std::vector<DestinationShard> destinations;
  // Round-robin after planning; chosen by locality once sources are read.
  DestinationOwner owner;
  // Files already under the destination pattern, and those of them this job
  // will not write (removed before publishing when starting over).
  std::vector<std::string> existing_destination_keys;
  std::vector<std::string> stale_destination_keys;
  // Prefix of the control files (ShardPattern::control_prefix): the
  // destination directory, or "<file>." for a one-file destination.
  std::string destination_directory;
  // Prefix of every destination key, for cleaning up interrupted writes: the
  // directory, or the one file's key (never a neighbour's temp files).
  std::string written_key_prefix;
};

// Whether a source shard can hold entries of a destination shard: their
// boxes overlap (a hashed axis overlaps everything).
bool may_contribute(const Plan& plan, const SourceShard& source, const DestinationShard& destination);

// The key of destination shard `index` under `pattern`. The manifest records
// keys too, but a dataset can be copied elsewhere (`cp -r`): `verify` names
// the shards by where the dataset is now, not by where it was written.
std::string destination_key(const ShardPattern& pattern, const ShardMap& map, std::uint64_t index);

// Collective: steps 1-5 of planning, which need only the sources: the
// shards, the global shape and both schemes bound to it (no destination
// shards, owners or listing). `mpi_reshard plan` stops here.
Result<Plan> plan_sources(Comm& comm, Store& source_store, const ShardPattern& source_pattern,
                          const ShardingSpec& old_spec, const ShardingSpec& new_spec,
                          const std::string& source_group = "");

// For a destination that is one local HDF5 file (one_file_sink.hpp): the
// plan the shuffle runs on, the file cut into `parts` ranges of its major
// axis (rows for CSR), each routed, owned and assembled like a destination
// shard of that file's key. The parts' bounds are part_bounds.
Result<Plan> plan_file_parts(const Plan& plan, std::uint64_t parts, std::vector<std::uint64_t>& part_bounds);
// Parts for a one-file destination: one per rank at least, more when a
// part's assembly would take over half of `working_bytes` or it would hold
// over 256 MiB of arrays; at most one per row (column). Few parts, because
// a gzip chunk shared by two parts is compressed twice.
std::uint64_t file_part_count(const Plan& plan, int ranks, std::uint64_t working_bytes);

// Collective; every rank returns the same Plan or the same error.
Result<Plan> make_plan(Comm& comm, Store& source_store, const ShardPattern& source_pattern, Store& destination_store,
                       const ShardPattern& destination_pattern, const JobConfig& config);

}  // namespace reshard

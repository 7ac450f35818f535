// What one reshard job is asked to do: the CLI's options after parsing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "reshard/format/zip.hpp"
#include "reshard/pipeline/claim.hpp"
#include "reshard/sharding_spec.hpp"

namespace reshard {

struct JobConfig {
  std::string src_pattern;  // URL or path with {i} (or {row}/{col})
  std::string dst_pattern;
  ShardingSpec old_spec;
  ShardingSpec new_spec;
  bool overwrite = false;
  // Discard an earlier run's manifest (another job, or changed sources).
  bool restart = false;
  // A destination shard's owner may hold at most (1 + epsilon) x the average
  // entries per rank (or what it read itself, if more).
  double ownership_epsilon = 0.1;
  // In-flight storage requests per rank (object stores).
  int max_concurrency = 32;
  // Shards each rank writes between two manifest updates.
  std::uint64_t manifest_batch = 16;
  zip::WriteOptions compression;
  // HDF5 (.h5/.h5ad) shards: the group holding the matrix. Empty: /X (for
  // sources, 10x's /matrix when there is no /X).
  std::string source_group;
  std::string destination_group;
  // Threads per rank for inflating and deflating a shard's arrays; 0 picks
  // the node's cores divided by its ranks.
  int threads = 0;
  // --claim-lease: how long a dead job's claim keeps others out.
  ClaimTiming claim_timing;
  // Bytes of memory a rank may use; 0 picks default_memory_limit().
  std::uint64_t memory_limit = 0;
  // Node-local directory for entries that do not fit (empty: $TMPDIR or /tmp).
  std::string scratch_dir;
  // Upper bound on one MPI message; MPI's int counts cap it at 2^31-1.
  std::uint64_t max_message_bytes = (1ULL << 31) - 1;
};

// What rank 0 reports as the job goes: the stage, the fraction of the whole
// job done, a line of detail, and for the read and write stages the entries
// rank 0 has read or written so far (for a rate; 0 elsewhere).
struct ProgressEvent {
  std::string stage;
  double fraction = 0;
  std::string detail;
  std::uint64_t entries = 0;
};
using ProgressSink = std::function<void(const ProgressEvent&)>;

}  // namespace reshard

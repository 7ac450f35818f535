// Bounded memory per rank. A cost model of what each stage holds, in bytes,
// so the job can spill buckets to scratch before they outgrow the budget and
// split the exchange into waves whose entries fit. Pure functions, so every
// rank computes the same waves from the same counts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "reshard/pipeline/entry.hpp"
#include "reshard/status.hpp"
#include "reshard/units.hpp"

namespace reshard {

std::uint64_t physical_memory_bytes();
// Resident set size now (not the peak), from /proc/self/statm.
std::uint64_t resident_set_bytes();

// Default --memory-limit: this fraction of the node's memory, split evenly
// among the job's ranks on the node. The rest is left to the page cache
// (which the reads and the scratch files lean on) and the OS.
inline constexpr double kDefaultMemoryFraction = 0.5;
std::uint64_t default_memory_limit(int ranks_on_node);

// What the model does not itemize: allocator slack, MPI's shared-memory
// fragments, small per-shard vectors. Measured at 1-4 MiB over the model's
// prediction on this machine (bench/run.sh's memory run).
inline constexpr std::uint64_t kUnmodelledBytes = 6ULL << 20;

// The working memory a rank may use on top of what the process already holds
// when the job starts (libraries, MPI, the plan) and the unmodelled reserve.
struct MemoryBudget {
  std::uint64_t limit = 0;
  std::uint64_t baseline = 0;
  std::uint64_t working() const {
    return limit > baseline + kUnmodelledBytes ? limit - baseline - kUnmodelledBytes : 0;
  }
};

// Refuses limits that leave too little to do anything useful.
inline constexpr std::uint64_t kMinimumWorkingBytes = 4ULL << 20;

// What the stages hold, per entry; checked against measured peaks by
// bench/run.sh's memory run.
namespace memory_cost {
inline constexpr std::uint64_t kEntryBytes = sizeof(Entry);
// Decoding a source shard: its file bytes plus its decompressed arrays.
inline std::uint64_t decode(std::uint64_t file_bytes, std::uint64_t decoded_bytes) {
  return file_bytes + decoded_bytes;
}
// Bucketing n entries: a destination id per entry while counting, then the
// entries themselves grouped by destination.
inline std::uint64_t bucket(std::uint64_t n) { return n * (4 + kEntryBytes); }
// Assembling and encoding one destination shard of n entries with `majors`
// rows (CSR) or columns (CSC) and `ids` hashed ids: the sort's scratch and
// the CSR arrays (48/entry), then the arrays plus what the encoder holds
// of their compressed copies (under 48/entry: igzip holds two 4 MiB
// chunks per thread, libdeflate whole members); indptr appears up to
// three times. An upper bound:
// indices and indptr are kept at the file's width (4 bytes for int32 files)
// and stored members are written from the arrays themselves.
inline std::uint64_t assemble(std::uint64_t n, std::uint64_t majors, std::uint64_t ids) {
  return 48 * n + 32 * (majors + 1) + 16 * ids;
}
}  // namespace memory_cost

// Everything the wave planner needs, for every rank and destination shard.
struct WaveProblem {
  int ranks = 1;
  // held[p][d]: entries rank p holds for destination shard d.
  std::vector<std::vector<std::uint64_t>> held;
  std::vector<int> owner;  // per shard; negative: nobody writes it
  // Per shard: major-axis length and hashed ids of the written shard.
  std::vector<std::uint64_t> majors;
  std::vector<std::uint64_t> ids;
  // Per rank: bytes held in memory for the whole exchange (unspilled buckets).
  std::vector<std::uint64_t> resident;
  std::uint64_t working_bytes = 0;  // per rank
};

struct ShardTooLarge {
  std::uint64_t shard = 0;
  int owner = 0;
  std::uint64_t entries = 0;
  std::uint64_t bytes_needed = 0;  // on its owner, beyond the resident buckets
};

struct WavePlan {
  // Destination shards exchanged and written together, ascending; every
  // written shard appears in exactly one wave.
  std::vector<std::vector<std::uint64_t>> waves;
  std::optional<ShardTooLarge> too_large;  // set when no plan fits
  std::uint64_t peak_bytes = 0;            // largest per-rank need of any wave
};

// Greedy in shard order: a wave grows until one more shard would take some
// rank over its working bytes. A rank's need in a wave is its resident bytes,
// plus the entries it receives and keeps for its shards of the wave, plus the
// larger of the entries it sends and its largest shard's assembly. Sent
// entries take memory only when they were spilled (a staging buffer); resident
// ones are sent in place, so the term is an upper bound.
WavePlan plan_waves(const WaveProblem& problem);

// The waves to run, and whether the buckets still held in memory are to be
// spilled first. They take their bytes from every wave, so they are spilled
// when the waves do not fit with them, or when the whole budget would take
// fewer waves: that costs at most one budget's worth written and read once,
// against an all-to-all round and its assemblies per wave saved.
struct WaveChoice {
  WavePlan plan;
  bool spill_resident = false;
};
WaveChoice choose_waves(const WaveProblem& problem);

}  // namespace reshard

// Stage 3, bucket: group every entry of a loaded source shard by its
// destination shard, fingerprinting what is kept, and hold the groups until
// the exchange: in memory, or spilled to a scratch file when the memory
// budget says so. Entries of shards that need no writing (kept from an
// earlier run) are dropped.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "reshard/fingerprint.hpp"
#include "reshard/pipeline/entry.hpp"
#include "reshard/pipeline/plan.hpp"
#include "reshard/pipeline/read.hpp"
#include "reshard/scratch_file.hpp"
#include "reshard/work_array.hpp"

namespace reshard {

// One source shard's kept entries, contiguous per destination shard, the
// destinations in ascending order.
struct BucketBlock {
  std::uint64_t source = 0;
  struct Segment {
    std::uint64_t shard = 0;
    std::uint64_t count = 0;
  };
  WorkArray<Entry> entries;
  std::vector<Segment> segments;
  Fingerprint fingerprint;  // of the kept entries
  // Every segment's keys are non-decreasing: the source stores its entries
  // along the destination's major axis (CSR to CSR, CSC to CSC) with each
  // row's (column's) indices in order (npz::SparseMatrix::minor_sorted).
  bool sorted = false;
};

// `skip[d]` drops the entries of destination shard d. A counting sort: one
// pass finds each entry's destination, the second places it, so memory is
// exactly the entries plus a 4-byte id each (memory_cost::bucket), or no id
// when the destination depends only on the source's major axis (a rows
// scheme from CSR, a cols scheme from CSC): then both passes compute it once
// per major, and the first reads only indptr. Both passes run on up to
// `threads` threads; the block does not depend on it.
BucketBlock bucket_source(const LoadedSource& source, const ShardMap& destination_map, const std::vector<bool>& skip,
                          int threads = 1);
// Below this many entries per thread, splitting costs more than it saves.
inline constexpr std::uint64_t kMinEntriesPerBucketRange = 1 << 16;

// Everything one rank holds for the exchange, per destination shard.
class Buckets {
 public:
  explicit Buckets(std::uint64_t destination_shards)
      : held_(destination_shards), pieces_(destination_shards), released_(destination_shards) {}

  void add(BucketBlock&& block);
  // Moves every block held in memory to the end of `scratch`.
  Status spill(ScratchFile& scratch);
  // Copies the entries held for `shard` (held()[shard] of them) to `out`,
  // segment after segment as segments() lists them.
  Status copy_shard(std::uint64_t shard, Entry* out) const;
  struct HeldSegment {
    std::uint64_t source = 0;
    std::uint64_t count = 0;
    bool sorted = false;  // BucketBlock::sorted of its block
  };
  // The segments held for `shard`, in order.
  std::vector<HeldSegment> segments(std::uint64_t shard) const;
  // The segments held for `shard` in place, when none of them was spilled.
  bool resident_segments(std::uint64_t shard, std::vector<SourceSegment>& out) const;
  // Gives the memory of the whole pages inside `shard`'s resident segments
  // back to the kernel, once they are sent: the sending rank's footprint
  // drops by what it sent before it assembles its own shards, and on a
  // shared node the owner of a hot shard takes those pages while they are
  // still warm. The shard's entries can no longer be read (copy_shard and
  // resident_segments then fail).
  void release_shard(std::uint64_t shard);

  const std::vector<std::uint64_t>& held() const { return held_; }
  std::uint64_t resident_bytes() const { return resident_entries_ * sizeof(Entry); }
  std::uint64_t spilled_bytes() const { return spilled_entries_ * sizeof(Entry); }
  const Fingerprint& routed_fingerprint() const { return routed_; }

 private:
  // Where some of a shard's entries are: in blocks_[block] at `offset`, or
  // (block == kSpilled) in the scratch file at byte `offset`.
  struct Piece {
    static constexpr std::uint64_t kSpilled = ~std::uint64_t{0};
    std::uint64_t block = 0;
    std::uint64_t offset = 0;
    std::uint64_t count = 0;
    std::uint64_t source = 0;
    bool sorted = false;
  };
  std::vector<std::uint64_t> held_;
  std::vector<std::vector<Piece>> pieces_;
  std::vector<bool> released_;
  std::vector<WorkArray<Entry>> blocks_;
  const ScratchFile* scratch_ = nullptr;
  std::uint64_t resident_entries_ = 0;
  std::uint64_t spilled_entries_ = 0;
  Fingerprint routed_;
};

}  // namespace reshard

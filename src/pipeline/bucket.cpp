#include "reshard/pipeline/bucket.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "reshard/inline.hpp"
#include "reshard/parallel.hpp"
#include "reshard/process_memory.hpp"

namespace reshard {
namespace {

// Under a rows (cols) scheme every entry of a CSR row (CSC column) goes to
// one destination shard: the source stores its entries a major at a time,
// so the first pass counts each major's entries from indptr alone, and the
// second computes the shard when the major changes (once per row of a
// rows:hash destination instead of once per entry) instead of keeping a
// 4-byte id per entry.
bool destination_follows_source_major(const LoadedSource& source, const ShardMap& destination_map) {
  switch (source.decoded.matrix.format) {
    case npz::SparseFormat::kCsr: return destination_map.spec().axis == Axis::kRows;
    case npz::SparseFormat::kCsc: return destination_map.spec().axis == Axis::kCols;
    case npz::SparseFormat::kCoo: return false;
  }
  return false;
}

// shard_of, remembering the last coordinate its rows (cols) scheme looked at.
class ShardOfLastMajor {
 public:
  explicit ShardOfLastMajor(const ShardMap& map) : map_(map), rows_(map.spec().axis == Axis::kRows) {}
  std::uint64_t operator()(std::uint64_t row, std::uint64_t col) {
    const std::uint64_t x = rows_ ? row : col;
    if (!known_ || x != last_) {
      known_ = true;
      last_ = x;
      shard_ = map_.shard_of(row, col);
    }
    return shard_;
  }

 private:
  const ShardMap& map_;
  bool rows_;
  bool known_ = false;
  std::uint64_t last_ = 0;
  std::uint64_t shard_ = 0;
};

constexpr std::uint64_t kCacheLineWords = 64 / sizeof(std::uint64_t);

}  // namespace

BucketBlock bucket_source(const LoadedSource& source, const ShardMap& destination_map, const std::vector<bool>& skip,
                          int threads) {
  const std::uint64_t nnz = source.decoded.matrix.nnz;
  const std::uint64_t shards = skip.size();
  const EntryKeyCodec codec(destination_map);
  // Each thread takes one contiguous range of positions. Its entries land,
  // per destination, after those of the ranges before it, so the block is
  // the same for any thread count: ranges are few and large because the
  // per-range counts cost a word per destination shard.
  const std::uint64_t ranges = parallel_parts(nnz, threads, kMinEntriesPerBucketRange);
  auto range_begin = [&](std::uint64_t r) { return nnz / ranges * r + std::min(r, nnz % ranges); };
  const bool by_major = destination_follows_source_major(source, destination_map);
  // As bytes, once: each range reads them through a pointer of its own.
  const std::vector<std::uint8_t> skip_bytes(skip.begin(), skip.end());
  WorkArray<std::uint32_t> destination(by_major ? 0 : nnz);
  // Each range's counters, with a cache line of padding between ranges:
  // every entry increments one, and counters of two ranges on one line (as
  // two small vectors allocated one after the other were) would move that
  // line between the cores at every entry.
  const std::uint64_t stride = shards + kCacheLineWords;
  std::vector<std::uint64_t> counters(ranges * stride, 0);
  const auto counts = [&](std::uint64_t r) { return counters.data() + r * stride; };
  // The per-entry loops below read only their own locals, never the
  // captured variables of this frame: the calling thread runs range 0 and
  // writes its loop state into this frame, and a second thread reading a
  // word of the same cache line at every entry made 2 threads 3x slower
  // than 1 in the second pass (a timed copy of this function on
  // stage_bench's cols:block input, with the block's pages already faulted
  // in: 160 ms against 51 ms).
  run_in_parallel(ranges, threads, [&](std::size_t r) {
    std::uint64_t* const mine = counts(r);
    const ShardMap map = destination_map;
    const std::uint8_t* const skipped = skip_bytes.data();
    if (by_major) {
      const bool rows = map.spec().axis == Axis::kRows;
      source.for_each_global_major_in(
          range_begin(r), range_begin(r + 1), [&](std::uint64_t global_major, std::uint64_t count) {
            const std::uint64_t shard = rows ? map.shard_of(global_major, 0) : map.shard_of(0, global_major);
            mine[shard] += skipped[shard] != 0 ? 0 : count;
          });
      return;
    }
    std::uint32_t* const shard_at = destination.data();
    source.for_each_global_entry_in(range_begin(r), range_begin(r + 1),
                                    [&map, shard_at, skipped, mine](std::uint64_t row, std::uint64_t col, std::uint64_t,
                                                                    std::uint64_t k) RESHARD_ALWAYS_INLINE {
                                      const std::uint64_t shard = map.shard_of(row, col);
                                      shard_at[k] = static_cast<std::uint32_t>(shard);
                                      mine[shard] += skipped[shard] != 0 ? 0 : 1;
                                    });
  });
  BucketBlock block;
  // Each range's fingerprint counts what it keeps (skipped shards count 0).
  std::vector<Fingerprint> fingerprints(ranges);
  for (std::uint64_t r = 0; r < ranges; ++r) {
    for (std::uint64_t d = 0; d < shards; ++d) fingerprints[r].count += counts(r)[d];
  }
  // counts[r][d] becomes where range r's first entry for d goes.
  std::uint64_t kept = 0;
  for (std::uint64_t d = 0; d < shards; ++d) {
    const std::uint64_t start = kept;
    for (std::uint64_t r = 0; r < ranges; ++r) {
      const std::uint64_t n = counts(r)[d];
      counts(r)[d] = kept;
      kept += n;
    }
    if (kept > start) block.segments.push_back({d, kept - start});
  }
  block.entries.resize(kept);
  block.source = source.shard->index;
  const npz::SparseMatrix& matrix = source.decoded.matrix;
  // Global indices are the local ones plus the box's offset, or ascending
  // ids (checked when read), so order carries over from the source's.
  block.sorted = matrix.minor_sorted && (matrix.format == npz::SparseFormat::kCsr) == codec.csr() &&
                 matrix.format != npz::SparseFormat::kCoo;
  run_in_parallel(ranges, threads, [&](std::size_t r) {
    std::uint64_t* const cursor = counts(r);
    const ShardMap map = destination_map;
    const EntryKeyCodec key_of = codec;
    const bool major = by_major;
    const std::uint8_t* const skipped = skip_bytes.data();
    const std::uint32_t* const shard_at = destination.data();
    Entry* const out = block.entries.data();
    std::uint64_t hash_sum = 0;
    RowHashCache hashed_rows;
    ShardOfLastMajor last_major(map);
    // What the loop only reads is captured by value: captured by reference,
    // it was loaded through the frame at every entry (the entries it stores
    // might alias it). Measured on stage_bench, 1 thread: about 1 ns per
    // entry.
    source.for_each_global_entry_in(range_begin(r), range_begin(r + 1),
                                    [&last_major, &hashed_rows, &hash_sum, shard_at, skipped, cursor, out, key_of,
                                     major](std::uint64_t row, std::uint64_t col, std::uint64_t bits, std::uint64_t k)
                                        RESHARD_ALWAYS_INLINE {
                                          const std::uint64_t shard = major ? last_major(row, col) : shard_at[k];
                                          if (skipped[shard] != 0) return;
                                          hash_sum += entry_hash_of_row_hash(hashed_rows.of(row), col, bits);
                                          out[cursor[shard]++] = Entry{key_of.key(row, col), bits};
                                        });
    fingerprints[r].sum = hash_sum;
  });
  for (const auto& fingerprint : fingerprints) block.fingerprint.merge(fingerprint);
  return block;
}

void Buckets::add(BucketBlock&& block) {
  routed_.merge(block.fingerprint);
  std::uint64_t offset = 0;
  for (const auto& segment : block.segments) {
    held_[segment.shard] += segment.count;
    pieces_[segment.shard].push_back({blocks_.size(), offset, segment.count, block.source, block.sorted});
    offset += segment.count;
  }
  resident_entries_ += block.entries.size();
  blocks_.push_back(std::move(block.entries));
}

Status Buckets::spill(ScratchFile& scratch) {
  if (scratch_ != nullptr && scratch_ != &scratch) return Status::Internal("buckets spilled to two scratch files");
  scratch_ = &scratch;
  std::vector<std::uint64_t> block_start(blocks_.size(), Piece::kSpilled);
  for (std::size_t b = 0; b < blocks_.size(); ++b) {
    if (blocks_[b].empty()) continue;
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(blocks_[b].data());
    RESHARD_ASSIGN_OR_RETURN(block_start[b], scratch.append(ByteView(bytes, blocks_[b].size() * sizeof(Entry))));
    spilled_entries_ += blocks_[b].size();
    WorkArray<Entry>().swap(blocks_[b]);
  }
  for (auto& pieces : pieces_) {
    for (auto& piece : pieces) {
      if (piece.block == Piece::kSpilled) continue;
      piece.offset = block_start[piece.block] + piece.offset * sizeof(Entry);
      piece.block = Piece::kSpilled;
    }
  }
  blocks_.clear();
  resident_entries_ = 0;
  return Status::Ok();
}

bool Buckets::resident_segments(std::uint64_t shard, std::vector<SourceSegment>& out) const {
  if (released_[shard]) return false;
  for (const auto& piece : pieces_[shard]) {
    if (piece.block == Piece::kSpilled) return false;
  }
  for (const auto& piece : pieces_[shard]) {
    out.push_back(
        {std::span<const Entry>(blocks_[piece.block].data() + piece.offset, piece.count), piece.source, piece.sorted});
  }
  return true;
}

std::vector<Buckets::HeldSegment> Buckets::segments(std::uint64_t shard) const {
  std::vector<HeldSegment> out;
  for (const auto& piece : pieces_[shard]) out.push_back({piece.source, piece.count, piece.sorted});
  return out;
}

Status Buckets::copy_shard(std::uint64_t shard, Entry* out) const {
  if (released_[shard]) {
    return Status::Internal("the entries of destination shard " + std::to_string(shard) + " were read after release");
  }
  for (const auto& piece : pieces_[shard]) {
    if (piece.block == Piece::kSpilled) {
      RESHARD_RETURN_IF_ERROR(
          scratch_->read_at(piece.offset, reinterpret_cast<std::uint8_t*>(out), piece.count * sizeof(Entry)));
    } else {
      std::memcpy(out, blocks_[piece.block].data() + piece.offset, piece.count * sizeof(Entry));
    }
    out += piece.count;
  }
  return Status::Ok();
}

void Buckets::release_shard(std::uint64_t shard) {
  released_[shard] = true;
  for (const auto& piece : pieces_[shard]) {
    if (piece.block == Piece::kSpilled) continue;
    // Only pages wholly inside the segment: its neighbours share the rest.
    release_pages_inside(blocks_[piece.block].data() + piece.offset, piece.count * sizeof(Entry));
  }
}

}  // namespace reshard

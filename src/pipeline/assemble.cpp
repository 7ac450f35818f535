#include "reshard/pipeline/assemble.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "reshard/format/npz.hpp"
#include "reshard/parallel.hpp"
#include "reshard/process_memory.hpp"

namespace reshard {
namespace {

struct MinorEntry {
  std::uint64_t minor;
  std::uint64_t value_bits;
};

// Local index along one axis: an offset into a block, or the position of the
// id among a hashed shard's ascending ids.
struct AxisMapping {
  std::uint64_t offset = 0;
  const std::vector<std::uint64_t>* ids = nullptr;
  std::uint64_t local(std::uint64_t global) const {
    if (ids == nullptr) return global - offset;
    return static_cast<std::uint64_t>(std::lower_bound(ids->begin(), ids->end(), global) - ids->begin());
  }
  std::uint64_t global(std::uint64_t local) const { return ids == nullptr ? local + offset : (*ids)[local]; }
};

// A sorted stretch of one source segment. Entries with equal keys in two
// runs go in source order: by source, then by the run's place in its
// segment (`piece`), which is their order in the source's storage.
struct Run {
  std::span<const Entry> entries;
  std::uint64_t source = 0;
  std::uint64_t piece = 0;
};

// Whether run ra's entries go before equal keys of run rb.
bool wins_ties(const Run& ra, const Run& rb) {
  return ra.source != rb.source ? ra.source < rb.source : ra.piece < rb.piece;
}

// Whether a (in run ra) goes before b (in run rb).
// Keys order entries by (major, minor) on global coordinates; local ones are
// a monotone map of them.
bool goes_before(const Entry& a, const Run& ra, const Entry& b, const Run& rb) {
  if (a.key != b.key) return a.key < b.key;
  return wins_ties(ra, rb);
}

// How far ahead of the entry being merged to ask for its cache line: 1 KiB.
constexpr std::uintptr_t kPrefetchEntries = 64;

// Above this many sorted runs a merge costs more than the counting sort.
constexpr std::size_t kMaxMergedRuns = 1024;
// Below this many entries per thread, splitting a merge costs more than it
// saves: starting and joining a thread (run_in_parallel) takes 33-51 us
// here (stage_bench prints it), what merging ~6-8k entries takes. At 64Ki, shards of up to 128Ki
// entries were merged on one thread, which on stage_bench's 7 small column
// blocks (~107k entries each) kept 2 threads at 1.31-1.76x of one.
constexpr std::uint64_t kMinEntriesPerMergePiece = 1 << 14;

// Where one segment's sorted stretch ends: entries[position] < entries[position - 1].
struct Descent {
  std::size_t segment = 0;
  std::size_t position = 0;
};

// Entries usually arrive as a few sorted runs: each segment is one source
// shard's entries in storage order. Splits the segments at every descent;
// false when there are too many runs for a merge to pay. The descents are
// found on `threads` threads over even slices of all the segments' entries
// (one pass that reads every key, which on one thread took a fifth of
// assembly and capped the merge's speed-up from a second thread); slices are
// joined in order, so the runs do not depend on the thread count. Segments
// known to be sorted (a canonical source's, SourceSegment::sorted) are not
// read at all: on stage_bench's canonical source that took assembly from
// 8.7 to 7.5 ns per entry on one thread.
bool split_into_sorted_runs(const std::vector<SourceSegment>& parts, int threads, std::vector<Run>& runs) {
  std::vector<std::uint64_t> segment_start(parts.size() + 1, 0);
  std::uint64_t unknown = 0;  // entries of segments not known to be sorted
  for (std::size_t s = 0; s < parts.size(); ++s) {
    segment_start[s + 1] = segment_start[s] + parts[s].entries.size();
    unknown += parts[s].sorted ? 0 : parts[s].entries.size();
  }
  const std::uint64_t n = segment_start.back();
  const std::uint64_t even_slices = parallel_parts(n, threads, kMinEntriesPerMergePiece);
  const std::uint64_t slices = unknown == 0 ? 0 : even_slices;
  // A slice stops at kMaxMergedRuns + 1 descents: that many already mean a
  // counting sort.
  std::vector<std::vector<Descent>> found(slices);
  run_in_parallel(slices, threads, [&](std::size_t slice) {
    const std::uint64_t begin = even_cut(n, slices, slice);
    const std::uint64_t end = even_cut(n, slices, slice + 1);
    std::vector<Descent> descents;
    // The segment holding `begin`: the last one starting at or before it.
    auto s = static_cast<std::size_t>(std::upper_bound(segment_start.begin(), segment_start.end(), begin) -
                                      segment_start.begin()) -
             1;
    for (std::uint64_t at = begin; at < end && s < parts.size(); ++s) {
      const std::span<const Entry> part = parts[s].entries;
      if (parts[s].sorted) {
        at = segment_start[s + 1];
        continue;
      }
      const std::size_t first = std::max<std::size_t>(1, at - segment_start[s]);
      const std::size_t last = std::min<std::uint64_t>(part.size(), end - segment_start[s]);
      for (std::size_t k = first; k < last; ++k) {
        if (part[k].key < part[k - 1].key) {
          descents.push_back({s, k});
          if (descents.size() > kMaxMergedRuns) break;
        }
      }
      if (descents.size() > kMaxMergedRuns) break;
      at = segment_start[s + 1];
    }
    found[slice] = std::move(descents);
  });
  for (const auto& slice : found) {
    if (slice.size() > kMaxMergedRuns) return false;
  }
  std::vector<Descent> descents;
  for (const auto& slice : found) descents.insert(descents.end(), slice.begin(), slice.end());
  std::size_t next = 0;
  for (std::size_t s = 0; s < parts.size(); ++s) {
    const auto& part = parts[s].entries;
    std::size_t begin = 0;
    std::uint64_t piece = 0;
    while (begin < part.size()) {
      const std::size_t end =
          next < descents.size() && descents[next].segment == s ? descents[next++].position : part.size();
      runs.push_back({part.subspan(begin, end - begin), parts[s].source, piece++});
      if (runs.size() > kMaxMergedRuns) return false;
      begin = end;
    }
  }
  return true;
}

// Entries of a sorted run with a global major index below `major`.
std::size_t run_entries_below(std::span<const Entry> run, const EntryKeyCodec& codec, std::uint64_t major) {
  return static_cast<std::size_t>(
      std::partition_point(run.begin(), run.end(), [&](const Entry& e) { return codec.major(e.key) < major; }) -
      run.begin());
}

std::uint64_t entries_below(const std::vector<Run>& runs, const EntryKeyCodec& codec, std::uint64_t major) {
  std::uint64_t n = 0;
  for (const auto& run : runs) n += run_entries_below(run.entries, codec, major);
  return n;
}

// One thread's share of a merge: the entries whose global major index is in
// [first_major, end_major), written to the slots from `first_slot`, and the
// indptr words [first_local, end_local) (indptr[j] is the first slot whose
// local major is >= j, so each word has exactly one writer).
struct MergePiece {
  std::vector<Run> runs;  // this piece's part of every run, found before any piece merges
  std::uint64_t first_major = 0;
  std::uint64_t end_major = 0;
  std::uint64_t first_slot = 0;
  std::uint64_t first_local = 0;
  std::uint64_t end_local = 0;
  Fingerprint fingerprint;
};

// Stores the low `width` bytes of `value` at `at`; with the width known when
// compiling (kWidth != 0) this is one move, not a call to memcpy per entry.
template <std::uint32_t kWidth>
void store_low_bytes(std::uint8_t* at, std::uint64_t value, std::uint32_t width) {
  std::memcpy(at, &value, kWidth != 0 ? kWidth : width);
}

// k-way merge of this piece's part of every run with a binary heap of run
// heads. After a pop, the run keeps the lead while it stays below the next
// head, so runs that do not interleave (a row block's rows, a hashed row's
// entries) are copied at one comparison per entry. kIndexWidth and
// kValueWidth are the output's widths, or 0 for "read them from `out`".
template <std::uint32_t kIndexWidth, std::uint32_t kValueWidth>
void merge_piece_as(const AxisMapping& major_axis_shared, const AxisMapping& minor_axis_shared,
                    const EntryKeyCodec& codec_shared, ConsumedEntries consumed, MergePiece& piece,
                    AssembledShard& out) {
  // The loop reads copies made here, not the caller's frame or the pieces'
  // small allocations: the calling thread merges a piece too and writes its
  // loop state next to those, and a read of the same cache line per entry
  // from the other core slows both (as in bucket.cpp).
  const AxisMapping major_axis = major_axis_shared;
  const AxisMapping minor_axis = minor_axis_shared;
  const EntryKeyCodec codec = codec_shared;
  std::uint8_t* const indptr = out.indptr.data();
  std::uint8_t* const indices = out.indices.data();
  std::uint8_t* const values = out.values.data();
  const std::uint32_t index_width = kIndexWidth != 0 ? kIndexWidth : out.index_width;
  const std::vector<Run> runs = piece.runs;
  const std::uint32_t width = kValueWidth != 0 ? kValueWidth : out.value_dtype.itemsize;
  const bool csr = codec.csr();
  std::vector<std::size_t> position(runs.size(), 0);
  std::vector<std::size_t> heap;  // run indices, smallest head on top
  const auto heap_greater = [&](std::size_t a, std::size_t b) {
    return goes_before(runs[b].entries[position[b]], runs[b], runs[a].entries[position[a]], runs[a]);
  };
  for (std::size_t r = 0; r < runs.size(); ++r) heap.push_back(r);
  std::make_heap(heap.begin(), heap.end(), heap_greater);
  std::uint64_t slot = piece.first_slot;
  std::uint64_t next_indptr = piece.first_local;
  // Local majors only grow, so a hashed axis is walked, not searched.
  std::uint64_t major_local = piece.first_local;
  // Summed here and stored once: the pieces' fingerprints lie next to each
  // other, and one written per entry from two cores shares a cache line.
  std::uint64_t hash_sum = 0;
  // The current major's global index, mapped back from its local one, and
  // its row_hash (used when the major is the row).
  std::uint64_t major_back = 0;
  std::uint64_t hashed_major = 0;
  const auto take = [&](const Entry& e) {
    // As an address, not a pointer: a pointer past the run's end is
    // undefined even if nothing reads it (a prefetch does not fault).
    __builtin_prefetch(
        reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(&e) + kPrefetchEntries * sizeof(Entry)));
    const std::uint64_t major_global = codec.major(e.key);
    if (major_axis.ids == nullptr) {
      major_local = major_global - major_axis.offset;
    } else {
      while ((*major_axis.ids)[major_local] < major_global) ++major_local;
    }
    // The fingerprint maps the local indices back to global ones: an
    // independent check of the mapping, as in the counting sort. A new
    // major always starts here (every indptr word up to it is written).
    if (next_indptr <= major_local) {
      do {
        store_low_bytes<kIndexWidth>(indptr + next_indptr++ * index_width, slot, index_width);
      } while (next_indptr <= major_local);
      major_back = major_axis.global(major_local);
      hashed_major = row_hash(major_back);
    }
    const std::uint64_t minor_local = minor_axis.local(codec.minor(e.key));
    store_low_bytes<kIndexWidth>(indices + slot * index_width, minor_local, index_width);
    store_low_bytes<kValueWidth>(values + slot * width, e.value_bits, width);
    const std::uint64_t minor_global = minor_axis.global(minor_local);
    hash_sum += csr ? entry_hash_of_row_hash(hashed_major, minor_global, e.value_bits)
                    : entry_hash(minor_global, major_back, e.value_bits);
    ++slot;
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), heap_greater);
    const std::size_t r = heap.back();
    // The run (a copy of its span) and its position live in registers
    // while it leads: the output stores are bytes, which may alias
    // anything, so runs[r] and position[r] themselves would be loaded (and
    // the position stored) again at every entry.
    const std::span<const Entry> run = runs[r].entries;
    std::size_t at = position[r];
    if (heap.size() == 1) {
      while (at < run.size()) take(run[at++]);
    } else {
      const Run& limit_run = runs[heap.front()];
      const std::uint64_t limit_key = limit_run.entries[position[heap.front()]].key;
      // goes_before against the limit, whose run is fixed while this one
      // leads: the tie rule is settled once.
      const bool first_on_ties = wins_ties(runs[r], limit_run);
      do {
        take(run[at++]);
      } while (at < run.size() && (run[at].key < limit_key || (first_on_ties && run[at].key == limit_key)));
    }
    position[r] = at;
    if (at < run.size()) {
      std::push_heap(heap.begin(), heap.end(), heap_greater);
    } else {
      heap.pop_back();
      // Runs of row blocks end one after another, so their pages come back
      // while the output is still growing, and its page faults take them.
      if (consumed == ConsumedEntries::kGiveBack) release_pages_inside(run.data(), run.size_bytes());
    }
  }
  while (next_indptr < piece.end_local)
    store_low_bytes<kIndexWidth>(indptr + next_indptr++ * index_width, slot, index_width);
  piece.fingerprint = Fingerprint{slot - piece.first_slot, hash_sum};
}

template <std::uint32_t kIndexWidth>
void merge_piece_with_index_width(const AxisMapping& major_axis, const AxisMapping& minor_axis,
                                  const EntryKeyCodec& codec, ConsumedEntries consumed, MergePiece& piece,
                                  AssembledShard& out) {
  switch (out.value_dtype.itemsize) {
    case 4: return merge_piece_as<kIndexWidth, 4>(major_axis, minor_axis, codec, consumed, piece, out);
    case 8: return merge_piece_as<kIndexWidth, 8>(major_axis, minor_axis, codec, consumed, piece, out);
    default: return merge_piece_as<kIndexWidth, 0>(major_axis, minor_axis, codec, consumed, piece, out);
  }
}

void merge_piece(const AxisMapping& major_axis, const AxisMapping& minor_axis, const EntryKeyCodec& codec,
                 ConsumedEntries consumed, MergePiece& piece, AssembledShard& out) {
  if (out.index_width == 4) {
    merge_piece_with_index_width<4>(major_axis, minor_axis, codec, consumed, piece, out);
  } else {
    merge_piece_with_index_width<0>(major_axis, minor_axis, codec, consumed, piece, out);
  }
}

// Splits the merge into pieces of about equal entries by global major index
// (a major is never split, so a piece may be larger than its share when one
// row holds many entries) and merges them on `threads` threads. The result
// is the one sorted order, whatever the thread count.
void merge_sorted_runs(const std::vector<Run>& runs, const AxisMapping& major_axis, const AxisMapping& minor_axis,
                       const EntryKeyCodec& codec, std::uint64_t nmajor, int threads, ConsumedEntries consumed,
                       AssembledShard& out) {
  std::uint64_t n = 0;
  std::uint64_t lowest = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t highest = 0;
  for (const auto& run : runs) {
    n += run.entries.size();
    lowest = std::min(lowest, codec.major(run.entries.front().key));
    highest = std::max(highest, codec.major(run.entries.back().key));
  }
  // Not zeroed: the pieces write every word of indptr.
  out.indptr.resize((nmajor + 1) * out.index_width);
  out.indices.resize(n * out.index_width);
  out.values.resize(n * out.value_dtype.itemsize);
  const std::uint64_t wanted = parallel_parts(n, threads, kMinEntriesPerMergePiece);
  std::vector<MergePiece> pieces(wanted);
  for (std::uint64_t t = 1; t < wanted; ++t) {
    // The smallest major with at least t/wanted of the entries below it.
    const std::uint64_t target = n / wanted * t;
    std::uint64_t lo = std::max(lowest, pieces[t - 1].first_major);
    std::uint64_t hi = highest + 1;
    while (lo < hi) {
      const std::uint64_t mid = lo + (hi - lo) / 2;
      if (entries_below(runs, codec, mid) >= target) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    pieces[t].first_major = lo;
    pieces[t].first_slot = entries_below(runs, codec, lo);
    pieces[t].first_local = major_axis.local(lo);
  }
  for (std::uint64_t t = 0; t < wanted; ++t) {
    pieces[t].end_major = t + 1 < wanted ? pieces[t + 1].first_major : std::numeric_limits<std::uint64_t>::max();
    pieces[t].end_local = t + 1 < wanted ? pieces[t + 1].first_local : nmajor + 1;
    // Every piece's bounds in every run are found before any piece merges:
    // a merged piece may give its entries' pages back.
    for (const auto& run : runs) {
      const std::size_t begin = run_entries_below(run.entries, codec, pieces[t].first_major);
      const std::size_t end = run_entries_below(run.entries, codec, pieces[t].end_major);
      if (end > begin) pieces[t].runs.push_back({run.entries.subspan(begin, end - begin), run.source, run.piece});
    }
  }
  run_in_parallel(pieces.size(), threads,
                  [&](std::size_t t) { merge_piece(major_axis, minor_axis, codec, consumed, pieces[t], out); });
  for (const auto& piece : pieces) out.fingerprint.merge(piece.fingerprint);
}

// The general path: counting sort by major index, taking the segments in
// source order so each major slice holds its entries in (source, position)
// order, then a stable sort of each (short) slice by minor index.
void counting_sort(std::vector<SourceSegment> segments, const AxisMapping& major_axis, const AxisMapping& minor_axis,
                   const EntryKeyCodec& codec, std::uint64_t nmajor, AssembledShard& out) {
  const bool csr = codec.csr();
  std::stable_sort(segments.begin(), segments.end(),
                   [](const SourceSegment& a, const SourceSegment& b) { return a.source < b.source; });
  std::vector<std::span<const Entry>> parts;
  for (const auto& segment : segments) parts.push_back(segment.entries);
  std::uint64_t n = 0;
  for (const auto& part : parts) n += part.size();
  WorkArray<std::uint64_t> majors(n);
  std::vector<std::uint64_t> indptr(nmajor + 1, 0);
  std::uint64_t k = 0;
  for (const auto& part : parts) {
    for (const Entry& e : part) {
      majors[k] = major_axis.local(codec.major(e.key));
      ++indptr[majors[k] + 1];
      ++k;
    }
  }
  for (std::uint64_t i = 0; i < nmajor; ++i) indptr[i + 1] += indptr[i];
  WorkArray<MinorEntry> sorted(n);
  {
    std::vector<std::uint64_t> cursor(indptr.begin(), indptr.end() - 1);
    k = 0;
    for (const auto& part : parts) {
      for (const Entry& e : part) {
        sorted[cursor[majors[k]]++] = MinorEntry{minor_axis.local(codec.minor(e.key)), e.value_bits};
        ++k;
      }
    }
  }
  WorkArray<std::uint64_t>().swap(majors);
  const std::uint32_t width = out.value_dtype.itemsize;
  out.indices.resize(sorted.size() * out.index_width);
  out.values.resize(sorted.size() * width);
  for (std::uint64_t i = 0; i < nmajor; ++i) {
    const auto begin = sorted.begin() + static_cast<std::ptrdiff_t>(indptr[i]);
    const auto end = sorted.begin() + static_cast<std::ptrdiff_t>(indptr[i + 1]);
    std::stable_sort(begin, end, [](const MinorEntry& a, const MinorEntry& b) { return a.minor < b.minor; });
    const std::uint64_t major_global = major_axis.global(i);
    for (std::uint64_t slot = indptr[i]; slot < indptr[i + 1]; ++slot) {
      const MinorEntry& e = sorted[slot];
      store_index(out.indices.data(), out.index_width, slot, e.minor);
      std::memcpy(out.values.data() + slot * width, &e.value_bits, width);
      const std::uint64_t minor_global = minor_axis.global(e.minor);
      out.fingerprint.add(csr ? major_global : minor_global, csr ? minor_global : major_global, e.value_bits);
    }
  }
  out.indptr.resize((nmajor + 1) * out.index_width);
  for (std::uint64_t i = 0; i <= nmajor; ++i) store_index(out.indptr.data(), out.index_width, i, indptr[i]);
}

}  // namespace

std::vector<std::vector<std::uint64_t>> hashed_ids_for(const Plan& plan,
                                                       const std::vector<const DestinationShard*>& owned) {
  std::vector<std::uint64_t> shards;
  shards.reserve(owned.size());
  for (const auto* d : owned) shards.push_back(d->index);
  return plan.destination_map.hashed_ids(shards);
}

AssembledShard assemble_shard(const std::vector<SourceSegment>& parts, const DestinationShard& shard, const Plan& plan,
                              npy::DType value_dtype, std::vector<std::uint64_t> hashed_ids, int threads,
                              ConsumedEntries consumed) {
  const auto& spec = plan.destination_map.spec();
  AssembledShard out;
  out.shard = &shard;
  out.layout = spec.layout;
  out.value_dtype = value_dtype;
  AxisMapping rows{shard.box.row_begin, nullptr};
  AxisMapping cols{shard.box.col_begin, nullptr};
  out.nrows = shard.box.rows();
  out.ncols = shard.box.cols();
  if (spec.hashed()) {
    if (spec.axis == Axis::kRows) {
      out.row_ids = std::move(hashed_ids);
      rows.ids = &*out.row_ids;
      out.nrows = out.row_ids->size();
    } else {
      out.col_ids = std::move(hashed_ids);
      cols.ids = &*out.col_ids;
      out.ncols = out.col_ids->size();
    }
  }
  const bool csr = out.layout == Layout::kCsr;
  const EntryKeyCodec codec(plan.destination_map);
  const AxisMapping& major_axis = csr ? rows : cols;
  const AxisMapping& minor_axis = csr ? cols : rows;
  const std::uint64_t nmajor = csr ? out.nrows : out.ncols;
  std::uint64_t n = 0;
  for (const auto& segment : parts) n += segment.entries.size();
  out.index_width = npz::fits_int32(out.nrows, out.ncols, n) ? 4 : 8;

  std::vector<Run> runs;
  if (split_into_sorted_runs(parts, threads, runs)) {
    merge_sorted_runs(runs, major_axis, minor_axis, codec, nmajor, threads, consumed, out);
  } else {
    counting_sort(parts, major_axis, minor_axis, codec, nmajor, out);
  }
  return out;
}

}  // namespace reshard

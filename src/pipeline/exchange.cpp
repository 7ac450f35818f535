#include "reshard/pipeline/exchange.hpp"

#include "reshard/fault.hpp"

namespace reshard {
namespace {

// A segment's entry in the table a sender sends beside its entries:
// source, count, sorted (0 or 1).
constexpr std::uint64_t kSegmentWords = 3;

}  // namespace

Result<WaveEntries> exchange_wave(Comm& comm, const Buckets& buckets,
                                  const std::vector<std::vector<std::uint64_t>>& held, const DestinationOwner& owner,
                                  const std::vector<std::uint64_t>& wave, std::uint64_t max_message_bytes,
                                  ExchangeStats& stats) {
  const auto ranks = static_cast<std::size_t>(comm.size());
  const int me = comm.rank();
  WaveEntries out;
  const auto& mine = held[static_cast<std::size_t>(me)];
  std::uint64_t kept = 0;
  std::uint64_t spilled_here = 0;
  // My own entries of each of my shards: used where they lie when still in
  // memory; spilled ones are read back into `local`.
  std::vector<std::vector<SourceSegment>> own;
  // Per peer, the (source, count, sorted) of each segment sent, in send order.
  std::vector<std::vector<std::uint64_t>> tables(ranks);
  for (const auto d : wave) {
    const int p = owner.owner_of(d);
    if (p == me) {
      out.shards.push_back(d);
      kept += mine[d];
      auto& segments = own.emplace_back();
      if (!buckets.resident_segments(d, segments)) {
        segments.clear();
        spilled_here += mine[d];
      }
    } else if (p != DestinationOwner::kNobody) {
      for (const auto& segment : buckets.segments(d)) {
        auto& table = tables[static_cast<std::size_t>(p)];
        table.insert(table.end(), {segment.source, segment.count, segment.sorted ? 1U : 0U});
      }
    }
  }
  Status status;
  out.local.resize(spilled_here);
  std::uint64_t local_cursor = 0;
  for (std::size_t k = 0; k < out.shards.size() && status.ok(); ++k) {
    const std::uint64_t count = mine[out.shards[k]];
    if (!own[k].empty() || count == 0) continue;
    status = buckets.copy_shard(out.shards[k], out.local.data() + local_cursor);
    for (const auto& segment : buckets.segments(out.shards[k])) {
      own[k].push_back(
          {std::span<const Entry>(out.local.data() + local_cursor, segment.count), segment.source, segment.sorted});
      local_cursor += segment.count;
    }
  }
  // What goes to each peer: the wave's shards it owns in ascending order
  // (the layout the receiver rebuilds from `held`), as views of the bucket
  // blocks where they lie; only spilled shards are read back, into `staged`.
  std::vector<std::vector<ByteView>> to_peer(ranks);
  std::uint64_t total = 0;
  std::uint64_t staged_entries = 0;
  std::vector<SourceSegment> segments;
  for (const auto d : wave) {
    const int p = owner.owner_of(d);
    if (p == me || p == DestinationOwner::kNobody || mine[d] == 0) continue;
    total += mine[d] * sizeof(Entry);
    segments.clear();
    if (!buckets.resident_segments(d, segments)) staged_entries += mine[d];
  }
  WorkArray<Entry> staged(staged_entries);
  std::uint64_t staged_at = 0;
  for (const auto d : wave) {
    const int p = owner.owner_of(d);
    if (p == me || p == DestinationOwner::kNobody || mine[d] == 0 || !status.ok()) continue;
    auto& pieces = to_peer[static_cast<std::size_t>(p)];
    segments.clear();
    if (buckets.resident_segments(d, segments)) {
      for (const auto& segment : segments) {
        pieces.emplace_back(reinterpret_cast<const std::uint8_t*>(segment.entries.data()),
                            segment.entries.size() * sizeof(Entry));
      }
    } else {
      status = buckets.copy_shard(d, staged.data() + staged_at);
      pieces.emplace_back(reinterpret_cast<const std::uint8_t*>(staged.data() + staged_at), mine[d] * sizeof(Entry));
      staged_at += mine[d];
    }
  }
  // A rank that cannot read its scratch file must not leave the others
  // waiting in the all-to-all.
  RESHARD_RETURN_IF_ERROR(agree(comm, status));
  stats.entries_sent += total / sizeof(Entry);
  stats.bytes_sent += total;
  stats.entries_kept_local += kept;
  fault::point("mid-exchange");
  std::vector<std::uint64_t> recv_counts;
  out.received = comm.alltoallv_pieces(to_peer, recv_counts, sizeof(Entry), max_message_bytes);
  WorkArray<Entry>().swap(staged);
  stats.rounds += comm.last_exchange_rounds();
  constexpr std::uint64_t kSegmentBytes = kSegmentWords * sizeof(std::uint64_t);
  std::vector<std::uint64_t> table_counts(ranks, 0);
  std::vector<std::uint64_t> flat_table;
  for (std::size_t p = 0; p < ranks; ++p) {
    table_counts[p] = tables[p].size() * sizeof(std::uint64_t);
    flat_table.insert(flat_table.end(), tables[p].begin(), tables[p].end());
  }
  stats.bytes_sent += flat_table.size() * sizeof(std::uint64_t);
  std::vector<std::uint64_t> table_recv_counts;
  const ByteArray table_bytes = comm.alltoallv(
      ByteView(reinterpret_cast<const std::uint8_t*>(flat_table.data()), flat_table.size() * sizeof(std::uint64_t)),
      table_counts, table_recv_counts, kSegmentBytes, max_message_bytes);
  stats.waves += 1;
  stats.entries_received += out.received.size() / sizeof(Entry);

  // Sender p's block holds, for each shard of mine in ascending order,
  // held[p][shard] entries as the segments its table lists. Bytes come from
  // operator new, aligned for Entry and for the table's words.
  const auto* received = reinterpret_cast<const Entry*>(out.received.data());
  const auto* table = reinterpret_cast<const std::uint64_t*>(table_bytes.data());
  std::vector<std::uint64_t> from(ranks, 0);
  std::vector<std::uint64_t> table_at(ranks, 0);
  std::vector<std::uint64_t> table_end(ranks, 0);
  std::uint64_t start = 0;
  std::uint64_t table_start = 0;
  for (std::size_t p = 0; p < ranks; ++p) {
    from[p] = start;
    start += recv_counts[p] / sizeof(Entry);
    table_at[p] = table_start;
    table_start += table_recv_counts[p] / sizeof(std::uint64_t);
    table_end[p] = table_start;
  }
  for (std::size_t k = 0; k < out.shards.size(); ++k) {
    auto& parts = out.parts.emplace_back(std::move(own[k]));
    for (std::size_t p = 0; p < ranks; ++p) {
      std::uint64_t remaining = held[p][out.shards[k]];
      if (static_cast<int>(p) == me) continue;
      while (remaining > 0) {
        const bool listed = table_at[p] + kSegmentWords <= table_end[p];
        const std::uint64_t source = listed ? table[table_at[p]] : 0;
        const std::uint64_t n = listed ? table[table_at[p] + 1] : 0;
        const bool sorted = listed && table[table_at[p] + 2] != 0;
        if (n == 0 || n > remaining) {
          return Status::Internal("rank " + std::to_string(p) + " sent a segment of " + std::to_string(n) +
                                  " entries where " + std::to_string(remaining) + " were due");
        }
        table_at[p] += kSegmentWords;
        parts.push_back({std::span<const Entry>(received + from[p], n), source, sorted});
        from[p] += n;
        remaining -= n;
      }
    }
  }
  return out;
}

}  // namespace reshard

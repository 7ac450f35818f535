#include "reshard/pipeline/exchange.hpp"

#include "reshard/fault.hpp"

namespace reshard {

Result<WaveEntries> exchange_wave(Comm& comm, const Buckets& buckets,
                                  const std::vector<std::vector<std::uint64_t>>& held, const DestinationOwner& owner,
                                  const std::vector<std::uint64_t>& wave, std::uint64_t max_message_bytes,
                                  ExchangeStats& stats) {
  const auto ranks = static_cast<std::size_t>(comm.size());
  const int me = comm.rank();
  WaveEntries out;
  const auto& mine = held[static_cast<std::size_t>(me)];
  // Per peer, the wave's shards it owns in ascending order: the layout of the
  // block sent to it, which the receiver rebuilds from `held`.
  std::vector<std::uint64_t> send_counts(ranks, 0);
  std::uint64_t kept = 0;
  std::uint64_t spilled_here = 0;
  // My own entries of each of my shards: used where they lie when still in
  // memory; spilled ones are read back into `local`.
  std::vector<std::vector<std::span<const Entry>>> own;
  for (const auto d : wave) {
    const int p = owner.owner_of(d);
    if (p == me) {
      out.shards.push_back(d);
      kept += mine[d];
      auto& spans = own.emplace_back();
      if (!buckets.resident_spans(d, spans)) {
        spans.clear();
        spilled_here += mine[d];
      }
    } else if (p != DestinationOwner::kNobody) {
      send_counts[static_cast<std::size_t>(p)] += mine[d] * sizeof(Entry);
    }
  }
  Status status;
  out.local.resize(spilled_here);
  std::uint64_t local_cursor = 0;
  for (std::size_t k = 0; k < out.shards.size() && status.ok(); ++k) {
    const std::uint64_t count = mine[out.shards[k]];
    if (!own[k].empty() || count == 0) continue;
    status = buckets.copy_shard(out.shards[k], out.local.data() + local_cursor);
    own[k].emplace_back(out.local.data() + local_cursor, count);
    local_cursor += count;
  }
  std::vector<std::uint64_t> cursor(ranks, 0);
  std::uint64_t total = 0;
  for (std::size_t p = 0; p < ranks; ++p) {
    cursor[p] = total;
    total += send_counts[p];
  }
  ByteArray send(total);
  for (const auto d : wave) {
    const int p = owner.owner_of(d);
    if (p == me || p == DestinationOwner::kNobody || mine[d] == 0 || !status.ok()) continue;
    auto& at = cursor[static_cast<std::size_t>(p)];
    status = buckets.copy_shard(d, reinterpret_cast<Entry*>(send.data() + at));
    at += mine[d] * sizeof(Entry);
  }
  // A rank that cannot read its scratch file must not leave the others
  // waiting in the all-to-all.
  RESHARD_RETURN_IF_ERROR(agree(comm, status));
  stats.entries_sent += total / sizeof(Entry);
  stats.bytes_sent += total;
  stats.entries_kept_local += kept;
  fault::point("mid-exchange");
  std::vector<std::uint64_t> recv_counts;
  out.received = comm.alltoallv(send, send_counts, recv_counts, sizeof(Entry), max_message_bytes);
  ByteArray().swap(send);
  stats.rounds += comm.last_exchange_rounds();
  stats.waves += 1;
  stats.entries_received += out.received.size() / sizeof(Entry);

  // Sender p's block holds, for each shard of mine in ascending order,
  // held[p][shard] entries. Bytes come from operator new, aligned for Entry.
  const auto* received = reinterpret_cast<const Entry*>(out.received.data());
  std::vector<std::uint64_t> from(ranks, 0);
  std::uint64_t start = 0;
  for (std::size_t p = 0; p < ranks; ++p) {
    from[p] = start;
    start += recv_counts[p] / sizeof(Entry);
  }
  for (std::size_t k = 0; k < out.shards.size(); ++k) {
    auto& parts = out.parts.emplace_back(std::move(own[k]));
    for (std::size_t p = 0; p < ranks; ++p) {
      const std::uint64_t n = held[p][out.shards[k]];
      if (static_cast<int>(p) == me || n == 0) continue;
      parts.emplace_back(received + from[p], n);
      from[p] += n;
    }
  }
  return out;
}

}  // namespace reshard

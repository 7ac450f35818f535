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
  // Per peer, the wave's shards it owns in ascending order: the layout of the
  // block sent to it, which the receiver rebuilds from `held`.
  std::vector<std::uint64_t> send_counts(ranks, 0);
  std::uint64_t kept = 0;
  std::uint64_t to_copy = 0;
  // Entries of my own shards still in memory are used where they lie; only
  // spilled ones are read back.
  std::vector<std::vector<std::span<const Entry>>> in_place;
  for (const auto d : wave) {
    const int p = owner.owner_of(d);
    if (p == me) {
      out.shards.push_back(d);
      kept += held[static_cast<std::size_t>(me)][d];
      auto& spans = in_place.emplace_back();
      if (!buckets.resident_spans(d, spans)) {
        spans.clear();
        to_copy += held[static_cast<std::size_t>(me)][d];
      }
    } else if (p != DestinationOwner::kNobody) {
      send_counts[static_cast<std::size_t>(p)] += held[static_cast<std::size_t>(me)][d] * sizeof(Entry);
    }
  }
  std::vector<std::uint64_t> cursor(ranks, 0);
  std::uint64_t total = 0;
  for (std::size_t p = 0; p < ranks; ++p) {
    cursor[p] = total;
    total += send_counts[p];
  }
  Bytes send(total);
  out.local.resize(to_copy);
  Status status;
  std::uint64_t local_cursor = 0;
  std::size_t mine = 0;
  for (const auto d : wave) {
    const int p = owner.owner_of(d);
    const std::uint64_t count = held[static_cast<std::size_t>(me)][d];
    if (p == me) ++mine;
    if (p == DestinationOwner::kNobody || count == 0 || !status.ok()) continue;
    if (p == me) {
      if (!in_place[mine - 1].empty()) continue;
      status = buckets.copy_shard(d, out.local.data() + local_cursor);
      local_cursor += count;
    } else {
      auto& at = cursor[static_cast<std::size_t>(p)];
      status = buckets.copy_shard(d, reinterpret_cast<Entry*>(send.data() + at));
      at += count * sizeof(Entry);
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
  out.received = comm.alltoallv(send, send_counts, recv_counts, sizeof(Entry), max_message_bytes);
  Bytes().swap(send);
  stats.rounds += comm.last_exchange_rounds();
  stats.waves += 1;
  stats.entries_received += out.received.size() / sizeof(Entry);

  // Sender p's block holds, for each shard of mine in ascending order,
  // held[p][shard] entries; my own entries are in `local` in the same order.
  // Bytes come from operator new, aligned for Entry.
  const auto* received = reinterpret_cast<const Entry*>(out.received.data());
  std::vector<std::uint64_t> from(ranks, 0);
  std::uint64_t start = 0;
  for (std::size_t p = 0; p < ranks; ++p) {
    from[p] = start;
    start += recv_counts[p] / sizeof(Entry);
  }
  local_cursor = 0;
  for (std::size_t k = 0; k < out.shards.size(); ++k) {
    const auto d = out.shards[k];
    auto& parts = out.parts.emplace_back();
    std::uint64_t count = 0;
    for (std::size_t p = 0; p < ranks; ++p) {
      const std::uint64_t n = held[p][d];
      count += n;
      if (n == 0) continue;
      if (static_cast<int>(p) == me && !in_place[k].empty()) {
        parts.insert(parts.end(), in_place[k].begin(), in_place[k].end());
      } else if (static_cast<int>(p) == me) {
        parts.emplace_back(out.local.data() + local_cursor, n);
        local_cursor += n;
      } else {
        parts.emplace_back(received + from[p], n);
        from[p] += n;
      }
    }
    out.entry_counts.push_back(count);
  }
  return out;
}

}  // namespace reshard

#include "reshard/pipeline/exchange.hpp"

#include <cstring>

#include "reshard/fault.hpp"

namespace reshard {

std::vector<Entry> exchange(Comm& comm, Buckets& buckets, const DestinationOwner& owner,
                            std::uint64_t max_message_bytes, ExchangeStats& stats) {
  const auto ranks = static_cast<std::size_t>(comm.size());
  const int me = comm.rank();
  std::vector<std::uint64_t> send_counts(ranks, 0);
  std::size_t kept = 0;
  for (std::size_t d = 0; d < buckets.by_shard.size(); ++d) {
    const int p = owner.owner_of(d);
    if (buckets.by_shard[d].empty() || p == DestinationOwner::kNobody) continue;
    if (p == me)
      kept += buckets.by_shard[d].size();
    else
      send_counts[static_cast<std::size_t>(p)] += buckets.by_shard[d].size() * sizeof(Entry);
  }
  std::vector<std::uint64_t> offsets(ranks, 0);
  std::uint64_t total = 0;
  for (std::size_t p = 0; p < ranks; ++p) {
    offsets[p] = total;
    total += send_counts[p];
  }
  // Entries of shards owned here are moved, never sent.
  Bytes send(total);
  std::vector<Entry> entries;
  entries.reserve(kept);
  for (std::size_t d = 0; d < buckets.by_shard.size(); ++d) {
    auto& bucket = buckets.by_shard[d];
    const int p = owner.owner_of(d);
    if (!bucket.empty() && p == me) {
      entries.insert(entries.end(), bucket.begin(), bucket.end());
    } else if (!bucket.empty() && p != DestinationOwner::kNobody) {
      const auto pu = static_cast<std::size_t>(p);
      std::memcpy(send.data() + offsets[pu], bucket.data(), bucket.size() * sizeof(Entry));
      offsets[pu] += bucket.size() * sizeof(Entry);
    }
    std::vector<Entry>().swap(bucket);
  }
  stats.entries_sent = total / sizeof(Entry);
  stats.bytes_sent = total;
  stats.entries_kept_local = entries.size();
  std::vector<std::uint64_t> recv_counts;
  fault::point("mid-exchange");
  Bytes received = comm.alltoallv(send, send_counts, recv_counts, sizeof(Entry), max_message_bytes);
  Bytes().swap(send);
  stats.rounds = comm.last_exchange_rounds();
  stats.entries_received = received.size() / sizeof(Entry);
  const std::size_t local = entries.size();
  entries.resize(local + stats.entries_received);
  if (!received.empty()) std::memcpy(entries.data() + local, received.data(), received.size());
  return entries;
}

}  // namespace reshard

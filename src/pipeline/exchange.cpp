#include "reshard/pipeline/exchange.hpp"

#include <cstring>

#include "reshard/fault.hpp"

namespace reshard {

std::vector<Entry> exchange(Comm& comm, Buckets& buckets, std::uint64_t max_message_bytes, ExchangeStats& stats) {
  const auto ranks = static_cast<std::size_t>(comm.size());
  const auto me = static_cast<std::size_t>(comm.rank());
  std::vector<std::uint64_t> send_counts(ranks, 0);
  std::uint64_t total = 0;
  for (std::size_t p = 0; p < ranks; ++p) {
    send_counts[p] = p == me ? 0 : buckets.by_rank[p].size() * sizeof(Entry);
    total += send_counts[p];
  }
  Bytes send(total);
  std::uint64_t offset = 0;
  for (std::size_t p = 0; p < ranks; ++p) {
    if (p == me) continue;
    std::memcpy(send.data() + offset, buckets.by_rank[p].data(), send_counts[p]);
    offset += send_counts[p];
    std::vector<Entry>().swap(buckets.by_rank[p]);
  }
  stats.entries_sent = total / sizeof(Entry);
  stats.bytes_sent = total;
  std::vector<std::uint64_t> recv_counts;
  fault::point("mid-exchange");
  Bytes received = comm.alltoallv(send, send_counts, recv_counts, sizeof(Entry), max_message_bytes);
  Bytes().swap(send);
  stats.rounds = comm.last_exchange_rounds();

  // Entries that stay here are appended to what arrived, never sent.
  std::vector<Entry> entries = std::move(buckets.by_rank[me]);
  stats.entries_kept_local = entries.size();
  stats.entries_received = received.size() / sizeof(Entry);
  const std::size_t kept = entries.size();
  entries.resize(kept + stats.entries_received);
  if (!received.empty()) std::memcpy(entries.data() + kept, received.data(), received.size());
  return entries;
}

}  // namespace reshard

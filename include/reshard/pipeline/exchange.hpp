// Stage 4, exchange: personalized all-to-alls, one per wave of destination
// shards (see memory_budget.hpp), so every rank ends up with exactly the
// entries of the wave's shards it owns. A rank's entries for its own shards
// never touch the network.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "reshard/comm.hpp"
#include "reshard/pipeline/bucket.hpp"
#include "reshard/work_array.hpp"

namespace reshard {

struct ExchangeStats {
  std::uint64_t entries_sent = 0;  // to other ranks
  std::uint64_t bytes_sent = 0;
  std::uint64_t entries_kept_local = 0;
  std::uint64_t entries_received = 0;  // from other ranks
  std::uint64_t rounds = 0;
  std::uint64_t waves = 0;
};

// What a rank holds after one wave: for each shard of the wave it owns (in
// ascending order), its entries as source segments in `received`, `local`
// (its own entries read back from scratch) and the Buckets' blocks still in
// memory, so it must not outlive the Buckets. Each sender also sends the
// (source, count, sorted) of its segments, 24 bytes per segment.
struct WaveEntries {
  std::vector<std::uint64_t> shards;
  std::vector<std::vector<SourceSegment>> parts;  // parallel to `shards`
  ByteArray received;
  WorkArray<Entry> local;
};

// Collective. `held[p][d]` is what rank p holds for shard d (every rank's
// Buckets::held(), gathered), which tells each receiver how to split what it
// gets; `wave` lists the shards to move, ascending.
Result<WaveEntries> exchange_wave(Comm& comm, const Buckets& buckets,
                                  const std::vector<std::vector<std::uint64_t>>& held, const DestinationOwner& owner,
                                  const std::vector<std::uint64_t>& wave, std::uint64_t max_message_bytes,
                                  ExchangeStats& stats);

}  // namespace reshard

// Stage 4, exchange: one personalized all-to-all (in rounds when buckets are
// large) so every rank ends up with exactly the entries of the destination
// shards it owns. A rank's bucket for itself never touches the network.
#pragma once

#include <cstdint>
#include <vector>

#include "reshard/comm.hpp"
#include "reshard/pipeline/bucket.hpp"

namespace reshard {

struct ExchangeStats {
  std::uint64_t entries_sent = 0;  // to other ranks
  std::uint64_t bytes_sent = 0;
  std::uint64_t entries_kept_local = 0;
  std::uint64_t entries_received = 0;  // from other ranks
  std::uint64_t rounds = 0;
};

// Sends each destination shard's bucket to the shard's owner; returns the
// entries of the shards this rank owns. Consumes the buckets.
std::vector<Entry> exchange(Comm& comm, Buckets& buckets, const DestinationOwner& owner,
                            std::uint64_t max_message_bytes, ExchangeStats& stats);

}  // namespace reshard

// Stage 3, bucket: route every entry of a loaded source shard to the rank
// that owns its destination shard, fingerprinting what is routed. Entries of
// shards nobody writes (kept from an earlier run) are dropped.
#pragma once

#include <cstdint>
#include <vector>

#include "reshard/fingerprint.hpp"
#include "reshard/pipeline/entry.hpp"
#include "reshard/pipeline/plan.hpp"
#include "reshard/pipeline/read.hpp"

namespace reshard {

struct Buckets {
  explicit Buckets(int ranks) : by_rank(static_cast<std::size_t>(ranks)) {}
  std::vector<std::vector<Entry>> by_rank;
  Fingerprint routed_fingerprint;
};

void bucket_source(const LoadedSource& source, const ShardMap& destination_map, const DestinationOwner& owner,
                   Buckets& buckets);

}  // namespace reshard

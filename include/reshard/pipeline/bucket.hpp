// Stage 3, bucket: group every entry of a loaded source shard by its
// destination shard, fingerprinting what is kept. Entries of shards that need
// no writing (kept from an earlier run) are dropped.
#pragma once

#include <cstdint>
#include <vector>

#include "reshard/fingerprint.hpp"
#include "reshard/pipeline/entry.hpp"
#include "reshard/pipeline/plan.hpp"
#include "reshard/pipeline/read.hpp"

namespace reshard {

struct Buckets {
  explicit Buckets(std::uint64_t destination_shards) : by_shard(destination_shards) {}
  std::vector<std::vector<Entry>> by_shard;
  Fingerprint routed_fingerprint;
};

// `skip[d]` drops the entries of destination shard d.
void bucket_source(const LoadedSource& source, const ShardMap& destination_map, const std::vector<bool>& skip,
                   Buckets& buckets);

}  // namespace reshard

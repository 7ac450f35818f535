#include "reshard/pipeline/bucket.hpp"

namespace reshard {

void bucket_source(const LoadedSource& source, const ShardMap& destination_map, const std::vector<bool>& skip,
                   Buckets& buckets) {
  const std::uint64_t order_base = source.shard->index << kOrderShardShift;
  Fingerprint fingerprint;
  source.for_each_global_entry([&](std::uint64_t row, std::uint64_t col, std::uint64_t bits, std::uint64_t position) {
    const std::uint64_t shard = destination_map.shard_of(row, col);
    if (skip[shard]) return;
    fingerprint.add(row, col, bits);
    buckets.by_shard[shard].push_back(Entry{row, col, bits, order_base | position});
  });
  buckets.routed_fingerprint.merge(fingerprint);
}

}  // namespace reshard

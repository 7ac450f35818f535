#include "reshard/pipeline/bucket.hpp"

namespace reshard {

void bucket_source(const LoadedSource& source, const ShardMap& destination_map, const DestinationOwner& owner,
                   Buckets& buckets) {
  const std::uint64_t order_base = source.shard->index << kOrderShardShift;
  Fingerprint fingerprint;
  source.for_each_global_entry([&](std::uint64_t row, std::uint64_t col, std::uint64_t bits, std::uint64_t position) {
    const int rank = owner.owner_of(destination_map.shard_of(row, col));
    if (rank == DestinationOwner::kNobody) return;
    fingerprint.add(row, col, bits);
    buckets.by_rank[static_cast<std::size_t>(rank)].push_back(Entry{row, col, bits, order_base | position});
  });
  buckets.routed_fingerprint.merge(fingerprint);
}

}  // namespace reshard

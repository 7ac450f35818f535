// Reuse of unchanged shards: a destination shard whose content is exactly
// one source shard's (the same block, layout, dtypes and compression kind) is
// copied, server-side where the store allows, instead of being bucketed,
// exchanged, sorted and re-encoded. The source is still read and decoded
// once, since its fingerprint is part of the exactly-once check.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "reshard/format/zip.hpp"
#include "reshard/pipeline/plan.hpp"
#include "reshard/pipeline/read.hpp"
#include "reshard/pipeline/write.hpp"
#include "reshard/store/store.hpp"

namespace reshard {

// Per source shard: the destination shard it would be copied to, from what
// planning knows (scheme, header, member names, compression kind). The same
// on every rank.
std::vector<std::optional<std::uint64_t>> find_reuse_candidates(const Plan& plan, const zip::WriteOptions& compression);

// After decoding: whether the arrays are exactly what assembling and encoding
// would write (index dtype as the encoder picks it, indices ascending within
// each row or column). Duplicates pass: they keep their source order either way.
bool decoded_matches_output(const npz::SparseMatrix& matrix);

// A source shard to copy, with what the manifest records for it.
struct ReusedShard {
  const SourceShard* source = nullptr;
  const DestinationShard* destination = nullptr;
  std::uint64_t nnz = 0;
  std::uint32_t crc32c = 0;
  Fingerprint fingerprint;
};

struct CopyOutcome {
  WrittenShard written;
  bool server_side = false;
};

// Copies server-side, or else reads the source again and writes it, after
// checking that its bytes are still the ones that were fingerprinted.
Result<CopyOutcome> copy_reused_shard(Store& source_store, Store& destination_store, const ReusedShard& shard);

}  // namespace reshard

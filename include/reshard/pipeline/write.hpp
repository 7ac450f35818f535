// Stage 6, write: encode an assembled shard and put it atomically.
#pragma once

#include <cstdint>
#include <string>

#include "reshard/fingerprint.hpp"
#include "reshard/format/zip.hpp"
#include "reshard/pipeline/assemble.hpp"
#include "reshard/store/store.hpp"

namespace reshard {

struct WrittenShard {
  std::uint64_t index = 0;
  std::string key;
  std::uint64_t bytes = 0;
  std::uint64_t nnz = 0;
  std::uint32_t crc32c = 0;  // of the whole file
  Fingerprint fingerprint;
};

Result<WrittenShard> write_shard(Store& store, const AssembledShard& shard, const zip::WriteOptions& compression);

}  // namespace reshard

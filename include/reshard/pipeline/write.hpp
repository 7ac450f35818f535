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

// The container follows the key: .h5/.h5ad/.hdf5 keys get an .h5ad (the
// matrix in `hdf5_group`, empty meaning /X; deflate becomes gzip at the same
// level), every other key an .npz.
Result<WrittenShard> write_shard(Store& store, const AssembledShard& shard, const zip::WriteOptions& compression,
                                 const std::string& hdf5_group = "");

}  // namespace reshard

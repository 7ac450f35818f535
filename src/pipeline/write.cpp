#include "reshard/pipeline/write.hpp"

#include "reshard/crc32c.hpp"
#include "reshard/format/npz.hpp"

namespace reshard {

Result<WrittenShard> write_shard(Store& store, const AssembledShard& shard, const zip::WriteOptions& compression) {
  const std::string context = "writing " + store.url(shard.shard->key);
  npz::EncodeInput input;
  input.format = shard.layout == Layout::kCsr ? npz::SparseFormat::kCsr : npz::SparseFormat::kCsc;
  input.nrows = shard.nrows;
  input.ncols = shard.ncols;
  input.indptr = shard.indptr;
  input.indices = shard.indices;
  input.value_dtype = shard.value_dtype;
  input.values = shard.values;
  if (shard.row_ids) input.row_ids = std::span<const std::uint64_t>(*shard.row_ids);
  if (shard.col_ids) input.col_ids = std::span<const std::uint64_t>(*shard.col_ids);
  auto encoded = npz::encode_pieces(input, compression);
  if (!encoded.ok()) return encoded.status().with_context(context);
  RESHARD_RETURN_IF_ERROR(store.write_atomic_pieces(shard.shard->key, encoded->pieces).with_context(context));
  WrittenShard written;
  written.index = shard.shard->index;
  written.key = shard.shard->key;
  written.bytes = encoded->size;
  written.nnz = shard.indices.size();
  for (const ByteView piece : encoded->pieces) written.crc32c = crc32c(piece, written.crc32c);
  written.fingerprint = shard.fingerprint;
  return written;
}

}  // namespace reshard

#include "reshard/pipeline/write.hpp"

#include <algorithm>

#include "reshard/crc32c.hpp"
#include "reshard/format/h5sparse.hpp"
#include "reshard/format/npz.hpp"

namespace reshard {

namespace {

h5sparse::WriteOptions hdf5_options(const AssembledShard& shard, const zip::WriteOptions& compression,
                                    const std::string& hdf5_group) {
  h5sparse::WriteOptions options;
  if (!hdf5_group.empty()) options.group = hdf5_group;
  options.gzip_level = compression.method == zip::Method::kStored ? 0 : std::max(1, compression.level);
  options.first_row = shard.shard->box.row_begin;
  options.first_col = shard.shard->box.col_begin;
  return options;
}

}  // namespace

Result<WrittenShard> write_shard(Store& store, const AssembledShard& shard, const zip::WriteOptions& compression,
                                 const std::string& hdf5_group) {
  const std::string context = "writing " + store.url(shard.shard->key);
  npz::EncodeInput input;
  input.format = shard.layout == Layout::kCsr ? npz::SparseFormat::kCsr : npz::SparseFormat::kCsc;
  input.nrows = shard.nrows;
  input.ncols = shard.ncols;
  input.indptr = shard.indptr_view();
  input.indices = shard.index_view();
  input.value_dtype = shard.value_dtype;
  input.values = shard.values;
  if (shard.row_ids) input.row_ids = std::span<const std::uint64_t>(*shard.row_ids);
  if (shard.col_ids) input.col_ids = std::span<const std::uint64_t>(*shard.col_ids);
  // The file as pieces: an .npz's arrays are not copied into one buffer;
  // an HDF5 image is one buffer already.
  std::vector<ByteView> pieces;
  zip::Archive archive;
  Bytes image;
  if (h5sparse::is_hdf5_key(shard.shard->key)) {
    auto encoded = h5sparse::encode(input, hdf5_options(shard, compression, hdf5_group));
    if (!encoded.ok()) return encoded.status().with_context(context);
    image = std::move(encoded).value();
    pieces = {ByteView(image)};
  } else {
    auto encoded = npz::encode_pieces(input, compression);
    if (!encoded.ok()) return encoded.status().with_context(context);
    archive = std::move(encoded).value();
    pieces = archive.pieces;
  }
  RESHARD_RETURN_IF_ERROR(store.write_atomic_pieces(shard.shard->key, pieces).with_context(context));
  WrittenShard written;
  written.index = shard.shard->index;
  written.key = shard.shard->key;
  written.nnz = shard.nnz();
  for (const ByteView piece : pieces) {
    written.bytes += piece.size();
    written.crc32c = crc32c(piece, written.crc32c);
  }
  written.fingerprint = shard.fingerprint;
  return written;
}

}  // namespace reshard

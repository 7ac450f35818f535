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
  WrittenShard written;
  written.index = shard.shard->index;
  written.key = shard.shard->key;
  written.nnz = shard.nnz();
  // The file goes to the store as it is encoded: an .npz's arrays are never
  // copied into one buffer, and deflated output passes through a few reused
  // buffers; an HDF5 image is one buffer already.
  const auto produce = [&](const ByteSink& sink) -> Status {
    const ByteSink counted = [&](ByteView bytes) {
      written.bytes += bytes.size();
      written.crc32c = crc32c(bytes, written.crc32c);
      return sink(bytes);
    };
    if (h5sparse::is_hdf5_key(shard.shard->key)) {
      RESHARD_ASSIGN_OR_RETURN(const Bytes image,
                               h5sparse::encode(input, hdf5_options(shard, compression, hdf5_group)));
      return counted(image);
    }
    return npz::encode_streamed(input, compression, counted);
  };
  // The arrays' size, about the file's when stored (above it compressed):
  // the POSIX store chooses its write path by it.
  const std::uint64_t expected =
      input.values.size() + input.indices.size() * input.indices.width() + input.indptr.size() * input.indptr.width();
  RESHARD_RETURN_IF_ERROR(store.write_atomic_streamed(shard.shard->key, expected, produce).with_context(context));
  written.fingerprint = shard.fingerprint;
  return written;
}

}  // namespace reshard

// Encoding .h5ad shards: a file image built in memory by HDF5's core driver.
#include <algorithm>
#include <string>
#include <vector>

#include "reshard/format/h5ad_objects.hpp"
#include "reshard/format/h5sparse.hpp"
#include "reshard/format/hdf5_handle.hpp"
#include "reshard/work_array.hpp"

namespace reshard::h5sparse {
namespace {

using hdf5::check;
using hdf5::checked;
using hdf5::Handle;

Status write_dataset(hid_t group, const char* name, hid_t file_type, hid_t memory_type, std::uint64_t length,
                     const void* values, const WriteOptions& options) {
  const std::string what = std::string("dataset '") + name + "'";
  const hsize_t dims[1] = {length};
  RESHARD_ASSIGN_OR_RETURN(Handle space, checked(H5Screate_simple(1, dims, nullptr), H5Sclose, what));
  RESHARD_ASSIGN_OR_RETURN(Handle creation,
                           h5ad::dataset_creation_list(length, options.gzip_level, options.chunk_elements, what));
  RESHARD_ASSIGN_OR_RETURN(
      Handle dataset, checked(H5Dcreate2(group, name, file_type, space.get(), H5P_DEFAULT, creation.get(), H5P_DEFAULT),
                              H5Dclose, "creating " + what));
  if (length == 0) return Status::Ok();
  return check(H5Dwrite(dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), "writing " + what);
}

// obs or var: a dataframe with no columns whose index names each row
// (column) by its global number, as anndata.read_h5ad expects.
Status write_names(hid_t file, const char* path, std::uint64_t count, std::uint64_t first,
                   const std::optional<std::span<const std::uint64_t>>& ids, const WriteOptions& options) {
  RESHARD_ASSIGN_OR_RETURN(Handle group, h5ad::create_names_group(file, path));
  // Fixed-width ASCII, not h5py's variable-length strings: a million names
  // then take a few megabytes that gzip shrinks, instead of tens of
  // megabytes in HDF5's global heap. anndata reads both (asstr()).
  std::uint64_t largest = 0;
  for (std::uint64_t i = 0; i < count; ++i) largest = std::max(largest, ids ? (*ids)[i] : first + i);
  const std::size_t width = h5ad::name_width(largest);
  const std::string packed = h5ad::pack_names(first, count, width, ids);
  RESHARD_ASSIGN_OR_RETURN(Handle type, h5ad::name_type(width));
  RESHARD_RETURN_IF_ERROR(write_dataset(group.get(), "_index", type.get(), type.get(), count, packed.data(), options));
  RESHARD_ASSIGN_OR_RETURN(Handle index, checked(H5Dopen2(group.get(), "_index", H5P_DEFAULT), H5Dclose, "_index"));
  return h5ad::write_encoding(index.get(), {"string-array", "0.2.0"});
}

Status write_indices(hid_t group, const char* name, IndexView values, bool int32, const WriteOptions& options) {
  // Ids and indices are below 2^63 (2^31 when int32 is chosen): their bits
  // are those of the stored signed type, so an array at the stored width is
  // written as it is.
  const std::uint32_t stored_width = int32 ? 4 : 8;
  const hid_t file_type = int32 ? H5T_STD_I32LE : H5T_STD_I64LE;
  const hid_t memory_type = int32 ? H5T_NATIVE_INT32 : H5T_NATIVE_INT64;
  if (values.width() == stored_width) {
    return write_dataset(group, name, file_type, memory_type, values.size(), values.bytes().data(), options);
  }
  ByteArray converted(values.size() * stored_width);
  copy_indices(values, stored_width, converted.data());
  return write_dataset(group, name, file_type, memory_type, values.size(), converted.data(), options);
}

Result<Bytes> encode_locked(const npz::EncodeInput& input, const WriteOptions& options) {
  RESHARD_ASSIGN_OR_RETURN(Handle access, checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "file access list"));
  RESHARD_RETURN_IF_ERROR(check(H5Pset_fapl_core(access.get(), 8 << 20, 0), "core driver"));
  RESHARD_ASSIGN_OR_RETURN(
      Handle file, checked(H5Fcreate("shard.h5ad", H5F_ACC_TRUNC, H5P_DEFAULT, access.get()), H5Fclose, "HDF5 file"));
  {
    RESHARD_ASSIGN_OR_RETURN(Handle root, checked(H5Gopen2(file.get(), "/", H5P_DEFAULT), H5Gclose, "root group"));
    RESHARD_RETURN_IF_ERROR(h5ad::write_encoding(root.get(), {"anndata", "0.1.0"}));
  }
  {
    RESHARD_ASSIGN_OR_RETURN(Handle group, h5ad::create_matrix_group(file.get(), options.group));
    const bool csr = input.format == npz::SparseFormat::kCsr;
    RESHARD_RETURN_IF_ERROR(h5ad::write_matrix_attributes(group.get(), csr, input.nrows, input.ncols));
    const std::uint64_t nnz = input.indices.size();
    RESHARD_ASSIGN_OR_RETURN(h5ad::ValueTypes types, h5ad::value_types(input.value_dtype));
    RESHARD_RETURN_IF_ERROR(
        write_dataset(group.get(), "data", types.file, types.memory, nnz, input.values.data(), options));
    // The index width scipy (and so AnnData) would choose.
    const bool int32 = npz::fits_int32(input.nrows, input.ncols, nnz);
    RESHARD_RETURN_IF_ERROR(write_indices(group.get(), "indices", input.indices, int32, options));
    RESHARD_RETURN_IF_ERROR(write_indices(group.get(), "indptr", input.indptr, int32, options));
    if (input.row_ids) RESHARD_RETURN_IF_ERROR(write_indices(group.get(), "row_ids", *input.row_ids, false, options));
    if (input.col_ids) RESHARD_RETURN_IF_ERROR(write_indices(group.get(), "col_ids", *input.col_ids, false, options));
  }
  RESHARD_RETURN_IF_ERROR(write_names(file.get(), "/obs", input.nrows, options.first_row, input.row_ids, options));
  RESHARD_RETURN_IF_ERROR(write_names(file.get(), "/var", input.ncols, options.first_col, input.col_ids, options));
  RESHARD_RETURN_IF_ERROR(check(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "flushing the HDF5 image"));
  const ssize_t size = H5Fget_file_image(file.get(), nullptr, 0);
  RESHARD_RETURN_IF_ERROR(check(size < 0 ? -1 : 0, "sizing the HDF5 image"));
  Bytes image(static_cast<std::size_t>(size));
  RESHARD_RETURN_IF_ERROR(
      check(H5Fget_file_image(file.get(), image.data(), image.size()) < 0 ? -1 : 0, "copying the HDF5 image"));
  return image;
}

}  // namespace

Result<Bytes> encode(const npz::EncodeInput& input, const WriteOptions& options) {
  std::lock_guard<std::mutex> lock(hdf5::hdf5_lock());
  auto image = encode_locked(input, options);
  // Failing to build an image in memory is not the input's fault.
  if (!image.ok()) return Status::Internal("encoding HDF5: " + image.status().message());
  return image;
}

}  // namespace reshard::h5sparse

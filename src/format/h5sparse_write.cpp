// Encoding .h5ad shards: a file image built in memory by HDF5's core driver.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "reshard/format/h5sparse.hpp"
#include "reshard/format/hdf5_handle.hpp"

namespace reshard::h5sparse {
namespace {

using hdf5::check;
using hdf5::checked;
using hdf5::Handle;

Result<Handle> utf8_string_type() {
  RESHARD_ASSIGN_OR_RETURN(Handle type, checked(H5Tcopy(H5T_C_S1), H5Tclose, "string type"));
  RESHARD_RETURN_IF_ERROR(check(H5Tset_size(type.get(), H5T_VARIABLE), "string type"));
  RESHARD_RETURN_IF_ERROR(check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "string type"));
  return type;
}

// Strings as h5py writes Python str attributes: scalar, variable-length UTF-8.
Status write_string_attribute(hid_t object, const char* name, const std::string& value) {
  const std::string what = std::string("attribute '") + name + "'";
  RESHARD_ASSIGN_OR_RETURN(Handle type, utf8_string_type());
  RESHARD_ASSIGN_OR_RETURN(Handle space, checked(H5Screate(H5S_SCALAR), H5Sclose, what));
  RESHARD_ASSIGN_OR_RETURN(
      Handle attribute,
      checked(H5Acreate2(object, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, what));
  const char* text = value.c_str();
  return check(H5Awrite(attribute.get(), type.get(), &text), what);
}

Status write_array_attribute(hid_t object, const char* name, hid_t file_type, hid_t memory_type,
                             const std::vector<hsize_t>::size_type count, const void* values) {
  const std::string what = std::string("attribute '") + name + "'";
  const hsize_t dims[1] = {count};
  RESHARD_ASSIGN_OR_RETURN(Handle space, checked(H5Screate_simple(1, dims, nullptr), H5Sclose, what));
  RESHARD_ASSIGN_OR_RETURN(
      Handle attribute,
      checked(H5Acreate2(object, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, what));
  // HDF5 refuses a null buffer even for no elements.
  const double none = 0;
  return check(H5Awrite(attribute.get(), memory_type, values != nullptr ? values : &none), what);
}

// Object timestamps off, so that the same shard gives the same bytes.
Result<Handle> untimed_list(hid_t list_class, const std::string& what) {
  RESHARD_ASSIGN_OR_RETURN(Handle list, checked(H5Pcreate(list_class), H5Pclose, what));
  RESHARD_RETURN_IF_ERROR(check(H5Pset_obj_track_times(list.get(), 0), what));
  return list;
}

Result<Handle> create_group(hid_t parent, const std::string& path) {
  RESHARD_ASSIGN_OR_RETURN(Handle links, checked(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "group " + path));
  RESHARD_RETURN_IF_ERROR(check(H5Pset_create_intermediate_group(links.get(), 1), "group " + path));
  RESHARD_ASSIGN_OR_RETURN(Handle creation, untimed_list(H5P_GROUP_CREATE, "group " + path));
  return checked(H5Gcreate2(parent, path.c_str(), links.get(), creation.get(), H5P_DEFAULT), H5Gclose,
                 "creating group " + path);
}

struct Encoding {
  std::string type;
  std::string version;
};

Status write_encoding(hid_t object, const Encoding& encoding) {
  RESHARD_RETURN_IF_ERROR(write_string_attribute(object, "encoding-type", encoding.type));
  return write_string_attribute(object, "encoding-version", encoding.version);
}

Status write_dataset(hid_t group, const char* name, hid_t file_type, hid_t memory_type, std::uint64_t length,
                     const void* values, const WriteOptions& options) {
  const std::string what = std::string("dataset '") + name + "'";
  const hsize_t dims[1] = {length};
  RESHARD_ASSIGN_OR_RETURN(Handle space, checked(H5Screate_simple(1, dims, nullptr), H5Sclose, what));
  RESHARD_ASSIGN_OR_RETURN(Handle creation, untimed_list(H5P_DATASET_CREATE, what));
  // Filters need chunks, and chunks need a non-empty dataset.
  if (options.gzip_level > 0 && length > 0) {
    const hsize_t chunk[1] = {std::min<hsize_t>(length, options.chunk_elements)};
    RESHARD_RETURN_IF_ERROR(check(H5Pset_chunk(creation.get(), 1, chunk), what));
    RESHARD_RETURN_IF_ERROR(check(H5Pset_deflate(creation.get(), static_cast<unsigned>(options.gzip_level)), what));
  }
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
  RESHARD_ASSIGN_OR_RETURN(Handle group, create_group(file, path));
  RESHARD_RETURN_IF_ERROR(write_string_attribute(group.get(), "_index", "_index"));
  RESHARD_RETURN_IF_ERROR(
      write_array_attribute(group.get(), "column-order", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, nullptr));
  RESHARD_RETURN_IF_ERROR(write_encoding(group.get(), {"dataframe", "0.2.0"}));
  // Fixed-width ASCII, not h5py's variable-length strings: a million names
  // then take a few megabytes that gzip shrinks, instead of tens of
  // megabytes in HDF5's global heap. anndata reads both (asstr()).
  std::vector<std::uint64_t> numbers(count);
  std::uint64_t largest = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    numbers[i] = ids ? (*ids)[i] : first + i;
    largest = std::max(largest, numbers[i]);
  }
  const std::size_t width = std::to_string(largest).size();
  std::string packed(count * width, '\0');
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::string text = std::to_string(numbers[i]);
    std::memcpy(packed.data() + i * width, text.data(), text.size());
  }
  RESHARD_ASSIGN_OR_RETURN(Handle type, checked(H5Tcopy(H5T_C_S1), H5Tclose, "name type"));
  RESHARD_RETURN_IF_ERROR(check(H5Tset_size(type.get(), width), "name type"));
  RESHARD_RETURN_IF_ERROR(check(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "name type"));
  RESHARD_RETURN_IF_ERROR(write_dataset(group.get(), "_index", type.get(), type.get(), count, packed.data(), options));
  RESHARD_ASSIGN_OR_RETURN(Handle index, checked(H5Dopen2(group.get(), "_index", H5P_DEFAULT), H5Dclose, "_index"));
  return write_encoding(index.get(), {"string-array", "0.2.0"});
}

Result<hid_t> value_type(const npy::DType& dtype) {
  switch (dtype.kind) {
    case 'f':
      if (dtype.itemsize == 4) return H5T_IEEE_F32LE;
      if (dtype.itemsize == 8) return H5T_IEEE_F64LE;
      break;
    case 'i':
      if (dtype.itemsize == 1) return H5T_STD_I8LE;
      if (dtype.itemsize == 2) return H5T_STD_I16LE;
      if (dtype.itemsize == 4) return H5T_STD_I32LE;
      if (dtype.itemsize == 8) return H5T_STD_I64LE;
      break;
    case 'u':
      if (dtype.itemsize == 1) return H5T_STD_U8LE;
      if (dtype.itemsize == 2) return H5T_STD_U16LE;
      if (dtype.itemsize == 4) return H5T_STD_U32LE;
      if (dtype.itemsize == 8) return H5T_STD_U64LE;
      break;
    default: break;
  }
  return Status::Invalid("values of dtype " + dtype.name() + " cannot be written to HDF5");
}

// h5py's bool: an enum over int8 with FALSE = 0 and TRUE = 1.
Result<Handle> bool_type() {
  RESHARD_ASSIGN_OR_RETURN(Handle type, checked(H5Tenum_create(H5T_NATIVE_INT8), H5Tclose, "bool type"));
  const std::int8_t no = 0;
  const std::int8_t yes = 1;
  RESHARD_RETURN_IF_ERROR(check(H5Tenum_insert(type.get(), "FALSE", &no), "bool type"));
  RESHARD_RETURN_IF_ERROR(check(H5Tenum_insert(type.get(), "TRUE", &yes), "bool type"));
  return type;
}

template <typename Index>
std::vector<Index> narrowed(std::span<const std::uint64_t> values) {
  return std::vector<Index>(values.begin(), values.end());
}

Status write_indices(hid_t group, const char* name, std::span<const std::uint64_t> values, bool int32,
                     const WriteOptions& options) {
  if (int32) {
    const auto narrow = narrowed<std::int32_t>(values);
    return write_dataset(group, name, H5T_STD_I32LE, H5T_NATIVE_INT32, narrow.size(), narrow.data(), options);
  }
  // Ids and indices are below 2^63: their bits are the same as int64.
  return write_dataset(group, name, H5T_STD_I64LE, H5T_NATIVE_UINT64, values.size(), values.data(), options);
}

Result<Bytes> encode_locked(const npz::EncodeInput& input, const WriteOptions& options) {
  RESHARD_ASSIGN_OR_RETURN(Handle access, checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "file access list"));
  RESHARD_RETURN_IF_ERROR(check(H5Pset_fapl_core(access.get(), 8 << 20, 0), "core driver"));
  RESHARD_ASSIGN_OR_RETURN(
      Handle file, checked(H5Fcreate("shard.h5ad", H5F_ACC_TRUNC, H5P_DEFAULT, access.get()), H5Fclose, "HDF5 file"));
  {
    RESHARD_ASSIGN_OR_RETURN(Handle root, checked(H5Gopen2(file.get(), "/", H5P_DEFAULT), H5Gclose, "root group"));
    RESHARD_RETURN_IF_ERROR(write_encoding(root.get(), {"anndata", "0.1.0"}));
  }
  {
    RESHARD_ASSIGN_OR_RETURN(Handle group, create_group(file.get(), options.group));
    const bool csr = input.format == npz::SparseFormat::kCsr;
    RESHARD_RETURN_IF_ERROR(write_encoding(group.get(), {csr ? "csr_matrix" : "csc_matrix", "0.1.0"}));
    const std::int64_t shape[2] = {static_cast<std::int64_t>(input.nrows), static_cast<std::int64_t>(input.ncols)};
    RESHARD_RETURN_IF_ERROR(write_array_attribute(group.get(), "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, shape));
    const std::uint64_t nnz = input.indices.size();
    if (input.value_dtype.kind == 'b') {
      RESHARD_ASSIGN_OR_RETURN(Handle type, bool_type());
      RESHARD_RETURN_IF_ERROR(
          write_dataset(group.get(), "data", type.get(), type.get(), nnz, input.values.data(), options));
    } else {
      RESHARD_ASSIGN_OR_RETURN(hid_t file_type, value_type(input.value_dtype));
      RESHARD_ASSIGN_OR_RETURN(Handle memory,
                               checked(H5Tget_native_type(file_type, H5T_DIR_ASCEND), H5Tclose, "value type"));
      RESHARD_RETURN_IF_ERROR(
          write_dataset(group.get(), "data", file_type, memory.get(), nnz, input.values.data(), options));
    }
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

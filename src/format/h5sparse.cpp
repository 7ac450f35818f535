#include "reshard/format/h5sparse.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>

#include "reshard/format/hdf5_handle.hpp"

namespace reshard::h5sparse {
namespace {

using hdf5::check;
using hdf5::checked;
using hdf5::Handle;

constexpr unsigned char kSignature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

Result<Handle> open_image(ByteView file) {
  if (file.size() < sizeof(kSignature) || std::memcmp(file.data(), kSignature, sizeof(kSignature)) != 0) {
    return Status::Invalid("not an HDF5 file (no HDF5 signature)");
  }
  RESHARD_ASSIGN_OR_RETURN(Handle access, checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "HDF5 file access list"));
  RESHARD_RETURN_IF_ERROR(check(H5Pset_fapl_core(access.get(), 1 << 20, 0), "HDF5 core driver"));
  // The core driver takes a copy of the image.
  RESHARD_RETURN_IF_ERROR(
      check(H5Pset_file_image(access.get(), const_cast<std::uint8_t*>(file.data()), file.size()), "HDF5 file image"));
  return checked(H5Fopen("image.h5", H5F_ACC_RDONLY, access.get()), H5Fclose, "not a readable HDF5 file");
}

// Whether every component of an absolute path exists (H5Lexists needs each).
Result<bool> path_exists(hid_t file, const std::string& path) {
  std::size_t at = 1;
  while (at <= path.size()) {
    const std::size_t next = std::min(path.find('/', at), path.size());
    const std::string prefix = path.substr(0, next);
    const htri_t exists = H5Lexists(file, prefix.c_str(), H5P_DEFAULT);
    RESHARD_RETURN_IF_ERROR(check(exists, "looking up '" + prefix + "'"));
    if (exists == 0) return false;
    at = next + 1;
  }
  return true;
}

Result<std::optional<std::string>> string_attribute(hid_t object, const char* name, const std::string& where) {
  const htri_t exists = H5Aexists(object, name);
  RESHARD_RETURN_IF_ERROR(check(exists, where + ": attribute '" + name + "'"));
  if (exists == 0) return std::optional<std::string>();
  const std::string what = where + ": attribute '" + std::string(name) + "'";
  RESHARD_ASSIGN_OR_RETURN(Handle attribute, checked(H5Aopen(object, name, H5P_DEFAULT), H5Aclose, what));
  RESHARD_ASSIGN_OR_RETURN(Handle type, checked(H5Aget_type(attribute.get()), H5Tclose, what));
  if (H5Tget_class(type.get()) != H5T_STRING) return Status::Invalid(what + " is not a string");
  std::string value;
  if (H5Tis_variable_str(type.get()) > 0) {
    RESHARD_ASSIGN_OR_RETURN(Handle memory, checked(H5Tcopy(H5T_C_S1), H5Tclose, what));
    RESHARD_RETURN_IF_ERROR(check(H5Tset_size(memory.get(), H5T_VARIABLE), what));
    RESHARD_RETURN_IF_ERROR(check(H5Tset_cset(memory.get(), H5Tget_cset(type.get())), what));
    char* text = nullptr;
    RESHARD_RETURN_IF_ERROR(check(H5Aread(attribute.get(), memory.get(), &text), what));
    if (text != nullptr) value = text;
    H5free_memory(text);
  } else {
    value.assign(H5Tget_size(type.get()), '\0');
    RESHARD_RETURN_IF_ERROR(check(H5Aread(attribute.get(), type.get(), value.data()), what));
    value.resize(std::strlen(value.c_str()));
  }
  return std::optional<std::string>(value);
}

// Reads every element of a small integer attribute or dataset as int64.
Result<std::vector<std::int64_t>> read_integers(hid_t object, bool attribute, const std::string& what) {
  Handle space;
  Handle type;
  if (attribute) {
    RESHARD_ASSIGN_OR_RETURN(space, checked(H5Aget_space(object), H5Sclose, what));
    RESHARD_ASSIGN_OR_RETURN(type, checked(H5Aget_type(object), H5Tclose, what));
  } else {
    RESHARD_ASSIGN_OR_RETURN(space, checked(H5Dget_space(object), H5Sclose, what));
    RESHARD_ASSIGN_OR_RETURN(type, checked(H5Dget_type(object), H5Tclose, what));
  }
  if (H5Tget_class(type.get()) != H5T_INTEGER) return Status::Invalid(what + " is not an integer array");
  const hssize_t count = H5Sget_simple_extent_npoints(space.get());
  if (count < 0 || count > 16) return Status::Invalid(what + " has " + std::to_string(count) + " elements");
  std::vector<std::int64_t> values(static_cast<std::size_t>(count));
  if (attribute) {
    RESHARD_RETURN_IF_ERROR(check(H5Aread(object, H5T_NATIVE_INT64, values.data()), what));
  } else {
    RESHARD_RETURN_IF_ERROR(
        check(H5Dread(object, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), what));
  }
  return values;
}

Result<std::pair<std::uint64_t, std::uint64_t>> shape_of(const std::vector<std::int64_t>& values,
                                                         const std::string& what) {
  if (values.size() != 2 || values[0] < 0 || values[1] < 0) {
    return Status::Invalid(what + " is not two non-negative integers");
  }
  return std::pair{static_cast<std::uint64_t>(values[0]), static_cast<std::uint64_t>(values[1])};
}

// The numpy dtype of a dataset's HDF5 type; h5py stores bool as an enum.
Result<npy::DType> dtype_of(hid_t type, const std::string& what) {
  const std::size_t size = H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      if (size == 1 || size == 2 || size == 4 || size == 8) {
        return npy::DType{H5Tget_sign(type) == H5T_SGN_NONE ? 'u' : 'i', static_cast<std::uint32_t>(size)};
      }
      break;
    case H5T_FLOAT:
      if (size == 4 || size == 8) return npy::DType{'f', static_cast<std::uint32_t>(size)};
      break;
    case H5T_ENUM:
      if (size == 1 && H5Tget_nmembers(type) == 2) return npy::DType{'b', 1};
      break;
    default: break;
  }
  return Status::Invalid(what + " has an unsupported type (" + std::to_string(size) + "-byte, HDF5 class " +
                         std::to_string(static_cast<int>(H5Tget_class(type))) + ")");
}

struct MatrixGroup {
  Handle group;
  std::string path;
  npz::ShapeAndFormat shape_and_format;
};

Result<MatrixGroup> open_matrix_group(hid_t file, const std::string& requested) {
  MatrixGroup out;
  out.path = requested.empty() ? kDefaultGroup : requested;
  if (out.path.front() != '/') out.path = "/" + out.path;
  RESHARD_ASSIGN_OR_RETURN(bool exists, path_exists(file, out.path));
  if (!exists && requested.empty()) {
    RESHARD_ASSIGN_OR_RETURN(bool tenx, path_exists(file, "/matrix"));
    if (tenx) {
      out.path = "/matrix";
      exists = true;
    }
  }
  if (!exists) {
    return Status::Invalid("no group '" + out.path + "'" + (requested.empty() ? " (nor a 10x '/matrix')" : ""));
  }
  RESHARD_ASSIGN_OR_RETURN(out.group, checked(H5Gopen2(file, out.path.c_str(), H5P_DEFAULT), H5Gclose,
                                              "'" + out.path + "' is not a group (a dense matrix?)"));
  const hid_t group = out.group.get();
  const std::string& where = out.path;
  auto& shape = out.shape_and_format;
  RESHARD_ASSIGN_OR_RETURN(auto encoding, string_attribute(group, "encoding-type", where));
  RESHARD_ASSIGN_OR_RETURN(auto legacy, string_attribute(group, "h5sparse_format", where));
  std::string shape_attribute = "shape";
  if (encoding || legacy) {
    const std::string kind = encoding ? *encoding : *legacy + "_matrix";
    if (kind == "csr_matrix") {
      shape.format = npz::SparseFormat::kCsr;
    } else if (kind == "csc_matrix") {
      shape.format = npz::SparseFormat::kCsc;
    } else {
      return Status::Invalid(where + ": encoding-type '" + kind +
                             "' is not a sparse matrix (csr_matrix or csc_matrix)");
    }
    if (!encoding) shape_attribute = "h5sparse_shape";
    const std::string what = where + ": attribute '" + shape_attribute + "'";
    const htri_t has_shape = H5Aexists(group, shape_attribute.c_str());
    RESHARD_RETURN_IF_ERROR(check(has_shape, what));
    if (has_shape == 0) return Status::Invalid(where + ": no '" + shape_attribute + "' attribute");
    RESHARD_ASSIGN_OR_RETURN(Handle attribute,
                             checked(H5Aopen(group, shape_attribute.c_str(), H5P_DEFAULT), H5Aclose, what));
    RESHARD_ASSIGN_OR_RETURN(auto values, read_integers(attribute.get(), true, what));
    RESHARD_ASSIGN_OR_RETURN(auto extents, shape_of(values, what));
    shape.nrows = extents.first;
    shape.ncols = extents.second;
    return out;
  }
  // 10x Genomics: no attributes, a `shape` dataset, CSC of features x barcodes.
  RESHARD_ASSIGN_OR_RETURN(bool has_shape_dataset, path_exists(file, where + "/shape"));
  if (!has_shape_dataset) {
    return Status::Invalid(where + ": no 'encoding-type' attribute (not an AnnData sparse matrix)");
  }
  const std::string what = "dataset '" + where + "/shape'";
  RESHARD_ASSIGN_OR_RETURN(Handle dataset, checked(H5Dopen2(group, "shape", H5P_DEFAULT), H5Dclose, what));
  RESHARD_ASSIGN_OR_RETURN(auto values, read_integers(dataset.get(), false, what));
  RESHARD_ASSIGN_OR_RETURN(auto extents, shape_of(values, what));
  shape.format = npz::SparseFormat::kCsc;
  shape.nrows = extents.first;
  shape.ncols = extents.second;
  return out;
}

constexpr const char* kArrayNames[] = {"data", "indices", "indptr", "row_ids", "col_ids"};

struct DatasetInfo {
  Handle dataset;
  Handle type;
  npy::DType dtype;
  std::uint64_t length = 0;
  bool filtered = false;
};

Result<DatasetInfo> inspect_dataset(const MatrixGroup& matrix, const char* name) {
  const std::string what = "dataset '" + matrix.path + "/" + name + "'";
  DatasetInfo info;
  RESHARD_ASSIGN_OR_RETURN(info.dataset, checked(H5Dopen2(matrix.group.get(), name, H5P_DEFAULT), H5Dclose, what));
  RESHARD_ASSIGN_OR_RETURN(Handle space, checked(H5Dget_space(info.dataset.get()), H5Sclose, what));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank != 1) return Status::Invalid(what + " has rank " + std::to_string(rank) + ", not 1");
  hsize_t length = 0;
  RESHARD_RETURN_IF_ERROR(check(H5Sget_simple_extent_dims(space.get(), &length, nullptr), what));
  info.length = length;
  RESHARD_ASSIGN_OR_RETURN(info.type, checked(H5Dget_type(info.dataset.get()), H5Tclose, what));
  RESHARD_ASSIGN_OR_RETURN(info.dtype, dtype_of(info.type.get(), what));
  RESHARD_ASSIGN_OR_RETURN(Handle creation, checked(H5Dget_create_plist(info.dataset.get()), H5Pclose, what));
  info.filtered = H5Pget_nfilters(creation.get()) > 0;
  return info;
}

// The datasets of the matrix group that hold arrays, with their sizes.
Result<std::vector<std::pair<std::string, DatasetInfo>>> inspect_arrays(hid_t file, const MatrixGroup& matrix) {
  std::vector<std::pair<std::string, DatasetInfo>> out;
  for (const char* name : kArrayNames) {
    RESHARD_ASSIGN_OR_RETURN(bool exists, path_exists(file, matrix.path + "/" + name));
    if (!exists) {
      if (std::strcmp(name, "row_ids") == 0 || std::strcmp(name, "col_ids") == 0) continue;
      return Status::Invalid("no dataset '" + matrix.path + "/" + name + "'");
    }
    RESHARD_ASSIGN_OR_RETURN(DatasetInfo info, inspect_dataset(matrix, name));
    out.emplace_back(name, std::move(info));
  }
  return out;
}

}  // namespace

bool is_hdf5_key(std::string_view key) {
  return key.ends_with(".h5") || key.ends_with(".h5ad") || key.ends_with(".hdf5");
}

namespace {

Result<Summary> summarize_open(hid_t file, const std::string& group, std::uint64_t held_bytes) {
  RESHARD_ASSIGN_OR_RETURN(MatrixGroup matrix, open_matrix_group(file, group));
  RESHARD_ASSIGN_OR_RETURN(auto arrays, inspect_arrays(file, matrix));
  Summary out;
  out.shape_and_format = matrix.shape_and_format;
  out.group = matrix.path;
  out.decoded_bytes = held_bytes;
  for (const auto& [name, info] : arrays) {
    out.datasets.push_back(name);
    out.decoded_bytes += info.length * info.dtype.itemsize;
    out.compressed = out.compressed || info.filtered;
    if (name == "data") {
      out.nnz = info.length;
      out.value_itemsize = info.dtype.itemsize;
    }
    if (name == "indices") out.index_itemsize = info.dtype.itemsize;
    if (name == "indptr") out.indptr_itemsize = info.dtype.itemsize;
  }
  std::sort(out.datasets.begin(), out.datasets.end());
  return out;
}

Result<Handle> open_path(const std::string& path) {
  char head[sizeof(kSignature)] = {};
  std::ifstream(path, std::ios::binary).read(head, sizeof(head));
  if (std::memcmp(head, kSignature, sizeof(kSignature)) != 0) {
    return Status::Invalid("not an HDF5 file (no HDF5 signature)");
  }
  return checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, "not a readable HDF5 file");
}

// Elements [begin, end) of a 1-D dataset in memory type `memory`.
Status read_range(hid_t dataset, hid_t memory, std::uint64_t begin, std::uint64_t end, void* out,
                  const std::string& what) {
  if (end <= begin) return Status::Ok();
  RESHARD_ASSIGN_OR_RETURN(Handle file_space, checked(H5Dget_space(dataset), H5Sclose, what));
  const hsize_t start[1] = {begin};
  const hsize_t count[1] = {end - begin};
  RESHARD_RETURN_IF_ERROR(
      check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), what));
  RESHARD_ASSIGN_OR_RETURN(Handle memory_space, checked(H5Screate_simple(1, count, nullptr), H5Sclose, what));
  return check(H5Dread(dataset, memory, memory_space.get(), file_space.get(), H5P_DEFAULT, out), what);
}

}  // namespace

Result<Summary> summarize(ByteView file, const std::string& group) {
  std::lock_guard<std::mutex> lock(hdf5::hdf5_lock());
  RESHARD_ASSIGN_OR_RETURN(Handle opened, open_image(file));
  // Decoding holds the core driver's copy of the file and the arrays.
  return summarize_open(opened.get(), group, file.size());
}

Result<Summary> summarize_file(const std::string& path, const std::string& group) {
  std::lock_guard<std::mutex> lock(hdf5::hdf5_lock());
  RESHARD_ASSIGN_OR_RETURN(Handle opened, open_path(path));
  return summarize_open(opened.get(), group, 0);
}

Result<std::vector<std::uint64_t>> indptr_at(const std::string& path, const std::string& group,
                                             const std::vector<std::uint64_t>& positions) {
  std::lock_guard<std::mutex> lock(hdf5::hdf5_lock());
  RESHARD_ASSIGN_OR_RETURN(Handle opened, open_path(path));
  RESHARD_ASSIGN_OR_RETURN(MatrixGroup matrix, open_matrix_group(opened.get(), group));
  RESHARD_ASSIGN_OR_RETURN(DatasetInfo indptr, inspect_dataset(matrix, "indptr"));
  std::vector<std::uint64_t> out;
  out.reserve(positions.size());
  for (const std::uint64_t position : positions) {
    if (position >= indptr.length) {
      return Status::Invalid("dataset '" + matrix.path + "/indptr' has " + std::to_string(indptr.length) +
                             " elements, not " + std::to_string(position + 1));
    }
    std::int64_t value = 0;
    RESHARD_RETURN_IF_ERROR(read_range(indptr.dataset.get(), H5T_NATIVE_INT64, position, position + 1, &value,
                                       "dataset '" + matrix.path + "/indptr'"));
    if (value < 0) return Status::Invalid("dataset '" + matrix.path + "/indptr' holds a negative offset");
    out.push_back(static_cast<std::uint64_t>(value));
  }
  return out;
}

Result<npz::DecodedShard> read_major_range(const std::string& path, const std::string& group, std::uint64_t begin,
                                           std::uint64_t end, int threads) {
  std::lock_guard<std::mutex> lock(hdf5::hdf5_lock());
  RESHARD_ASSIGN_OR_RETURN(Handle opened, open_path(path));
  RESHARD_ASSIGN_OR_RETURN(MatrixGroup matrix, open_matrix_group(opened.get(), group));
  auto shape = matrix.shape_and_format;
  const bool csr = shape.format == npz::SparseFormat::kCsr;
  const std::uint64_t nmajor = csr ? shape.nrows : shape.ncols;
  if (begin > end || end > nmajor) {
    return Status::Invalid(matrix.path + ": range " + std::to_string(begin) + ".." + std::to_string(end) + " outside " +
                           std::to_string(nmajor) + (csr ? " rows" : " columns"));
  }
  npz::DecodedShard shard;
  shard.buffers.reserve(3);
  std::map<std::string, npy::ArrayView> arrays;
  // indptr[begin..end], rebased to start at 0, as int64.
  RESHARD_ASSIGN_OR_RETURN(DatasetInfo indptr_info, inspect_dataset(matrix, "indptr"));
  if (indptr_info.length != nmajor + 1) {
    return Status::Invalid(matrix.path + ": indptr length " + std::to_string(indptr_info.length) + " does not match " +
                           std::to_string(nmajor) + (csr ? " rows" : " columns"));
  }
  Bytes& indptr_bytes = shard.buffers.emplace_back((end - begin + 1) * 8);
  auto* indptr = reinterpret_cast<std::int64_t*>(indptr_bytes.data());
  RESHARD_RETURN_IF_ERROR(read_range(indptr_info.dataset.get(), H5T_NATIVE_INT64, begin, end + 1, indptr,
                                     "dataset '" + matrix.path + "/indptr'"));
  const std::int64_t first = indptr[0];
  const std::int64_t last = indptr[end - begin];
  if (first < 0 || last < first) return Status::Invalid(matrix.path + ": indptr decreases or is negative");
  for (std::uint64_t i = 0; i <= end - begin; ++i) indptr[i] -= first;
  arrays["indptr"] = npy::ArrayView{npy::int64_dtype(), {end - begin + 1}, ByteView(indptr_bytes)};
  for (const char* name : {"indices", "data"}) {
    const std::string what = "dataset '" + matrix.path + "/" + name + "'";
    RESHARD_ASSIGN_OR_RETURN(DatasetInfo info, inspect_dataset(matrix, name));
    if (static_cast<std::uint64_t>(last) > info.length) {
      return Status::Invalid(what + " has " + std::to_string(info.length) + " elements, indptr says " +
                             std::to_string(last));
    }
    const std::uint64_t count = static_cast<std::uint64_t>(last - first);
    Bytes& buffer = shard.buffers.emplace_back(count * info.dtype.itemsize);
    RESHARD_ASSIGN_OR_RETURN(Handle memory,
                             checked(H5Tget_native_type(info.type.get(), H5T_DIR_ASCEND), H5Tclose, what));
    RESHARD_RETURN_IF_ERROR(read_range(info.dataset.get(), memory.get(), static_cast<std::uint64_t>(first),
                                       static_cast<std::uint64_t>(last), buffer.data(), what));
    arrays[name] = npy::ArrayView{info.dtype, {count}, ByteView(buffer)};
  }
  (csr ? shape.nrows : shape.ncols) = end - begin;
  auto built = npz::matrix_from_arrays(shape.format, shape.nrows, shape.ncols, arrays, threads);
  if (!built.ok()) return built.status().with_context(matrix.path);
  shard.matrix = std::move(built).value();
  return shard;
}

Result<npz::DecodedShard> decode(ByteView file, const std::string& group, int threads) {
  std::lock_guard<std::mutex> lock(hdf5::hdf5_lock());
  RESHARD_ASSIGN_OR_RETURN(Handle opened, open_image(file));
  RESHARD_ASSIGN_OR_RETURN(MatrixGroup matrix, open_matrix_group(opened.get(), group));
  RESHARD_ASSIGN_OR_RETURN(auto datasets, inspect_arrays(opened.get(), matrix));
  npz::DecodedShard shard;
  shard.buffers.reserve(datasets.size());
  std::map<std::string, npy::ArrayView> arrays;
  for (auto& [name, info] : datasets) {
    const std::string what = "dataset '" + matrix.path + "/" + name + "'";
    Bytes& buffer = shard.buffers.emplace_back(info.length * info.dtype.itemsize);
    if (info.length > 0) {
      RESHARD_ASSIGN_OR_RETURN(Handle memory,
                               checked(H5Tget_native_type(info.type.get(), H5T_DIR_ASCEND), H5Tclose, what));
      RESHARD_RETURN_IF_ERROR(
          check(H5Dread(info.dataset.get(), memory.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data()), what));
    }
    arrays[name] = npy::ArrayView{info.dtype, {info.length}, ByteView(buffer)};
  }
  const auto& shape = matrix.shape_and_format;
  auto built = npz::matrix_from_arrays(shape.format, shape.nrows, shape.ncols, arrays, threads);
  if (!built.ok()) return built.status().with_context(matrix.path);
  shard.matrix = std::move(built).value();
  return shard;
}

}  // namespace reshard::h5sparse

#include "reshard/format/h5ad_objects.hpp"

#include <algorithm>
#include <cstring>

namespace reshard::h5ad {

using hdf5::check;
using hdf5::checked;
using hdf5::Handle;

namespace {

Result<Handle> utf8_string_type() {
  RESHARD_ASSIGN_OR_RETURN(Handle type, checked(H5Tcopy(H5T_C_S1), H5Tclose, "string type"));
  RESHARD_RETURN_IF_ERROR(check(H5Tset_size(type.get(), H5T_VARIABLE), "string type"));
  RESHARD_RETURN_IF_ERROR(check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "string type"));
  return type;
}

Result<hid_t> numeric_type(const npy::DType& dtype) {
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

// Object timestamps off, so that the same content gives the same bytes.
Result<Handle> untimed_list(hid_t list_class, const std::string& what) {
  RESHARD_ASSIGN_OR_RETURN(Handle list, checked(H5Pcreate(list_class), H5Pclose, what));
  RESHARD_RETURN_IF_ERROR(check(H5Pset_obj_track_times(list.get(), 0), what));
  return list;
}

}  // namespace

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

Status write_array_attribute(hid_t object, const char* name, hid_t file_type, hid_t memory_type, std::uint64_t count,
                             const void* values) {
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

Status write_encoding(hid_t object, const Encoding& encoding) {
  RESHARD_RETURN_IF_ERROR(write_string_attribute(object, "encoding-type", encoding.type));
  return write_string_attribute(object, "encoding-version", encoding.version);
}

Result<Handle> dataset_creation_list(std::uint64_t length, int gzip_level, std::uint64_t chunk_elements,
                                     const std::string& what) {
  RESHARD_ASSIGN_OR_RETURN(Handle creation, untimed_list(H5P_DATASET_CREATE, what));
  if (gzip_level > 0 && length > 0) {
    const hsize_t chunk[1] = {std::min<hsize_t>(length, chunk_elements)};
    RESHARD_RETURN_IF_ERROR(check(H5Pset_chunk(creation.get(), 1, chunk), what));
    RESHARD_RETURN_IF_ERROR(check(H5Pset_deflate(creation.get(), static_cast<unsigned>(gzip_level)), what));
  }
  return creation;
}

Result<Handle> create_group(hid_t parent, const std::string& path) {
  RESHARD_ASSIGN_OR_RETURN(Handle links, checked(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "group " + path));
  RESHARD_RETURN_IF_ERROR(check(H5Pset_create_intermediate_group(links.get(), 1), "group " + path));
  RESHARD_ASSIGN_OR_RETURN(Handle creation, untimed_list(H5P_GROUP_CREATE, "group " + path));
  return checked(H5Gcreate2(parent, path.c_str(), links.get(), creation.get(), H5P_DEFAULT), H5Gclose,
                 "creating group " + path);
}

Result<Handle> create_matrix_group(hid_t file, const std::string& path) {
  // anndata reads a group without encoding attributes with a warning
  // (OldFormatWarning): parents such as /layers are dicts.
  for (std::size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    const std::string parent = path.substr(0, slash);
    const htri_t exists = H5Lexists(file, parent.c_str(), H5P_DEFAULT);
    RESHARD_RETURN_IF_ERROR(check(exists, "group " + parent));
    if (exists > 0) continue;
    RESHARD_ASSIGN_OR_RETURN(Handle group, create_group(file, parent));
    RESHARD_RETURN_IF_ERROR(write_encoding(group.get(), {"dict", "0.1.0"}));
  }
  return create_group(file, path);
}

Status write_matrix_attributes(hid_t group, bool csr, std::uint64_t nrows, std::uint64_t ncols) {
  RESHARD_RETURN_IF_ERROR(write_encoding(group, {csr ? "csr_matrix" : "csc_matrix", "0.1.0"}));
  const std::int64_t shape[2] = {static_cast<std::int64_t>(nrows), static_cast<std::int64_t>(ncols)};
  return write_array_attribute(group, "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, shape);
}

Result<Handle> create_names_group(hid_t file, const char* path) {
  RESHARD_ASSIGN_OR_RETURN(Handle group, create_group(file, path));
  RESHARD_RETURN_IF_ERROR(write_string_attribute(group.get(), "_index", "_index"));
  RESHARD_RETURN_IF_ERROR(
      write_array_attribute(group.get(), "column-order", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, nullptr));
  RESHARD_RETURN_IF_ERROR(write_encoding(group.get(), {"dataframe", "0.2.0"}));
  return group;
}

Result<ValueTypes> value_types(const npy::DType& dtype) {
  ValueTypes types;
  if (dtype.kind == 'b') {
    RESHARD_ASSIGN_OR_RETURN(types.owned, checked(H5Tenum_create(H5T_NATIVE_INT8), H5Tclose, "bool type"));
    const std::int8_t no = 0;
    const std::int8_t yes = 1;
    RESHARD_RETURN_IF_ERROR(check(H5Tenum_insert(types.owned.get(), "FALSE", &no), "bool type"));
    RESHARD_RETURN_IF_ERROR(check(H5Tenum_insert(types.owned.get(), "TRUE", &yes), "bool type"));
    types.file = types.owned.get();
    types.memory = types.owned.get();
    return types;
  }
  RESHARD_ASSIGN_OR_RETURN(types.file, numeric_type(dtype));
  RESHARD_ASSIGN_OR_RETURN(types.owned,
                           checked(H5Tget_native_type(types.file, H5T_DIR_ASCEND), H5Tclose, "value type"));
  types.memory = types.owned.get();
  return types;
}

std::size_t name_width(std::uint64_t largest) { return std::to_string(largest).size(); }

Result<Handle> name_type(std::size_t width) {
  RESHARD_ASSIGN_OR_RETURN(Handle type, checked(H5Tcopy(H5T_C_S1), H5Tclose, "name type"));
  RESHARD_RETURN_IF_ERROR(check(H5Tset_size(type.get(), width), "name type"));
  RESHARD_RETURN_IF_ERROR(check(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "name type"));
  return type;
}

std::string pack_names(std::uint64_t first, std::uint64_t count, std::size_t width,
                       const std::optional<std::span<const std::uint64_t>>& ids) {
  std::string packed(count * width, '\0');
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::string text = std::to_string(ids ? (*ids)[i] : first + i);
    std::memcpy(packed.data() + i * width, text.data(), text.size());
  }
  return packed;
}

}  // namespace reshard::h5ad

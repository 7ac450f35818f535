// The HDF5 objects of a minimal .h5ad, shared by the two writers: a shard's
// file image (h5sparse::encode) and the one file all ranks write together
// (pipeline/one_file_sink). Every call goes through hdf5::checked/check;
// callers hold hdf5::hdf5_lock().
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "reshard/format/hdf5_handle.hpp"
#include "reshard/format/npy.hpp"

namespace reshard::h5ad {

struct Encoding {
  std::string type;
  std::string version;
};

// Strings as h5py writes Python str attributes: scalar, variable-length UTF-8.
Status write_string_attribute(hid_t object, const char* name, const std::string& value);
Status write_array_attribute(hid_t object, const char* name, hid_t file_type, hid_t memory_type, std::uint64_t count,
                             const void* values);
Status write_encoding(hid_t object, const Encoding& encoding);
// The creation list of a 1-D dataset of `length` elements: object
// timestamps off (the same content gives the same bytes); with
// gzip (level > 0), chunks of `chunk_elements` (filters need chunks, and
// chunks need a non-empty dataset).
Result<hdf5::Handle> dataset_creation_list(std::uint64_t length, int gzip_level, std::uint64_t chunk_elements,
                                           const std::string& what);
// Creates `path` and any missing parents.
Result<hdf5::Handle> create_group(hid_t parent, const std::string& path);
// The matrix group at `path` ("/X", "/layers/counts"), its missing parents
// created as anndata dicts.
Result<hdf5::Handle> create_matrix_group(hid_t file, const std::string& path);
// The group's encoding-type/-version and shape attributes.
Status write_matrix_attributes(hid_t group, bool csr, std::uint64_t nrows, std::uint64_t ncols);
// obs or var without its _index dataset: the dataframe group's attributes.
Result<hdf5::Handle> create_names_group(hid_t file, const char* path);

// The file and memory types of a value dtype (h5py's bool is an enum over
// int8 with FALSE = 0 and TRUE = 1).
struct ValueTypes {
  hdf5::Handle owned;  // holds the bool enum when there is one
  hid_t file = H5I_INVALID_HID;
  hid_t memory = H5I_INVALID_HID;
};
Result<ValueTypes> value_types(const npy::DType& dtype);

// obs/var names are the global row (column) numbers as fixed-width ASCII,
// NUL-padded, `width` the digits of the largest one.
std::size_t name_width(std::uint64_t largest);
Result<hdf5::Handle> name_type(std::size_t width);
// Names of rows first..first+count-1, or of ids[...] when given.
std::string pack_names(std::uint64_t first, std::uint64_t count, std::size_t width,
                       const std::optional<std::span<const std::uint64_t>>& ids);

}  // namespace reshard::h5ad

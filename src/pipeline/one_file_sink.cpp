#include "reshard/pipeline/one_file_sink.hpp"

#include <mpi.h>

#include <algorithm>

#include "reshard/crc32c.hpp"
#include "reshard/format/h5ad_objects.hpp"
#include "reshard/format/npz.hpp"
#include "reshard/parallel.hpp"

namespace reshard {

using hdf5::check;
using hdf5::checked;
using hdf5::Handle;

namespace {

// obs/var names written per collective call, so a billion-row index never
// sits in one rank's memory.
constexpr std::uint64_t kNamesPerWrite = 1 << 22;

// Bytes read per call when rank 0 reads the closed file back for its CRC.
constexpr std::uint64_t kReadBackBytes = 8 << 20;

Result<Handle> create_dataset(hid_t group, const char* name, hid_t file_type, std::uint64_t length,
                              const OneFileLayout& layout) {
  const std::string what = std::string("dataset '") + name + "'";
  const hsize_t dims[1] = {length};
  RESHARD_ASSIGN_OR_RETURN(Handle space, checked(H5Screate_simple(1, dims, nullptr), H5Sclose, what));
  RESHARD_ASSIGN_OR_RETURN(Handle creation,
                           h5ad::dataset_creation_list(length, layout.gzip_level, layout.chunk_elements, what));
  // Every element is written, so fill values would only cost a pass.
  RESHARD_RETURN_IF_ERROR(check(H5Pset_fill_time(creation.get(), H5D_FILL_TIME_NEVER), what));
  return checked(H5Dcreate2(group, name, file_type, space.get(), H5P_DEFAULT, creation.get(), H5P_DEFAULT), H5Dclose,
                 "creating " + what);
}

}  // namespace

struct OneFileSink::Open {
  bool int32 = false;
  Handle file;
  Handle group;
  Handle data;
  Handle indices;
  Handle indptr;
  Handle transfer;
  hid_t value_memory_type = H5I_INVALID_HID;
  Handle value_type_owner;

  Status write_slice(hid_t dataset, hid_t memory_type, std::uint64_t first, std::uint64_t count,
                     const void* values) const;
  Status write_names(Comm& comm, const OneFileLayout& layout, const char* path, std::uint64_t count) const;
  // Datasets, groups, then the file: HDF5 closes the file with the last id.
  void close_all() {
    data = Handle();
    indices = Handle();
    indptr = Handle();
    group = Handle();
    value_type_owner = Handle();
    file = Handle();
  }
};

OneFileSink::OneFileSink(Store& store, OneFileLayout layout)
    : store_(store), layout_(std::move(layout)), open_(std::make_unique<Open>()) {}

std::string one_file_temp_path(const std::string& path, const std::string& job_id) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return dir + "." + name + ".tmp." + job_id + ".collective";
}

OneFileSink::~OneFileSink() {
  {
    std::lock_guard<std::mutex> lock(hdf5::hdf5_lock());
    open_->close_all();
  }
  // A job that stops before publishing leaves no half-written file (a
  // killed one leaves the temp file to the next run's clean-up).
  if (owns_temp_file_ && !placed_) (void)store_.remove(layout_.temp_path);
}

Result<std::unique_ptr<OneFileSink>> OneFileSink::create(Comm& comm, Store& store, OneFileLayout layout) {
  std::unique_ptr<OneFileSink> sink(new OneFileSink(store, std::move(layout)));
  const OneFileLayout& l = sink->layout_;
  Open& h5 = *sink->open_;
  const std::string context = "writing " + l.path;
  sink->owns_temp_file_ = comm.rank() == 0;
  std::unique_lock<std::mutex> lock(hdf5::hdf5_lock());
  const auto* communicator = static_cast<const MPI_Comm*>(comm.mpi_communicator());
  Status status = [&]() -> Status {
    RESHARD_ASSIGN_OR_RETURN(Handle access, checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "file access list"));
    RESHARD_ASSIGN_OR_RETURN(h5.transfer, checked(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "transfer list"));
    if (communicator != nullptr) {
      RESHARD_RETURN_IF_ERROR(check(H5Pset_fapl_mpio(access.get(), *communicator, MPI_INFO_NULL), "MPI-IO driver"));
      // Metadata read by one rank and broadcast, written collectively.
      RESHARD_RETURN_IF_ERROR(check(H5Pset_all_coll_metadata_ops(access.get(), true), "collective metadata"));
      RESHARD_RETURN_IF_ERROR(check(H5Pset_coll_metadata_write(access.get(), true), "collective metadata"));
      RESHARD_RETURN_IF_ERROR(check(H5Pset_dxpl_mpio(h5.transfer.get(), H5FD_MPIO_COLLECTIVE), "collective transfers"));
    }
    RESHARD_ASSIGN_OR_RETURN(h5.file, checked(H5Fcreate(l.temp_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get()),
                                              H5Fclose, "creating " + l.temp_path));
    {
      RESHARD_ASSIGN_OR_RETURN(Handle root, checked(H5Gopen2(h5.file.get(), "/", H5P_DEFAULT), H5Gclose, "root group"));
      RESHARD_RETURN_IF_ERROR(h5ad::write_encoding(root.get(), {"anndata", "0.1.0"}));
    }
    RESHARD_ASSIGN_OR_RETURN(h5.group, h5ad::create_matrix_group(h5.file.get(), l.group));
    RESHARD_RETURN_IF_ERROR(h5ad::write_matrix_attributes(h5.group.get(), l.csr, l.nrows, l.ncols));
    const std::uint64_t nnz = l.part_offsets.back();
    const std::uint64_t nmajor = l.csr ? l.nrows : l.ncols;
    RESHARD_ASSIGN_OR_RETURN(h5ad::ValueTypes types, h5ad::value_types(l.value_dtype));
    RESHARD_ASSIGN_OR_RETURN(h5.data, create_dataset(h5.group.get(), "data", types.file, nnz, l));
    h5.value_memory_type = types.memory;
    h5.value_type_owner = std::move(types.owned);
    // The index width scipy (and so AnnData) would choose.
    h5.int32 = npz::fits_int32(l.nrows, l.ncols, nnz);
    const hid_t index_type = h5.int32 ? H5T_STD_I32LE : H5T_STD_I64LE;
    RESHARD_ASSIGN_OR_RETURN(h5.indices, create_dataset(h5.group.get(), "indices", index_type, nnz, l));
    RESHARD_ASSIGN_OR_RETURN(h5.indptr, create_dataset(h5.group.get(), "indptr", index_type, nmajor + 1, l));
    RESHARD_RETURN_IF_ERROR(h5.write_names(comm, l, "/obs", l.nrows));
    return h5.write_names(comm, l, "/var", l.ncols);
  }();
  if (!status.ok()) return status.with_context(context);
  return sink;
}

Status OneFileSink::Open::write_slice(hid_t dataset, hid_t memory_type, std::uint64_t first, std::uint64_t count,
                                      const void* values) const {
  RESHARD_ASSIGN_OR_RETURN(Handle file_space, checked(H5Dget_space(dataset), H5Sclose, "dataspace"));
  const hsize_t start[1] = {first};
  const hsize_t length[1] = {std::max<std::uint64_t>(count, 1)};
  RESHARD_ASSIGN_OR_RETURN(Handle memory_space, checked(H5Screate_simple(1, length, nullptr), H5Sclose, "dataspace"));
  if (count > 0) {
    RESHARD_RETURN_IF_ERROR(
        check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, length, nullptr), "selection"));
  } else {
    // Still in the collective call, with nothing selected.
    RESHARD_RETURN_IF_ERROR(check(H5Sselect_none(file_space.get()), "selection"));
    RESHARD_RETURN_IF_ERROR(check(H5Sselect_none(memory_space.get()), "selection"));
  }
  const std::uint64_t nothing = 0;
  return check(H5Dwrite(dataset, memory_type, memory_space.get(), file_space.get(), transfer.get(),
                        values != nullptr ? values : &nothing),
               "writing");
}

Status OneFileSink::Open::write_names(Comm& comm, const OneFileLayout& layout, const char* path,
                                      std::uint64_t count) const {
  RESHARD_ASSIGN_OR_RETURN(Handle names, h5ad::create_names_group(file.get(), path));
  const std::size_t width = h5ad::name_width(count == 0 ? 0 : count - 1);
  RESHARD_ASSIGN_OR_RETURN(Handle type, h5ad::name_type(width));
  RESHARD_ASSIGN_OR_RETURN(Handle index, create_dataset(names.get(), "_index", type.get(), count, layout));
  RESHARD_RETURN_IF_ERROR(h5ad::write_encoding(index.get(), {"string-array", "0.2.0"}));
  if (count == 0) return Status::Ok();
  // Rank r names [count * r / P, count * (r + 1) / P), a slice per call; the
  // call count is the same on every rank.
  const auto ranks = static_cast<std::uint64_t>(comm.size());
  const auto rank = static_cast<std::uint64_t>(comm.rank());
  const std::uint64_t begin = even_cut(count, ranks, rank);
  const std::uint64_t end = even_cut(count, ranks, rank + 1);
  const std::uint64_t largest_share = (count + ranks - 1) / ranks;
  const std::uint64_t calls = (largest_share + kNamesPerWrite - 1) / kNamesPerWrite;
  for (std::uint64_t call = 0; call < calls; ++call) {
    const std::uint64_t first = std::min(end, begin + call * kNamesPerWrite);
    const std::uint64_t last = std::min(end, first + kNamesPerWrite);
    const std::string packed = h5ad::pack_names(first, last - first, width, std::nullopt);
    RESHARD_RETURN_IF_ERROR(write_slice(index.get(), type.get(), first, last - first, packed.data())
                                .with_context(std::string(path) + "/_index"));
  }
  return Status::Ok();
}

Status OneFileSink::write_part(Comm& comm, const AssembledShard* part) {
  const std::string context = "writing " + layout_.path;
  Status planned;
  std::uint64_t k = 0;
  if (part != nullptr) {
    k = part->shard->index;
    const std::uint64_t expected = layout_.part_offsets[k + 1] - layout_.part_offsets[k];
    if (part->nnz() != expected) {
      planned = Status::Verification("part " + std::to_string(k) + " of " + layout_.path + " holds " +
                                     std::to_string(part->nnz()) + " entries where the exchange planned " +
                                     std::to_string(expected) + "; nothing was published");
    }
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, planned));
  std::lock_guard<std::mutex> lock(hdf5::hdf5_lock());
  const Open& h5 = *open_;
  const std::uint64_t nnz = layout_.part_offsets.back();
  const std::uint64_t offset = part != nullptr ? layout_.part_offsets[k] : 0;
  const std::uint64_t count = part != nullptr ? part->nnz() : 0;
  if (nnz > 0) {
    RESHARD_RETURN_IF_ERROR(h5.write_slice(h5.data.get(), h5.value_memory_type, offset, count,
                                           part != nullptr ? part->values.data() : nullptr)
                                .with_context(context + " data"));
    // A part's indices are at its own width (scipy's rule for the part); the
    // file's width follows the whole file. Indices are below 2^31 (2^63):
    // their bits are the same as int32's (int64's).
    const std::uint32_t file_width = h5.int32 ? 4 : 8;
    ByteArray converted;
    const std::uint8_t* indices = nullptr;
    if (part != nullptr && part->index_width == file_width) {
      indices = part->indices.data();
    } else if (part != nullptr) {
      converted.resize(count * file_width);
      copy_indices(part->index_view(), file_width, converted.data());
      indices = converted.data();
    }
    RESHARD_RETURN_IF_ERROR(
        h5.write_slice(h5.indices.get(), h5.int32 ? H5T_NATIVE_INT32 : H5T_NATIVE_INT64, offset, count, indices)
            .with_context(context + " indices"));
  }
  // indptr[major_begin + 1 .. major_end], and indptr[0] from the first part:
  // neighbours never write the same element.
  std::uint64_t first = 0;
  std::vector<std::int64_t> shifted;
  if (part != nullptr) {
    const std::uint64_t skip = k == 0 ? 0 : 1;
    first = layout_.part_bounds[k] + skip;
    const IndexView indptr = part->indptr_view();
    for (std::uint64_t j = skip; j < indptr.size(); ++j) {
      shifted.push_back(static_cast<std::int64_t>(indptr[j] + offset));
    }
  }
  if (h5.int32) {
    std::vector<std::int32_t> narrow(shifted.begin(), shifted.end());
    return h5.write_slice(h5.indptr.get(), H5T_NATIVE_INT32, first, narrow.size(), narrow.data())
        .with_context(context + " indptr");
  }
  return h5.write_slice(h5.indptr.get(), H5T_NATIVE_INT64, first, shifted.size(), shifted.data())
      .with_context(context + " indptr");
}

Result<OneFileSink::Closed> OneFileSink::close(Comm& comm) {
  const std::string context = "writing " + layout_.path;
  {
    std::lock_guard<std::mutex> lock(hdf5::hdf5_lock());
    Status flushed = check(H5Fflush(open_->file.get(), H5F_SCOPE_GLOBAL), "flushing");
    open_->close_all();
    RESHARD_RETURN_IF_ERROR(flushed.with_context(context));
  }
  Closed closed;
  Status status;
  if (comm.rank() == 0) {
    status = [&]() -> Status {
      RESHARD_ASSIGN_OR_RETURN(const auto info, store_.stat(layout_.temp_path));
      if (!info) return Status::Storage("reading back " + layout_.temp_path + ": it is gone");
      closed.bytes = info->size;
      for (std::uint64_t at = 0; at < closed.bytes; at += kReadBackBytes) {
        RESHARD_ASSIGN_OR_RETURN(const Bytes piece,
                                 store_.read(layout_.temp_path, at, std::min(kReadBackBytes, closed.bytes - at)));
        closed.crc32c = crc32c(piece, closed.crc32c);
      }
      return Status::Ok();
    }();
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, status.with_context(context)));
  return closed;
}

Status OneFileSink::move_into_place() {
  RESHARD_RETURN_IF_ERROR(store_.move_into_place(layout_.temp_path, layout_.path));
  placed_ = true;
  return Status::Ok();
}

}  // namespace reshard

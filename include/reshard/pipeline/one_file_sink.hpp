// Stage 6 for a destination that is one local HDF5 file (`--dst out.h5ad
// --new-scheme single`): a sink every rank writes at once, instead of one
// rank writing the whole file. The file is cut into parts, ranges of its
// major axis (rows for CSR, columns for CSC); the shuffle routes, owns and
// assembles parts as it does shards (plan_file_parts), and each part goes
// to its place in the file: its entries at the sum of the entries of the
// parts before it, known on every rank before the exchange, and its indptr
// shifted by that sum. With MPI the file is opened with parallel HDF5's
// MPI-IO driver and every dataset write is collective, a rank without a part
// taking part with an empty selection (HDF5 writes gzip-filtered datasets in
// parallel only that way); without MPI (SelfComm) the same code writes
// through HDF5's default driver.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reshard/comm.hpp"
#include "reshard/format/npy.hpp"
#include "reshard/pipeline/assemble.hpp"
#include "reshard/store/store.hpp"

namespace reshard {

struct OneFileLayout {
  std::string path;       // the final file: its key in a POSIX store, which is its local path
  std::string temp_path;  // where it is written until publishing
  std::string group = "/X";
  bool csr = true;
  std::uint64_t nrows = 0;
  std::uint64_t ncols = 0;
  npy::DType value_dtype;
  int gzip_level = 0;  // 0: contiguous datasets, no filter
  std::uint64_t chunk_elements = 1 << 18;
  // Part k covers majors [part_bounds[k], part_bounds[k + 1]) and entries
  // [part_offsets[k], part_offsets[k + 1]); both have parts + 1 values.
  std::vector<std::uint64_t> part_bounds;
  std::vector<std::uint64_t> part_offsets;
};

// "<dir>/.<name>.tmp.<job id>.collective": a temp name the destination's
// clean-up of interrupted writes recognises.
std::string one_file_temp_path(const std::string& path, const std::string& job_id);

class OneFileSink {
 public:
  // Collective: creates the temp file with every dataset at its final
  // length and writes the obs/var names, each rank a slice. `store` (POSIX)
  // reads the file back, puts it in place and removes it.
  static Result<std::unique_ptr<OneFileSink>> create(Comm& comm, Store& store, OneFileLayout layout);
  ~OneFileSink();
  OneFileSink(const OneFileSink&) = delete;
  OneFileSink& operator=(const OneFileSink&) = delete;

  // Collective: writes `part` (assembled from a part's entries; nullptr on a
  // rank with nothing to write this round) into its place. Every rank calls
  // it the same number of times. A part whose entry count is not the one
  // planned is a verification failure on every rank, found before writing.
  Status write_part(Comm& comm, const AssembledShard* part);

  struct Closed {
    std::uint64_t bytes = 0;
    std::uint32_t crc32c = 0;
  };
  // Collective: flushes and closes the file. Rank 0 then reads it back for
  // its size and CRC-32C (the manifest's record); other ranks get zeros.
  Result<Closed> close(Comm& comm);
  // Rank 0, after close: syncs the temp file and renames it to its final
  // name (Store::move_into_place); the last step before _SUCCESS. Until
  // then, destroying the sink on rank 0 removes the temp file.
  Status move_into_place();

 private:
  struct Open;  // the HDF5 ids, kept out of this header
  OneFileSink(Store& store, OneFileLayout layout);

  Store& store_;
  OneFileLayout layout_;
  bool owns_temp_file_ = false;
  bool placed_ = false;
  std::unique_ptr<Open> open_;
};

}  // namespace reshard

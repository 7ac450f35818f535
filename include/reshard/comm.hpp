// The few collectives the pipeline needs, behind an interface so stages and
// their tests run without mpiexec (SelfComm) and MPI stays in one file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reshard/bytes.hpp"
#include "reshard/status.hpp"
#include "reshard/work_array.hpp"

namespace reshard {

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks of this job on this node (they share its memory).
  virtual int ranks_on_node() const = 0;
  // Returns once every rank has called it. A waiting rank sleeps rather than
  // polls, so the cores of its node go to ranks still working.
  virtual void barrier() = 0;
  virtual std::uint64_t sum(std::uint64_t value) = 0;
  virtual std::uint64_t max(std::uint64_t value) = 0;
  // Element-wise sum over all ranks, in place (per-shard and per-row counts).
  virtual void sum_each(std::vector<std::uint64_t>& values) = 0;
  // Every rank's bytes, indexed by rank.
  virtual std::vector<Bytes> allgather(ByteView mine) = 0;
  // Personalized all-to-all: what goes to rank p is the concatenation of
  // `send[p]`'s pieces, read where they lie, so the caller need not copy its
  // blocks into one send buffer (on the test VM that copy, into fresh memory,
  // was 0.9-1.0 s of a 2.3 s exchange). Returns the concatenation of what
  // every rank sent here, in rank order, with `recv_counts` filled in.
  // Messages are split into rounds so no single message exceeds
  // `max_message_bytes` (a multiple of `element_size`, so elements never
  // straddle rounds).
  virtual ByteArray alltoallv_pieces(const std::vector<std::vector<ByteView>>& send,
                                     std::vector<std::uint64_t>& recv_counts, std::uint64_t element_size,
                                     std::uint64_t max_message_bytes) = 0;
  // The same from one buffer: `send` holds the block for rank 0, then rank
  // 1, ...; `send_counts[p]` bytes each.
  ByteArray alltoallv(ByteView send, const std::vector<std::uint64_t>& send_counts,
                      std::vector<std::uint64_t>& recv_counts, std::uint64_t element_size,
                      std::uint64_t max_message_bytes);
  // Ends every rank of the job at once; used when one rank cannot go on.
  [[noreturn]] virtual void abort(int exit_code) = 0;
  // Rounds the last all-to-all took (for the report and the tests).
  virtual std::uint64_t last_exchange_rounds() const = 0;
  // The MPI communicator behind this Comm (points at an MPI_Comm), for
  // libraries that take one (parallel HDF5); nullptr without MPI.
  virtual const void* mpi_communicator() const { return nullptr; }
};

// A communicator of one rank: the identity for every collective.
std::unique_ptr<Comm> make_self_comm();

// The first failure over all ranks (lowest rank wins, so every rank returns
// the same Status); Ok when every rank is Ok. Collective.
Status agree(Comm& comm, const Status& local);

}  // namespace reshard

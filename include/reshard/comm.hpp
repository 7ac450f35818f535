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
  // It runs in rounds of one message per peer (exchange_messages): no
  // message exceeds `max_message_bytes` (cut at a multiple of
  // `element_size`, so elements never straddle rounds), and a large piece
  // is a message of its own.
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

// How alltoallv_pieces cuts what one rank sends one peer into messages, one
// per round, from the byte lengths of its pieces in order: a piece of at
// least kLoneMessageBytes goes alone, as one contiguous message per round
// of at most `chunk` bytes (Open MPI then copies it once, straight from
// where it lies; a message of scattered pieces goes through its
// copy-in/copy-out path, 1.6-1.8x slower in bench/exchange_probe); runs of
// smaller pieces are packed into messages of at most `chunk` bytes, so
// that many small segments do not cost a round each. Empty pieces are
// skipped. `chunk` must be a multiple of the element size the pieces are
// made of, so no element straddles two messages.
inline constexpr std::uint64_t kLoneMessageBytes = std::uint64_t{1} << 20;
std::vector<std::uint64_t> exchange_messages(const std::vector<std::uint64_t>& piece_bytes, std::uint64_t chunk);

// A communicator of one rank: the identity for every collective.
std::unique_ptr<Comm> make_self_comm();

// The first failure over all ranks (lowest rank wins, so every rank returns
// the same Status); Ok when every rank is Ok. Collective.
Status agree(Comm& comm, const Status& local);

}  // namespace reshard

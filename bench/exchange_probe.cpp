// What the exchange's transport moves between the ranks of a job, apart from
// the pipeline: every rank sends MIB MiB to each other rank through the
// job's own Comm::alltoallv_pieces, as one contiguous piece per peer and as
// PIECES scattered pieces per peer (what a rank sends when it read several
// sources), three times each, and also times writing a fresh buffer of the
// size it receives (the receive buffer is fresh memory too). On the
// project's VM the all-to-all ran at the speed of that first touch, not of
// the copy; docs/performance.md has the figures. Usage:
//   mpirun -np 2 build/bin/exchange_probe [MIB] [PIECES]   (default 390, 16)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "reshard/mpi_comm.hpp"
#include "reshard/process_memory.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Seconds to write `bytes` of fresh memory, as the receive buffer is written.
double first_touch(std::size_t bytes) {
  const auto t0 = Clock::now();
  const std::vector<std::uint8_t> fresh(bytes, 1);
  const double seconds = seconds_since(t0);
  volatile std::uint8_t kept = fresh[bytes / 2];  // so the buffer is not elided
  (void)kept;
  return seconds;
}

// The slowest rank's seconds. Collective.
double slowest(reshard::Comm& comm, double seconds) {
  return static_cast<double>(comm.max(static_cast<std::uint64_t>(seconds * 1e6))) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  reshard::configure_process_memory();
  reshard::MpiSession session(&argc, &argv);
  const auto comm = reshard::make_world_comm();
  const long mib = argc > 1 ? std::atol(argv[1]) : 390;
  const long scattered = argc > 2 ? std::atol(argv[2]) : 16;
  const int ranks = comm->size();
  if (mib < 1 || scattered < 2 || ranks < 2) {
    if (comm->rank() == 0) {
      std::fprintf(stderr,
                   "exchange_probe: needs 2+ ranks, MIB >= 1 and PIECES >= 2 (usage: exchange_probe [MIB] [PIECES])\n");
    }
    return 2;
  }
  const std::size_t per_peer = static_cast<std::size_t>(mib) << 20;
  // One buffer per peer, with a 64-byte gap after every piece so that the
  // scattered pieces are not one run of memory that MPI could merge.
  const auto pieces_max = static_cast<std::size_t>(scattered);
  std::vector<std::vector<std::uint8_t>> buffers(static_cast<std::size_t>(ranks));
  for (auto& buffer : buffers) buffer.assign(per_peer + 64 * pieces_max, 7);
  for (const std::size_t pieces : {std::size_t{1}, pieces_max}) {
    std::vector<std::vector<reshard::ByteView>> send(static_cast<std::size_t>(ranks));
    for (int p = 0; p < ranks; ++p) {
      if (p == comm->rank()) continue;
      const std::size_t piece = per_peer / pieces;
      for (std::size_t k = 0; k < pieces; ++k) {
        const std::size_t length = k + 1 < pieces ? piece : per_peer - piece * k;
        send[static_cast<std::size_t>(p)].emplace_back(buffers[static_cast<std::size_t>(p)].data() + k * (piece + 64),
                                                       length);
      }
    }
    for (int round = 0; round < 3; ++round) {
      std::vector<std::uint64_t> recv_counts;
      comm->barrier();
      const auto t0 = Clock::now();
      const reshard::ByteArray received = comm->alltoallv_pieces(send, recv_counts, 1, std::uint64_t{1} << 31);
      const double exchange = slowest(*comm, seconds_since(t0));
      const double touch = slowest(*comm, first_touch(received.size()));
      if (comm->rank() == 0) {
        const double bytes = static_cast<double>(per_peer) * ranks * (ranks - 1);
        std::printf(
            "%2zu piece(s) per peer: all-to-all %.3f s, %.2f GB/s of all ranks' bytes; "
            "first touch of an equally large fresh buffer %.3f s\n",
            pieces, exchange, bytes / exchange / 1e9, touch);
      }
    }
  }
  return 0;
}

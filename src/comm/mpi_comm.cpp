#include "reshard/mpi_comm.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <thread>

namespace reshard {
namespace {

// Every MPI call goes through here: MPI_ERRORS_ARE_FATAL is the default
// handler, so a failure never returns, but a wrong return code still must not
// pass silently.
void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  std::fprintf(stderr, "mpi_reshard: %s failed (MPI error %d)\n", what, rc);
  MPI_Abort(MPI_COMM_WORLD, 1);
}

// Whether this node has hardware for Open MPI's matching transports (PSM on
// True Scale/Omni-Path, libfabric's OFI on InfiniBand, EFA, Slingshot, Aries).
// Each shows up as a device class or node the kernel driver creates.
bool node_has_fabric_hardware() {
  namespace fs = std::filesystem;
  std::error_code ignored;
  for (const char* dir : {"/sys/class/infiniband", "/sys/class/cxi"}) {
    if (fs::is_directory(dir, ignored) && !fs::is_empty(dir, ignored)) return true;
  }
  for (const auto& entry : fs::directory_iterator("/dev", ignored)) {
    const std::string name = entry.path().filename().string();
    for (const char* prefix : {"hfi1", "ipath", "kgni"}) {
      if (name.rfind(prefix, 0) == 0) return true;
    }
  }
  return false;
}

// Open MPI opens and probes its OFI, PSM and PSM2 matching transports in
// MPI_Init even where no such hardware exists: 0.27 s of MPI_Init on a
// 2-core Debian 12 node (Open MPI 4.1.4), 0.07 s without them, which is a
// quarter of a 2M-entry job. Where the node has none of that hardware Open
// MPI would not select them anyway, so they are left out; a user's own
// choice (mpirun --mca mtl/pml, which reaches a rank as OMPI_MCA_*) wins.
void skip_absent_matching_transports() {
#ifdef OPEN_MPI
  if (std::getenv("OMPI_MCA_mtl") != nullptr || std::getenv("OMPI_MCA_pml") != nullptr) return;
  if (node_has_fabric_hardware()) return;
  setenv("OMPI_MCA_mtl", "^ofi,psm,psm2", 0);
#endif
}

class MpiComm final : public Comm {
 public:
  explicit MpiComm(MPI_Comm comm) : comm_(comm) {
    check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    MPI_Comm node = MPI_COMM_NULL;
    check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
    check_mpi(MPI_Comm_size(node, &ranks_on_node_), "MPI_Comm_size");
    check_mpi(MPI_Comm_free(&node), "MPI_Comm_free");
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int ranks_on_node() const override { return ranks_on_node_; }
  // MPI_Barrier polls at full speed until the last rank arrives. After a
  // skewed stage (one rank writes the hot destination shard for seconds
  // while the others are done) that polling takes cores the busy rank of the
  // same node could use, so a rank that has to wait here sleeps between
  // tests, from 50 us up to 2 ms (the added latency once the last rank
  // arrives). A few quick tests first keep a balanced barrier fast.
  void barrier() override {
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Ibarrier(comm_, &request), "MPI_Ibarrier");
    int done = 0;
    for (int quick = 0; quick < 64 && !done; ++quick)
      check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    auto pause = std::chrono::microseconds(50);
    while (!done) {
      std::this_thread::sleep_for(pause);
      pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(2));
      check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    }
  }

  std::uint64_t sum(std::uint64_t value) override {
    std::uint64_t out = 0;
    check_mpi(MPI_Allreduce(&value, &out, 1, MPI_UINT64_T, MPI_SUM, comm_), "MPI_Allreduce");
    return out;
  }
  std::uint64_t max(std::uint64_t value) override {
    std::uint64_t out = 0;
    check_mpi(MPI_Allreduce(&value, &out, 1, MPI_UINT64_T, MPI_MAX, comm_), "MPI_Allreduce");
    return out;
  }

  void sum_each(std::vector<std::uint64_t>& values) override {
    // In pieces: MPI counts are ints, and a per-row count vector can hold
    // more than 2^31 elements.
    constexpr std::size_t kPiece = std::size_t{1} << 26;
    for (std::size_t begin = 0; begin < values.size(); begin += kPiece) {
      const int count = static_cast<int>(std::min(kPiece, values.size() - begin));
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, values.data() + begin, count, MPI_UINT64_T, MPI_SUM, comm_),
                "MPI_Allreduce");
    }
  }

  std::vector<Bytes> allgather(ByteView mine) override {
    // Gathered payloads are small (headers, stats, errors); larger data moves
    // through alltoallv, which splits into rounds.
    const int my_count = static_cast<int>(mine.size());
    std::vector<int> counts(static_cast<std::size_t>(size_));
    check_mpi(MPI_Allgather(&my_count, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_), "MPI_Allgather");
    std::vector<int> displs(counts.size(), 0);
    std::exclusive_scan(counts.begin(), counts.end(), displs.begin(), 0);
    Bytes all(static_cast<std::size_t>(displs.back() + counts.back()));
    check_mpi(
        MPI_Allgatherv(mine.data(), my_count, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, comm_),
        "MPI_Allgatherv");
    std::vector<Bytes> out(counts.size());
    for (std::size_t p = 0; p < counts.size(); ++p) {
      out[p].assign(all.begin() + displs[p], all.begin() + displs[p] + counts[p]);
    }
    return out;
  }

  ByteArray alltoallv_pieces(const std::vector<std::vector<ByteView>>& send, std::vector<std::uint64_t>& recv_counts,
                             std::uint64_t element_size, std::uint64_t max_message_bytes) override {
    const auto n = static_cast<std::size_t>(size_);
    // A round moves at most `chunk` bytes per peer, so every block length
    // of a round's datatypes fits MPI's int.
    std::uint64_t chunk = std::min<std::uint64_t>(max_message_bytes, INT_MAX / n);
    chunk = std::max<std::uint64_t>(element_size, chunk / element_size * element_size);
    // Each peer learns the lengths of the messages it will get, one per
    // round (exchange_messages), and so where each lands.
    std::vector<std::vector<std::uint64_t>> to_send(n);
    for (std::size_t p = 0; p < n; ++p) {
      std::vector<std::uint64_t> piece_bytes;
      for (const auto& piece : send.at(p)) piece_bytes.push_back(piece.size());
      to_send[p] = exchange_messages(piece_bytes, chunk);
    }
    const std::vector<std::vector<std::uint64_t>> to_receive = alltoall_lists(to_send);
    recv_counts.assign(n, 0);
    std::uint64_t my_rounds = 0;
    for (std::size_t p = 0; p < n; ++p) {
      for (const std::uint64_t bytes : to_receive[p]) recv_counts[p] += bytes;
      my_rounds = std::max({my_rounds, to_send[p].size(), to_receive[p].size()});
    }
    std::vector<std::uint64_t> recv_offsets(n, 0);
    std::exclusive_scan(recv_counts.begin(), recv_counts.end(), recv_offsets.begin(), std::uint64_t{0});
    ByteArray received(recv_offsets.back() + recv_counts.back());
    const std::uint64_t rounds = max(my_rounds);
    rounds_ = rounds;
    // Each peer's message of a round is described by an hindexed datatype
    // of absolute addresses (MPI_Alltoallw from MPI_BOTTOM): MPI reads the
    // pieces where they lie and writes into `received` in place, and
    // addresses are MPI_Aint, so no int displacement limits the buffers.
    std::vector<std::size_t> piece_at(n, 0);        // first piece not wholly sent
    std::vector<std::uint64_t> piece_offset(n, 0);  // bytes of it already sent
    std::vector<std::uint64_t> received_from(n, 0);
    std::vector<int> send_types_count(n), recv_types_count(n), zeros(n, 0);
    std::vector<MPI_Datatype> send_types(n), recv_types(n);
    std::vector<int> lengths;
    std::vector<MPI_Aint> addresses;
    const auto address_of = [](const void* p) {
      MPI_Aint a = 0;
      check_mpi(MPI_Get_address(p, &a), "MPI_Get_address");
      return a;
    };
    const auto make_type = [&](MPI_Datatype& type) {
      check_mpi(
          MPI_Type_create_hindexed(static_cast<int>(lengths.size()), lengths.data(), addresses.data(), MPI_BYTE, &type),
          "MPI_Type_create_hindexed");
      check_mpi(MPI_Type_commit(&type), "MPI_Type_commit");
    };
    for (std::uint64_t round = 0; round < rounds; ++round) {
      for (std::size_t p = 0; p < n; ++p) {
        std::uint64_t left = round < to_send[p].size() ? to_send[p][round] : 0;
        lengths.clear();
        addresses.clear();
        while (left > 0) {
          const ByteView piece = send[p][piece_at[p]];
          const std::uint64_t take = std::min(left, piece.size() - piece_offset[p]);
          if (take > 0) {
            lengths.push_back(static_cast<int>(take));
            addresses.push_back(address_of(piece.data() + piece_offset[p]));
          }
          piece_offset[p] += take;
          left -= take;
          if (piece_offset[p] == piece.size()) {
            ++piece_at[p];
            piece_offset[p] = 0;
          }
        }
        send_types_count[p] = lengths.empty() ? 0 : 1;
        send_types[p] = MPI_BYTE;
        if (!lengths.empty()) make_type(send_types[p]);
        const std::uint64_t r = round < to_receive[p].size() ? to_receive[p][round] : 0;
        recv_types_count[p] = r == 0 ? 0 : 1;
        recv_types[p] = MPI_BYTE;
        if (r > 0) {
          lengths.assign(1, static_cast<int>(r));
          addresses.assign(1, address_of(received.data() + recv_offsets[p] + received_from[p]));
          make_type(recv_types[p]);
          received_from[p] += r;
        }
      }
      check_mpi(MPI_Alltoallw(MPI_BOTTOM, send_types_count.data(), zeros.data(), send_types.data(), MPI_BOTTOM,
                              recv_types_count.data(), zeros.data(), recv_types.data(), comm_),
                "MPI_Alltoallw");
      for (std::size_t p = 0; p < n; ++p) {
        if (send_types[p] != MPI_BYTE) check_mpi(MPI_Type_free(&send_types[p]), "MPI_Type_free");
        if (recv_types[p] != MPI_BYTE) check_mpi(MPI_Type_free(&recv_types[p]), "MPI_Type_free");
      }
    }
    return received;
  }

  [[noreturn]] void abort(int exit_code) override {
    MPI_Abort(comm_, exit_code);
    std::_Exit(exit_code);
  }
  std::uint64_t last_exchange_rounds() const override { return rounds_; }
  const void* mpi_communicator() const override { return &comm_; }

 private:
  // lists[p] goes to rank p; returns what each rank sent here, by rank.
  // Lists are short: a word per message of an all-to-all.
  std::vector<std::vector<std::uint64_t>> alltoall_lists(const std::vector<std::vector<std::uint64_t>>& lists) {
    const auto n = static_cast<std::size_t>(size_);
    std::vector<std::uint64_t> counts(n);
    for (std::size_t p = 0; p < n; ++p) counts[p] = lists[p].size();
    std::vector<std::uint64_t> incoming(n, 0);
    check_mpi(MPI_Alltoall(counts.data(), 1, MPI_UINT64_T, incoming.data(), 1, MPI_UINT64_T, comm_), "MPI_Alltoall");
    std::vector<int> send_counts(n), send_displs(n), recv_counts(n), recv_displs(n);
    std::vector<std::uint64_t> flat;
    int recv_total = 0;
    for (std::size_t p = 0; p < n; ++p) {
      send_displs[p] = static_cast<int>(flat.size());
      send_counts[p] = static_cast<int>(lists[p].size());
      flat.insert(flat.end(), lists[p].begin(), lists[p].end());
      recv_displs[p] = recv_total;
      recv_counts[p] = static_cast<int>(incoming[p]);
      recv_total += recv_counts[p];
    }
    std::vector<std::uint64_t> got(static_cast<std::size_t>(recv_total));
    check_mpi(MPI_Alltoallv(flat.data(), send_counts.data(), send_displs.data(), MPI_UINT64_T, got.data(),
                            recv_counts.data(), recv_displs.data(), MPI_UINT64_T, comm_),
              "MPI_Alltoallv");
    std::vector<std::vector<std::uint64_t>> out(n);
    for (std::size_t p = 0; p < n; ++p) {
      out[p].assign(got.begin() + recv_displs[p], got.begin() + recv_displs[p] + recv_counts[p]);
    }
    return out;
  }

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  int ranks_on_node_ = 1;
  std::uint64_t rounds_ = 0;
};

}  // namespace

std::unique_ptr<Comm> make_world_comm() { return std::make_unique<MpiComm>(MPI_COMM_WORLD); }

MpiSession::MpiSession(int* argc, char*** argv) {
  skip_absent_matching_transports();
  int provided = 0;
  check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace reshard

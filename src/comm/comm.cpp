#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "reshard/comm.hpp"

namespace reshard {
namespace {

class SelfComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int ranks_on_node() const override { return 1; }
  void barrier() override {}
  std::uint64_t sum(std::uint64_t value) override { return value; }
  std::uint64_t max(std::uint64_t value) override { return value; }
  void sum_each(std::vector<std::uint64_t>&) override {}
  std::vector<Bytes> allgather(ByteView mine) override { return {Bytes(mine.begin(), mine.end())}; }
  ByteArray alltoallv_pieces(const std::vector<std::vector<ByteView>>& send, std::vector<std::uint64_t>& recv_counts,
                             std::uint64_t element_size, std::uint64_t max_message_bytes) override {
    std::uint64_t total = 0;
    for (const auto& piece : send.at(0)) total += piece.size();
    const std::uint64_t chunk = std::max<std::uint64_t>(element_size, max_message_bytes / element_size * element_size);
    rounds_ = total == 0 ? 0 : (total + chunk - 1) / chunk;
    recv_counts = {total};
    ByteArray received(total);
    std::uint64_t at = 0;
    for (const auto& piece : send[0]) {
      if (piece.empty()) continue;
      std::memcpy(received.data() + at, piece.data(), piece.size());
      at += piece.size();
    }
    return received;
  }
  [[noreturn]] void abort(int exit_code) override { std::_Exit(exit_code); }
  std::uint64_t last_exchange_rounds() const override { return rounds_; }

 private:
  std::uint64_t rounds_ = 0;
};

}  // namespace

std::unique_ptr<Comm> make_self_comm() { return std::make_unique<SelfComm>(); }

ByteArray Comm::alltoallv(ByteView send, const std::vector<std::uint64_t>& send_counts,
                          std::vector<std::uint64_t>& recv_counts, std::uint64_t element_size,
                          std::uint64_t max_message_bytes) {
  std::vector<std::vector<ByteView>> pieces(send_counts.size());
  std::uint64_t at = 0;
  for (std::size_t p = 0; p < send_counts.size(); ++p) {
    pieces[p].push_back(send.subspan(at, send_counts[p]));
    at += send_counts[p];
  }
  return alltoallv_pieces(pieces, recv_counts, element_size, max_message_bytes);
}

std::vector<std::uint64_t> exchange_messages(const std::vector<std::uint64_t>& piece_bytes, std::uint64_t chunk) {
  std::vector<std::uint64_t> messages;
  std::uint64_t packed = 0;
  for (std::uint64_t bytes : piece_bytes) {
    if (bytes == 0) continue;
    if (bytes >= kLoneMessageBytes) {
      if (packed > 0) messages.push_back(packed);
      packed = 0;
      for (; bytes > 0; bytes -= std::min(bytes, chunk)) messages.push_back(std::min(bytes, chunk));
      continue;
    }
    // A small piece may still exceed what is left of the message: it goes
    // on in the next one.
    while (bytes > 0) {
      const std::uint64_t take = std::min(bytes, chunk - packed);
      packed += take;
      bytes -= take;
      if (packed == chunk) {
        messages.push_back(packed);
        packed = 0;
      }
    }
  }
  if (packed > 0) messages.push_back(packed);
  return messages;
}

Status agree(Comm& comm, const Status& local) {
  Bytes mine;
  if (!local.ok()) {
    mine.push_back(static_cast<std::uint8_t>(local.exit_code()));
    append_bytes(mine, local.message());
  }
  const auto all = comm.allgather(mine);
  for (const auto& bytes : all) {
    if (bytes.empty()) continue;
    return {static_cast<ErrorKind>(bytes[0]), std::string(bytes.begin() + 1, bytes.end())};
  }
  return Status::Ok();
}

}  // namespace reshard

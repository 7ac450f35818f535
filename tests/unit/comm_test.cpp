// The part of the all-to-all that needs no MPI: how a rank's pieces for one
// peer are cut into one message per round (exchange_messages).
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "reshard/comm.hpp"

namespace reshard {
namespace {

using Lengths = std::vector<std::uint64_t>;
constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;

TEST(ExchangeMessages, LargePiecesGoAloneAndSmallOnesArePacked) {
  // Two small pieces packed, a large one alone, an empty one skipped, then
  // three small ones packed: the large piece is never merged with its
  // neighbours, so it travels as one contiguous message.
  const Lengths pieces = {8, 16, 3 * kMiB, 0, 8, 8, 8};
  EXPECT_EQ(exchange_messages(pieces, 64 * kMiB), (Lengths{24, 3 * kMiB, 24}));
}

TEST(ExchangeMessages, NoMessageExceedsTheChunkAndEveryByteIsSentOnce) {
  // A chunk of 4 elements of 8 bytes: large pieces are cut into chunks, small
  // ones fill a message to the chunk and go on in the next.
  const std::uint64_t chunk = 32;
  const Lengths pieces = {24, 24, kMiB + 8, 40, 8};
  const Lengths messages = exchange_messages(pieces, chunk);
  for (const auto bytes : messages) {
    EXPECT_LE(bytes, chunk);
    EXPECT_GT(bytes, 0u);
    EXPECT_EQ(bytes % 8, 0u) << "an element would straddle two messages";
  }
  EXPECT_EQ(std::accumulate(messages.begin(), messages.end(), std::uint64_t{0}),
            std::accumulate(pieces.begin(), pieces.end(), std::uint64_t{0}));
  // 24 + 8 of the next piece, its last 16, then the large piece alone in
  // chunks (its last 8 bytes a message of their own), then 40 + 8 packed.
  const Lengths head = {32, 16, 32};
  EXPECT_TRUE(std::equal(head.begin(), head.end(), messages.begin()));
  EXPECT_EQ(messages[2 + (kMiB + 8) / chunk], 8u) << "the large piece's tail is not packed with what follows";
  EXPECT_EQ(messages.back(), 16u);
}

TEST(ExchangeMessages, NothingToSendIsNoMessage) {
  EXPECT_TRUE(exchange_messages({}, 64).empty());
  EXPECT_TRUE(exchange_messages({0, 0}, 64).empty());
}

}  // namespace
}  // namespace reshard

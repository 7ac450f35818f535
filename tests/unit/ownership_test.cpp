#include <gtest/gtest.h>

#include <numeric>

#include "reshard/pipeline/ownership.hpp"

namespace reshard {
namespace {

OwnershipProblem problem_of(int ranks, std::uint64_t shards) {
  OwnershipProblem p;
  p.ranks = ranks;
  p.shard_count = shards;
  p.held.resize(static_cast<std::size_t>(ranks));
  p.skip.assign(shards, false);
  return p;
}

TEST(Ownership, IdentityReshardMovesNothingEvenWhenSkewed) {
  // Shard d lives wholly on rank d % 3, with very uneven sizes.
  auto p = problem_of(3, 7);
  for (std::uint64_t d = 0; d < 7; ++d) p.held[d % 3].emplace_back(d, 1000 * (d + 1) * (d + 1));
  const Ownership o = assign_owners(p);
  EXPECT_EQ(o.entries_moved, 0u);
  EXPECT_EQ(o.entries_lower_bound, 0u);
  for (std::uint64_t d = 0; d < 7; ++d) EXPECT_EQ(o.owner.owner_of(d), static_cast<int>(d % 3));
}

TEST(Ownership, BalanceCapIsRespectedWhenMovingIsFree) {
  // Every rank holds an equal slice of every shard: any owner moves the same
  // amount, so balance decides.
  auto p = problem_of(4, 8);
  for (int r = 0; r < 4; ++r) {
    for (std::uint64_t d = 0; d < 8; ++d) p.held[static_cast<std::size_t>(r)].emplace_back(d, 100);
  }
  const Ownership o = assign_owners(p);
  std::vector<int> shards_per_rank(4, 0);
  for (std::uint64_t d = 0; d < 8; ++d) ++shards_per_rank[static_cast<std::size_t>(o.owner.owner_of(d))];
  for (int n : shards_per_rank) EXPECT_EQ(n, 2);
  EXPECT_EQ(o.entries_moved, 8u * 300);
  EXPECT_EQ(o.entries_lower_bound, 8u * 300);
}

TEST(Ownership, RowBlocksDoubledMoveAtMostHalf) {
  // rows:block=R -> 2R: destination j is sources 2j and 2j+1, read by ranks
  // (2j) % P and (2j+1) % P.
  for (int ranks : {2, 3, 4}) {
    const std::uint64_t sources = 24;
    auto p = problem_of(ranks, sources / 2);
    for (std::uint64_t s = 0; s < sources; ++s) {
      p.held[s % static_cast<std::uint64_t>(ranks)].emplace_back(s / 2, 500);
    }
    const Ownership o = assign_owners(p);
    EXPECT_LE(o.entries_moved, sources * 500 / 2) << ranks << " ranks";
    EXPECT_LE(o.entries_lower_bound, o.entries_moved);
  }
}

TEST(Ownership, EmptyShardsGetOwnersAndSkippedShardsDoNot) {
  auto p = problem_of(2, 5);
  p.held[0].emplace_back(0, 10);
  p.skip[4] = true;
  const Ownership o = assign_owners(p);
  EXPECT_EQ(o.owner.owner_of(0), 0);
  for (std::uint64_t d = 1; d < 4; ++d) EXPECT_NE(o.owner.owner_of(d), DestinationOwner::kNobody);
  EXPECT_EQ(o.owner.owner_of(4), DestinationOwner::kNobody);
}

TEST(Ownership, SameInputSameAnswer) {
  auto p = problem_of(3, 50);
  for (std::uint64_t d = 0; d < 50; ++d) {
    for (int r = 0; r < 3; ++r)
      p.held[static_cast<std::size_t>(r)].emplace_back(d, (d * 7 + static_cast<std::uint64_t>(r) * 13) % 17);
  }
  const Ownership a = assign_owners(p);
  std::reverse(p.held[1].begin(), p.held[1].end());
  const Ownership b = assign_owners(p);
  for (std::uint64_t d = 0; d < 50; ++d) EXPECT_EQ(a.owner.owner_of(d), b.owner.owner_of(d));
  EXPECT_LE(a.entries_lower_bound, a.entries_moved);
}

}  // namespace
}  // namespace reshard

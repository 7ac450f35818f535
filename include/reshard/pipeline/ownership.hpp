// Which rank owns (assembles and writes) each destination shard, chosen once
// the sources are read so that entries stay where they already are: the
// owner of a shard is preferably the rank that already holds most of it,
// while no rank owns more than max((1 + epsilon) x the average, what it read)
// entries. Pure: every rank computes the same answer from the same counts.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "reshard/pipeline/plan.hpp"

namespace reshard {

inline constexpr double kDefaultOwnershipEpsilon = 0.1;

struct OwnershipProblem {
  int ranks = 1;
  std::uint64_t shard_count = 0;
  // held[p] = (destination shard, entries rank p holds for it), any order.
  std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>> held;
  std::vector<bool> skip;  // shards nobody writes
  double epsilon = kDefaultOwnershipEpsilon;
};

struct Ownership {
  DestinationOwner owner;
  std::uint64_t entries_moved = 0;        // with this assignment
  std::uint64_t entries_lower_bound = 0;  // no assignment can move fewer
};

Ownership assign_owners(const OwnershipProblem& problem);

}  // namespace reshard

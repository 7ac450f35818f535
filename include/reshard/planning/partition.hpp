// Balanced boundaries: split a sequence of per-row (or per-column) costs
// into contiguous ranges so that the costliest range is as cheap as it can
// be. Pure functions over vectors; `mpi_reshard plan --balance` feeds them
// the counts it surveyed.
#pragma once

#include <cstdint>
#include <vector>

namespace reshard {

struct Partition {
  // First index of each range, ascending from 0 (a ranges= scheme).
  std::vector<std::uint64_t> starts;
  // Cost of the costliest range: the least any split into this many
  // contiguous ranges can achieve.
  std::uint64_t bottleneck = 0;
};

// Optimal contiguous partition of `costs` into exactly `parts` ranges
// (fewer when there are fewer than `parts` items). The least feasible
// bottleneck is found by bisection over [max item, total], each probe a
// greedy walk that jumps range by range through the prefix sums by binary
// search: O(n) to build the prefix sums, then O(parts log n) per probe and
// at most 64 probes. Ranges left over once the greedy walk fits (it may need
// fewer) are made by splitting the longest ranges, which cannot raise the
// bottleneck.
Partition balanced_partition(const std::vector<std::uint64_t>& costs, std::uint64_t parts);
// The same from prefix sums (prefix[0] = 0, prefix[i + 1] = prefix[i] +
// cost i), for callers that keep them: no second array of n costs.
Partition balanced_partition_of_prefix(const std::vector<std::uint64_t>& prefix, std::uint64_t parts);

// Turns costs into their prefix sums in place (one element longer).
void make_prefix_sums(std::vector<std::uint64_t>& costs);

// The costliest range's cost under the given starts (for "before" figures).
std::uint64_t bottleneck_of(const std::vector<std::uint64_t>& costs, const std::vector<std::uint64_t>& starts);

}  // namespace reshard

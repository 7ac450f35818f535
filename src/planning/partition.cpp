#include "reshard/planning/partition.hpp"

#include <algorithm>
#include <numeric>

namespace reshard {
namespace {

// prefix[i] = sum of costs[0..i).
std::vector<std::uint64_t> prefix_sums(const std::vector<std::uint64_t>& costs) {
  std::vector<std::uint64_t> prefix(costs.size() + 1, 0);
  for (std::size_t i = 0; i < costs.size(); ++i) prefix[i + 1] = prefix[i] + costs[i];
  return prefix;
}

// Greedy: each range takes as many items as fit under `limit`. Returns the
// starts, or an empty vector when more than `parts` ranges would be needed.
std::vector<std::uint64_t> greedy_starts(const std::vector<std::uint64_t>& prefix, std::uint64_t limit,
                                         std::uint64_t parts) {
  const std::uint64_t n = prefix.size() - 1;
  std::vector<std::uint64_t> starts;
  std::uint64_t begin = 0;
  while (begin < n) {
    if (starts.size() == parts) return {};
    starts.push_back(begin);
    // The last end with prefix[end] - prefix[begin] <= limit.
    const auto it =
        std::upper_bound(prefix.begin() + static_cast<std::ptrdiff_t>(begin) + 1, prefix.end(), prefix[begin] + limit);
    const auto end = static_cast<std::uint64_t>(it - prefix.begin()) - 1;
    if (end == begin) return {};  // one item costs more than the limit
    begin = end;
  }
  return starts;
}

}  // namespace

Partition balanced_partition(const std::vector<std::uint64_t>& costs, std::uint64_t parts) {
  return balanced_partition_of_prefix(prefix_sums(costs), parts);
}

void make_prefix_sums(std::vector<std::uint64_t>& costs) {
  std::uint64_t total = 0;
  for (auto& cost : costs) {
    const std::uint64_t here = cost;
    cost = total;
    total += here;
  }
  costs.push_back(total);
}

Partition balanced_partition_of_prefix(const std::vector<std::uint64_t>& prefix, std::uint64_t parts) {
  Partition out;
  const std::uint64_t n = prefix.empty() ? 0 : prefix.size() - 1;
  if (n == 0 || parts == 0) {
    out.starts = {0};
    return out;
  }
  parts = std::min(parts, n);
  std::uint64_t low = 0;
  for (std::uint64_t i = 0; i < n; ++i) low = std::max(low, prefix[i + 1] - prefix[i]);
  std::uint64_t high = prefix.back();
  // Invariant: `high` is feasible; everything below `low` is not.
  while (low < high) {
    const std::uint64_t mid = low + (high - low) / 2;
    if (greedy_starts(prefix, mid, parts).empty()) {
      low = mid + 1;
    } else {
      high = mid;
    }
  }
  out.bottleneck = high;
  out.starts = greedy_starts(prefix, high, parts);
  // Split the longest ranges until there are `parts`: a part of a range
  // costs no more than the range.
  while (out.starts.size() < parts) {
    std::size_t widest = 0;
    std::uint64_t widest_length = 0;
    for (std::size_t r = 0; r < out.starts.size(); ++r) {
      const std::uint64_t end = r + 1 < out.starts.size() ? out.starts[r + 1] : n;
      if (end - out.starts[r] > widest_length) {
        widest_length = end - out.starts[r];
        widest = r;
      }
    }
    out.starts.insert(out.starts.begin() + static_cast<std::ptrdiff_t>(widest) + 1,
                      out.starts[widest] + widest_length / 2);
  }
  return out;
}

std::uint64_t bottleneck_of(const std::vector<std::uint64_t>& costs, const std::vector<std::uint64_t>& starts) {
  std::uint64_t worst = 0;
  for (std::size_t r = 0; r < starts.size(); ++r) {
    const std::uint64_t begin = std::min<std::uint64_t>(starts[r], costs.size());
    const std::uint64_t end =
        r + 1 < starts.size() ? std::min<std::uint64_t>(starts[r + 1], costs.size()) : costs.size();
    worst = std::max(worst, std::accumulate(costs.begin() + static_cast<std::ptrdiff_t>(begin),
                                            costs.begin() + static_cast<std::ptrdiff_t>(end), std::uint64_t{0}));
  }
  return worst;
}

}  // namespace reshard

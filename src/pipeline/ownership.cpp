#include "reshard/pipeline/ownership.hpp"

#include <algorithm>

namespace reshard {

Ownership assign_owners(const OwnershipProblem& problem) {
  const auto ranks = static_cast<std::size_t>(problem.ranks);
  const std::uint64_t shards = problem.shard_count;
  // Per shard, who holds how much of it.
  std::vector<std::vector<std::pair<int, std::uint64_t>>> holders(shards);
  std::vector<std::uint64_t> total(shards, 0);
  std::vector<std::uint64_t> read(ranks, 0);
  std::uint64_t everything = 0;
  for (std::size_t p = 0; p < ranks; ++p) {
    for (const auto& [shard, count] : problem.held[p]) {
      if (count == 0) continue;
      holders[shard].emplace_back(static_cast<int>(p), count);
      total[shard] += count;
      read[p] += count;
      everything += count;
    }
  }
  const double average = static_cast<double>(everything) / static_cast<double>(ranks);
  std::vector<double> capacity(ranks);
  for (std::size_t p = 0; p < ranks; ++p) {
    // A rank may keep what it read even above the balance limit: moving it
    // would cost network and not fix the read imbalance.
    capacity[p] = std::max((1.0 + problem.epsilon) * average, static_cast<double>(read[p]));
  }

  // Shards with the largest single holding first (ties: lower shard
  // number); each goes to the holder with most of it that has room, the
  // least-loaded one among equals. Every rank derives the same assignment.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> order;  // (largest holding, shard)
  for (std::uint64_t d = 0; d < shards; ++d) {
    if (problem.skip[d] || holders[d].empty()) continue;
    std::uint64_t best = 0;
    for (const auto& holder : holders[d]) best = std::max(best, holder.second);
    order.emplace_back(best, d);
  }
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  std::vector<int> owner(shards, DestinationOwner::kNobody);
  std::vector<double> load(ranks, 0);
  for (const auto& [largest, d] : order) {
    int chosen = DestinationOwner::kNobody;
    std::uint64_t chosen_count = 0;
    for (const auto& [p, count] : holders[d]) {
      const auto pu = static_cast<std::size_t>(p);
      if (load[pu] + static_cast<double>(total[d]) > capacity[pu]) continue;
      const bool better =
          chosen == DestinationOwner::kNobody || count > chosen_count ||
          (count == chosen_count && (load[pu] < load[static_cast<std::size_t>(chosen)] ||
                                     (load[pu] == load[static_cast<std::size_t>(chosen)] && p < chosen)));
      if (better) {
        chosen = p;
        chosen_count = count;
      }
    }
    if (chosen == DestinationOwner::kNobody) continue;
    owner[d] = chosen;
    load[static_cast<std::size_t>(chosen)] += static_cast<double>(total[d]);
  }
  // A shard that fits on none of its holders: try one repair first, moving
  // another shard e off a full holder p to e's other holder q with room, when
  // that leaves less to send than placing the shard on a stranger.
  auto held_by = [&](std::uint64_t d, int p) -> std::uint64_t {
    for (const auto& [holder, count] : holders[d]) {
      if (holder == p) return count;
    }
    return 0;
  };
  auto fits = [&](int p, std::uint64_t d) {
    return load[static_cast<std::size_t>(p)] + static_cast<double>(total[d]) <= capacity[static_cast<std::size_t>(p)];
  };
  std::vector<std::vector<std::uint64_t>> owned_by(ranks);
  for (std::uint64_t d = 0; d < shards; ++d) {
    if (owner[d] != DestinationOwner::kNobody) owned_by[static_cast<std::size_t>(owner[d])].push_back(d);
  }
  std::vector<std::uint64_t> leftovers;
  for (const auto& [largest, d] : order) {
    if (owner[d] == DestinationOwner::kNobody) leftovers.push_back(d);
  }
  for (auto d : leftovers) {
    std::int64_t best_gain = 0;
    int best_p = -1;
    int best_q = -1;
    std::uint64_t best_e = 0;
    for (const auto& [p, count_d] : holders[d]) {
      const auto pu = static_cast<std::size_t>(p);
      for (auto e : owned_by[pu]) {
        if (load[pu] - static_cast<double>(total[e]) + static_cast<double>(total[d]) > capacity[pu]) continue;
        for (const auto& [q, count_e] : holders[e]) {
          if (q == p || !fits(q, e)) continue;
          // Sending d to a stranger costs total[d]; this costs what p lacks of
          // d plus what e loses by leaving p for q.
          const auto gain = static_cast<std::int64_t>(count_d) -
                            (static_cast<std::int64_t>(held_by(e, p)) - static_cast<std::int64_t>(count_e));
          if (gain > best_gain) {
            best_gain = gain;
            best_p = p;
            best_q = q;
            best_e = e;
          }
        }
      }
    }
    if (best_p < 0) continue;
    auto& list = owned_by[static_cast<std::size_t>(best_p)];
    list.erase(std::find(list.begin(), list.end(), best_e));
    owned_by[static_cast<std::size_t>(best_q)].push_back(best_e);
    owner[best_e] = best_q;
    load[static_cast<std::size_t>(best_p)] += static_cast<double>(total[d]) - static_cast<double>(total[best_e]);
    load[static_cast<std::size_t>(best_q)] += static_cast<double>(total[best_e]);
    owner[d] = best_p;
    owned_by[static_cast<std::size_t>(best_p)].push_back(d);
  }
  // What still did not fit where it lives goes to the least-loaded rank,
  // largest first; empty shards are spread round-robin (a write, no data).
  leftovers.clear();
  for (std::uint64_t d = 0; d < shards; ++d) {
    if (!problem.skip[d] && owner[d] == DestinationOwner::kNobody && total[d] > 0) leftovers.push_back(d);
  }
  std::stable_sort(leftovers.begin(), leftovers.end(), [&](auto a, auto b) { return total[a] > total[b]; });
  for (auto d : leftovers) {
    const auto least = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[d] = static_cast<int>(least);
    load[least] += static_cast<double>(total[d]);
  }
  Ownership result;
  for (std::uint64_t d = 0; d < shards; ++d) {
    if (problem.skip[d]) continue;
    if (total[d] == 0) owner[d] = static_cast<int>(d % ranks);
    std::uint64_t kept = 0;
    std::uint64_t best = 0;
    for (const auto& [p, count] : holders[d]) {
      if (p == owner[d]) kept = count;
      best = std::max(best, count);
    }
    result.entries_moved += total[d] - kept;
    result.entries_lower_bound += total[d] - best;
  }
  result.owner = DestinationOwner(std::move(owner));
  return result;
}

}  // namespace reshard

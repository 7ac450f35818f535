#include "reshard/pipeline/memory_budget.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>

namespace reshard {

std::uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) : 0;
}

std::uint64_t resident_set_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size_pages = 0;
  std::uint64_t resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages)) return 0;
  return resident_pages * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

std::uint64_t default_memory_limit(int ranks_on_node) {
  const double share = kDefaultMemoryFraction * static_cast<double>(physical_memory_bytes());
  return static_cast<std::uint64_t>(share / std::max(1, ranks_on_node));
}

namespace {

// Per-rank totals of the wave being built.
struct WaveLoad {
  std::vector<std::uint64_t> send, keep_and_receive, largest_assembly;

  explicit WaveLoad(int ranks)
      : send(static_cast<std::size_t>(ranks)),
        keep_and_receive(static_cast<std::size_t>(ranks)),
        largest_assembly(static_cast<std::size_t>(ranks)) {}

  void add(const WaveProblem& problem, std::uint64_t shard, std::uint64_t total, std::uint64_t assembly) {
    const auto owner = static_cast<std::size_t>(problem.owner[shard]);
    for (std::size_t p = 0; p < send.size(); ++p) {
      if (p != owner) send[p] += problem.held[p][shard];
    }
    keep_and_receive[owner] += total;
    largest_assembly[owner] = std::max(largest_assembly[owner], assembly);
  }

  std::uint64_t need(const WaveProblem& problem, std::size_t p) const {
    return problem.resident[p] + memory_cost::kEntryBytes * keep_and_receive[p] +
           std::max(memory_cost::kEntryBytes * send[p], largest_assembly[p]);
  }

  std::uint64_t worst(const WaveProblem& problem) const {
    std::uint64_t worst = 0;
    for (std::size_t p = 0; p < send.size(); ++p) worst = std::max(worst, need(problem, p));
    return worst;
  }
};

}  // namespace

WavePlan plan_waves(const WaveProblem& problem) {
  WavePlan plan;
  const std::size_t shards = problem.owner.size();
  std::vector<std::uint64_t> current;
  WaveLoad load(problem.ranks);
  for (std::uint64_t d = 0; d < shards; ++d) {
    if (problem.owner[d] < 0) continue;
    std::uint64_t total = 0;
    for (const auto& held : problem.held) total += held[d];
    const std::uint64_t assembly = memory_cost::assemble(total, problem.majors[d], problem.ids[d]);
    WaveLoad grown = load;
    grown.add(problem, d, total, assembly);
    if (grown.worst(problem) > problem.working_bytes && !current.empty()) {
      plan.peak_bytes = std::max(plan.peak_bytes, load.worst(problem));
      plan.waves.push_back(std::move(current));
      current.clear();
      load = WaveLoad(problem.ranks);
      grown = load;
      grown.add(problem, d, total, assembly);
    }
    if (grown.worst(problem) > problem.working_bytes) {
      const int owner = problem.owner[d];
      plan.too_large = ShardTooLarge{d, owner, total, grown.need(problem, static_cast<std::size_t>(owner))};
      plan.waves.clear();
      return plan;
    }
    load = std::move(grown);
    current.push_back(d);
  }
  if (!current.empty()) {
    plan.peak_bytes = std::max(plan.peak_bytes, load.worst(problem));
    plan.waves.push_back(std::move(current));
  }
  return plan;
}

WaveChoice choose_waves(const WaveProblem& problem) {
  WaveChoice kept{plan_waves(problem), false};
  const bool any_resident =
      std::any_of(problem.resident.begin(), problem.resident.end(), [](std::uint64_t bytes) { return bytes != 0; });
  if (!any_resident) return kept;
  WaveProblem all_spilled = problem;
  all_spilled.resident.assign(all_spilled.resident.size(), 0);
  WaveChoice spilled{plan_waves(all_spilled), true};
  if (kept.plan.too_large) return spilled;
  if (!spilled.plan.too_large && spilled.plan.waves.size() < kept.plan.waves.size()) return spilled;
  return kept;
}

}  // namespace reshard

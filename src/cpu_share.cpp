#include "reshard/cpu_share.hpp"

#include <sched.h>

#include <algorithm>
#include <thread>

namespace reshard {

int cpus_this_process_may_use() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) != 0) return cpus_of_node();
  return std::max(1, CPU_COUNT(&mask));
}

int cpus_of_node() { return std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }

int share_of_node(int node_cpus, int ranks_on_node) { return std::max(1, node_cpus / std::max(1, ranks_on_node)); }

ThreadCounts thread_counts(int configured, int cpus_allowed, int node_cpus, int ranks_on_node) {
  if (configured > 0) return {configured, configured};
  const int allowed = std::max(1, cpus_allowed);
  const int stages = std::min(allowed, share_of_node(node_cpus, ranks_on_node));
  return {stages, std::max(stages, allowed)};
}

bool bound_below_share(int cpus_allowed, int node_cpus, int ranks_on_node) {
  return cpus_allowed < share_of_node(node_cpus, ranks_on_node);
}

std::optional<std::string> binding_warning(int bound_ranks, int ranks, int cpus_allowed, int node_cpus,
                                           int ranks_on_node) {
  if (bound_ranks <= 0) return std::nullopt;
  std::string figures;
  if (bound_below_share(cpus_allowed, node_cpus, ranks_on_node)) {
    figures = " (this one may run on " + std::to_string(cpus_allowed) + " of " + std::to_string(node_cpus) +
              ", its share is " + std::to_string(share_of_node(node_cpus, ranks_on_node)) + ")";
  }
  return std::to_string(bound_ranks) + " of " + std::to_string(ranks) +
         " rank(s) may run on fewer CPUs than their share of their node" + figures +
         ", so their threads take turns on the same cores: the launcher binds them; start the job with mpirun "
         "--bind-to none, or srun --cpus-per-task";
}

}  // namespace reshard

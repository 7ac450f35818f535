// How many threads a rank runs. The read, bucket and assembly stages run on
// every rank at once, so each rank takes its share of the node. The write
// stage does not: the owner of a hot shard can deflate for seconds after
// the other ranks of its node are done and asleep in a barrier
// (MpiComm::barrier), so its compressors may use every CPU the rank can run
// on. A launcher that binds ranks (mpirun binds each rank to one core when
// it starts two or fewer) narrows what "can run on" means, and threads
// beyond it only take turns on the same cores.
#pragma once

#include <optional>
#include <string>

namespace reshard {

// CPUs in this process's affinity mask, at least 1.
int cpus_this_process_may_use();
// The node's online CPUs, at least 1.
int cpus_of_node();

// A rank's share of its node: node_cpus / ranks_on_node, at least 1.
int share_of_node(int node_cpus, int ranks_on_node);

struct ThreadCounts {
  int stages = 1;  // read (inflate), bucket, assemble
  int write = 1;   // the write stage's compressors
};

// `configured` > 0 (--threads) is used everywhere. Otherwise the stages take
// the rank's share of the node, node_cpus / ranks_on_node, but no more than
// the CPUs it may use; the write takes all of those.
ThreadCounts thread_counts(int configured, int cpus_allowed, int node_cpus, int ranks_on_node);

// Whether a rank may use fewer CPUs than its share of its node: then its
// launcher bound it, and its threads take turns on the same cores.
bool bound_below_share(int cpus_allowed, int node_cpus, int ranks_on_node);
// The job's warning when `bound_ranks` of `ranks` are; nullopt when none
// is. The rank that words it adds its own figures when it is one of them.
std::optional<std::string> binding_warning(int bound_ranks, int ranks, int cpus_allowed, int node_cpus,
                                           int ranks_on_node);

}  // namespace reshard

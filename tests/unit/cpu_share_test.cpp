#include "reshard/cpu_share.hpp"

#include <gtest/gtest.h>
#include <sched.h>

namespace reshard {
namespace {

TEST(ThreadCounts, AnExplicitCountIsUsedEverywhere) {
  const ThreadCounts counts = thread_counts(3, 1, 64, 8);
  EXPECT_EQ(counts.stages, 3);
  EXPECT_EQ(counts.write, 3);
}

TEST(ThreadCounts, OneRankPerNodeTakesTheNode) {
  const ThreadCounts counts = thread_counts(0, 32, 32, 1);
  EXPECT_EQ(counts.stages, 32);
  EXPECT_EQ(counts.write, 32);
}

TEST(ThreadCounts, UnboundRanksShareTheNodeButTheWriteMayUseAllOfIt) {
  // Two ranks on two cores: the shuffle stages take one core each; the
  // owner of a hot shard deflates on both once the other rank sleeps.
  const ThreadCounts two = thread_counts(0, 2, 2, 2);
  EXPECT_EQ(two.stages, 1);
  EXPECT_EQ(two.write, 2);
  const ThreadCounts four = thread_counts(0, 32, 32, 4);
  EXPECT_EQ(four.stages, 8);
  EXPECT_EQ(four.write, 32);
  // More ranks than CPUs: still one thread each.
  const ThreadCounts crowded = thread_counts(0, 2, 2, 3);
  EXPECT_EQ(crowded.stages, 1);
  EXPECT_EQ(crowded.write, 2);
}

TEST(ThreadCounts, ABoundRankUsesOnlyTheCpusItMayRunOn) {
  // mpirun's default for two ranks: each bound to one core.
  const ThreadCounts core = thread_counts(0, 1, 2, 2);
  EXPECT_EQ(core.stages, 1);
  EXPECT_EQ(core.write, 1);
  // One rank per node bound to one socket of two.
  const ThreadCounts socket = thread_counts(0, 16, 32, 1);
  EXPECT_EQ(socket.stages, 16);
  EXPECT_EQ(socket.write, 16);
}

TEST(BindingWarning, OnlyWhenARankMayUseLessThanItsShare) {
  EXPECT_FALSE(bound_below_share(1, 2, 2));  // two ranks on two cores, one each
  EXPECT_FALSE(bound_below_share(2, 2, 2));
  EXPECT_TRUE(bound_below_share(1, 32, 1));  // srun's one CPU per task
  EXPECT_TRUE(bound_below_share(16, 32, 1));
  EXPECT_FALSE(binding_warning(0, 4, 1, 32, 1).has_value());
  const auto warning = binding_warning(3, 4, 1, 32, 1);
  ASSERT_TRUE(warning.has_value());
  EXPECT_NE(warning->find("3 of 4 rank(s)"), std::string::npos) << *warning;
  EXPECT_NE(warning->find("this one may run on 1 of 32, its share is 32"), std::string::npos) << *warning;
  EXPECT_NE(warning->find("--bind-to none"), std::string::npos) << *warning;
  // Worded by a rank that is not bound itself: no figures of its own.
  const auto from_unbound = binding_warning(1, 4, 32, 32, 1);
  ASSERT_TRUE(from_unbound.has_value());
  EXPECT_EQ(from_unbound->find("this one"), std::string::npos) << *from_unbound;
}

TEST(CpusThisProcessMayUse, CountsTheAffinityMask) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  ASSERT_EQ(sched_getaffinity(0, sizeof mask, &mask), 0);
  EXPECT_EQ(cpus_this_process_may_use(), CPU_COUNT(&mask));
  EXPECT_LE(cpus_this_process_may_use(), cpus_of_node());
  // Narrowed to one CPU, as a launcher that binds would: the count follows
  // the mask, not the node.
  int first = 0;
  while (!CPU_ISSET(first, &mask)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const int narrowed = cpus_this_process_may_use();
  ASSERT_EQ(sched_setaffinity(0, sizeof mask, &mask), 0);
  EXPECT_EQ(narrowed, 1);
}

}  // namespace
}  // namespace reshard

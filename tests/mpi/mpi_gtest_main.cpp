// GoogleTest main for tests run under mpiexec: MPI is up for every test, and
// only rank 0 prints, so failures on any rank still fail the process.
#include <gtest/gtest.h>

#include "reshard/mpi_comm.hpp"

int main(int argc, char** argv) {
  reshard::MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  auto comm = reshard::make_world_comm();
  if (comm->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  // A failure on any rank fails the whole run.
  const std::uint64_t any_failed = comm->max(failed != 0 ? 1 : 0);
  return any_failed != 0 ? 1 : 0;
}

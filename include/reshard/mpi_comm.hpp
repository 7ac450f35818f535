// Comm over an MPI communicator. Only this header and mpi_comm.cpp see mpi.h.
#pragma once

#include <memory>

#include "reshard/comm.hpp"

namespace reshard {

// Wraps MPI_COMM_WORLD; MPI must already be initialized.
std::unique_ptr<Comm> make_world_comm();

// RAII for MPI_Init_thread / MPI_Finalize.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

}  // namespace reshard

// `mpi_reshard plan`: prints what a reshard would do (skew, movement,
// memory) and proposes balanced or load-weighted boundaries.
#pragma once

#include "reshard/comm.hpp"

int run_plan_command(int argc, char** argv, reshard::Comm& comm);

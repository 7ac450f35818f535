// `mpi_reshard verify`: re-reads a published destination and checks every
// shard against the manifest and _SUCCESS (and, on request, the source).
// Collective; works on any rank count, including one.
#pragma once

#include <string>
#include <vector>

#include "reshard/comm.hpp"
#include "reshard/status.hpp"

namespace reshard {

struct VerifyOutcome {
  std::vector<std::string> problems;  // one line each, sorted; empty means verified
  std::string summary;                // rank 0
};

// A Status error means verify could not run at all (e.g. bad pattern);
// problems found in the data are in VerifyOutcome::problems.
Result<VerifyOutcome> run_verify(Comm& comm, const std::string& dst_pattern, bool against_source);

}  // namespace reshard

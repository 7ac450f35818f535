// The whole reshard as its stages: plan -> read -> bucket -> exchange ->
// assemble -> write -> commit. Collective over `comm`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reshard/comm.hpp"
#include "reshard/pipeline/job_config.hpp"
#include "reshard/status.hpp"

namespace reshard {

struct JobOutcome {
  // Filled on rank 0 only: the --report document (docs/operations.md).
  nlohmann::json report;
  // One-paragraph human summary, rank 0 only.
  std::string summary;
  // Problems after the dataset was published, which do not undo the
  // success (rank 0 only): the app prints each as a warning.
  std::vector<std::string> warnings;
};

// On failure every rank returns the same Status; exit with status.exit_code().
Result<JobOutcome> run_reshard(Comm& comm, const JobConfig& config, const ProgressSink& progress);

}  // namespace reshard

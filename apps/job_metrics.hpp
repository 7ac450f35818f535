// --metrics-file and --pushgateway: the job's figures as Prometheus metrics,
// written by rank 0 at each progress step and at the end (success or not),
// and pushed once at the end. Losing metrics never fails a job: problems are
// returned as warnings.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reshard/metrics.hpp"
#include "reshard/pipeline/job_config.hpp"

namespace console {

class JobMetrics {
 public:
  JobMetrics(std::string file, std::string gateway);
  bool enabled() const { return !file_.empty() || !gateway_.empty(); }
  void progress(const reshard::ProgressEvent& event);
  // `report` is null when the job failed with `exit_code`.
  std::vector<std::string> finish(const nlohmann::json* report, int exit_code);

 private:
  std::vector<reshard::MetricFamily> common(bool running, int exit_code) const;
  std::string write_file(const std::vector<reshard::MetricFamily>& families);

  using Clock = std::chrono::steady_clock;
  std::string file_;
  std::string gateway_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_write_{};
  std::string stage_ = "start";
  double fraction_ = 0;
  std::uint64_t stage_entries_ = 0;
  // From the file an earlier run left, so a failed run keeps the time of
  // the last success (what an alert on staleness looks at).
  double last_success_ = 0;
  std::string last_problem_;
};

}  // namespace console

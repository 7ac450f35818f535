// What mpi_reshard prints while it runs: progress lines for people
// (--progress, -v) and JSON lines for programs (--progress-json), each with
// the time so far, an estimate of the time left and rank 0's rate.
#pragma once

#include <chrono>
#include <string>

#include "reshard/pipeline/job_config.hpp"

namespace console {

// -q: errors and warnings only; default: also the closing summary; -v: also
// progress lines and the seconds each stage took.
enum class Verbosity { kQuiet, kNormal, kVerbose };

class ProgressPrinter {
 public:
  ProgressPrinter(bool text_lines, bool json_lines);
  void operator()(const reshard::ProgressEvent& event);

 private:
  using Clock = std::chrono::steady_clock;
  bool text_lines_;
  bool json_lines_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point stage_start_ = start_;
  Clock::time_point last_event_ = start_;
  std::string stage_;
};

}  // namespace console

#include "console.hpp"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "reshard/json_text.hpp"
#include "reshard/units.hpp"

namespace console {
namespace {

double rounded(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

}  // namespace

ProgressPrinter::ProgressPrinter(bool text_lines, bool json_lines) : text_lines_(text_lines), json_lines_(json_lines) {}

void ProgressPrinter::operator()(const reshard::ProgressEvent& event) {
  const auto now = Clock::now();
  // A stage's rate counts from the previous stage's last event, when its
  // work began, not from its own first event, which comes after some of it.
  if (event.stage != stage_) {
    stage_ = event.stage;
    stage_start_ = last_event_;
  }
  last_event_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double in_stage = std::chrono::duration<double>(now - stage_start_).count();
  // Below 5% the extrapolation is mostly start-up cost; at 100% nothing is left.
  const bool has_eta = event.fraction >= 0.05 && event.fraction < 1.0;
  const double eta = has_eta ? elapsed * (1.0 - event.fraction) / event.fraction : 0.0;
  const bool has_rate = event.entries > 0 && in_stage > 0.001;
  const double rate = has_rate ? static_cast<double>(event.entries) / in_stage : 0.0;
  if (text_lines_) {
    std::string line = event.detail;
    if (has_rate) line += "; " + reshard::format_count(rate) + " entries/s on rank 0";
    line += "; " + reshard::format_seconds(elapsed) + " elapsed";
    if (has_eta) line += ", about " + reshard::format_seconds(eta) + " left";
    std::fprintf(stderr, "progress %5.1f%% %-8s %s\n", event.fraction * 100.0, event.stage.c_str(),
                 reshard::printable(line).c_str());
    std::fflush(stderr);
  }
  if (json_lines_) {
    nlohmann::json line = {{"progress", rounded(event.fraction, 4)},
                           {"stage", event.stage},
                           {"detail", event.detail},
                           {"elapsed_s", rounded(elapsed, 2)},
                           {"eta_s", has_eta ? nlohmann::json(rounded(eta, 1)) : nlohmann::json(nullptr)},
                           {"entries", event.entries},
                           {"entries_per_s", has_rate ? nlohmann::json(std::llround(rate)) : nlohmann::json(nullptr)}};
    reshard::escape_strings(line);
    std::fprintf(stdout, "%s\n", line.dump().c_str());
    std::fflush(stdout);
  }
}

}  // namespace console

#include "job_metrics.hpp"

#include <fstream>
#include <sstream>

namespace console {
namespace {

using reshard::MetricFamily;

MetricFamily gauge(const std::string& name, const std::string& help, double value) {
  return {name, help, "gauge", {{{}, value}}};
}

MetricFamily counter(const std::string& name, const std::string& help, double value) {
  return {name, help, "counter", {{{}, value}}};
}

double number(const nlohmann::json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_number()) return 0;
  return object[key].get<double>();
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

JobMetrics::JobMetrics(std::string file, std::string gateway) : file_(std::move(file)), gateway_(std::move(gateway)) {
  if (file_.empty()) return;
  std::ifstream earlier(file_);
  std::string line;
  const std::string key = "reshard_last_success_timestamp_seconds ";
  while (std::getline(earlier, line)) {
    if (line.rfind(key, 0) != 0) continue;
    try {
      last_success_ = std::stod(line.substr(key.size()));
    } catch (const std::exception&) {
      last_success_ = 0;
    }
  }
}

std::vector<MetricFamily> JobMetrics::common(bool running, int exit_code) const {
  std::vector<MetricFamily> families;
  families.push_back(gauge("reshard_job_running", "1 while the reshard runs, 0 once it ended", running ? 1 : 0));
  families.push_back(gauge("reshard_progress_ratio", "Fraction of the whole job done (0 to 1)", fraction_));
  families.push_back(
      {"reshard_current_stage", "The stage rank 0 is in (1 for the current one)", "gauge", {{{{"stage", stage_}}, 1}}});
  families.push_back(gauge("reshard_stage_entries", "Entries rank 0 has read or written in the current stage",
                           static_cast<double>(stage_entries_)));
  families.push_back(gauge("reshard_elapsed_seconds", "Seconds since the job started",
                           std::chrono::duration<double>(Clock::now() - start_).count()));
  if (!running) {
    families.push_back(gauge("reshard_exit_code", "The job's exit code (docs/operations.md)", exit_code));
    families.push_back(gauge("reshard_job_success", "1 when the job published its destination", exit_code == 0));
  }
  if (last_success_ > 0) {
    families.push_back(gauge("reshard_last_success_timestamp_seconds",
                             "Unix time the last successful run of this job ended", last_success_));
  }
  return families;
}

std::string JobMetrics::write_file(const std::vector<MetricFamily>& families) {
  if (file_.empty()) return "";
  const auto status = reshard::write_file_atomically(file_, reshard::render_prometheus(families));
  return status.ok() ? "" : "--metrics-file: " + status.message();
}

void JobMetrics::progress(const reshard::ProgressEvent& event) {
  if (file_.empty()) return;
  const bool new_stage = event.stage != stage_;
  stage_ = event.stage;
  fraction_ = event.fraction;
  stage_entries_ = event.entries;
  // A scrape every 15 s or so needs no more than a write a second.
  const auto now = Clock::now();
  if (!new_stage && now - last_write_ < std::chrono::seconds(1)) return;
  last_write_ = now;
  const std::string problem = write_file(common(true, 0));
  // Said once at the end, not at every step.
  if (!problem.empty()) last_problem_ = problem;
}

std::vector<std::string> JobMetrics::finish(const nlohmann::json* report, int exit_code) {
  std::vector<std::string> warnings;
  if (!enabled()) return warnings;
  if (report != nullptr) {
    fraction_ = 1;
    stage_ = "done";
    last_success_ = now_seconds();
  }
  std::vector<MetricFamily> families = common(false, exit_code);
  if (report != nullptr) {
    const auto& r = *report;
    const nlohmann::json totals = r.value("totals", nlohmann::json::object());
    families.push_back(counter("reshard_entries_read_total", "Entries read from the source shards", number(r, "nnz")));
    families.push_back(counter("reshard_entries_written_total", "Entries written to destination shards",
                               number(r.value("destination_fingerprint", nlohmann::json::object()), "nnz")));
    families.push_back(
        counter("reshard_entries_sent_total", "Entries sent to other ranks", number(totals, "entries_sent")));
    families.push_back(counter("reshard_read_bytes_total", "Bytes read from the source", number(totals, "bytes_read")));
    families.push_back(
        counter("reshard_written_bytes_total", "Bytes written to the destination", number(totals, "bytes_written")));
    families.push_back(counter("reshard_sent_bytes_total", "Bytes sent between ranks", number(totals, "bytes_sent")));
    families.push_back(
        counter("reshard_spilled_bytes_total", "Bytes spilled to scratch files", number(totals, "bytes_spilled")));
    families.push_back(
        counter("reshard_storage_retries_total", "Storage requests retried", number(totals, "storage_retries")));
    families.push_back(counter("reshard_credential_refreshes_total", "Temporary cloud credentials fetched again",
                               number(totals, "credential_refreshes")));
    MetricFamily stages{"reshard_stage_seconds", "Seconds rank 0 spent in each stage", "gauge", {}};
    if (r.contains("seconds") && r["seconds"].is_object()) {
      for (const auto& [stage, seconds] : r["seconds"].items()) {
        if (seconds.is_number()) stages.samples.push_back({{{"stage", stage}}, seconds.get<double>()});
      }
    }
    families.push_back(stages);
    families.push_back(
        gauge("reshard_job_duration_seconds", "Wall seconds of the whole job", number(r, "wall_seconds")));
    const double done = number(totals, "destination_shards_written") + number(totals, "destination_shards_reused") +
                        number(r, "destination_shards_kept");
    families.push_back(gauge("reshard_destination_shards_done", "Destination shards in place", done));
    families.push_back(
        gauge("reshard_destination_shards", "Destination shards of the new scheme", number(r, "destination_shards")));
    double peak = 0;
    if (r.contains("per_rank") && r["per_rank"].is_array()) {
      for (const auto& rank : r["per_rank"]) peak = std::max(peak, number(rank, "peak_rss_bytes"));
    }
    families.push_back(gauge("reshard_peak_rss_bytes", "Largest peak resident memory of any rank", peak));
    families.push_back(gauge("reshard_shard_imbalance_ratio",
                             "Entries of the largest written shard over the mean, minus 1",
                             number(r.value("skew", nlohmann::json::object()), "imbalance")));
  }
  const std::string text = reshard::render_prometheus(families);
  if (!file_.empty()) {
    const auto status = reshard::write_file_atomically(file_, text);
    if (!status.ok()) last_problem_ = "--metrics-file: " + status.message();
  }
  if (!last_problem_.empty()) warnings.push_back(last_problem_);
  if (!gateway_.empty()) {
    const auto status = reshard::push_to_gateway(gateway_, "mpi_reshard", text);
    if (!status.ok()) warnings.push_back("--pushgateway: " + status.message());
  }
  return warnings;
}

}  // namespace console

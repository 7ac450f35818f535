// Prometheus text exposition (format 0.0.4): what a node_exporter textfile
// collector scrapes and what a Pushgateway accepts. Rendering is pure; the
// two ways out (a file replaced atomically, a push) are separate.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reshard/status.hpp"

namespace reshard {

struct MetricSample {
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

struct MetricFamily {
  std::string name;  // reshard_..._total for counters, base units (_bytes, _seconds)
  std::string help;
  std::string type;  // "counter" or "gauge"
  std::vector<MetricSample> samples;
};

std::string render_prometheus(const std::vector<MetricFamily>& families);

// Writes `text` to `path` through a temporary file in the same directory
// and a rename, so a collector never reads half a file. The temporary name
// does not end in .prom, which the textfile collector would pick up.
Status write_file_atomically(const std::string& path, std::string_view text);

// PUT <gateway>/metrics/job/<job>: replaces the job's group, as the
// Pushgateway documents for batch jobs that push once at the end.
Status push_to_gateway(const std::string& gateway, const std::string& job, const std::string& text);

}  // namespace reshard

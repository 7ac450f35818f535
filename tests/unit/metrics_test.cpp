#include "reshard/metrics.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace reshard {
namespace {

TEST(Prometheus, RendersHelpTypeLabelsAndEscapes) {
  const std::vector<MetricFamily> families = {
      {"reshard_read_bytes_total", "Bytes read\nfrom the source", "counter", {{{}, 1234567890123}}},
      {"reshard_stage_seconds", "Seconds per stage", "gauge", {{{{"stage", "a\"b\\c"}}, 0.25}, {{{"stage", "x"}}, 2}}},
  };
  EXPECT_EQ(render_prometheus(families),
            "# HELP reshard_read_bytes_total Bytes read\\nfrom the source\n"
            "# TYPE reshard_read_bytes_total counter\n"
            "reshard_read_bytes_total 1234567890123\n"
            "# HELP reshard_stage_seconds Seconds per stage\n"
            "# TYPE reshard_stage_seconds gauge\n"
            "reshard_stage_seconds{stage=\"a\\\"b\\\\c\"} 0.25\n"
            "reshard_stage_seconds{stage=\"x\"} 2\n");
}

TEST(Prometheus, FileIsReplacedWholeAndNoTemporaryIsLeft) {
  const auto dir = std::filesystem::temp_directory_path() / ("reshard-metrics-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "m.prom").string();
  ASSERT_TRUE(write_file_atomically(path, "first 1\n").ok());
  ASSERT_TRUE(write_file_atomically(path, "second 2\n").ok());
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "second 2\n");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()), 1);
  const auto refused = write_file_atomically((dir / "missing" / "m.prom").string(), "x 1\n");
  EXPECT_FALSE(refused.ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace reshard

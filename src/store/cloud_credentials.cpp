#include "reshard/store/cloud_credentials.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace reshard {
namespace {
std::atomic<std::uint64_t> g_refreshes{0};
}  // namespace

Environment process_environment() {
  return [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
}

Result<std::optional<std::string>> read_credentials_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::optional<std::string>();
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::Invalid("reading " + path + " failed");
  return std::optional<std::string>(text.str());
}

std::int64_t unix_seconds_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool refresh_due(std::int64_t now, std::int64_t fetched_at, std::int64_t expires_at) {
  const std::int64_t lifetime = std::max<std::int64_t>(0, expires_at - fetched_at);
  const std::int64_t margin = std::min<std::int64_t>(300, lifetime / 2);
  return now >= expires_at - margin;
}

void count_credential_refresh() { g_refreshes.fetch_add(1); }
std::uint64_t credential_refreshes() { return g_refreshes.load(); }

}  // namespace reshard

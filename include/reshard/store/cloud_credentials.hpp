// What the AWS and Google credential chains share: the environment they
// read, credential files, and secrets that stop working (temporary AWS
// credentials, OAuth access tokens) with the one refresh policy both
// follow, so that a job outlives the credentials it started with.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "reshard/status.hpp"

namespace reshard {

// Reads an environment variable (std::getenv in the program, a map in tests).
// Unset and empty are the same: nullopt.
using Environment = std::function<std::optional<std::string>(const char* name)>;
Environment process_environment();

// A credentials file's text, or nullopt when it does not exist.
Result<std::optional<std::string>> read_credentials_file(const std::string& path);

std::int64_t unix_seconds_now();

// A fetched secret is due again once half its lifetime, at most 5 minutes,
// is left: long-lived ones are renewed well before they lapse, and ones that
// live seconds (tests, short STS sessions) still get some use.
bool refresh_due(std::int64_t now, std::int64_t fetched_at, std::int64_t expires_at);

// Refreshes of temporary credentials or tokens in this process, for the report.
void count_credential_refresh();
std::uint64_t credential_refreshes();

template <class Secret>
struct Expiring {
  Secret secret;
  std::int64_t expires_at = 0;  // Unix seconds; 0: never
};

// What requests are authorised with: a fixed secret, or a temporary one
// fetched again when refresh_due() says so. Thread-safe; one fetch at a
// time while the others wait. A failed refresh keeps the old secret while it
// is still valid and tries again at the next request.
template <class Secret>
class RefreshingSecret {
 public:
  using Fetch = std::function<Result<Expiring<Secret>>()>;

  explicit RefreshingSecret(Secret fixed) { held_.secret = std::move(fixed); }
  RefreshingSecret(Expiring<Secret> first, Fetch fetch)
      : held_(std::move(first)), fetched_at_(unix_seconds_now()), fetch_(std::move(fetch)) {}

  Result<Secret> current() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!fetch_ || held_.expires_at == 0) return held_.secret;
    const std::int64_t now = unix_seconds_now();
    if (!refresh_due(now, fetched_at_, held_.expires_at)) return held_.secret;
    auto fresh = fetch_();
    if (!fresh.ok()) {
      if (now < held_.expires_at) return held_.secret;
      return fresh.status().with_context("refreshing expired credentials");
    }
    held_ = std::move(fresh).value();
    fetched_at_ = now;
    count_credential_refresh();
    return held_.secret;
  }

 private:
  std::mutex mutex_;
  Expiring<Secret> held_;
  std::int64_t fetched_at_ = 0;
  Fetch fetch_;
};

}  // namespace reshard

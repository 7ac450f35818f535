// AWS credentials, region and endpoint the way the AWS SDKs find them: the
// environment, web identity (STS), the shared credentials and config files
// (profiles, credential_process), container credentials and instance
// metadata (IMDSv2).
// Temporary credentials are refreshed before they expire (cloud_credentials.hpp). The shared-file
// parser works over text; resolve() reads the files and asks the endpoints.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reshard/status.hpp"
#include "reshard/store/cloud_credentials.hpp"
#include "reshard/store/sigv4.hpp"

namespace reshard::aws {

// section -> key -> value. Credentials-file sections are profile names;
// config-file sections are "default" or "profile NAME" (returned as NAME);
// other config sections (sso-session, services) are left out.
using ProfileSections = std::map<std::string, std::map<std::string, std::string>>;
Result<ProfileSections> parse_shared_file(std::string_view text, const std::string& path, bool config_file);

using reshard::credential_refreshes;
using reshard::Environment;
using reshard::process_environment;

using ExpiringCredentials = Expiring<sigv4::Credentials>;
using CredentialsSource = RefreshingSecret<sigv4::Credentials>;
using CredentialsFetch = CredentialsSource::Fetch;

// "2026-12-03T19:00:00Z" (fractions and +00:00 allowed) as Unix seconds.
Result<std::int64_t> parse_iso8601_utc(const std::string& text);

struct Settings {
  sigv4::Credentials credentials;  // empty access key: none found
  std::string region;
  std::string endpoint;            // empty: AWS's own
  std::string credentials_source;  // "environment", "profile 'x' in FILE", ...
  // Set when the credentials are temporary: how to fetch them again.
  CredentialsFetch refresh;
  std::int64_t expires_at = 0;
  // Each link of the chain tried and why it gave no credentials, for the
  // error when none did. Never holds a secret.
  std::vector<std::string> tried;
};

// Malformed files, an AWS_PROFILE that names no profile and a failing
// credential_process are errors (exit 2); finding no credentials is not:
// the caller decides, with `tried` for the message.
Result<Settings> resolve(const Environment& env);

}  // namespace reshard::aws

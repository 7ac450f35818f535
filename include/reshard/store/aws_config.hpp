// AWS credentials, region and endpoint the way the AWS SDKs find them, for
// the links of their chain implemented so far: the environment, then the
// shared credentials and config files (profiles, credential_process). Web
// identity, container credentials and instance metadata are not yet (#14).
// The shared-file parser works over text; resolve() reads the files.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reshard/status.hpp"
#include "reshard/store/sigv4.hpp"

namespace reshard::aws {

// section -> key -> value. Credentials-file sections are profile names;
// config-file sections are "default" or "profile NAME" (returned as NAME);
// other config sections (sso-session, services) are left out.
using ProfileSections = std::map<std::string, std::map<std::string, std::string>>;
Result<ProfileSections> parse_shared_file(std::string_view text, const std::string& path, bool config_file);

// Reads an environment variable (std::getenv in the program, a map in tests).
using Environment = std::function<std::optional<std::string>(const char* name)>;
Environment process_environment();

struct Settings {
  sigv4::Credentials credentials;  // empty access key: none found
  std::string region;
  std::string endpoint;            // empty: AWS's own
  std::string credentials_source;  // "environment", "profile 'x' in FILE", ...
  // Each link of the chain tried and why it gave no credentials, for the
  // error when none did. Never holds a secret.
  std::vector<std::string> tried;
};

// Malformed files, an AWS_PROFILE that names no profile and a failing
// credential_process are errors (exit 2); finding no credentials is not:
// the caller decides, with `tried` for the message.
Result<Settings> resolve(const Environment& env);

}  // namespace reshard::aws

// Google Cloud access tokens the way google-auth's default() finds them:
// GOOGLE_APPLICATION_CREDENTIALS (a service-account key, whose RS256-signed
// JWT is exchanged at its token URI, or an authorized_user refresh token),
// then gcloud's application-default file, then the metadata server. Tokens
// last about an hour and are fetched again before they lapse.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "reshard/status.hpp"
#include "reshard/store/cloud_credentials.hpp"

namespace reshard::gcp {

using TokenSource = RefreshingSecret<std::string>;
using TokenFetch = TokenSource::Fetch;

// Enough to read and write objects, nothing else.
inline constexpr const char* kStorageScope = "https://www.googleapis.com/auth/devstorage.read_write";
inline constexpr const char* kDefaultTokenUri = "https://oauth2.googleapis.com/token";

struct Settings {
  std::string token;  // empty: none found
  std::int64_t expires_at = 0;
  TokenFetch refresh;
  std::string source;  // "service account x@y from FILE", "metadata server", ...
  // Each link tried and why it gave no token, for the error when none did.
  // Never holds a secret.
  std::vector<std::string> tried;
};

// A credentials file that is unreadable, not JSON, of a type not supported
// or missing a field is an error (exit 2), as is a GOOGLE_APPLICATION_CREDENTIALS
// naming no file; a token endpoint refusing a file's credentials is a
// storage error (exit 4). Finding nothing is not an error: `tried` says why.
Result<Settings> resolve(const Environment& env);

// The JWT a service account sends to its token URI (RFC 7523), signed with
// its PEM private key. Exposed for tests.
struct ServiceAccountKey {
  std::string client_email;
  std::string private_key_pem;
  std::string private_key_id;
  std::string token_uri;
};
Result<std::string> service_account_assertion(const ServiceAccountKey& key, const std::string& scope,
                                              std::int64_t issued_at);
std::string base64url(std::string_view bytes);

}  // namespace reshard::gcp

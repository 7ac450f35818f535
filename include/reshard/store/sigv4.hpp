// AWS Signature Version 4 for S3 and S3-compatible stores (GCS's XML API
// accepts it with HMAC keys). Pure functions over strings: no I/O.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "reshard/bytes.hpp"

namespace reshard::sigv4 {

std::string sha256_hex(ByteView data);
std::string md5_base64(ByteView data);
std::string md5_hex(ByteView data);

// RFC 3986 percent-encoding of everything but A-Z a-z 0-9 - _ . ~ (and '/'
// when `keep_slash`), as SigV4's canonical forms require.
std::string uri_encode(const std::string& text, bool keep_slash);

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // empty when none
};

struct Request {
  std::string method;                                      // GET, PUT, ...
  std::string path;                                        // unencoded, starting with '/': "/bucket/key with space"
  std::vector<std::pair<std::string, std::string>> query;  // unencoded name/value pairs
  // Headers to sign (lower-case names), host and x-amz-date included.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload_hash;  // hex SHA-256 of the body, or UNSIGNED-PAYLOAD
};

std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query);
std::string canonical_request(const Request& request);
std::string string_to_sign(const std::string& canonical_request, const std::string& amz_date, const std::string& region,
                           const std::string& service);
std::string signature(const Request& request, const Credentials& credentials, const std::string& amz_date,
                      const std::string& region, const std::string& service);
// The Authorization header value.
std::string authorization(const Request& request, const Credentials& credentials, const std::string& amz_date,
                          const std::string& region, const std::string& service);

}  // namespace reshard::sigv4

#include "reshard/store/sigv4.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cstdio>

namespace reshard::sigv4 {
namespace {

std::string to_hex(const unsigned char* data, std::size_t n) {
  static const char* const kDigits = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xF];
  }
  return out;
}

std::string digest(const EVP_MD* md, const void* data, std::size_t n) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  EVP_Digest(data, n, out.data(), &len, md, nullptr);
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

std::string hmac(const std::string& key, const std::string& message) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), out.data(), &len);
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

std::string trim_and_fold(const std::string& value) {
  std::string out;
  bool space = false;
  for (char c : value) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string sha256_hex(ByteView data) {
  const std::string d = digest(EVP_sha256(), data.data(), data.size());
  return to_hex(reinterpret_cast<const unsigned char*>(d.data()), d.size());
}

std::string md5_hex(ByteView data) {
  const std::string d = digest(EVP_md5(), data.data(), data.size());
  return to_hex(reinterpret_cast<const unsigned char*>(d.data()), d.size());
}

std::string md5_base64(ByteView data) {
  const std::string d = digest(EVP_md5(), data.data(), data.size());
  std::array<unsigned char, 64> out{};
  const int n =
      EVP_EncodeBlock(out.data(), reinterpret_cast<const unsigned char*>(d.data()), static_cast<int>(d.size()));
  return std::string(reinterpret_cast<const char*>(out.data()), static_cast<std::size_t>(n));
}

std::string uri_encode(const std::string& text, bool keep_slash) {
  std::string out;
  for (unsigned char c : text) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '_' || c == '.' || c == '~';
    if (unreserved || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      char buffer[4];
      std::snprintf(buffer, sizeof(buffer), "%%%02X", c);
      out += buffer;
    }
  }
  return out;
}

std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  for (const auto& [name, value] : query) encoded.emplace_back(uri_encode(name, false), uri_encode(value, false));
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out += '&';
    out += name + "=" + value;
  }
  return out;
}

namespace {
std::vector<std::pair<std::string, std::string>> sorted_headers(const Request& request) {
  auto headers = request.headers;
  for (auto& [name, value] : headers) {
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    value = trim_and_fold(value);
  }
  std::sort(headers.begin(), headers.end());
  return headers;
}

std::string signed_header_names(const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string out;
  for (const auto& h : headers) out += (out.empty() ? "" : ";") + h.first;
  return out;
}
}  // namespace

std::string canonical_request(const Request& request) {
  const auto headers = sorted_headers(request);
  std::string canonical_headers;
  for (const auto& [name, value] : headers) canonical_headers += name + ":" + value + "\n";
  return request.method + "\n" + uri_encode(request.path, true) + "\n" + canonical_query(request.query) + "\n" +
         canonical_headers + "\n" + signed_header_names(headers) + "\n" + request.payload_hash;
}

std::string string_to_sign(const std::string& canonical, const std::string& amz_date, const std::string& region,
                           const std::string& service) {
  const std::string scope = amz_date.substr(0, 8) + "/" + region + "/" + service + "/aws4_request";
  return "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" +
         sha256_hex(ByteView(reinterpret_cast<const std::uint8_t*>(canonical.data()), canonical.size()));
}

std::string signature(const Request& request, const Credentials& credentials, const std::string& amz_date,
                      const std::string& region, const std::string& service) {
  const std::string date_key = hmac("AWS4" + credentials.secret_key, amz_date.substr(0, 8));
  const std::string signing_key = hmac(hmac(hmac(date_key, region), service), "aws4_request");
  const std::string mac = hmac(signing_key, string_to_sign(canonical_request(request), amz_date, region, service));
  return to_hex(reinterpret_cast<const unsigned char*>(mac.data()), mac.size());
}

std::string authorization(const Request& request, const Credentials& credentials, const std::string& amz_date,
                          const std::string& region, const std::string& service) {
  return "AWS4-HMAC-SHA256 Credential=" + credentials.access_key + "/" + amz_date.substr(0, 8) + "/" + region + "/" +
         service + "/aws4_request, SignedHeaders=" + signed_header_names(sorted_headers(request)) +
         ", Signature=" + signature(request, credentials, amz_date, region, service);
}

}  // namespace reshard::sigv4

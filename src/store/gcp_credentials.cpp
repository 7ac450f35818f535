#include "reshard/store/gcp_credentials.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "reshard/store/http_client.hpp"
#include "reshard/store/sigv4.hpp"

namespace reshard::gcp {
namespace {

using Token = Expiring<std::string>;

std::string text_field(const nlohmann::json& json, const char* key) {
  return json.contains(key) && json[key].is_string() ? json[key].get<std::string>() : "";
}

// The answer of a token endpoint or the metadata server:
// {"access_token", "expires_in", "token_type"}; errors as {"error": code}.
Result<Token> token_from_answer(const http::Response& response, const std::string& what) {
  if (!response.transport_ok) return Status::Storage(what + ": " + response.transport_error);
  const auto json = nlohmann::json::parse(response.body.begin(), response.body.end(), nullptr, false);
  if (response.status != 200) {
    // The error code names the problem (invalid_grant, ...); the description
    // may quote the request, so it is left out.
    const std::string code = json.is_object() ? text_field(json, "error") : "";
    return Status::Storage(what + ": HTTP " + std::to_string(response.status) + (code.empty() ? "" : " " + code));
  }
  if (json.is_discarded() || !json.is_object()) return Status::Storage(what + ": the answer is not a JSON object");
  Token out;
  out.secret = text_field(json, "access_token");
  if (out.secret.empty()) return Status::Storage(what + ": the answer has no access_token");
  const std::int64_t lifetime =
      json.contains("expires_in") && json["expires_in"].is_number() ? json["expires_in"].get<std::int64_t>() : 3600;
  out.expires_at = unix_seconds_now() + std::max<std::int64_t>(1, lifetime);
  return out;
}

Result<Token> post_form(const std::string& url, const std::string& form, const std::string& what) {
  http::Request request;
  request.method = "POST";
  request.url = url;
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  request.body = ByteView(reinterpret_cast<const std::uint8_t*>(form.data()), form.size());
  request.timeout_seconds = 30;
  return token_from_answer(http::perform(request), what);
}

std::string form_value(const std::string& value) { return sigv4::uri_encode(value, false); }

Result<std::string> rs256_signature(const std::string& pem, std::string_view message) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  if (!bio) return Status::Internal("OpenSSL could not allocate a buffer");
  // No passphrase callback may prompt on the terminal: an encrypted key fails.
  pem_password_cb* no_passphrase = [](char*, int, int, void*) { return 0; };
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr), EVP_PKEY_free);
  ERR_clear_error();
  if (!key) return Status::Invalid("private_key is not an unencrypted PEM private key");
  if (EVP_PKEY_base_id(key.get()) != EVP_PKEY_RSA) return Status::Invalid("private_key is not an RSA key");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::size_t length = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(message.data());
  if (!context || EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(context.get(), nullptr, &length, data, message.size()) != 1) {
    ERR_clear_error();
    return Status::Invalid("private_key cannot sign with RS256");
  }
  std::string signature(length, '\0');
  if (EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()), &length, data,
                     message.size()) != 1) {
    ERR_clear_error();
    return Status::Invalid("private_key cannot sign with RS256");
  }
  signature.resize(length);
  return signature;
}

// A service account's key file: a signed JWT exchanged for a token
// (grant type jwt-bearer), again at every refresh.
TokenFetch service_account_fetch(ServiceAccountKey key, std::string path) {
  return [key = std::move(key), path = std::move(path)]() -> Result<Token> {
    auto assertion = service_account_assertion(key, kStorageScope, unix_seconds_now());
    if (!assertion.ok()) return assertion.status().with_context("service account key " + path);
    const std::string form =
        "grant_type=" + form_value("urn:ietf:params:oauth:grant-type:jwt-bearer") + "&assertion=" + *assertion;
    return post_form(key.token_uri, form, "service account " + key.client_email + ": POST " + key.token_uri);
  };
}

// gcloud's user login: a refresh token exchanged for an access token.
TokenFetch authorized_user_fetch(const nlohmann::json& file, const std::string& path) {
  std::string token_uri = text_field(file, "token_uri");
  if (token_uri.empty()) token_uri = kDefaultTokenUri;
  const std::string form = "grant_type=refresh_token&client_id=" + form_value(text_field(file, "client_id")) +
                           "&client_secret=" + form_value(text_field(file, "client_secret")) +
                           "&refresh_token=" + form_value(text_field(file, "refresh_token"));
  return [form, token_uri, path]() -> Result<Token> {
    return post_form(token_uri, form, "authorized_user credentials in " + path + ": POST " + token_uri);
  };
}

// The metadata server of a GCE/GKE/Cloud Run machine: the default service
// account's token. The answer must carry Metadata-Flavor: Google, so that
// some other server at that address is not taken for it.
TokenFetch metadata_fetch(const std::string& host) {
  const std::string base = host.find("://") == std::string::npos ? "http://" + host : host;
  const std::string url = base + "/computeMetadata/v1/instance/service-accounts/default/token";
  return [url]() -> Result<Token> {
    http::Request request;
    request.url = url;
    request.headers = {{"Metadata-Flavor", "Google"}};
    request.timeout_seconds = 2;
    const http::Response response = http::perform(request);
    const std::string what = "GET " + url;
    if (response.transport_ok && response.status == 200) {
      auto flavor = response.headers.find("metadata-flavor");
      if (flavor == response.headers.end() || flavor->second != "Google") {
        return Status::Storage(what + ": the answer has no Metadata-Flavor: Google, not a metadata server");
      }
    }
    return token_from_answer(response, what);
  };
}

// A credentials file named by GOOGLE_APPLICATION_CREDENTIALS or gcloud's
// application-default file: how to fetch its tokens.
Result<std::pair<TokenFetch, std::string>> fetch_for_file(const std::string& text, const std::string& path) {
  const auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return Status::Invalid(path + ": not a JSON object");
  const std::string type = text_field(json, "type");
  auto require = [&](std::initializer_list<const char*> keys) -> Status {
    for (const char* key : keys) {
      if (text_field(json, key).empty()) {
        return Status::Invalid(path + ": " + type + " credentials without \"" + key + "\"");
      }
    }
    return Status::Ok();
  };
  if (type == "service_account") {
    RESHARD_RETURN_IF_ERROR(require({"client_email", "private_key"}));
    ServiceAccountKey key{text_field(json, "client_email"), text_field(json, "private_key"),
                          text_field(json, "private_key_id"), text_field(json, "token_uri")};
    if (key.token_uri.empty()) key.token_uri = kDefaultTokenUri;
    const std::string source = "service account " + key.client_email + " from " + path;
    return std::pair{service_account_fetch(std::move(key), path), source};
  }
  if (type == "authorized_user") {
    RESHARD_RETURN_IF_ERROR(require({"client_id", "client_secret", "refresh_token"}));
    return std::pair{authorized_user_fetch(json, path), "authorized_user credentials from " + path};
  }
  return Status::Invalid(path + ": credentials of type '" + type +
                         "' are not supported (service_account and authorized_user are; or set "
                         "GOOGLE_OAUTH_ACCESS_TOKEN, or GCS_HMAC_ACCESS_ID and GCS_HMAC_SECRET)");
}

bool is_true(const std::optional<std::string>& value) {
  return value && (*value == "true" || *value == "True" || *value == "TRUE" || *value == "1");
}

}  // namespace

std::string base64url(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const char c : bytes) {
    buffer = (buffer << 8) | static_cast<std::uint8_t>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(buffer >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (6 - bits)) & 63]);  // no '=' padding in JWTs
  return out;
}

Result<std::string> service_account_assertion(const ServiceAccountKey& key, const std::string& scope,
                                              std::int64_t issued_at) {
  nlohmann::json header = {{"alg", "RS256"}, {"typ", "JWT"}};
  if (!key.private_key_id.empty()) header["kid"] = key.private_key_id;
  // Google accepts assertions valid for at most an hour.
  const nlohmann::json claims = {{"iss", key.client_email},
                                 {"scope", scope},
                                 {"aud", key.token_uri},
                                 {"iat", issued_at},
                                 {"exp", issued_at + 3600}};
  const std::string signing_input = base64url(header.dump()) + "." + base64url(claims.dump());
  RESHARD_ASSIGN_OR_RETURN(std::string signature, rs256_signature(key.private_key_pem, signing_input));
  return signing_input + "." + base64url(signature);
}

Result<Settings> resolve(const Environment& env) {
  Settings out;
  auto use = [&](TokenFetch fetch, std::string source) -> Status {
    RESHARD_ASSIGN_OR_RETURN(Token first, fetch());
    out.token = std::move(first.secret);
    out.expires_at = first.expires_at;
    out.refresh = std::move(fetch);
    out.source = std::move(source);
    return Status::Ok();
  };
  // 1. GOOGLE_APPLICATION_CREDENTIALS: it must name a file; its tokens must come.
  if (auto path = env("GOOGLE_APPLICATION_CREDENTIALS")) {
    RESHARD_ASSIGN_OR_RETURN(auto text, read_credentials_file(*path));
    if (!text) return Status::Invalid("GOOGLE_APPLICATION_CREDENTIALS=" + *path + ": no such file");
    RESHARD_ASSIGN_OR_RETURN(auto fetch, fetch_for_file(*text, *path));
    RESHARD_RETURN_IF_ERROR(use(std::move(fetch.first), fetch.second));
    return out;
  }
  out.tried.emplace_back("GOOGLE_APPLICATION_CREDENTIALS (not set)");
  // 2. gcloud's application-default credentials (gcloud auth application-default login).
  std::string gcloud_dir = env("CLOUDSDK_CONFIG").value_or("");
  if (gcloud_dir.empty() && env("HOME")) gcloud_dir = *env("HOME") + "/.config/gcloud";
  if (!gcloud_dir.empty()) {
    const std::string path = gcloud_dir + "/application_default_credentials.json";
    RESHARD_ASSIGN_OR_RETURN(auto text, read_credentials_file(path));
    if (text) {
      RESHARD_ASSIGN_OR_RETURN(auto fetch, fetch_for_file(*text, path));
      RESHARD_RETURN_IF_ERROR(use(std::move(fetch.first), fetch.second));
      return out;
    }
    out.tried.push_back("gcloud application-default credentials " + path + " (not found)");
  }
  // 3. The metadata server.
  if (is_true(env("NO_GCE_CHECK"))) {
    out.tried.emplace_back("metadata server (NO_GCE_CHECK is true)");
    return out;
  }
  const std::string host =
      env("GCE_METADATA_HOST")
          .value_or(env("GCE_METADATA_ROOT").value_or(env("GCE_METADATA_IP").value_or("169.254.169.254")));
  Status metadata = use(metadata_fetch(host), "metadata server " + host);
  if (!metadata.ok()) out.tried.push_back("metadata server (" + metadata.message() + ")");
  return out;
}

}  // namespace reshard::gcp

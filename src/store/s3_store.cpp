#include "reshard/store/s3_store.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "reshard/store/aws_config.hpp"
#include "reshard/store/gcp_credentials.hpp"
#include "reshard/store/http_client.hpp"
#include "reshard/store/sigv4.hpp"
#include "reshard/store/xml_text.hpp"

namespace reshard {
namespace {

std::atomic<std::uint64_t> g_retries{0};
std::atomic<std::uint64_t> g_region_discoveries{0};

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::uint64_t env_size(const char* name, std::uint64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::strtoull(value, nullptr, 10) : fallback;
}

std::string body_text(const http::Response& r) { return std::string(r.body.begin(), r.body.end()); }

std::string amz_date_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[20];
  std::strftime(buffer, sizeof(buffer), "%Y%m%dT%H%M%SZ", &tm);
  return buffer;
}

bool retryable_status(long status, const std::string& code) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 || status == 504 ||
         code == "SlowDown" || code == "RequestTimeout" || code == "InternalError" || code == "Throttling" ||
         code == "ThrottlingException" || code == "RequestLimitExceeded" ||
         code == "ConditionalRequestConflict";  // 409: S3 is settling a concurrent conditional write
}

// Caps the requests one rank has in flight (--max-concurrency).
class RequestSlots {
 public:
  explicit RequestSlots(int n) : free_(std::max(1, n)) {}
  void acquire() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void release() {
    {
      std::lock_guard lock(mutex_);
      ++free_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int free_;
};

struct Config {
  std::string scheme;    // "s3" or "gs"
  std::string endpoint;  // "http://127.0.0.1:9000" (no trailing slash)
  bool path_style = true;
  std::string region = "us-east-1";
  sigv4::Credentials credentials;  // as found at start (temporary ones are refreshed by the source)
  std::shared_ptr<aws::CredentialsSource> credentials_source;
  std::vector<std::string> credentials_tried;  // when none were found: where we looked
  std::shared_ptr<gcp::TokenSource> bearer;    // GCS OAuth tokens, instead of signing
  int max_concurrency = 32;
  int max_attempts = 6;
  std::uint64_t backoff_base_ms = 100;
  std::uint64_t backoff_cap_ms = 5000;
  std::uint64_t multipart_threshold = 64ULL << 20;
  std::uint64_t part_size = 64ULL << 20;
  std::uint64_t read_chunk = 16ULL << 20;
};

Result<Config> config_from_environment(const std::string& scheme, const StoreOptions& options) {
  Config c;
  c.scheme = scheme;
  c.max_concurrency = options.max_concurrency;
  if (scheme == "gs") {
    std::string host = env_or("STORAGE_EMULATOR_HOST", "");
    if (!host.empty() && host.find("://") == std::string::npos) host = "http://" + host;
    c.endpoint = host.empty() ? "https://storage.googleapis.com" : host;
    c.region = "auto";
    // Explicit choices first: HMAC keys (signed like S3), a fixed token;
    // then google-auth's chain, whose tokens are refreshed.
    c.credentials = {env_or("GCS_HMAC_ACCESS_ID", ""), env_or("GCS_HMAC_SECRET", ""), ""};
    if (c.credentials.access_key.empty() || c.credentials.secret_key.empty()) {
      c.credentials = {};
      const std::string fixed = env_or("GOOGLE_OAUTH_ACCESS_TOKEN", "");
      if (!fixed.empty()) {
        c.bearer = std::make_shared<gcp::TokenSource>(fixed);
      } else {
        c.credentials_tried = {"GCS_HMAC_ACCESS_ID and GCS_HMAC_SECRET (not set)",
                               "GOOGLE_OAUTH_ACCESS_TOKEN (not set)"};
        auto settings = gcp::resolve(process_environment());
        if (!settings.ok()) return settings.status().with_context("gs:// credentials");
        c.credentials_tried.insert(c.credentials_tried.end(), settings->tried.begin(), settings->tried.end());
        if (!settings->token.empty()) {
          c.bearer = std::make_shared<gcp::TokenSource>(Expiring<std::string>{settings->token, settings->expires_at},
                                                        settings->refresh);
        }
      }
    }
  } else {
    // The SDKs' chain: environment, shared files (profiles,
    // credential_process); region and endpoint from the same places.
    auto settings = aws::resolve(aws::process_environment());
    if (!settings.ok()) return settings.status().with_context("s3:// credentials");
    c.region = settings->region;
    c.endpoint = settings->endpoint;
    c.path_style = !c.endpoint.empty();
    c.credentials = settings->credentials;
    c.credentials_tried = settings->tried;
    c.credentials_source =
        settings->refresh
            ? std::make_shared<aws::CredentialsSource>(
                  aws::ExpiringCredentials{settings->credentials, settings->expires_at}, settings->refresh)
            : std::make_shared<aws::CredentialsSource>(settings->credentials);
  }
  while (!c.endpoint.empty() && c.endpoint.back() == '/') c.endpoint.pop_back();
  c.max_attempts = static_cast<int>(env_size("RESHARD_S3_MAX_ATTEMPTS", 6));
  c.backoff_base_ms = env_size("RESHARD_S3_BACKOFF_BASE_MS", 100);
  c.backoff_cap_ms = env_size("RESHARD_S3_BACKOFF_CAP_MS", 5000);
  c.multipart_threshold = env_size("RESHARD_S3_MULTIPART_THRESHOLD", 64ULL << 20);
  c.part_size = std::max<std::uint64_t>(5ULL << 20, env_size("RESHARD_S3_PART_SIZE", 64ULL << 20));
  // Tests shrink parts and read chunks below S3's 5 MiB minimum part size to
  // exercise multipart and parallel reads on small objects.
  if (const char* forced = std::getenv("RESHARD_S3_PART_SIZE_UNCHECKED"))
    c.part_size = std::strtoull(forced, nullptr, 10);
  c.read_chunk = std::max<std::uint64_t>(1, env_size("RESHARD_S3_READ_CHUNK", 16ULL << 20));
  return c;
}

class S3Store final : public Store {
 public:
  static constexpr std::uint64_t kMaxCopyObjectBytes = 5ULL << 30;

  S3Store(Config config, std::string bucket)
      : config_(std::move(config)), bucket_(std::move(bucket)), slots_(shared_slots(config_.max_concurrency)) {}

  std::string url(const std::string& key) const override { return config_.scheme + "://" + bucket_ + "/" + key; }

  Result<std::optional<ObjectInfo>> stat(const std::string& key) override {
    RESHARD_ASSIGN_OR_RETURN(http::Response r, send("HEAD", key, {}, {}, {}, {200, 404}));
    if (r.status == 404) return std::optional<ObjectInfo>();
    ObjectInfo info;
    info.size = std::strtoull(r.headers["content-length"].c_str(), nullptr, 10);
    info.version = r.headers["etag"] + "@" + r.headers["last-modified"];
    return std::optional<ObjectInfo>(info);
  }

  Result<Bytes> read(const std::string& key, std::uint64_t offset, std::uint64_t length) override {
    Bytes out(length);
    if (length == 0) return out;
    const std::uint64_t chunk = config_.read_chunk;
    const std::uint64_t chunks = (length + chunk - 1) / chunk;
    auto read_chunk = [&](std::uint64_t i) -> Status {
      const std::uint64_t begin = i * chunk;
      const std::uint64_t n = std::min(chunk, length - begin);
      // Explicit first-last ranges only: suffix ranges are not portable.
      const std::string range =
          "bytes=" + std::to_string(offset + begin) + "-" + std::to_string(offset + begin + n - 1);
      RESHARD_ASSIGN_OR_RETURN(http::Response r, send("GET", key, {}, {{"range", range}}, {}, {200, 206}, n));
      std::copy(r.body.begin(), r.body.end(), out.begin() + static_cast<std::ptrdiff_t>(begin));
      return Status::Ok();
    };
    RESHARD_RETURN_IF_ERROR(parallel_for(chunks, read_chunk));
    return out;
  }

  Status write_atomic(const std::string& key, ByteView data) override {
    if (data.size() < config_.multipart_threshold) {
      const std::string md5 = sigv4::md5_hex(data);
      RESHARD_ASSIGN_OR_RETURN(http::Response r,
                               send("PUT", key, {}, {{"content-md5", sigv4::md5_base64(data)}}, data, {200}));
      return check_etag(r, md5, "PUT", key);
    }
    return multipart_upload(key, data);
  }

  // A conditional PUT: S3's If-None-Match: * and GCS's
  // x-goog-if-generation-match: 0 both answer 412 when the key exists. A 412
  // can also answer a retry of a PUT whose first attempt landed unseen, so
  // the object is read back: our own bytes mean this call created it.
  Result<bool> create_exclusive(const std::string& key, ByteView data) override {
    const Headers condition =
        config_.scheme == "gs" ? Headers{{"x-goog-if-generation-match", "0"}} : Headers{{"if-none-match", "*"}};
    Headers headers = {{"content-md5", sigv4::md5_base64(data)}};
    headers.insert(headers.end(), condition.begin(), condition.end());
    RESHARD_ASSIGN_OR_RETURN(http::Response r, send("PUT", key, {}, headers, data, {200, 412}));
    if (r.status == 200) {
      RESHARD_RETURN_IF_ERROR(check_etag(r, sigv4::md5_hex(data), "PUT", key));
      return true;
    }
    auto existing = read_all(key);
    if (!existing.ok()) return false;  // taken, and perhaps already replaced
    return std::equal(existing->begin(), existing->end(), data.begin(), data.end());
  }

  Result<std::vector<std::string>> list(const std::string& directory) override {
    std::vector<std::string> keys;
    std::string token;
    for (int page = 0; page < 1000000; ++page) {
      std::vector<std::pair<std::string, std::string>> query = {
          {"list-type", "2"}, {"prefix", directory}, {"delimiter", "/"}};
      if (!token.empty()) query.emplace_back("continuation-token", token);
      RESHARD_ASSIGN_OR_RETURN(http::Response r, send("GET", "", query, {}, {}, {200}));
      const std::string body = body_text(r);
      for (const auto& contents : xml_all(body, "Contents")) {
        const std::string key = xml_first(contents, "Key");
        if (!key.empty()) keys.push_back(key);
      }
      if (xml_first(body, "IsTruncated") != "true") break;
      token = xml_first(body, "NextContinuationToken");
      if (token.empty())
        return Status::Storage("listing " + url(directory) + ": truncated page without a continuation token");
    }
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  Result<bool> directory_exists(const std::string& /*directory*/) override { return false; }
  Status remove_empty_directory(const std::string& /*directory*/) override { return Status::Ok(); }

  Status remove(const std::string& key) override { return send("DELETE", key, {}, {}, {}, {200, 204, 404}).status(); }

  Result<std::uint64_t> clean_up_incomplete_writes(const std::string& prefix) override {
    // Interrupted multipart uploads are invisible to readers but cost
    // storage: abort the ones under this prefix. Servers without the
    // listing answer with an error, which is not a reason to fail the job.
    auto r = send("GET", "", {{"uploads", ""}, {"prefix", prefix}}, {}, {}, {200, 400, 404, 405, 501});
    if (!r.ok() || r->status != 200) return std::uint64_t{0};
    std::uint64_t aborted = 0;
    for (const auto& upload : xml_all(body_text(*r), "Upload")) {
      const std::string key = xml_first(upload, "Key");
      const std::string id = xml_first(upload, "UploadId");
      if (key.empty() || id.empty()) continue;
      if (send("DELETE", key, {{"uploadId", id}}, {}, {}, {200, 204, 404}).ok()) ++aborted;
    }
    return aborted;
  }

  std::string canonical_directory(const std::string& directory) const override {
    return config_.scheme + "://" + bucket_ + "/" + directory;
  }

  // CopyObject: the server copies; nothing passes through this rank. Only
  // within one S3 endpoint and identity, and up to CopyObject's 5 GiB (larger
  // objects would need UploadPartCopy, not implemented: they fall back to a
  // read and a write). GCS's rewrite is not implemented either.
  Result<bool> copy_from(Store& source, const std::string& source_key, const ObjectInfo& source_info,
                         const std::string& key) override {
    auto* other = dynamic_cast<S3Store*>(&source);
    if (other == nullptr || config_.scheme != "s3" || other->config_.scheme != "s3" ||
        other->config_.endpoint != config_.endpoint ||
        other->config_.credentials.access_key != config_.credentials.access_key ||
        source_info.size > kMaxCopyObjectBytes) {
      return false;
    }
    Headers headers = {{"x-amz-copy-source", sigv4::uri_encode("/" + other->bucket_ + "/" + source_key, true)}};
    // The version the job read: a source rewritten since fails the copy
    // (412) instead of being copied.
    const std::string etag = source_info.version.substr(0, source_info.version.find('@'));
    if (!etag.empty()) headers.emplace_back("x-amz-copy-source-if-match", etag);
    RESHARD_ASSIGN_OR_RETURN(http::Response r, send("PUT", key, {}, headers, {}, {200}));
    // Like CompleteMultipartUpload, CopyObject may answer 200 with an error.
    const std::string text = body_text(r);
    if (text.find("<Error>") != std::string::npos) {
      return Status::Storage("copying " + source.url(source_key) + " to " + url(key) + ": " + xml_first(text, "Code"));
    }
    return true;
  }

 private:
  using Query = std::vector<std::pair<std::string, std::string>>;
  using Headers = std::vector<std::pair<std::string, std::string>>;

  Status parallel_for(std::uint64_t n, const std::function<Status(std::uint64_t)>& task) {
    if (n == 1) return task(0);
    const auto workers = static_cast<std::uint64_t>(std::max(1, config_.max_concurrency));
    std::atomic<std::uint64_t> next{0};
    std::mutex mutex;
    Status first_error;
    auto work = [&] {
      for (std::uint64_t i = next++; i < n; i = next++) {
        Status s = task(i);
        if (!s.ok()) {
          std::lock_guard lock(mutex);
          if (first_error.ok()) first_error = s;
          next = n;
        }
      }
    };
    std::vector<std::thread> threads;
    for (std::uint64_t t = 0; t < std::min(workers, n); ++t) threads.emplace_back(work);
    for (auto& t : threads) t.join();
    return first_error;
  }

  std::string current_region() const {
    std::lock_guard<std::mutex> lock(region_mutex_);
    return region_;
  }
  void learn_region(const std::string& region) {
    std::lock_guard<std::mutex> lock(region_mutex_);
    region_ = region;
    g_region_discoveries.fetch_add(1);
  }

  std::string host_of_endpoint() const {
    std::string rest = config_.endpoint.substr(config_.endpoint.find("://") + 3);
    return rest.substr(0, rest.find('/'));
  }

  // Sends one request with retries. `expected_bytes` > 0 checks the body
  // length (a truncated reply is retried). SDK-free: every failure becomes a
  // Status here.
  Result<http::Response> send(const std::string& method, const std::string& key, const Query& query,
                              const Headers& extra, ByteView body, std::vector<long> accepted,
                              std::uint64_t expected_bytes = 0) {
    const std::string operation = method + " " + url(key);
    const std::string payload_hash = sigv4::sha256_hex(body);
    const std::string query_text = sigv4::canonical_query(query);
    std::mt19937_64 rng(std::random_device{}());
    std::string last_problem;
    for (int attempt = 1; attempt <= config_.max_attempts; ++attempt) {
      // Where to send it: the region may have been learnt from the bucket.
      const std::string region = current_region();
      std::string path;
      std::string host;
      std::string base;
      if (config_.endpoint.empty()) {
        host = bucket_ + ".s3." + region + ".amazonaws.com";
        base = "https://" + host;
        path = "/" + key;
      } else {
        host = host_of_endpoint();
        base = config_.endpoint;
        path = "/" + bucket_ + "/" + key;
      }
      std::string target = base + sigv4::uri_encode(path, true);
      if (!query_text.empty()) target += "?" + query_text;
      http::Request request;
      request.method = method;
      request.url = target;
      request.body = body;
      const std::string date = amz_date_now();
      sigv4::Request to_sign;
      to_sign.method = method;
      to_sign.path = path;
      to_sign.query = query;
      to_sign.payload_hash = payload_hash;
      to_sign.headers = {{"host", host}, {"x-amz-content-sha256", payload_hash}, {"x-amz-date", date}};
      // The credentials in force now: temporary ones are refreshed here.
      sigv4::Credentials credentials = config_.credentials;
      if (config_.credentials_source) {
        auto current = config_.credentials_source->current();
        if (!current.ok()) return current.status().with_context(method + " " + url(key));
        credentials = std::move(current).value();
      }
      if (!credentials.session_token.empty()) {
        to_sign.headers.emplace_back("x-amz-security-token", credentials.session_token);
      }
      for (const auto& [name, value] : extra) {
        // Range is left unsigned, as common signers do.
        if (name == "range")
          request.headers.emplace_back(name, value);
        else
          to_sign.headers.emplace_back(name, value);
      }
      request.headers.insert(request.headers.end(), to_sign.headers.begin(), to_sign.headers.end());
      if (config_.bearer) {
        auto token = config_.bearer->current();
        if (!token.ok()) return token.status().with_context(operation);
        request.headers.emplace_back("authorization", "Bearer " + *token);
      } else {
        request.headers.emplace_back("authorization", sigv4::authorization(to_sign, credentials, date, region, "s3"));
      }
      slots_.acquire();
      http::Response response = http::perform(request);
      slots_.release();
      bool retry = false;
      if (!response.transport_ok) {
        last_problem = response.transport_error;
        retry = true;
      } else {
        const std::string code = xml_first(body_text(response), "Code");
        const bool ok = std::find(accepted.begin(), accepted.end(), response.status) != accepted.end();
        if (ok && expected_bytes > 0 && response.body.size() != expected_bytes && method == "GET") {
          last_problem = "reply truncated: " + std::to_string(response.body.size()) + " of " +
                         std::to_string(expected_bytes) + " bytes";
          retry = true;
        } else if (ok) {
          return response;
        } else {
          last_problem = "HTTP " + std::to_string(response.status) + (code.empty() ? "" : " " + code);
          // A bucket in another region answers 301 or 400 naming its region
          // (x-amz-bucket-region): sign for that one from now on and send
          // again, as the SDKs do, instead of failing.
          if (auto it = response.headers.find("x-amz-bucket-region");
              (response.status == 301 || response.status == 400) && it != response.headers.end() &&
              !it->second.empty() && it->second != region) {
            learn_region(it->second);
            --attempt;
            continue;
          }
          if (!retryable_status(response.status, code)) {
            const std::string message = xml_first(body_text(response), "Message");
            return Status::Storage(operation + ": " + last_problem + (message.empty() ? "" : " (" + message + ")"));
          }
          retry = true;
        }
      }
      if (retry && attempt < config_.max_attempts) {
        ++g_retries;
        // Exponential backoff with full jitter.
        const std::uint64_t ceiling =
            std::min(config_.backoff_cap_ms, config_.backoff_base_ms << std::min(attempt - 1, 20));
        std::this_thread::sleep_for(
            std::chrono::milliseconds(std::uniform_int_distribution<std::uint64_t>(0, ceiling)(rng)));
      }
    }
    return Status::Storage(operation + ": " + last_problem + " after " + std::to_string(config_.max_attempts) +
                           " attempts");
  }

  Status check_etag(const http::Response& r, const std::string& md5_hex, const std::string& what,
                    const std::string& key) {
    auto it = r.headers.find("etag");
    if (it == r.headers.end()) return Status::Ok();  // some servers omit it; the MD5 header was checked by them
    std::string etag = it->second;
    etag.erase(std::remove(etag.begin(), etag.end(), '"'), etag.end());
    if (etag != md5_hex) {
      return Status::Storage(what + " " + url(key) + ": the server stored content with MD5 " + etag + ", not " +
                             md5_hex);
    }
    return Status::Ok();
  }

  Status multipart_upload(const std::string& key, ByteView data) {
    RESHARD_ASSIGN_OR_RETURN(http::Response created, send("POST", key, {{"uploads", ""}}, {}, {}, {200}));
    const std::string upload_id = xml_first(body_text(created), "UploadId");
    if (upload_id.empty()) return Status::Storage("POST " + url(key) + "?uploads: no UploadId in the reply");
    const std::uint64_t parts = (data.size() + config_.part_size - 1) / config_.part_size;
    std::vector<std::string> etags(parts);
    auto put_part = [&](std::uint64_t i) -> Status {
      const ByteView part = data.subspan(
          i * config_.part_size, std::min<std::uint64_t>(config_.part_size, data.size() - i * config_.part_size));
      const std::string md5 = sigv4::md5_hex(part);
      RESHARD_ASSIGN_OR_RETURN(http::Response r,
                               send("PUT", key, {{"partNumber", std::to_string(i + 1)}, {"uploadId", upload_id}},
                                    {{"content-md5", sigv4::md5_base64(part)}}, part, {200}));
      RESHARD_RETURN_IF_ERROR(check_etag(r, md5, "PUT part " + std::to_string(i + 1) + " of", key));
      etags[i] = "\"" + md5 + "\"";
      return Status::Ok();
    };
    Status status = parallel_for(parts, put_part);
    if (status.ok()) status = complete_upload(key, upload_id, etags);
    if (!status.ok()) {
      (void)send("DELETE", key, {{"uploadId", upload_id}}, {}, {}, {200, 204, 404});
      return status;
    }
    return Status::Ok();
  }

  Status complete_upload(const std::string& key, const std::string& upload_id, const std::vector<std::string>& etags) {
    std::string xml = "<CompleteMultipartUpload>";
    for (std::size_t i = 0; i < etags.size(); ++i) {
      xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" + etags[i] + "</ETag></Part>";
    }
    xml += "</CompleteMultipartUpload>";
    const ByteView body(reinterpret_cast<const std::uint8_t*>(xml.data()), xml.size());
    for (int attempt = 1;; ++attempt) {
      RESHARD_ASSIGN_OR_RETURN(http::Response r, send("POST", key, {{"uploadId", upload_id}}, {}, body, {200}));
      // S3 may answer 200 and still report an error in the body.
      const std::string text = body_text(r);
      if (text.find("<Error>") == std::string::npos) return Status::Ok();
      const std::string code = xml_first(text, "Code");
      if (!retryable_status(500, code) || attempt >= config_.max_attempts) {
        return Status::Storage("completing the upload of " + url(key) + ": " + code);
      }
      ++g_retries;
      std::this_thread::sleep_for(std::chrono::milliseconds(config_.backoff_base_ms));
    }
  }

  // One pool per process (one rank), shared by the source and destination
  // stores, so --max-concurrency bounds the rank's requests as a whole.
  static RequestSlots& shared_slots(int n) {
    static RequestSlots slots(n);
    return slots;
  }

  Config config_;
  mutable std::mutex region_mutex_;
  std::string region_ = config_.region;
  std::string bucket_;
  RequestSlots& slots_;
};

}  // namespace

std::uint64_t object_store_retries() { return g_retries.load(); }

Result<StoreAndKey> open_s3_store(const std::string& url, const StoreOptions& options) {
  const auto sep = url.find("://");
  const std::string scheme = url.substr(0, sep);
  const std::string rest = url.substr(sep + 3);
  const auto slash = rest.find('/');
  if (slash == std::string::npos || slash == 0) {
    return Status::Invalid("'" + url + "' must look like " + scheme + "://bucket/key");
  }
  RESHARD_ASSIGN_OR_RETURN(Config config, config_from_environment(scheme, options));
  if (!config.bearer && (config.credentials.access_key.empty() || config.credentials.secret_key.empty())) {
    std::string tried;
    for (const auto& step : config.credentials_tried) tried += (tried.empty() ? "" : "; ") + step;
    return Status::Storage(scheme + ":// found no credentials; tried " + tried);
  }
  return StoreAndKey{std::make_shared<S3Store>(std::move(config), rest.substr(0, slash)), rest.substr(slash + 1)};
}

}  // namespace reshard

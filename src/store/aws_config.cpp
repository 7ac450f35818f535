#include "reshard/store/aws_config.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>

#include "reshard/store/http_client.hpp"
#include "reshard/store/xml_text.hpp"

namespace reshard::aws {
namespace {

std::string_view trim(std::string_view text) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!text.empty() && blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && blank(text.back())) text.remove_suffix(1);
  return text;
}

// Runs a profile's credential_process and reads the JSON it prints, as the
// SDKs document it: {"Version": 1, "AccessKeyId", "SecretAccessKey",
// "SessionToken"?, "Expiration"?}. Its stderr goes to ours.
// With an Expiration the credentials are temporary: the process is run again
// to refresh them, as the SDKs do.
Result<ExpiringCredentials> run_credential_process(const std::string& command, const std::string& profile) {
  const std::string what = "credential_process of profile '" + profile + "'";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return Status::Invalid(what + ": cannot start it");
  std::string output;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;) output.append(buffer, n);
  const int status = ::pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::Invalid(what + " failed (exit status " +
                           std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  }
  const auto json = nlohmann::json::parse(output, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return Status::Invalid(what + " did not print a JSON object");
  if (!json.contains("Version") || json["Version"] != 1) return Status::Invalid(what + ": \"Version\" must be 1");
  auto text = [&](const char* key) -> std::string {
    return json.contains(key) && json[key].is_string() ? json[key].get<std::string>() : "";
  };
  ExpiringCredentials out;
  out.secret = {text("AccessKeyId"), text("SecretAccessKey"), text("SessionToken")};
  if (out.secret.access_key.empty() || out.secret.secret_key.empty()) {
    return Status::Invalid(what + " printed no AccessKeyId or SecretAccessKey");
  }
  if (!text("Expiration").empty()) {
    auto expires = parse_iso8601_utc(text("Expiration"));
    if (!expires.ok()) return Status::Invalid(what + ": Expiration: " + expires.status().message());
    out.expires_at = *expires;
  }
  return out;
}

// The JSON container credentials and instance metadata both answer with.
Result<ExpiringCredentials> credentials_from_json(const std::string& body, const std::string& what) {
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return Status::Storage(what + ": the answer is not a JSON object");
  auto text = [&](const char* key) -> std::string {
    return json.contains(key) && json[key].is_string() ? json[key].get<std::string>() : "";
  };
  if (!text("Code").empty() && text("Code") != "Success") return Status::Storage(what + ": Code " + text("Code"));
  ExpiringCredentials out;
  out.secret = {text("AccessKeyId"), text("SecretAccessKey"), text("Token")};
  if (out.secret.access_key.empty() || out.secret.secret_key.empty()) {
    return Status::Storage(what + ": the answer has no AccessKeyId or SecretAccessKey");
  }
  if (!text("Expiration").empty()) {
    auto expires = parse_iso8601_utc(text("Expiration"));
    if (!expires.ok()) return expires.status().with_context(what + ": Expiration");
    out.expires_at = *expires;
  }
  return out;
}

// One GET or PUT to a credentials endpoint; its answer's body on a 200.
Result<std::string> ask(const std::string& method, const std::string& url,
                        std::vector<std::pair<std::string, std::string>> headers, long timeout_seconds) {
  http::Request request;
  request.method = method;
  request.url = url;
  request.headers = std::move(headers);
  request.timeout_seconds = timeout_seconds;
  const http::Response response = http::perform(request);
  if (!response.transport_ok) return Status::Storage(method + " " + url + ": " + response.transport_error);
  std::string body(response.body.begin(), response.body.end());
  if (response.status != 200) {
    const std::string code = xml_first(body, "Code");  // STS names its errors
    return Status::Storage(method + " " + url + ": HTTP " + std::to_string(response.status) +
                           (code.empty() ? "" : " " + code));
  }
  return body;
}

// Web identity (EKS's IAM roles for service accounts): the token file's
// contents, read again at every fetch since Kubernetes rotates them,
// exchanged at STS for temporary credentials. The request is not signed.
CredentialsFetch web_identity_fetch(const Environment& env, const std::string& region) {
  const std::string token_file = env("AWS_WEB_IDENTITY_TOKEN_FILE").value_or("");
  const std::string role = env("AWS_ROLE_ARN").value_or("");
  const std::string session = env("AWS_ROLE_SESSION_NAME").value_or("mpi-reshard-" + std::to_string(::getpid()));
  std::string endpoint = env("AWS_ENDPOINT_URL_STS").value_or("https://sts." + region + ".amazonaws.com");
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  return [token_file, role, session, endpoint]() -> Result<ExpiringCredentials> {
    RESHARD_ASSIGN_OR_RETURN(auto token, read_credentials_file(token_file));
    if (!token) return Status::Storage("web identity: token file " + token_file + " does not exist");
    const std::string form =
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=" + sigv4::uri_encode(role, false) +
        "&RoleSessionName=" + sigv4::uri_encode(session, false) +
        "&WebIdentityToken=" + sigv4::uri_encode(std::string(trim(*token)), false);
    http::Request request;
    request.method = "POST";
    request.url = endpoint + "/";
    request.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
    request.body = ByteView(reinterpret_cast<const std::uint8_t*>(form.data()), form.size());
    request.timeout_seconds = 10;
    const http::Response response = http::perform(request);
    const std::string what = "web identity: POST " + request.url;
    if (!response.transport_ok) return Status::Storage(what + ": " + response.transport_error);
    const std::string body(response.body.begin(), response.body.end());
    if (response.status != 200) {
      const std::string code = xml_first(body, "Code");
      return Status::Storage(what + ": HTTP " + std::to_string(response.status) + (code.empty() ? "" : " " + code));
    }
    ExpiringCredentials out;
    out.secret = {xml_first(body, "AccessKeyId"), xml_first(body, "SecretAccessKey"), xml_first(body, "SessionToken")};
    if (out.secret.access_key.empty() || out.secret.secret_key.empty()) {
      return Status::Storage(what + ": the answer has no AccessKeyId or SecretAccessKey");
    }
    if (const std::string expiration = xml_first(body, "Expiration"); !expiration.empty()) {
      RESHARD_ASSIGN_OR_RETURN(out.expires_at, parse_iso8601_utc(expiration));
    }
    return out;
  };
}

// ECS/EKS container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI, or the
// RELATIVE_URI under 169.254.170.2, with AWS_CONTAINER_AUTHORIZATION_TOKEN
// (or the _FILE holding it) as the Authorization header.
CredentialsFetch container_fetch(const Environment& env) {
  std::string url = env("AWS_CONTAINER_CREDENTIALS_FULL_URI").value_or("");
  if (url.empty()) url = "http://169.254.170.2" + env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").value_or("");
  const std::string token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN").value_or("");
  const std::string token_file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").value_or("");
  return [url, token, token_file]() -> Result<ExpiringCredentials> {
    std::vector<std::pair<std::string, std::string>> headers;
    std::string authorization = token;
    if (!token_file.empty()) {
      RESHARD_ASSIGN_OR_RETURN(auto text, read_credentials_file(token_file));
      if (!text) return Status::Storage("container credentials: " + token_file + " does not exist");
      authorization = std::string(trim(*text));
    }
    if (!authorization.empty()) headers.emplace_back("Authorization", authorization);
    RESHARD_ASSIGN_OR_RETURN(std::string body, ask("GET", url, headers, 5));
    return credentials_from_json(body, "container credentials " + url);
  };
}

// IMDSv2: a session token first (PUT), then the role's name and its
// credentials, each request carrying the token.
CredentialsFetch instance_metadata_fetch(const Environment& env) {
  std::string base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT").value_or("http://169.254.169.254");
  while (!base.empty() && base.back() == '/') base.pop_back();
  return [base]() -> Result<ExpiringCredentials> {
    RESHARD_ASSIGN_OR_RETURN(std::string token, ask("PUT", base + "/latest/api/token",
                                                    {{"X-aws-ec2-metadata-token-ttl-seconds", "21600"}}, 2));
    const std::vector<std::pair<std::string, std::string>> with_token = {{"X-aws-ec2-metadata-token", token}};
    const std::string roles_url = base + "/latest/meta-data/iam/security-credentials/";
    RESHARD_ASSIGN_OR_RETURN(std::string roles, ask("GET", roles_url, with_token, 2));
    const std::string role(trim(std::string_view(roles).substr(0, roles.find('\n'))));
    if (role.empty()) return Status::Storage("instance metadata: the instance has no IAM role");
    RESHARD_ASSIGN_OR_RETURN(std::string body, ask("GET", roles_url + role, with_token, 2));
    return credentials_from_json(body, "instance metadata role " + role);
  };
}

}  // namespace

Result<std::int64_t> parse_iso8601_utc(const std::string& text) {
  std::tm tm{};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  char rest[16] = {0};
  const int got =
      std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%15s", &year, &month, &day, &hour, &minute, &second, rest);
  if (got < 6) return Status::Storage("'" + text + "' is not an ISO 8601 UTC time");
  std::string zone(rest);
  if (!zone.empty() && zone.front() == '.') zone.erase(0, zone.find_first_not_of("0123456789", 1));
  if (!zone.empty() && zone != "Z" && zone != "+00:00") {
    return Status::Storage("'" + text + "' is not in UTC");
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<std::int64_t>(::timegm(&tm));
}

Result<ProfileSections> parse_shared_file(std::string_view text, const std::string& path, bool config_file) {
  ProfileSections sections;
  std::map<std::string, std::string>* section = nullptr;
  bool skipping = false;           // a config section that is not a profile
  bool in_sub_properties = false;  // "s3 =" followed by indented lines
  std::size_t start = 0;
  for (std::uint64_t number = 1; start < text.size() || start == 0; ++number) {
    if (start >= text.size()) break;
    const std::size_t newline = text.find('\n', start);
    const std::string_view raw =
        text.substr(start, newline == std::string_view::npos ? std::string_view::npos : newline - start);
    start = newline == std::string_view::npos ? text.size() : newline + 1;
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    const std::string where = path + " line " + std::to_string(number);
    const bool indented = raw.front() == ' ' || raw.front() == '\t';
    if (indented && in_sub_properties) continue;  // nested settings such as s3.addressing_style
    in_sub_properties = false;
    if (line.front() == '[') {
      if (line.back() != ']') return Status::Invalid(where + ": section header without ']'");
      std::string name(trim(line.substr(1, line.size() - 2)));
      if (name.empty()) return Status::Invalid(where + ": empty section name");
      skipping = false;
      if (config_file) {
        if (name.rfind("profile ", 0) == 0) {
          name = std::string(trim(std::string_view(name).substr(8)));
        } else if (name != "default") {
          skipping = true;  // sso-session, services, ...
        }
      }
      section = skipping ? nullptr : &sections[name];
      continue;
    }
    const std::size_t equals = line.find('=');
    if (equals == std::string_view::npos) return Status::Invalid(where + ": expected [section] or key = value");
    const std::string key(trim(line.substr(0, equals)));
    const std::string value(trim(line.substr(equals + 1)));
    if (key.empty()) return Status::Invalid(where + ": a value without a key");
    if (section == nullptr && !skipping) return Status::Invalid(where + ": '" + key + "' comes before any [section]");
    if (value.empty()) in_sub_properties = true;
    if (section != nullptr) (*section)[key] = value;
  }
  return sections;
}

Result<Settings> resolve(const Environment& env) {
  Settings out;
  auto get = [&](const char* name) { return env(name).value_or(""); };
  const std::string home = get("HOME");
  const std::string credentials_path =
      env("AWS_SHARED_CREDENTIALS_FILE").value_or(home.empty() ? "" : home + "/.aws/credentials");
  const std::string config_path = env("AWS_CONFIG_FILE").value_or(home.empty() ? "" : home + "/.aws/config");
  const std::optional<std::string> chosen_profile =
      env("AWS_PROFILE") ? env("AWS_PROFILE") : env("AWS_DEFAULT_PROFILE");
  const std::string profile = chosen_profile.value_or("default");

  // The profile's settings: the credentials file's over the config file's.
  std::map<std::string, std::string> settings;
  std::map<std::string, std::string> setting_file;
  std::vector<std::string> file_notes;  // reported after the links before them
  bool profile_found = false;
  for (const auto& [path, is_config] : {std::pair<std::string, bool>{config_path, true}, {credentials_path, false}}) {
    if (path.empty()) continue;
    RESHARD_ASSIGN_OR_RETURN(auto text, read_credentials_file(path));
    if (!text) {
      file_notes.push_back(std::string(is_config ? "config file " : "shared credentials file ") + path +
                           " (not found)");
      continue;
    }
    RESHARD_ASSIGN_OR_RETURN(ProfileSections sections, parse_shared_file(*text, path, is_config));
    auto it = sections.find(profile);
    if (it == sections.end()) {
      file_notes.push_back(std::string(is_config ? "config file " : "shared credentials file ") + path +
                           " (no profile '" + profile + "')");
      continue;
    }
    profile_found = true;
    for (const auto& [key, value] : it->second) {
      settings[key] = value;
      setting_file[key] = path;
    }
  }
  if (chosen_profile && !profile_found) {
    return Status::Invalid("AWS_PROFILE=" + profile + ": no such profile in " + credentials_path + " or " +
                           config_path);
  }
  auto setting = [&](const char* key) {
    auto it = settings.find(key);
    return it == settings.end() ? std::string() : it->second;
  };

  out.region = env("AWS_REGION").value_or(env("AWS_DEFAULT_REGION").value_or(setting("region")));
  if (out.region.empty()) out.region = "us-east-1";
  out.endpoint = env("AWS_ENDPOINT_URL_S3").value_or(env("AWS_ENDPOINT_URL").value_or(setting("endpoint_url")));

  // 1. Environment.
  const std::string env_key = get("AWS_ACCESS_KEY_ID");
  const std::string env_secret = get("AWS_SECRET_ACCESS_KEY");
  if (!env_key.empty() && !env_secret.empty()) {
    out.credentials = {env_key, env_secret, get("AWS_SESSION_TOKEN")};
    out.credentials_source = "environment";
    return out;
  }
  out.tried.push_back(std::string("environment (") + (env_key.empty() ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY") +
                      " not set)");
  // Container credentials, instance metadata and web identity give
  // temporary credentials, refreshed through `fetch` later.
  auto use_fetched = [&](CredentialsFetch fetch, const std::string& name) -> bool {
    auto first = fetch();
    if (!first.ok()) {
      out.tried.push_back(name + " (" + first.status().message() + ")");
      return false;
    }
    out.credentials = first->secret;
    out.expires_at = first->expires_at;
    out.refresh = std::move(fetch);
    out.credentials_source = name;
    return true;
  };
  // 2. Web identity.
  if (env("AWS_WEB_IDENTITY_TOKEN_FILE")) {
    if (!env("AWS_ROLE_ARN")) {
      out.tried.push_back("web identity (AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not)");
    } else if (use_fetched(web_identity_fetch(env, out.region), "web identity")) {
      return out;
    }
  }
  // 3. The profile: static keys, then credential_process.
  out.tried.insert(out.tried.end(), file_notes.begin(), file_notes.end());
  if (profile_found) {
    if (!setting("aws_access_key_id").empty() && !setting("aws_secret_access_key").empty()) {
      out.credentials = {setting("aws_access_key_id"), setting("aws_secret_access_key"), setting("aws_session_token")};
      out.credentials_source = "profile '" + profile + "' in " + setting_file["aws_access_key_id"];
      return out;
    }
    if (!setting("credential_process").empty()) {
      const std::string command = setting("credential_process");
      RESHARD_ASSIGN_OR_RETURN(ExpiringCredentials first, run_credential_process(command, profile));
      out.credentials = first.secret;
      out.expires_at = first.expires_at;
      if (first.expires_at != 0) {
        out.refresh = [command, profile] { return run_credential_process(command, profile); };
      }
      out.credentials_source = "credential_process of profile '" + profile + "'";
      return out;
    }
    out.tried.push_back("profile '" + profile + "' (no aws_access_key_id/aws_secret_access_key or credential_process)");
  }
  // 4. Container credentials, then 5. instance metadata.
  if (env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") || env("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
    if (use_fetched(container_fetch(env), "container credentials")) return out;
  }
  const std::string disabled = get("AWS_EC2_METADATA_DISABLED");
  if (disabled == "true" || disabled == "TRUE" || disabled == "True") {
    out.tried.push_back("instance metadata (AWS_EC2_METADATA_DISABLED is true)");
    return out;
  }
  use_fetched(instance_metadata_fetch(env), "instance metadata");
  return out;
}

}  // namespace reshard::aws

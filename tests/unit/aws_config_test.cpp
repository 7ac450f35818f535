#include "reshard/store/aws_config.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

namespace reshard::aws {
namespace {

class AwsConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("reshard-aws-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_ / ".aws");
    vars_["HOME"] = dir_.string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / ".aws" / name) << text; }
  Environment env() const {
    return [this](const char* name) -> std::optional<std::string> {
      auto it = vars_.find(name);
      if (it == vars_.end()) return std::nullopt;
      return it->second;
    };
  }
  std::filesystem::path dir_;
  std::map<std::string, std::string> vars_;
};

TEST(SharedFile, ParsesProfilesCommentsAndNestedSettings) {
  const auto sections = parse_shared_file(
      "# comment\n[default]\nregion = eu-west-1\ns3 =\n  addressing_style = path\n"
      "[profile other]\naws_access_key_id=AK ; not a comment inside values\n[sso-session x]\nsso_region = a\n",
      "config", true);
  ASSERT_TRUE(sections.ok()) << sections.status().message();
  EXPECT_EQ(sections->at("default").at("region"), "eu-west-1");
  EXPECT_EQ(sections->at("default").count("addressing_style"), 0u);
  EXPECT_EQ(sections->at("other").at("aws_access_key_id"), "AK ; not a comment inside values");
  EXPECT_EQ(sections->count("x"), 0u);
  EXPECT_EQ(sections->count("sso-session x"), 0u);
}

TEST(SharedFile, MalformedLinesNameTheFileAndLine) {
  EXPECT_EQ(parse_shared_file("[default]\nthis is not a setting\n", "/h/.aws/credentials", false).status().message(),
            "/h/.aws/credentials line 2: expected [section] or key = value");
  EXPECT_EQ(parse_shared_file("key = v\n", "c", false).status().message(),
            "c line 1: 'key' comes before any [section]");
  EXPECT_EQ(parse_shared_file("[default\n", "c", false).status().message(), "c line 1: section header without ']'");
}

TEST_F(AwsConfig, EnvironmentComesFirst) {
  vars_["AWS_ACCESS_KEY_ID"] = "ENVKEY";
  vars_["AWS_SECRET_ACCESS_KEY"] = "ENVSECRET";
  write("credentials", "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = FILESECRET\n");
  auto settings = resolve(env());
  ASSERT_TRUE(settings.ok()) << settings.status().message();
  EXPECT_EQ(settings->credentials.access_key, "ENVKEY");
  EXPECT_EQ(settings->credentials_source, "environment");
}

TEST_F(AwsConfig, ProfileFromAwsProfileWithRegionAndEndpointFromConfig) {
  write("credentials",
        "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n[other]\naws_access_key_id = O\n"
        "aws_secret_access_key = OS\naws_session_token = OT\n");
  write("config", "[profile other]\nregion = ap-south-1\nendpoint_url = http://127.0.0.1:9\n");
  vars_["AWS_PROFILE"] = "other";
  auto settings = resolve(env());
  ASSERT_TRUE(settings.ok()) << settings.status().message();
  EXPECT_EQ(settings->credentials.access_key, "O");
  EXPECT_EQ(settings->credentials.session_token, "OT");
  EXPECT_EQ(settings->region, "ap-south-1");
  EXPECT_EQ(settings->endpoint, "http://127.0.0.1:9");
  EXPECT_EQ(settings->credentials_source, "profile 'other' in " + (dir_ / ".aws" / "credentials").string());
  vars_["AWS_REGION"] = "us-west-2";  // the environment wins over the profile
  EXPECT_EQ(resolve(env())->region, "us-west-2");
}

TEST_F(AwsConfig, CredentialProcessIsRunAndItsJsonUsed) {
  write("config",
        "[default]\ncredential_process = printf '{\"Version\": 1, \"AccessKeyId\": \"PK\", "
        "\"SecretAccessKey\": \"PS\", \"SessionToken\": \"PT\"}'\n");
  auto settings = resolve(env());
  ASSERT_TRUE(settings.ok()) << settings.status().message();
  EXPECT_EQ(settings->credentials.access_key, "PK");
  EXPECT_EQ(settings->credentials.session_token, "PT");
  EXPECT_EQ(settings->credentials_source, "credential_process of profile 'default'");
  EXPECT_FALSE(settings->refresh) << "no Expiration: fixed credentials";
  write("config", "[default]\ncredential_process = sh -c 'exit 3'\n");
  EXPECT_EQ(resolve(env()).status().message(), "credential_process of profile 'default' failed (exit status 3)");
}

TEST_F(AwsConfig, CredentialProcessWithAnExpirationIsRunAgainToRefresh) {
  // Each run prints the next key: the refresh must run the process again.
  const std::string count = (dir_ / ".aws" / "count").string();
  write("issue.sh", "echo x >> " + count + "\nn=$(wc -l < " + count +
                        ")\nprintf '{\"Version\": 1, \"AccessKeyId\": \"K%s\", \"SecretAccessKey\": \"S\", "
                        "\"Expiration\": \"2026-12-03T19:00:00Z\"}' $n\n");
  write("config", "[default]\ncredential_process = sh " + (dir_ / ".aws" / "issue.sh").string() + "\n");
  auto settings = resolve(env());
  ASSERT_TRUE(settings.ok()) << settings.status().message();
  EXPECT_EQ(settings->credentials.access_key, "K1");
  EXPECT_EQ(settings->expires_at, 1796324400);
  ASSERT_TRUE(settings->refresh);
  auto again = settings->refresh();
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->secret.access_key, "K2");
  write("config",
        "[default]\ncredential_process = printf '{\"Version\": 1, \"AccessKeyId\": \"K\", \"SecretAccessKey\": "
        "\"S\", \"Expiration\": \"soon\"}'\n");
  EXPECT_EQ(resolve(env()).status().message(),
            "credential_process of profile 'default': Expiration: 'soon' is not an ISO 8601 UTC time");
}

TEST_F(AwsConfig, NothingFoundSaysWhereItLookedAndAnUnknownProfileIsRefused) {
  vars_["AWS_EC2_METADATA_DISABLED"] = "true";  // no probe of 169.254.169.254 from a test
  auto settings = resolve(env());
  ASSERT_TRUE(settings.ok());
  EXPECT_TRUE(settings->credentials.access_key.empty());
  ASSERT_GE(settings->tried.size(), 3u);
  EXPECT_EQ(settings->tried[0], "environment (AWS_ACCESS_KEY_ID not set)");
  EXPECT_EQ(settings->tried[1], "config file " + (dir_ / ".aws" / "config").string() + " (not found)");
  EXPECT_EQ(settings->tried.back(), "instance metadata (AWS_EC2_METADATA_DISABLED is true)");
  EXPECT_EQ(settings->region, "us-east-1");
  vars_["AWS_PROFILE"] = "nope";
  EXPECT_EQ(resolve(env()).status().message(), "AWS_PROFILE=nope: no such profile in " +
                                                   (dir_ / ".aws" / "credentials").string() + " or " +
                                                   (dir_ / ".aws" / "config").string());
}

TEST(Iso8601, UtcTimesAsTheCredentialEndpointsWriteThem) {
  EXPECT_EQ(*parse_iso8601_utc("1970-01-01T00:00:10Z"), 10);
  EXPECT_EQ(*parse_iso8601_utc("2026-12-03T19:00:00Z"), 1796324400);
  EXPECT_EQ(*parse_iso8601_utc("2026-12-03T19:00:00.123Z"), 1796324400);
  EXPECT_EQ(*parse_iso8601_utc("2026-12-03T19:00:00+00:00"), 1796324400);
  EXPECT_FALSE(parse_iso8601_utc("2026-12-03T19:00:00+02:00").ok());
  EXPECT_FALSE(parse_iso8601_utc("tomorrow").ok());
}

TEST(CredentialsSource, FetchesOnlyWhenDueAndFailsWhenExpiredAndTheEndpointIsDown) {
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  int fetches = 0;
  bool fail = false;
  auto fetch = [&]() -> Result<ExpiringCredentials> {
    ++fetches;
    if (fail) return Status::Storage("endpoint down");
    return ExpiringCredentials{{"K" + std::to_string(fetches), "S", "T"}, now + 3600};
  };
  // Issued now, for an hour: no fetch yet.
  CredentialsSource fresh(ExpiringCredentials{{"K0", "S", "T"}, now + 3600}, fetch);
  EXPECT_EQ(fresh.current()->access_key, "K0");
  EXPECT_EQ(fetches, 0);
  // Issued with 10 s left (past half of its lifetime from the source's view:
  // margin min(300, 10 / 2)): still fine now, so no fetch either.
  CredentialsSource near(ExpiringCredentials{{"K0", "S", "T"}, now + 10}, fetch);
  EXPECT_EQ(near.current()->access_key, "K0");
  // Already expired: fetched again, and the refresh is counted.
  const auto before = credential_refreshes();
  CredentialsSource expired(ExpiringCredentials{{"K0", "S", "T"}, now - 1}, fetch);
  EXPECT_EQ(expired.current()->access_key, "K1");
  EXPECT_EQ(credential_refreshes(), before + 1);
  // Expired and the endpoint down: an error, not stale credentials.
  fail = true;
  CredentialsSource stuck(ExpiringCredentials{{"K0", "S", "T"}, now - 1}, fetch);
  EXPECT_FALSE(stuck.current().ok());
}

}  // namespace
}  // namespace reshard::aws

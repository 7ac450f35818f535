#include "reshard/store/gcp_credentials.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

namespace reshard::gcp {
namespace {

// Decodes base64url without padding, the way a JWT verifier would.
std::string decode_base64url(const std::string& text) {
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const char c : text) {
    const auto* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char* at = std::strchr(alphabet, c);
    if (at == nullptr || c == '\0') {
      ADD_FAILURE() << "not base64url: " << c;
      return out;
    }
    buffer = (buffer << 6) | static_cast<std::uint32_t>(at - alphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

Key generate_rsa_key() { return Key(EVP_RSA_gen(2048), EVP_PKEY_free); }

std::string private_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

bool rs256_verifies(EVP_PKEY* key, const std::string& message, const std::string& signature) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  return EVP_DigestVerifyInit(context.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
         EVP_DigestVerify(context.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
}

TEST(Base64Url, EncodesWithoutPaddingAndWithTheUrlAlphabet) {
  EXPECT_EQ(base64url(""), "");
  EXPECT_EQ(base64url("f"), "Zg");
  EXPECT_EQ(base64url("fo"), "Zm8");
  EXPECT_EQ(base64url("foo"), "Zm9v");
  EXPECT_EQ(base64url("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64url("\xfb\xff"), "-_8");
  EXPECT_EQ(decode_base64url(base64url("any bytes \x01\xfe")), "any bytes \x01\xfe");
}

TEST(ServiceAccountAssertion, IsAnRs256JwtWithGooglesClaims) {
  Key key = generate_rsa_key();
  ASSERT_TRUE(key);
  const ServiceAccountKey account{"reshard@project.iam.gserviceaccount.com", private_pem(key.get()), "key-1",
                                  "https://oauth2.googleapis.com/token"};
  auto jwt = service_account_assertion(account, kStorageScope, 1796324400);
  ASSERT_TRUE(jwt.ok()) << jwt.status().message();
  const auto first_dot = jwt->find('.');
  const auto second_dot = jwt->find('.', first_dot + 1);
  ASSERT_NE(second_dot, std::string::npos);
  const auto header = nlohmann::json::parse(decode_base64url(jwt->substr(0, first_dot)));
  const auto claims = nlohmann::json::parse(decode_base64url(jwt->substr(first_dot + 1, second_dot - first_dot - 1)));
  EXPECT_EQ(header["alg"], "RS256");
  EXPECT_EQ(header["typ"], "JWT");
  EXPECT_EQ(header["kid"], "key-1");
  EXPECT_EQ(claims["iss"], account.client_email);
  EXPECT_EQ(claims["aud"], account.token_uri);
  EXPECT_EQ(claims["scope"], kStorageScope);
  EXPECT_EQ(claims["iat"], 1796324400);
  EXPECT_EQ(claims["exp"], 1796324400 + 3600);
  const std::string signature = decode_base64url(jwt->substr(second_dot + 1));
  EXPECT_EQ(signature.size(), 256u);
  EXPECT_TRUE(rs256_verifies(key.get(), jwt->substr(0, second_dot), signature));
  // Another key's signature does not verify: the check above can fail.
  Key other = generate_rsa_key();
  EXPECT_FALSE(rs256_verifies(other.get(), jwt->substr(0, second_dot), signature));
}

TEST(ServiceAccountAssertion, RefusesAKeyThatIsNotAnRsaPem) {
  ServiceAccountKey account{"a@b", "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", "", "u"};
  auto jwt = service_account_assertion(account, kStorageScope, 0);
  ASSERT_FALSE(jwt.ok());
  EXPECT_EQ(jwt.status().kind(), ErrorKind::kInvalidInput);
  EXPECT_NE(jwt.status().message().find("private_key is not an unencrypted PEM private key"), std::string::npos);
}

class GcpChain : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("reshard-gcp-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_ / ".config" / "gcloud");
    vars_["HOME"] = dir_.string();
    vars_["NO_GCE_CHECK"] = "true";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  Environment env() const {
    return [this](const char* name) -> std::optional<std::string> {
      auto it = vars_.find(name);
      if (it == vars_.end()) return std::nullopt;
      return it->second;
    };
  }
  std::string error_of(const Result<Settings>& result) const {
    EXPECT_FALSE(result.ok());
    return result.ok() ? "" : result.status().message();
  }
  std::filesystem::path dir_;
  std::map<std::string, std::string> vars_;
};

TEST_F(GcpChain, NothingFoundListsEachLink) {
  auto settings = resolve(env());
  ASSERT_TRUE(settings.ok()) << settings.status().message();
  EXPECT_TRUE(settings->token.empty());
  ASSERT_EQ(settings->tried.size(), 3u);
  EXPECT_EQ(settings->tried[0], "GOOGLE_APPLICATION_CREDENTIALS (not set)");
  EXPECT_EQ(settings->tried[1], "gcloud application-default credentials " + dir_.string() +
                                    "/.config/gcloud/application_default_credentials.json (not found)");
  EXPECT_EQ(settings->tried[2], "metadata server (NO_GCE_CHECK is true)");
}

TEST_F(GcpChain, AMetadataServerThatDoesNotAnswerIsOneFailedLink) {
  vars_.erase("NO_GCE_CHECK");
  vars_["GCE_METADATA_HOST"] = "127.0.0.1:1";  // nothing listens on port 1
  vars_["CLOUDSDK_CONFIG"] = (dir_ / "elsewhere").string();
  auto settings = resolve(env());
  ASSERT_TRUE(settings.ok()) << settings.status().message();
  EXPECT_TRUE(settings->token.empty());
  ASSERT_EQ(settings->tried.size(), 3u);
  EXPECT_NE(settings->tried[1].find(dir_.string() + "/elsewhere/application_default_credentials.json"),
            std::string::npos);
  EXPECT_EQ(
      settings->tried[2].rfind(
          "metadata server (GET http://127.0.0.1:1/computeMetadata/v1/instance/service-accounts/default/token: ", 0),
      0u)
      << settings->tried[2];
}

TEST_F(GcpChain, BadCredentialFilesAreInputErrorsNamingTheFile) {
  vars_["GOOGLE_APPLICATION_CREDENTIALS"] = (dir_ / "missing.json").string();
  EXPECT_EQ(error_of(resolve(env())),
            "GOOGLE_APPLICATION_CREDENTIALS=" + (dir_ / "missing.json").string() + ": no such file");
  const std::string not_json = write("key.json", "{not json");
  vars_["GOOGLE_APPLICATION_CREDENTIALS"] = not_json;
  EXPECT_EQ(error_of(resolve(env())), not_json + ": not a JSON object");
  write("key.json", R"({"type": "service_account", "client_email": "a@b"})");
  EXPECT_EQ(error_of(resolve(env())), not_json + ": service_account credentials without \"private_key\"");
  write("key.json", R"({"type": "external_account", "audience": "x"})");
  EXPECT_NE(error_of(resolve(env())).find(not_json + ": credentials of type 'external_account' are not supported"),
            std::string::npos);
  write("key.json", R"({"type": "service_account", "client_email": "a@b", "private_key": "not a key"})");
  auto bad_key = resolve(env());
  EXPECT_EQ(error_of(bad_key),
            "service account key " + not_json + ": private_key is not an unencrypted PEM private key");
  EXPECT_EQ(bad_key.status().kind(), ErrorKind::kInvalidInput);
  // gcloud's file is read the same way when the variable is not set.
  vars_.erase("GOOGLE_APPLICATION_CREDENTIALS");
  const std::string adc =
      write(".config/gcloud/application_default_credentials.json", R"({"type": "authorized_user", "client_id": "c"})");
  EXPECT_EQ(error_of(resolve(env())), adc + ": authorized_user credentials without \"client_secret\"");
}

TEST_F(GcpChain, ATokenEndpointThatRefusesIsAStorageError) {
  // A token URI nobody listens on: the file is valid, its tokens do not come.
  Key key = generate_rsa_key();
  nlohmann::json file = {{"type", "service_account"},
                         {"client_email", "a@b"},
                         {"private_key", private_pem(key.get())},
                         {"token_uri", "http://127.0.0.1:1/token"}};
  vars_["GOOGLE_APPLICATION_CREDENTIALS"] = write("key.json", file.dump());
  auto settings = resolve(env());
  ASSERT_FALSE(settings.ok());
  EXPECT_EQ(settings.status().kind(), ErrorKind::kStorage);
  EXPECT_EQ(settings.status().message().rfind("service account a@b: POST http://127.0.0.1:1/token: ", 0), 0u)
      << settings.status().message();
  EXPECT_EQ(settings.status().message().find("PRIVATE KEY"), std::string::npos);
}

TEST(TokenSource, RefreshesOnTheSamePolicyAsAwsCredentials) {
  const auto now = unix_seconds_now();
  int fetches = 0;
  TokenSource expired(Expiring<std::string>{"old", now - 1}, [&]() -> Result<Expiring<std::string>> {
    ++fetches;
    return Expiring<std::string>{"new", now + 3600};
  });
  EXPECT_EQ(*expired.current(), "new");
  EXPECT_EQ(*expired.current(), "new");
  EXPECT_EQ(fetches, 1);
  EXPECT_FALSE(refresh_due(now, now, now + 3600));
  EXPECT_TRUE(refresh_due(now + 3600 - 300, now, now + 3600));
  EXPECT_TRUE(refresh_due(now + 2, now, now + 3));  // 3 s tokens: due with 1 s left
}

}  // namespace
}  // namespace reshard::gcp

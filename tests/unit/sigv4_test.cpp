// SigV4 against the worked examples in the AWS S3 documentation
// ("Signature Calculations for the Authorization Header: Transferring
// Payload in a Single Chunk"), which use these example credentials.
#include <gtest/gtest.h>

#include "reshard/store/sigv4.hpp"

namespace reshard::sigv4 {
namespace {

const Credentials kExample{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
const std::string kDate = "20130524T000000Z";
const std::string kEmptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(SigV4, GetObjectExample) {
  Request r;
  r.method = "GET";
  r.path = "/test.txt";
  r.headers = {{"host", "examplebucket.s3.amazonaws.com"},
               {"range", "bytes=0-9"},
               {"x-amz-content-sha256", kEmptyHash},
               {"x-amz-date", kDate}};
  r.payload_hash = kEmptyHash;
  EXPECT_EQ(signature(r, kExample, kDate, "us-east-1", "s3"),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4, ListObjectsExample) {
  Request r;
  r.method = "GET";
  r.path = "/";
  r.query = {{"max-keys", "2"}, {"prefix", "J"}};
  r.headers = {{"host", "examplebucket.s3.amazonaws.com"}, {"x-amz-content-sha256", kEmptyHash}, {"x-amz-date", kDate}};
  r.payload_hash = kEmptyHash;
  EXPECT_EQ(signature(r, kExample, kDate, "us-east-1", "s3"),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(SigV4, GetBucketLifecycleExample) {
  Request r;
  r.method = "GET";
  r.path = "/";
  r.query = {{"lifecycle", ""}};
  r.headers = {{"host", "examplebucket.s3.amazonaws.com"}, {"x-amz-content-sha256", kEmptyHash}, {"x-amz-date", kDate}};
  r.payload_hash = kEmptyHash;
  EXPECT_EQ(signature(r, kExample, kDate, "us-east-1", "s3"),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(SigV4, CanonicalFormsEncodeStrictly) {
  EXPECT_EQ(uri_encode("a b/c+d=é", true), "a%20b/c%2Bd%3D%C3%A9");
  EXPECT_EQ(uri_encode("a/b", false), "a%2Fb");
  // Continuation tokens carry + / =; they are sorted and encoded in full.
  EXPECT_EQ(canonical_query({{"list-type", "2"}, {"continuation-token", "ab+c/d=="}, {"uploads", ""}}),
            "continuation-token=ab%2Bc%2Fd%3D%3D&list-type=2&uploads=");
  Request r;
  r.method = "PUT";
  r.path = "/bucket/dir/key with space.npz";
  r.query = {{"partNumber", "3"}, {"uploadId", "x/y+z"}};
  r.headers = {{"Host", "127.0.0.1:9000"}, {"X-Amz-Date", kDate}, {"x-amz-content-sha256", "abc"}};
  r.payload_hash = "abc";
  EXPECT_EQ(canonical_request(r),
            "PUT\n/bucket/dir/key%20with%20space.npz\npartNumber=3&uploadId=x%2Fy%2Bz\n"
            "host:127.0.0.1:9000\nx-amz-content-sha256:abc\nx-amz-date:20130524T000000Z\n\n"
            "host;x-amz-content-sha256;x-amz-date\nabc");
}

TEST(Digests, KnownValues) {
  const std::string text = "Welcome to Amazon S3.";
  const ByteView bytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  EXPECT_EQ(sha256_hex(ByteView()), kEmptyHash);
  EXPECT_EQ(sha256_hex(bytes), "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  EXPECT_EQ(md5_hex(ByteView()), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_base64(ByteView()), "1B2M2Y8AsgTpgAmY7PhCfg==");
}

}  // namespace
}  // namespace reshard::sigv4

#include "reshard/json_text.hpp"

#include <gtest/gtest.h>

namespace reshard {
namespace {

TEST(JsonText, InvalidBytesSurviveAJsonRoundTrip) {
  const std::string cases[] = {
      std::string("plain/ascii.npz"),        std::string("utf8-\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
      std::string("bad-\xff\xfe-bytes"),     std::string("lone-continuation-\x80"),
      std::string("truncated-\xe2\x82"),     std::string("overlong-\xc0\xaf"),
      std::string("surrogate-\xed\xa0\x80"), std::string("nul-\0-inside", 13),
  };
  for (const auto& bytes : cases) {
    nlohmann::json value = {{"key", bytes}, {"list", {bytes, 1}}};
    escape_strings(value);
    const std::string text = value.dump();  // throws on invalid UTF-8 without the escape
    nlohmann::json back = nlohmann::json::parse(text);
    unescape_strings(back);
    EXPECT_EQ(back["key"].get<std::string>(), bytes);
    EXPECT_EQ(back["list"][0].get<std::string>(), bytes);
  }
}

TEST(JsonText, ValidUtf8IsUnchanged) {
  const std::string text = "caf\xc3\xa9 \xf0\x9f\x98\x80";
  EXPECT_EQ(escape_invalid_utf8(text), text);
  EXPECT_EQ(unescape_invalid_utf8(text), text);
}

TEST(JsonText, PrintableShowsInvalidBytesAsHex) {
  EXPECT_EQ(printable("dst\xff\xfe/x"), "dst\\xFF\\xFE/x");
  EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9");
}

}  // namespace
}  // namespace reshard

#include "reshard/store/xml_text.hpp"

#include <cstring>
#include <utility>

namespace reshard {
namespace {

std::string xml_unescape(std::string text) {
  const std::pair<const char*, const char*> entities[] = {{"&lt;", "<"},   {"&gt;", ">"},   {"&quot;", "\""},
                                                          {"&apos;", "'"}, {"&#34;", "\""}, {"&amp;", "&"}};
  for (const auto& [from, to] : entities) {
    for (std::size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + 1)) {
      text.replace(pos, std::strlen(from), to);
    }
  }
  return text;
}

}  // namespace

// Every <tag>text</tag> in order; S3's responses are flat enough for this.
std::vector<std::string> xml_all(const std::string& body, const std::string& tag) {
  std::vector<std::string> out;
  const std::string open = "<" + tag + ">";
  const std::string close = "</" + tag + ">";
  for (std::size_t pos = body.find(open); pos != std::string::npos; pos = body.find(open, pos)) {
    const std::size_t start = pos + open.size();
    const std::size_t end = body.find(close, start);
    if (end == std::string::npos) break;
    out.push_back(xml_unescape(body.substr(start, end - start)));
    pos = end + close.size();
  }
  return out;
}

std::string xml_first(const std::string& body, const std::string& tag) {
  auto all = xml_all(body, tag);
  return all.empty() ? std::string() : all.front();
}

}  // namespace reshard

// Text of elements in the flat XML that S3 and STS answer with: enough for
// their responses, not a general XML parser.
#pragma once

#include <string>
#include <vector>

namespace reshard {

// Every <tag>text</tag> in order, entities decoded.
std::vector<std::string> xml_all(const std::string& body, const std::string& tag);
// The first, or "" when there is none.
std::string xml_first(const std::string& body, const std::string& tag);

}  // namespace reshard

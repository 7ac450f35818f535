// Strings that are bytes (POSIX paths, zip member names) inside JSON, which
// only holds UTF-8. Each byte that is not part of valid UTF-8 becomes the
// code point U+10FF00 + byte (Unicode's last private-use plane), and back,
// so any path survives a manifest or a collective exactly. A string that
// really holds those 256 code points would be read back as bytes; they are
// private-use characters no file name is expected to carry.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace reshard {

std::string escape_invalid_utf8(std::string_view bytes);
std::string unescape_invalid_utf8(std::string_view text);
// Every string value in `value`, in place.
void escape_strings(nlohmann::json& value);
void unescape_strings(nlohmann::json& value);
// For messages on a terminal: invalid bytes as \xNN, the rest unchanged.
std::string printable(std::string_view bytes);

}  // namespace reshard

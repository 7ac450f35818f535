// Small JSON documents as the byte payloads of collectives (headers, stats,
// decisions all-gathered between ranks).
#pragma once

#include <nlohmann/json.hpp>

#include "reshard/bytes.hpp"
#include "reshard/json_text.hpp"

namespace reshard {

// Strings inside are bytes (paths): escaped so that any byte survives
// (reshard/json_text.hpp), and unescaped again by parse_json_bytes.
inline Bytes json_bytes(nlohmann::json value) {
  escape_strings(value);
  const std::string text = value.dump();
  return Bytes(text.begin(), text.end());
}

inline nlohmann::json parse_json_bytes(ByteView bytes) {
  nlohmann::json value = nlohmann::json::parse(bytes.begin(), bytes.end());
  unescape_strings(value);
  return value;
}

}  // namespace reshard

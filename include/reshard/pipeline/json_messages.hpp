// Small JSON documents as the byte payloads of collectives (headers, stats,
// decisions all-gathered between ranks).
#pragma once

#include <nlohmann/json.hpp>

#include "reshard/bytes.hpp"

namespace reshard {

inline Bytes json_bytes(const nlohmann::json& value) {
  const std::string text = value.dump();
  return Bytes(text.begin(), text.end());
}

inline nlohmann::json parse_json_bytes(ByteView bytes) { return nlohmann::json::parse(bytes.begin(), bytes.end()); }

}  // namespace reshard

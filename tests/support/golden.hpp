#pragma once

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "reshard/bytes.hpp"

namespace reshard::testing {

inline std::string golden_path(const std::string& name) { return std::string(RESHARD_GOLDEN_DIR) + "/" + name; }

inline Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline nlohmann::json golden_expectations() {
  std::ifstream in(golden_path("expected.json"));
  return nlohmann::json::parse(in);
}

}  // namespace reshard::testing

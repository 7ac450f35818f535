// One HTTP exchange through libcurl. libcurl's errors become a transport
// failure here and nowhere else; status codes are the caller's to judge.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "reshard/bytes.hpp"

namespace reshard::http {

struct Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  ByteView body;
  long timeout_seconds = 300;
};

struct Response {
  bool transport_ok = false;    // false: no complete HTTP response
  std::string transport_error;  // libcurl's message when !transport_ok
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  Bytes body;
};

Response perform(const Request& request);

}  // namespace reshard::http

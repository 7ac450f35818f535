// Byte buffers and little-endian field access shared by the file formats.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "reshard/status.hpp"

namespace reshard {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;
// Takes bytes in order (a file being written as it is encoded); a view is
// valid only during the call.
using ByteSink = std::function<Status(ByteView)>;

template <typename T>
T load_le(const std::uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));  // the supported targets are little-endian
  return value;
}

template <typename T>
void append_le(Bytes& out, T value) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

inline void append_bytes(Bytes& out, std::string_view text) { out.insert(out.end(), text.begin(), text.end()); }

inline void append_bytes(Bytes& out, ByteView data) { out.insert(out.end(), data.begin(), data.end()); }

// A sink that collects what it is handed at the end of `out`.
inline ByteSink appending_to(Bytes& out) {
  return [&out](ByteView bytes) {
    append_bytes(out, bytes);
    return Status::Ok();
  };
}

}  // namespace reshard

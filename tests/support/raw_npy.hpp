#pragma once

#include <string>

#include "reshard/bytes.hpp"

namespace reshard::testing {

// An .npy with a hand-written header dict and `payload_bytes` zero bytes, for
// headers numpy itself would not write (object, big-endian, Fortran, ...).
inline Bytes raw_npy(const std::string& dict, std::size_t payload_bytes) {
  Bytes out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  append_le<std::uint16_t>(out, static_cast<std::uint16_t>(dict.size()));
  append_bytes(out, dict);
  out.resize(out.size() + payload_bytes, 0);
  return out;
}

}  // namespace reshard::testing

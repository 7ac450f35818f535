// CRC-32C (Castagnoli), the content checksum recorded for every written
// shard. Uses the SSE4.2 instruction when the CPU has it.
#pragma once

#include <cstdint>

#include "reshard/bytes.hpp"

namespace reshard {

std::uint32_t crc32c(ByteView data, std::uint32_t crc = 0);

}  // namespace reshard

// Sizes, durations and counts as people read and type them: the CLI's flags,
// its summary and progress lines, and the messages of refusals.
#pragma once

#include <cstdint>
#include <string>

#include "reshard/status.hpp"

namespace reshard {

// "512MiB", "2GiB", "1.5G", "1048576" (bytes). K/M/G/T are powers of 1024
// too: memory is counted in pages, not in decimal units.
Result<std::uint64_t> parse_byte_size(const std::string& text);
std::string format_bytes(std::uint64_t bytes);  // "12.3 MiB"
// format_bytes(bytes), with both exact byte counts added where it would read
// the same as `other` ("needs 5.9 GiB ... leaves 5.9 GiB" says nothing).
std::string format_bytes_against(std::uint64_t bytes, std::uint64_t other);
// "0.42 s", "12.3 s", "4 min 05 s", "2 h 07 min".
std::string format_seconds(double seconds);
// "950", "12.5k", "9.69M", "1.23G" (decimal: these are entries, not bytes).
std::string format_count(double count);

}  // namespace reshard

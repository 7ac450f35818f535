#include "reshard/units.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

namespace reshard {

Result<std::uint64_t> parse_byte_size(const std::string& text) {
  std::size_t used = 0;
  double number = 0;
  try {
    number = std::stod(text, &used);
  } catch (const std::exception&) {
    return Status::Invalid("'" + text + "' is not a size (e.g. 512MiB, 4GiB)");
  }
  std::string unit = text.substr(used);
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::tolower(c); });
  double scale = 1;
  if (unit.empty() || unit == "b") {
    scale = 1;
  } else if (unit == "k" || unit == "kb" || unit == "kib") {
    scale = 1ULL << 10;
  } else if (unit == "m" || unit == "mb" || unit == "mib") {
    scale = 1ULL << 20;
  } else if (unit == "g" || unit == "gb" || unit == "gib") {
    scale = 1ULL << 30;
  } else if (unit == "t" || unit == "tb" || unit == "tib") {
    scale = static_cast<double>(1ULL << 40);
  } else {
    return Status::Invalid("'" + text + "' has an unknown unit (use B, KiB, MiB, GiB or TiB)");
  }
  const double bytes = number * scale;
  if (!(bytes >= 1) || bytes > 1e19) return Status::Invalid("'" + text + "' is not a positive size");
  return static_cast<std::uint64_t>(std::llround(bytes));
}

std::string format_bytes(std::uint64_t bytes) {
  char buffer[32];
  const double b = static_cast<double>(bytes);
  if (bytes >= (1ULL << 30))
    (void)std::snprintf(buffer, sizeof(buffer), "%.1f GiB", b / static_cast<double>(1ULL << 30));
  else if (bytes >= (1ULL << 20))
    (void)std::snprintf(buffer, sizeof(buffer), "%.1f MiB", b / static_cast<double>(1ULL << 20));
  else if (bytes >= (1ULL << 10))
    (void)std::snprintf(buffer, sizeof(buffer), "%.1f KiB", b / 1024.0);
  else
    (void)std::snprintf(buffer, sizeof(buffer), "%llu B", static_cast<unsigned long long>(bytes));
  return buffer;
}

std::string format_bytes_against(std::uint64_t bytes, std::uint64_t other) {
  std::string text = format_bytes(bytes);
  if (bytes != other && text == format_bytes(other)) {
    text += " (" + std::to_string(bytes) + " bytes against " + std::to_string(other) + ")";
  }
  return text;
}

std::string format_seconds(double seconds) {
  char buffer[48];
  if (!(seconds >= 0)) seconds = 0;
  if (seconds < 10) {
    (void)std::snprintf(buffer, sizeof(buffer), "%.2f s", seconds);
  } else if (seconds < 100) {
    (void)std::snprintf(buffer, sizeof(buffer), "%.1f s", seconds);
  } else if (seconds < 3600) {
    const auto whole = static_cast<long long>(std::llround(seconds));
    (void)std::snprintf(buffer, sizeof(buffer), "%lld min %02lld s", whole / 60, whole % 60);
  } else {
    const auto minutes = static_cast<long long>(std::llround(seconds / 60));
    (void)std::snprintf(buffer, sizeof(buffer), "%lld h %02lld min", minutes / 60, minutes % 60);
  }
  return buffer;
}

std::string format_count(double count) {
  char buffer[32];
  if (count >= 1e9) {
    (void)std::snprintf(buffer, sizeof(buffer), "%.2fG", count / 1e9);
  } else if (count >= 1e6) {
    (void)std::snprintf(buffer, sizeof(buffer), "%.2fM", count / 1e6);
  } else if (count >= 1e4) {
    (void)std::snprintf(buffer, sizeof(buffer), "%.1fk", count / 1e3);
  } else {
    (void)std::snprintf(buffer, sizeof(buffer), "%.0f", count);
  }
  return buffer;
}

}  // namespace reshard

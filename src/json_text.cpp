#include "reshard/json_text.hpp"

#include <cstdint>
#include <cstdio>

namespace reshard {
namespace {

constexpr std::uint32_t kEscapeBase = 0x10FF00;

// Length of the valid UTF-8 sequence at text[i], or 0 when it is not one
// (overlong forms, surrogates and code points past U+10FFFF are invalid).
std::size_t valid_sequence_at(std::string_view text, std::size_t i, std::uint32_t& code_point) {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(text[k]); };
  const std::uint8_t lead = byte(i);
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  }
  std::size_t length = 0;
  std::uint32_t minimum = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, code_point = lead & 0x1F, minimum = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, code_point = lead & 0x0F, minimum = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, code_point = lead & 0x07, minimum = 0x10000;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (byte(i + k) & 0x3F);
  }
  if (code_point < minimum || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) return 0;
  return length;
}

void append_utf8(std::string& out, std::uint32_t code_point) {
  out += static_cast<char>(0xF0 | (code_point >> 18));
  out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
  out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
  out += static_cast<char>(0x80 | (code_point & 0x3F));
}

template <typename Transform>
void transform_strings(nlohmann::json& value, Transform&& transform) {
  if (value.is_string()) {
    value = transform(value.get_ref<const std::string&>());
  } else if (value.is_array() || value.is_object()) {
    for (auto& item : value) transform_strings(item, transform);
  }
}

}  // namespace

std::string escape_invalid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    std::uint32_t code_point = 0;
    const std::size_t length = valid_sequence_at(bytes, i, code_point);
    if (length == 0) {
      append_utf8(out, kEscapeBase + static_cast<std::uint8_t>(bytes[i]));
      ++i;
    } else {
      out.append(bytes.substr(i, length));
      i += length;
    }
  }
  return out;
}

std::string unescape_invalid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t code_point = 0;
    const std::size_t length = valid_sequence_at(text, i, code_point);
    if (length == 4 && code_point >= kEscapeBase) {
      out += static_cast<char>(code_point - kEscapeBase);
    } else {
      out.append(text.substr(i, length == 0 ? 1 : length));
    }
    i += length == 0 ? 1 : length;
  }
  return out;
}

void escape_strings(nlohmann::json& value) { transform_strings(value, escape_invalid_utf8); }
void unescape_strings(nlohmann::json& value) { transform_strings(value, unescape_invalid_utf8); }

std::string printable(std::string_view bytes) {
  std::string out;
  for (std::size_t i = 0; i < bytes.size();) {
    std::uint32_t code_point = 0;
    const std::size_t length = valid_sequence_at(bytes, i, code_point);
    if (length == 0) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02X", static_cast<unsigned>(static_cast<std::uint8_t>(bytes[i])));
      out += hex;
      ++i;
    } else {
      out.append(bytes.substr(i, length));
      i += length;
    }
  }
  return out;
}

}  // namespace reshard

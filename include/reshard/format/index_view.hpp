// A read-only array of non-negative indices stored 4 or 8 bytes wide,
// little-endian: an assembled shard keeps its indices at the width its file
// stores them, so the writer can use them without a converted copy.
#pragma once

#include <cstdint>
#include <span>

#include "reshard/bytes.hpp"

namespace reshard {

class IndexView {
 public:
  IndexView() = default;
  IndexView(ByteView bytes, std::uint32_t width) : bytes_(bytes), width_(width) {}
  IndexView(std::span<const std::uint64_t> wide)  // NOLINT(google-explicit-constructor): a span of words is one
      : bytes_(reinterpret_cast<const std::uint8_t*>(wide.data()), wide.size() * 8), width_(8) {}
  template <typename Allocator>
  IndexView(const std::vector<std::uint64_t, Allocator>& wide)  // NOLINT(google-explicit-constructor)
      : IndexView(std::span<const std::uint64_t>(wide)) {}

  std::uint64_t size() const { return bytes_.size() / width_; }
  bool empty() const { return bytes_.empty(); }
  std::uint32_t width() const { return width_; }
  ByteView bytes() const { return bytes_; }
  std::uint64_t operator[](std::uint64_t k) const {
    return width_ == 4 ? load_le<std::uint32_t>(bytes_.data() + k * 4) : load_le<std::uint64_t>(bytes_.data() + k * 8);
  }

 private:
  ByteView bytes_;
  std::uint32_t width_ = 8;
};

}  // namespace reshard

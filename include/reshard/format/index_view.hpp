// A read-only array of non-negative indices stored 4 or 8 bytes wide,
// little-endian: an assembled shard keeps its indices at the width its file
// stores them, so the writer can use them without a converted copy.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

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
  std::uint32_t width() const { return width_; }
  ByteView bytes() const { return bytes_; }
  std::uint64_t operator[](std::uint64_t k) const {
    return width_ == 4 ? load_le<std::uint32_t>(bytes_.data() + k * 4) : load_le<std::uint64_t>(bytes_.data() + k * 8);
  }

 private:
  ByteView bytes_;
  std::uint32_t width_ = 8;
};

// Writes `value` as word k of an array of `width`-byte (4 or 8) words,
// little-endian: the low four bytes of a word are its value when it fits.
inline void store_index(std::uint8_t* array, std::uint32_t width, std::uint64_t k, std::uint64_t value) {
  std::memcpy(array + k * width, &value, width);
}

// Every index of `from`, as `width`-byte words at `out`: the conversion
// when a writer needs another width than the one the indices are kept at.
inline void copy_indices(IndexView from, std::uint32_t width, std::uint8_t* out) {
  for (std::uint64_t k = 0; k < from.size(); ++k) store_index(out, width, k, from[k]);
}

}  // namespace reshard

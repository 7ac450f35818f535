// Vectors for the large arrays of the shuffle (bucket blocks, exchange
// messages, assembled indices and values): their resize() leaves the new
// elements unset instead of zeroing them. Each of these arrays is written in
// full right after it is sized, so zeroing it first was one more pass over
// fresh memory: a memset that showed as 16% of a job's samples under perf.
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace reshard {

template <typename T>
class DefaultInitAllocator : public std::allocator<T> {
 public:
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() noexcept = default;
  template <typename U>
  DefaultInitAllocator(const DefaultInitAllocator<U>& other) noexcept : std::allocator<T>(other) {}

  // Default-initialization: nothing is written for trivial types.
  template <typename U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// Only for trivially copyable element types, which default-initialization
// leaves unset: every element must be written before it is read.
template <typename T>
using WorkArray = std::vector<T, DefaultInitAllocator<T>>;
using ByteArray = WorkArray<std::uint8_t>;

}  // namespace reshard

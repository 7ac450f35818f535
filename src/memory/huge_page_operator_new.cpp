// The program's replacement of the global operator new and delete (linked
// into the executables, not the library): large blocks come from malloc as
// their own mappings (configure_process_memory) and are advised to use huge
// pages before the caller touches them, which is when std::vector zero-fills
// them. Every non-aligned form is replaced, delete included, so that each
// allocation is paired with its own release: with only new replaced, a
// sanitizer's operator delete reports every block as malloc'd memory
// released by delete. The aligned forms stay the runtime's, as a pair.
#include <cstdlib>
#include <new>

#include "reshard/process_memory.hpp"

namespace {

void* allocate(std::size_t bytes) {
  void* p = std::malloc(bytes == 0 ? 1 : bytes);
  while (p == nullptr) {
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
    p = std::malloc(bytes == 0 ? 1 : bytes);
  }
  if (bytes >= reshard::kHugePageMinBytes && reshard::huge_pages_wanted()) reshard::advise_huge_pages(p, bytes);
  return p;
}

void* allocate_or_null(std::size_t bytes) noexcept {
  try {
    return allocate(bytes);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

void* operator new(std::size_t bytes) { return allocate(bytes); }
void* operator new[](std::size_t bytes) { return allocate(bytes); }
void* operator new(std::size_t bytes, const std::nothrow_t&) noexcept { return allocate_or_null(bytes); }
void* operator new[](std::size_t bytes, const std::nothrow_t&) noexcept { return allocate_or_null(bytes); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

// The program's replacement of the global operator new (linked into the
// executables, not the library): large blocks come from malloc as their own
// mappings (configure_process_memory) and are advised to use huge pages
// before the caller touches them, which is when std::vector zero-fills them.
// operator delete stays the default, free(), which unmaps them.
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

}  // namespace

void* operator new(std::size_t bytes) { return allocate(bytes); }
void* operator new[](std::size_t bytes) { return allocate(bytes); }

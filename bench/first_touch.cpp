// What touching memory costs on this machine, by how recently the kernel
// had it: a fresh 1 GiB mapping (huge pages advised) is written, unmapped,
// and mapped again after a pause, several times per pause length. On a
// virtual machine whose balloon reports free pages to the host, pages the
// process gave back a second ago cost as much as never-touched ones; pages
// given back a moment ago are still warm. docs/performance.md uses it to
// explain why the pipeline gives pages back as soon as it is done with
// them. Usage:
//   build/bin/first_touch [GIB]      (default 1)
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

using Clock = std::chrono::steady_clock;

double touch_fresh_mapping(std::size_t bytes) {
  const auto t0 = Clock::now();
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("first_touch: mmap");
    std::exit(1);
  }
  (void)madvise(p, bytes, MADV_HUGEPAGE);
  std::memset(p, 1, bytes);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  (void)munmap(p, bytes);
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const double gib = argc > 1 ? std::atof(argv[1]) : 1.0;
  if (gib <= 0) {
    std::fprintf(stderr, "usage: first_touch [GIB]\n");
    return 2;
  }
  const auto bytes = static_cast<std::size_t>(gib * static_cast<double>(std::size_t{1} << 30));
  std::printf("%-28s%12s%12s%12s\n", "pause before the mapping", "s/GiB 1st", "2nd", "3rd");
  for (const double pause : {0.0, 0.2, 1.0, 3.0}) {
    std::printf("%-28.1f", pause);
    for (int i = 0; i < 3; ++i) {
      (void)usleep(static_cast<useconds_t>(pause * 1e6));
      std::printf("%12.3f", touch_fresh_mapping(bytes) / gib);
    }
    std::printf("\n");
  }
  return 0;
}

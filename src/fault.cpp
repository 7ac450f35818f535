#include "reshard/fault.hpp"

#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace reshard::fault {
namespace {

struct Config {
  std::string point;
  int rank = 0;
  long after = 1;
  long seen = 0;
  bool this_rank = false;
};

Config& config() {
  static Config c;
  return c;
}

}  // namespace

void configure(int rank) {
  Config& c = config();
  c = Config{};
  const char* env = std::getenv("RESHARD_FAULT");
  if (env == nullptr || *env == '\0') return;
  std::string spec = env;
  std::size_t pos = spec.find(':');
  c.point = spec.substr(0, pos);
  while (pos != std::string::npos) {
    const std::size_t next = spec.find(':', pos + 1);
    const std::string item = spec.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    if (item.rfind("rank=", 0) == 0) c.rank = std::atoi(item.c_str() + 5);
    if (item.rfind("after=", 0) == 0) c.after = std::atol(item.c_str() + 6);
    pos = next;
  }
  c.this_rank = c.rank == rank;
}

bool active(const char* name) {
  const Config& c = config();
  return c.this_rank && c.point == name;
}

bool fires_next(const char* name) {
  const Config& c = config();
  return c.this_rank && c.point == name && c.seen + 1 >= c.after;
}

void point(const char* name) {
  Config& c = config();
  if (!c.this_rank || c.point != name) return;
  if (++c.seen < c.after) return;
  std::fprintf(stderr, "mpi_reshard: fault injected at %s (rank %d)\n", name, c.rank);
  std::fflush(stderr);
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);
}

}  // namespace reshard::fault

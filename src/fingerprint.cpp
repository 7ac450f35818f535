#include "reshard/fingerprint.hpp"

#include <cstdio>

namespace reshard {

std::string Fingerprint::sum_hex() const {
  char buffer[17];
  (void)std::snprintf(buffer, sizeof(buffer), "%016llx", static_cast<unsigned long long>(sum));
  return buffer;
}

std::string Fingerprint::to_string() const { return "nnz=" + std::to_string(count) + " sum=" + sum_hex(); }

}  // namespace reshard

// A forecast of load per row or column, as a serving system's load predictor
// would emit it: a .npy vector indexed by id, or CSV lines "index,weight".
// Parsed over bytes; the caller reads the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reshard/bytes.hpp"
#include "reshard/status.hpp"

namespace reshard {

// One weight per id in [0, extent); ids the file does not name weigh 1.
// Weights must be finite and >= 0. Errors name `name` and, for CSV, the line.
Result<std::vector<double>> parse_weights(ByteView file, const std::string& name, std::uint64_t extent,
                                          const std::string& axis_noun);

// Integer costs proportional to `values` (for the exact integer partition):
// scaled so their total is about 2^50, far finer than any load forecast.
std::vector<std::uint64_t> integer_costs(const std::vector<double>& values);

}  // namespace reshard

// Random sparse matrices for tests, sharded and written with the library's
// own encoder (the pytest suite covers files that scipy wrote).
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "reshard/sharding_spec.hpp"
#include "reshard/store/store.hpp"

namespace reshard::testing {

struct Triple {
  std::uint64_t row;
  std::uint64_t col;
  std::uint64_t value_bits;
  auto operator<=>(const Triple&) const = default;
};

// nnz random float64 entries (duplicates possible) with skewed rows.
std::vector<Triple> random_entries(GlobalShape shape, std::uint64_t nnz, std::uint64_t seed);

// Shards the entries with `spec` and writes every shard under `pattern`
// (with {i}), as CSR float64 files.
void write_sharded(const std::vector<Triple>& entries, GlobalShape shape, const ShardingSpec& spec,
                   const std::string& pattern);

// Reads every shard of a sharded matrix back as global triples, sorted.
std::vector<Triple> read_sharded(GlobalShape shape, const ShardingSpec& spec, const std::string& pattern);

}  // namespace reshard::testing

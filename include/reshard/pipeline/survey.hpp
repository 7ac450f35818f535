// `mpi_reshard plan`: what a reshard would do, learned from the sources'
// structure alone (zip directories, indptr and, when the destination depends
// on the other axis, indices; never data): entries and estimated bytes per
// destination shard, skew, what moves, the memory a rank needs, and balanced
// or load-weighted boundaries. Collective; rank 0's answer is the one used.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "reshard/bytes.hpp"
#include "reshard/comm.hpp"
#include "reshard/format/zip.hpp"
#include "reshard/sharding_spec.hpp"
#include "reshard/status.hpp"

namespace reshard {

enum class Balance { kNone, kNnz, kBytes, kWeight, kWeightedNnz };
Result<Balance> parse_balance(const std::string& text);
std::string balance_name(Balance balance);

struct SurveyRequest {
  std::string src_pattern;
  ShardingSpec old_spec;
  ShardingSpec new_spec;
  std::string dst_pattern;         // optional: names the shards in the figures
  int ranks = 0;                   // the -np to model (0: this job's)
  std::uint64_t memory_limit = 0;  // per rank (0: the job's default)
  zip::WriteOptions compression;   // the job's --compress, for byte estimates
  Balance balance = Balance::kNone;
  std::uint64_t balance_shards = 0;   // 0: as many as the new scheme has
  std::optional<Bytes> weights_file;  // a forecast of load per row or column
  std::string weights_name;
};

struct Survey {
  // The whole answer, as `plan --format json` prints it (docs/operations.md).
  // Complete on rank 0 only: the per-line figures (largest line, proposal)
  // are summed there alone, since only rank 0 prints.
  nlohmann::json figures;
  // max/mean - 1 of the new scheme's entries per shard (0 when empty).
  double imbalance = 0;
  // The proposal's scheme text when a balance was asked for (rank 0).
  std::string proposed_scheme;
};

// Lines (rows or columns) beyond this are counted in groups of consecutive
// ids, and proposals cut only between groups: 2^26 counts are 512 MiB.
inline constexpr std::uint64_t kMaxSurveyLines = std::uint64_t{1} << 26;

Result<Survey> run_survey(Comm& comm, const SurveyRequest& request);

// Shared with the job's report: entries per shard summarised.
nlohmann::json skew_figures(const std::vector<std::uint64_t>& entries);

}  // namespace reshard

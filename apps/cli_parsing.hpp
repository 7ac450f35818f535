// Flag parsing shared by mpi_reshard's commands: schemes, --compress and
// numbers, each checked here with a one-line error naming the flag.
#pragma once

#include <cstdint>
#include <string>

#include "reshard/format/zip.hpp"
#include "reshard/sharding_spec.hpp"
#include "reshard/status.hpp"

namespace cli {

reshard::Status fail(const std::string& message);
// "rows:block=R" text, or "@file.json".
reshard::Result<reshard::ShardingSpec> load_scheme(const std::string& text, const char* flag);
reshard::Result<reshard::zip::WriteOptions> parse_compression(const std::string& text);
reshard::Status parse_count(const std::string& text, const char* flag, std::uint64_t minimum, std::uint64_t& out);
reshard::Status parse_fraction(const std::string& text, const char* flag, double& out);

}  // namespace cli

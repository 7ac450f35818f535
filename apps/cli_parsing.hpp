// Flag parsing shared by mpi_reshard's commands: schemes, --compress and
// numbers, each checked here with a one-line error naming the flag.
#pragma once

#include <boost/program_options.hpp>
#include <cstdint>
#include <optional>
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

// A subcommand's flags (argv[1] is the subcommand's name): returns the exit
// code when the process should stop here (--help: 0, a bad flag: 2, said
// on rank 0 as "mpi_reshard NAME: ... (see NAME --help)").
std::optional<int> parse_subcommand(int argc, char** argv, int rank, const char* name,
                                    const boost::program_options::options_description& options,
                                    boost::program_options::variables_map& vm);

}  // namespace cli

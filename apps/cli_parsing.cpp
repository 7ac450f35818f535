#include "cli_parsing.hpp"

#include <charconv>
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

namespace cli {

using reshard::Status;

Status fail(const std::string& message) { return Status::Invalid(message); }

reshard::Result<reshard::ShardingSpec> load_scheme(const std::string& text, const char* flag) {
  if (!text.empty() && text[0] == '@') {
    std::ifstream in(text.substr(1));
    if (!in) return fail(std::string(flag) + ": cannot open " + text.substr(1));
    nlohmann::json json = nlohmann::json::parse(in, nullptr, false);
    if (json.is_discarded()) return fail(std::string(flag) + ": " + text.substr(1) + " is not valid JSON");
    auto spec = reshard::ShardingSpec::from_json(json);
    if (!spec.ok()) return spec.status().with_context(std::string(flag) + " " + text.substr(1));
    return spec;
  }
  auto spec = reshard::ShardingSpec::parse_text(text);
  if (!spec.ok()) return spec.status().with_context(flag);
  return spec;
}

reshard::Result<reshard::zip::WriteOptions> parse_compression(const std::string& text) {
  reshard::zip::WriteOptions options;
  if (text == "none") {
    options.method = reshard::zip::Method::kStored;
    return options;
  }
  // "deflate[:L]" is libdeflate (L 0..12), "igzip[:L]" ISA-L (L 0..3).
  const bool igzip = text.rfind("igzip", 0) == 0;
  const std::string engine = igzip ? "igzip" : "deflate";
  const int max_level = igzip ? 3 : 12;
  options.deflater = igzip ? reshard::zip::Deflater::kIgzip : reshard::zip::Deflater::kLibdeflate;
  if (text == engine) return options;
  if (text.rfind(engine + ":", 0) == 0) {
    const std::string level = text.substr(engine.size() + 1);
    try {
      std::size_t used = 0;
      options.level = std::stoi(level, &used);
      if (used == level.size() && options.level >= 0 && options.level <= max_level) return options;
    } catch (const std::exception&) {
    }
  }
  return fail("--compress '" + text + "': expected none, igzip, igzip:LEVEL (0..3), deflate or deflate:LEVEL (0..12)");
}

// Numeric flags are read as text and checked here: Boost's lexical_cast
// turns "-1" into 2^64-1 for an unsigned option and takes "nan" for a
// double, both of which would be accepted silently.
Status parse_count(const std::string& text, const char* flag, std::uint64_t minimum, std::uint64_t& out) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return fail(std::string(flag) + " '" + text + "': expected a whole number of at least " + std::to_string(minimum));
  }
  if (value < minimum) return fail(std::string(flag) + " must be at least " + std::to_string(minimum));
  out = value;
  return Status::Ok();
}

Status parse_fraction(const std::string& text, const char* flag, double& out) {
  double value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || !std::isfinite(value) || value < 0) {
    return fail(std::string(flag) + " '" + text + "': expected a finite number >= 0");
  }
  out = value;
  return Status::Ok();
}

std::optional<int> parse_subcommand(int argc, char** argv, int rank, const char* name,
                                    const boost::program_options::options_description& options,
                                    boost::program_options::variables_map& vm) {
  namespace po = boost::program_options;
  try {
    po::store(po::parse_command_line(argc - 1, argv + 1, options), vm);
    if (vm.count("help")) {
      if (rank == 0) std::cout << options << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    if (rank == 0) std::cerr << "mpi_reshard " << name << ": " << e.what() << " (see " << name << " --help)\n";
    return 2;
  }
  return std::nullopt;
}

}  // namespace cli

#include "plan_command.hpp"

#include <boost/program_options.hpp>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli_parsing.hpp"
#include "reshard/json_text.hpp"
#include "reshard/pipeline/survey.hpp"
#include "reshard/units.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace {

constexpr const char* kPlanUsage = R"(mpi_reshard plan: see a reshard before running it.

Reads only the sources' zip directories and index arrays (never their values)
and prints, for the new scheme: entries and estimated bytes per destination
shard, imbalance (max/mean - 1), hot shards (over 2x the mean, over 5x the
median), the entries that change shard and that would cross ranks on -np
ranks, and the memory a rank needs. With --balance it proposes boundaries
(an optimal contiguous partition) printed as a scheme for --new-scheme.
Run as a plain command it is one process without MPI; under mpirun or srun
the ranks share the reading.

Usage:
  mpi_reshard plan --src 'data/m/shard_{i}.npz' --old-scheme rows:block=250000 \
                   --new-scheme cols:block=62500 [--balance nnz] [--format json]

Exit codes: 0 planned, 2 bad input or --fail-on-skew exceeded, 4 storage failure.

Options)";

std::string percent(double fraction) {
  std::ostringstream out;
  out.precision(fraction < 0.001 && fraction > 0 ? 2 : 3);
  out << fraction * 100 << "%";
  return out.str();
}

std::string ratio(double value) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(2);
  out << value;
  return out.str();
}

void print_skew(std::ostream& out, const json& figures, const char* indent) {
  out << indent << "entries per shard: min " << reshard::format_count(figures["min"].get<double>()) << ", median "
      << reshard::format_count(figures["median"].get<double>()) << ", mean "
      << reshard::format_count(figures["mean"].get<double>()) << ", max "
      << reshard::format_count(figures["max"].get<double>()) << "; imbalance "
      << ratio(figures["imbalance"].get<double>()) << " (max/mean - 1)\n";
  const auto& over_mean = figures["hot_over_2x_mean"];
  const auto& over_median = figures["hot_over_5x_median"];
  out << indent << "hot shards: " << over_mean.size() << " over 2x the mean, " << over_median.size()
      << " over 5x the median\n";
}

void print_text(std::ostream& out, const json& f) {
  const auto& src = f["source"];
  out << "source: " << src["shards"].get<std::uint64_t>() << " shards of " << src["scheme"].get<std::string>() << ", "
      << src["shape"][0].get<std::uint64_t>() << "x" << src["shape"][1].get<std::uint64_t>() << ", "
      << reshard::format_count(src["nnz"].get<double>()) << " entries; plan read "
      << reshard::format_bytes(src["bytes_read_by_plan"].get<std::uint64_t>()) << " of index arrays in "
      << reshard::format_seconds(f["seconds"].get<double>()) << "\n";
  const auto& dst = f["destination"];
  out << "new scheme " << dst["scheme"].get<std::string>() << ": " << dst["shards"].get<std::uint64_t>()
      << " shards, about " << reshard::format_bytes(dst["bytes_total"].get<std::uint64_t>()) << " in all ("
      << dst["bytes_estimate"].get<std::string>() << ")\n";
  print_skew(out, dst, "  ");
  out << "  largest:";
  for (const auto& shard : dst["largest"]) {
    out << " " << reshard::printable(shard["name"].get<std::string>()) << " "
        << reshard::format_count(shard["entries"].get<double>()) << " entries ("
        << reshard::format_bytes(shard["bytes"].get<std::uint64_t>()) << ");";
  }
  out << "\n";
  if (f.contains("largest_line")) {
    const auto& line = f["largest_line"];
    const bool rows = line["axis"] == "rows";
    out << "  largest " << (rows ? "row" : "column")
        << (line.contains("ids") ? " group (" + std::to_string(line["ids"].get<std::uint64_t>()) + " ids from " +
                                       std::to_string(line["first_id"].get<std::uint64_t>()) + ")"
                                 : " " + std::to_string(line["id"].get<std::uint64_t>()))
        << ": " << reshard::format_count(line["entries"].get<double>()) << " entries"
        << (line["exceeds_mean_shard"].get<bool>()
                ? ", more than a mean shard holds: no split of this axis can balance it"
                : "")
        << "\n";
  }
  const auto& move = f["movement"];
  out << "movement: " << percent(move["fraction_changing_shard"].get<double>()) << " of entries change shard; on "
      << move["ranks"].get<int>() << " rank(s) " << reshard::format_count(move["entries_crossing_ranks"].get<double>())
      << " entries (" << reshard::format_bytes(move["bytes_crossing_ranks"].get<std::uint64_t>()) << ") cross ranks\n";
  const auto& memory = f["memory"];
  out << "memory per rank: at least " << reshard::format_bytes(memory["least_bytes_per_rank"].get<std::uint64_t>())
      << ", " << reshard::format_bytes(memory["in_memory_bytes_per_rank"].get<std::uint64_t>())
      << " without spilling; limit " << reshard::format_bytes(memory["limit_bytes"].get<std::uint64_t>()) << ": "
      << (!memory["fits"].get<bool>() ? "does not fit (the job would refuse)"
                                      : (memory["spills"].get<bool>() ? "fits, spilling to scratch" : "fits"))
      << "\n";
  if (f.contains("proposal")) {
    const auto& p = f["proposal"];
    out << "proposal (--balance " << p["balance"].get<std::string>() << ", " << p["shards"].get<std::uint64_t>()
        << " shards): " << p["scheme"].get<std::string>() << "\n";
    print_skew(out, p, "  ");
    out << "  predicted load: largest shard " << ratio(p["load_before"]["imbalance"].get<double>())
        << " over the mean before, " << ratio(p["load_after"]["imbalance"].get<double>()) << " after\n";
  }
}

}  // namespace

int run_plan_command(int argc, char** argv, reshard::Comm& comm) {
  reshard::SurveyRequest request;
  std::string old_scheme;
  std::string new_scheme;
  std::string format = "text";
  std::string ranks = "0";
  std::string memory_limit;
  std::string compress = "igzip:1";
  std::string balance;
  std::string shards = "0";
  std::string weights;
  std::string fail_on_skew;
  po::options_description options(kPlanUsage);
  auto add = options.add_options();
  add("help,h", "show this help");
  add("src", po::value(&request.src_pattern)->required(), "source shard pattern");
  add("old-scheme", po::value(&old_scheme)->required(), "scheme of the source");
  add("new-scheme", po::value(&new_scheme)->required(), "scheme to plan for");
  add("dst", po::value(&request.dst_pattern), "destination pattern, to name the shards in the figures (optional)");
  add("format", po::value(&format)->default_value(format), "text | json");
  add("ranks", po::value(&ranks)->default_value(ranks), "ranks (-np) the job would run on (0: this run's)");
  add("memory-limit", po::value(&memory_limit), "memory per rank the job would have, e.g. 4GiB (default: the job's)");
  add("compress", po::value(&compress)->default_value(compress), "the job's --compress, for the byte estimates");
  add("balance", po::value(&balance),
      "propose ranges along the new scheme's axis balancing: nnz | bytes | weight | weighted-nnz (the last two "
      "need --weights)");
  add("shards", po::value(&shards)->default_value(shards), "shards in the proposal (0: as many as the new scheme)");
  add("weights", po::value(&weights),
      "forecast load per row or column: a .npy vector indexed by id, or CSV lines 'index,weight' (missing ids "
      "weigh 1)");
  add("fail-on-skew", po::value(&fail_on_skew),
      "exit 2 when the new scheme's imbalance (max/mean - 1) exceeds this, e.g. 0.2");
  po::variables_map vm;
  if (auto code = cli::parse_subcommand(argc, argv, comm.rank(), "plan", options, vm)) return *code;
  reshard::Status status;
  auto check = [&status](reshard::Status next) {
    if (status.ok()) status = std::move(next);
  };
  auto old_spec = cli::load_scheme(old_scheme, "--old-scheme");
  auto new_spec = cli::load_scheme(new_scheme, "--new-scheme");
  auto compression = cli::parse_compression(compress);
  check(old_spec.status());
  check(new_spec.status());
  check(compression.status());
  if (format != "text" && format != "json") check(cli::fail("--format '" + format + "': expected text or json"));
  std::uint64_t rank_count = 0;
  check(cli::parse_count(ranks, "--ranks", 0, rank_count));
  if (rank_count > (1u << 20)) check(cli::fail("--ranks must be at most 1048576"));
  check(cli::parse_count(shards, "--shards", 0, request.balance_shards));
  if (!memory_limit.empty()) {
    auto limit = reshard::parse_byte_size(memory_limit);
    check(limit.status().with_context("--memory-limit"));
    if (limit.ok()) request.memory_limit = *limit;
  }
  if (!balance.empty()) {
    auto parsed = reshard::parse_balance(balance);
    check(parsed.status());
    if (parsed.ok()) request.balance = *parsed;
  } else if (vm["shards"].as<std::string>() != "0") {
    check(cli::fail("--shards goes with --balance"));
  }
  double skew_limit = -1;
  if (!fail_on_skew.empty()) check(cli::parse_fraction(fail_on_skew, "--fail-on-skew", skew_limit));
  if (!weights.empty() && status.ok()) {
    std::ifstream in(weights, std::ios::binary);
    if (!in) {
      check(cli::fail("--weights: cannot open " + weights));
    } else {
      request.weights_file = reshard::Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      request.weights_name = weights;
    }
  }
  if (!status.ok()) {
    if (comm.rank() == 0) std::cerr << "mpi_reshard plan: " << reshard::printable(status.message()) << "\n";
    return status.exit_code();
  }
  request.old_spec = *old_spec;
  request.new_spec = *new_spec;
  request.compression = *compression;
  request.ranks = static_cast<int>(rank_count);
  auto survey = reshard::run_survey(comm, request);
  if (!survey.ok()) {
    if (comm.rank() == 0) std::cerr << "mpi_reshard plan: " << reshard::printable(survey.status().message()) << "\n";
    return survey.status().exit_code();
  }
  const bool too_skewed = skew_limit >= 0 && survey->imbalance > skew_limit;
  if (comm.rank() != 0) return too_skewed ? 2 : 0;
  if (format == "json") {
    json figures = survey->figures;
    reshard::escape_strings(figures);
    std::cout << figures.dump(2) << "\n";
  } else {
    print_text(std::cout, survey->figures);
  }
  if (too_skewed) {
    std::cerr << "mpi_reshard plan: imbalance " << ratio(survey->imbalance) << " of " << new_spec->to_text()
              << " exceeds --fail-on-skew " << fail_on_skew << "\n";
    return 2;
  }
  return 0;
}

// mpi_reshard: the CLI edge. Parses options, runs the collective job, turns
// a Status into a one-line error and the documented exit code.
#include <sys/stat.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "cli_parsing.hpp"
#include "console.hpp"
#include "job_metrics.hpp"
#include "plan_command.hpp"
#include "reshard/json_text.hpp"
#include "reshard/mpi_comm.hpp"
#include "reshard/pipeline/job.hpp"
#include "reshard/pipeline/memory_budget.hpp"
#include "reshard/pipeline/verify.hpp"
#include "reshard/process_memory.hpp"
#include "reshard/store/store.hpp"

namespace po = boost::program_options;
using cli::fail;
using cli::load_scheme;
using cli::parse_compression;
using cli::parse_count;
using cli::parse_fraction;
using reshard::Status;

namespace {

constexpr const char* kUsage = R"(mpi_reshard: re-shard a sparse matrix stored as scipy.sparse .npz shards.

Usage:
  mpirun -np 4 mpi_reshard --src PATTERN --old-scheme SCHEME --dst PATTERN --new-scheme SCHEME [options]

Example:
  mpirun -np 4 build/bin/mpi_reshard \
    --src 'data/m/shard_{i}.npz'      --old-scheme 'rows:block=250000' \
    --dst 'data/m_cols/shard_{i}.npz' --new-scheme 'cols:block=125000' \
    --report report.json

Patterns name shard files with {i} (shard number), or {row} and {col} (block
position). Schemes (docs/schemes.md):
  rows:block=R   cols:block=C   grid:block=RxC
  rows:ranges=0,R1,R2,...   cols:ranges=0,C1,...   grid:row_ranges=0,R1,...,col_ranges=0,C1,...
  rows:hash=H,shards=N[,seed=S]   cols:hash=H,shards=N[,seed=S]   H: mod|mix|jump|rendezvous
  extra options: workers=W, shape=NxM, layout=csr|csc;   or @scheme.json

Subcommands:
  mpi_reshard plan --src P --old-scheme S --new-scheme T [--balance nnz]
                                                     see a reshard before running it: skew, movement,
                                                     memory, balanced boundaries (see plan --help)
  mpi_reshard verify --dst PATTERN [--against-src]   check a published destination (see verify --help)
  mpi_reshard cat URL                                one object's bytes on stdout, from any store (no MPI)

S3 credentials, as the AWS SDKs find them: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
then web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, through STS), then
the profile AWS_PROFILE names (default 'default') in ~/.aws/credentials and
~/.aws/config (keys or credential_process), then container credentials
(AWS_CONTAINER_CREDENTIALS_*), then instance metadata (IMDSv2).
GCS credentials: HMAC keys (GCS_HMAC_ACCESS_ID/GCS_HMAC_SECRET) or a fixed
GOOGLE_OAUTH_ACCESS_TOKEN if set, else as google-auth finds them:
GOOGLE_APPLICATION_CREDENTIALS (service-account key or authorized_user), then
gcloud's application_default_credentials.json, then the metadata server.
Temporary credentials and tokens are refreshed before they expire
(docs/operations.md, "Object stores").

Exit codes: 0 success, 2 bad input or refused (nothing written),
3 verification failed (nothing published), 4 storage failure, 1 anything else.

Options)";

struct CommandLine {
  reshard::JobConfig config;
  std::string report_path;
  std::string metrics_file;
  std::string pushgateway;
  bool progress = false;
  bool progress_json = false;
  console::Verbosity verbosity = console::Verbosity::kNormal;
};

// Returns an exit code when the process should stop here (help, bad flags).
std::optional<int> parse_command_line(int argc, char** argv, int rank, CommandLine& out) {
  std::string old_scheme;
  std::string new_scheme;
  std::string compress = "igzip:1";
  std::string memory_limit;
  std::string max_message_bytes = std::to_string(out.config.max_message_bytes);
  std::string ownership_epsilon = "0.1";
  std::string max_concurrency = std::to_string(out.config.max_concurrency);
  std::string manifest_batch = std::to_string(out.config.manifest_batch);
  std::string threads = "0";
  std::string claim_lease = "60";
  po::options_description options(kUsage);
  auto add = options.add_options();
  add("help,h", "show this help");
  add("version", "print the program's version and exit");
  add("src", po::value(&out.config.src_pattern)->required(), "source shard pattern, e.g. 'data/m/shard_{i}.npz'");
  add("dst", po::value(&out.config.dst_pattern)->required(), "destination shard pattern (a separate directory)");
  add("old-scheme", po::value(&old_scheme)->required(), "scheme of the source, e.g. 'rows:block=250000'");
  add("new-scheme", po::value(&new_scheme)->required(), "scheme to write, e.g. 'cols:block=125000'");
  add("report", po::value(&out.report_path), "write a JSON report of the job to this file (rank 0)");
  add("metrics-file", po::value(&out.metrics_file),
      "write Prometheus metrics to this file at each progress step and at the end (a node_exporter textfile "
      "collector's .prom file; replaced atomically)");
  add("pushgateway", po::value(&out.pushgateway),
      "push the final metrics to this Prometheus Pushgateway (http://host:9091), job=mpi_reshard");
  bool quiet = false;
  bool verbose = false;
  add("quiet,q", po::bool_switch(&quiet), "print only errors and warnings (no closing summary)");
  add("verbose,v", po::bool_switch(&verbose),
      "also print progress lines on stderr and the seconds each stage took on rank 0");
  add("progress", po::bool_switch(&out.progress),
      "print progress lines on stderr: stage, detail, rank 0's entries/s, time elapsed and left");
  add("progress-json", po::bool_switch(&out.progress_json),
      "print progress as JSON lines on stdout (keys: progress, stage, detail, elapsed_s, eta_s, entries, "
      "entries_per_s; docs/operations.md)");
  add("overwrite", po::bool_switch(&out.config.overwrite),
      "replace what the destination holds (shard files, another job's published dataset)");
  add("restart", po::bool_switch(&out.config.restart),
      "discard an earlier unfinished run's manifest (another job, or changed sources) and start over");
  add("compress", po::value(&compress)->default_value("igzip:1"),
      "none | igzip | igzip:LEVEL (0..3, ISA-L, 4 MiB chunks on all threads) | deflate | deflate:LEVEL (0..12, "
      "libdeflate)");
  add("src-group", po::value(&out.config.source_group),
      "HDF5 sources (.h5/.h5ad): the group holding the matrix (default /X, or 10x's /matrix)");
  add("dst-group", po::value(&out.config.destination_group),
      "HDF5 destinations (.h5/.h5ad): the group to write the matrix to (default /X)");
  add("max-message-bytes", po::value(&max_message_bytes)->default_value(max_message_bytes),
      "largest single MPI message; exchanges larger than this run in rounds");
  add("ownership-epsilon", po::value(&ownership_epsilon)->default_value(ownership_epsilon),
      "balance slack when choosing which rank writes each destination shard (docs/operations.md)");
  add("max-concurrency", po::value(&max_concurrency)->default_value(max_concurrency),
      "in-flight storage requests per rank (S3/GCS)");
  add("manifest-batch", po::value(&manifest_batch)->default_value(manifest_batch),
      "shards each rank writes between two manifest updates (a crash redoes at most this many per rank)");
  add("memory-limit", po::value(&memory_limit),
      "memory per rank, e.g. 4GiB (default: half the node's memory split among its ranks); entries that do not "
      "fit are spilled to --scratch-dir");
  add("threads", po::value(&threads)->default_value(threads),
      "threads per rank (0: for reading, bucketing and assembling, the node's CPUs / its ranks; for deflating "
      "the output, every CPU the rank may run on, as ranks that are done sleep)");
  add("claim-lease", po::value(&claim_lease)->default_value(claim_lease),
      "seconds a crashed job's claim on the destination keeps other jobs out (renewed every sixth of it; a crash "
      "seen from the claiming host frees it at once)");
  add("scratch-dir", po::value(&out.config.scratch_dir),
      "node-local directory for spilled entries (default: $TMPDIR, else /tmp); nothing is left there afterwards");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    if (vm.count("version")) {
      if (rank == 0) std::cout << "mpi_reshard " << RESHARD_VERSION << "\n";
      return 0;
    }
    if (vm.count("help") || argc == 1) {
      if (rank == 0) std::cout << options << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    if (rank == 0) std::cerr << "mpi_reshard: " << e.what() << " (see --help)\n";
    return 2;
  }
  if (quiet && verbose) {
    if (rank == 0) std::cerr << "mpi_reshard: --quiet and --verbose contradict each other\n";
    return 2;
  }
  out.verbosity =
      quiet ? console::Verbosity::kQuiet : (verbose ? console::Verbosity::kVerbose : console::Verbosity::kNormal);
  if (verbose) out.progress = true;
  Status status;
  // The first failing check wins; later ones are skipped once status is set.
  auto check = [&status](Status next) {
    if (status.ok()) status = std::move(next);
  };
  auto old_spec = load_scheme(old_scheme, "--old-scheme");
  auto new_spec = load_scheme(new_scheme, "--new-scheme");
  auto compression = parse_compression(compress);
  check(old_spec.status());
  check(new_spec.status());
  check(compression.status());
  std::uint64_t concurrency = 0;
  std::uint64_t thread_count = 0;
  check(parse_count(max_message_bytes, "--max-message-bytes", 32, out.config.max_message_bytes));
  check(parse_fraction(ownership_epsilon, "--ownership-epsilon", out.config.ownership_epsilon));
  check(parse_count(max_concurrency, "--max-concurrency", 1, concurrency));
  check(parse_count(manifest_batch, "--manifest-batch", 1, out.config.manifest_batch));
  check(parse_count(threads, "--threads", 0, thread_count));
  std::uint64_t lease_seconds = 0;
  check(parse_count(claim_lease, "--claim-lease", 3, lease_seconds));
  if (lease_seconds > 86400) check(fail("--claim-lease must be at most 86400 seconds"));
  out.config.claim_timing.lease_seconds = static_cast<double>(lease_seconds);
  out.config.claim_timing.renew_seconds = static_cast<double>(lease_seconds) / 6;
  constexpr std::uint64_t kMaxThreadsOrRequests = 1u << 16;
  if (concurrency > kMaxThreadsOrRequests) check(fail("--max-concurrency must be at most 65536"));
  if (thread_count > kMaxThreadsOrRequests) check(fail("--threads must be at most 65536"));
  out.config.max_concurrency = static_cast<int>(concurrency);
  out.config.threads = static_cast<int>(thread_count);
  if (!memory_limit.empty()) {
    auto limit = reshard::parse_byte_size(memory_limit);
    check(limit.status().with_context("--memory-limit"));
    if (limit.ok()) out.config.memory_limit = *limit;
  }
  if (!out.pushgateway.empty() && out.pushgateway.rfind("http://", 0) != 0 &&
      out.pushgateway.rfind("https://", 0) != 0) {
    check(fail("--pushgateway '" + out.pushgateway + "': expected an http:// or https:// URL"));
  }
  if (!status.ok()) {
    if (rank == 0) std::cerr << "mpi_reshard: " << status.message() << "\n";
    return status.exit_code();
  }
  out.config.old_spec = *old_spec;
  out.config.new_spec = *new_spec;
  out.config.compression = *compression;
  return std::nullopt;
}

constexpr const char* kVerifyUsage = R"(mpi_reshard verify: check a destination written by mpi_reshard.

Re-reads every shard, recomputes its CRC-32C and fingerprint, and compares them
with the manifest and _SUCCESS; names each missing, extra, truncated or altered
shard. Runs as one process or under mpirun with any rank count.

Usage:
  mpi_reshard verify --dst 'data/m_cols/shard_{i}.npz' [--against-src]

Exit codes: 0 verified, 3 a problem was found, 2 bad arguments.

Options)";

int run_verify_command(int argc, char** argv, reshard::Comm& comm) {
  std::string dst;
  bool against_src = false;
  po::options_description options(kVerifyUsage);
  auto add = options.add_options();
  add("help,h", "show this help");
  add("dst", po::value(&dst)->required(), "destination shard pattern, as given to the job");
  add("against-src", po::bool_switch(&against_src), "also re-read the source and compare fingerprints");
  po::variables_map vm;
  if (auto code = cli::parse_subcommand(argc, argv, comm.rank(), "verify", options, vm)) return *code;
  auto outcome = reshard::run_verify(comm, dst, against_src);
  if (!outcome.ok()) {
    if (comm.rank() == 0) std::cerr << "mpi_reshard verify: " << reshard::printable(outcome.status().message()) << "\n";
    return outcome.status().exit_code();
  }
  if (comm.rank() != 0) return outcome->problems.empty() ? 0 : 3;
  for (const auto& problem : outcome->problems)
    std::cerr << "mpi_reshard verify: " << reshard::printable(problem) << "\n";
  if (!outcome->problems.empty()) {
    std::cerr << "mpi_reshard verify: " << outcome->problems.size() << " problem(s) found\n";
    return 3;
  }
  std::cout << outcome->summary << "\n";
  return 0;
}

// Empty when `path` can be written: its folder exists and is writable, and
// the path is absent or a writable regular file. Nothing is created.
std::string report_path_problem(const std::string& path) {
  if (path.empty()) return "";
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0) {
    if (S_ISDIR(info.st_mode)) return "is a directory";
    if (!S_ISREG(info.st_mode)) return "is not a regular file";
    return ::access(path.c_str(), W_OK) == 0 ? "" : "is not writable";
  }
  const auto slash = path.rfind('/');
  const std::string folder = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  if (::stat(folder.c_str(), &info) != 0) return "folder " + folder + " does not exist";
  if (!S_ISDIR(info.st_mode)) return folder + " is not a directory";
  if (::access(folder.c_str(), W_OK | X_OK) != 0) return "folder " + folder + " is not writable";
  return "";
}

int run_on_world(int argc, char** argv, reshard::Comm& comm);

// `mpi_reshard cat URL`: the object's bytes on stdout, read through the
// job's own store drivers, so that the Python helpers read s3:// and gs://
// datasets with the same credentials and endpoints. One process, no MPI.
int run_cat_command(int argc, char** argv) {
  const std::string first = argc > 2 ? argv[2] : "";
  if (argc != 3 || first == "--help" || first == "-h") {
    std::cerr << "usage: mpi_reshard cat URL   (a path, file://, s3:// or gs:// URL of one object)\n";
    return argc == 3 ? 0 : 2;
  }
  auto opened = reshard::open_store(first);
  if (!opened.ok()) {
    std::cerr << "mpi_reshard cat: " << reshard::printable(opened.status().message()) << "\n";
    return opened.status().exit_code();
  }
  reshard::Store& store = *opened->store;
  const std::string& key = opened->key;
  auto info = store.stat(key);
  if (info.ok() && !*info) {
    std::cerr << "mpi_reshard cat: no such object: " << reshard::printable(store.url(key)) << "\n";
    return 2;
  }
  Status status = info.status();
  constexpr std::uint64_t kChunk = 16 << 20;
  for (std::uint64_t offset = 0; status.ok() && offset < (*info)->size; offset += kChunk) {
    auto bytes = store.read(key, offset, std::min(kChunk, (*info)->size - offset));
    status = bytes.status();
    if (status.ok() && std::fwrite(bytes->data(), 1, bytes->size(), stdout) != bytes->size()) {
      status = reshard::Status::Internal("writing to stdout failed");
    }
  }
  if (status.ok() && std::fflush(stdout) != 0) status = reshard::Status::Internal("writing to stdout failed");
  if (!status.ok()) {
    std::cerr << "mpi_reshard cat: reading " << reshard::printable(store.url(key)) << ": "
              << reshard::printable(status.message()) << "\n";
    return status.exit_code();
  }
  return 0;
}

// Whether a launcher (mpirun, srun, mpiexec) started this process as one of
// an MPI job: each sets its own variables in every rank's environment.
bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

int run(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "cat") return run_cat_command(argc, argv);
  // `plan` run as a plain command (on a login node, say) needs no MPI: it
  // skips MPI_Init, which took ~0.4 s of a 1 s plan on the 100M benchmark.
  if (argc > 1 && std::string(argv[1]) == "plan" && !launched_by_mpi()) {
    auto self = reshard::make_self_comm();
    return run_plan_command(argc, argv, *self);
  }
  reshard::MpiSession mpi(&argc, &argv);
  auto comm = reshard::make_world_comm();
  try {
    return run_on_world(argc, argv, *comm);
  } catch (const std::exception& e) {
    // The other ranks may be waiting in a collective this rank will never
    // join: end the whole job now rather than leave them hanging.
    std::cerr << "mpi_reshard: internal error on rank " << comm->rank() << ": " << reshard::printable(e.what()) << "\n";
    comm->abort(1);
    return 1;  // not reached: abort() ends the process
  }
}

int run_on_world(int argc, char** argv, reshard::Comm& comm) {
  if (argc > 1 && std::string(argv[1]) == "verify") return run_verify_command(argc, argv, comm);
  if (argc > 1 && std::string(argv[1]) == "plan") return run_plan_command(argc, argv, comm);
  if (argc > 1 && argv[1][0] != '-') {
    if (comm.rank() == 0) {
      std::cerr << "mpi_reshard: unknown subcommand '" << argv[1] << "' (see --help)\n";
    }
    return 2;
  }
  CommandLine cli;
  if (auto code = parse_command_line(argc, argv, comm.rank(), cli)) return *code;
  // Checked on rank 0 (the one that writes it) and agreed on by all ranks
  // before any work: a report that cannot be written is bad input, found
  // while nothing is written, not after the dataset is published.
  std::string path_problem;
  if (comm.rank() == 0) {
    for (const auto& [flag, path] : {std::pair<const char*, const std::string&>{"--report", cli.report_path},
                                     std::pair<const char*, const std::string&>{"--metrics-file", cli.metrics_file}}) {
      const std::string problem = report_path_problem(path);
      if (!problem.empty() && path_problem.empty()) path_problem = std::string(flag) + " " + path + ": " + problem;
    }
  }
  if (comm.max(path_problem.empty() ? 0 : 1) != 0) {
    if (comm.rank() == 0) std::cerr << "mpi_reshard: " << path_problem << "\n";
    return 2;
  }
  console::JobMetrics metrics(comm.rank() == 0 ? cli.metrics_file : "", comm.rank() == 0 ? cli.pushgateway : "");
  reshard::ProgressSink progress;
  if (cli.progress || cli.progress_json || metrics.enabled()) {
    std::optional<console::ProgressPrinter> printer;
    if (cli.progress || cli.progress_json) printer.emplace(cli.progress, cli.progress_json);
    progress = [printer, &metrics](const reshard::ProgressEvent& event) mutable {
      if (printer) (*printer)(event);
      metrics.progress(event);
    };
  }
  auto outcome = reshard::run_reshard(comm, cli.config, progress);
  if (!outcome.ok()) {
    if (comm.rank() == 0) {
      std::cerr << "mpi_reshard: " << reshard::printable(outcome.status().message()) << "\n";
      for (const auto& warning : metrics.finish(nullptr, outcome.status().exit_code())) {
        std::cerr << "mpi_reshard: warning: " << reshard::printable(warning) << "\n";
      }
    }
    return outcome.status().exit_code();
  }
  if (comm.rank() == 0) {
    for (const auto& warning : metrics.finish(&outcome->report, 0)) outcome->warnings.push_back(warning);
    for (const auto& warning : outcome->warnings) {
      std::cerr << "mpi_reshard: warning: " << reshard::printable(warning) << "\n";
    }
    if (!cli.report_path.empty()) {
      std::ofstream report(cli.report_path);
      nlohmann::json report_json = outcome->report;
      reshard::escape_strings(report_json);
      report << report_json.dump(2) << "\n";
      // The dataset is published by now, so the job succeeded: a report
      // lost afterwards (disk full, path removed) is a warning, not a failure.
      if (!report) {
        std::cerr << "mpi_reshard: warning: writing report " << cli.report_path
                  << " failed; the destination is published\n";
      }
    }
    if (cli.verbosity != console::Verbosity::kQuiet) std::cout << outcome->summary << "\n";
    if (cli.verbosity == console::Verbosity::kVerbose && outcome->report.contains("seconds")) {
      std::cout << "  seconds on rank 0:";
      for (const auto& [stage, seconds] : outcome->report["seconds"].items()) {
        std::cout << " " << stage << " " << reshard::format_seconds(seconds.get<double>());
      }
      std::cout << "\n";
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  reshard::configure_process_memory();
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "mpi_reshard: internal error: " << e.what() << "\n";
    return 1;
  }
}

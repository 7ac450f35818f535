#include "reshard/pipeline/job.hpp"
#include "reshard/pipeline/json_messages.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <future>
#include <optional>
#include <sstream>

#include "reshard/cpu_share.hpp"
#include "reshard/fault.hpp"
#include "reshard/format/h5sparse.hpp"
#include "reshard/pipeline/assemble.hpp"
#include "reshard/pipeline/bucket.hpp"
#include "reshard/pipeline/claim.hpp"
#include "reshard/pipeline/commit.hpp"
#include "reshard/pipeline/exchange.hpp"
#include "reshard/pipeline/memory_budget.hpp"
#include "reshard/pipeline/one_file_sink.hpp"
#include "reshard/pipeline/ownership.hpp"
#include "reshard/pipeline/plan.hpp"
#include "reshard/pipeline/read.hpp"
#include "reshard/pipeline/reuse.hpp"
#include "reshard/pipeline/survey.hpp"
#include "reshard/pipeline/write.hpp"
#include "reshard/scratch_file.hpp"
#include "reshard/store/cloud_credentials.hpp"
#include "reshard/store/s3_store.hpp"

namespace reshard {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Progress weights of the stages, summing to 1.
constexpr double kPlanWeight = 0.02;
constexpr double kReadWeight = 0.48;
constexpr double kExchangeWeight = 0.10;
constexpr double kWriteWeight = 0.38;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::uint64_t peak_rss_bytes() {
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

struct Stores {
  StoreAndKey src;
  StoreAndKey dst;
  ShardPattern src_pattern;
  ShardPattern dst_pattern;
};

Result<Stores> open_stores(const JobConfig& config) {
  Stores s;
  const StoreOptions options{config.max_concurrency};
  auto src = open_store(config.src_pattern, options);
  if (!src.ok()) return src.status().with_context("--src " + config.src_pattern);
  auto dst = open_store(config.dst_pattern, options);
  if (!dst.ok()) return dst.status().with_context("--dst " + config.dst_pattern);
  s.src = std::move(src).value();
  s.dst = std::move(dst).value();
  auto sp = ShardPattern::parse(s.src.key);
  if (!sp.ok()) return sp.status().with_context("--src");
  auto dp = ShardPattern::parse(s.dst.key);
  if (!dp.ok()) return dp.status().with_context("--dst");
  s.src_pattern = std::move(sp).value();
  s.dst_pattern = std::move(dp).value();
  return s;
}

// All ranks' source dtypes must agree with the lowest-numbered shard's.
Result<npy::DType> agree_on_dtypes(Comm& comm, const Store& store, const Plan& plan, const json& mine) {
  json all = json::array();
  for (const auto& bytes : comm.allgather(json_bytes(mine))) {
    for (const auto& item : parse_json_bytes(bytes)) all.push_back(item);
  }
  if (all.empty()) return Status::Internal("no source shard was read");
  std::sort(all.begin(), all.end(), [](const json& a, const json& b) { return a["index"] < b["index"]; });
  const json& first = all.front();
  const std::string first_url = store.url(plan.sources[first["index"].get<std::size_t>()].key);
  for (const auto& item : all) {
    const std::string url = store.url(plan.sources[item["index"].get<std::size_t>()].key);
    for (const char* field : {"value_dtype", "index_dtype"}) {
      if (item[field] != first[field]) {
        return Status::Invalid("source shard " + url + " has " +
                               (std::strcmp(field, "value_dtype") == 0 ? "data" : "index") + " dtype " +
                               item[field].get<std::string>() + " but " + first_url + " has " +
                               first[field].get<std::string>() + "; shards of one matrix must agree");
      }
    }
  }
  const std::string descr = first["value_dtype_descr"].get<std::string>();
  return npy::DType{descr[1], static_cast<std::uint32_t>(std::stoul(descr.substr(2)))};
}

// Every rank's per-shard holdings and resident bucket bytes, gathered.
struct Holdings {
  std::vector<std::vector<std::uint64_t>> held;  // [rank][shard]
  std::vector<std::uint64_t> resident;           // [rank]
};

Holdings gather_holdings(Comm& comm, const Buckets& buckets) {
  json pairs = json::array();
  const auto& held = buckets.held();
  for (std::size_t d = 0; d < held.size(); ++d) {
    if (held[d] != 0) pairs.push_back({d, held[d]});
  }
  const json mine = {{"held", pairs}, {"resident", buckets.resident_bytes()}};
  Holdings all;
  for (const auto& bytes : comm.allgather(json_bytes(mine))) {
    const json item = parse_json_bytes(bytes);
    auto& row = all.held.emplace_back(held.size(), 0);
    for (const auto& pair : item["held"]) row[pair[0].get<std::size_t>()] = pair[1].get<std::uint64_t>();
    all.resident.push_back(item["resident"].get<std::uint64_t>());
  }
  return all;
}

// The same assignment on every rank, from the same holdings.
Ownership choose_owners(const Holdings& holdings, const Plan& plan, const std::vector<bool>& skip, double epsilon) {
  OwnershipProblem problem;
  problem.ranks = static_cast<int>(holdings.held.size());
  problem.shard_count = plan.destinations.size();
  problem.skip = skip;
  problem.epsilon = epsilon;
  for (const auto& row : holdings.held) {
    auto& pairs = problem.held.emplace_back();
    for (std::size_t d = 0; d < row.size(); ++d) {
      if (row[d] != 0) pairs.emplace_back(d, row[d]);
    }
  }
  return assign_owners(problem);
}

// Per destination shard: the length of its major axis (rows for CSR) and the
// number of hashed ids it stores, for the memory model.
void shard_extents(const Plan& plan, std::vector<std::uint64_t>& majors, std::vector<std::uint64_t>& ids) {
  const auto& spec = plan.destination_map.spec();
  const std::size_t count = plan.destinations.size();
  ids.assign(count, 0);
  if (spec.hashed()) {
    const std::uint64_t extent = spec.axis == Axis::kRows ? plan.shape.nrows : plan.shape.ncols;
    for (std::uint64_t key = 0; key < extent; ++key) ++ids[plan.destination_map.hashed_shard_of(key)];
  }
  majors.assign(count, 0);
  const bool major_is_rows = spec.layout == Layout::kCsr;
  const bool major_hashed = spec.hashed() && (spec.axis == Axis::kRows) == major_is_rows;
  for (std::size_t d = 0; d < count; ++d) {
    const auto& box = plan.destinations[d].box;
    majors[d] = major_hashed ? ids[d] : (major_is_rows ? box.rows() : box.cols());
  }
}

std::uint64_t min_over_ranks(Comm& comm, std::uint64_t value) { return ~comm.max(~value); }

std::string default_scratch_dir() {
  const char* tmpdir = std::getenv("TMPDIR");
  return tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
}

// Per-rank counters that end up in the report.
struct RankStats {
  std::uint64_t source_shards_read = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t shards_written = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t bytes_spilled = 0;
  std::uint64_t shards_reused = 0;
  std::uint64_t bytes_reused = 0;
  std::uint64_t shards_copied_server_side = 0;
  std::uint64_t entries_read = 0;
  std::uint64_t entries_written = 0;
  ExchangeStats exchange;
  json seconds = json::object();
};

// The report's keys that describe the job rather than what a run did: the
// same in a working run's report and in an already-published rerun's.
json describe_job(const JobConfig& config, const Plan& plan, int ranks) {
  return {{"old_scheme", config.old_spec.to_text()},
          {"new_scheme", config.new_spec.to_text()},
          {"src", config.src_pattern},
          {"dst", config.dst_pattern},
          {"shape", {plan.shape.nrows, plan.shape.ncols}},
          {"ranks", ranks},
          {"source_shards", plan.sources.size()},
          {"destination_shards", plan.destinations.size()}};
}

}  // namespace

Result<JobOutcome> run_reshard(Comm& comm, const JobConfig& config, const ProgressSink& progress) {
  const auto started = Clock::now();
  const int rank = comm.rank();
  fault::configure(rank);
  auto report_progress = [&](const std::string& stage, double fraction, const std::string& detail,
                             std::uint64_t entries = 0) {
    if (rank == 0 && progress) progress(ProgressEvent{stage, fraction, detail, entries});
  };
  RankStats stats;

  // ---- plan ----
  auto phase = Clock::now();
  RESHARD_ASSIGN_OR_RETURN(Stores io, open_stores(config));
  Status status;
  Store& src_store = *io.src.store;
  Store& dst_store = *io.dst.store;
  report_progress("plan", 0.0, "listing and inspecting source shards");
  RESHARD_ASSIGN_OR_RETURN(Plan plan, make_plan(comm, src_store, io.src_pattern, dst_store, io.dst_pattern, config));
  fault::point("after-plan");
  {
    // A --scratch-dir that cannot hold a spill file is bad input found now,
    // on every rank (it is node-local), not when spilling starts hours in.
    const std::string dir = config.scratch_dir.empty() ? default_scratch_dir() : config.scratch_dir;
    auto probe = ScratchFile::create(dir);
    status = probe.ok() ? Status::Ok()
                        : Status::Invalid("--scratch-dir " + dir + " cannot hold spilled entries on rank " +
                                          std::to_string(rank) + ": " + probe.status().message());
    RESHARD_RETURN_IF_ERROR(agree(comm, status));
  }
  const Manifest fresh = fresh_manifest(plan, config, src_store);
  // Refusals that need no claim come first, so they leave nothing behind;
  // then the claim, then the same decision again, now that no other job can
  // change the destination under us.
  RESHARD_RETURN_IF_ERROR(
      find_starting_point(comm, dst_store, plan, config, fresh, StartCheck::kRefusalsOnly).status());
  std::unique_ptr<DestinationClaim> claim;
  if (rank == 0) {
    auto taken = DestinationClaim::take(dst_store, plan.destination_directory, fresh.job_id, config.claim_timing);
    status = taken.ok() ? Status::Ok() : taken.status();
    if (taken.ok()) claim = std::move(taken).value();
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, status));
  fault::point("after-claim");
  RESHARD_ASSIGN_OR_RETURN(StartingPoint start, find_starting_point(comm, dst_store, plan, config, fresh));
  JobOutcome outcome;
  if (start.kind == StartingPoint::Kind::kAlreadyPublished) {
    report_progress("done", 1.0, "already published");
    if (rank == 0) {
      // The same keys as a full report where they have a meaning, so that
      // readers of reports (the Python JobReport) need no second form; this
      // run read, sent and wrote nothing.
      outcome.report = describe_job(config, plan, comm.size());
      outcome.report.update(
          {{"already_published", true},
           {"job_id", start.success->job_id},
           {"nnz", start.success->nnz},
           {"resumed", false},
           {"totals", json::object()},
           {"per_rank", json::array()},
           {"seconds", json::object()},
           {"wall_seconds", seconds_since(started)},
           {"warnings", json::array()},
           {"destination_fingerprint",
            {{"nnz", start.success->fingerprint.count}, {"sum", start.success->fingerprint.sum_hex()}}}});
      outcome.summary =
          "already published: " + config.dst_pattern + " holds job " + start.success->job_id + " (" +
          start.success->fingerprint.to_string() + "); " +
          (start.finished_manifest ? "committed the manifest the publishing run left unfinished" : "nothing to do");
      outcome.report["finished_manifest"] = start.finished_manifest;
    }
    return outcome;
  }
  std::uint64_t kept_count = 0;
  Fingerprint kept_fingerprint;
  std::vector<bool> skip(plan.destinations.size(), false);
  for (const auto& record : start.manifest.shards) {
    if (!start.keep[record.index]) continue;
    ++kept_count;
    kept_fingerprint.merge(record.fingerprint);
    skip[record.index] = true;
  }
  // Sources that can reach a shard still to write; the first one is always
  // read too, since even an empty shard needs the data dtype.
  const bool have_source_fingerprint = start.manifest.source_fingerprint.has_value();
  std::vector<bool> needed(plan.sources.size(), !have_source_fingerprint);
  if (kept_count < plan.destinations.size()) needed[0] = true;
  for (const auto& source : plan.sources) {
    for (const auto& destination : plan.destinations) {
      if (needed[source.index]) break;
      if (!start.keep[destination.index] && may_contribute(plan, source, destination)) needed[source.index] = true;
    }
  }
  // ---- memory budget: the same on every rank, so every rank plans the same waves ----
  MemoryBudget budget;
  budget.limit =
      min_over_ranks(comm, config.memory_limit != 0 ? config.memory_limit : default_memory_limit(comm.ranks_on_node()));
  budget.baseline = comm.max(resident_set_bytes());
  const std::uint64_t working = budget.working();
  const std::string limit_text = "--memory-limit " + format_bytes(budget.limit) + " leaves " + format_bytes(working) +
                                 " per rank beyond the " + format_bytes(budget.baseline) +
                                 " the process already holds and a " + format_bytes(kUnmodelledBytes) + " reserve";
  const auto need_text = [working](std::uint64_t need) { return format_bytes_against(need, working); };
  if (working < kMinimumWorkingBytes) {
    return Status::Invalid(limit_text + "; it needs at least " + format_bytes(kMinimumWorkingBytes) +
                           " of working memory");
  }
  for (const auto& source : plan.sources) {
    const std::uint64_t need = memory_cost::decode(source.bytes, source.decoded_bytes);
    if (needed[source.index] && need > working) {
      return Status::Invalid("source shard " + src_store.url(source.key) + " needs " + need_text(need) +
                             " to decode (" + format_bytes(source.bytes) + " file, " +
                             format_bytes(source.decoded_bytes) + " of arrays) but " + limit_text +
                             "; raise --memory-limit");
    }
  }
  // A destination that is one local HDF5 file is written by every rank at
  // once: the shuffle routes, owns and assembles parts of it.
  const std::optional<std::string> one_file_path =
      io.dst_pattern.names_one_file() && h5sparse::is_hdf5_key(plan.destinations.front().key)
          ? dst_store.local_path(plan.destinations.front().key)
          : std::nullopt;
  std::vector<std::uint64_t> part_bounds;
  std::optional<Plan> parts_plan;
  if (one_file_path) {
    RESHARD_ASSIGN_OR_RETURN(parts_plan,
                             plan_file_parts(plan, file_part_count(plan, comm.size(), working), part_bounds));
  }
  Plan& routing = one_file_path ? *parts_plan : plan;
  // What the shuffle drops: the shards kept from an earlier run (a one-file
  // destination is kept or rewritten whole).
  const std::vector<bool> routing_skip = one_file_path ? std::vector<bool>(routing.destinations.size(), skip[0]) : skip;

  const std::string scratch_dir = config.scratch_dir.empty() ? default_scratch_dir() : config.scratch_dir;
  const int cpus_allowed = cpus_this_process_may_use();
  const int node_cpus = cpus_of_node();
  const ThreadCounts thread_count = thread_counts(config.threads, cpus_allowed, node_cpus, comm.ranks_on_node());
  const int threads = thread_count.stages;
  zip::WriteOptions compression = config.compression;
  compression.threads = thread_count.write;
  // The ranks bound below their share, counted on every rank (a collective)
  // for rank 0's warning.
  const bool bound = config.threads <= 0 && bound_below_share(cpus_allowed, node_cpus, comm.ranks_on_node());
  const std::uint64_t bound_ranks = comm.sum(bound ? 1 : 0);
  if (auto warning =
          binding_warning(static_cast<int>(bound_ranks), comm.size(), cpus_allowed, node_cpus, comm.ranks_on_node());
      warning && rank == 0) {
    outcome.warnings.push_back(*warning);
  }
  CommitLog log(dst_store, plan.destination_directory, start.manifest);
  stats.seconds["plan"] = seconds_since(phase);
  report_progress("plan", kPlanWeight,
                  std::to_string(plan.sources.size()) + " source shards -> " +
                      std::to_string(plan.destinations.size()) + " destination shards" +
                      (start.kind == StartingPoint::Kind::kResume
                           ? " (resuming: " + std::to_string(kept_count) + " already written)"
                           : ""));

  // ---- read + bucket ----
  phase = Clock::now();
  Buckets buckets(routing.destinations.size());
  std::optional<ScratchFile> scratch;
  auto spill_buckets = [&]() -> Status {
    if (buckets.resident_bytes() == 0) return Status::Ok();
    if (!scratch) {
      auto created = ScratchFile::create(scratch_dir);
      if (!created.ok()) return created.status().with_context("--scratch-dir");
      scratch.emplace(std::move(created).value());
    }
    return buckets.spill(*scratch);
  };
  const auto reuse_candidates = find_reuse_candidates(plan, config.compression);
  std::vector<ReusedShard> my_reused;
  Fingerprint reused_fingerprint;
  double read_seconds = 0;
  double bucket_seconds = 0;
  json dtypes = json::array();
  std::vector<const SourceShard*> to_read;
  for (const auto& s : plan.sources) {
    if (s.reader == rank && needed[s.index]) to_read.push_back(&s);
  }
  const std::uint64_t my_sources = to_read.size();
  // Read-ahead: the next source's bytes are fetched while this one is
  // bucketed, when the budget has room for them.
  std::future<Result<Bytes>> ahead;
  for (std::size_t k = 0; k < to_read.size(); ++k) {
    const SourceShard& source = *to_read[k];
    const auto t0 = Clock::now();
    if (buckets.resident_bytes() + memory_cost::decode(source.bytes, source.decoded_bytes) > working) {
      status = spill_buckets();
      if (!status.ok()) break;
    }
    Result<Bytes> bytes = ahead.valid() ? ahead.get() : fetch_source(src_store, source);
    if (!bytes.ok()) {
      status = bytes.status();
      break;
    }
    auto loaded = decode_source(src_store, source, plan.source_map, std::move(bytes).value(), threads);
    if (!loaded.ok()) {
      status = loaded.status();
      break;
    }
    read_seconds += seconds_since(t0);
    stats.bytes_read += loaded->bytes_read;
    ++stats.source_shards_read;
    const auto& m = loaded->decoded.matrix;
    stats.entries_read += m.nnz;
    dtypes.push_back({{"index", source.index},
                      {"value_dtype", m.value_dtype.name()},
                      {"value_dtype_descr", m.value_dtype.descr()},
                      {"index_dtype", m.index_dtype.name()}});
    const auto& candidate = reuse_candidates[source.index];
    if (candidate && !skip[*candidate] && decoded_matches_output(m)) {
      // Copied as it is later: fingerprinted here, never bucketed.
      ReusedShard reused{&source, &plan.destinations[*candidate], m.nnz, loaded->file_crc32c, {}};
      loaded->for_each_global_entry([&](std::uint64_t row, std::uint64_t col, std::uint64_t bits, std::uint64_t) {
        reused.fingerprint.add(row, col, bits);
      });
      reused_fingerprint.merge(reused.fingerprint);
      my_reused.push_back(reused);
    } else {
      const std::uint64_t bucketing = source.decoded_bytes + memory_cost::bucket(m.nnz);
      if (buckets.resident_bytes() + bucketing > working) {
        status = spill_buckets();
        if (!status.ok()) break;
      }
      if (bucketing > working) {
        status = Status::Invalid("source shard " + src_store.url(source.key) + " holds " + std::to_string(m.nnz) +
                                 " entries and needs " + need_text(bucketing) + " to bucket but " + limit_text +
                                 "; raise --memory-limit");
        break;
      }
      if (k + 1 < to_read.size() && buckets.resident_bytes() + bucketing + to_read[k + 1]->bytes <= working) {
        const SourceShard* next = to_read[k + 1];
        ahead = std::async(std::launch::async, [&src_store, next] { return fetch_source(src_store, *next); });
      }
      const auto t1 = Clock::now();
      buckets.add(bucket_source(*loaded, routing.destination_map, routing_skip, threads));
      bucket_seconds += seconds_since(t1);
    }
    report_progress(
        "read",
        kPlanWeight + kReadWeight * static_cast<double>(stats.source_shards_read) / static_cast<double>(my_sources),
        "read " + std::to_string(stats.source_shards_read) + "/" + std::to_string(my_sources) +
            " source shards on rank 0",
        stats.entries_read);
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, status));
  // With every shard kept from an earlier run nothing is read or written,
  // and the data dtype is not needed.
  const bool anything_to_write = kept_count < plan.destinations.size();
  npy::DType value_dtype;
  if (anything_to_write) {
    RESHARD_ASSIGN_OR_RETURN(value_dtype, agree_on_dtypes(comm, src_store, plan, dtypes));
  }
  fault::point("after-read");
  stats.seconds["read"] = read_seconds;
  stats.seconds["bucket"] = bucket_seconds;
  stats.seconds["read_and_bucket"] = seconds_since(phase);
  Fingerprint routed_here = buckets.routed_fingerprint();
  routed_here.merge(reused_fingerprint);
  const Fingerprint routed{comm.sum(routed_here.count), comm.sum(routed_here.sum)};
  // Shards copied as they are take no part in ownership or the exchange.
  std::vector<bool> exchange_skip = routing_skip;
  {
    json mine = json::array();
    for (const auto& r : my_reused) mine.push_back(r.destination->index);
    for (const auto& bytes : comm.allgather(json_bytes(mine))) {
      for (const auto& d : parse_json_bytes(bytes)) exchange_skip[d.get<std::size_t>()] = true;
    }
  }

  // ---- owners and waves, before anything is written: a shard that cannot
  // fit in memory is refused with the destination untouched ----
  Holdings holdings = gather_holdings(comm, buckets);
  const Ownership ownership = choose_owners(holdings, routing, exchange_skip, config.ownership_epsilon);
  routing.owner = ownership.owner;
  // Entries per shard this run writes, for the report's skew figures.
  std::vector<std::uint64_t> written_shard_entries;
  for (std::uint64_t d = 0; d < routing.destinations.size(); ++d) {
    if (exchange_skip[d]) continue;
    std::uint64_t n = 0;
    for (const auto& row : holdings.held) n += row[d];
    written_shard_entries.push_back(n);
  }
  WaveProblem waves_problem;
  waves_problem.ranks = comm.size();
  waves_problem.held = std::move(holdings.held);
  for (const auto& d : routing.destinations) waves_problem.owner.push_back(routing.owner.owner_of(d.index));
  shard_extents(routing, waves_problem.majors, waves_problem.ids);
  waves_problem.resident = holdings.resident;
  waves_problem.working_bytes = working;
  // Every rank plans from the same gathered figures, so all take the same
  // branch.
  WaveChoice choice = choose_waves(waves_problem);
  if (choice.spill_resident) {
    RESHARD_RETURN_IF_ERROR(agree(comm, spill_buckets()));
    waves_problem.resident.assign(waves_problem.resident.size(), 0);
  }
  WavePlan waves = std::move(choice.plan);
  if (waves.too_large) {
    const auto& big = *waves.too_large;
    return Status::Invalid((one_file_path ? "part " + std::to_string(big.shard) + " of " : "destination shard ") +
                           dst_store.url(routing.destinations[big.shard].key) + " would hold " +
                           std::to_string(big.entries) + " entries and needs " + need_text(big.bytes_needed) +
                           " on rank " + std::to_string(big.owner) + " to exchange and assemble, but " + limit_text +
                           "; raise --memory-limit or choose more destination shards");
  }
  stats.bytes_spilled = buckets.spilled_bytes();
  // Every source is valid (bad input stops before this, with nothing
  // written). The manifest goes down before the first shard does.
  if (!have_source_fingerprint) {
    // Every source was read and nothing was kept: what was routed is the source.
    log.manifest().source_fingerprint = routed;
  }
  status = rank == 0 ? claim->still_held() : Status::Ok();
  if (status.ok() && rank == 0) {
    claim->mark_destination_written();
    status = log.begin(start.unpublish_first);
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, status));
  fault::point("after-manifest");
  const Fingerprint source_fingerprint = *log.manifest().source_fingerprint;

  // ---- exchange + assemble + write, wave by wave; the manifest records
  // each round of writes ----
  std::uint64_t my_owned = 0;
  for (const auto& d : routing.destinations) my_owned += routing.owner.owner_of(d.index) == rank ? 1 : 0;
  std::vector<std::uint64_t> written_here;
  Fingerprint written_fingerprint;
  double exchange_seconds = 0;
  double assemble_seconds = 0;
  double write_seconds = 0;
  bool dropped_entry = false;
  const std::uint64_t batch = std::max<std::uint64_t>(1, config.manifest_batch);
  my_owned += my_reused.size();
  std::uint64_t parts_written = 0;  // of a one-file destination
  auto write_fraction = [&] {
    return kPlanWeight + kReadWeight +
           (kExchangeWeight + kWriteWeight) * static_cast<double>(stats.shards_written + parts_written) /
               static_cast<double>(std::max<std::uint64_t>(1, my_owned));
  };
  // Writes `count` shards, produce_shard(k) each, in rounds of --manifest-batch
  // per rank; every round ends with every rank agreeing and the manifest
  // recording what was written. Collective.
  auto write_in_rounds = [&](std::size_t count, auto&& produce_shard, const std::string& note) -> Status {
    const std::uint64_t rounds = comm.max((count + batch - 1) / batch);
    for (std::uint64_t round = 0; round < rounds; ++round) {
      std::vector<WrittenShard> this_round;
      for (std::size_t k = round * batch; status.ok() && k < std::min<std::size_t>(count, (round + 1) * batch); ++k) {
        Result<WrittenShard> w = produce_shard(k);
        if (!w.ok()) {
          status = w.status();
          break;
        }
        fault::point("after-shard-write");
        written_fingerprint.merge(w->fingerprint);
        stats.bytes_written += w->bytes;
        stats.entries_written += w->nnz;
        ++stats.shards_written;
        written_here.push_back(w->index);
        this_round.push_back(std::move(w).value());
        report_progress("write", write_fraction(),
                        "wrote " + std::to_string(stats.shards_written) + "/" + std::to_string(my_owned) +
                            " destination shards on rank 0 (" + note + ")",
                        stats.entries_written);
      }
      comm.barrier();  // ranks that finished first sleep here, not poll
      RESHARD_RETURN_IF_ERROR(agree(comm, status));
      fault::point("before-report");
      RESHARD_RETURN_IF_ERROR(log.record_round(comm, this_round));
    }
    return Status::Ok();
  };
  RESHARD_RETURN_IF_ERROR(write_in_rounds(
      my_reused.size(),
      [&](std::size_t k) -> Result<WrittenShard> {
        const auto t0 = Clock::now();
        auto copied = copy_reused_shard(src_store, dst_store, my_reused[k]);
        write_seconds += seconds_since(t0);
        if (!copied.ok()) return copied.status();
        ++stats.shards_reused;
        stats.bytes_reused += copied->written.bytes;
        stats.shards_copied_server_side += copied->server_side ? 1 : 0;
        return copied->written;
      },
      "copied unchanged"));
  std::unique_ptr<OneFileSink> sink;
  if (one_file_path && anything_to_write) {
    OneFileLayout layout;
    layout.path = *one_file_path;
    layout.temp_path = one_file_temp_path(*one_file_path, log.manifest().job_id);
    if (!config.destination_group.empty()) layout.group = config.destination_group;
    layout.csr = routing.destination_map.spec().layout == Layout::kCsr;
    layout.nrows = plan.shape.nrows;
    layout.ncols = plan.shape.ncols;
    layout.value_dtype = value_dtype;
    layout.gzip_level = compression.method == zip::Method::kStored ? 0 : std::max(1, compression.level);
    layout.part_bounds = part_bounds;
    // Where each part's entries start: the counts every rank holds for it,
    // known before anything moves.
    layout.part_offsets.assign(routing.destinations.size() + 1, 0);
    for (std::size_t k = 0; k < routing.destinations.size(); ++k) {
      std::uint64_t entries = 0;
      for (const auto& row : waves_problem.held) entries += row[k];
      layout.part_offsets[k + 1] = layout.part_offsets[k] + entries;
    }
    auto created = OneFileSink::create(comm, dst_store, std::move(layout));
    RESHARD_RETURN_IF_ERROR(agree(comm, created.status()));
    sink = std::move(created).value();
  }
  for (const auto& wave : waves.waves) {
    phase = Clock::now();
    const std::uint64_t rounds_before = stats.exchange.rounds;
    RESHARD_ASSIGN_OR_RETURN(WaveEntries entries, exchange_wave(comm, buckets, waves_problem.held, routing.owner, wave,
                                                                config.max_message_bytes, stats.exchange));
    for (const auto d : wave) {
      if (routing.owner.owner_of(d) != rank) buckets.release_shard(d);
    }
    exchange_seconds += seconds_since(phase);
    const std::string wave_text =
        "wave " + std::to_string(stats.exchange.waves) + "/" + std::to_string(waves.waves.size());
    report_progress(
        "exchange", write_fraction(),
        wave_text + " exchanged in " + std::to_string(stats.exchange.rounds - rounds_before) + " all-to-all round(s)");
    if (fault::active("drop-entry") && !dropped_entry) {
      for (auto& parts : entries.parts) {
        if (!parts.empty() && !dropped_entry) {
          parts.back().entries = parts.back().entries.first(parts.back().entries.size() - 1);
          dropped_entry = true;
        }
      }
    }
    std::vector<const DestinationShard*> owned;
    for (const auto d : entries.shards) owned.push_back(&routing.destinations[d]);
    if (sink) {
      // Part by part, every rank in every collective write, so a rank holds
      // one assembled part at a time as with shards.
      const std::uint64_t slots = comm.max(owned.size());
      for (std::uint64_t k = 0; k < slots; ++k) {
        const auto t0 = Clock::now();
        std::optional<AssembledShard> part;
        if (k < owned.size()) {
          part = assemble_shard(entries.parts[k], *owned[k], routing, value_dtype, {}, threads,
                                ConsumedEntries::kGiveBack);
          written_fingerprint.merge(part->fingerprint);
          stats.entries_written += part->nnz();
          ++parts_written;
        }
        const auto t1 = Clock::now();
        assemble_seconds += std::chrono::duration<double>(t1 - t0).count();
        RESHARD_RETURN_IF_ERROR(agree(comm, sink->write_part(comm, part ? &*part : nullptr)));
        write_seconds += seconds_since(t1);
      }
      report_progress("write", write_fraction(),
                      "wrote " + std::to_string(parts_written) + "/" + std::to_string(my_owned) +
                          " parts of the destination file on rank 0 (" + wave_text + ")",
                      stats.entries_written);
      continue;
    }
    auto ids = hashed_ids_for(plan, owned);
    RESHARD_RETURN_IF_ERROR(write_in_rounds(
        owned.size(),
        [&](std::size_t k) {
          const auto t0 = Clock::now();
          AssembledShard assembled = assemble_shard(entries.parts[k], *owned[k], plan, value_dtype, std::move(ids[k]),
                                                    threads, ConsumedEntries::kGiveBack);
          const auto t1 = Clock::now();
          assemble_seconds += std::chrono::duration<double>(t1 - t0).count();
          auto w = write_shard(dst_store, assembled, compression, config.destination_group);
          write_seconds += seconds_since(t1);
          return w;
        },
        wave_text));
  }
  if (sink) {
    const auto t0 = Clock::now();
    RESHARD_ASSIGN_OR_RETURN(const OneFileSink::Closed closed, sink->close(comm));
    const Fingerprint file_fingerprint{comm.sum(written_fingerprint.count), comm.sum(written_fingerprint.sum)};
    std::vector<WrittenShard> record;
    if (rank == 0) {
      WrittenShard file;
      file.key = plan.destinations.front().key;
      file.bytes = closed.bytes;
      file.nnz = file_fingerprint.count;
      file.crc32c = closed.crc32c;
      file.fingerprint = file_fingerprint;
      record.push_back(file);
      stats.bytes_written += closed.bytes;
      ++stats.shards_written;
    }
    write_seconds += seconds_since(t0);
    fault::point("after-shard-write");
    RESHARD_RETURN_IF_ERROR(log.record_round(comm, record));
  }
  stats.seconds["exchange"] = exchange_seconds;
  stats.seconds["assemble"] = assemble_seconds;
  stats.seconds["write"] = write_seconds;

  // ---- verify ----
  phase = Clock::now();
  const Fingerprint written{comm.sum(written_fingerprint.count), comm.sum(written_fingerprint.sum)};
  Fingerprint destination = kept_fingerprint;
  destination.merge(written);
  if (!(written == routed) || !(destination == source_fingerprint)) {
    // Nothing is published; the shards of this run are removed and forgotten,
    // so a rerun writes them again.
    for (auto index : written_here) (void)dst_store.remove(plan.destinations[index].key);
    const auto all = comm.allgather(json_bytes(json(written_here)));
    if (rank == 0) {
      for (const auto& bytes : all) log.forget(parse_json_bytes(bytes).get<std::vector<std::uint64_t>>());
      (void)log.save();
    }
    return Status::Verification("fingerprint mismatch: source " + source_fingerprint.to_string() + ", destination " +
                                destination.to_string() + "; nothing was published");
  }

  // ---- commit ----
  SuccessMarker success;
  success.job_id = log.manifest().job_id;
  success.nnz = destination.count;
  success.fingerprint = destination;
  success.shard_count = plan.destinations.size();
  success.wall_seconds = seconds_since(started);
  success.finished_at = utc_now();
  if (rank == 0) {
    for (const auto& key : plan.stale_destination_keys) {
      status = dst_store.remove(key).with_context("removing stale destination shard");
      if (!status.ok()) break;
    }
    if (status.ok()) status = claim->still_held();
    // A one-file destination takes its name only now, just before _SUCCESS.
    if (status.ok() && sink) status = sink->move_into_place().with_context("publishing");
    if (status.ok()) {
      fault::point("before-publish");
      status = log.publish(success);
    }
    // Published: the job has succeeded. What is left is housekeeping that a
    // rerun of the same command finishes, so its failures are warnings.
    if (status.ok()) {
      Status committed = log.mark_committed();
      if (!committed.ok()) {
        outcome.warnings.push_back(committed.message() +
                                   "; the dataset is published, and rerunning the same command commits the manifest");
      }
      for (const std::string& d : {plan.written_key_prefix, plan.destination_directory + "_reshard/"}) {
        auto removed = dst_store.clean_up_incomplete_writes(d);
        if (!removed.ok())
          outcome.warnings.push_back("removing temp files after publishing: " + removed.status().message());
      }
    }
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, status));
  stats.seconds["commit"] = seconds_since(phase);
  report_progress("done", 1.0, "published");

  // ---- report ----
  json mine = {{"rank", rank},
               {"cpus_allowed", cpus_allowed},
               {"source_shards_read", stats.source_shards_read},
               {"bytes_read", stats.bytes_read},
               {"entries_sent", stats.exchange.entries_sent},
               {"bytes_sent", stats.exchange.bytes_sent},
               {"entries_kept_local", stats.exchange.entries_kept_local},
               {"entries_received", stats.exchange.entries_received},
               {"entries_written", stats.entries_written},
               {"destination_shards_written", stats.shards_written},
               {"bytes_written", stats.bytes_written},
               {"bytes_spilled", stats.bytes_spilled},
               {"destination_shards_reused", stats.shards_reused},
               {"bytes_reused", stats.bytes_reused},
               {"shards_copied_server_side", stats.shards_copied_server_side},
               {"peak_rss_bytes", peak_rss_bytes()},
               {"storage_retries", object_store_retries()},
               {"credential_refreshes", credential_refreshes()},
               {"seconds", stats.seconds}};
  const auto all_stats = comm.allgather(json_bytes(mine));
  if (rank != 0) return outcome;
  json per_rank = json::array();
  json totals = json::object();
  for (const char* key :
       {"bytes_read", "bytes_written", "bytes_sent", "bytes_spilled", "entries_sent", "entries_kept_local",
        "source_shards_read", "destination_shards_written", "destination_shards_reused", "bytes_reused",
        "shards_copied_server_side", "storage_retries", "credential_refreshes"}) {
    totals[key] = 0;
  }
  for (const auto& bytes : all_stats) {
    json r = parse_json_bytes(bytes);
    for (auto& [key, value] : totals.items()) value = value.get<std::uint64_t>() + r[key].get<std::uint64_t>();
    per_rank.push_back(std::move(r));
  }
  const double wall = seconds_since(started);
  json& report = outcome.report;
  report = describe_job(config, plan, comm.size());
  report["job_id"] = success.job_id;
  report["resumed"] = start.kind == StartingPoint::Kind::kResume;
  report["destination_shards_kept"] = kept_count;
  report["temporaries_removed"] = start.temporaries_removed;
  report["nnz"] = source_fingerprint.count;
  report["value_dtype"] = anything_to_write ? json(value_dtype.name()) : json(nullptr);
  report["source_fingerprint"] = {{"nnz", source_fingerprint.count}, {"sum", source_fingerprint.sum_hex()}};
  report["destination_fingerprint"] = {{"nnz", destination.count}, {"sum", destination.sum_hex()}};
  report["exchange_rounds"] = stats.exchange.rounds;
  report["exchange_waves"] = waves.waves.size();
  report["threads_per_rank"] = threads;
  report["write_threads_per_rank"] = compression.threads;
  report["memory"] = {{"limit_bytes", budget.limit},
                      {"baseline_bytes", budget.baseline},
                      {"working_bytes", working},
                      {"planned_wave_peak_bytes", waves.peak_bytes},
                      {"scratch_dir", scratch_dir}};
  report["ownership_epsilon"] = config.ownership_epsilon;
  report["bytes_sent_lower_bound"] = ownership.entries_lower_bound * sizeof(Entry);
  // As `mpi_reshard plan` reports them, over the shards this run wrote.
  report["skew"] = skew_figures(written_shard_entries);
  report["totals"] = totals;
  report["per_rank"] = per_rank;
  report["seconds"] = stats.seconds;
  report["wall_seconds"] = wall;
  report["warnings"] = outcome.warnings;
  std::ostringstream summary;
  summary << "resharded " << plan.shape.nrows << "x" << plan.shape.ncols << " matrix, " << source_fingerprint.count
          << " stored entries\n"
          << "  " << plan.sources.size() << " source shards (" << config.old_spec.to_text() << ") -> "
          << plan.destinations.size() << " destination shards (" << config.new_spec.to_text() << ") on " << comm.size()
          << " rank(s)";
  if (start.kind == StartingPoint::Kind::kResume) {
    summary << "; resumed: " << kept_count << " shards kept, " << totals["destination_shards_written"] << " written, "
            << totals["source_shards_read"] << " source shards read";
  }
  const auto total = [&totals](const char* key) { return totals[key].get<std::uint64_t>(); };
  summary << "\n  read " << format_bytes(total("bytes_read")) << ", wrote " << format_bytes(total("bytes_written"))
          << ", sent " << format_bytes(total("bytes_sent")) << " between ranks ("
          << format_count(static_cast<double>(total("entries_kept_local"))) << " entries stayed local)\n"
          << "  reused " << total("destination_shards_reused") << " destination shards unchanged from the source ("
          << format_bytes(total("bytes_reused")) << ", " << total("shards_copied_server_side")
          << " copied by the store)\n"
          << "  fingerprint source " << source_fingerprint.to_string() << " = destination " << destination.to_string()
          << "\n  published " << dst_store.url(success_key(plan.destination_directory)) << " (job " << success.job_id
          << ")\n"
          << "  wall time " << format_seconds(wall) << ", peak RSS of rank 0 " << format_bytes(peak_rss_bytes());
  outcome.summary = summary.str();
  return outcome;
}

}  // namespace reshard

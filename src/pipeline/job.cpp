#include "reshard/pipeline/job.hpp"

#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "reshard/pipeline/assemble.hpp"
#include "reshard/pipeline/bucket.hpp"
#include "reshard/pipeline/exchange.hpp"
#include "reshard/pipeline/plan.hpp"
#include "reshard/pipeline/read.hpp"
#include "reshard/pipeline/write.hpp"

namespace reshard {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Progress weights of the stages, summing to 1.
constexpr double kPlanWeight = 0.02;
constexpr double kReadWeight = 0.48;
constexpr double kExchangeWeight = 0.10;
constexpr double kWriteWeight = 0.38;

class StageTimer {
 public:
  explicit StageTimer(json& seconds) : seconds_(seconds) {}
  void finish(const char* stage) {
    const auto now = Clock::now();
    seconds_[stage] = std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

 private:
  json& seconds_;
  Clock::time_point last_ = Clock::now();
};

Bytes json_bytes(const json& value) {
  const std::string text = value.dump();
  return Bytes(text.begin(), text.end());
}

// A test-only fault (docs/operations.md): RESHARD_FAULT=drop-entry makes rank
// 0 lose one received entry, so the fingerprint check has to catch it.
bool fault_requested(const char* point) {
  const char* fault = std::getenv("RESHARD_FAULT");
  return fault != nullptr && std::strcmp(fault, point) == 0;
}

// All ranks' source dtypes must agree with the lowest-numbered shard's.
Result<npy::DType> agree_on_dtypes(Comm& comm, const Store& store, const Plan& plan, const json& mine) {
  json all = json::array();
  for (const auto& bytes : comm.allgather(json_bytes(mine))) {
    for (const auto& item : json::parse(bytes.begin(), bytes.end())) all.push_back(item);
  }
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
  npy::DType dtype;
  dtype.kind = descr[1];
  dtype.itemsize = static_cast<std::uint32_t>(std::stoul(descr.substr(2)));
  return dtype;
}

std::uint64_t peak_rss_bytes() {
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace

Result<JobOutcome> run_reshard(Comm& comm, const JobConfig& config, const ProgressSink& progress) {
  const auto started = Clock::now();
  const int rank = comm.rank();
  auto report_progress = [&](const std::string& stage, double fraction, const std::string& detail) {
    if (rank == 0 && progress) progress(stage, fraction, detail);
  };
  json stats;
  json& seconds = stats["seconds"];
  StageTimer timer(seconds);

  // ---- plan ----
  Status setup;
  StoreAndKey src;
  StoreAndKey dst;
  ShardPattern src_pattern;
  ShardPattern dst_pattern;
  {
    auto s = open_store(config.src_pattern);
    auto d = open_store(config.dst_pattern);
    if (!s.ok()) return s.status().with_context("--src " + config.src_pattern);
    if (!d.ok()) return d.status().with_context("--dst " + config.dst_pattern);
    src = std::move(s).value();
    dst = std::move(d).value();
    auto sp = ShardPattern::parse(src.key);
    if (!sp.ok()) return sp.status().with_context("--src");
    auto dp = ShardPattern::parse(dst.key);
    if (!dp.ok()) return dp.status().with_context("--dst");
    src_pattern = std::move(sp).value();
    dst_pattern = std::move(dp).value();
  }
  report_progress("plan", 0.0, "listing and inspecting source shards");
  RESHARD_ASSIGN_OR_RETURN(Plan plan, make_plan(comm, *src.store, src_pattern, *dst.store, dst_pattern, config));
  timer.finish("plan");
  report_progress("plan", kPlanWeight,
                  std::to_string(plan.sources.size()) + " source shards -> " +
                      std::to_string(plan.destinations.size()) + " destination shards");

  // ---- read + bucket ----
  Buckets buckets(comm.size());
  std::uint64_t bytes_read = 0;
  std::uint64_t shards_read = 0;
  double read_seconds = 0;
  double bucket_seconds = 0;
  json dtypes = json::array();
  Status local;
  std::uint64_t my_sources = 0;
  for (const auto& s : plan.sources) my_sources += s.reader == rank ? 1 : 0;
  for (const auto& source : plan.sources) {
    if (source.reader != rank) continue;
    const auto t0 = Clock::now();
    auto loaded = read_source(*src.store, source, plan.source_map);
    const auto t1 = Clock::now();
    read_seconds += std::chrono::duration<double>(t1 - t0).count();
    if (!loaded.ok()) {
      local = loaded.status();
      break;
    }
    bytes_read += loaded->bytes_read;
    const auto& m = loaded->decoded.matrix;
    dtypes.push_back({{"index", source.index},
                      {"value_dtype", m.value_dtype.name()},
                      {"value_dtype_descr", m.value_dtype.descr()},
                      {"index_dtype", m.index_dtype.name()}});
    bucket_source(*loaded, plan.destination_map, plan.owner, buckets);
    bucket_seconds += std::chrono::duration<double>(Clock::now() - t1).count();
    ++shards_read;
    report_progress(
        "read", kPlanWeight + kReadWeight * static_cast<double>(shards_read) / static_cast<double>(my_sources),
        "read " + std::to_string(shards_read) + "/" + std::to_string(my_sources) + " source shards on rank 0");
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, local));
  RESHARD_ASSIGN_OR_RETURN(npy::DType value_dtype, agree_on_dtypes(comm, *src.store, plan, dtypes));
  seconds["read"] = read_seconds;
  seconds["bucket"] = bucket_seconds;
  timer.finish("read_and_bucket");
  const Fingerprint source_fingerprint{comm.sum(buckets.source_fingerprint.count),
                                       comm.sum(buckets.source_fingerprint.sum)};

  // ---- exchange ----
  ExchangeStats exchange_stats;
  std::vector<Entry> received = exchange(comm, buckets, config.max_message_bytes, exchange_stats);
  if (fault_requested("drop-entry") && rank == 0 && !received.empty()) received.pop_back();
  timer.finish("exchange");
  report_progress("exchange", kPlanWeight + kReadWeight + kExchangeWeight,
                  std::to_string(exchange_stats.rounds) + " all-to-all round(s)");

  // ---- assemble + write ----
  std::vector<const DestinationShard*> owned;
  auto groups = group_by_destination(std::move(received), plan, rank, owned);
  auto ids = hashed_ids_for(plan, owned);
  std::vector<WrittenShard> written;
  double assemble_seconds = 0;
  double write_seconds = 0;
  Fingerprint destination_local;
  std::uint64_t bytes_written = 0;
  for (std::size_t k = 0; k < owned.size(); ++k) {
    const auto t0 = Clock::now();
    AssembledShard assembled = assemble_shard(std::move(groups[k]), *owned[k], plan, value_dtype, std::move(ids[k]));
    const auto t1 = Clock::now();
    auto w = write_shard(*dst.store, assembled, config.compression);
    write_seconds += std::chrono::duration<double>(Clock::now() - t1).count();
    assemble_seconds += std::chrono::duration<double>(t1 - t0).count();
    if (!w.ok()) {
      local = w.status();
      break;
    }
    destination_local.merge(w->fingerprint);
    bytes_written += w->bytes;
    written.push_back(std::move(w).value());
    report_progress(
        "write",
        kPlanWeight + kReadWeight + kExchangeWeight +
            kWriteWeight * static_cast<double>(k + 1) / static_cast<double>(owned.size()),
        "wrote " + std::to_string(k + 1) + "/" + std::to_string(owned.size()) + " destination shards on rank 0");
  }
  auto remove_written = [&]() {
    for (const auto& w : written) (void)dst.store->remove(w.key);
  };
  if (Status agreed = agree(comm, local); !agreed.ok()) {
    remove_written();
    return agreed;
  }
  seconds["assemble"] = assemble_seconds;
  seconds["write"] = write_seconds;
  timer.finish("assemble_and_write");

  // ---- verify + commit ----
  const Fingerprint destination_fingerprint{comm.sum(destination_local.count), comm.sum(destination_local.sum)};
  if (!(destination_fingerprint == source_fingerprint)) {
    remove_written();
    return Status::Verification("fingerprint mismatch: source " + source_fingerprint.to_string() + ", destination " +
                                destination_fingerprint.to_string() + "; the written shards were removed");
  }
  Status commit;
  if (rank == 0) {
    for (const auto& key : plan.stale_destination_keys) {
      commit = dst.store->remove(key).with_context("removing stale destination shard");
      if (!commit.ok()) break;
    }
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, commit));
  timer.finish("commit");
  report_progress("done", 1.0, "published");

  // ---- report ----
  stats["rank"] = rank;
  stats["source_shards_read"] = shards_read;
  stats["bytes_read"] = bytes_read;
  stats["entries_sent"] = exchange_stats.entries_sent;
  stats["bytes_sent"] = exchange_stats.bytes_sent;
  stats["entries_kept_local"] = exchange_stats.entries_kept_local;
  stats["entries_received"] = exchange_stats.entries_received;
  stats["destination_shards_written"] = written.size();
  stats["bytes_written"] = bytes_written;
  stats["peak_rss_bytes"] = peak_rss_bytes();
  const auto all_stats = comm.allgather(json_bytes(stats));
  JobOutcome outcome;
  if (rank != 0) return outcome;
  json per_rank = json::array();
  json totals = {
      {"bytes_read", 0}, {"bytes_written", 0}, {"bytes_sent", 0}, {"entries_sent", 0}, {"entries_kept_local", 0}};
  for (const auto& bytes : all_stats) {
    json r = json::parse(bytes.begin(), bytes.end());
    for (auto& [key, value] : totals.items()) value = value.get<std::uint64_t>() + r[key].get<std::uint64_t>();
    per_rank.push_back(std::move(r));
  }
  const double wall = std::chrono::duration<double>(Clock::now() - started).count();
  json& report = outcome.report;
  report["old_scheme"] = config.old_spec.to_text();
  report["new_scheme"] = config.new_spec.to_text();
  report["src"] = config.src_pattern;
  report["dst"] = config.dst_pattern;
  report["shape"] = {plan.shape.nrows, plan.shape.ncols};
  report["nnz"] = source_fingerprint.count;
  report["value_dtype"] = value_dtype.name();
  report["ranks"] = comm.size();
  report["source_shards"] = plan.sources.size();
  report["destination_shards"] = plan.destinations.size();
  report["source_fingerprint"] = {{"nnz", source_fingerprint.count}, {"sum", source_fingerprint.sum_hex()}};
  report["destination_fingerprint"] = {{"nnz", destination_fingerprint.count},
                                       {"sum", destination_fingerprint.sum_hex()}};
  report["exchange_rounds"] = exchange_stats.rounds;
  report["totals"] = totals;
  report["per_rank"] = per_rank;
  report["seconds"] = seconds;
  report["wall_seconds"] = wall;
  std::ostringstream summary;
  summary << "resharded " << plan.shape.nrows << "x" << plan.shape.ncols << " matrix, " << source_fingerprint.count
          << " stored entries (" << value_dtype.name() << ")\n"
          << "  " << plan.sources.size() << " source shards (" << config.old_spec.to_text() << ") -> "
          << plan.destinations.size() << " destination shards (" << config.new_spec.to_text() << ") on " << comm.size()
          << " rank(s)\n"
          << "  read " << totals["bytes_read"].get<std::uint64_t>() << " bytes, wrote "
          << totals["bytes_written"].get<std::uint64_t>() << " bytes, sent "
          << totals["bytes_sent"].get<std::uint64_t>() << " bytes between ranks ("
          << totals["entries_kept_local"].get<std::uint64_t>() << " entries stayed local)\n"
          << "  fingerprint source " << source_fingerprint.to_string() << " = destination "
          << destination_fingerprint.to_string() << "\n"
          << "  wall time " << wall << " s, peak RSS of rank 0 "
          << stats["peak_rss_bytes"].get<std::uint64_t>() / (1 << 20) << " MiB";
  outcome.summary = summary.str();
  return outcome;
}

}  // namespace reshard

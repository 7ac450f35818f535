#include "reshard/pipeline/verify.hpp"
#include "reshard/pipeline/commit.hpp"
#include "reshard/pipeline/json_messages.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "reshard/crc32c.hpp"
#include "reshard/manifest.hpp"
#include "reshard/pipeline/plan.hpp"
#include "reshard/pipeline/read.hpp"
#include "reshard/shard_pattern.hpp"

namespace reshard {
namespace {

using nlohmann::json;

// Rank 0 reads the small control files; everyone gets the same copy.
Result<std::pair<Manifest, std::optional<SuccessMarker>>> read_control_files(Comm& comm, Store& store,
                                                                             const std::string& dir) {
  // The files' bytes go to every rank as they are: they may hold any byte,
  // and each rank decodes them itself.
  Bytes manifest_bytes;
  Bytes success_bytes;  // a leading 1 when _SUCCESS exists
  Status status;
  if (comm.rank() == 0) {
    auto manifest = load_manifest(store, dir);
    if (!manifest.ok()) {
      status = manifest.status();
    } else if (!*manifest) {
      status = Status::Verification("no manifest at " + store.url(manifest_key(dir)) +
                                    ": not a dataset written by mpi_reshard, or not started");
    } else {
      manifest_bytes = (*manifest)->encode();
      auto success = store.read_all(success_key(dir));
      success_bytes.push_back(success.ok() ? 1 : 0);
      if (success.ok()) success_bytes.insert(success_bytes.end(), success->begin(), success->end());
    }
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, status));
  manifest_bytes = comm.allgather(manifest_bytes)[0];
  success_bytes = comm.allgather(success_bytes)[0];
  RESHARD_ASSIGN_OR_RETURN(Manifest manifest, Manifest::decode(manifest_bytes));
  std::optional<SuccessMarker> success;
  if (!success_bytes.empty() && success_bytes[0] == 1) {
    const ByteView text = ByteView(success_bytes).subspan(1);
    auto decoded = SuccessMarker::decode(text);
    if (!decoded.ok()) return decoded.status();
    success = *decoded;
  }
  return std::make_pair(std::move(manifest), success);
}

// Checks one destination shard: present, the recorded size and CRC-32C, a
// valid matrix in its place, and its fingerprint.
// `key` is where the shard is now, which differs from record.key in a copy
// of the dataset.
void check_shard(Store& store, const std::string& key, const ShardRecord& record, const ShardMap& map,
                 const std::string& hdf5_group, std::vector<std::uint64_t> ids, Fingerprint& total,
                 std::vector<std::string>& problems) {
  const std::string url = store.url(key);
  if (record.state != ShardState::kWritten) {
    problems.push_back("shard " + url + " was never recorded as written");
    return;
  }
  auto info = store.stat(key);
  if (!info.ok() || !*info) {
    problems.push_back("missing shard " + url);
    return;
  }
  if ((*info)->size != record.bytes) {
    problems.push_back((((*info)->size < record.bytes) ? "truncated shard " : "resized shard ") + url + ": " +
                       std::to_string((*info)->size) + " bytes, manifest says " + std::to_string(record.bytes));
    return;
  }
  auto bytes = store.read(key, 0, record.bytes);
  if (!bytes.ok()) {
    problems.push_back("unreadable shard " + url + ": " + bytes.status().message());
    return;
  }
  if (crc32c(*bytes) != record.crc32c) {
    problems.push_back("altered shard " + url + ": CRC-32C differs from the manifest");
    return;
  }
  SourceShard as_read;
  as_read.index = record.index;
  as_read.key = key;
  as_read.group = hdf5_group;
  as_read.box = map.box(record.index);
  as_read.nrows = as_read.box.rows();
  as_read.ncols = as_read.box.cols();
  if (map.spec().hashed()) (map.spec().axis == Axis::kRows ? as_read.nrows : as_read.ncols) = ids.size();
  auto loaded = read_source(store, as_read, map);
  if (!loaded.ok()) {
    problems.push_back("invalid shard " + url + ": " + loaded.status().message());
    return;
  }
  Fingerprint fp;
  loaded->for_each_global_entry(
      [&](std::uint64_t r, std::uint64_t c, std::uint64_t v, std::uint64_t) { fp.add(r, c, v); });
  if (!(fp == record.fingerprint)) {
    problems.push_back("shard " + url + " has fingerprint " + fp.to_string() + ", manifest says " +
                       record.fingerprint.to_string());
  }
  total.merge(fp);
}

}  // namespace

Result<VerifyOutcome> run_verify(Comm& comm, const std::string& dst_pattern, bool against_source) {
  RESHARD_ASSIGN_OR_RETURN(StoreAndKey dst, open_store(dst_pattern));
  auto pattern = ShardPattern::parse(dst.key);
  if (!pattern.ok()) return pattern.status().with_context("--dst");
  const std::string dir = pattern->control_prefix();
  RESHARD_ASSIGN_OR_RETURN(auto control, read_control_files(comm, *dst.store, dir));
  const Manifest& manifest = control.first;
  const auto& success = control.second;
  VerifyOutcome outcome;
  std::vector<std::string> problems;
  RESHARD_ASSIGN_OR_RETURN(ShardingSpec new_spec, ShardingSpec::parse_text(manifest.new_scheme));
  RESHARD_ASSIGN_OR_RETURN(ShardMap map, ShardMap::bind(new_spec, manifest.shape));

  if (comm.rank() == 0) {
    if (!success) problems.push_back("not published: " + dst.store->url(success_key(dir)) + " is missing");
    if (success && success->job_id != manifest.job_id) {
      problems.push_back("_SUCCESS names job " + success->job_id + " but the manifest is job " + manifest.job_id);
    }
    std::set<std::string> expected;
    for (const auto& r : manifest.shards) expected.insert(destination_key(*pattern, map, r.index));
    auto listing = dst.store->list(pattern->directory());
    if (!listing.ok()) return listing.status();
    for (const auto& key : *listing) {
      if (pattern->match(key) && !expected.count(key)) problems.push_back("extra shard file " + dst.store->url(key));
    }
  }
  // Each rank checks every P-th shard.
  std::vector<std::uint64_t> mine;
  for (std::uint64_t i = static_cast<std::uint64_t>(comm.rank()); i < manifest.shards.size();
       i += static_cast<std::uint64_t>(comm.size())) {
    mine.push_back(i);
  }
  auto ids = map.hashed_ids(mine);
  Fingerprint local;
  for (std::size_t k = 0; k < mine.size(); ++k) {
    const ShardRecord& record = manifest.shards[mine[k]];
    check_shard(*dst.store, destination_key(*pattern, map, record.index), record, map, manifest.dst_group,
                std::move(ids[k]), local, problems);
  }
  const Fingerprint destination{comm.sum(local.count), comm.sum(local.sum)};

  Fingerprint source;
  if (against_source) {
    RESHARD_ASSIGN_OR_RETURN(StoreAndKey src, open_store(manifest.src_pattern));
    RESHARD_ASSIGN_OR_RETURN(ShardPattern src_pattern, ShardPattern::parse(src.key));
    JobConfig config;
    config.src_pattern = manifest.src_pattern;
    config.dst_pattern = manifest.dst_pattern;
    config.source_group = manifest.src_group;
    config.destination_group = manifest.dst_group;
    RESHARD_ASSIGN_OR_RETURN(config.old_spec, ShardingSpec::parse_text(manifest.old_scheme));
    config.new_spec = new_spec;
    RESHARD_ASSIGN_OR_RETURN(Plan plan, make_plan(comm, *src.store, src_pattern, *dst.store, *pattern, config));
    Fingerprint read;
    for (const auto& s : plan.sources) {
      if (s.reader != comm.rank()) continue;
      auto loaded = read_source(*src.store, s, plan.source_map);
      if (!loaded.ok()) {
        problems.push_back(loaded.status().message());
        continue;
      }
      loaded->for_each_global_entry(
          [&](std::uint64_t r, std::uint64_t c, std::uint64_t v, std::uint64_t) { read.add(r, c, v); });
    }
    source = Fingerprint{comm.sum(read.count), comm.sum(read.sum)};
  }

  // Everyone's problems, in one sorted list.
  json mine_json = problems;
  for (const auto& bytes : comm.allgather(json_bytes(mine_json))) {
    for (const auto& p : parse_json_bytes(bytes)) outcome.problems.push_back(p.get<std::string>());
  }
  if (success && !(destination == success->fingerprint)) {
    outcome.problems.push_back("destination fingerprint " + destination.to_string() + " differs from _SUCCESS " +
                               success->fingerprint.to_string());
  }
  if (manifest.source_fingerprint && !(destination == *manifest.source_fingerprint)) {
    outcome.problems.push_back("destination fingerprint " + destination.to_string() +
                               " differs from the manifest's source fingerprint " +
                               manifest.source_fingerprint->to_string());
  }
  if (against_source && !(source == destination)) {
    outcome.problems.push_back("source " + manifest.src_pattern + " now has fingerprint " + source.to_string() +
                               ", the destination " + destination.to_string());
  }
  std::sort(outcome.problems.begin(), outcome.problems.end());
  outcome.summary = "verified " + std::to_string(manifest.shards.size()) + " shards of " + dst_pattern + " (job " +
                    manifest.job_id + "): " + destination.to_string() +
                    (against_source ? ", equal to the source's fingerprint" : "") +
                    (manifest.dst_pattern != dst_pattern ? " (written as " + manifest.dst_pattern + ")" : "");
  return outcome;
}

}  // namespace reshard

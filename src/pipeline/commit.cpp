#include "reshard/pipeline/commit.hpp"
#include "reshard/pipeline/json_messages.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "reshard/crc32c.hpp"
#include "reshard/fault.hpp"

namespace reshard {
namespace {

using nlohmann::json;

std::string compression_text(const zip::WriteOptions& options) {
  if (options.method == zip::Method::kStored) return "none";
  const char* engine = options.deflater == zip::Deflater::kIgzip ? "igzip:" : "deflate:";
  return engine + std::to_string(options.level);
}

// Everything rank 0 reads of an earlier run, and what it makes of it.
struct Findings {
  std::optional<Manifest> manifest;
  std::optional<SuccessMarker> success;
};

// The journal segments of `directory`, by number.
Result<std::vector<std::pair<std::uint64_t, std::string>>> list_journal(Store& store, const std::string& directory) {
  RESHARD_ASSIGN_OR_RETURN(auto keys, store.list(journal_directory(directory)));
  std::vector<std::pair<std::uint64_t, std::string>> segments;
  for (auto& key : keys) {
    if (auto number = journal_segment_number(key, directory)) segments.emplace_back(*number, std::move(key));
  }
  std::sort(segments.begin(), segments.end());
  return segments;
}

// Writes a control file; the fault point stands for a crash inside it.
Status write_control_file(Store& store, const std::string& directory, const std::string& key, const Bytes& bytes) {
  if (fault::fires_next("mid-manifest-update")) {
    // What a crash inside an atomic write leaves: a partial temp file beside
    // the intact previous version.
    (void)store.write_atomic(directory + "_reshard/.manifest.json.tmp.fault",
                             ByteView(bytes).subspan(0, bytes.size() / 2));
  }
  fault::point("mid-manifest-update");
  return store.write_atomic(key, bytes);
}

Result<Findings> read_earlier_run(Store& store, const std::string& directory) {
  Findings found;
  RESHARD_ASSIGN_OR_RETURN(found.manifest, load_manifest(store, directory));
  const std::string skey = success_key(directory);
  RESHARD_ASSIGN_OR_RETURN(auto sinfo, store.stat(skey));
  if (sinfo) {
    RESHARD_ASSIGN_OR_RETURN(Bytes bytes, store.read(skey, 0, sinfo->size));
    auto success = SuccessMarker::decode(bytes);
    if (!success.ok()) return success.status().with_context("reading " + store.url(skey));
    found.success = std::move(success).value();
  }
  return found;
}

// Why an earlier manifest does not describe this job, in one line.
std::string why_different(const Manifest& earlier, const Manifest& fresh, const Store& store,
                          const std::string& directory) {
  const bool same_settings = earlier.src_pattern == fresh.src_pattern && earlier.dst_pattern == fresh.dst_pattern &&
                             earlier.old_scheme == fresh.old_scheme && earlier.new_scheme == fresh.new_scheme &&
                             earlier.compression == fresh.compression && earlier.src_group == fresh.src_group &&
                             earlier.dst_group == fresh.dst_group;
  const std::string where = store.url(manifest_key(directory));
  if (same_settings) {
    for (std::size_t i = 0; i < fresh.sources.size(); ++i) {
      if (i >= earlier.sources.size() || !(earlier.sources[i] == fresh.sources[i])) {
        return "source shard " + fresh.sources[i].key + " changed since " + where +
               " was written; pass --restart to start over from the current source";
      }
    }
    return "the source shards changed since " + where + " was written; pass --restart to start over";
  }
  if (earlier.committed) {
    return "destination holds a published dataset of another job (" + earlier.old_scheme + " -> " + earlier.new_scheme +
           " from " + earlier.src_pattern + "); pass --overwrite to replace it";
  }
  return where + " belongs to another, unfinished job (" + earlier.old_scheme + " -> " + earlier.new_scheme + " from " +
         earlier.src_pattern + "); pass --restart to discard it";
}

}  // namespace

Result<std::optional<Manifest>> load_manifest(Store& store, const std::string& directory) {
  const std::string mkey = manifest_key(directory);
  RESHARD_ASSIGN_OR_RETURN(auto minfo, store.stat(mkey));
  if (!minfo) return std::optional<Manifest>();
  RESHARD_ASSIGN_OR_RETURN(Bytes bytes, store.read(mkey, 0, minfo->size));
  auto manifest = Manifest::decode(bytes);
  if (!manifest.ok()) return manifest.status().with_context("reading " + store.url(mkey));
  RESHARD_ASSIGN_OR_RETURN(auto segments, list_journal(store, directory));
  for (const auto& [number, key] : segments) {
    if (number < manifest->journal_from) continue;  // folded in already
    RESHARD_ASSIGN_OR_RETURN(Bytes segment_bytes, store.read_all(key));
    auto segment = JournalSegment::decode(segment_bytes);
    Status applied = segment.ok() ? segment->apply_to(*manifest) : segment.status();
    if (!applied.ok()) return applied.with_context("reading " + store.url(key));
    manifest->journal_from = number + 1;
  }
  return std::optional<Manifest>(std::move(manifest).value());
}

Manifest fresh_manifest(const Plan& plan, const JobConfig& config, const Store& source_store) {
  Manifest m;
  m.src_pattern = config.src_pattern;
  m.dst_pattern = config.dst_pattern;
  m.old_scheme = config.old_spec.to_text();
  m.new_scheme = config.new_spec.to_text();
  m.compression = compression_text(config.compression);
  m.src_group = config.source_group;
  m.dst_group = config.destination_group;
  m.shape = plan.shape;
  for (const auto& s : plan.sources) {
    m.sources.push_back({s.index, source_store.url(s.key), s.bytes, s.version, s.tail_crc});
  }
  for (const auto& d : plan.destinations) m.shards.push_back({d.index, d.key, ShardState::kPending, 0, 0, 0, {}});
  m.job_id = compute_job_id(m);
  return m;
}

Result<StartingPoint> find_starting_point(Comm& comm, Store& store, const Plan& plan, const JobConfig& config,
                                          const Manifest& fresh, StartCheck check) {
  const std::string& dir = plan.destination_directory;
  StartingPoint start;
  Status status;
  json decision;
  if (comm.rank() == 0) {
    // A control file's name taken by something that is not a file (a
    // directory) blocks every run, --restart and --overwrite included:
    // say what to remove instead of suggesting a flag that cannot help.
    for (const std::string& key : {manifest_key(dir), success_key(dir)}) {
      auto info = store.stat(key);
      if (status.ok() && !info.ok() && info.status().kind() == ErrorKind::kInvalidInput) {
        status = Status::Invalid(info.status().message() + "; remove it: mpi_reshard writes it as a file and no " +
                                 "flag replaces something else in its place");
      }
    }
  }
  if (comm.rank() == 0 && status.ok()) {
    // A shard's name taken by a directory would fail its write after others
    // were written; found here, nothing is.
    for (const auto& d : plan.destinations) {
      auto taken = store.directory_exists(d.key);
      if (taken.ok() && *taken) {
        status = Status::Invalid("destination shard " + store.url(d.key) +
                                 " is a directory, not a file; remove it or choose another --dst");
        break;
      }
    }
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, status));
  if (comm.rank() == 0) {
    auto found = read_earlier_run(store, dir);
    const bool start_over = config.restart || config.overwrite;
    if (!found.ok()) {
      status = start_over ? Status::Ok() : found.status().with_context("pass --restart to discard it");
      found = Findings{};
    }
    const auto& manifest = found->manifest;
    const auto& success = found->success;
    std::string kind = "fresh";
    if (success && success->job_id == fresh.job_id) {
      kind = "published";
      decision["success"] = json::parse(success->encode());
      // The run that published could not commit its manifest afterwards
      // (its disk filled, say): this run holds the claim, so it finishes that.
      const bool unfinished = manifest && manifest->job_id == fresh.job_id && !manifest->committed;
      if (unfinished && check == StartCheck::kFull) {
        CommitLog log(store, dir, *manifest);
        status = log.mark_committed().with_context("finishing the manifest of the published dataset " +
                                                   store.url(success_key(dir)));
      }
      decision["finished_manifest"] = unfinished;
    } else if (manifest && manifest->job_id == fresh.job_id) {
      kind = "resume";
    } else if (!start_over && manifest) {
      status = Status::Invalid(why_different(*manifest, fresh, store, dir));
    } else if (!start_over && success) {
      status = Status::Invalid("destination " + store.url(success_key(dir)) +
                               " marks a published dataset of another job; pass --overwrite to replace it");
    } else if (!start_over && !plan.existing_destination_keys.empty()) {
      status = Status::Invalid("destination already holds " + std::to_string(plan.existing_destination_keys.size()) +
                               " shard file(s) such as " + store.url(plan.existing_destination_keys.front()) +
                               "; pass --overwrite to replace them");
    }
    decision["unpublish_first"] = status.ok() && kind == "fresh" && success.has_value();
    if (status.ok() && check == StartCheck::kFull) {
      std::uint64_t removed = 0;
      for (const std::string& d : {plan.written_key_prefix, dir + "_reshard/"}) {
        auto n = store.clean_up_incomplete_writes(d);
        if (!n.ok()) {
          status = n.status().with_context("removing temp files of an interrupted run");
          break;
        }
        removed += *n;
      }
      decision["temporaries_removed"] = removed;
    }
    decision["kind"] = kind;
    if (kind == "resume") decision["manifest"] = json::parse(manifest->encode());
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, status));
  if (check == StartCheck::kRefusalsOnly) return start;
  const auto all = comm.allgather(comm.rank() == 0 ? json_bytes(decision) : Bytes());
  decision = parse_json_bytes(all[0]);
  start.temporaries_removed = decision["temporaries_removed"].get<std::uint64_t>();
  start.unpublish_first = decision["unpublish_first"].get<bool>();
  start.keep.assign(plan.destinations.size(), false);
  const std::string kind = decision["kind"].get<std::string>();
  if (kind == "published") {
    start.kind = StartingPoint::Kind::kAlreadyPublished;
    start.success = *SuccessMarker::decode(json_bytes(decision["success"]));
    start.finished_manifest = decision["finished_manifest"].get<bool>();
    start.manifest = fresh;
    return start;
  }
  if (kind == "fresh") {
    start.manifest = fresh;
    return start;
  }
  start.kind = StartingPoint::Kind::kResume;
  RESHARD_ASSIGN_OR_RETURN(start.manifest, Manifest::decode(json_bytes(decision["manifest"])));
  if (!start.manifest.source_fingerprint || start.manifest.shards.size() != plan.destinations.size()) {
    return start;  // nothing trustworthy was recorded: redo everything
  }
  // Owners re-check the shards recorded as written; a missing, truncated or
  // altered file is simply written again.
  json kept = json::array();
  for (const auto& record : start.manifest.shards) {
    if (record.state != ShardState::kWritten) continue;
    if (plan.owner.owner_of(record.index) != comm.rank()) continue;
    auto info = store.stat(record.key);
    if (!info.ok() || !*info || (*info)->size != record.bytes) continue;
    auto bytes = store.read(record.key, 0, record.bytes);
    if (bytes.ok() && crc32c(*bytes) == record.crc32c) kept.push_back(record.index);
  }
  for (const auto& bytes : comm.allgather(json_bytes(kept))) {
    for (const auto& index : parse_json_bytes(bytes)) start.keep[index.get<std::size_t>()] = true;
  }
  for (auto& record : start.manifest.shards) {
    if (!start.keep[record.index]) record = ShardRecord{record.index, record.key, ShardState::kPending, 0, 0, 0, {}};
  }
  return start;
}

CommitLog::CommitLog(Store& store, std::string destination_directory, Manifest manifest)
    : store_(store), directory_(std::move(destination_directory)), manifest_(std::move(manifest)) {}

Status CommitLog::begin(bool unpublish_first) {
  if (unpublish_first) {
    RESHARD_RETURN_IF_ERROR(store_.remove(success_key(directory_)).with_context("unpublishing the earlier dataset"));
  }
  // Segments already there (an earlier run's, folded into a resumed
  // manifest or not ours) are numbered below where this run starts.
  RESHARD_ASSIGN_OR_RETURN(auto segments, list_journal(store_, directory_));
  if (!segments.empty()) manifest_.journal_from = std::max(manifest_.journal_from, segments.back().first + 1);
  return save();
}

Status CommitLog::save() {
  manifest_.journal_from = next_segment();
  segments_written_ = 0;
  RESHARD_RETURN_IF_ERROR(write_control_file(store_, directory_, manifest_key(directory_), manifest_.encode())
                              .with_context("writing the manifest"));
  // Everything the journal held is in the manifest now; segments below
  // journal_from are skipped by readers, so removing them can wait for a
  // crash-free moment and fail harmlessly.
  auto segments = list_journal(store_, directory_);
  if (segments.ok()) {
    for (const auto& [number, key] : *segments) {
      if (number < manifest_.journal_from) (void)store_.remove(key);
    }
  }
  (void)store_.remove_empty_directory(journal_directory(directory_));
  return Status::Ok();
}

Status CommitLog::record_round(Comm& comm, const std::vector<WrittenShard>& written_this_round) {
  json mine = json::array();
  for (const auto& w : written_this_round) {
    mine.push_back({w.index, w.nnz, w.bytes, w.crc32c, w.fingerprint.count, w.fingerprint.sum});
  }
  const auto all = comm.allgather(json_bytes(mine));
  Status status;
  if (comm.rank() == 0) {
    // One journal segment per round, O(shards written): rewriting the whole
    // manifest every round made a job quadratic in its shard count.
    JournalSegment segment;
    segment.job_id = manifest_.job_id;
    segment.number = next_segment();
    for (const auto& bytes : all) {
      for (const auto& r : parse_json_bytes(bytes)) {
        ShardRecord record;
        record.index = r[0].get<std::uint64_t>();
        record.state = ShardState::kWritten;
        record.nnz = r[1].get<std::uint64_t>();
        record.bytes = r[2].get<std::uint64_t>();
        record.crc32c = r[3].get<std::uint32_t>();
        record.fingerprint = {r[4].get<std::uint64_t>(), r[5].get<std::uint64_t>()};
        segment.written.push_back(std::move(record));
      }
    }
    if (!segment.written.empty()) {
      status = write_control_file(store_, directory_, journal_segment_key(directory_, segment.number), segment.encode())
                   .with_context("writing the manifest journal");
      if (status.ok()) {
        status = segment.apply_to(manifest_);
        ++segments_written_;
      }
    }
  }
  return agree(comm, status);
}

void CommitLog::forget(const std::vector<std::uint64_t>& shards) {
  for (auto index : shards) {
    ShardRecord& record = manifest_.shards.at(index);
    record = ShardRecord{record.index, record.key, ShardState::kPending, 0, 0, 0, {}};
  }
}

Status CommitLog::publish(const SuccessMarker& success) {
  return store_.write_atomic(success_key(directory_), success.encode()).with_context("publishing _SUCCESS");
}

Status CommitLog::mark_committed() {
  manifest_.committed = true;
  if (fault::active("manifest-write-fails-after-publish")) {
    return Status::Storage("writing the manifest " + store_.url(manifest_key(directory_)) +
                           ": No space left on device (injected by RESHARD_FAULT)");
  }
  return save();
}

}  // namespace reshard

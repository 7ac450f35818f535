// Stage 7, commit: the exactly-once protocol around the write stage
// (docs/commit-protocol.md). Rank 0 owns the manifest; every decision is
// broadcast so all ranks act alike.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "reshard/comm.hpp"
#include "reshard/manifest.hpp"
#include "reshard/pipeline/job_config.hpp"
#include "reshard/pipeline/plan.hpp"
#include "reshard/pipeline/write.hpp"
#include "reshard/store/store.hpp"

namespace reshard {

// The manifest of `directory` with its journal segments folded in, or
// nullopt when there is none.
Result<std::optional<Manifest>> load_manifest(Store& store, const std::string& directory);

// The manifest this job would start from if nothing were there yet.
Manifest fresh_manifest(const Plan& plan, const JobConfig& config, const Store& source_store);

struct StartingPoint {
  enum class Kind { kFresh, kResume, kAlreadyPublished };
  Kind kind = Kind::kFresh;
  Manifest manifest;
  std::vector<bool> keep;  // per destination shard: written earlier and intact
  std::optional<SuccessMarker> success;
  // Already published, and this run committed the manifest the publishing
  // run could not (disk full after _SUCCESS, say).
  bool finished_manifest = false;
  std::uint64_t temporaries_removed = 0;
  // Starting over on a published dataset: _SUCCESS goes before the new
  // manifest is written (CommitLog::begin).
  bool unpublish_first = false;
};

// kRefusalsOnly reads and refuses but writes nothing and returns an empty
// StartingPoint: run before the destination claim, so a job refused for
// another job's data leaves no claim behind.
enum class StartCheck { kFull, kRefusalsOnly };

// Reads what an earlier run left, decides fresh / resume / already
// published, or refuses (exit 2) a destination that belongs to another job.
// On resume, the recorded shards are re-checked (size and CRC-32C) by their
// owners; only intact ones are kept. Removes temp files of interrupted
// writes. Collective.
Result<StartingPoint> find_starting_point(Comm& comm, Store& store, const Plan& plan, const JobConfig& config,
                                          const Manifest& fresh, StartCheck check = StartCheck::kFull);

// Rank 0's view of the manifest during the write stage. The manifest is
// written whole at begin, after a failed verify and at publish; in between,
// each round's records are appended as one journal segment, so a round costs
// what it wrote, not the shard count (docs/commit-protocol.md, "Journal").
class CommitLog {
 public:
  CommitLog(Store& store, std::string destination_directory, Manifest manifest);
  Manifest& manifest() { return manifest_; }
  // Writes the whole manifest (the journal folded in) and removes the
  // segments it now holds.
  Status save();
  // The first save of this run: unpublishes an earlier dataset if asked to.
  Status begin(bool unpublish_first);
  // Collective: every rank's records of this round reach rank 0, which saves.
  Status record_round(Comm& comm, const std::vector<WrittenShard>& written_this_round);
  // Marks shards written in this run pending again (after a failed verify).
  void forget(const std::vector<std::uint64_t>& shards);
  // Writes _SUCCESS: from here on the job has succeeded, whatever follows.
  Status publish(const SuccessMarker& success);
  // After publish: the manifest marked committed, its journal folded in. A
  // failure here leaves a published dataset and a manifest a rerun finishes
  // (find_starting_point), so callers report it as a warning.
  Status mark_committed();

 private:
  std::uint64_t next_segment() const { return manifest_.journal_from + segments_written_; }

  Store& store_;
  std::string directory_;
  Manifest manifest_;
  // Segments this log wrote since the manifest was last written whole.
  std::uint64_t segments_written_ = 0;
};

}  // namespace reshard

// The destination claim: one job owns a destination from before its first
// write until it ends, so two jobs started together cannot mix their shards
// (docs/commit-protocol.md, "The destination claim"). Rank 0 holds it.
//
// Claims are numbered objects `<dst>_reshard/claims/<generation>.json`,
// created with Store::create_exclusive and never deleted: the highest
// generation is the current claim. A job takes generation g+1 only when
// generation g is released, lapsed (not renewed for a lease) or held by a
// process on this host that no longer exists; two takers racing for g+1
// cannot both create it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "reshard/store/store.hpp"

namespace reshard {

struct ClaimTiming {
  double lease_seconds = 60;  // a claim not renewed for this long has lapsed
  double renew_seconds = 10;  // how often the holder renews it
};

// Who holds a claim, as written in its object.
struct ClaimHolder {
  std::string job_id;
  std::string host;
  std::string boot_id;  // /proc/sys/kernel/random/boot_id: tells a reboot from a live host
  std::int64_t pid = 0;
  std::string process_start;    // field 22 of /proc/<pid>/stat: tells a reused pid apart
  std::int64_t parent_pid = 0;  // mpirun's or srun's process, for a rank 0 they launched
  double started_at = 0;        // Unix seconds
  double renewed_at = 0;
  bool released = false;
  std::string token;  // random: tells this holder's object from any other

  std::string encode() const;
  static Result<ClaimHolder> decode(ByteView bytes);
  // This process, for `job_id`.
  static ClaimHolder of_this_process(const std::string& job_id);
};

// Why a holder no longer keeps others out, or "" while it does.
// `now` is Unix seconds.
std::string why_claim_is_free(const ClaimHolder& holder, double now, const ClaimTiming& timing);

class DestinationClaim {
 public:
  // Takes the claim on `directory` of `store` for `job_id`, or refuses
  // (exit 2) naming the job that holds it.
  static Result<std::unique_ptr<DestinationClaim>> take(Store& store, const std::string& directory,
                                                        const std::string& job_id, const ClaimTiming& timing = {});
  DestinationClaim(const DestinationClaim&) = delete;
  DestinationClaim& operator=(const DestinationClaim&) = delete;
  // Stops renewing and releases the claim (best effort: a claim that cannot
  // be released lapses after its lease). A job that wrote nothing else
  // withdraws it instead: the claim object is deleted, with the directories
  // taking it created, so a refused job leaves the destination as it was.
  // Deleting a held claim is safe: whoever saw it was refused, whoever
  // comes later sees the state before it.
  ~DestinationClaim();

  // Called before the job's first write to the destination besides the
  // claim: from then on the claim is released, not withdrawn.
  void mark_destination_written() { destination_written_ = true; }

  // An error when another job may have taken the destination over: a higher
  // generation exists, or renewal has failed for longer than the lease.
  Status still_held();
  std::uint64_t generation() const { return generation_; }
  const std::string& key() const { return key_; }

 private:
  DestinationClaim(Store& store, std::string directory, std::uint64_t generation, ClaimHolder holder,
                   ClaimTiming timing, bool directory_existed);
  void withdraw();
  void renew_until_stopped();
  // Why a higher generation means this claim is lost, or "" when none exists.
  Result<std::string> find_successor();

  Store& store_;
  std::string directory_;
  std::uint64_t generation_;
  std::string key_;
  ClaimHolder holder_;
  ClaimTiming timing_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  double last_renewed_ = 0;  // Unix seconds of the last renewal that succeeded
  std::string lost_;         // why the claim was lost, once it was
  bool directory_existed_;
  bool destination_written_ = false;
  std::thread renewer_;
};

// The claims directory of a destination directory.
std::string claims_directory(const std::string& destination_directory);

}  // namespace reshard

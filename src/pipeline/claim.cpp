#include "reshard/pipeline/claim.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "reshard/manifest.hpp"

namespace reshard {
namespace {

using nlohmann::json;

double unix_now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

std::string first_line_of(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

// What /proc/<pid>/stat says of a process: its parent and its start time
// (field 22, clock ticks since boot). Empty when it does not exist or has
// exited (a zombie, state Z or X, not yet reaped: mpirun may return before
// that). The command name in field 2 may hold spaces and parentheses, so
// fields are counted from the last ')'.
struct ProcessState {
  std::string parent;
  std::string start;
};

ProcessState process_state_of(std::int64_t pid) {
  const std::string stat = first_line_of("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  ProcessState state;
  for (int index = 3; index <= 22 && fields >> field; ++index) {
    if (index == 3 && (field == "Z" || field == "X")) return {};
    if (index == 4) state.parent = field;
    if (index == 22) state.start = field;
  }
  return state;
}

std::string utc_text(double unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

// The generations present, from the keys of the claims directory; temp
// files and anything else are ignored.
std::vector<std::uint64_t> generations_in(const std::vector<std::string>& keys, const std::string& directory) {
  std::vector<std::uint64_t> generations;
  for (const auto& key : keys) {
    if (key.compare(0, directory.size(), directory) != 0) continue;
    if (auto generation = sequence_number(key.substr(directory.size()))) generations.push_back(*generation);
  }
  std::sort(generations.begin(), generations.end());
  return generations;
}

std::string seconds_text(double seconds) { return std::to_string(static_cast<long long>(std::llround(seconds))); }

}  // namespace

std::string claims_directory(const std::string& destination_directory) {
  return destination_directory + "_reshard/claims/";
}

std::string ClaimHolder::encode() const {
  const json j = {{"job_id", job_id},
                  {"host", host},
                  {"boot_id", boot_id},
                  {"pid", pid},
                  {"process_start", process_start},
                  {"parent_pid", parent_pid},
                  {"started_at", started_at},
                  {"renewed_at", renewed_at},
                  {"released", released},
                  {"token", token}};
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<ClaimHolder> ClaimHolder::decode(ByteView bytes) {
  try {
    const json j = json::parse(bytes.begin(), bytes.end());
    ClaimHolder h;
    h.job_id = j.at("job_id").get<std::string>();
    h.host = j.at("host").get<std::string>();
    h.boot_id = j.at("boot_id").get<std::string>();
    h.pid = j.at("pid").get<std::int64_t>();
    h.process_start = j.at("process_start").get<std::string>();
    h.parent_pid = j.value("parent_pid", std::int64_t{0});
    h.started_at = j.at("started_at").get<double>();
    h.renewed_at = j.at("renewed_at").get<double>();
    h.released = j.at("released").get<bool>();
    h.token = j.at("token").get<std::string>();
    return h;
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("not a destination claim: ") + e.what());
  }
}

ClaimHolder ClaimHolder::of_this_process(const std::string& job_id) {
  ClaimHolder h;
  h.job_id = job_id;
  h.host = this_host();
  h.boot_id = first_line_of("/proc/sys/kernel/random/boot_id");
  h.pid = ::getpid();
  const ProcessState state = process_state_of(h.pid);
  h.process_start = state.start;
  h.parent_pid = state.parent.empty() ? 0 : std::stoll(state.parent);
  h.started_at = unix_now();
  h.renewed_at = h.started_at;
  std::random_device random;
  h.token = std::to_string(random()) + std::to_string(random()) + std::to_string(h.pid);
  return h;
}

std::string why_claim_is_free(const ClaimHolder& holder, double now, const ClaimTiming& timing) {
  if (holder.released) return "released";
  if (now - holder.renewed_at > timing.lease_seconds) {
    return "lapsed: not renewed for " + seconds_text(now - holder.renewed_at) + " s";
  }
  // A crash on this host is seen at once, without waiting for the lease.
  const ClaimHolder me = ClaimHolder::of_this_process("");
  if (holder.host != me.host || holder.boot_id.empty() || holder.process_start.empty()) return "";
  if (holder.boot_id != me.boot_id) return "this host has rebooted since";
  const ProcessState state = process_state_of(holder.pid);
  if (state.start != holder.process_start) {
    return "its process " + std::to_string(holder.pid) + " on this host has ended";
  }
  // Killed with its launcher (a lost allocation, `kill` of mpirun's group),
  // a rank can take a moment to exit; once its parent is gone it cannot
  // finish a collective, let alone publish (it would find a newer claim).
  if (holder.parent_pid != 0 && state.parent != std::to_string(holder.parent_pid)) {
    return "its process " + std::to_string(holder.pid) + " on this host lost its launcher and is ending";
  }
  return "";
}

Result<std::unique_ptr<DestinationClaim>> DestinationClaim::take(Store& store, const std::string& directory,
                                                                 const std::string& job_id, const ClaimTiming& timing) {
  const std::string claims = claims_directory(directory);
  // The folder the control files go in ("out/a.h5ad." is a prefix in out/).
  RESHARD_ASSIGN_OR_RETURN(const bool directory_existed,
                           store.directory_exists(directory.substr(0, directory.rfind('/') + 1)));
  // Each lost race means another taker created the generation we wanted;
  // a few rounds settle any realistic contention.
  constexpr int kAttempts = 16;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    RESHARD_ASSIGN_OR_RETURN(auto keys, store.list(claims));
    const auto generations = generations_in(keys, claims);
    std::uint64_t next = 0;
    if (!generations.empty()) {
      const std::uint64_t current = generations.back();
      const std::string current_key = claims + sequence_name(current);
      auto bytes = store.read_all(current_key);
      if (!bytes.ok()) return bytes.status().with_context("reading the destination claim " + store.url(current_key));
      auto holder = ClaimHolder::decode(*bytes);
      if (!holder.ok()) {
        return holder.status().with_context("reading the destination claim " + store.url(current_key) +
                                            " (remove it if no job is writing this destination)");
      }
      const double now = unix_now();
      if (why_claim_is_free(*holder, now, timing).empty()) {
        return Status::Invalid(
            "destination " + store.url(directory) + " is claimed by job " + holder->job_id + " on host " +
            holder->host + " (pid " + std::to_string(holder->pid) + "), started " + utc_text(holder->started_at) +
            ", renewed " + seconds_text(now - holder->renewed_at) + " s ago (" + store.url(current_key) +
            "); two jobs must not write one destination: wait for it to end. A claim whose job died lapses " +
            seconds_text(timing.lease_seconds) + " s after its last renewal, or at once when seen from its own host");
      }
      next = current + 1;
    }
    ClaimHolder mine = ClaimHolder::of_this_process(job_id);
    const std::string key = claims + sequence_name(next);
    const std::string text = mine.encode();
    RESHARD_ASSIGN_OR_RETURN(
        bool created,
        store.create_exclusive(key, ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())));
    if (created) {
      return std::unique_ptr<DestinationClaim>(
          new DestinationClaim(store, directory, next, mine, timing, directory_existed));
    }
  }
  return Status::Storage("taking the destination claim in " + store.url(claims) + ": lost the race " +
                         std::to_string(kAttempts) + " times to other jobs");
}

DestinationClaim::DestinationClaim(Store& store, std::string directory, std::uint64_t generation, ClaimHolder holder,
                                   ClaimTiming timing, bool directory_existed)
    : store_(store),
      directory_(std::move(directory)),
      generation_(generation),
      key_(claims_directory(directory_) + sequence_name(generation)),
      holder_(std::move(holder)),
      timing_(timing),
      last_renewed_(holder_.renewed_at),
      directory_existed_(directory_existed) {
  renewer_ = std::thread([this] { renew_until_stopped(); });
}

DestinationClaim::~DestinationClaim() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  renewer_.join();
  if (!lost_.empty()) return;  // someone else's now: not ours to release
  if (!destination_written_) {
    withdraw();
    return;
  }
  holder_.released = true;
  holder_.renewed_at = unix_now();
  const std::string text = holder_.encode();
  (void)store_.write_atomic(key_, ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

void DestinationClaim::withdraw() {
  if (!store_.remove(key_).ok()) return;
  const std::string reshard_dir = directory_ + "_reshard/";
  (void)store_.remove_empty_directory(claims_directory(directory_));
  (void)store_.remove_empty_directory(reshard_dir);
  if (!directory_existed_) (void)store_.remove_empty_directory(directory_.substr(0, directory_.rfind('/') + 1));
}

void DestinationClaim::renew_until_stopped() {
  std::unique_lock lock(mutex_);
  while (!stopping_ && lost_.empty()) {
    wake_.wait_for(lock, std::chrono::duration<double>(timing_.renew_seconds), [this] { return stopping_; });
    if (stopping_) break;
    ClaimHolder renewed = holder_;
    lock.unlock();
    auto successor = find_successor();
    Status written = Status::Ok();
    if (successor.ok() && successor->empty()) {
      renewed.renewed_at = unix_now();
      const std::string text = renewed.encode();
      written = store_.write_atomic(key_, ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
    }
    lock.lock();
    if (successor.ok() && !successor->empty()) {
      lost_ = *successor;
    } else if (successor.ok() && written.ok()) {
      holder_.renewed_at = renewed.renewed_at;
      last_renewed_ = renewed.renewed_at;
    }
  }
}

Result<std::string> DestinationClaim::find_successor() {
  const std::string claims = claims_directory(directory_);
  RESHARD_ASSIGN_OR_RETURN(auto keys, store_.list(claims));
  const auto generations = generations_in(keys, claims);
  if (generations.empty() || generations.back() <= generation_) return std::string();
  return "the destination claim " + store_.url(key_) + " was taken over by " +
         store_.url(claims + sequence_name(generations.back())) +
         " while this job ran (it had not renewed its claim for a lease); nothing of this job was published";
}

Status DestinationClaim::still_held() {
  auto successor = find_successor();
  std::lock_guard lock(mutex_);
  if (successor.ok() && !successor->empty()) lost_ = *successor;
  if (!lost_.empty()) return Status::Storage(lost_);
  RESHARD_RETURN_IF_ERROR(successor.status().with_context("checking the destination claim"));
  const double since = unix_now() - last_renewed_;
  if (since > timing_.lease_seconds) {
    return Status::Storage("the destination claim " + store_.url(key_) + " was not renewed for " + seconds_text(since) +
                           " s, longer than its lease; another job may have taken over");
  }
  return Status::Ok();
}

}  // namespace reshard

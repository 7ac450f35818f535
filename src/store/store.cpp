#include "reshard/store/store.hpp"

#include <map>
#include <mutex>

#include "reshard/store/posix_store.hpp"
#include "reshard/store/s3_store.hpp"

namespace reshard {
namespace {

// The built-in drivers; more can be added with register_store().
std::map<std::string, StoreFactory>& registry() {
  static std::map<std::string, StoreFactory> factories = {
      {"s3", open_s3_store},
      {"gs", open_s3_store},
  };
  return factories;
}
std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace

Result<bool> Store::copy_from(Store& /*source*/, const std::string& /*source_key*/, const ObjectInfo& /*source_info*/,
                              const std::string& /*key*/) {
  return false;
}

Status Store::move_into_place(const std::string& temp_key, const std::string& key) {
  return Status::Internal("moving " + temp_key + " into place: " + url(key) + " is not on a POSIX filesystem");
}

Status Store::write_atomic_streamed(const std::string& key, std::uint64_t expected_bytes,
                                    const std::function<Status(const ByteSink&)>& produce) {
  Bytes joined;
  joined.reserve(expected_bytes);
  RESHARD_RETURN_IF_ERROR(produce(appending_to(joined)));
  return write_atomic(key, joined);
}

Result<Bytes> Store::read_all(const std::string& key) {
  RESHARD_ASSIGN_OR_RETURN(auto info, stat(key));
  if (!info) return Status::Invalid("not found");
  return read(key, 0, info->size);
}

void register_store(const std::string& scheme, StoreFactory factory) {
  std::lock_guard lock(registry_mutex());
  registry()[scheme] = std::move(factory);
}

Result<StoreAndKey> open_store(const std::string& url, const StoreOptions& options) {
  const auto sep = url.find("://");
  if (sep == std::string::npos) return StoreAndKey{make_posix_store(), url};
  const std::string scheme = url.substr(0, sep);
  if (scheme == "file") return StoreAndKey{make_posix_store(), url.substr(sep + 3)};
  std::lock_guard lock(registry_mutex());
  auto it = registry().find(scheme);
  if (it == registry().end()) return Status::Invalid("no storage driver for '" + scheme + "://' URLs");
  return it->second(url, options);
}

}  // namespace reshard

// The one narrow interface every storage backend implements. Drivers live in
// one file each and register under a URL scheme; the pipeline, the formats
// and the manifest only ever see this interface.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "reshard/bytes.hpp"
#include "reshard/status.hpp"

namespace reshard {

struct ObjectInfo {
  std::uint64_t size = 0;
  // Changes whenever the object's content may have changed (mtime and size on
  // POSIX, ETag or generation on object stores).
  std::string version;
};

class Store {
 public:
  virtual ~Store() = default;

  // The user-facing spelling of a key, for messages ("s3://b/k", "data/k").
  virtual std::string url(const std::string& key) const = 0;

  // A filesystem path that libraries may open themselves (HDF5 hyperslab
  // reads) and where small ranged reads are cheap; nullopt for object stores.
  virtual std::optional<std::string> local_path(const std::string& /*key*/) const { return std::nullopt; }

  // nullopt when the object does not exist.
  virtual Result<std::optional<ObjectInfo>> stat(const std::string& key) = 0;
  virtual Result<Bytes> read(const std::string& key, std::uint64_t offset, std::uint64_t length) = 0;
  // Readers see either the old object or the whole new one, never a part.
  virtual Status write_atomic(const std::string& key, ByteView data) = 0;
  // The same for an object `produce` hands to its sink in order, as an
  // encoder makes it (called once); `expected_bytes` is an estimate of its
  // size. POSIX
  // writes the temp file as the bytes come; the default collects them and
  // calls write_atomic.
  virtual Status write_atomic_streamed(const std::string& key, std::uint64_t expected_bytes,
                                       const std::function<Status(const ByteSink&)>& produce);
  // Creates `key` with `data` only if no object of that name exists, as one
  // atomic step that two concurrent callers cannot both win: true when this
  // call created it, false when the name was taken. The building block of
  // the destination claim (src/pipeline/claim.cpp).
  virtual Result<bool> create_exclusive(const std::string& key, ByteView data) = 0;
  // Keys of the objects directly inside `directory` (a key prefix ending in
  // '/', or "" for the current directory), in ascending order.
  virtual Result<std::vector<std::string>> list(const std::string& directory) = 0;
  // Removing a missing object succeeds.
  virtual Status remove(const std::string& key) = 0;
  // Puts in place a file that something other than the store wrote beside
  // `key` (parallel HDF5 writes a one-file destination itself), as the
  // store's atomic writes do: on POSIX, sync it, rename it over `key`, sync
  // the directory. Object stores have no such file: an internal error.
  virtual Status move_into_place(const std::string& temp_key, const std::string& key);
  // POSIX: whether `directory` exists as a directory, and rmdir of it when
  // empty (a missing or non-empty one is left as it is). Object stores have
  // no directories: always false, and nothing to remove.
  virtual Result<bool> directory_exists(const std::string& directory) = 0;
  virtual Status remove_empty_directory(const std::string& directory) = 0;
  // Removes what interrupted atomic writes of keys starting with `prefix`
  // left (temp files on POSIX, multipart uploads on S3): a directory ("d/")
  // or one key ("d/a.h5ad"). Returns how many it removed.
  virtual Result<std::uint64_t> clean_up_incomplete_writes(const std::string& prefix) = 0;
  // A normalized, absolute form of a directory key, so two spellings of one
  // place compare equal (used to refuse a destination inside the source).
  virtual std::string canonical_directory(const std::string& directory) const = 0;

  // Copies `source_key` of `source` to `key` in this store, atomically,
  // without the bytes passing through this process where the two stores
  // allow it: copy_file_range (or a reflink) between POSIX paths, never a
  // hard link, since the source must stay independent; CopyObject within one
  // S3 endpoint. `source_info` is what the caller read; a source that has
  // changed since is an error, not a copy. Returns false, having done
  // nothing, when this pair of stores cannot copy that way.
  virtual Result<bool> copy_from(Store& source, const std::string& source_key, const ObjectInfo& source_info,
                                 const std::string& key);

  // Reads a whole object.
  Result<Bytes> read_all(const std::string& key);
};

// A store and the key inside it that a user's URL or path names.
struct StoreAndKey {
  std::shared_ptr<Store> store;
  std::string key;
};

// Knobs every driver may use; POSIX ignores them.
struct StoreOptions {
  int max_concurrency = 32;  // in-flight requests per rank
};

using StoreFactory = std::function<Result<StoreAndKey>(const std::string& url, const StoreOptions& options)>;

// Drivers register at start-up under a scheme ("file", "s3", ...).
void register_store(const std::string& scheme, StoreFactory factory);

// Chooses the driver by the URL's scheme; plain paths are POSIX.
Result<StoreAndKey> open_store(const std::string& url, const StoreOptions& options = {});

}  // namespace reshard

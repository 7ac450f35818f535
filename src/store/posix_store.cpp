#include "reshard/store/posix_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>

namespace reshard {
namespace {

namespace fs = std::filesystem;

Status errno_status(const std::string& action, const std::string& path, int err) {
  const std::string text = action + " " + path + ": " + std::strerror(err);
  // Missing files and permission problems are the user's input to fix; the
  // rest (EIO, ENOSPC, ...) are storage failures.
  if (err == ENOENT || err == ENOTDIR || err == EACCES || err == EPERM || err == EISDIR) return Status::Invalid(text);
  return Status::Storage(text);
}

// Closes a file descriptor on every path out of a function.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status fsync_directory(const std::string& dir) {
  FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return errno_status("opening directory", dir, errno);
  if (::fsync(fd.get()) != 0) return errno_status("syncing directory", dir, errno);
  return Status::Ok();
}

// rename(2) of a synced temp file over `key`, then a sync of the directory,
// so the new name survives a crash.
Status rename_into_place(const std::string& temp, const std::string& key) {
  if (::rename(temp.c_str(), key.c_str()) != 0) {
    const int err = errno;
    // The planner refuses a destination name taken by a directory; one
    // that appears while the job writes is the storage's failure.
    if (err == EISDIR) return Status::Storage("renaming into place " + key + ": " + std::strerror(err));
    return errno_status("renaming into place", key, err);
  }
  return fsync_directory(parent_of(key));
}

constexpr const char* kTempMarker = ".tmp.";

std::string temp_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  static const std::uint64_t salt = std::random_device{}();
  return kTempMarker + std::to_string(::getpid()) + "." + std::to_string(salt % 1000000) + "." +
         std::to_string(counter++);
}

Status write_all(int fd, const std::string& path, const std::uint8_t* data, std::uint64_t size) {
  std::uint64_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("writing", path, errno);
    }
    done += static_cast<std::uint64_t>(n);
  }
  return Status::Ok();
}

bool direct_writes_wanted() {
  static const bool wanted = [] {
    const char* setting = std::getenv("RESHARD_DIRECT_WRITES");
    return setting == nullptr || std::strcmp(setting, "0") != 0;
  }();
  return wanted;
}

// A large file is written with O_DIRECT, through a reused aligned buffer:
// buffered, every byte is first copied into page-cache pages the kernel
// must find and zero, which measured 250-380 MB/s on the bench machine
// (strace of a 715 MB write()) against ~1 GB/s for the disk itself, and the
// job syncs the file right after anyway. The last block is padded to the
// alignment and the file truncated back. A filesystem that refuses O_DIRECT
// (EINVAL, at fcntl or at a write) gets the rest of the file buffered.
constexpr std::uint64_t kDirectWriteMinBytes = std::uint64_t{8} << 20;
constexpr std::size_t kDirectWriteAlignment = 4096;
constexpr std::size_t kDirectWriteChunkBytes = std::size_t{8} << 20;

struct AlignedChunk {
  AlignedChunk() {
    if (posix_memalign(&data, kDirectWriteAlignment, kDirectWriteChunkBytes) != 0) data = nullptr;
  }
  ~AlignedChunk() { std::free(data); }
  AlignedChunk(const AlignedChunk&) = delete;
  AlignedChunk& operator=(const AlignedChunk&) = delete;
  void* data = nullptr;
};

// Appends bytes to a temp file as they come: straight through write(2), or,
// for a large file, gathered into the aligned buffer and written with
// O_DIRECT a buffer at a time.
class TempFileAppender {
 public:
  TempFileAppender(int fd, const std::string& temp, std::uint64_t expected_bytes) : fd_(fd), temp_(temp) {
    if (expected_bytes < kDirectWriteMinBytes || !direct_writes_wanted()) return;
    // The constructing thread's buffer, kept across files: a fresh one per
    // file would cost the page zeroing this path avoids.
    thread_local AlignedChunk chunk;
    flags_ = ::fcntl(fd_, F_GETFL);
    if (chunk.data == nullptr || flags_ < 0 || ::fcntl(fd_, F_SETFL, flags_ | O_DIRECT) != 0) return;
    buffer_ = static_cast<std::uint8_t*>(chunk.data);
    direct_ = true;
  }

  Status append(ByteView bytes) {
    total_ += bytes.size();
    if (buffer_ == nullptr) return write_all(fd_, temp_, bytes.data(), bytes.size());
    std::size_t taken = 0;
    while (taken < bytes.size()) {
      const std::size_t n = std::min(bytes.size() - taken, kDirectWriteChunkBytes - filled_);
      std::memcpy(buffer_ + filled_, bytes.data() + taken, n);
      filled_ += n;
      taken += n;
      if (filled_ == kDirectWriteChunkBytes) {
        RESHARD_RETURN_IF_ERROR(flush(filled_));
        filled_ = 0;
      }
    }
    return Status::Ok();
  }

  // The last block is padded to the alignment and the file cut back.
  Status finish() {
    if (filled_ > 0) {
      const std::size_t padded =
          direct_ ? (filled_ + kDirectWriteAlignment - 1) / kDirectWriteAlignment * kDirectWriteAlignment : filled_;
      std::memset(buffer_ + filled_, 0, padded - filled_);
      RESHARD_RETURN_IF_ERROR(flush(padded));
      if (padded != filled_ && ::ftruncate(fd_, static_cast<off_t>(total_)) != 0) {
        return errno_status("writing", temp_, errno);
      }
      filled_ = 0;
    }
    if (direct_ && ::fcntl(fd_, F_SETFL, flags_) != 0) return errno_status("writing", temp_, errno);
    direct_ = false;
    return Status::Ok();
  }

 private:
  Status flush(std::size_t bytes) {
    std::size_t done = 0;
    while (done < bytes) {
      const ssize_t n = ::write(fd_, buffer_ + done, bytes - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EINVAL && direct_) {
          direct_ = false;
          if (::fcntl(fd_, F_SETFL, flags_) != 0) return errno_status("writing", temp_, errno);
          continue;
        }
        return errno_status("writing", temp_, errno);
      }
      done += static_cast<std::size_t>(n);
    }
    return Status::Ok();
  }

  int fd_;
  const std::string& temp_;
  std::uint8_t* buffer_ = nullptr;
  std::size_t filled_ = 0;
  std::uint64_t total_ = 0;
  int flags_ = 0;
  bool direct_ = false;
};

// What put_atomically fills a temp file with: what `produce` streams.
template <typename Produce>
auto write_streamed(std::uint64_t expected_bytes, Produce produce) {
  return [expected_bytes, produce = std::move(produce)](int fd, const std::string& temp) -> Status {
    TempFileAppender appender(fd, temp, expected_bytes);
    RESHARD_RETURN_IF_ERROR(produce([&appender](ByteView bytes) { return appender.append(bytes); }));
    return appender.finish();
  };
}

// The same for bytes already whole in memory: a stream of one piece.
auto write_bytes(ByteView data) {
  return write_streamed(data.size(), [data](const ByteSink& sink) { return sink(data); });
}

class PosixStore final : public Store {
 public:
  std::string url(const std::string& key) const override { return key; }
  std::optional<std::string> local_path(const std::string& key) const override { return key; }

  Result<std::optional<ObjectInfo>> stat(const std::string& key) override {
    struct ::stat st {};
    if (::stat(key.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) return std::optional<ObjectInfo>();
      if (errno == ELOOP) return Status::Invalid(key + " is a symbolic link loop, not a file");
      return errno_status("stat", key, errno);
    }
    if (S_ISDIR(st.st_mode)) return Status::Invalid(key + " is a directory, not a file");
    if (S_ISFIFO(st.st_mode)) return Status::Invalid(key + " is a FIFO, not a file");
    if (!S_ISREG(st.st_mode)) return Status::Invalid(key + " is not a regular file");
    ObjectInfo info;
    info.size = static_cast<std::uint64_t>(st.st_size);
    info.version = version_of(st);
    return std::optional<ObjectInfo>(info);
  }

  Result<Bytes> read(const std::string& key, std::uint64_t offset, std::uint64_t length) override {
    // O_RDONLY only: the source is never opened in a way that could modify it.
    FileDescriptor fd(::open(key.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return errno_status("opening", key, errno);
    Bytes out(length);
    std::uint64_t done = 0;
    while (done < length) {
      const ssize_t n = ::pread(fd.get(), out.data() + done, length - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status("reading", key, errno);
      }
      if (n == 0) return Status::Invalid("reading " + key + ": file is shorter than expected (truncated while read?)");
      done += static_cast<std::uint64_t>(n);
    }
    return out;
  }

  Status write_atomic(const std::string& key, ByteView data) override {
    return put_atomically(key, Placement::kReplace, write_bytes(data)).status();
  }

  Status write_atomic_streamed(const std::string& key, std::uint64_t expected_bytes,
                               const std::function<Status(const ByteSink&)>& produce) override {
    return put_atomically(key, Placement::kReplace, write_streamed(expected_bytes, produce)).status();
  }

  // link(2) of a complete temp file fails with EEXIST when the name is
  // taken, on local filesystems, NFS and Lustre alike; rename(2) would
  // replace it.
  Result<bool> create_exclusive(const std::string& key, ByteView data) override {
    return put_atomically(key, Placement::kExclusive, write_bytes(data));
  }

  Result<bool> copy_from(Store& source, const std::string& source_key, const ObjectInfo& source_info,
                         const std::string& key) override {
    if (dynamic_cast<PosixStore*>(&source) == nullptr) return false;
    FileDescriptor in(::open(source_key.c_str(), O_RDONLY | O_CLOEXEC));
    if (in.get() < 0) return errno_status("opening", source_key, errno);
    RESHARD_RETURN_IF_ERROR(check_unchanged(in.get(), source_key, source_info));
    RESHARD_RETURN_IF_ERROR(put_atomically(key, Placement::kReplace, [&](int out, const std::string& temp) -> Status {
                              return copy_contents(in.get(), source_key, out, temp, source_info.size);
                            }).status());
    // A writer that replaced the source's content in place during the copy
    // changed its mtime: the copy is not of the version the job read.
    RESHARD_RETURN_IF_ERROR(check_unchanged(in.get(), source_key, source_info));
    return true;
  }

  Result<std::vector<std::string>> list(const std::string& directory) override {
    std::vector<std::string> keys;
    const std::string dir = directory.empty() ? "." : directory;
    std::error_code ec;
    if (!fs::exists(dir, ec)) return keys;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_regular_file(ec)) keys.push_back(directory + it->path().filename().string());
    }
    if (ec) return Status::Storage("listing " + dir + ": " + ec.message());
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  Status remove(const std::string& key) override {
    if (::unlink(key.c_str()) != 0 && errno != ENOENT) return errno_status("removing", key, errno);
    return Status::Ok();
  }

  Result<bool> directory_exists(const std::string& directory) override {
    std::error_code ec;
    return fs::is_directory(directory.empty() ? "." : directory, ec);
  }

  Status remove_empty_directory(const std::string& directory) override {
    if (directory.empty()) return Status::Ok();
    if (::rmdir(directory.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST) {
      return errno_status("removing directory", directory, errno);
    }
    return Status::Ok();
  }

  Status move_into_place(const std::string& temp_key, const std::string& key) override {
    FileDescriptor fd(::open(temp_key.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return errno_status("opening", temp_key, errno);
    if (::fsync(fd.get()) != 0) return errno_status("syncing", temp_key, errno);
    return rename_into_place(temp_key, key);
  }

  Result<std::uint64_t> clean_up_incomplete_writes(const std::string& prefix) override {
    // "dir/" covers every temp file in dir; "dir/a.h5ad" only a.h5ad's.
    const std::string directory = prefix.substr(0, prefix.rfind('/') + 1);
    const std::string temp_start = "." + prefix.substr(directory.size());
    RESHARD_ASSIGN_OR_RETURN(auto keys, list(directory));
    std::uint64_t removed = 0;
    for (const auto& key : keys) {
      const std::string name = key.substr(directory.size());
      // Temp files are ".<final name>.tmp.<pid>.<salt>.<n>" (write_atomic).
      if (name.size() < 2 || !name.starts_with(temp_start) || name.find(kTempMarker) == std::string::npos) continue;
      RESHARD_RETURN_IF_ERROR(remove(key));
      ++removed;
    }
    return removed;
  }

  std::string canonical_directory(const std::string& directory) const override {
    std::error_code ec;
    auto path = fs::weakly_canonical(fs::absolute(directory.empty() ? "." : directory, ec), ec);
    std::string text = path.string();
    if (text.empty() || text.back() != '/') text += '/';
    return "file://" + text;
  }

 private:
  enum class Placement { kReplace, kExclusive };

  // Creates a temp file beside `key`, lets `fill` write it, then syncs and
  // renames (or, exclusively, links) it into place, so readers see the old
  // file or the whole new one. False when kExclusive found `key` taken.
  template <typename Fill>
  Result<bool> put_atomically(const std::string& key, Placement placement, Fill&& fill) {
    const std::string dir = parent_of(key);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return Status::Storage("creating directory " + dir + ": " + ec.message());
    const std::string temp = dir + "/." + key.substr(key.rfind('/') + 1) + temp_suffix();
    FileDescriptor fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) return errno_status("creating", temp, errno);
    if (Status filled = fill(fd.get(), temp); !filled.ok()) {
      ::unlink(temp.c_str());
      return filled;
    }
    if (::fsync(fd.get()) != 0 || ::close(fd.release()) != 0) {
      const int err = errno;
      ::unlink(temp.c_str());
      return errno_status("syncing", temp, err);
    }
    if (placement == Placement::kExclusive) {
      const int linked = ::link(temp.c_str(), key.c_str());
      const int err = errno;
      ::unlink(temp.c_str());
      if (linked != 0 && err == EEXIST) return false;
      if (linked != 0) return errno_status("creating", key, err);
      RESHARD_RETURN_IF_ERROR(fsync_directory(dir));
      return true;
    }
    if (Status placed = rename_into_place(temp, key); !placed.ok()) {
      ::unlink(temp.c_str());
      return placed;
    }
    return true;
  }

  static std::string version_of(const struct ::stat& st) {
    return std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ino);
  }

  static Status check_unchanged(int fd, const std::string& path, const ObjectInfo& expected) {
    struct ::stat st {};
    if (::fstat(fd, &st) != 0) return errno_status("stat", path, errno);
    if (version_of(st) != expected.version) {
      return Status::Invalid(path + " changed while the job ran (size or modification time differs from planning)");
    }
    return Status::Ok();
  }

  // In-kernel copy: the filesystem may share extents (reflink on XFS and
  // Btrfs) or copy server-side (NFS 4.2); bytes never enter this process.
  // Filesystems or kernels without it fall back to read/write.
  static Status copy_contents(int in, const std::string& in_path, int out, const std::string& out_path,
                              std::uint64_t size) {
    std::uint64_t done = 0;
    bool in_kernel = true;
    Bytes buffer;
    while (done < size) {
      if (in_kernel) {
        loff_t in_offset = static_cast<loff_t>(done);
        const ssize_t n = ::copy_file_range(in, &in_offset, out, nullptr, size - done, 0);
        if (n > 0) {
          done += static_cast<std::uint64_t>(n);
          continue;
        }
        if (n == 0) return Status::Invalid(in_path + " is shorter than planned (truncated while the job ran?)");
        if (errno == EINTR) continue;
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
          return errno_status("copying " + in_path + " to", out_path, errno);
        }
        in_kernel = false;
        buffer.resize(1 << 20);
      }
      const ssize_t n =
          ::pread(in, buffer.data(), std::min<std::uint64_t>(buffer.size(), size - done), static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_status("reading", in_path, errno);
      if (n == 0) return Status::Invalid(in_path + " is shorter than planned (truncated while the job ran?)");
      for (ssize_t written = 0; written < n;) {
        const ssize_t w = ::write(out, buffer.data() + written, static_cast<std::size_t>(n - written));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno_status("writing", out_path, errno);
        written += w;
      }
      done += static_cast<std::uint64_t>(n);
    }
    return Status::Ok();
  }
};

}  // namespace

std::shared_ptr<Store> make_posix_store() { return std::make_shared<PosixStore>(); }

}  // namespace reshard

#include "reshard/store/posix_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
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

constexpr const char* kTempMarker = ".tmp.";

std::string temp_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  static const std::uint64_t salt = std::random_device{}();
  return kTempMarker + std::to_string(::getpid()) + "." + std::to_string(salt % 1000000) + "." +
         std::to_string(counter++);
}

class PosixStore final : public Store {
 public:
  std::string url(const std::string& key) const override { return key; }

  Result<std::optional<ObjectInfo>> stat(const std::string& key) override {
    struct ::stat st {};
    if (::stat(key.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) return std::optional<ObjectInfo>();
      return errno_status("stat", key, errno);
    }
    if (!S_ISREG(st.st_mode)) return Status::Invalid(key + " is not a regular file");
    ObjectInfo info;
    info.size = static_cast<std::uint64_t>(st.st_size);
    info.version = std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
                   std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ino);
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
    const std::string dir = parent_of(key);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return Status::Storage("creating directory " + dir + ": " + ec.message());
    const std::string temp = dir + "/." + key.substr(key.rfind('/') + 1) + temp_suffix();
    FileDescriptor fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) return errno_status("creating", temp, errno);
    std::uint64_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::unlink(temp.c_str());
        return errno_status("writing", temp, err);
      }
      done += static_cast<std::uint64_t>(n);
    }
    if (::fsync(fd.get()) != 0 || ::close(fd.release()) != 0) {
      const int err = errno;
      ::unlink(temp.c_str());
      return errno_status("syncing", temp, err);
    }
    if (::rename(temp.c_str(), key.c_str()) != 0) {
      const int err = errno;
      ::unlink(temp.c_str());
      return errno_status("renaming into place", key, err);
    }
    return fsync_directory(dir);
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

  Result<std::uint64_t> clean_up_incomplete_writes(const std::string& directory) override {
    RESHARD_ASSIGN_OR_RETURN(auto keys, list(directory));
    std::uint64_t removed = 0;
    for (const auto& key : keys) {
      const std::string name = key.substr(directory.size());
      // Temp files are ".<final name>.tmp.<pid>.<salt>.<n>" (write_atomic).
      if (name.size() < 2 || name[0] != '.' || name.find(kTempMarker) == std::string::npos) continue;
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
};

}  // namespace

std::shared_ptr<Store> make_posix_store() { return std::make_shared<PosixStore>(); }

}  // namespace reshard

#include "reshard/scratch_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace reshard {
namespace {

std::string errno_text() { return std::strerror(errno); }

}  // namespace

Result<ScratchFile> ScratchFile::create(const std::string& directory) {
  int fd = ::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    return Status::Storage("creating a scratch file in " + directory + ": " + errno_text());
  }
  if (fd < 0) {
    // No O_TMPFILE here (older kernels, some parallel filesystems): a named
    // file, unlinked at once.
    std::string name = directory + "/sparse-reshard-scratch-XXXXXX";
    fd = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd < 0) return Status::Storage("creating a scratch file in " + directory + ": " + errno_text());
    ::unlink(name.c_str());
  }
  return ScratchFile(fd, directory);
}

ScratchFile::ScratchFile(ScratchFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), directory_(std::move(other.directory_)), size_(other.size_) {}

ScratchFile& ScratchFile::operator=(ScratchFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    directory_ = std::move(other.directory_);
    size_ = other.size_;
  }
  return *this;
}

ScratchFile::~ScratchFile() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::uint64_t> ScratchFile::append(ByteView bytes) {
  const std::uint64_t start = size_;
  std::uint64_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(start + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Storage("writing a scratch file in " + directory_ + ": " + errno_text());
    done += static_cast<std::uint64_t>(n);
  }
  size_ += bytes.size();
  return start;
}

Status ScratchFile::read_at(std::uint64_t offset, std::uint8_t* out, std::uint64_t size) const {
  std::uint64_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd_, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Status::Storage("reading a scratch file in " + directory_ + ": " +
                             (n == 0 ? std::string("unexpected end of file") : errno_text()));
    }
    done += static_cast<std::uint64_t>(n);
  }
  return Status::Ok();
}

}  // namespace reshard

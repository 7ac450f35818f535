// A node-local scratch file for entries that do not fit in memory. It is
// unlinked as soon as it is created (O_TMPFILE where the filesystem has it),
// so nothing is left behind after success, failure, a crash or a kill: the
// kernel frees the space when the last descriptor closes.
#pragma once

#include <cstdint>
#include <string>

#include "reshard/bytes.hpp"
#include "reshard/status.hpp"

namespace reshard {

class ScratchFile {
 public:
  static Result<ScratchFile> create(const std::string& directory);
  ScratchFile(ScratchFile&& other) noexcept;
  ScratchFile& operator=(ScratchFile&& other) noexcept;
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  ~ScratchFile();

  // Appends and returns the offset the bytes start at.
  Result<std::uint64_t> append(ByteView bytes);
  Status read_at(std::uint64_t offset, std::uint8_t* out, std::uint64_t size) const;
  std::uint64_t size() const { return size_; }
  const std::string& directory() const { return directory_; }

 private:
  ScratchFile(int fd, std::string directory) : fd_(fd), directory_(std::move(directory)) {}
  int fd_ = -1;
  std::string directory_;
  std::uint64_t size_ = 0;
};

}  // namespace reshard

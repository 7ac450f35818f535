// ZIP archives over byte buffers: what numpy's savez/savez_compressed write
// (stored or deflated members, ZIP64 extensions), and deterministic writing.
// No I/O: callers hand in the archive bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "reshard/bytes.hpp"
#include "reshard/status.hpp"
#include "reshard/work_array.hpp"

namespace reshard::zip {

enum class Method : std::uint16_t { kStored = 0, kDeflate = 8 };

struct MemberInfo {
  std::string name;
  Method method = Method::kStored;
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t uncompressed_size = 0;
  std::uint64_t local_header_offset = 0;
};

// Parses the end-of-central-directory records and the central directory.
// `archive` may be the whole file or, with `archive_offset` > 0, only its tail
// starting at that absolute offset (used to read just the directory).
Result<std::vector<MemberInfo>> read_directory(ByteView archive, std::uint64_t archive_size,
                                               std::uint64_t archive_offset = 0);

// How many bytes at the end of a file hold the directory for sure, given the
// tail that was already read; 0 when `tail` already suffices.
std::uint64_t directory_bytes_needed(ByteView tail, std::uint64_t archive_size);

// Where a member's compressed bytes start, given the local header bytes at its
// offset (at least 30 bytes plus name and extra field).
Result<std::uint64_t> member_data_offset(ByteView local_header, const MemberInfo& member);

// Decompresses (or copies) a member and checks its CRC-32.
Result<Bytes> extract(ByteView compressed, const MemberInfo& member);
// Checks a stored member's bytes in place (sizes and CRC-32) without copying.
Status check_stored(ByteView data, const MemberInfo& member);

// A member's bytes are `prefix` then `content` (an npy header before the
// caller's array), so arrays need not be copied behind their header.
struct MemberToWrite {
  std::string name;
  ByteView content;
  ByteView prefix = {};
};

// Which deflate implementation writes deflated members. Both write streams
// any inflater reads (zlib, Python's zipfile, scipy).
enum class Deflater {
  // libdeflate, levels 0..12: one stream per member, so a member is
  // compressed by one thread.
  kLibdeflate,
  // ISA-L igzip, levels 0..3: a member is cut into kIgzipChunkBytes chunks,
  // each deflated alone (on any thread) and ended on a byte boundary, then
  // joined into one stream; the bytes do not depend on the thread count.
  kIgzip,
};
inline constexpr std::size_t kIgzipChunkBytes = std::size_t{4} << 20;

struct WriteOptions {
  Method method = Method::kDeflate;
  int level = 1;
  // Forces ZIP64 records even for small archives; tests use it to exercise the
  // path that archives over 4 GiB take.
  bool force_zip64 = false;
  // Threads compressing members (and igzip chunks); the bytes do not depend
  // on it.
  int threads = 1;
  Deflater deflater = Deflater::kLibdeflate;
};

// Writes a byte-for-byte deterministic archive: fixed timestamps, no extra
// attributes, members in the order given.
Result<Bytes> write_archive(const std::vector<MemberToWrite>& members, const WriteOptions& options);

// The same archive handed to `sink` in order, piece by piece, as it is
// made: a view is valid only during its call, because deflate output goes
// through reused buffers (igzip: two chunks per thread; libdeflate: one per
// member, as members are compressed whole), and the sink
// takes finished chunks, in order, while later ones compress. Deflated
// members carry their sizes in a data descriptor after the data (general
// purpose flag bit 3), as Python's zipfile writes to an unseekable stream;
// every reader takes them from the central directory.
Status write_archive_streamed(const std::vector<MemberToWrite>& members, const WriteOptions& options,
                              const ByteSink& sink);

// CRC-32 (zip's), continuing from `crc` for data split in pieces.
std::uint32_t crc32(ByteView data, std::uint32_t crc = 0);

}  // namespace reshard::zip

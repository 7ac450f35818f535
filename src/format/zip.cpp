#include "reshard/format/zip.hpp"

#include "reshard/format/deflate.hpp"
#include "reshard/parallel.hpp"

#include <libdeflate.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace reshard::zip {
namespace {

constexpr std::uint32_t kLocalHeaderSig = 0x04034b50;
constexpr std::uint32_t kCentralHeaderSig = 0x02014b50;
constexpr std::uint32_t kEndSig = 0x06054b50;
constexpr std::uint32_t kZip64EndSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
constexpr std::uint16_t kZip64ExtraId = 0x0001;
constexpr std::size_t kEndSize = 22;
constexpr std::size_t kZip64LocatorSize = 20;
constexpr std::size_t kZip64EndSize = 56;
constexpr std::size_t kCentralHeaderSize = 46;
constexpr std::size_t kLocalHeaderSize = 30;
constexpr std::uint32_t k32BitMarker = 0xFFFFFFFFu;
constexpr std::uint16_t k16BitMarker = 0xFFFFu;
constexpr std::uint64_t kMaxComment = 0xFFFF;
// DOS date 1980-01-01, time 00:00:00: fixed so output bytes never depend on the clock.
constexpr std::uint16_t kFixedDosDate = (0 << 9) | (1 << 5) | 1;
constexpr std::uint16_t kFixedDosTime = 0;

struct DeflateDecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};

// offset + length <= limit, written so that values a hostile file chooses
// near 2^64 cannot wrap around and pass.
bool fits_within(std::uint64_t offset, std::uint64_t length, std::uint64_t limit) {
  return offset <= limit && length <= limit - offset;
}

Status corrupt(const std::string& what) { return Status::Invalid("not a valid zip archive (" + what + ")"); }

// Locates the end-of-central-directory record within `tail`.
std::optional<std::size_t> find_end_record(ByteView tail) {
  if (tail.size() < kEndSize) return std::nullopt;
  for (std::size_t pos = tail.size() - kEndSize + 1; pos-- > 0;) {
    if (load_le<std::uint32_t>(tail.data() + pos) != kEndSig) continue;
    const auto comment_len = load_le<std::uint16_t>(tail.data() + pos + 20);
    if (pos + kEndSize + comment_len == tail.size()) return pos;
  }
  return std::nullopt;
}

struct Directory {
  std::uint64_t entries = 0;
  std::uint64_t size = 0;
  std::uint64_t offset = 0;
};

Result<Directory> locate_directory(ByteView tail, std::uint64_t archive_size, std::uint64_t tail_offset) {
  const auto end_pos = find_end_record(tail);
  if (!end_pos) {
    // The end record, comment included, lies within the last kEndSize +
    // kMaxComment bytes: once the tail covers those, more bytes cannot help.
    const bool tail_covers_end_record = tail_offset == 0 || tail.size() >= kEndSize + kMaxComment;
    return tail_covers_end_record ? corrupt("no end-of-central-directory record; truncated or not a zip file")
                                  : Status::Invalid("need more bytes");
  }
  const std::uint8_t* end = tail.data() + *end_pos;
  Directory dir;
  dir.entries = load_le<std::uint16_t>(end + 10);
  dir.size = load_le<std::uint32_t>(end + 12);
  dir.offset = load_le<std::uint32_t>(end + 16);
  if (*end_pos >= kZip64LocatorSize && load_le<std::uint32_t>(end - kZip64LocatorSize) == kZip64LocatorSig) {
    const std::uint64_t zip64_end_abs = load_le<std::uint64_t>(end - kZip64LocatorSize + 8);
    if (!fits_within(zip64_end_abs, kZip64EndSize, archive_size)) return corrupt("ZIP64 end record out of range");
    // In the archive but before this tail (tail_offset > 0 here).
    if (zip64_end_abs < tail_offset) return Status::Invalid("need more bytes");
    const std::uint8_t* z = tail.data() + (zip64_end_abs - tail_offset);
    if (load_le<std::uint32_t>(z) != kZip64EndSig) return corrupt("bad ZIP64 end record signature");
    dir.entries = load_le<std::uint64_t>(z + 32);
    dir.size = load_le<std::uint64_t>(z + 40);
    dir.offset = load_le<std::uint64_t>(z + 48);
  }
  if (!fits_within(dir.offset, dir.size, archive_size)) {
    return corrupt("central directory beyond end of file; truncated");
  }
  return dir;
}

// Replaces 32-bit placeholders with their ZIP64 extra-field values, in the
// order the format fixes: uncompressed size, compressed size, offset.
Status apply_zip64_extra(const std::uint8_t* extra, std::size_t extra_len, MemberInfo& m, bool want_usize,
                         bool want_csize, bool want_offset) {
  std::size_t pos = 0;
  while (pos + 4 <= extra_len) {
    const auto id = load_le<std::uint16_t>(extra + pos);
    const auto len = load_le<std::uint16_t>(extra + pos + 2);
    if (pos + 4 + len > extra_len) return corrupt("extra field overruns header");
    if (id == kZip64ExtraId) {
      const std::uint8_t* field = extra + pos + 4;
      std::size_t used = 0;
      auto take = [&](std::uint64_t& target) -> bool {
        if (used + 8 > len) return false;
        target = load_le<std::uint64_t>(field + used);
        used += 8;
        return true;
      };
      if (want_usize && !take(m.uncompressed_size)) return corrupt("short ZIP64 extra field");
      if (want_csize && !take(m.compressed_size)) return corrupt("short ZIP64 extra field");
      if (want_offset && !take(m.local_header_offset)) return corrupt("short ZIP64 extra field");
      return Status::Ok();
    }
    pos += 4 + len;
  }
  if (want_usize || want_csize || want_offset) return corrupt("missing ZIP64 extra field");
  return Status::Ok();
}

}  // namespace

// libdeflate_crc32 answers its initial value 0 for a null buffer, whatever `crc`
// was: an empty piece must leave the running CRC alone.
std::uint32_t crc32(ByteView data, std::uint32_t crc) {
  return data.empty() ? crc : libdeflate_crc32(crc, data.data(), data.size());
}

std::uint64_t directory_bytes_needed(ByteView tail, std::uint64_t archive_size) {
  const std::uint64_t tail_offset = archive_size - tail.size();
  auto dir = locate_directory(tail, archive_size, tail_offset);
  if (!dir.ok()) {
    // The end record (with its maximal comment) and a ZIP64 locator fit here.
    const std::uint64_t worst = kEndSize + kMaxComment + kZip64LocatorSize + kZip64EndSize;
    return tail.size() >= std::min(worst, archive_size) ? 0 : std::min(worst, archive_size);
  }
  if (dir->offset >= tail_offset) return 0;
  return archive_size - dir->offset;
}

Result<std::vector<MemberInfo>> read_directory(ByteView archive, std::uint64_t archive_size,
                                               std::uint64_t archive_offset) {
  if (archive_offset + archive.size() != archive_size) return Status::Internal("zip tail does not end the archive");
  RESHARD_ASSIGN_OR_RETURN(Directory dir, locate_directory(archive, archive_size, archive_offset));
  if (dir.offset < archive_offset) return Status::Internal("zip tail does not cover the central directory");
  std::vector<MemberInfo> members;
  const std::uint8_t* p = archive.data() + (dir.offset - archive_offset);
  const std::uint8_t* end = p + dir.size;
  for (std::uint64_t i = 0; i < dir.entries; ++i) {
    if (p + kCentralHeaderSize > end || load_le<std::uint32_t>(p) != kCentralHeaderSig) {
      return corrupt("bad central directory entry " + std::to_string(i));
    }
    MemberInfo m;
    const auto flags = load_le<std::uint16_t>(p + 8);
    if (flags & 0x1) return Status::Invalid("zip member is encrypted");
    const auto method = load_le<std::uint16_t>(p + 10);
    if (method != 0 && method != 8) {
      return Status::Invalid("zip compression method " + std::to_string(method) + " is not supported");
    }
    m.method = static_cast<Method>(method);
    m.crc32 = load_le<std::uint32_t>(p + 16);
    m.compressed_size = load_le<std::uint32_t>(p + 20);
    m.uncompressed_size = load_le<std::uint32_t>(p + 24);
    const auto name_len = load_le<std::uint16_t>(p + 28);
    const auto extra_len = load_le<std::uint16_t>(p + 30);
    const auto comment_len = load_le<std::uint16_t>(p + 32);
    m.local_header_offset = load_le<std::uint32_t>(p + 42);
    if (p + kCentralHeaderSize + name_len + extra_len + comment_len > end) return corrupt("directory overrun");
    m.name.assign(reinterpret_cast<const char*>(p + kCentralHeaderSize), name_len);
    RESHARD_RETURN_IF_ERROR(apply_zip64_extra(p + kCentralHeaderSize + name_len, extra_len, m,
                                              m.uncompressed_size == k32BitMarker, m.compressed_size == k32BitMarker,
                                              m.local_header_offset == k32BitMarker));
    if (!fits_within(m.local_header_offset, kLocalHeaderSize, dir.offset) ||
        !fits_within(m.local_header_offset + kLocalHeaderSize, m.compressed_size, dir.offset)) {
      return corrupt("member " + m.name + " extends past the central directory");
    }
    members.push_back(std::move(m));
    p += kCentralHeaderSize + name_len + extra_len + comment_len;
  }
  return members;
}

Result<std::uint64_t> member_data_offset(ByteView local_header, const MemberInfo& member) {
  if (local_header.size() < kLocalHeaderSize || load_le<std::uint32_t>(local_header.data()) != kLocalHeaderSig) {
    return corrupt("bad local header for " + member.name);
  }
  const auto name_len = load_le<std::uint16_t>(local_header.data() + 26);
  const auto extra_len = load_le<std::uint16_t>(local_header.data() + 28);
  return member.local_header_offset + kLocalHeaderSize + name_len + extra_len;
}

Status check_stored(ByteView data, const MemberInfo& member) {
  if (member.method != Method::kStored) return Status::Internal("check_stored on a compressed member");
  if (data.size() != member.compressed_size) return corrupt("member " + member.name + " is truncated");
  if (member.compressed_size != member.uncompressed_size) return corrupt("stored member sizes differ");
  if (crc32(data) != member.crc32) return corrupt("CRC-32 mismatch in member " + member.name);
  return Status::Ok();
}

Result<Bytes> extract(ByteView compressed, const MemberInfo& member) {
  if (member.method == Method::kStored) {
    RESHARD_RETURN_IF_ERROR(check_stored(compressed, member));
    return Bytes(compressed.begin(), compressed.end());
  }
  if (compressed.size() != member.compressed_size) return corrupt("member " + member.name + " is truncated");
  Bytes out(member.uncompressed_size);
  std::unique_ptr<libdeflate_decompressor, DeflateDecompressorDeleter> d(libdeflate_alloc_decompressor());
  if (!d) return Status::Internal("out of memory allocating a deflate decompressor");
  const auto rc =
      libdeflate_deflate_decompress(d.get(), compressed.data(), compressed.size(), out.data(), out.size(), nullptr);
  if (rc != LIBDEFLATE_SUCCESS) return corrupt("member " + member.name + " does not inflate");
  if (crc32(out) != member.crc32) return corrupt("CRC-32 mismatch in member " + member.name);
  return out;
}

Result<Bytes> write_archive(const std::vector<MemberToWrite>& members, const WriteOptions& options) {
  Bytes out;
  // Address space only: pages are touched as the archive fills them.
  std::uint64_t size = 4096;
  for (const auto& member : members) size += member.prefix.size() + member.content.size() + 1024;
  out.reserve(size);
  RESHARD_RETURN_IF_ERROR(write_archive_streamed(members, options, appending_to(out)));
  return out;
}

namespace {

constexpr std::uint16_t kDataDescriptorFlag = 0x0008;
constexpr std::uint32_t kDataDescriptorSig = 0x08074b50;

// A deflate job: bytes [offset, offset + length) of a member's prefix-then-
// content, compressed alone.
struct DeflateChunk {
  std::size_t member = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool last = true;
};

// libdeflate deflates a member as one stream; igzip cuts it into fixed-size
// chunks, so the cut (and the bytes) depend only on the member's size.
std::vector<DeflateChunk> plan_deflate_chunks(const std::vector<MemberToWrite>& members, Deflater deflater) {
  std::vector<DeflateChunk> chunks;
  for (std::size_t i = 0; i < members.size(); ++i) {
    const std::uint64_t size = members[i].prefix.size() + members[i].content.size();
    const std::uint64_t step = deflater == Deflater::kIgzip ? kIgzipChunkBytes : std::max<std::uint64_t>(size, 1);
    std::uint64_t offset = 0;
    do {
      const std::uint64_t length = std::min(step, size - offset);
      chunks.push_back({i, offset, length, offset + length == size});
      offset += length;
    } while (offset < size);
  }
  return chunks;
}

// The chunk's input, contiguous: a view of the content unless the chunk
// starts inside the prefix (an npy header), which is then joined in `joined`.
ByteView chunk_input(const MemberToWrite& member, const DeflateChunk& chunk, Bytes& joined) {
  const std::uint64_t prefix = member.prefix.size();
  if (chunk.offset >= prefix) return member.content.subspan(chunk.offset - prefix, chunk.length);
  joined.clear();
  joined.reserve(chunk.length);
  const std::uint64_t from_prefix = std::min(chunk.length, prefix - chunk.offset);
  append_bytes(joined, member.prefix.subspan(chunk.offset, from_prefix));
  append_bytes(joined, member.content.first(chunk.length - from_prefix));
  return joined;
}

// What the central directory repeats of a member.
struct WrittenMember {
  MemberInfo info;
  bool zip64 = false;
  // Deflated: sizes and CRC follow the data, not in the local header.
  bool descriptor = false;
};

// Deflate's output stays below this (igzip stores incompressible input at 5
// bytes per 64 KiB; libdeflate's bound is smaller), so a member whose bound
// fits 32 bits needs no ZIP64 record, decided before its size is known.
std::uint64_t deflated_size_bound(std::uint64_t input_bytes) {
  return input_bytes + input_bytes / 1024 + (input_bytes / kIgzipChunkBytes + 2) * 4096;
}

Bytes local_header(const WrittenMember& m) {
  const bool d = m.descriptor;
  Bytes header;
  append_le<std::uint32_t>(header, kLocalHeaderSig);
  append_le<std::uint16_t>(header, m.zip64 ? 45 : 20);
  append_le<std::uint16_t>(header, d ? kDataDescriptorFlag : 0);
  append_le<std::uint16_t>(header, static_cast<std::uint16_t>(m.info.method));
  append_le<std::uint16_t>(header, kFixedDosTime);
  append_le<std::uint16_t>(header, kFixedDosDate);
  append_le<std::uint32_t>(header, d ? 0 : m.info.crc32);
  const auto size32 = [&](std::uint64_t size) {
    return m.zip64 ? k32BitMarker : d ? 0 : static_cast<std::uint32_t>(size);
  };
  append_le<std::uint32_t>(header, size32(m.info.compressed_size));
  append_le<std::uint32_t>(header, size32(m.info.uncompressed_size));
  append_le<std::uint16_t>(header, static_cast<std::uint16_t>(m.info.name.size()));
  append_le<std::uint16_t>(header, m.zip64 ? 20 : 0);
  append_bytes(header, m.info.name);
  if (m.zip64) {
    append_le<std::uint16_t>(header, kZip64ExtraId);
    append_le<std::uint16_t>(header, 16);
    append_le<std::uint64_t>(header, d ? 0 : m.info.uncompressed_size);
    append_le<std::uint64_t>(header, d ? 0 : m.info.compressed_size);
  }
  return header;
}

Bytes data_descriptor(const WrittenMember& m) {
  Bytes out;
  append_le<std::uint32_t>(out, kDataDescriptorSig);
  append_le<std::uint32_t>(out, m.info.crc32);
  if (m.zip64) {
    append_le<std::uint64_t>(out, m.info.compressed_size);
    append_le<std::uint64_t>(out, m.info.uncompressed_size);
  } else {
    append_le<std::uint32_t>(out, static_cast<std::uint32_t>(m.info.compressed_size));
    append_le<std::uint32_t>(out, static_cast<std::uint32_t>(m.info.uncompressed_size));
  }
  return out;
}

Bytes central_directory(const std::vector<WrittenMember>& written, std::uint64_t directory_offset, bool force_zip64) {
  Bytes out;
  for (const auto& w : written) {
    append_le<std::uint32_t>(out, kCentralHeaderSig);
    append_le<std::uint16_t>(out, w.zip64 ? 45 : 20);
    append_le<std::uint16_t>(out, w.zip64 ? 45 : 20);
    append_le<std::uint16_t>(out, w.descriptor ? kDataDescriptorFlag : 0);
    append_le<std::uint16_t>(out, static_cast<std::uint16_t>(w.info.method));
    append_le<std::uint16_t>(out, kFixedDosTime);
    append_le<std::uint16_t>(out, kFixedDosDate);
    append_le<std::uint32_t>(out, w.info.crc32);
    append_le<std::uint32_t>(out, w.zip64 ? k32BitMarker : static_cast<std::uint32_t>(w.info.compressed_size));
    append_le<std::uint32_t>(out, w.zip64 ? k32BitMarker : static_cast<std::uint32_t>(w.info.uncompressed_size));
    append_le<std::uint16_t>(out, static_cast<std::uint16_t>(w.info.name.size()));
    append_le<std::uint16_t>(out, w.zip64 ? 28 : 0);
    append_le<std::uint16_t>(out, 0);  // comment
    append_le<std::uint16_t>(out, 0);  // disk
    append_le<std::uint16_t>(out, 0);  // internal attributes
    append_le<std::uint32_t>(out, 0);  // external attributes
    append_le<std::uint32_t>(out, w.zip64 ? k32BitMarker : static_cast<std::uint32_t>(w.info.local_header_offset));
    append_bytes(out, w.info.name);
    if (w.zip64) {
      append_le<std::uint16_t>(out, kZip64ExtraId);
      append_le<std::uint16_t>(out, 24);
      append_le<std::uint64_t>(out, w.info.uncompressed_size);
      append_le<std::uint64_t>(out, w.info.compressed_size);
      append_le<std::uint64_t>(out, w.info.local_header_offset);
    }
  }
  const std::uint64_t directory_size = out.size();
  const std::uint64_t entries = written.size();
  const bool zip64_end =
      force_zip64 || entries >= k16BitMarker || directory_size >= k32BitMarker || directory_offset >= k32BitMarker;
  if (zip64_end) {
    const std::uint64_t zip64_end_offset = directory_offset + out.size();
    append_le<std::uint32_t>(out, kZip64EndSig);
    append_le<std::uint64_t>(out, kZip64EndSize - 12);
    append_le<std::uint16_t>(out, 45);
    append_le<std::uint16_t>(out, 45);
    append_le<std::uint32_t>(out, 0);
    append_le<std::uint32_t>(out, 0);
    append_le<std::uint64_t>(out, entries);
    append_le<std::uint64_t>(out, entries);
    append_le<std::uint64_t>(out, directory_size);
    append_le<std::uint64_t>(out, directory_offset);
    append_le<std::uint32_t>(out, kZip64LocatorSig);
    append_le<std::uint32_t>(out, 0);
    append_le<std::uint64_t>(out, zip64_end_offset);
    append_le<std::uint32_t>(out, 1);
  }
  append_le<std::uint32_t>(out, kEndSig);
  append_le<std::uint16_t>(out, 0);
  append_le<std::uint16_t>(out, 0);
  const auto entries16 = static_cast<std::uint16_t>(zip64_end ? k16BitMarker : entries);
  append_le<std::uint16_t>(out, entries16);
  append_le<std::uint16_t>(out, entries16);
  append_le<std::uint32_t>(out, zip64_end ? k32BitMarker : static_cast<std::uint32_t>(directory_size));
  append_le<std::uint32_t>(out, zip64_end ? k32BitMarker : static_cast<std::uint32_t>(directory_offset));
  append_le<std::uint16_t>(out, 0);
  return out;
}

}  // namespace

Status write_archive_streamed(const std::vector<MemberToWrite>& members, const WriteOptions& options,
                              const ByteSink& sink) {
  const int max_level = options.deflater == Deflater::kIgzip ? 3 : 12;
  const bool deflated = options.method == Method::kDeflate;
  if (deflated && (options.level < 0 || options.level > max_level)) {
    return Status::Invalid("deflate level must be 0.." + std::to_string(max_level));
  }
  const int threads = std::max(1, options.threads);
  std::vector<WrittenMember> written(members.size());
  // CRCs first, on all threads: a stored member's goes in its local header.
  run_in_parallel(members.size(), threads,
                  [&](std::size_t i) { written[i].info.crc32 = crc32(members[i].content, crc32(members[i].prefix)); });
  std::uint64_t offset = 0;
  const auto emit = [&](ByteView bytes) -> Status {
    offset += bytes.size();
    return bytes.empty() ? Status::Ok() : sink(bytes);
  };
  const auto begin_member = [&](std::size_t i) -> Status {
    WrittenMember& w = written[i];
    w.info.name = members[i].name;
    w.info.method = options.method;
    w.info.uncompressed_size = members[i].prefix.size() + members[i].content.size();
    w.info.local_header_offset = offset;
    w.info.compressed_size = deflated ? 0 : w.info.uncompressed_size;
    w.descriptor = deflated;
    const std::uint64_t largest = deflated ? deflated_size_bound(w.info.uncompressed_size) : w.info.uncompressed_size;
    w.zip64 = options.force_zip64 || largest >= k32BitMarker || offset >= k32BitMarker;
    return emit(local_header(w));
  };

  if (!deflated) {
    // Stored members go out straight from the caller's buffers.
    for (std::size_t i = 0; i < members.size(); ++i) {
      RESHARD_RETURN_IF_ERROR(begin_member(i));
      RESHARD_RETURN_IF_ERROR(emit(members[i].prefix));
      RESHARD_RETURN_IF_ERROR(emit(members[i].content));
    }
  } else {
    // `threads` compressors take chunks in order into a window of 2 x threads
    // reused buffers; the calling thread hands finished chunks to the sink
    // in order and frees their buffers. Memory stays at the window whatever
    // the file's size, and the sink's I/O overlaps compression.
    const std::vector<DeflateChunk> chunks = plan_deflate_chunks(members, options.deflater);
    // libdeflate makes one chunk per member, and its members compress at
    // once as before (the window holds them all): a window of 2 x threads
    // would make `data` wait for `indices` to be written.
    const std::size_t window = options.deflater == Deflater::kIgzip
                                   ? 2 * static_cast<std::size_t>(threads)
                                   : std::max<std::size_t>(2 * static_cast<std::size_t>(threads), chunks.size());
    std::vector<ByteArray> buffers(window);
    std::vector<Status> statuses(window);
    // ready[slot]: the chunk whose output the slot holds, once compressed.
    std::vector<std::size_t> ready(window, std::numeric_limits<std::size_t>::max());
    std::size_t handed_over = 0;  // chunks the sink has taken (or all, on a failure)
    std::atomic<std::size_t> next_chunk{0};
    std::mutex mutex;
    std::condition_variable changed;
    const auto emit_chunk = [&](std::size_t c) -> Status {
      const DeflateChunk& chunk = chunks[c];
      RESHARD_RETURN_IF_ERROR(statuses[c % window]);
      if (chunk.offset == 0) RESHARD_RETURN_IF_ERROR(begin_member(chunk.member));
      const ByteArray& piece = buffers[c % window];
      RESHARD_RETURN_IF_ERROR(emit(ByteView(piece.data(), piece.size())));
      WrittenMember& w = written[chunk.member];
      w.info.compressed_size += piece.size();
      if (!chunk.last) return Status::Ok();
      if (!w.zip64 && w.info.compressed_size >= k32BitMarker) {
        return Status::Internal("member " + w.info.name + " deflated beyond its size bound");
      }
      return emit(data_descriptor(w));
    };
    Status emitted;
    const auto compress_chunks = [&](std::size_t /*helper*/) {
      for (std::size_t c = next_chunk++; c < chunks.size(); c = next_chunk++) {
        {
          std::unique_lock lock(mutex);
          changed.wait(lock, [&] { return c < handed_over + window; });
          if (handed_over == chunks.size()) return;  // the sink failed
        }
        const DeflateChunk& chunk = chunks[c];
        Bytes joined;
        const ByteView input = chunk_input(members[chunk.member], chunk, joined);
        ByteArray& out = buffers[c % window];
        Status status = options.deflater == Deflater::kIgzip
                            ? deflate::igzip_piece(input, options.level, chunk.last, out)
                            : deflate::libdeflate_stream(input, options.level, out);
        if (!status.ok()) status = status.with_context("compressing member " + members[chunk.member].name);
        std::lock_guard lock(mutex);
        statuses[c % window] = std::move(status);
        ready[c % window] = c;
        changed.notify_all();
      }
    };
    // The calling thread hands chunks over (it mostly waits on the sink's
    // I/O) while `threads` helpers compress.
    // No more helpers than chunks: a small file has one or two, and each
    // helper is a thread started and joined.
    const int helpers = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(threads), chunks.size()));
    run_beside(helpers, compress_chunks, [&] {
      for (std::size_t c = 0; c < chunks.size() && emitted.ok(); ++c) {
        {
          std::unique_lock lock(mutex);
          changed.wait(lock, [&] { return ready[c % window] == c; });
        }
        emitted = emit_chunk(c);
        std::lock_guard lock(mutex);
        handed_over = emitted.ok() ? c + 1 : chunks.size();
        changed.notify_all();
      }
    });
    RESHARD_RETURN_IF_ERROR(emitted);
  }
  return emit(central_directory(written, offset, options.force_zip64));
}

}  // namespace reshard::zip

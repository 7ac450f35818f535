#include "reshard/format/deflate.hpp"

#include <isa-l/igzip_lib.h>
#include <libdeflate.h>

#include <limits>
#include <memory>

#include "reshard/work_array.hpp"

namespace reshard::deflate {
namespace {

struct LibdeflateCompressorDeleter {
  void operator()(libdeflate_compressor* c) const { libdeflate_free_compressor(c); }
};

std::uint32_t igzip_level_buffer_bytes(int level) {
  switch (level) {
    case 1: return ISAL_DEF_LVL1_DEFAULT;
    case 2: return ISAL_DEF_LVL2_DEFAULT;
    case 3: return ISAL_DEF_LVL3_DEFAULT;
    default: return 0;
  }
}

}  // namespace

Status libdeflate_stream(ByteView input, int level, ByteArray& out) {
  std::unique_ptr<libdeflate_compressor, LibdeflateCompressorDeleter> compressor(libdeflate_alloc_compressor(level));
  if (!compressor) return Status::Internal("libdeflate cannot compress at level " + std::to_string(level));
  out.resize(libdeflate_deflate_compress_bound(compressor.get(), input.size()));
  const std::size_t n =
      libdeflate_deflate_compress(compressor.get(), input.data(), input.size(), out.data(), out.size());
  if (n == 0) return Status::Internal("libdeflate: output larger than its own bound");
  out.resize(n);
  return Status::Ok();
}

Status igzip_piece(ByteView input, int level, bool last, ByteArray& out) {
  if (level < ISAL_DEF_MIN_LEVEL || level > ISAL_DEF_MAX_LEVEL) {
    return Status::Invalid("igzip level must be 0..3, got " + std::to_string(level));
  }
  // avail_in and avail_out are 32-bit; the zip writer's chunks are far below.
  if (input.size() > std::numeric_limits<std::uint32_t>::max() / 2) {
    return Status::Internal("igzip piece of " + std::to_string(input.size()) + " bytes is too large");
  }
  isal_zstream stream{};
  isal_deflate_stateless_init(&stream);
  // One thread's level buffer, reused by each chunk it compresses.
  thread_local ByteArray level_buffer;
  level_buffer.resize(igzip_level_buffer_bytes(level));
  // Incompressible input is stored: 5 bytes per 64 KiB block, plus headers.
  out.resize(input.size() + input.size() / 4096 + 4096);
  stream.next_in = const_cast<std::uint8_t*>(input.data());  // NOLINT: ISA-L does not write its input
  stream.avail_in = static_cast<std::uint32_t>(input.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<std::uint32_t>(out.size());
  stream.level = static_cast<std::uint32_t>(level);
  stream.level_buf = level_buffer.empty() ? nullptr : level_buffer.data();
  stream.level_buf_size = static_cast<std::uint32_t>(level_buffer.size());
  stream.end_of_stream = last ? 1 : 0;
  stream.flush = last ? NO_FLUSH : FULL_FLUSH;
  const int rc = isal_deflate_stateless(&stream);
  if (rc != COMP_OK) return Status::Internal("igzip compression failed (code " + std::to_string(rc) + ")");
  out.resize(stream.total_out);
  return Status::Ok();
}

}  // namespace reshard::deflate

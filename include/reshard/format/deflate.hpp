// Raw deflate (RFC 1951) compression over byte buffers, the two engines the
// zip writer uses. No I/O, no threads: callers decide what runs where.
#pragma once

#include "reshard/bytes.hpp"
#include "reshard/status.hpp"
#include "reshard/work_array.hpp"

namespace reshard::deflate {

// Both return the compressed bytes in a buffer sized for the compressor's
// bound and never zeroed, so only the pages the compressor wrote are
// resident: zero-filled bound-sized vectors kept all of it, ~4.1 MiB per
// 4 MiB igzip chunk, and copying out the written part cost a pass and a
// fault per 4 KiB page of output (measured: docs/performance.md).

// One whole stream with libdeflate at `level` (0..12).
Result<ByteArray> libdeflate_stream(ByteView input, int level);

// One piece of a stream with ISA-L igzip at `level` (0..3). Pieces that are
// not `last` end with a full flush: byte-aligned, no final block and no
// back-references across the boundary, so the pieces of one input, compressed
// independently and concatenated in order, form one valid stream.
Result<ByteArray> igzip_piece(ByteView input, int level, bool last);

}  // namespace reshard::deflate

// Raw deflate (RFC 1951) compression over byte buffers, the two engines the
// zip writer uses. No I/O, no threads: callers decide what runs where.
#pragma once

#include "reshard/bytes.hpp"
#include "reshard/status.hpp"

namespace reshard::deflate {

// One whole stream with libdeflate at `level` (0..12).
Result<Bytes> libdeflate_stream(ByteView input, int level);

// One piece of a stream with ISA-L igzip at `level` (0..3). Pieces that are
// not `last` end with a full flush: byte-aligned, no final block and no
// back-references across the boundary, so the pieces of one input, compressed
// independently and concatenated in order, form one valid stream.
Result<Bytes> igzip_piece(ByteView input, int level, bool last);

}  // namespace reshard::deflate

// Raw deflate (RFC 1951) compression over byte buffers, the two engines the
// zip writer uses. No I/O, no threads: callers decide what runs where.
#pragma once

#include "reshard/bytes.hpp"
#include "reshard/status.hpp"
#include "reshard/work_array.hpp"

namespace reshard::deflate {

// Both write the compressed bytes into `out`, which is sized for the
// compressor's bound first and then cut to what was written. The zip writer
// passes the same buffers chunk after chunk: a fresh bound-sized buffer per
// chunk cost a page fault and a kernel zeroing per 4 KiB of output, and
// mmap/munmap of each one stalled the other threads' faults
// (docs/performance.md). WorkArray's resize does not zero.

// One whole stream with libdeflate at `level` (0..12).
Status libdeflate_stream(ByteView input, int level, ByteArray& out);

// One piece of a stream with ISA-L igzip at `level` (0..3). Pieces that are
// not `last` end with a full flush: byte-aligned, no final block and no
// back-references across the boundary, so the pieces of one input, compressed
// independently and concatenated in order, form one valid stream.
Status igzip_piece(ByteView input, int level, bool last, ByteArray& out);

}  // namespace reshard::deflate

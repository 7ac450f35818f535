// NumPy .npy arrays over byte buffers (format versions 1.0, 2.0 and 3.0),
// restricted to what sparse shards hold: little-endian numeric 1-D arrays
// and short byte/unicode strings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reshard/bytes.hpp"
#include "reshard/status.hpp"

namespace reshard::npy {

// A dtype as numpy spells it in `descr`: kind 'b' (bool), 'i', 'u', 'f', 'c',
// 'S' (bytes), 'U' (UCS-4 text), with the item size in bytes.
struct DType {
  char kind = 'f';
  std::uint32_t itemsize = 8;

  bool operator==(const DType&) const = default;
  std::string descr() const;  // e.g. "<f8", "|b1"
  std::string name() const;   // e.g. "float64", "int32"
  bool is_numeric() const { return kind == 'b' || kind == 'i' || kind == 'u' || kind == 'f'; }
};

DType int32_dtype();
DType int64_dtype();

struct ArrayView {
  DType dtype;
  std::vector<std::uint64_t> shape;
  ByteView data;  // points into the buffer handed to parse()

  std::uint64_t element_count() const;
};

// The header alone, from a prefix of the array's bytes that holds it: for
// callers that read the payload in pieces.
struct ArrayHeader {
  DType dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t data_offset = 0;
  std::uint64_t payload_bytes = 0;
};
Result<ArrayHeader> parse_header(ByteView npy_prefix);

// Parses the header and returns a view of the payload. Rejects object
// (pickled) arrays, big-endian multi-byte dtypes and Fortran order.
Result<ArrayView> parse(ByteView npy);

// Encodes a C-order little-endian array with a version 1.0 header (2.0 when
// the header would not fit), padded as numpy pads it.
Bytes encode(const DType& dtype, const std::vector<std::uint64_t>& shape, ByteView data);
// Just the header (magic, version, padded dict) encode() puts before the data,
// for callers that write the data in place after it.
Bytes encode_header(const DType& dtype, const std::vector<std::uint64_t>& shape);

// Reads integer element `i` of an 'i'/'u' array as int64.
std::int64_t integer_at(const ArrayView& array, std::uint64_t i);

}  // namespace reshard::npy

// libFuzzer target: the zip central-directory reader as the planner uses it,
// on the whole file and on a tail of it (the planner reads only the last
// bytes first), then each member's local header and data bounds.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "reshard/format/zip.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const reshard::ByteView file(data, size);
  (void)reshard::zip::directory_bytes_needed(file.subspan(size - std::min<std::size_t>(size, 4096)), size);
  if (size >= 2) {
    const auto tail = file.subspan(size / 2);
    (void)reshard::zip::read_directory(tail, size, size - tail.size());
  }
  auto members = reshard::zip::read_directory(file, size);
  if (!members.ok()) return 0;
  for (const auto& member : *members) {
    if (member.local_header_offset > size) continue;
    auto offset = reshard::zip::member_data_offset(file.subspan(member.local_header_offset), member);
    if (!offset.ok() || *offset > size || member.compressed_size > size - *offset) continue;
    const auto compressed = file.subspan(*offset, member.compressed_size);
    if (member.method == reshard::zip::Method::kStored) {
      (void)reshard::zip::check_stored(compressed, member);
    } else if (member.uncompressed_size <= (64u << 20)) {
      (void)reshard::zip::extract(compressed, member);
    }
  }
  return 0;
}

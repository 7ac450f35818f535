// libFuzzer target: the npz decoder (zip directory, members, npy headers,
// inflate, CSR/CSC/COO checks) on arbitrary bytes. Any input must give a
// Status, never a crash or an out-of-bounds read (run under ASan + UBSan).
#include <cstddef>
#include <cstdint>

#include "reshard/format/npz.hpp"
#include "reshard/format/zip.hpp"

namespace {

// The job never decodes a shard whose declared member sizes exceed its
// --memory-limit (the planner checks them first, memory_budget.cpp); a
// small file that declares gigabytes is refused there, not here. The
// harness applies the same guard with a cap that fits the fuzzer's memory.
constexpr std::uint64_t kDeclaredBytesCap = 64ull << 20;

bool declares_more_than_cap(reshard::ByteView file) {
  auto members = reshard::zip::read_directory(file, file.size());
  if (!members.ok()) return false;  // the decoder reports it
  std::uint64_t declared = 0;
  for (const auto& member : *members) {
    if (member.uncompressed_size > kDeclaredBytesCap - declared) return true;
    declared += member.uncompressed_size;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const reshard::ByteView file(data, size);
  if (declares_more_than_cap(file)) return 0;
  (void)reshard::npz::decode(file);
  return 0;
}

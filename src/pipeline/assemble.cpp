#include "reshard/pipeline/assemble.hpp"

#include <algorithm>
#include <cstring>

namespace reshard {
namespace {

struct MinorEntry {
  std::uint64_t minor;
  std::uint64_t order;
  std::uint64_t value_bits;
};

// Local index along one axis: an offset into a block, or the position of the
// id among a hashed shard's ascending ids.
struct AxisMapping {
  std::uint64_t offset = 0;
  const std::vector<std::uint64_t>* ids = nullptr;
  std::uint64_t local(std::uint64_t global) const {
    if (ids == nullptr) return global - offset;
    return static_cast<std::uint64_t>(std::lower_bound(ids->begin(), ids->end(), global) - ids->begin());
  }
  std::uint64_t global(std::uint64_t local) const { return ids == nullptr ? local + offset : (*ids)[local]; }
};

}  // namespace

std::vector<std::vector<std::uint64_t>> hashed_ids_for(const Plan& plan,
                                                       const std::vector<const DestinationShard*>& owned) {
  std::vector<std::uint64_t> shards;
  for (const auto* d : owned) shards.push_back(d->index);
  return plan.destination_map.hashed_ids(shards);
}

AssembledShard assemble_shard(const std::vector<std::span<const Entry>>& parts, const DestinationShard& shard,
                              const Plan& plan, npy::DType value_dtype, std::vector<std::uint64_t> hashed_ids) {
  const auto& spec = plan.destination_map.spec();
  AssembledShard out;
  out.shard = &shard;
  out.layout = spec.layout;
  out.value_dtype = value_dtype;
  AxisMapping rows{shard.box.row_begin, nullptr};
  AxisMapping cols{shard.box.col_begin, nullptr};
  out.nrows = shard.box.rows();
  out.ncols = shard.box.cols();
  if (spec.hashed()) {
    if (spec.axis == Axis::kRows) {
      out.row_ids = std::move(hashed_ids);
      rows.ids = &*out.row_ids;
      out.nrows = out.row_ids->size();
    } else {
      out.col_ids = std::move(hashed_ids);
      cols.ids = &*out.col_ids;
      out.ncols = out.col_ids->size();
    }
  }
  const bool csr = out.layout == Layout::kCsr;
  const AxisMapping& major_axis = csr ? rows : cols;
  const AxisMapping& minor_axis = csr ? cols : rows;
  const std::uint64_t nmajor = csr ? out.nrows : out.ncols;

  // Counting sort by major index, then a sort of each (short) major slice.
  std::uint64_t n = 0;
  for (const auto& part : parts) n += part.size();
  std::vector<std::uint64_t> majors(n);
  out.indptr.assign(nmajor + 1, 0);
  std::uint64_t k = 0;
  for (const auto& part : parts) {
    for (const Entry& e : part) {
      majors[k] = major_axis.local(csr ? e.row : e.col);
      ++out.indptr[majors[k] + 1];
      ++k;
    }
  }
  for (std::uint64_t i = 0; i < nmajor; ++i) out.indptr[i + 1] += out.indptr[i];
  std::vector<MinorEntry> sorted(n);
  {
    std::vector<std::uint64_t> cursor(out.indptr.begin(), out.indptr.end() - 1);
    k = 0;
    for (const auto& part : parts) {
      for (const Entry& e : part) {
        sorted[cursor[majors[k]]++] = MinorEntry{minor_axis.local(csr ? e.col : e.row), e.order, e.value_bits};
        ++k;
      }
    }
  }
  std::vector<std::uint64_t>().swap(majors);
  const std::uint32_t width = value_dtype.itemsize;
  out.indices.resize(sorted.size());
  out.values.resize(sorted.size() * width);
  for (std::uint64_t i = 0; i < nmajor; ++i) {
    const auto begin = sorted.begin() + static_cast<std::ptrdiff_t>(out.indptr[i]);
    const auto end = sorted.begin() + static_cast<std::ptrdiff_t>(out.indptr[i + 1]);
    std::sort(begin, end, [](const MinorEntry& a, const MinorEntry& b) {
      return a.minor != b.minor ? a.minor < b.minor : a.order < b.order;
    });
    const std::uint64_t major_global = major_axis.global(i);
    for (std::uint64_t slot = out.indptr[i]; slot < out.indptr[i + 1]; ++slot) {
      const MinorEntry& e = sorted[slot];
      out.indices[slot] = e.minor;
      std::memcpy(out.values.data() + slot * width, &e.value_bits, width);
      const std::uint64_t minor_global = minor_axis.global(e.minor);
      out.fingerprint.add(csr ? major_global : minor_global, csr ? minor_global : major_global, e.value_bits);
    }
  }
  return out;
}

}  // namespace reshard

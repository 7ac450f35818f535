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

std::vector<std::vector<Entry>> group_by_destination(std::vector<Entry>&& entries, const Plan& plan, int rank,
                                                     std::vector<const DestinationShard*>& owned) {
  owned.clear();
  std::vector<std::int64_t> slot(plan.destinations.size(), -1);
  for (const auto& d : plan.destinations) {
    if (plan.owner.owner_of(d.index) == rank) {
      slot[d.index] = static_cast<std::int64_t>(owned.size());
      owned.push_back(&d);
    }
  }
  std::vector<std::uint64_t> counts(owned.size(), 0);
  std::vector<std::uint32_t> shard_slot(entries.size());
  for (std::size_t k = 0; k < entries.size(); ++k) {
    const auto s = slot[plan.destination_map.shard_of(entries[k].row, entries[k].col)];
    shard_slot[k] = static_cast<std::uint32_t>(s);
    ++counts[static_cast<std::size_t>(s)];
  }
  std::vector<std::vector<Entry>> groups(owned.size());
  for (std::size_t s = 0; s < owned.size(); ++s) groups[s].reserve(counts[s]);
  for (std::size_t k = 0; k < entries.size(); ++k) groups[shard_slot[k]].push_back(entries[k]);
  std::vector<Entry>().swap(entries);
  return groups;
}

std::vector<std::vector<std::uint64_t>> hashed_ids_for(const Plan& plan,
                                                       const std::vector<const DestinationShard*>& owned) {
  std::vector<std::uint64_t> shards;
  for (const auto* d : owned) shards.push_back(d->index);
  return plan.destination_map.hashed_ids(shards);
}

AssembledShard assemble_shard(std::vector<Entry>&& entries, const DestinationShard& shard, const Plan& plan,
                              npy::DType value_dtype, std::vector<std::uint64_t> hashed_ids) {
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
  std::vector<std::uint64_t> majors(entries.size());
  out.indptr.assign(nmajor + 1, 0);
  for (std::size_t k = 0; k < entries.size(); ++k) {
    majors[k] = major_axis.local(csr ? entries[k].row : entries[k].col);
    ++out.indptr[majors[k] + 1];
  }
  for (std::uint64_t i = 0; i < nmajor; ++i) out.indptr[i + 1] += out.indptr[i];
  std::vector<MinorEntry> sorted(entries.size());
  {
    std::vector<std::uint64_t> cursor(out.indptr.begin(), out.indptr.end() - 1);
    for (std::size_t k = 0; k < entries.size(); ++k) {
      const Entry& e = entries[k];
      sorted[cursor[majors[k]]++] = MinorEntry{minor_axis.local(csr ? e.col : e.row), e.order, e.value_bits};
    }
  }
  std::vector<Entry>().swap(entries);
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
    for (std::uint64_t k = out.indptr[i]; k < out.indptr[i + 1]; ++k) {
      const MinorEntry& e = sorted[k];
      out.indices[k] = e.minor;
      std::memcpy(out.values.data() + k * width, &e.value_bits, width);
      const std::uint64_t minor_global = minor_axis.global(e.minor);
      out.fingerprint.add(csr ? major_global : minor_global, csr ? minor_global : major_global, e.value_bits);
    }
  }
  return out;
}

}  // namespace reshard

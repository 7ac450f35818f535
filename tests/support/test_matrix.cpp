#include "support/test_matrix.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <stdexcept>

#include "reshard/format/npz.hpp"
#include "reshard/shard_pattern.hpp"
#include "reshard/store/posix_store.hpp"

namespace reshard::testing {

std::vector<Triple> random_entries(GlobalShape shape, std::uint64_t nnz, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Triple> out;
  if (shape.nrows == 0 || shape.ncols == 0) return out;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (std::uint64_t k = 0; k < nnz; ++k) {
    // Squaring a uniform skews rows toward the top: some rows are long.
    const double u = unit(rng);
    const auto row = static_cast<std::uint64_t>(u * u * static_cast<double>(shape.nrows)) % shape.nrows;
    const std::uint64_t col = rng() % shape.ncols;
    const double value = unit(rng) - 0.5;
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, 8);
    out.push_back({row, col, bits});
  }
  return out;
}

void write_sharded(const std::vector<Triple>& entries, GlobalShape shape, const ShardingSpec& spec,
                   const std::string& pattern_text) {
  auto map = ShardMap::bind(spec, shape);
  if (!map.ok()) throw std::runtime_error(map.status().message());
  auto pattern = ShardPattern::parse(pattern_text);
  if (!pattern.ok()) throw std::runtime_error(pattern.status().message());
  const std::uint64_t shards = map->shard_count();
  std::vector<std::vector<Triple>> by_shard(shards);
  for (const auto& t : entries) by_shard[map->shard_of(t.row, t.col)].push_back(t);
  std::vector<std::uint64_t> all(shards);
  for (std::uint64_t s = 0; s < shards; ++s) all[s] = s;
  auto ids = map->hashed_ids(all);
  auto store = make_posix_store();
  for (std::uint64_t s = 0; s < shards; ++s) {
    const ShardBox box = map->box(s);
    std::uint64_t nrows = box.rows();
    std::uint64_t ncols = box.cols();
    auto local_row = [&](std::uint64_t r) { return r - box.row_begin; };
    auto local_col = [&](std::uint64_t c) { return c - box.col_begin; };
    auto& shard_entries = by_shard[s];
    std::vector<std::uint64_t> local_rows(shard_entries.size());
    std::vector<std::uint64_t> local_cols(shard_entries.size());
    for (std::size_t k = 0; k < shard_entries.size(); ++k) {
      const auto& t = shard_entries[k];
      if (spec.hashed() && spec.axis == Axis::kRows) {
        local_rows[k] =
            static_cast<std::uint64_t>(std::lower_bound(ids[s].begin(), ids[s].end(), t.row) - ids[s].begin());
        local_cols[k] = t.col;
      } else if (spec.hashed()) {
        local_rows[k] = t.row;
        local_cols[k] =
            static_cast<std::uint64_t>(std::lower_bound(ids[s].begin(), ids[s].end(), t.col) - ids[s].begin());
      } else {
        local_rows[k] = local_row(t.row);
        local_cols[k] = local_col(t.col);
      }
    }
    if (spec.hashed()) (spec.axis == Axis::kRows ? nrows : ncols) = ids[s].size();
    // CSR in the order entries were generated within each row: unsorted
    // columns and duplicates stay as they are.
    std::vector<std::uint64_t> indptr(nrows + 1, 0);
    for (auto r : local_rows) ++indptr[r + 1];
    for (std::uint64_t r = 0; r < nrows; ++r) indptr[r + 1] += indptr[r];
    std::vector<std::uint64_t> indices(shard_entries.size());
    Bytes values(shard_entries.size() * 8);
    std::vector<std::uint64_t> cursor(indptr.begin(), indptr.end() - 1);
    for (std::size_t k = 0; k < shard_entries.size(); ++k) {
      const std::uint64_t at = cursor[local_rows[k]]++;
      indices[at] = local_cols[k];
      std::memcpy(values.data() + at * 8, &shard_entries[k].value_bits, 8);
    }
    npz::EncodeInput input;
    input.nrows = nrows;
    input.ncols = ncols;
    input.indptr = indptr;
    input.indices = indices;
    input.value_dtype = npy::DType{'f', 8};
    input.values = values;
    if (spec.hashed() && spec.axis == Axis::kRows) input.row_ids = std::span<const std::uint64_t>(ids[s]);
    if (spec.hashed() && spec.axis == Axis::kCols) input.col_ids = std::span<const std::uint64_t>(ids[s]);
    auto bytes = npz::encode(input, zip::WriteOptions{});
    if (!bytes.ok()) throw std::runtime_error(bytes.status().message());
    const Status st = store->write_atomic(pattern->render(s, box.row_block, box.col_block), *bytes);
    if (!st.ok()) throw std::runtime_error(st.message());
  }
}

std::vector<Triple> read_sharded(GlobalShape shape, const ShardingSpec& spec, const std::string& pattern_text) {
  auto map = ShardMap::bind(spec, shape);
  auto pattern = ShardPattern::parse(pattern_text);
  auto store = make_posix_store();
  std::vector<Triple> out;
  for (std::uint64_t s = 0; s < map->shard_count(); ++s) {
    const ShardBox box = map->box(s);
    auto bytes = store->read_all(pattern->render(s, box.row_block, box.col_block));
    if (!bytes.ok()) throw std::runtime_error(bytes.status().message());
    auto decoded = npz::decode(*bytes);
    if (!decoded.ok()) throw std::runtime_error(decoded.status().message());
    const auto& m = decoded->matrix;
    m.for_each_entry([&](std::uint64_t r, std::uint64_t c, std::uint64_t bits, std::uint64_t) {
      std::uint64_t row = r + box.row_begin;
      std::uint64_t col = c + box.col_begin;
      if (m.row_ids && spec.hashed() && spec.axis == Axis::kRows) {
        row = npz::detail::load_index<std::uint64_t>(m.row_ids->data.data(), r);
      }
      if (m.col_ids && spec.hashed() && spec.axis == Axis::kCols) {
        col = npz::detail::load_index<std::uint64_t>(m.col_ids->data.data(), c);
      }
      out.push_back({row, col, bits});
    });
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace reshard::testing

#include "reshard/pipeline/plan.hpp"

#include "reshard/parallel.hpp"

#include "reshard/format/h5sparse.hpp"
#include "reshard/pipeline/json_messages.hpp"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "reshard/pipeline/entry.hpp"
#include "reshard/pipeline/read.hpp"

namespace reshard {
namespace {

using nlohmann::json;

// What one rank learned about the source shards it inspected.
struct HeaderReport {
  std::uint64_t slot = 0;  // position in the listing
  npz::ShapeAndFormat shape;
  ObjectInfo info;
  std::uint32_t tail_crc = 0;
  std::uint64_t decoded_bytes = 0;
  std::vector<std::string> members;
  std::string compression;
  std::string group;
};

// Rank 0 lists; everyone gets the same listing (one LIST per job, not per rank).
Result<std::vector<std::string>> list_everywhere(Comm& comm, Store& store, const std::string& directory,
                                                 const std::string& what) {
  Status status;
  json listing = json::array();
  if (comm.rank() == 0) {
    auto keys = store.list(directory);
    if (keys.ok()) {
      listing = *keys;
    } else {
      status = keys.status().with_context("listing " + what + " " + store.url(directory));
    }
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, status));
  const auto all = comm.allgather(comm.rank() == 0 ? json_bytes(listing) : Bytes());
  return parse_json_bytes(all[0]).get<std::vector<std::string>>();
}

struct Candidate {
  std::string key;
  ShardName name;
};

std::string shape_text(std::uint64_t rows, std::uint64_t cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

// The extent every shard of a one-axis scheme shares (the column count of row
// shards), taken from the majority so that the shard that differs is the one
// blamed; the first shard was blamed for any disagreement before, even when
// it was the odd one out. Ties go to the lowest-numbered shard's value.
std::uint64_t shared_extent(const std::vector<SourceShard>& shards, bool columns) {
  std::map<std::uint64_t, std::uint64_t> votes;
  for (const auto& s : shards) ++votes[columns ? s.ncols : s.nrows];
  std::uint64_t best = columns ? shards.front().ncols : shards.front().nrows;
  std::uint64_t best_votes = votes[best];
  for (const auto& [extent, count] : votes) {
    if (count > best_votes) {
      best = extent;
      best_votes = count;
    }
  }
  return best;
}

// First row (rows) or column of the block at `position` along that axis.
std::uint64_t block_start(const ShardingSpec& spec, bool rows, std::uint64_t position) {
  const auto& starts = rows ? spec.row_starts : spec.col_starts;
  if (!starts.empty()) return starts[position];
  return position * (rows ? spec.block_rows : spec.block_cols);
}

// Derives the global shape from the shard headers, per scheme.
Result<GlobalShape> derive_shape(const ShardingSpec& spec, const std::vector<SourceShard>& shards,
                                 std::uint64_t row_blocks, std::uint64_t col_blocks) {
  if (spec.shape) return *spec.shape;
  auto at = [&](std::uint64_t rb, std::uint64_t cb) -> const SourceShard& { return shards[rb * col_blocks + cb]; };
  switch (spec.axis) {
    case Axis::kRows:
      if (spec.hashed()) {
        std::uint64_t rows = 0;
        for (const auto& s : shards) rows += s.nrows;
        return GlobalShape{rows, shared_extent(shards, true)};
      }
      return GlobalShape{block_start(spec, true, row_blocks - 1) + shards.back().nrows, shared_extent(shards, true)};
    case Axis::kCols:
      if (spec.hashed()) {
        std::uint64_t cols = 0;
        for (const auto& s : shards) cols += s.ncols;
        return GlobalShape{shared_extent(shards, false), cols};
      }
      return GlobalShape{shared_extent(shards, false), block_start(spec, false, col_blocks - 1) + shards.back().ncols};
    case Axis::kGrid:
      return GlobalShape{block_start(spec, true, row_blocks - 1) + at(row_blocks - 1, 0).nrows,
                         block_start(spec, false, col_blocks - 1) + at(0, col_blocks - 1).ncols};
  }
  return Status::Internal("unknown axis");
}

// When the shards' own extents along a blocked axis agree on another block
// size than the scheme's, the likely mistake is the block size: say which
// one the data implies. The last block of an axis may be short, so it does
// not vote.
std::string implied_block_hint(const ShardMap& map, const std::vector<SourceShard>& shards) {
  ShardingSpec implied = map.spec();
  if (implied.hashed() || implied.ranged()) return "";
  std::string said;
  for (const bool rows : {true, false}) {
    const bool blocked = rows ? implied.axis != Axis::kCols : implied.axis != Axis::kRows;
    if (!blocked) continue;
    std::vector<SourceShard> full_blocks;
    for (const auto& s : shards) {
      const ShardBox box = map.box(s.index);
      const bool last = rows ? box.row_block + 1 == map.row_blocks() : box.col_block + 1 == map.col_blocks();
      if (!last) full_blocks.push_back(s);
    }
    if (full_blocks.empty()) continue;
    const std::uint64_t extent = shared_extent(full_blocks, !rows);
    std::uint64_t& block = rows ? implied.block_rows : implied.block_cols;
    if (extent == 0 || extent == block) continue;
    block = extent;
    said += (said.empty() ? "" : " and ") + std::to_string(extent) + (rows ? " rows" : " columns");
  }
  if (said.empty()) return "";
  return "; the shards hold " + said + " each, as with --old-scheme " + implied.to_text();
}

// Every shard's header must match where the scheme puts it.
Status check_source_shapes(const ShardMap& map, std::vector<SourceShard>& shards, const Store& store) {
  const auto& spec = map.spec();
  for (auto& s : shards) {
    s.box = map.box(s.index);
    const std::string where = "source shard " + store.url(s.key) + ": ";
    if (spec.hashed()) {
      const bool by_rows = spec.axis == Axis::kRows;
      const std::uint64_t full = by_rows ? map.shape().ncols : map.shape().nrows;
      const std::uint64_t got = by_rows ? s.ncols : s.nrows;
      if (got != full) {
        return Status::Invalid(where + "has " + std::to_string(got) + (by_rows ? " columns" : " rows") +
                               " but the matrix has " + std::to_string(full));
      }
      continue;
    }
    if (s.nrows != s.box.rows() || s.ncols != s.box.cols()) {
      return Status::Invalid(where + "shape " + shape_text(s.nrows, s.ncols) + " does not match " +
                             shape_text(s.box.rows(), s.box.cols()) + " expected at block (" +
                             std::to_string(s.box.row_block) + ", " + std::to_string(s.box.col_block) + ") of " +
                             spec.to_text() + " over a " + shape_text(map.shape().nrows, map.shape().ncols) +
                             " matrix" + implied_block_hint(map, shards));
    }
  }
  return Status::Ok();
}

Status check_destination_place(const Store& source_store, const ShardPattern& source_pattern,
                               const Store& destination_store, const ShardPattern& destination_pattern) {
  const std::string src_dir = source_store.canonical_directory(source_pattern.directory());
  const std::string dst_dir = destination_store.canonical_directory(destination_pattern.directory());
  if (src_dir == dst_dir && source_pattern.text() == destination_pattern.text()) {
    return Status::Invalid("destination pattern is the source pattern; refusing to overwrite the source");
  }
  // A one-file source owns no directory: only its own folder is refused
  // to a shard set (whose manifest and _SUCCESS would sit beside it); a
  // one-file destination's control files carry its own name.
  if (source_pattern.names_one_file()) {
    if (dst_dir != src_dir || destination_pattern.names_one_file()) return Status::Ok();
    return Status::Invalid("destination " + destination_pattern.text() + " is in the folder of the source file " +
                           source_pattern.text() + "; choose another directory (a subdirectory will do)");
  }
  if (dst_dir.compare(0, src_dir.size(), src_dir) == 0) {
    return Status::Invalid("destination " + destination_pattern.text() + " is inside the source directory " +
                           source_pattern.directory() + "; choose a separate directory so the source stays untouched");
  }
  return Status::Ok();
}

}  // namespace

DestinationOwner::DestinationOwner(std::uint64_t shard_count, int ranks) : owners_(shard_count) {
  for (std::uint64_t d = 0; d < shard_count; ++d) owners_[d] = static_cast<int>(d % static_cast<std::uint64_t>(ranks));
}

bool may_contribute(const Plan& plan, const SourceShard& source, const DestinationShard& destination) {
  const auto& old_spec = plan.source_map.spec();
  const auto& new_spec = plan.destination_map.spec();
  auto overlaps = [](std::uint64_t a0, std::uint64_t a1, std::uint64_t b0, std::uint64_t b1) {
    return a0 < b1 && b0 < a1;
  };
  // Block boxes already span the axis a scheme does not split; a hashed
  // axis has an empty box and overlaps everything.
  const bool src_full_rows = old_spec.hashes_rows();
  const bool dst_full_rows = new_spec.hashes_rows();
  const bool src_full_cols = old_spec.hashed() && old_spec.axis == Axis::kCols;
  const bool dst_full_cols = new_spec.hashed() && new_spec.axis == Axis::kCols;
  if (source.nrows == 0 || source.ncols == 0) return false;
  const bool rows =
      src_full_rows || dst_full_rows ||
      overlaps(source.box.row_begin, source.box.row_end, destination.box.row_begin, destination.box.row_end);
  const bool cols =
      src_full_cols || dst_full_cols ||
      overlaps(source.box.col_begin, source.box.col_end, destination.box.col_begin, destination.box.col_end);
  return rows && cols;
}

std::string destination_key(const ShardPattern& pattern, const ShardMap& map, std::uint64_t index) {
  const ShardBox box = map.box(index);
  return pattern.render(index, box.row_block, box.col_block);
}

namespace {

// The parts + 1 cut points of [0, n) into even ranges.
std::vector<std::uint64_t> even_bounds(std::uint64_t n, std::uint64_t parts) {
  std::vector<std::uint64_t> bounds(parts + 1);
  for (std::uint64_t k = 0; k <= parts; ++k) bounds[k] = even_cut(n, parts, k);
  return bounds;
}

// Parts a one-file source is read in: enough that each holds about
// kPartBytes of arrays, and at least kMinParts so that every rank of a
// large job gets some, whatever the rank count (the parts, and so the
// manifest, do not depend on it, so a resume may use other ranks).
constexpr std::uint64_t kPartBytes = 256ULL << 20;
constexpr std::uint64_t kMinParts = 64;

// A local HDF5 file named by a placeholder-less pattern: parts of it, each
// read by hyperslab. Object stores keep it whole (read by one rank).
Result<std::vector<SourceShard>> split_into_parts(Store& store, const SourceShard& whole) {
  const std::optional<std::string> path = store.local_path(whole.key);
  if (!path) return std::vector<SourceShard>{whole};
  RESHARD_ASSIGN_OR_RETURN(h5sparse::Summary summary, h5sparse::summarize_file(*path, whole.group));
  const bool csr = whole.format == npz::SparseFormat::kCsr;
  const std::uint64_t nmajor = csr ? whole.nrows : whole.ncols;
  if (nmajor == 0) return std::vector<SourceShard>{whole};
  const std::uint64_t entry_bytes = summary.value_itemsize + summary.index_itemsize;
  const std::uint64_t array_bytes = summary.nnz * entry_bytes + (nmajor + 1) * 8;
  const std::uint64_t parts = std::min(nmajor, std::max(kMinParts, (array_bytes + kPartBytes - 1) / kPartBytes));
  const std::vector<std::uint64_t> bounds = even_bounds(nmajor, parts);
  RESHARD_ASSIGN_OR_RETURN(auto offsets, h5sparse::indptr_at(*path, whole.group, bounds));
  std::vector<SourceShard> out(parts, whole);
  for (std::uint64_t k = 0; k < parts; ++k) {
    SourceShard& part = out[k];
    part.index = k;
    part.part_of_file = true;
    part.major_begin = bounds[k];
    part.major_end = bounds[k + 1];
    const std::uint64_t majors = bounds[k + 1] - bounds[k];
    if (csr) {
      part.box.row_begin = bounds[k];
      part.box.row_end = bounds[k + 1];
      part.nrows = majors;
    } else {
      part.box.col_begin = bounds[k];
      part.box.col_end = bounds[k + 1];
      part.ncols = majors;
    }
    const std::uint64_t entries = offsets[k + 1] >= offsets[k] ? offsets[k + 1] - offsets[k] : 0;
    part.bytes = entries * entry_bytes + (majors + 1) * 8;
    part.decoded_bytes = part.bytes;
  }
  return out;
}

}  // namespace

Result<Plan> plan_sources(Comm& comm, Store& source_store, const ShardPattern& source_pattern,
                          const ShardingSpec& old_spec, const ShardingSpec& new_spec, const std::string& source_group) {
  if (old_spec.axis == Axis::kGrid && !source_pattern.has_row() && !source_pattern.has_col() && !old_spec.shape) {
    return Status::Invalid("grid source pattern " + source_pattern.text() +
                           " uses {i} only; give shape=NxM in the old scheme or name files with {row} and {col}");
  }

  // 1. Which shards exist.
  RESHARD_ASSIGN_OR_RETURN(auto keys, list_everywhere(comm, source_store, source_pattern.directory(), "source"));
  std::vector<Candidate> candidates;
  for (const auto& key : keys) {
    if (auto name = source_pattern.match(key)) candidates.push_back({key, *name});
  }
  if (candidates.empty()) {
    return Status::Invalid("no source shards match " + source_pattern.text());
  }

  // 2. Headers, read round-robin over the listing and shared with everyone.
  std::vector<HeaderReport> headers(candidates.size());
  {
    json mine = json::array();
    Status local;
    for (std::size_t slot = static_cast<std::size_t>(comm.rank()); slot < candidates.size();
         slot += static_cast<std::size_t>(comm.size())) {
      auto header = read_source_header(source_store, candidates[slot].key, source_group);
      if (!header.ok()) {
        local = header.status().with_context("reading " + source_store.url(candidates[slot].key));
        break;
      }
      mine.push_back({{"slot", slot},
                      {"rows", header->shape_and_format.nrows},
                      {"cols", header->shape_and_format.ncols},
                      {"size", header->info.size},
                      {"version", header->info.version},
                      {"tail_crc", header->tail_crc},
                      {"decoded_bytes", header->decoded_bytes},
                      {"format", static_cast<int>(header->shape_and_format.format)},
                      {"members", header->members},
                      {"compression", header->compression},
                      {"group", header->group}});
    }
    RESHARD_RETURN_IF_ERROR(agree(comm, local));
    for (const auto& bytes : comm.allgather(json_bytes(mine))) {
      for (const auto& item : parse_json_bytes(bytes)) {
        auto& h = headers[item["slot"].get<std::size_t>()];
        h.slot = item["slot"].get<std::uint64_t>();
        h.shape.nrows = item["rows"].get<std::uint64_t>();
        h.shape.ncols = item["cols"].get<std::uint64_t>();
        h.info.size = item["size"].get<std::uint64_t>();
        h.info.version = item["version"].get<std::string>();
        h.tail_crc = item["tail_crc"].get<std::uint32_t>();
        h.decoded_bytes = item["decoded_bytes"].get<std::uint64_t>();
        h.shape.format = static_cast<npz::SparseFormat>(item["format"].get<int>());
        h.members = item["members"].get<std::vector<std::string>>();
        h.compression = item["compression"].get<std::string>();
        h.group = item["group"].get<std::string>();
      }
    }
  }

  // 3. Number the shards and find the block grid.
  std::uint64_t row_blocks = 1;
  std::uint64_t col_blocks = 1;
  const bool by_position = !source_pattern.has_index();
  if (by_position) {
    for (const auto& c : candidates) {
      row_blocks = std::max(row_blocks, c.name.row_block.value_or(0) + 1);
      col_blocks = std::max(col_blocks, c.name.col_block.value_or(0) + 1);
    }
  }
  std::uint64_t expected = 0;
  if (old_spec.hashed()) {
    expected = old_spec.num_shards;
  } else if (old_spec.shape) {
    RESHARD_ASSIGN_OR_RETURN(ShardMap map, ShardMap::bind(old_spec, *old_spec.shape));
    expected = map.shard_count();
    row_blocks = map.row_blocks();
    col_blocks = map.col_blocks();
  } else if (old_spec.ranged()) {
    // The ranges name every shard, present or not.
    row_blocks = old_spec.axis == Axis::kCols ? 1 : old_spec.row_starts.size();
    col_blocks = old_spec.axis == Axis::kRows ? 1 : old_spec.col_starts.size();
    expected = row_blocks * col_blocks;
  } else if (by_position) {
    expected = row_blocks * col_blocks;
  } else {
    for (const auto& c : candidates) expected = std::max(expected, *c.name.index + 1);
  }
  if (!old_spec.shape && !old_spec.hashed() && !old_spec.ranged() && !by_position) {
    if (old_spec.axis == Axis::kRows) row_blocks = expected;
    if (old_spec.axis == Axis::kCols) col_blocks = expected;
  }
  std::vector<SourceShard> shards(expected);
  std::vector<bool> present(expected, false);
  for (std::size_t slot = 0; slot < candidates.size(); ++slot) {
    const auto& name = candidates[slot].name;
    std::uint64_t index = 0;
    if (by_position) {
      index = name.row_block.value_or(0) * col_blocks + name.col_block.value_or(0);
      if (name.row_block.value_or(0) >= row_blocks || name.col_block.value_or(0) >= col_blocks) index = expected;
    } else {
      index = *name.index;
    }
    if (index >= expected) {
      return Status::Invalid("source shard " + source_store.url(candidates[slot].key) + " is beyond the " +
                             std::to_string(expected) + " shards of " + old_spec.to_text());
    }
    if (present[index]) {
      return Status::Invalid("source shard " + std::to_string(index) +
                             " is named twice: " + source_store.url(candidates[slot].key));
    }
    present[index] = true;
    auto& s = shards[index];
    s.index = index;
    s.key = candidates[slot].key;
    s.nrows = headers[slot].shape.nrows;
    s.ncols = headers[slot].shape.ncols;
    s.bytes = headers[slot].info.size;
    s.version = headers[slot].info.version;
    s.tail_crc = headers[slot].tail_crc;
    s.decoded_bytes = headers[slot].decoded_bytes;
    s.format = headers[slot].shape.format;
    s.members = headers[slot].members;
    s.compression = headers[slot].compression;
    s.group = headers[slot].group;
  }
  for (std::uint64_t i = 0; i < expected; ++i) {
    if (present[i]) continue;
    const std::uint64_t rb = old_spec.hashed() ? i : i / col_blocks;
    const std::uint64_t cb = old_spec.hashed() ? i : i % col_blocks;
    const std::string key =
        source_pattern.render(i, old_spec.axis == Axis::kCols ? 0 : rb, old_spec.axis == Axis::kRows ? 0 : cb);
    // Listing shows only files; something else at the shard's path (a
    // directory, a FIFO, a link loop) is named for what it is.
    if (auto there = source_store.stat(key); !there.ok()) return there.status().with_context("source shard");
    return Status::Invalid("missing source shard " + source_store.url(key));
  }

  // 4. Global shape, checked shard by shard.
  Plan plan;
  RESHARD_ASSIGN_OR_RETURN(plan.shape, derive_shape(old_spec, shards, row_blocks, col_blocks));
  if (new_spec.shape && *new_spec.shape != plan.shape) {
    return Status::Invalid("new scheme says shape " + shape_text(new_spec.shape->nrows, new_spec.shape->ncols) +
                           " but the source matrix is " + shape_text(plan.shape.nrows, plan.shape.ncols));
  }
  {
    auto map = ShardMap::bind(old_spec, plan.shape);
    if (!map.ok()) return map.status().with_context("old scheme");
    plan.source_map = std::move(map).value();
  }
  if (source_pattern.names_one_file() && plan.source_map.shard_count() != 1) {
    return Status::Invalid("source pattern " + source_pattern.text() + " names one file, but " + old_spec.to_text() +
                           " has " + std::to_string(plan.source_map.shard_count()) +
                           " shards; use {i} in the pattern, or the scheme 'single'");
  }
  RESHARD_RETURN_IF_ERROR(check_source_shapes(plan.source_map, shards, source_store));
  if (old_spec.hashed()) {
    std::uint64_t total = 0;
    for (const auto& s : shards) total += old_spec.axis == Axis::kRows ? s.nrows : s.ncols;
    const std::uint64_t extent = old_spec.axis == Axis::kRows ? plan.shape.nrows : plan.shape.ncols;
    if (total != extent) {
      return Status::Invalid("hashed source shards hold " + std::to_string(total) + " " +
                             (old_spec.axis == Axis::kRows ? "rows" : "columns") + " but the matrix has " +
                             std::to_string(extent));
    }
  }
  // One local HDF5 file is read by every rank, a part each in turn.
  if (source_pattern.names_one_file() && h5sparse::is_hdf5_key(shards.front().key)) {
    auto parts = split_into_parts(source_store, shards.front());
    if (!parts.ok()) return parts.status().with_context("reading " + source_store.url(shards.front().key));
    shards = std::move(parts).value();
  }
  for (auto& s : shards) s.reader = static_cast<int>(s.index % static_cast<std::uint64_t>(comm.size()));
  plan.sources = std::move(shards);

  // 5. The destination scheme over the source's shape.
  {
    auto map = ShardMap::bind(new_spec, plan.shape);
    if (!map.ok()) return map.status().with_context("new scheme");
    plan.destination_map = std::move(map).value();
  }
  const std::uint64_t dst_count = plan.destination_map.shard_count();
  // Buckets tag entries with a 32-bit destination id.
  if (dst_count >= (1ULL << 32) - 1) {
    return Status::Invalid("new scheme " + new_spec.to_text() + " gives " + std::to_string(dst_count) +
                           " destination shards; at most 4294967294 are supported");
  }
  // The shuffle packs (row, col) into one 64-bit key (pipeline/entry.hpp).
  if (!EntryKeyCodec::fits(plan.shape)) {
    return Status::Invalid(
        "the matrix is " + shape_text(plan.shape.nrows, plan.shape.ncols) + ": its row and column indices need " +
        std::to_string(EntryKeyCodec::bits_for(plan.shape.nrows) + EntryKeyCodec::bits_for(plan.shape.ncols)) +
        " bits together, and at most 64 are supported");
  }
  return plan;
}

std::uint64_t file_part_count(const Plan& plan, int ranks, std::uint64_t working_bytes) {
  const bool csr = plan.destination_map.spec().layout == Layout::kCsr;
  const std::uint64_t nmajor = csr ? plan.shape.nrows : plan.shape.ncols;
  std::uint64_t array_bytes = 0;
  for (const auto& s : plan.sources) array_bytes += s.decoded_bytes;
  // Assembly holds about 4x a part's arrays (memory_cost::assemble: 48
  // bytes per entry of ~12).
  const std::uint64_t half = std::max<std::uint64_t>(1, working_bytes / 2);
  const std::uint64_t parts =
      std::max({static_cast<std::uint64_t>(std::max(1, ranks)), (4 * array_bytes + half - 1) / half,
                (array_bytes + kPartBytes - 1) / kPartBytes});
  return std::max<std::uint64_t>(1, std::min(nmajor, parts));
}

Result<Plan> plan_file_parts(const Plan& plan, std::uint64_t parts, std::vector<std::uint64_t>& part_bounds) {
  const bool csr = plan.destination_map.spec().layout == Layout::kCsr;
  const std::uint64_t nmajor = csr ? plan.shape.nrows : plan.shape.ncols;
  ShardingSpec spec;
  spec.axis = csr ? Axis::kRows : Axis::kCols;
  spec.layout = plan.destination_map.spec().layout;
  part_bounds = even_bounds(nmajor, parts);
  auto& starts = csr ? spec.row_starts : spec.col_starts;
  starts.assign(part_bounds.begin(), part_bounds.end() - 1);
  Plan routing = plan;
  auto map = ShardMap::bind(spec, plan.shape);
  if (!map.ok()) return map.status().with_context("cutting the destination file into parts");
  routing.destination_map = std::move(map).value();
  const std::string key = plan.destinations.front().key;
  routing.destinations.resize(parts);
  for (std::uint64_t k = 0; k < parts; ++k) routing.destinations[k] = {k, key, routing.destination_map.box(k)};
  routing.owner = DestinationOwner(parts, 1);
  return routing;
}

Result<Plan> make_plan(Comm& comm, Store& source_store, const ShardPattern& source_pattern, Store& destination_store,
                       const ShardPattern& destination_pattern, const JobConfig& config) {
  RESHARD_RETURN_IF_ERROR(
      check_destination_place(source_store, source_pattern, destination_store, destination_pattern));
  RESHARD_ASSIGN_OR_RETURN(Plan plan, plan_sources(comm, source_store, source_pattern, config.old_spec, config.new_spec,
                                                   config.source_group));
  const std::uint64_t dst_count = plan.destination_map.shard_count();
  if (destination_pattern.names_one_file() && dst_count != 1) {
    return Status::Invalid("destination pattern " + destination_pattern.text() + " names one file, but " +
                           config.new_spec.to_text() + " has " + std::to_string(dst_count) +
                           " shards; use {i} in the pattern, or the scheme 'single'");
  }
  // 6. Destination shards and their owners.
  plan.owner = DestinationOwner(dst_count, comm.size());
  std::set<std::string> destination_keys;
  plan.destinations.resize(dst_count);
  for (std::uint64_t d = 0; d < dst_count; ++d) {
    auto& dst = plan.destinations[d];
    dst.index = d;
    dst.box = plan.destination_map.box(d);
    dst.key = destination_key(destination_pattern, plan.destination_map, d);
    if (!destination_keys.insert(dst.key).second) {
      return Status::Invalid("destination pattern " + destination_pattern.text() + " gives two shards the name " +
                             dst.key + "; use {i}, or both {row} and {col}");
    }
  }

  // 7. What the destination already holds (the commit stage decides whether
  // that is an earlier run to resume or a dataset to refuse to clobber).
  plan.destination_directory = destination_pattern.control_prefix();
  plan.written_key_prefix =
      destination_pattern.names_one_file() ? destination_pattern.text() : destination_pattern.directory();
  RESHARD_ASSIGN_OR_RETURN(auto existing,
                           list_everywhere(comm, destination_store, destination_pattern.directory(), "destination"));
  for (const auto& key : existing) {
    if (!destination_pattern.match(key)) continue;
    plan.existing_destination_keys.push_back(key);
    if (!destination_keys.count(key)) plan.stale_destination_keys.push_back(key);
  }
  return plan;
}

}  // namespace reshard

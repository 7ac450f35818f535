#include "reshard/sharding_spec.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>
#include <vector>

#include "reshard/hash.hpp"

namespace reshard {
namespace {

constexpr std::uint64_t kMaxHashedShards = std::numeric_limits<std::int32_t>::max();

Result<std::uint64_t> parse_uint(std::string_view text, std::string_view what) {
  std::uint64_t value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return Status::Invalid(std::string(what) + " '" + std::string(text) + "' is not a non-negative integer");
  }
  return value;
}

// "RxC"
Result<std::pair<std::uint64_t, std::uint64_t>> parse_pair(std::string_view text, std::string_view what) {
  const auto x = text.find('x');
  if (x == std::string_view::npos) {
    return Status::Invalid(std::string(what) + " '" + std::string(text) + "' must look like NxM");
  }
  RESHARD_ASSIGN_OR_RETURN(std::uint64_t a, parse_uint(text.substr(0, x), what));
  RESHARD_ASSIGN_OR_RETURN(std::uint64_t b, parse_uint(text.substr(x + 1), what));
  return std::pair<std::uint64_t, std::uint64_t>(a, b);
}

Result<HashKind> parse_hash(std::string_view name) {
  if (name == "mod") return HashKind::kMod;
  if (name == "mix") return HashKind::kMix;
  if (name == "jump") return HashKind::kJump;
  if (name == "rendezvous") return HashKind::kRendezvous;
  return Status::Invalid("unknown hash '" + std::string(name) + "' (expected mod, mix, jump or rendezvous)");
}

Result<Axis> parse_axis(std::string_view name) {
  if (name == "rows") return Axis::kRows;
  if (name == "cols") return Axis::kCols;
  if (name == "grid") return Axis::kGrid;
  return Status::Invalid("unknown scheme kind '" + std::string(name) + "' (expected rows, cols or grid)");
}

Result<Layout> parse_layout(std::string_view name) {
  if (name == "csr") return Layout::kCsr;
  if (name == "csc") return Layout::kCsc;
  return Status::Invalid("unknown layout '" + std::string(name) + "' (expected csr or csc)");
}

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return a == 0 ? 0 : (a - 1) / b + 1; }

}  // namespace

std::string axis_name(Axis axis) {
  switch (axis) {
    case Axis::kRows: return "rows";
    case Axis::kCols: return "cols";
    case Axis::kGrid: return "grid";
  }
  return "?";
}

std::string hash_name(HashKind hash) {
  switch (hash) {
    case HashKind::kNone: return "none";
    case HashKind::kMod: return "mod";
    case HashKind::kMix: return "mix";
    case HashKind::kJump: return "jump";
    case HashKind::kRendezvous: return "rendezvous";
  }
  return "?";
}

namespace {

Status check_starts(const std::vector<std::uint64_t>& starts, const char* key) {
  if (starts.empty()) return Status::Ok();
  if (starts.front() != 0) {
    return Status::Invalid(std::string(key) + " must start at 0 (the first shard's first index), not " +
                           std::to_string(starts.front()));
  }
  for (std::size_t i = 1; i < starts.size(); ++i) {
    if (starts[i] <= starts[i - 1]) {
      return Status::Invalid(std::string(key) + " must be strictly ascending: " + std::to_string(starts[i]) +
                             " follows " + std::to_string(starts[i - 1]));
    }
  }
  return Status::Ok();
}

// One axis of a block scheme is split by a block size or by ranges, never
// both and never neither.
Status check_split(std::uint64_t block, const std::vector<std::uint64_t>& starts, const char* block_key,
                   const char* ranges_key, const char* scheme) {
  if (block != 0 && !starts.empty()) {
    return Status::Invalid(std::string(scheme) + " scheme takes " + block_key + " or " + ranges_key + ", not both");
  }
  if (block == 0 && starts.empty()) {
    return Status::Invalid(std::string(scheme) + " scheme needs " + block_key + " with a size > 0, " + ranges_key +
                           "=0,..." + (std::string(scheme) == "grid" ? "" : ", or hash=..."));
  }
  return check_starts(starts, ranges_key);
}

}  // namespace

Status ShardingSpec::validate() const {
  if (hashed()) {
    if (axis == Axis::kGrid) return Status::Invalid("grid schemes take block=RxC, not hash");
    if (num_shards == 0) return Status::Invalid("hashed scheme needs shards=N with N > 0");
    if (num_shards > kMaxHashedShards) return Status::Invalid("shards must be at most 2^31-1");
    if (ranged()) return Status::Invalid("hashed scheme takes no ranges");
    return Status::Ok();
  }
  if (num_shards != 0) return Status::Invalid("shards=N only goes with hash=...");
  switch (axis) {
    case Axis::kRows:
      if (!col_starts.empty()) return Status::Invalid("rows scheme takes no column ranges");
      return check_split(block_rows, row_starts, "block=R", "ranges", "rows");
    case Axis::kCols:
      if (!row_starts.empty()) return Status::Invalid("cols scheme takes no row ranges");
      return check_split(block_cols, col_starts, "block=C", "ranges", "cols");
    case Axis::kGrid:
      if (block_rows == 0 && row_starts.empty() && block_cols == 0 && col_starts.empty()) {
        return Status::Invalid("grid scheme needs block=RxC with R, C > 0, or row_ranges=0,... and col_ranges=0,...");
      }
      if (row_starts.empty() != col_starts.empty()) {
        return Status::Invalid("grid scheme takes block=RxC, or both row_ranges=0,... and col_ranges=0,...");
      }
      RESHARD_RETURN_IF_ERROR(check_split(block_rows, row_starts, "block=RxC", "row_ranges", "grid"));
      return check_split(block_cols, col_starts, "block=RxC", "col_ranges", "grid");
  }
  return Status::Ok();
}

Result<ShardingSpec> ShardingSpec::parse_text(std::string_view text) {
  // "single" is one shard holding the whole matrix: rows:ranges=0.
  if (text == "single" || text.starts_with("single,")) {
    return parse_text("rows:ranges=0" + std::string(text.substr(6)));
  }
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Status::Invalid("scheme '" + std::string(text) + "' must look like 'rows:block=R'");
  }
  ShardingSpec spec;
  RESHARD_ASSIGN_OR_RETURN(spec.axis, parse_axis(text.substr(0, colon)));
  std::string_view rest = text.substr(colon + 1);
  std::vector<std::string_view> seen_keys;
  // ranges=0,1000,5000: the items after a ranges key that have no '=' are
  // more of its starts.
  std::vector<std::uint64_t>* open_list = nullptr;
  const char* open_key = "";
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos && open_list != nullptr) {
      RESHARD_ASSIGN_OR_RETURN(std::uint64_t start, parse_uint(item, open_key));
      open_list->push_back(start);
      continue;
    }
    open_list = nullptr;
    if (eq == std::string_view::npos) return Status::Invalid("scheme option '" + std::string(item) + "' needs =value");
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    // 'block=100,block=200' is a typo, not a choice: taking either value
    // silently would shard the matrix in a way the user did not ask for.
    if (std::find(seen_keys.begin(), seen_keys.end(), key) != seen_keys.end()) {
      return Status::Invalid("scheme option '" + std::string(key) + "' is given more than once");
    }
    seen_keys.push_back(key);
    if (key == "block") {
      if (spec.axis == Axis::kGrid) {
        RESHARD_ASSIGN_OR_RETURN(auto pair, parse_pair(value, "block"));
        spec.block_rows = pair.first;
        spec.block_cols = pair.second;
      } else {
        RESHARD_ASSIGN_OR_RETURN(std::uint64_t block, parse_uint(value, "block"));
        if (block == 0) return Status::Invalid("block must be > 0");
        (spec.axis == Axis::kRows ? spec.block_rows : spec.block_cols) = block;
      }
    } else if (key == "ranges" || key == "row_ranges" || key == "col_ranges") {
      const bool rows = key == "row_ranges" || (key == "ranges" && spec.axis == Axis::kRows);
      if ((key == "ranges") == (spec.axis == Axis::kGrid)) {
        return Status::Invalid(spec.axis == Axis::kGrid
                                   ? "grid scheme takes row_ranges=... and col_ranges=..."
                                   : "scheme option '" + std::string(key) + "' is for grid schemes; use ranges=...");
      }
      open_list = rows ? &spec.row_starts : &spec.col_starts;
      open_key = rows ? "row range start" : "column range start";
      RESHARD_ASSIGN_OR_RETURN(std::uint64_t start, parse_uint(value, open_key));
      open_list->push_back(start);
    } else if (key == "hash") {
      RESHARD_ASSIGN_OR_RETURN(spec.hash, parse_hash(value));
    } else if (key == "shards") {
      RESHARD_ASSIGN_OR_RETURN(spec.num_shards, parse_uint(value, "shards"));
      if (spec.num_shards == 0) return Status::Invalid("shards must be > 0");
    } else if (key == "seed") {
      RESHARD_ASSIGN_OR_RETURN(spec.seed, parse_uint(value, "seed"));
    } else if (key == "workers") {
      RESHARD_ASSIGN_OR_RETURN(spec.workers, parse_uint(value, "workers"));
      if (spec.workers == 0) return Status::Invalid("workers must be > 0 (leave it out for the default)");
    } else if (key == "shape") {
      RESHARD_ASSIGN_OR_RETURN(auto pair, parse_pair(value, "shape"));
      spec.shape = GlobalShape{pair.first, pair.second};
    } else if (key == "layout") {
      RESHARD_ASSIGN_OR_RETURN(spec.layout, parse_layout(value));
    } else {
      return Status::Invalid("unknown scheme option '" + std::string(key) + "'");
    }
  }
  RESHARD_RETURN_IF_ERROR(spec.validate());
  return spec;
}

Result<ShardingSpec> ShardingSpec::from_json(const nlohmann::json& json) {
  if (!json.is_object()) return Status::Invalid("scheme JSON must be an object");
  ShardingSpec spec;
  auto get_uint = [&](const char* key, std::uint64_t& target) -> Status {
    if (!json.contains(key) || json[key].is_null()) return Status::Ok();
    if (!json[key].is_number_unsigned())
      return Status::Invalid(std::string("scheme JSON '") + key + "' must be a non-negative integer");
    target = json[key].get<std::uint64_t>();
    return Status::Ok();
  };
  for (const auto& [key, value] : json.items()) {
    static const char* const kKnown[] = {"axis",        "block_rows", "block_cols", "hash",       "num_shards", "seed",
                                         "num_workers", "shape",      "layout",     "row_starts", "col_starts"};
    bool known = false;
    for (const char* k : kKnown) known = known || key == k;
    if (!known) return Status::Invalid("unknown scheme JSON key '" + key + "'");
  }
  if (!json.contains("axis") || !json["axis"].is_string()) return Status::Invalid("scheme JSON needs \"axis\"");
  RESHARD_ASSIGN_OR_RETURN(spec.axis, parse_axis(json["axis"].get<std::string>()));
  RESHARD_RETURN_IF_ERROR(get_uint("block_rows", spec.block_rows));
  RESHARD_RETURN_IF_ERROR(get_uint("block_cols", spec.block_cols));
  RESHARD_RETURN_IF_ERROR(get_uint("num_shards", spec.num_shards));
  RESHARD_RETURN_IF_ERROR(get_uint("seed", spec.seed));
  RESHARD_RETURN_IF_ERROR(get_uint("num_workers", spec.workers));
  if (json.contains("hash") && !json["hash"].is_null()) {
    if (!json["hash"].is_string()) return Status::Invalid("scheme JSON \"hash\" must be a string or null");
    RESHARD_ASSIGN_OR_RETURN(spec.hash, parse_hash(json["hash"].get<std::string>()));
  }
  if (json.contains("shape") && !json["shape"].is_null()) {
    const auto& shape = json["shape"];
    if (!shape.is_array() || shape.size() != 2 || !shape[0].is_number_unsigned() || !shape[1].is_number_unsigned()) {
      return Status::Invalid("scheme JSON \"shape\" must be [rows, cols]");
    }
    spec.shape = GlobalShape{shape[0].get<std::uint64_t>(), shape[1].get<std::uint64_t>()};
  }
  auto get_starts = [&](const char* key, std::vector<std::uint64_t>& target) -> Status {
    if (!json.contains(key) || json[key].is_null()) return Status::Ok();
    const auto& list = json[key];
    if (!list.is_array() || list.empty()) {
      return Status::Invalid(std::string("scheme JSON \"") + key + "\" must be a list of range starts");
    }
    for (const auto& start : list) {
      if (!start.is_number_unsigned()) {
        return Status::Invalid(std::string("scheme JSON \"") + key + "\" must hold non-negative integers");
      }
      target.push_back(start.get<std::uint64_t>());
    }
    return Status::Ok();
  };
  RESHARD_RETURN_IF_ERROR(get_starts("row_starts", spec.row_starts));
  RESHARD_RETURN_IF_ERROR(get_starts("col_starts", spec.col_starts));
  if (json.contains("layout") && !json["layout"].is_null()) {
    if (!json["layout"].is_string()) return Status::Invalid("scheme JSON \"layout\" must be a string");
    RESHARD_ASSIGN_OR_RETURN(spec.layout, parse_layout(json["layout"].get<std::string>()));
  }
  if (!spec.hashed()) {
    // A block scheme along one axis ignores the other axis' block.
    if (spec.axis == Axis::kRows) spec.block_cols = 0;
    if (spec.axis == Axis::kCols) spec.block_rows = 0;
  } else {
    spec.block_rows = spec.block_cols = 0;
  }
  RESHARD_RETURN_IF_ERROR(spec.validate());
  return spec;
}

std::string ShardingSpec::to_text() const {
  std::string text = axis_name(axis) + ":";
  if (single()) {
    text = "single";
  } else if (hashed()) {
    text += "hash=" + hash_name(hash) + ",shards=" + std::to_string(num_shards);
    if (seed != 0) text += ",seed=" + std::to_string(seed);
  } else if (ranged()) {
    auto list = [](const std::vector<std::uint64_t>& starts) {
      std::string out;
      for (const auto start : starts) out += (out.empty() ? "" : ",") + std::to_string(start);
      return out;
    };
    if (axis == Axis::kGrid) {
      text += "row_ranges=" + list(row_starts) + ",col_ranges=" + list(col_starts);
    } else {
      text += "ranges=" + list(axis == Axis::kRows ? row_starts : col_starts);
    }
  } else if (axis == Axis::kGrid) {
    text += "block=" + std::to_string(block_rows) + "x" + std::to_string(block_cols);
  } else {
    text += "block=" + std::to_string(axis == Axis::kRows ? block_rows : block_cols);
  }
  if (workers != 0) text += ",workers=" + std::to_string(workers);
  if (shape) text += ",shape=" + std::to_string(shape->nrows) + "x" + std::to_string(shape->ncols);
  if (layout == Layout::kCsc) text += ",layout=csc";
  return text;
}

nlohmann::json ShardingSpec::to_json() const {
  nlohmann::json json;
  json["axis"] = axis_name(axis);
  json["block_rows"] = block_rows;
  json["block_cols"] = block_cols;
  json["hash"] = hashed() ? nlohmann::json(hash_name(hash)) : nlohmann::json(nullptr);
  json["num_shards"] = num_shards;
  json["seed"] = seed;
  json["num_workers"] = workers;
  json["shape"] = shape ? nlohmann::json::array({shape->nrows, shape->ncols}) : nlohmann::json(nullptr);
  json["layout"] = layout == Layout::kCsc ? "csc" : "csr";
  // Only when used, so the JSON of block and hash schemes (in manifests
  // written before ranges existed) is unchanged.
  if (!row_starts.empty()) json["row_starts"] = row_starts;
  if (!col_starts.empty()) json["col_starts"] = col_starts;
  return json;
}

Result<ShardMap> ShardMap::bind(const ShardingSpec& spec, GlobalShape shape) {
  RESHARD_RETURN_IF_ERROR(spec.validate());
  if (spec.shape && *spec.shape != shape) {
    return Status::Invalid("scheme says shape " + std::to_string(spec.shape->nrows) + "x" +
                           std::to_string(spec.shape->ncols) + " but the matrix is " + std::to_string(shape.nrows) +
                           "x" + std::to_string(shape.ncols));
  }
  ShardMap map;
  map.spec_ = spec;
  map.shape_ = shape;
  if (spec.hashed()) {
    map.shard_count_ = spec.num_shards;
    (spec.axis == Axis::kRows ? map.row_blocks_ : map.col_blocks_) = spec.num_shards;
  } else {
    // A range that starts at or past the end of its axis would be a shard
    // no entry can reach: almost surely a list meant for another matrix.
    for (const bool rows : {true, false}) {
      const auto& starts = rows ? spec.row_starts : spec.col_starts;
      const std::uint64_t extent = rows ? shape.nrows : shape.ncols;
      if (!starts.empty() && starts.back() >= extent && starts.size() > 1) {
        return Status::Invalid(std::string(rows ? "row" : "column") + " range start " + std::to_string(starts.back()) +
                               " is not inside the matrix's " + std::to_string(extent) + (rows ? " rows" : " columns"));
      }
    }
    auto blocks = [](std::uint64_t extent, std::uint64_t block, const std::vector<std::uint64_t>& starts) {
      if (!starts.empty()) return static_cast<std::uint64_t>(starts.size());
      return std::max<std::uint64_t>(1, ceil_div(extent, block));
    };
    map.row_blocks_ = spec.axis == Axis::kCols ? 1 : blocks(shape.nrows, spec.block_rows, spec.row_starts);
    map.col_blocks_ = spec.axis == Axis::kRows ? 1 : blocks(shape.ncols, spec.block_cols, spec.col_starts);
    map.shard_count_ = map.row_blocks_ * map.col_blocks_;
    if (spec.block_rows > 0) map.row_block_divisor_ = BlockDivisor(spec.block_rows);
    if (spec.block_cols > 0) map.col_block_divisor_ = BlockDivisor(spec.block_cols);
  }
  return map;
}

std::uint64_t ShardMap::hashed_shard_of(std::uint64_t key) const {
  const std::uint64_t n = spec_.num_shards;
  switch (spec_.hash) {
    case HashKind::kMod: return key % n;
    case HashKind::kMix: return splitmix64(key ^ spec_.seed) % n;
    case HashKind::kJump: return jump_consistent_hash(splitmix64(key ^ spec_.seed), static_cast<std::uint32_t>(n));
    case HashKind::kRendezvous: return rendezvous_hash(key ^ spec_.seed, static_cast<std::uint32_t>(n));
    case HashKind::kNone: break;
  }
  return 0;
}

ShardBox ShardMap::box(std::uint64_t shard) const {
  ShardBox b;
  if (spec_.hashed()) {
    if (spec_.axis == Axis::kRows) {
      b.row_block = shard;
      b.col_end = shape_.ncols;
    } else {
      b.col_block = shard;
      b.row_end = shape_.nrows;
    }
    return b;
  }
  b.row_block = shard / col_blocks_;
  b.col_block = shard % col_blocks_;
  auto range = [](std::uint64_t position, std::uint64_t block, const std::vector<std::uint64_t>& starts,
                  std::uint64_t extent) -> std::pair<std::uint64_t, std::uint64_t> {
    if (!starts.empty()) {
      const std::uint64_t begin = std::min(extent, starts[position]);
      const std::uint64_t end = position + 1 < starts.size() ? std::min(extent, starts[position + 1]) : extent;
      return {begin, end};
    }
    const std::uint64_t begin = std::min(extent, position * block);
    return {begin, std::min(extent, begin + block)};
  };
  if (spec_.axis == Axis::kCols) {
    b.row_end = shape_.nrows;
  } else {
    std::tie(b.row_begin, b.row_end) = range(b.row_block, spec_.block_rows, spec_.row_starts, shape_.nrows);
  }
  if (spec_.axis == Axis::kRows) {
    b.col_end = shape_.ncols;
  } else {
    std::tie(b.col_begin, b.col_end) = range(b.col_block, spec_.block_cols, spec_.col_starts, shape_.ncols);
  }
  return b;
}

std::vector<std::vector<std::uint64_t>> ShardMap::hashed_ids(const std::vector<std::uint64_t>& shards) const {
  std::vector<std::vector<std::uint64_t>> ids(shards.size());
  if (!spec_.hashed()) return ids;
  std::vector<std::int64_t> slot(shard_count_, -1);
  for (std::size_t i = 0; i < shards.size(); ++i) slot[shards[i]] = static_cast<std::int64_t>(i);
  const std::uint64_t extent = spec_.axis == Axis::kRows ? shape_.nrows : shape_.ncols;
  for (std::uint64_t key = 0; key < extent; ++key) {
    const std::int64_t s = slot[hashed_shard_of(key)];
    if (s >= 0) ids[static_cast<std::size_t>(s)].push_back(key);
  }
  return ids;
}

std::optional<std::uint64_t> ShardMap::shard_at(std::uint64_t row_block, std::uint64_t col_block) const {
  if (row_block >= row_blocks_ || col_block >= col_blocks_) return std::nullopt;
  return row_block * col_blocks_ + col_block;
}

}  // namespace reshard

#include "reshard/sharding_spec.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <nlohmann/json.hpp>
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

Status ShardingSpec::validate() const {
  if (hashed()) {
    if (axis == Axis::kGrid) return Status::Invalid("grid schemes take block=RxC, not hash");
    if (num_shards == 0) return Status::Invalid("hashed scheme needs shards=N with N > 0");
    if (num_shards > kMaxHashedShards) return Status::Invalid("shards must be at most 2^31-1");
    return Status::Ok();
  }
  if (num_shards != 0) return Status::Invalid("shards=N only goes with hash=...");
  switch (axis) {
    case Axis::kRows:
      if (block_rows == 0) return Status::Invalid("rows scheme needs block=R with R > 0, or hash=...");
      break;
    case Axis::kCols:
      if (block_cols == 0) return Status::Invalid("cols scheme needs block=C with C > 0, or hash=...");
      break;
    case Axis::kGrid:
      if (block_rows == 0 || block_cols == 0) return Status::Invalid("grid scheme needs block=RxC with R, C > 0");
      break;
  }
  return Status::Ok();
}

Result<ShardingSpec> ShardingSpec::parse_text(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Status::Invalid("scheme '" + std::string(text) + "' must look like 'rows:block=R'");
  }
  ShardingSpec spec;
  RESHARD_ASSIGN_OR_RETURN(spec.axis, parse_axis(text.substr(0, colon)));
  std::string_view rest = text.substr(colon + 1);
  std::vector<std::string_view> seen_keys;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const auto eq = item.find('=');
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
    static const char* const kKnown[] = {"axis", "block_rows",  "block_cols", "hash",  "num_shards",
                                         "seed", "num_workers", "shape",      "layout"};
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
  if (hashed()) {
    text += "hash=" + hash_name(hash) + ",shards=" + std::to_string(num_shards);
    if (seed != 0) text += ",seed=" + std::to_string(seed);
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
    map.row_blocks_ = spec.axis == Axis::kCols ? 1 : std::max<std::uint64_t>(1, ceil_div(shape.nrows, spec.block_rows));
    map.col_blocks_ = spec.axis == Axis::kRows ? 1 : std::max<std::uint64_t>(1, ceil_div(shape.ncols, spec.block_cols));
    map.shard_count_ = map.row_blocks_ * map.col_blocks_;
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
  if (spec_.axis == Axis::kCols) {
    b.row_end = shape_.nrows;
  } else {
    b.row_begin = std::min(shape_.nrows, b.row_block * spec_.block_rows);
    b.row_end = std::min(shape_.nrows, b.row_begin + spec_.block_rows);
  }
  if (spec_.axis == Axis::kRows) {
    b.col_end = shape_.ncols;
  } else {
    b.col_begin = std::min(shape_.ncols, b.col_block * spec_.block_cols);
    b.col_end = std::min(shape_.ncols, b.col_begin + spec_.block_cols);
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

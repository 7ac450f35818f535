#include "reshard/pipeline/survey.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <future>
#include <numeric>
#include <type_traits>

#include "reshard/cpu_share.hpp"
#include "reshard/format/h5sparse.hpp"
#include "reshard/format/npz.hpp"
#include "reshard/pipeline/entry.hpp"
#include "reshard/pipeline/json_messages.hpp"
#include "reshard/pipeline/memory_budget.hpp"
#include "reshard/pipeline/ownership.hpp"
#include "reshard/pipeline/plan.hpp"
#include "reshard/pipeline/read.hpp"
#include "reshard/planning/partition.hpp"
#include "reshard/planning/weights.hpp"
#include "reshard/shard_pattern.hpp"
#include "reshard/store/store.hpp"

namespace reshard {
namespace {

using nlohmann::json;

// Which coordinates the survey must know for each entry.
struct Needs {
  bool rows = false;
  bool cols = false;
};

Needs needs_of(const ShardingSpec& spec) {
  switch (spec.axis) {
    case Axis::kRows: return {true, false};
    case Axis::kCols: return {false, true};
    case Axis::kGrid: return {true, true};
  }
  return {true, true};
}

// Calls f(i, value) for every element of an index array, at its own width.
template <typename F>
void for_each_index(const npy::ArrayView& array, F&& f) {
  const std::uint64_t n = array.element_count();
  const std::uint8_t* base = array.data.data();
  if (array.dtype.itemsize == 8) {
    for (std::uint64_t i = 0; i < n; ++i)
      f(i, static_cast<std::uint64_t>(npz::detail::load_index<std::int64_t>(base, i)));
  } else {
    for (std::uint64_t i = 0; i < n; ++i)
      f(i, static_cast<std::uint64_t>(npz::detail::load_index<std::int32_t>(base, i)));
  }
}

std::uint64_t index_at(const npy::ArrayView& array, std::uint64_t i) {
  return static_cast<std::uint64_t>(npy::integer_at(array, i));
}

// Calls f(global_row, global_col, count) for the shard's entries: a whole
// line at a time (count = its length) when the other axis is not needed, else
// entry by entry. A coordinate that is not needed is passed as 0.
template <typename F>
void for_each_located(const npz::SparseStructure& st, const ShardBox& box, Needs needs, F&& f) {
  auto global_row = [&](std::uint64_t r) { return st.row_ids ? index_at(*st.row_ids, r) : r + box.row_begin; };
  auto global_col = [&](std::uint64_t c) { return st.col_ids ? index_at(*st.col_ids, c) : c + box.col_begin; };
  if (st.format == npz::SparseFormat::kCoo) {
    if (st.minor) {
      std::vector<std::uint64_t> rows(st.nnz);
      for_each_index(st.major, [&](std::uint64_t k, std::uint64_t r) { rows[k] = r; });
      for_each_index(*st.minor, [&](std::uint64_t k, std::uint64_t c) { f(global_row(rows[k]), global_col(c), 1); });
    } else {
      for_each_index(st.major, [&](std::uint64_t, std::uint64_t r) { f(global_row(r), 0, 1); });
    }
    return;
  }
  const bool csr = st.format == npz::SparseFormat::kCsr;
  if (st.minor && !(csr ? needs.rows : needs.cols) && !(csr ? st.col_ids : st.row_ids)) {
    // Only the minor axis matters (row blocks -> column blocks): the
    // indices alone, in one tight pass, without indptr.
    const std::uint64_t offset = csr ? box.col_begin : box.row_begin;
    auto walk = [&](auto index_tag) {
      using Index = decltype(index_tag);
      const std::uint8_t* base = st.minor->data.data();
      for (std::uint64_t k = 0; k < st.nnz; ++k) {
        const auto minor = static_cast<std::uint64_t>(npz::detail::load_index<Index>(base, k)) + offset;
        if (csr) {
          f(0, minor, 1);
        } else {
          f(minor, 0, 1);
        }
      }
    };
    if (st.minor->dtype.itemsize == 8) {
      walk(std::int64_t{});
    } else {
      walk(std::int32_t{});
    }
    return;
  }
  // indptr is read where it lies, at its own width, not copied.
  const std::uint8_t* indptr = st.major.data.data();
  const bool wide_indptr = st.major.dtype.itemsize == 8;
  auto pointer_at = [indptr, wide_indptr](std::uint64_t i) {
    return wide_indptr ? static_cast<std::uint64_t>(npz::detail::load_index<std::int64_t>(indptr, i))
                       : static_cast<std::uint64_t>(npz::detail::load_index<std::int32_t>(indptr, i));
  };
  const bool need_minor = csr ? needs.cols : needs.rows;
  const std::uint64_t lines = st.major.element_count();
  for (std::uint64_t line = 0; line + 1 < lines; ++line) {
    const std::uint64_t begin = pointer_at(line);
    const std::uint64_t end = pointer_at(line + 1);
    if (begin == end) continue;
    const std::uint64_t major_global = csr ? global_row(line) : global_col(line);
    if (!need_minor) {
      f(csr ? major_global : 0, csr ? 0 : major_global, end - begin);
      continue;
    }
    const std::uint8_t* base = st.minor->data.data();
    const bool wide = st.minor->dtype.itemsize == 8;
    for (std::uint64_t k = begin; k < end; ++k) {
      const std::uint64_t minor = wide ? static_cast<std::uint64_t>(npz::detail::load_index<std::int64_t>(base, k))
                                       : static_cast<std::uint64_t>(npz::detail::load_index<std::int32_t>(base, k));
      if (csr) {
        f(major_global, global_col(minor), 1);
      } else {
        f(global_row(minor), major_global, 1);
      }
    }
  }
}

// A stored `indices` member counted per line in pieces through small reads:
// no copy of the whole array and no fresh pages to zero, which were half of
// plan's time on uncompressed sources. Checked as decode_structure checks
// it (dtype, length, range) and against the member's CRC-32.
constexpr std::uint64_t kStreamPiece = 512 << 10;  // under malloc's mmap threshold: reused

template <typename Counter>
Status count_stored_minor(Store& store, const std::string& key, std::uint64_t file_size, const zip::MemberInfo& member,
                          std::uint64_t nnz, std::uint64_t limit, std::uint64_t offset, Counter* per_line) {
  const std::string where = "array 'indices': ";
  if (member.local_header_offset >= file_size) return Status::Invalid(where + "zip member is truncated");
  RESHARD_ASSIGN_OR_RETURN(Bytes head,
                           store.read(key, member.local_header_offset,
                                      std::min<std::uint64_t>(file_size - member.local_header_offset, kStreamPiece)));
  RESHARD_ASSIGN_OR_RETURN(std::uint64_t data_begin, zip::member_data_offset(head, member));
  if (data_begin + member.compressed_size > file_size) return Status::Invalid(where + "zip member is truncated");
  const ByteView prefix = ByteView(head).subspan(data_begin - member.local_header_offset);
  auto header = npy::parse_header(prefix);
  if (!header.ok()) return header.status().with_context("array 'indices'");
  const auto& dtype = header->dtype;
  if (header->shape.size() != 1) return Status::Invalid(where + "'indices' is not one-dimensional");
  if (dtype.kind != 'i' || (dtype.itemsize != 4 && dtype.itemsize != 8)) {
    return Status::Invalid(where + "'indices' has dtype " + dtype.name() + "; int32 or int64 expected");
  }
  if (header->shape[0] != nnz) {
    return Status::Invalid(where + "indices length " + std::to_string(header->shape[0]) + " does not match indptr's " +
                           std::to_string(nnz) + " entries");
  }
  if (header->data_offset + header->payload_bytes != member.compressed_size) {
    return Status::Invalid(where + "zip member size does not match the array");
  }
  std::uint32_t crc = zip::crc32(prefix.subspan(0, header->data_offset));
  const std::uint64_t width = dtype.itemsize;
  const std::uint64_t piece = kStreamPiece / width * width;
  std::uint64_t index = 0;
  for (std::uint64_t done = 0; done < header->payload_bytes; done += piece) {
    const std::uint64_t length = std::min(piece, header->payload_bytes - done);
    RESHARD_ASSIGN_OR_RETURN(Bytes bytes, store.read(key, data_begin + header->data_offset + done, length));
    if (bytes.size() != length) return Status::Invalid(where + "zip member is truncated");
    crc = zip::crc32(bytes, crc);
    const std::uint64_t count = length / width;
    auto walk = [&](auto index_tag) -> Status {
      using Index = decltype(index_tag);
      for (std::uint64_t k = 0; k < count; ++k) {
        const auto value = static_cast<std::int64_t>(npz::detail::load_index<Index>(bytes.data(), k));
        if (value < 0 || static_cast<std::uint64_t>(value) >= limit) {
          return Status::Invalid(where + "indices[" + std::to_string(index + k) + "] = " + std::to_string(value) +
                                 " is out of range [0, " + std::to_string(limit) + ")");
        }
        per_line[static_cast<std::uint64_t>(value) + offset] += 1;
      }
      return Status::Ok();
    };
    RESHARD_RETURN_IF_ERROR(width == 8 ? walk(std::int64_t{}) : walk(std::int32_t{}));
    index += count;
  }
  if (crc != member.crc32) return Status::Invalid(where + "CRC-32 mismatch in member " + member.name);
  return Status::Ok();
}

// The destination shard that is the same file as source shard `s` (same
// box under block schemes, same index under the same hashing), if any:
// entries that stay in it do not change shard.
std::optional<std::uint64_t> same_shard(const Plan& plan, const SourceShard& s) {
  const auto& from = plan.source_map.spec();
  const auto& to = plan.destination_map.spec();
  if (from.hashed() || to.hashed()) {
    const bool same_hashing =
        from.hashed() && to.hashed() && from.axis == to.axis && from.hash == to.hash && from.seed == to.seed;
    if (same_hashing && s.index < plan.destination_map.shard_count()) return s.index;
    return std::nullopt;
  }
  if (s.box.rows() == 0 || s.box.cols() == 0) return std::nullopt;
  const std::uint64_t d = plan.destination_map.shard_of(s.box.row_begin, s.box.col_begin);
  const ShardBox b = plan.destination_map.box(d);
  if (b.row_begin == s.box.row_begin && b.row_end == s.box.row_end && b.col_begin == s.box.col_begin &&
      b.col_end == s.box.col_end) {
    return d;
  }
  return std::nullopt;
}

// The value item size from the data member's sizes: the npy header is
// 64-4096 bytes and a multiple of 16, so for any nnz past a few thousand
// exactly one width fits.
std::uint64_t value_itemsize(const zip::MemberInfo& data, std::uint64_t nnz) {
  if (nnz == 0) return 8;
  for (const std::uint64_t width : {8u, 4u, 2u, 1u}) {
    if (data.uncompressed_size < nnz * width) continue;
    const std::uint64_t header = data.uncompressed_size - nnz * width;
    if (header >= 64 && header <= 4096 && header % 16 == 0) return width;
  }
  return 8;
}

// Bytes of an npz member holding `payload` bytes: npy header, zip local and
// central headers with the name and a ZIP64 extra field.
std::uint64_t member_bytes(std::uint64_t payload, std::uint64_t name_length) {
  return payload + 128 + 30 + 46 + 2 * name_length + 40;
}

struct SourceCounts {
  // held[r * shards + d]: entries the modelled rank r reads for shard d.
  std::vector<std::uint64_t> held;
  std::vector<std::uint64_t> lines;  // entries per line group along the balance axis
  std::uint64_t staying = 0;         // entries whose shard does not change
  // Per modelled rank: the largest source decode and the largest source.
  std::vector<std::uint64_t> decode_peak;
  std::vector<std::uint64_t> largest_source;
  // Over the structure read: data bytes stored and decoded, for the
  // compression ratio and the value width.
  std::uint64_t payload_stored = 0;
  std::uint64_t payload_decoded = 0;
  std::uint64_t value_width = 0;
  std::uint64_t bytes_read = 0;
};

std::string shard_name(const std::optional<ShardPattern>& pattern, const ShardMap& map, std::uint64_t d) {
  if (pattern) return destination_key(*pattern, map, d);
  return "shard " + std::to_string(d);
}

// Element-wise maximum over all ranks (small vectors: one per modelled rank).
void max_each(Comm& comm, std::vector<std::uint64_t>& values) {
  const ByteView mine(reinterpret_cast<const std::uint8_t*>(values.data()), values.size() * sizeof(std::uint64_t));
  for (const auto& theirs : comm.allgather(mine)) {
    for (std::size_t i = 0; i < values.size() && (i + 1) * sizeof(std::uint64_t) <= theirs.size(); ++i) {
      std::uint64_t v = 0;
      std::memcpy(&v, theirs.data() + i * sizeof(std::uint64_t), sizeof(v));
      values[i] = std::max(values[i], v);
    }
  }
}

// Sums per-line counts onto rank 0. Open MPI's MPI_Reduce moved 160 MB of
// counts (20M rows) in 0.5-0.7 s between two ranks here; sending each
// rank's counts to rank 0 through the pipeline's all-to-all, as 32-bit
// numbers whenever no sum can reach 2^32, takes a fraction of that. Done in
// pieces so rank 0 never holds more than 256 MiB of incoming counts.
void sum_lines_to_root(Comm& comm, std::vector<std::uint64_t>& lines) {
  if (comm.size() == 1) return;
  std::uint64_t local_max = 0;
  for (const auto n : lines) local_max = std::max(local_max, n);
  const bool narrow = comm.sum(local_max) <= UINT32_MAX;
  const std::uint64_t width = narrow ? 4 : 8;
  const auto ranks = static_cast<std::uint64_t>(comm.size());
  const std::uint64_t piece = std::max<std::uint64_t>(1, (std::uint64_t{256} << 20) / width / ranks);
  ByteArray send(std::min<std::uint64_t>(piece, lines.size()) * width);
  for (std::uint64_t begin = 0; begin < lines.size(); begin += piece) {
    const std::uint64_t count = std::min(piece, lines.size() - begin);
    for (std::uint64_t i = 0; i < count; ++i) {
      if (narrow) {
        const auto n = static_cast<std::uint32_t>(lines[begin + i]);
        std::memcpy(send.data() + i * 4, &n, 4);
      } else {
        std::memcpy(send.data() + i * 8, &lines[begin + i], 8);
      }
    }
    std::vector<std::uint64_t> send_counts(ranks, 0);
    std::vector<std::uint64_t> recv_counts;
    send_counts[0] = comm.rank() == 0 ? 0 : count * width;  // rank 0's own stay put
    const ByteArray received =
        comm.alltoallv(ByteView(send.data(), count * width), send_counts, recv_counts, width, (1ULL << 31) - 1);
    if (comm.rank() != 0) continue;
    std::uint64_t offset = 0;
    for (std::uint64_t p = 0; p < ranks; ++p) {
      for (std::uint64_t i = 0; i < recv_counts[p] / width; ++i) {
        std::uint64_t n = 0;
        std::memcpy(&n, received.data() + offset + i * width, width);
        lines[begin + i] += n;
      }
      offset += recv_counts[p];
    }
  }
}

double mean_of(const std::vector<std::uint64_t>& values) {
  if (values.empty()) return 0;
  long double total = 0;
  for (const auto v : values) total += v;
  return static_cast<double>(total / values.size());
}

std::uint64_t median_of(std::vector<std::uint64_t> values) {
  if (values.empty()) return 0;
  const auto middle = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), middle, values.end());
  return *middle;
}

}  // namespace

Result<Balance> parse_balance(const std::string& text) {
  if (text == "nnz") return Balance::kNnz;
  if (text == "bytes") return Balance::kBytes;
  if (text == "weight") return Balance::kWeight;
  if (text == "weighted-nnz") return Balance::kWeightedNnz;
  return Status::Invalid("--balance '" + text + "': expected nnz, bytes, weight or weighted-nnz");
}

std::string balance_name(Balance balance) {
  switch (balance) {
    case Balance::kNone: return "none";
    case Balance::kNnz: return "nnz";
    case Balance::kBytes: return "bytes";
    case Balance::kWeight: return "weight";
    case Balance::kWeightedNnz: return "weighted-nnz";
  }
  return "?";
}

json skew_figures(const std::vector<std::uint64_t>& entries) {
  json out;
  const double mean = mean_of(entries);
  const std::uint64_t median = median_of(entries);
  const std::uint64_t max = entries.empty() ? 0 : *std::max_element(entries.begin(), entries.end());
  out["shards"] = entries.size();
  out["min"] = entries.empty() ? 0 : *std::min_element(entries.begin(), entries.end());
  out["median"] = median;
  out["mean"] = mean;
  out["max"] = max;
  out["imbalance"] = mean > 0 ? static_cast<double>(max) / mean - 1 : 0.0;
  json over_mean = json::array();
  json over_median = json::array();
  for (std::size_t d = 0; d < entries.size(); ++d) {
    if (mean > 0 && static_cast<double>(entries[d]) > 2 * mean) over_mean.push_back(d);
    if (median > 0 && entries[d] > 5 * median) over_median.push_back(d);
  }
  out["hot_over_2x_mean"] = over_mean;
  out["hot_over_5x_median"] = over_median;
  return out;
}

Result<Survey> run_survey(Comm& comm, const SurveyRequest& request) {
  const auto started = std::chrono::steady_clock::now();
  auto src = open_store(request.src_pattern);
  if (!src.ok()) return src.status().with_context("--src " + request.src_pattern);
  auto src_pattern = ShardPattern::parse(src->key);
  if (!src_pattern.ok()) return src_pattern.status().with_context("--src");
  std::optional<ShardPattern> dst_pattern;
  if (!request.dst_pattern.empty()) {
    auto dst = open_store(request.dst_pattern);
    if (!dst.ok()) return dst.status().with_context("--dst " + request.dst_pattern);
    auto parsed = ShardPattern::parse(dst->key);
    if (!parsed.ok()) return parsed.status().with_context("--dst");
    dst_pattern = std::move(parsed).value();
  }
  // plan reads index arrays out of zip members, a piece at a time; HDF5
  // shards would have to be read whole, which is the job's own work.
  if (h5sparse::is_hdf5_key(src->key)) {
    return Status::Invalid("--src " + request.src_pattern +
                           ": plan reads .npz sources only; run the job on HDF5 sources directly");
  }
  Store& store = *src->store;
  RESHARD_ASSIGN_OR_RETURN(Plan plan, plan_sources(comm, store, *src_pattern, request.old_spec, request.new_spec));
  const ShardMap& dst_map = plan.destination_map;
  const std::uint64_t shards = dst_map.shard_count();
  const int ranks = request.ranks > 0 ? request.ranks : comm.size();
  const auto& new_spec = request.new_spec;

  // What the balance works on: the new scheme's axis, in groups of lines.
  const bool balancing = request.balance != Balance::kNone;
  if (balancing && new_spec.axis == Axis::kGrid) {
    return Status::Invalid("--balance proposes row or column ranges; the new scheme " + new_spec.to_text() +
                           " is a grid (balance its rows or its columns with a rows: or cols: scheme)");
  }
  const bool weighted = request.balance == Balance::kWeight || request.balance == Balance::kWeightedNnz;
  if (weighted != request.weights_file.has_value()) {
    return Status::Invalid(weighted ? "--balance " + balance_name(request.balance) + " needs --weights FILE"
                                    : "--weights goes with --balance weight or --balance weighted-nnz");
  }
  const bool line_axis_rows = new_spec.axis != Axis::kCols;
  const std::uint64_t extent = line_axis_rows ? plan.shape.nrows : plan.shape.ncols;
  const bool count_lines = balancing || (new_spec.hashed());
  const std::uint64_t group = std::max<std::uint64_t>(1, (extent + kMaxSurveyLines - 1) / kMaxSurveyLines);
  const std::uint64_t groups = count_lines ? (extent + group - 1) / group : 0;
  std::optional<std::vector<double>> weights;
  if (weighted) {
    if (group > 1) {
      return Status::Invalid("--weights: the matrix has " + std::to_string(extent) + " " +
                             (line_axis_rows ? "rows" : "columns") + "; weights are supported up to " +
                             std::to_string(kMaxSurveyLines));
    }
    auto parsed =
        parse_weights(*request.weights_file, request.weights_name, extent, line_axis_rows ? "rows" : "columns");
    if (!parsed.ok()) return parsed.status();
    weights = std::move(parsed).value();
  }

  // Each rank surveys the sources it would read in the job (round-robin).
  Needs needs = needs_of(new_spec);
  if (count_lines) (line_axis_rows ? needs.rows : needs.cols) = true;
  SourceCounts counts;
  counts.held.assign(static_cast<std::size_t>(ranks) * shards, 0);
  // The hottest line (row or column): when the source is split along the
  // same axis, every line lies in one source, so each rank's own maximum is
  // exact and, unless a proposal needs them, per-line counts are neither
  // kept nor summed across ranks (for 20M rows, 160 MB each way).
  const bool lines_in_one_source = request.old_spec.axis == (line_axis_rows ? Axis::kRows : Axis::kCols) && group == 1;
  const bool hottest_only = count_lines && !balancing && lines_in_one_source;
  std::vector<std::uint64_t> hottest_line = {0, 0};  // entries, line group
  auto track_hottest = [&hottest_line](std::uint64_t id, std::uint64_t n) {
    if (n > hottest_line[0] || (n == hottest_line[0] && id < hottest_line[1])) hottest_line = {n, id};
  };
  if (!hottest_only) {
    counts.lines.reserve(groups + 1);  // room for the prefix sums' total
    counts.lines.assign(groups, 0);
  }
  counts.decode_peak.assign(static_cast<std::size_t>(ranks), 0);
  counts.largest_source.assign(static_cast<std::size_t>(ranks), 0);
  Status local;
  // Small ranged reads cost a syscall on a filesystem but a request on an
  // object store: only local sources are streamed.
  const bool local_store = store.local_path(src->key).has_value();
  std::vector<std::uint32_t> line_shard;      // built on first use
  std::vector<std::uint64_t> source_lines;    // one source's entries per line
  std::vector<std::uint32_t> source_lines32;  // the same, for sources under 2^32 entries
  // Fetching a source (reading and inflating its index arrays) runs on
  // worker threads, a few sources ahead of the counting: inflating is most
  // of the work on compressed sources and takes one core per source.
  struct Fetched {
    Result<SourceMembers> members = Status::Internal("not fetched");
    bool streamed = false;  // `indices` is stored: counted in pieces, not fetched
  };
  auto fetch = [&](const SourceShard& s) {
    const bool coo = s.format == npz::SparseFormat::kCoo;
    const bool csr = s.format == npz::SparseFormat::kCsr;
    std::vector<std::string> names = {coo ? "row" : "indptr"};
    const bool need_minor = coo ? needs.cols : (csr ? needs.cols : needs.rows);
    // Only the minor axis matters and no ids map it (row blocks -> column
    // blocks): a stored `indices` on a local filesystem is streamed.
    const bool minor_only = !coo && need_minor && !(csr ? needs.rows : needs.cols) &&
                            !(request.old_spec.hashed() && (request.old_spec.axis == Axis::kCols) == csr) &&
                            new_spec.axis != Axis::kGrid && group == 1;
    const bool may_stream = minor_only && local_store;
    if (need_minor && !may_stream) names.push_back(coo ? "col" : "indices");
    if (request.old_spec.hashed()) names.push_back(request.old_spec.axis == Axis::kRows ? "row_ids" : "col_ids");
    Fetched out;
    out.members = read_source_members(store, s.key, s.bytes, names);
    if (out.members.ok() && may_stream) {
      auto it = out.members->members.find("indices");
      if (it != out.members->members.end() && it->second.method == zip::Method::kStored) {
        out.streamed = true;
      } else {
        names.push_back("indices");  // deflated: inflated whole, as usual
        out.members = read_source_members(store, s.key, s.bytes, names);
      }
    }
    return out;
  };
  std::vector<const SourceShard*> mine;
  for (const auto& s : plan.sources) {
    if (s.reader == comm.rank()) mine.push_back(&s);
  }
  const auto ahead = static_cast<std::size_t>(share_of_node(cpus_of_node(), comm.ranks_on_node()));
  std::deque<std::future<Fetched>> in_flight;
  std::size_t next_fetch = 0;
  auto top_up = [&] {
    while (next_fetch < mine.size() && in_flight.size() < ahead) {
      const SourceShard* source = mine[next_fetch++];
      in_flight.push_back(std::async(std::launch::async, [&fetch, source] { return fetch(*source); }));
    }
  };
  for (std::size_t position = 0; position < mine.size(); ++position) {
    top_up();
    Fetched fetched = in_flight.front().get();
    in_flight.pop_front();
    top_up();
    const SourceShard& s = *mine[position];
    const bool coo = s.format == npz::SparseFormat::kCoo;
    const bool csr = s.format == npz::SparseFormat::kCsr;
    auto& members = fetched.members;
    if (!members.ok()) {
      local = members.status().with_context("reading " + store.url(s.key));
      break;
    }
    const zip::MemberInfo* streamed = fetched.streamed ? &members->members.at("indices") : nullptr;
    if (streamed != nullptr) counts.bytes_read += streamed->compressed_size;
    // What was fetched: the arrays as stored (compressed or not).
    for (const auto& [name, bytes] : members->arrays) counts.bytes_read += members->members.at(name).compressed_size;
    auto st = npz::decode_structure({s.format, s.nrows, s.ncols}, members->arrays);
    if (!st.ok()) {
      local = st.status().with_context("reading " + store.url(s.key));
      break;
    }
    const std::size_t model_rank = s.index % static_cast<std::uint64_t>(ranks);
    counts.decode_peak[model_rank] =
        std::max(counts.decode_peak[model_rank], memory_cost::decode(s.bytes, s.decoded_bytes));
    counts.largest_source[model_rank] = std::max(counts.largest_source[model_rank], st->nnz);
    for (const char* payload : {"data", "indices", "indptr", "row", "col"}) {
      auto it = members->members.find(payload);
      if (it == members->members.end()) continue;
      counts.payload_stored += it->second.compressed_size;
      counts.payload_decoded += it->second.uncompressed_size;
    }
    if (auto data = members->members.find("data"); data != members->members.end() && st->nnz > 0) {
      counts.value_width = std::max(counts.value_width, value_itemsize(data->second, st->nnz));
    }
    const std::optional<std::uint64_t> stay = same_shard(plan, s);
    const std::uint64_t stay_shard = stay.value_or(UINT64_MAX);
    std::uint64_t* held = counts.held.data() + model_rank * shards;
    std::uint64_t staying = 0;
    const bool entry_by_entry = coo || (csr ? needs.cols : needs.rows);
    if (entry_by_entry && new_spec.axis != Axis::kGrid && group == 1) {
      // Entry by entry along the destination's axis (rows -> cols): count
      // per line first, then fold the lines into shards. Per entry that is
      // one increment, with no division or hash and no chain of increments
      // on one hot shard's counter, which made up most of plan's time on
      // the 100M benchmark.
      if (line_shard.empty()) {
        line_shard.resize(extent);
        for (std::uint64_t id = 0; id < extent; ++id) {
          line_shard[id] =
              static_cast<std::uint32_t>(dst_map.shard_of(line_axis_rows ? id : 0, line_axis_rows ? 0 : id));
        }
      }
      // 32-bit counters halve the array the increments land in at random
      // (5M columns: 20 MiB instead of 40), which is what the pass waits on.
      auto count_into = [&](auto* per_line) -> Status {
        using Counter = std::remove_pointer_t<decltype(per_line)>;
        if (streamed != nullptr) {
          RESHARD_RETURN_IF_ERROR(count_stored_minor(store, s.key, s.bytes, *streamed, st->nnz, csr ? s.ncols : s.nrows,
                                                     csr ? s.box.col_begin : s.box.row_begin, per_line));
        } else if (line_axis_rows) {
          for_each_located(*st, s.box, needs, [per_line](std::uint64_t row, std::uint64_t, std::uint64_t n) {
            per_line[row] += static_cast<Counter>(n);
          });
        } else {
          for_each_located(*st, s.box, needs, [per_line](std::uint64_t, std::uint64_t col, std::uint64_t n) {
            per_line[col] += static_cast<Counter>(n);
          });
        }
        for (std::uint64_t id = 0; id < extent; ++id) {
          const std::uint64_t n = per_line[id];
          if (n == 0) continue;
          per_line[id] = 0;
          const std::uint32_t d = line_shard[id];
          held[d] += n;
          staying += d == stay_shard ? n : 0;
          if (hottest_only) {
            track_hottest(id, n);
          } else if (count_lines) {
            counts.lines[id] += n;
          }
        }
        return Status::Ok();
      };
      Status counted;
      if (st->nnz <= UINT32_MAX) {
        if (source_lines32.empty()) source_lines32.assign(extent, 0);
        counted = count_into(source_lines32.data());
      } else {
        if (source_lines.empty()) source_lines.assign(extent, 0);
        counted = count_into(source_lines.data());
      }
      if (!counted.ok()) {
        local = counted.with_context("reading " + store.url(s.key));
        break;
      }
    } else {
      for_each_located(*st, s.box, needs, [&](std::uint64_t row, std::uint64_t col, std::uint64_t n) {
        const std::uint64_t d = dst_map.shard_of(row, col);
        held[d] += n;
        staying += d == stay_shard ? n : 0;
        if (hottest_only) {
          track_hottest(line_axis_rows ? row : col, n);  // whole lines here: one call per line
        } else if (count_lines) {
          const std::uint64_t id = line_axis_rows ? row : col;
          counts.lines[group == 1 ? id : id / group] += n;  // no division in the usual case
        }
      });
    }
    counts.staying += staying;
  }
  RESHARD_RETURN_IF_ERROR(agree(comm, local));
  comm.sum_each(counts.held);
  if (!hottest_only) {
    // Only rank 0 prints, so only rank 0 needs the lines (and the proposal).
    sum_lines_to_root(comm, counts.lines);
    for (std::uint64_t g = 0; g < counts.lines.size(); ++g) track_hottest(g, counts.lines[g]);
  }
  if (hottest_only) {
    std::uint64_t best = 0;
    std::uint64_t best_group = 0;
    for (const auto& bytes : comm.allgather(
             ByteView(reinterpret_cast<const std::uint8_t*>(hottest_line.data()), 2 * sizeof(std::uint64_t)))) {
      std::uint64_t theirs[2];
      std::memcpy(theirs, bytes.data(), sizeof(theirs));
      if (theirs[0] > best || (theirs[0] == best && theirs[1] < best_group)) {
        best = theirs[0];
        best_group = theirs[1];
      }
    }
    hottest_line = {best, best_group};
  }
  max_each(comm, counts.decode_peak);
  max_each(comm, counts.largest_source);
  std::vector<std::uint64_t> scalars = {counts.staying, counts.payload_stored, counts.payload_decoded,
                                        counts.bytes_read};
  comm.sum_each(scalars);
  const std::uint64_t value_width = comm.max(counts.value_width);

  // Entries per destination shard, and the ids each hashed shard holds.
  std::vector<std::uint64_t> entries(shards, 0);
  for (int r = 0; r < ranks; ++r) {
    for (std::uint64_t d = 0; d < shards; ++d) entries[d] += counts.held[static_cast<std::size_t>(r) * shards + d];
  }
  std::uint64_t nnz = 0;
  for (const auto n : entries) nnz += n;
  std::vector<std::uint64_t> hashed_ids(new_spec.hashed() ? shards : 0, 0);
  if (new_spec.hashed()) {
    const std::uint64_t hashed_extent = new_spec.axis == Axis::kRows ? plan.shape.nrows : plan.shape.ncols;
    const auto me = static_cast<std::uint64_t>(comm.rank());
    const auto size = static_cast<std::uint64_t>(comm.size());
    for (std::uint64_t id = hashed_extent * me / size; id < hashed_extent * (me + 1) / size; ++id) {
      ++hashed_ids[dst_map.hashed_shard_of(id)];
    }
    comm.sum_each(hashed_ids);
  }

  // Estimated bytes per shard, as the writer lays it out.
  const bool csc_out = new_spec.layout == Layout::kCsc;
  const bool compressing = request.compression.method != zip::Method::kStored;
  const double ratio =
      compressing && scalars[2] > 0 ? static_cast<double>(scalars[1]) / static_cast<double>(scalars[2]) : 1.0;
  std::vector<std::uint64_t> bytes(shards, 0);
  std::vector<std::uint64_t> majors(shards, 0);
  for (std::uint64_t d = 0; d < shards; ++d) {
    const ShardBox box = dst_map.box(d);
    std::uint64_t rows = box.rows();
    std::uint64_t cols = box.cols();
    if (new_spec.hashed()) (new_spec.axis == Axis::kRows ? rows : cols) = hashed_ids[d];
    majors[d] = csc_out ? cols : rows;
    const std::uint64_t index_width = npz::fits_int32(rows, cols, entries[d]) ? 4 : 8;
    const double arrays = static_cast<double>(entries[d] * (index_width + value_width) + (majors[d] + 1) * index_width);
    std::uint64_t total = static_cast<std::uint64_t>(std::llround(arrays * ratio)) + 3 * (128 + 30 + 46 + 2 * 11 + 40);
    total += member_bytes(3, 10) + member_bytes(16, 9) + 22 + 76;  // format, shape, end records
    if (new_spec.hashed()) total += member_bytes(hashed_ids[d] * 8, 11);
    bytes[d] = total;
  }

  // What crosses ranks: the job's owner choice on the modelled rank count.
  OwnershipProblem ownership;
  ownership.ranks = ranks;
  ownership.shard_count = shards;
  ownership.held.resize(static_cast<std::size_t>(ranks));
  ownership.skip.assign(shards, false);
  for (int r = 0; r < ranks; ++r) {
    for (std::uint64_t d = 0; d < shards; ++d) {
      const std::uint64_t n = counts.held[static_cast<std::size_t>(r) * shards + d];
      if (n > 0) ownership.held[static_cast<std::size_t>(r)].push_back({d, n});
    }
  }
  const Ownership owners = assign_owners(ownership);

  // Memory per modelled rank: with spilling, the floor is one source
  // decoded and bucketed, or one shard assembled; without, every entry read
  // stays bucketed while the shards it owns arrive and are assembled.
  std::uint64_t least = 0;
  std::uint64_t in_memory = 0;
  for (int r = 0; r < ranks; ++r) {
    std::uint64_t read = 0;
    std::uint64_t received = 0;
    std::uint64_t assemble = 0;
    for (std::uint64_t d = 0; d < shards; ++d) {
      read += counts.held[static_cast<std::size_t>(r) * shards + d];
      if (owners.owner.owner_of(d) != r) continue;
      received += entries[d] - counts.held[static_cast<std::size_t>(r) * shards + d];
      assemble =
          std::max(assemble, memory_cost::assemble(entries[d], majors[d], hashed_ids.empty() ? 0 : hashed_ids[d]));
    }
    const auto rr = static_cast<std::size_t>(r);
    least =
        std::max(least, std::max(counts.decode_peak[rr] + memory_cost::bucket(counts.largest_source[rr]), assemble));
    in_memory = std::max(in_memory, std::max(counts.decode_peak[rr], received * memory_cost::kEntryBytes + assemble) +
                                        memory_cost::bucket(read));
  }
  const std::uint64_t baseline = comm.max(resident_set_bytes()) + kUnmodelledBytes;
  const std::uint64_t limit =
      request.memory_limit > 0 ? request.memory_limit : default_memory_limit(std::min(ranks, comm.ranks_on_node()));

  Survey survey;
  json& out = survey.figures;
  out["source"] = {{"pattern", request.src_pattern},
                   {"scheme", request.old_spec.to_text()},
                   {"shards", plan.sources.size()},
                   {"shape", {plan.shape.nrows, plan.shape.ncols}},
                   {"nnz", nnz},
                   {"bytes_read_by_plan", scalars[3]}};
  json destination = skew_figures(entries);
  survey.imbalance = destination["imbalance"].get<double>();
  destination["scheme"] = new_spec.to_text();
  destination["entries"] = entries;
  destination["bytes"] = bytes;
  destination["bytes_total"] = std::accumulate(bytes.begin(), bytes.end(), std::uint64_t{0});
  const bool source_compressed = scalars[1] < scalars[2];
  destination["bytes_estimate"] =
      !compressing        ? "uncompressed layout, headers approximate"
      : source_compressed ? "uncompressed layout scaled by the source's compression ratio " +
                                std::to_string(ratio).substr(0, 4) + ": a rough guide, layouts compress differently"
                          : "uncompressed layout: an upper bound, the source is not compressed so no ratio is known";
  std::vector<std::uint64_t> order(shards);
  std::iota(order.begin(), order.end(), 0);
  const std::size_t top = std::min<std::size_t>(5, shards);
  std::partial_sort(
      order.begin(), order.begin() + static_cast<std::ptrdiff_t>(top), order.end(),
      [&](std::uint64_t a, std::uint64_t b) { return entries[a] > entries[b] || (entries[a] == entries[b] && a < b); });
  json largest = json::array();
  for (std::size_t i = 0; i < top; ++i) {
    const std::uint64_t d = order[i];
    largest.push_back(
        {{"shard", d}, {"name", shard_name(dst_pattern, dst_map, d)}, {"entries", entries[d]}, {"bytes", bytes[d]}});
  }
  destination["largest"] = largest;
  out["destination"] = destination;
  out["movement"] = {
      {"entries_changing_shard", nnz - scalars[0]},
      {"fraction_changing_shard", nnz > 0 ? static_cast<double>(nnz - scalars[0]) / static_cast<double>(nnz) : 0.0},
      {"ranks", ranks},
      {"entries_crossing_ranks", owners.entries_moved},
      {"bytes_crossing_ranks", owners.entries_moved * sizeof(Entry)},
      {"least_entries_crossing_ranks", owners.entries_lower_bound}};
  out["memory"] = {{"limit_bytes", limit},
                   {"baseline_bytes", baseline},
                   {"least_bytes_per_rank", least + baseline},
                   {"in_memory_bytes_per_rank", in_memory + baseline},
                   {"fits", least + baseline <= limit},
                   {"spills", in_memory + baseline > limit}};
  if (count_lines) {
    if (groups > 0) {
      const double mean = mean_of(entries);
      json line = {{"axis", line_axis_rows ? "rows" : "cols"},
                   {group == 1 ? "id" : "first_id", hottest_line[1] * group},
                   {"entries", hottest_line[0]},
                   {"exceeds_mean_shard", static_cast<double>(hottest_line[0]) > mean}};
      if (group > 1) line["ids"] = group;
      out["largest_line"] = line;
    }
  }

  if (balancing && comm.rank() == 0) {
    // What the partition balances, per line group, as integers; weighted
    // modes also keep the predicted load as the forecast gave it. Lines are
    // kept as prefix sums (in place: for 20M rows a second 160 MB array
    // cost more in page zeroing than the partition itself), so a run of
    // lines sums in O(1).
    std::vector<std::uint64_t> costs;
    std::vector<double> load;
    const std::uint64_t index_width = npz::fits_int32(plan.shape.nrows, plan.shape.ncols, nnz) ? 4 : 8;
    switch (request.balance) {
      case Balance::kNnz: break;  // the line counts themselves
      case Balance::kBytes:
        costs.resize(groups);
        for (std::uint64_t g = 0; g < groups; ++g) {
          costs[g] =
              counts.lines[g] * (index_width + value_width) + ((line_axis_rows != csc_out) ? group * index_width : 0);
        }
        break;
      case Balance::kWeight: load = *weights; break;
      case Balance::kWeightedNnz:
        load.resize(groups);
        for (std::uint64_t g = 0; g < groups; ++g) load[g] = (*weights)[g] * static_cast<double>(counts.lines[g]);
        break;
      case Balance::kNone: break;
    }
    if (weighted) costs = integer_costs(load);
    // No cut can split a line: the heaviest one bounds any proposal.
    double heaviest = 0;
    if (weighted) {
      for (const double w : load) heaviest = std::max(heaviest, w);
    } else {
      for (const auto c : request.balance == Balance::kNnz ? counts.lines : costs) {
        heaviest = std::max(heaviest, static_cast<double>(c));
      }
    }
    make_prefix_sums(counts.lines);
    const std::vector<uint64_t>& line_prefix = counts.lines;
    if (request.balance != Balance::kNnz) make_prefix_sums(costs);
    const std::vector<std::uint64_t>& cost_prefix = request.balance == Balance::kNnz ? line_prefix : costs;
    const std::uint64_t parts = request.balance_shards > 0 ? request.balance_shards : shards;
    const Partition partition = balanced_partition_of_prefix(cost_prefix, parts);
    ShardingSpec proposed;
    proposed.axis = new_spec.axis;
    proposed.layout = new_spec.layout;
    proposed.workers = new_spec.workers;
    auto& starts = line_axis_rows ? proposed.row_starts : proposed.col_starts;
    for (const auto start : partition.starts) starts.push_back(start * group);
    survey.proposed_scheme = proposed.to_text();
    RESHARD_ASSIGN_OR_RETURN(ShardMap proposed_map, ShardMap::bind(proposed, plan.shape));
    // Per shard: block and ranges shards are runs of lines (a difference of
    // prefix sums); a hashed shard gathers its lines one by one.
    auto per_shard = [&](const ShardMap& map, const std::vector<std::uint64_t>& prefix) {
      std::vector<std::uint64_t> sums(map.shard_count(), 0);
      if (group == 1 && !map.spec().hashed()) {
        for (std::uint64_t d = 0; d < sums.size(); ++d) {
          const ShardBox box = map.box(d);
          sums[d] = line_axis_rows ? prefix[box.row_end] - prefix[box.row_begin]
                                   : prefix[box.col_end] - prefix[box.col_begin];
        }
        return sums;
      }
      for (std::uint64_t g = 0; g < groups; ++g) {
        const std::uint64_t id = g * group;
        sums[map.shard_of(line_axis_rows ? id : 0, line_axis_rows ? 0 : id)] += prefix[g + 1] - prefix[g];
      }
      return sums;
    };
    // Predicted load: the forecast's own numbers, or the integer costs.
    auto load_per_shard = [&](const ShardMap& map) {
      std::vector<double> sums(map.shard_count(), 0);
      if (weighted) {
        for (std::uint64_t g = 0; g < groups; ++g) {
          const std::uint64_t id = g * group;
          sums[map.shard_of(line_axis_rows ? id : 0, line_axis_rows ? 0 : id)] += load[g];
        }
        return sums;
      }
      // The new scheme's entries per shard are known exactly already.
      const auto counted =
          (&map == &dst_map && request.balance == Balance::kNnz) ? entries : per_shard(map, cost_prefix);
      for (std::size_t d = 0; d < sums.size(); ++d) sums[d] = static_cast<double>(counted[d]);
      return sums;
    };
    const auto after_entries = per_shard(proposed_map, line_prefix);
    json proposal = skew_figures(after_entries);
    proposal["scheme"] = survey.proposed_scheme;
    proposal["balance"] = balance_name(request.balance);
    proposal["algorithm"] =
        "optimal contiguous partition: bisection on the largest shard's cost, greedy probes through prefix sums";
    proposal["entries"] = after_entries;
    if (group > 1) proposal["granularity"] = group;
    auto load_figures = [](const std::vector<double>& sums) {
      const double total = std::accumulate(sums.begin(), sums.end(), 0.0);
      const double max = sums.empty() ? 0 : *std::max_element(sums.begin(), sums.end());
      const double mean = sums.empty() ? 0 : total / static_cast<double>(sums.size());
      return json{{"per_shard", sums}, {"max", max}, {"mean", mean}, {"imbalance", mean > 0 ? max / mean - 1 : 0.0}};
    };
    proposal["load_before"] = load_figures(load_per_shard(dst_map));
    proposal["load_after"] = load_figures(load_per_shard(proposed_map));
    proposal["heaviest_line_load"] = heaviest;
    out["proposal"] = proposal;
  }
  out["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return survey;
}

}  // namespace reshard

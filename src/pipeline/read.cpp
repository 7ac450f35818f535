#include "reshard/pipeline/read.hpp"

#include <algorithm>

#include "reshard/crc32c.hpp"
#include "reshard/format/h5sparse.hpp"

namespace reshard {
namespace {

// Enough for the end record, a ZIP64 locator and a small directory at once.
constexpr std::uint64_t kTailGuess = 64 * 1024;
// A local header plus numpy's tiny shape/format arrays fit in this.
constexpr std::uint64_t kSmallMemberGuess = 4096;

// One ranged read of the member's local header and data; `content` is set
// to the member's bytes inside the returned buffer.
Result<Bytes> read_member_raw(Store& store, const std::string& key, const zip::MemberInfo& member,
                              std::uint64_t file_size, ByteView& content) {
  if (member.local_header_offset >= file_size) return Status::Invalid("zip member " + member.name + " is truncated");
  const std::uint64_t want =
      std::min(file_size - member.local_header_offset, kSmallMemberGuess + member.compressed_size);
  RESHARD_ASSIGN_OR_RETURN(Bytes head, store.read(key, member.local_header_offset, want));
  RESHARD_ASSIGN_OR_RETURN(std::uint64_t data_offset, zip::member_data_offset(head, member));
  const std::uint64_t begin = data_offset - member.local_header_offset;
  if (begin + member.compressed_size > head.size()) {
    return Status::Invalid("zip member " + member.name + " is truncated");
  }
  content = ByteView(head).subspan(begin, member.compressed_size);
  return head;
}

// The member's bytes, extracted.
Result<Bytes> read_member(Store& store, const std::string& key, const zip::MemberInfo& member,
                          std::uint64_t file_size) {
  ByteView content;
  RESHARD_ASSIGN_OR_RETURN(Bytes head, read_member_raw(store, key, member, file_size, content));
  return zip::extract(content, member);
}

// Hashed shards: ids ascending, inside the matrix, and hashing to this shard.
Status check_ids(const npy::ArrayView& ids, const ShardMap& map, std::uint64_t shard, const char* what) {
  if (ids.dtype.itemsize != 8) return Status::Invalid(std::string(what) + " must be int64");
  const std::uint64_t extent = map.spec().axis == Axis::kRows ? map.shape().nrows : map.shape().ncols;
  const std::uint64_t n = ids.element_count();
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto id = npz::detail::load_index<std::int64_t>(ids.data.data(), i);
    if (id < 0 || static_cast<std::uint64_t>(id) >= extent) {
      return Status::Invalid(std::string(what) + "[" + std::to_string(i) + "] = " + std::to_string(id) +
                             " is out of range [0, " + std::to_string(extent) + ")");
    }
    if (i > 0 && id <= npz::detail::load_index<std::int64_t>(ids.data.data(), i - 1)) {
      return Status::Invalid(std::string(what) + " is not strictly ascending at position " + std::to_string(i));
    }
    if (map.hashed_shard_of(static_cast<std::uint64_t>(id)) != shard) {
      return Status::Invalid(
          std::string(what) + "[" + std::to_string(i) + "] = " + std::to_string(id) + " belongs to shard " +
          std::to_string(map.hashed_shard_of(static_cast<std::uint64_t>(id))) + " under " + map.spec().to_text());
    }
  }
  return Status::Ok();
}

}  // namespace

namespace {

struct Directory {
  std::uint64_t size = 0;
  Bytes tail;
  std::vector<zip::MemberInfo> members;
};

// The zip directory from the file's tail: one read, two when it is large.
Result<Directory> read_zip_directory(Store& store, const std::string& key, std::uint64_t size) {
  Directory directory;
  directory.size = size;
  std::uint64_t tail_size = std::min(size, kTailGuess);
  RESHARD_ASSIGN_OR_RETURN(directory.tail, store.read(key, size - tail_size, tail_size));
  if (const std::uint64_t need = zip::directory_bytes_needed(directory.tail, size); need > tail_size) {
    tail_size = need;
    RESHARD_ASSIGN_OR_RETURN(directory.tail, store.read(key, size - tail_size, tail_size));
  }
  RESHARD_ASSIGN_OR_RETURN(directory.members, zip::read_directory(directory.tail, size, size - tail_size));
  return directory;
}

}  // namespace

Result<SourceMembers> read_source_members(Store& store, const std::string& key, std::uint64_t size,
                                          const std::vector<std::string>& names) {
  RESHARD_ASSIGN_OR_RETURN(Directory directory, read_zip_directory(store, key, size));
  SourceMembers out;
  for (const auto& member : directory.members) {
    const std::string name = member.name.size() > 4 && member.name.ends_with(".npy")
                                 ? member.name.substr(0, member.name.size() - 4)
                                 : member.name;
    out.members[name] = member;
    if (std::find(names.begin(), names.end(), name) == names.end()) continue;
    // A stored member is used where it was read, not copied.
    ByteView content;
    auto head = read_member_raw(store, key, member, size, content);
    Status status = head.status();
    if (status.ok() && member.method == zip::Method::kStored) {
      status = zip::check_stored(content, member);
      if (status.ok()) out.buffers.push_back(std::move(head).value());
    } else if (status.ok()) {
      auto inflated = zip::extract(content, member);
      status = inflated.status();
      if (status.ok()) {
        out.buffers.push_back(std::move(inflated).value());
        content = out.buffers.back();
      }
    }
    if (!status.ok()) return status.with_context("array '" + name + "'");
    out.arrays[name] = content;
  }
  return out;
}

namespace {

Result<SourceHeader> read_hdf5_header(Store& store, const std::string& key, const ObjectInfo& info,
                                      const std::string& hdf5_group) {
  // A local file is summarised by HDF5 from its path, reading only its
  // metadata; an object is read whole (its metadata may be anywhere).
  const std::optional<std::string> path = store.local_path(key);
  const bool local = path.has_value();
  Bytes file;
  if (local) {
    RESHARD_ASSIGN_OR_RETURN(file, store.read(key, 0, std::min<std::uint64_t>(info.size, kTailGuess)));
  } else {
    RESHARD_ASSIGN_OR_RETURN(file, store.read(key, 0, info.size));
  }
  RESHARD_ASSIGN_OR_RETURN(h5sparse::Summary summary,
                           local ? h5sparse::summarize_file(*path, hdf5_group) : h5sparse::summarize(file, hdf5_group));
  if (local) summary.decoded_bytes += info.size;  // decoding a whole shard holds HDF5's copy of the file
  SourceHeader header;
  header.info = info;
  header.shape_and_format = summary.shape_and_format;
  // The file's first 64 KiB (superblock and, usually, the metadata) or all of it.
  header.tail_crc = zip::crc32(file);
  header.decoded_bytes = summary.decoded_bytes;
  header.members = summary.datasets;
  header.compression = summary.compressed ? "deflate" : "none";
  header.group = summary.group;
  return header;
}

}  // namespace

Result<SourceHeader> read_source_header(Store& store, const std::string& key, const std::string& hdf5_group) {
  RESHARD_ASSIGN_OR_RETURN(auto info, store.stat(key));
  if (!info) return Status::Invalid("source shard does not exist");
  if (h5sparse::is_hdf5_key(key)) return read_hdf5_header(store, key, *info, hdf5_group);
  SourceHeader header;
  header.info = *info;
  const std::uint64_t size = info->size;
  RESHARD_ASSIGN_OR_RETURN(Directory directory, read_zip_directory(store, key, size));
  header.tail_crc = zip::crc32(directory.tail);
  const auto& members = directory.members;
  const zip::MemberInfo* shape = nullptr;
  const zip::MemberInfo* format = nullptr;
  bool any_stored = false;
  bool any_deflated = false;
  for (const auto& m : members) {
    header.members.push_back(m.name);
    (m.method == zip::Method::kStored ? any_stored : any_deflated) = true;
    header.decoded_bytes += m.uncompressed_size;
    if (m.name == "shape.npy") shape = &m;
    if (m.name == "format.npy") format = &m;
  }
  std::sort(header.members.begin(), header.members.end());
  header.compression = any_stored && any_deflated ? "mixed" : (any_deflated ? "deflate" : "none");
  if (shape == nullptr) return Status::Invalid("missing array 'shape' (not a scipy.sparse .npz?)");
  if (format == nullptr) return Status::Invalid("missing array 'format' (not a scipy.sparse .npz?)");
  RESHARD_ASSIGN_OR_RETURN(Bytes shape_npy, read_member(store, key, *shape, size));
  RESHARD_ASSIGN_OR_RETURN(Bytes format_npy, read_member(store, key, *format, size));
  RESHARD_ASSIGN_OR_RETURN(header.shape_and_format, npz::decode_shape_and_format(shape_npy, format_npy));
  return header;
}

Result<Bytes> fetch_source(Store& store, const SourceShard& shard) {
  if (shard.part_of_file) return Bytes();  // read by hyperslab when decoded
  auto bytes = store.read_all(shard.key);
  if (!bytes.ok()) return bytes.status().with_context("reading " + store.url(shard.key));
  return bytes;
}

Result<LoadedSource> read_source(Store& store, const SourceShard& shard, const ShardMap& source_map, int threads) {
  RESHARD_ASSIGN_OR_RETURN(Bytes bytes, fetch_source(store, shard));
  return decode_source(store, shard, source_map, std::move(bytes), threads);
}

Result<LoadedSource> decode_source(const Store& store, const SourceShard& shard, const ShardMap& source_map,
                                   Bytes&& file, int threads) {
  const std::string context = "reading " + store.url(shard.key);
  LoadedSource loaded;
  loaded.shard = &shard;
  loaded.bytes_read = file.size();
  loaded.file_crc32c = crc32c(file);
  auto decoded = [&]() -> Result<npz::DecodedShard> {
    if (shard.part_of_file) {
      loaded.bytes_read = shard.bytes;
      const std::optional<std::string> path = store.local_path(shard.key);
      if (!path) return Status::Internal("a part of a file on a store without local paths");
      return h5sparse::read_major_range(*path, shard.group, shard.major_begin, shard.major_end, threads);
    }
    if (!h5sparse::is_hdf5_key(shard.key)) return npz::decode(std::move(file), threads);
    auto from_hdf5 = h5sparse::decode(file, shard.group, threads);
    Bytes().swap(file);  // HDF5 decoded from its own copy
    return from_hdf5;
  }();
  if (!decoded.ok()) return decoded.status().with_context(context);
  loaded.decoded = std::move(decoded).value();
  const auto& m = loaded.decoded.matrix;
  if (m.nrows != shard.nrows || m.ncols != shard.ncols) {
    return Status::Invalid(context + ": shape changed since planning (the source was modified while the job ran)");
  }
  const auto& spec = source_map.spec();
  if (spec.hashed()) {
    const bool by_rows = spec.axis == Axis::kRows;
    const auto& ids = by_rows ? m.row_ids : m.col_ids;
    const char* what = by_rows ? "row_ids" : "col_ids";
    if (!ids) return Status::Invalid(context + ": hashed shard has no '" + what + "' array");
    RESHARD_RETURN_IF_ERROR(check_ids(*ids, source_map, shard.index, what).with_context(context));
    // Only the hashed axis' ids mean something; the other axis is global.
    if (by_rows)
      loaded.decoded.matrix.col_ids.reset();
    else
      loaded.decoded.matrix.row_ids.reset();
  } else {
    loaded.decoded.matrix.row_ids.reset();
    loaded.decoded.matrix.col_ids.reset();
  }
  return loaded;
}

}  // namespace reshard

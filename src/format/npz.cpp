#include "reshard/format/npz.hpp"

#include "reshard/parallel.hpp"

#include <limits>
#include <map>

namespace reshard::npz {
namespace {

Result<SparseFormat> parse_format(const npy::ArrayView& array) {
  if ((array.dtype.kind != 'S' && array.dtype.kind != 'U') || !array.shape.empty()) {
    return Status::Invalid("'format' is not a string");
  }
  std::string text;
  if (array.dtype.kind == 'S') {
    text.assign(reinterpret_cast<const char*>(array.data.data()), array.data.size());
  } else {
    for (std::size_t i = 0; i + 4 <= array.data.size(); i += 4) {
      const auto cp = load_le<std::uint32_t>(array.data.data() + i);
      if (cp != 0) text.push_back(cp < 128 ? static_cast<char>(cp) : '?');
    }
  }
  while (!text.empty() && text.back() == '\0') text.pop_back();
  if (text == "csr") return SparseFormat::kCsr;
  if (text == "csc") return SparseFormat::kCsc;
  if (text == "coo") return SparseFormat::kCoo;
  return Status::Invalid("sparse format '" + text + "' is not supported (csr, csc and coo are)");
}

Result<std::pair<std::uint64_t, std::uint64_t>> parse_shape(const npy::ArrayView& array) {
  if (array.dtype.kind != 'i' && array.dtype.kind != 'u') return Status::Invalid("'shape' is not an integer array");
  if (array.shape.size() != 1 || array.shape[0] != 2) return Status::Invalid("'shape' does not hold two numbers");
  const std::int64_t rows = npy::integer_at(array, 0);
  const std::int64_t cols = npy::integer_at(array, 1);
  if (rows < 0 || cols < 0) return Status::Invalid("'shape' is negative");
  return std::pair<std::uint64_t, std::uint64_t>(rows, cols);
}

Status check_index_array(const npy::ArrayView& array, const std::string& name) {
  if (array.shape.size() != 1) return Status::Invalid("'" + name + "' is not one-dimensional");
  if (array.dtype.kind != 'i' || (array.dtype.itemsize != 4 && array.dtype.itemsize != 8)) {
    return Status::Invalid("'" + name + "' has dtype " + array.dtype.name() + "; int32 or int64 expected");
  }
  return Status::Ok();
}

template <typename Index>
Status check_indptr(const npy::ArrayView& indptr, std::uint64_t nnz) {
  const std::uint64_t n = indptr.element_count();
  const std::uint8_t* base = indptr.data.data();
  if (detail::load_index<Index>(base, 0) != 0) {
    return Status::Invalid("indptr starts at " + std::to_string(detail::load_index<Index>(base, 0)) + ", not 0");
  }
  for (std::uint64_t i = 1; i < n; ++i) {
    if (detail::load_index<Index>(base, i) < detail::load_index<Index>(base, i - 1)) {
      return Status::Invalid("indptr decreases at position " + std::to_string(i));
    }
  }
  const auto last = static_cast<std::int64_t>(detail::load_index<Index>(base, n - 1));
  if (static_cast<std::uint64_t>(last) != nnz) {
    return Status::Invalid("indptr ends at " + std::to_string(last) + " but there are " + std::to_string(nnz) +
                           " stored entries");
  }
  return Status::Ok();
}

bool in_range(std::int64_t v, std::uint64_t limit) { return v >= 0 && static_cast<std::uint64_t>(v) < limit; }

Status out_of_range(const std::string& name, std::uint64_t i, std::int64_t v, std::uint64_t limit) {
  return Status::Invalid(name + "[" + std::to_string(i) + "] = " + std::to_string(v) + " is out of range [0, " +
                         std::to_string(limit) + ")");
}

template <typename Index>
Status check_range(const npy::ArrayView& array, std::uint64_t limit, const std::string& name) {
  const std::uint64_t n = array.element_count();
  const std::uint8_t* base = array.data.data();
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto v = static_cast<std::int64_t>(detail::load_index<Index>(base, i));
    if (!in_range(v, limit)) return out_of_range(name, i, v, limit);
  }
  return Status::Ok();
}

// check_range for the indices of a CSR (CSC) matrix, walked a row (column)
// at a time: also finds whether each row's indices never decrease, which
// lets assembly take a source's entries as sorted runs without reading them
// once more (SparseMatrix::minor_sorted). indptr is already checked. The
// rows [first_major, last_major) only, so that slices of them can be walked
// on different threads.
template <typename Index, typename Pointer>
Result<bool> check_indices_by_major(const npy::ArrayView& indptr, const npy::ArrayView& indices, std::uint64_t limit,
                                    std::uint64_t first_major, std::uint64_t last_major) {
  const std::uint8_t* pointers = indptr.data.data();
  const std::uint8_t* base = indices.data.data();
  bool sorted = true;
  auto begin = static_cast<std::uint64_t>(detail::load_index<Pointer>(pointers, first_major));
  for (std::uint64_t j = first_major; j < last_major; ++j) {
    const auto end = static_cast<std::uint64_t>(detail::load_index<Pointer>(pointers, j + 1));
    std::int64_t previous = std::numeric_limits<std::int64_t>::min();
    for (std::uint64_t i = begin; i < end; ++i) {
      const auto v = static_cast<std::int64_t>(detail::load_index<Index>(base, i));
      if (!in_range(v, limit)) return out_of_range("indices", i, v, limit);
      sorted &= v >= previous;
      previous = v;
    }
    begin = end;
  }
  return sorted;
}

// Below this many entries per thread, a second thread costs more than it saves.
constexpr std::uint64_t kMinIndicesPerCheckSlice = 1 << 18;

// check_indices_by_major over slices of about equal entries on `threads`
// threads. Made after every member is inflated, the walk was the one part
// of decoding that a second thread did not share (on stage_bench's shard,
// 10-11 ms of 7.7M entries; split, its 2-thread decode went from 11.9 to
// 11.1 ns per entry). The error is the first slice's that has one, so it
// names the first bad position in storage order, as on one thread.
template <typename Index, typename Pointer>
Result<bool> check_indices_in_slices(const npy::ArrayView& indptr, const npy::ArrayView& indices, std::uint64_t limit,
                                     int threads) {
  const std::uint64_t nmajor = indptr.element_count() - 1;
  const std::uint64_t nnz = indices.element_count();
  const std::uint64_t slices = parallel_parts(nnz, threads, kMinIndicesPerCheckSlice);
  if (slices == 1) return check_indices_by_major<Index, Pointer>(indptr, indices, limit, 0, nmajor);
  // Slice k starts at the row holding entry even_cut(nnz, slices, k).
  std::vector<std::uint64_t> cut(slices + 1, nmajor);
  cut[0] = 0;
  for (std::uint64_t k = 1; k < slices; ++k) {
    cut[k] = detail::major_holding<Pointer>(indptr.data.data(), nmajor, even_cut(nnz, slices, k));
  }
  std::vector<Result<bool>> found(slices, true);
  run_in_parallel(slices, threads, [&](std::size_t k) {
    found[k] = check_indices_by_major<Index, Pointer>(indptr, indices, limit, cut[k], cut[k + 1]);
  });
  bool sorted = true;
  for (auto& slice : found) {
    RESHARD_ASSIGN_OR_RETURN(const bool slice_sorted, std::move(slice));
    sorted = sorted && slice_sorted;
  }
  return sorted;
}

Result<bool> check_indices_by_major_any(const npy::ArrayView& indptr, const npy::ArrayView& indices,
                                        std::uint64_t limit, int threads) {
  const bool wide_pointers = indptr.dtype.itemsize == 8;
  if (indices.dtype.itemsize == 8) {
    return wide_pointers ? check_indices_in_slices<std::int64_t, std::int64_t>(indptr, indices, limit, threads)
                         : check_indices_in_slices<std::int64_t, std::int32_t>(indptr, indices, limit, threads);
  }
  return wide_pointers ? check_indices_in_slices<std::int32_t, std::int64_t>(indptr, indices, limit, threads)
                       : check_indices_in_slices<std::int32_t, std::int32_t>(indptr, indices, limit, threads);
}

Status check_range_any(const npy::ArrayView& array, std::uint64_t limit, const std::string& name) {
  return array.dtype.itemsize == 8 ? check_range<std::int64_t>(array, limit, name)
                                   : check_range<std::int32_t>(array, limit, name);
}

Status check_ids(const npy::ArrayView& ids, std::uint64_t expected, const std::string& name, const char* what) {
  RESHARD_RETURN_IF_ERROR(check_index_array(ids, name));
  if (ids.element_count() != expected) {
    return Status::Invalid("'" + name + "' length " + std::to_string(ids.element_count()) + " does not match " +
                           std::to_string(expected) + " " + what);
  }
  return Status::Ok();
}

}  // namespace

std::string format_name(SparseFormat format) {
  switch (format) {
    case SparseFormat::kCsr: return "csr";
    case SparseFormat::kCsc: return "csc";
    case SparseFormat::kCoo: return "coo";
  }
  return "?";
}

bool fits_int32(std::uint64_t nrows, std::uint64_t ncols, std::uint64_t nnz) {
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max());
  return nrows <= kMax && ncols <= kMax && nnz <= kMax;
}

Result<ShapeAndFormat> decode_shape_and_format(ByteView shape_npy, ByteView format_npy) {
  RESHARD_ASSIGN_OR_RETURN(npy::ArrayView shape_array, npy::parse(shape_npy));
  RESHARD_ASSIGN_OR_RETURN(npy::ArrayView format_array, npy::parse(format_npy));
  ShapeAndFormat out;
  RESHARD_ASSIGN_OR_RETURN(out.format, parse_format(format_array));
  RESHARD_ASSIGN_OR_RETURN(auto shape, parse_shape(shape_array));
  out.nrows = shape.first;
  out.ncols = shape.second;
  return out;
}

Result<DecodedShard> decode(ByteView file) { return decode(Bytes(file.begin(), file.end()), 1); }

Result<DecodedShard> decode(Bytes&& file_bytes, int threads) {
  DecodedShard shard;
  // The file itself is the first buffer: stored members are read in place.
  shard.buffers.push_back(std::move(file_bytes));
  const ByteView file = shard.buffers.front();
  RESHARD_ASSIGN_OR_RETURN(auto members, zip::read_directory(file, file.size()));
  struct Located {
    const zip::MemberInfo* member = nullptr;
    std::string name;
    ByteView compressed;
    ByteView content;
    Bytes inflated;
    Status status;
  };
  std::vector<Located> located;
  for (const auto& member : members) {
    if (member.name.size() < 5 || member.name.substr(member.name.size() - 4) != ".npy") continue;
    const std::uint64_t header_end = member.local_header_offset + 30;
    if (header_end > file.size()) return Status::Invalid("zip member " + member.name + " is truncated");
    RESHARD_ASSIGN_OR_RETURN(
        std::uint64_t data_offset,
        zip::member_data_offset(file.subspan(member.local_header_offset, file.size() - member.local_header_offset),
                                member));
    if (data_offset + member.compressed_size > file.size()) {
      return Status::Invalid("zip member " + member.name + " is truncated");
    }
    Located l;
    l.member = &member;
    l.name = member.name.substr(0, member.name.size() - 4);
    l.compressed = file.subspan(data_offset, member.compressed_size);
    located.push_back(std::move(l));
  }
  // Members inflate independently: several at once.
  run_in_parallel(located.size(), threads, [&](std::size_t i) {
    Located& l = located[i];
    if (l.member->method == zip::Method::kStored) {
      l.status = zip::check_stored(l.compressed, *l.member);
      l.content = l.compressed;
      return;
    }
    auto inflated = zip::extract(l.compressed, *l.member);
    if (!inflated.ok()) {
      l.status = inflated.status();
      return;
    }
    l.inflated = std::move(inflated).value();
  });
  std::map<std::string, npy::ArrayView> arrays;
  shard.buffers.reserve(located.size() + 1);
  for (auto& l : located) {
    RESHARD_RETURN_IF_ERROR(l.status);
    if (l.member->method != zip::Method::kStored) {
      shard.buffers.push_back(std::move(l.inflated));
      l.content = shard.buffers.back();
    }
    auto parsed = npy::parse(l.content);
    if (!parsed.ok()) return parsed.status().with_context("array '" + l.name + "'");
    arrays[l.name] = std::move(parsed).value();
  }
  auto require = [&](const std::string& name) -> Result<npy::ArrayView> {
    auto it = arrays.find(name);
    if (it == arrays.end()) return Status::Invalid("missing array '" + name + "' (not a scipy.sparse .npz?)");
    return it->second;
  };
  RESHARD_ASSIGN_OR_RETURN(npy::ArrayView format_array, require("format"));
  RESHARD_ASSIGN_OR_RETURN(SparseFormat format, parse_format(format_array));
  RESHARD_ASSIGN_OR_RETURN(npy::ArrayView shape_array, require("shape"));
  RESHARD_ASSIGN_OR_RETURN(auto shape, parse_shape(shape_array));
  for (const char* name :
       {"data", format == SparseFormat::kCoo ? "row" : "indptr", format == SparseFormat::kCoo ? "col" : "indices"}) {
    RESHARD_RETURN_IF_ERROR(require(name).status());
  }
  RESHARD_ASSIGN_OR_RETURN(shard.matrix, matrix_from_arrays(format, shape.first, shape.second, arrays, threads));
  return shard;
}

Result<SparseMatrix> matrix_from_arrays(SparseFormat format, std::uint64_t nrows, std::uint64_t ncols,
                                        const std::map<std::string, npy::ArrayView>& arrays, int threads) {
  auto require = [&](const std::string& name) -> Result<npy::ArrayView> {
    auto it = arrays.find(name);
    if (it == arrays.end()) return Status::Invalid("missing array '" + name + "'");
    return it->second;
  };
  SparseMatrix m;
  m.format = format;
  m.nrows = nrows;
  m.ncols = ncols;
  RESHARD_ASSIGN_OR_RETURN(m.data, require("data"));
  if (m.data.shape.size() != 1) return Status::Invalid("'data' is not one-dimensional");
  if (m.data.dtype.kind == 'c') return Status::Invalid("complex data (" + m.data.dtype.name() + ") is not supported");
  if (!m.data.dtype.is_numeric() || m.data.dtype.itemsize > 8) {
    return Status::Invalid("'data' has unsupported dtype " + m.data.dtype.name());
  }
  m.value_dtype = m.data.dtype;
  m.nnz = m.data.element_count();
  const bool coo = m.format == SparseFormat::kCoo;
  RESHARD_ASSIGN_OR_RETURN(m.major, require(coo ? "row" : "indptr"));
  RESHARD_ASSIGN_OR_RETURN(m.minor, require(coo ? "col" : "indices"));
  const std::string major_name = coo ? "row" : "indptr";
  const std::string minor_name = coo ? "col" : "indices";
  RESHARD_RETURN_IF_ERROR(check_index_array(m.major, major_name));
  RESHARD_RETURN_IF_ERROR(check_index_array(m.minor, minor_name));
  m.index_dtype = m.minor.dtype.itemsize >= m.major.dtype.itemsize ? m.minor.dtype : m.major.dtype;
  if (m.minor.element_count() != m.nnz) {
    return Status::Invalid(minor_name + " length " + std::to_string(m.minor.element_count()) +
                           " does not match data length " + std::to_string(m.nnz));
  }
  if (coo) {
    if (m.major.element_count() != m.nnz) {
      return Status::Invalid("row length " + std::to_string(m.major.element_count()) + " does not match data length " +
                             std::to_string(m.nnz));
    }
    RESHARD_RETURN_IF_ERROR(check_range_any(m.major, m.nrows, "row"));
    RESHARD_RETURN_IF_ERROR(check_range_any(m.minor, m.ncols, "col"));
  } else {
    const bool csr = m.format == SparseFormat::kCsr;
    const std::uint64_t nmajor = csr ? m.nrows : m.ncols;
    if (m.major.element_count() != nmajor + 1) {
      return Status::Invalid("indptr length " + std::to_string(m.major.element_count()) + " does not match " +
                             std::to_string(nmajor) + (csr ? " rows" : " columns"));
    }
    RESHARD_RETURN_IF_ERROR(m.major.dtype.itemsize == 8 ? check_indptr<std::int64_t>(m.major, m.nnz)
                                                        : check_indptr<std::int32_t>(m.major, m.nnz));
    RESHARD_ASSIGN_OR_RETURN(m.minor_sorted,
                             check_indices_by_major_any(m.major, m.minor, csr ? m.ncols : m.nrows, threads));
  }
  if (auto it = arrays.find("row_ids"); it != arrays.end()) {
    RESHARD_RETURN_IF_ERROR(check_ids(it->second, m.nrows, "row_ids", "rows"));
    m.row_ids = it->second;
  }
  if (auto it = arrays.find("col_ids"); it != arrays.end()) {
    RESHARD_RETURN_IF_ERROR(check_ids(it->second, m.ncols, "col_ids", "columns"));
    m.col_ids = it->second;
  }
  return m;
}

Result<SparseStructure> decode_structure(const ShapeAndFormat& shape, const std::map<std::string, ByteView>& arrays) {
  SparseStructure out;
  out.format = shape.format;
  out.nrows = shape.nrows;
  out.ncols = shape.ncols;
  const bool coo = out.format == SparseFormat::kCoo;
  const std::string major_name = coo ? "row" : "indptr";
  const std::string minor_name = coo ? "col" : "indices";
  auto parse_named = [&](const std::string& name) -> Result<std::optional<npy::ArrayView>> {
    auto it = arrays.find(name);
    if (it == arrays.end()) return std::optional<npy::ArrayView>();
    auto parsed = npy::parse(it->second);
    if (!parsed.ok()) return parsed.status().with_context("array '" + name + "'");
    return std::optional<npy::ArrayView>(*parsed);
  };
  RESHARD_ASSIGN_OR_RETURN(auto major, parse_named(major_name));
  if (!major) return Status::Invalid("missing array '" + major_name + "' (not a scipy.sparse .npz?)");
  out.major = *major;
  RESHARD_RETURN_IF_ERROR(check_index_array(out.major, major_name));
  RESHARD_ASSIGN_OR_RETURN(out.minor, parse_named(minor_name));
  if (out.minor) RESHARD_RETURN_IF_ERROR(check_index_array(*out.minor, minor_name));
  if (coo) {
    out.nnz = out.major.element_count();
    RESHARD_RETURN_IF_ERROR(check_range_any(out.major, out.nrows, "row"));
    if (out.minor) {
      if (out.minor->element_count() != out.nnz) {
        return Status::Invalid("col length " + std::to_string(out.minor->element_count()) +
                               " does not match row length " + std::to_string(out.nnz));
      }
      RESHARD_RETURN_IF_ERROR(check_range_any(*out.minor, out.ncols, "col"));
    }
  } else {
    const bool csr = out.format == SparseFormat::kCsr;
    const std::uint64_t nmajor = csr ? out.nrows : out.ncols;
    if (out.major.element_count() != nmajor + 1) {
      return Status::Invalid("indptr length " + std::to_string(out.major.element_count()) + " does not match " +
                             std::to_string(nmajor) + (csr ? " rows" : " columns"));
    }
    const auto last = npy::integer_at(out.major, nmajor);
    if (last < 0) return Status::Invalid("indptr ends at " + std::to_string(last));
    out.nnz = static_cast<std::uint64_t>(last);
    RESHARD_RETURN_IF_ERROR(out.major.dtype.itemsize == 8 ? check_indptr<std::int64_t>(out.major, out.nnz)
                                                          : check_indptr<std::int32_t>(out.major, out.nnz));
    if (out.minor) {
      if (out.minor->element_count() != out.nnz) {
        return Status::Invalid("indices length " + std::to_string(out.minor->element_count()) +
                               " does not match indptr's " + std::to_string(out.nnz) + " entries");
      }
      RESHARD_RETURN_IF_ERROR(check_range_any(*out.minor, csr ? out.ncols : out.nrows, "indices"));
    }
  }
  RESHARD_ASSIGN_OR_RETURN(out.row_ids, parse_named("row_ids"));
  if (out.row_ids) RESHARD_RETURN_IF_ERROR(check_ids(*out.row_ids, out.nrows, "row_ids", "rows"));
  RESHARD_ASSIGN_OR_RETURN(out.col_ids, parse_named("col_ids"));
  if (out.col_ids) RESHARD_RETURN_IF_ERROR(check_ids(*out.col_ids, out.ncols, "col_ids", "columns"));
  return out;
}

namespace {

// The npy header, then the values as int32 or int64, written in place
// (they are below 2^31 or 2^63, so their bits are the signed type's).
Bytes encode_indices(IndexView values, bool int32) {
  Bytes out = npy::encode_header(int32 ? npy::int32_dtype() : npy::int64_dtype(), {values.size()});
  const std::size_t header = out.size();
  const std::uint32_t width = int32 ? 4 : 8;
  out.resize(header + values.size() * width);
  copy_indices(values, width, out.data() + header);
  return out;
}

}  // namespace

Status encode_streamed(const EncodeInput& input, const zip::WriteOptions& options, const ByteSink& sink) {
  if (input.format == SparseFormat::kCoo) return Status::Internal("encoding coo is not supported");
  const bool csr = input.format == SparseFormat::kCsr;
  const std::uint64_t nmajor = csr ? input.nrows : input.ncols;
  const std::uint64_t nnz = input.indices.size();
  if (input.indptr.size() != nmajor + 1) return Status::Internal("encode: indptr length does not match shape");
  if (input.values.size() != nnz * input.value_dtype.itemsize) {
    return Status::Internal("encode: values length does not match indices");
  }
  const bool int32 = fits_int32(input.nrows, input.ncols, nnz);
  // Arrays already at the stored width are written from the caller's
  // buffer, behind their header, like the values (they are below 2^31 when
  // int32 is chosen, so their bits are int32's); others are converted.
  const std::uint32_t stored_width = int32 ? 4 : 8;
  std::vector<Bytes> owned;
  owned.reserve(4);
  const auto index_member = [&](const char* name, IndexView array) {
    if (array.width() == stored_width) {
      owned.push_back(npy::encode_header(int32 ? npy::int32_dtype() : npy::int64_dtype(), {array.size()}));
      return zip::MemberToWrite{name, array.bytes(), owned.back()};
    }
    owned.push_back(encode_indices(array, int32));
    return zip::MemberToWrite{name, owned.back()};
  };
  zip::MemberToWrite indices = index_member("indices.npy", input.indices);
  zip::MemberToWrite indptr = index_member("indptr.npy", input.indptr);
  const std::string format = format_name(input.format);
  Bytes format_npy = npy::encode({'S', static_cast<std::uint32_t>(format.size())}, {},
                                 ByteView(reinterpret_cast<const std::uint8_t*>(format.data()), format.size()));
  const std::int64_t shape_values[2] = {static_cast<std::int64_t>(input.nrows), static_cast<std::int64_t>(input.ncols)};
  Bytes shape_npy =
      npy::encode(npy::int64_dtype(), {2}, ByteView(reinterpret_cast<const std::uint8_t*>(shape_values), 16));
  Bytes data_header = npy::encode_header(input.value_dtype, {nnz});
  std::vector<zip::MemberToWrite> members = {
      indices, indptr, {"format.npy", format_npy}, {"shape.npy", shape_npy}, {"data.npy", input.values, data_header},
  };
  Bytes row_ids;
  Bytes col_ids;
  if (input.row_ids) {
    row_ids = encode_indices(*input.row_ids, false);
    members.push_back({"row_ids.npy", row_ids});
  }
  if (input.col_ids) {
    col_ids = encode_indices(*input.col_ids, false);
    members.push_back({"col_ids.npy", col_ids});
  }
  return zip::write_archive_streamed(members, options, sink);
}

Result<Bytes> encode(const EncodeInput& input, const zip::WriteOptions& options) {
  Bytes out;
  RESHARD_RETURN_IF_ERROR(encode_streamed(input, options, appending_to(out)));
  return out;
}

}  // namespace reshard::npz

#include "reshard/format/npy.hpp"

#include <cctype>
#include <optional>
#include <string_view>

namespace reshard::npy {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr std::size_t kAlignment = 64;

// Extracts the literal after `'key':` in numpy's header dict.
std::optional<std::string_view> dict_value(std::string_view header, std::string_view key) {
  const std::string quoted = "'" + std::string(key) + "'";
  auto pos = header.find(quoted);
  if (pos == std::string_view::npos) return std::nullopt;
  pos = header.find(':', pos + quoted.size());
  if (pos == std::string_view::npos) return std::nullopt;
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  if (pos >= header.size()) return std::nullopt;
  std::size_t end = pos;
  if (header[pos] == '\'') {
    end = header.find('\'', pos + 1);
    if (end == std::string_view::npos) return std::nullopt;
    return header.substr(pos + 1, end - pos - 1);
  }
  if (header[pos] == '(') {
    end = header.find(')', pos);
    if (end == std::string_view::npos) return std::nullopt;
    return header.substr(pos, end - pos + 1);
  }
  while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  return header.substr(pos, end - pos);
}

Result<DType> parse_descr(std::string_view descr) {
  if (descr.size() >= 2 && descr[1] == 'O') return Status::Invalid("object (pickled) arrays are not supported");
  if (descr.size() < 3) return Status::Invalid("unsupported dtype '" + std::string(descr) + "'");
  const char order = descr[0];
  const char kind = descr[1];
  std::uint32_t size = 0;
  for (char c : descr.substr(2)) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      return Status::Invalid("unsupported dtype '" + std::string(descr) + "'");
    }
    size = size * 10 + static_cast<std::uint32_t>(c - '0');
  }
  DType dtype{kind, kind == 'U' ? size * 4 : size};
  const std::string_view kinds = "biufcSU";
  if (kinds.find(kind) == std::string_view::npos || size == 0) {
    return Status::Invalid("unsupported dtype '" + std::string(descr) + "'");
  }
  const bool multi_byte_numeric = kind != 'S' && kind != 'b' && dtype.itemsize > 1;
  if (order == '>' && (multi_byte_numeric || kind == 'U')) {
    return Status::Invalid("big-endian arrays are not supported (dtype '" + std::string(descr) + "')");
  }
  if (order != '<' && order != '|' && order != '=' && order != '>') {
    return Status::Invalid("unsupported dtype '" + std::string(descr) + "'");
  }
  return dtype;
}

Result<std::vector<std::uint64_t>> parse_shape(std::string_view text) {
  if (text.size() < 2 || text.front() != '(' || text.back() != ')') return Status::Invalid("malformed npy shape");
  std::vector<std::uint64_t> shape;
  std::uint64_t value = 0;
  bool in_number = false;
  for (char c : text.substr(1, text.size() - 2)) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      value = value * 10 + static_cast<std::uint64_t>(c - '0');
      in_number = true;
    } else if (c == ',' || c == ' ' || c == 'L') {
      if (in_number) shape.push_back(value);
      value = 0;
      in_number = false;
    } else {
      return Status::Invalid("malformed npy shape");
    }
  }
  if (in_number) shape.push_back(value);
  return shape;
}

}  // namespace

DType int32_dtype() { return {'i', 4}; }
DType int64_dtype() { return {'i', 8}; }

std::string DType::descr() const {
  const char order = (kind == 'b' || kind == 'S' || itemsize == 1) ? '|' : '<';
  const std::uint32_t count = kind == 'U' ? itemsize / 4 : itemsize;
  return std::string(1, order) + kind + std::to_string(count);
}

std::string DType::name() const {
  switch (kind) {
    case 'b': return "bool";
    case 'i': return "int" + std::to_string(itemsize * 8);
    case 'u': return "uint" + std::to_string(itemsize * 8);
    case 'f': return "float" + std::to_string(itemsize * 8);
    case 'c': return "complex" + std::to_string(itemsize * 8);
    default: return descr();
  }
}

std::uint64_t ArrayView::element_count() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

Result<ArrayHeader> parse_header(ByteView npy) {
  if (npy.size() < 10 || std::string_view(reinterpret_cast<const char*>(npy.data()), 6) != kMagic) {
    return Status::Invalid("not an npy array (bad magic)");
  }
  const std::uint8_t major = npy[6];
  std::size_t header_len = 0;
  std::size_t header_start = 0;
  if (major == 1) {
    header_len = load_le<std::uint16_t>(npy.data() + 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (npy.size() < 12) return Status::Invalid("truncated npy header");
    header_len = load_le<std::uint32_t>(npy.data() + 8);
    header_start = 12;
  } else {
    return Status::Invalid("unsupported npy format version " + std::to_string(major));
  }
  if (header_start + header_len > npy.size()) return Status::Invalid("truncated npy header");
  const std::string_view header(reinterpret_cast<const char*>(npy.data() + header_start), header_len);
  const auto descr = dict_value(header, "descr");
  const auto fortran = dict_value(header, "fortran_order");
  const auto shape_text = dict_value(header, "shape");
  if (!descr || !fortran || !shape_text) return Status::Invalid("malformed npy header");
  if (descr->empty() || header.find("'descr': [") != std::string_view::npos) {
    return Status::Invalid("structured dtypes are not supported");
  }
  ArrayView view;
  RESHARD_ASSIGN_OR_RETURN(view.dtype, parse_descr(*descr));
  if (*fortran == "True") return Status::Invalid("Fortran-order arrays are not supported");
  if (*fortran != "False") return Status::Invalid("malformed npy header");
  RESHARD_ASSIGN_OR_RETURN(view.shape, parse_shape(*shape_text));
  // The shape comes from the file: its product, and that times the item
  // size, must not wrap past the size check below.
  std::uint64_t payload = view.dtype.itemsize;
  for (const auto d : view.shape) {
    if (__builtin_mul_overflow(payload, d, &payload)) {
      return Status::Invalid("npy shape " + std::string(*shape_text) + " of " + std::to_string(view.dtype.itemsize) +
                             "-byte items is larger than any file");
    }
  }
  ArrayHeader out;
  out.dtype = view.dtype;
  out.shape = std::move(view.shape);
  out.data_offset = header_start + header_len;
  out.payload_bytes = payload;
  return out;
}

Result<ArrayView> parse(ByteView npy) {
  RESHARD_ASSIGN_OR_RETURN(ArrayHeader header, parse_header(npy));
  if (npy.size() - header.data_offset < header.payload_bytes) return Status::Invalid("npy payload is truncated");
  ArrayView view;
  view.dtype = header.dtype;
  view.shape = std::move(header.shape);
  view.data = npy.subspan(header.data_offset, header.payload_bytes);
  return view;
}

Bytes encode(const DType& dtype, const std::vector<std::uint64_t>& shape, ByteView data) {
  Bytes out = encode_header(dtype, shape);
  out.reserve(out.size() + data.size());
  append_bytes(out, data);
  return out;
}

Bytes encode_header(const DType& dtype, const std::vector<std::uint64_t>& shape) {
  std::string dict = "{'descr': '" + dtype.descr() + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
  }
  dict += "), }";
  const bool v2 = dict.size() + 1 + 10 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  const std::size_t padded = ((prefix + dict.size() + 1 + kAlignment - 1) / kAlignment) * kAlignment;
  dict.append(padded - prefix - dict.size() - 1, ' ');
  dict += '\n';
  Bytes out;
  out.reserve(padded);
  append_bytes(out, kMagic);
  out.push_back(v2 ? 2 : 1);
  out.push_back(0);
  if (v2) {
    append_le<std::uint32_t>(out, static_cast<std::uint32_t>(dict.size()));
  } else {
    append_le<std::uint16_t>(out, static_cast<std::uint16_t>(dict.size()));
  }
  append_bytes(out, dict);
  return out;
}

std::int64_t integer_at(const ArrayView& array, std::uint64_t i) {
  const std::uint8_t* p = array.data.data() + i * array.dtype.itemsize;
  const bool is_signed = array.dtype.kind == 'i';
  switch (array.dtype.itemsize) {
    case 1: return is_signed ? std::int64_t{load_le<std::int8_t>(p)} : std::int64_t{load_le<std::uint8_t>(p)};
    case 2: return is_signed ? std::int64_t{load_le<std::int16_t>(p)} : std::int64_t{load_le<std::uint16_t>(p)};
    case 4: return is_signed ? std::int64_t{load_le<std::int32_t>(p)} : std::int64_t{load_le<std::uint32_t>(p)};
    default: return load_le<std::int64_t>(p);
  }
}

}  // namespace reshard::npy

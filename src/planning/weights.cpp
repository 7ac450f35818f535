#include "reshard/planning/weights.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <string_view>

#include "reshard/format/npy.hpp"

namespace reshard {
namespace {

Status check_weight(double weight, const std::string& where) {
  if (!std::isfinite(weight) || weight < 0) {
    char text[32];
    const auto end = std::to_chars(text, text + sizeof(text), weight).ptr;
    return Status::Invalid(where + ": weight " + std::string(text, end) + " is not a finite number >= 0");
  }
  return Status::Ok();
}

Result<std::vector<double>> parse_npy_weights(ByteView file, const std::string& name, std::uint64_t extent,
                                              const std::string& axis_noun) {
  auto array = npy::parse(file);
  if (!array.ok()) return array.status().with_context("weights " + name);
  if (array->shape.size() != 1) return Status::Invalid("weights " + name + ": not a one-dimensional array");
  const npy::DType dtype = array->dtype;
  const bool floating = dtype.kind == 'f' && (dtype.itemsize == 4 || dtype.itemsize == 8);
  if (!floating && dtype.kind != 'i' && dtype.kind != 'u') {
    return Status::Invalid("weights " + name + ": dtype " + dtype.name() + " is not a number (float or int expected)");
  }
  const std::uint64_t n = array->element_count();
  if (n > extent) {
    return Status::Invalid("weights " + name + ": " + std::to_string(n) + " weights but the matrix has " +
                           std::to_string(extent) + " " + axis_noun);
  }
  std::vector<double> weights(extent, 1.0);
  for (std::uint64_t i = 0; i < n; ++i) {
    double w = 0;
    if (floating && dtype.itemsize == 8) {
      std::memcpy(&w, array->data.data() + i * 8, 8);
    } else if (floating) {
      float f = 0;
      std::memcpy(&f, array->data.data() + i * 4, 4);
      w = f;
    } else {
      w = static_cast<double>(npy::integer_at(*array, i));
    }
    RESHARD_RETURN_IF_ERROR(check_weight(w, "weights " + name + "[" + std::to_string(i) + "]"));
    weights[i] = w;
  }
  return weights;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
  return text;
}

Result<std::vector<double>> parse_csv_weights(ByteView file, const std::string& name, std::uint64_t extent,
                                              const std::string& axis_noun) {
  const std::string_view text(reinterpret_cast<const char*>(file.data()), file.size());
  std::vector<double> weights(extent, 1.0);
  std::vector<bool> seen(extent, false);
  std::size_t line_start = 0;
  bool first = true;
  for (std::uint64_t line_number = 1; line_start < text.size(); ++line_number) {
    const std::size_t newline = text.find('\n', line_start);
    const std::string_view line = trim(
        text.substr(line_start, newline == std::string_view::npos ? std::string_view::npos : newline - line_start));
    line_start = newline == std::string_view::npos ? text.size() : newline + 1;
    if (line.empty() || line.front() == '#') continue;
    const std::string where = name + " line " + std::to_string(line_number);
    const bool header_allowed = first;
    first = false;
    const std::size_t comma = line.find(',');
    if (comma == std::string_view::npos) return Status::Invalid(where + ": expected 'index,weight'");
    const std::string_view index_text = trim(line.substr(0, comma));
    const std::string_view weight_text = trim(line.substr(comma + 1));
    std::uint64_t index = 0;
    auto [index_end, index_error] = std::from_chars(index_text.data(), index_text.data() + index_text.size(), index);
    if (index_error != std::errc() || index_end != index_text.data() + index_text.size() || index_text.empty()) {
      // A header line ("index,weight") is allowed first.
      if (header_allowed) continue;
      return Status::Invalid(where + ": index '" + std::string(index_text) + "' is not a non-negative integer");
    }
    double weight = 0;
    auto [weight_end, weight_error] =
        std::from_chars(weight_text.data(), weight_text.data() + weight_text.size(), weight);
    if (weight_error != std::errc() || weight_end != weight_text.data() + weight_text.size() || weight_text.empty()) {
      return Status::Invalid(where + ": weight '" + std::string(weight_text) + "' is not a number");
    }
    if (index >= extent) {
      return Status::Invalid(where + ": index " + std::to_string(index) + " is not below the matrix's " +
                             std::to_string(extent) + " " + axis_noun);
    }
    RESHARD_RETURN_IF_ERROR(check_weight(weight, where));
    if (seen[index]) return Status::Invalid(where + ": index " + std::to_string(index) + " is given twice");
    seen[index] = true;
    weights[index] = weight;
  }
  return weights;
}

}  // namespace

Result<std::vector<double>> parse_weights(ByteView file, const std::string& name, std::uint64_t extent,
                                          const std::string& axis_noun) {
  static constexpr std::uint8_t kNpyMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (file.size() >= 6 && std::memcmp(file.data(), kNpyMagic, 6) == 0) {
    return parse_npy_weights(file, name, extent, axis_noun);
  }
  return parse_csv_weights(file, name, extent, axis_noun);
}

std::vector<std::uint64_t> integer_costs(const std::vector<double>& values) {
  double total = 0;
  for (const double v : values) total += v;
  std::vector<std::uint64_t> costs(values.size(), 0);
  if (total <= 0) return costs;
  const double scale = std::ldexp(1.0, 50) / total;
  for (std::size_t i = 0; i < values.size(); ++i)
    costs[i] = static_cast<std::uint64_t>(std::llround(values[i] * scale));
  return costs;
}

}  // namespace reshard

#include "reshard/manifest.hpp"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "reshard/hash.hpp"
#include "reshard/json_text.hpp"

namespace reshard {
namespace {

using nlohmann::json;

json fingerprint_json(const Fingerprint& f) { return {{"nnz", f.count}, {"sum", f.sum_hex()}}; }

Fingerprint fingerprint_from(const json& j) {
  return Fingerprint{j.at("nnz").get<std::uint64_t>(), std::stoull(j.at("sum").get<std::string>(), nullptr, 16)};
}

// Keys and patterns are bytes (POSIX paths): escaped so that any byte is
// kept exactly (reshard/json_text.hpp).
Bytes dump(json j) {
  escape_strings(j);
  const std::string text = j.dump(1) + "\n";
  return Bytes(text.begin(), text.end());
}

std::string hex32(std::uint32_t v) {
  char buffer[9];
  std::snprintf(buffer, sizeof(buffer), "%08x", v);
  return buffer;
}

// A 128-bit digest from two differently seeded splitmix64 chains over the
// bytes: not cryptographic, but plenty to tell jobs apart.
std::string digest(const std::string& text) {
  std::uint64_t a = 0x243F6A8885A308D3ULL;
  std::uint64_t b = 0x13198A2E03707344ULL;
  for (unsigned char c : text) {
    a = splitmix64(a ^ c);
    b = splitmix64(b + c);
  }
  char buffer[33];
  std::snprintf(buffer, sizeof(buffer), "%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return buffer;
}

}  // namespace

Bytes Manifest::encode() const {
  json j;
  j["format_version"] = kFormatVersion;
  j["job_id"] = job_id;
  j["src"] = src_pattern;
  j["dst"] = dst_pattern;
  j["old_scheme"] = old_scheme;
  j["new_scheme"] = new_scheme;
  j["compression"] = compression;
  if (!src_group.empty()) j["src_group"] = src_group;
  if (!dst_group.empty()) j["dst_group"] = dst_group;
  j["shape"] = {shape.nrows, shape.ncols};
  j["source_fingerprint"] = source_fingerprint ? fingerprint_json(*source_fingerprint) : json(nullptr);
  j["committed"] = committed;
  j["journal_from"] = journal_from;
  json& srcs = j["sources"] = json::array();
  for (const auto& s : sources) {
    srcs.push_back({{"index", s.index},
                    {"key", s.key},
                    {"size", s.size},
                    {"version", s.version},
                    {"tail_crc32", hex32(s.tail_crc)}});
  }
  json& dsts = j["shards"] = json::array();
  for (const auto& d : shards) {
    json record = {
        {"index", d.index}, {"key", d.key}, {"state", d.state == ShardState::kWritten ? "written" : "pending"}};
    if (d.state == ShardState::kWritten) {
      record["nnz"] = d.nnz;
      record["bytes"] = d.bytes;
      record["crc32c"] = hex32(d.crc32c);
      record["fingerprint"] = fingerprint_json(d.fingerprint);
    }
    dsts.push_back(std::move(record));
  }
  return dump(j);
}

Result<Manifest> Manifest::decode(ByteView bytes) {
  try {
    json j = json::parse(bytes.begin(), bytes.end());
    unescape_strings(j);
    if (j.at("format_version").get<int>() != kFormatVersion) {
      return Status::Invalid("manifest format version " + j.at("format_version").dump() + " is not supported");
    }
    Manifest m;
    m.job_id = j.at("job_id").get<std::string>();
    m.src_pattern = j.at("src").get<std::string>();
    m.dst_pattern = j.at("dst").get<std::string>();
    m.old_scheme = j.at("old_scheme").get<std::string>();
    m.new_scheme = j.at("new_scheme").get<std::string>();
    m.compression = j.at("compression").get<std::string>();
    m.src_group = j.value("src_group", std::string());
    m.dst_group = j.value("dst_group", std::string());
    m.shape = {j.at("shape").at(0).get<std::uint64_t>(), j.at("shape").at(1).get<std::uint64_t>()};
    if (!j.at("source_fingerprint").is_null()) m.source_fingerprint = fingerprint_from(j["source_fingerprint"]);
    m.committed = j.at("committed").get<bool>();
    m.journal_from = j.value("journal_from", std::uint64_t{0});
    for (const auto& s : j.at("sources")) {
      m.sources.push_back({s.at("index").get<std::uint64_t>(), s.at("key").get<std::string>(),
                           s.at("size").get<std::uint64_t>(), s.at("version").get<std::string>(),
                           static_cast<std::uint32_t>(std::stoul(s.at("tail_crc32").get<std::string>(), nullptr, 16))});
    }
    for (const auto& d : j.at("shards")) {
      ShardRecord r;
      r.index = d.at("index").get<std::uint64_t>();
      r.key = d.at("key").get<std::string>();
      r.state = d.at("state").get<std::string>() == "written" ? ShardState::kWritten : ShardState::kPending;
      if (r.state == ShardState::kWritten) {
        r.nnz = d.at("nnz").get<std::uint64_t>();
        r.bytes = d.at("bytes").get<std::uint64_t>();
        r.crc32c = static_cast<std::uint32_t>(std::stoul(d.at("crc32c").get<std::string>(), nullptr, 16));
        r.fingerprint = fingerprint_from(d.at("fingerprint"));
      }
      m.shards.push_back(std::move(r));
    }
    return m;
  } catch (const std::exception& e) {
    return Status::Invalid(std::string("manifest is not valid: ") + e.what());
  }
}

Bytes JournalSegment::encode() const {
  json records = json::array();
  for (const auto& r : written) {
    records.push_back({r.index, r.nnz, r.bytes, hex32(r.crc32c), r.fingerprint.count, r.fingerprint.sum_hex()});
  }
  return dump({{"job_id", job_id}, {"segment", number}, {"written", records}});
}

Result<JournalSegment> JournalSegment::decode(ByteView bytes) {
  try {
    json j = json::parse(bytes.begin(), bytes.end());
    unescape_strings(j);
    JournalSegment segment;
    segment.job_id = j.at("job_id").get<std::string>();
    segment.number = j.at("segment").get<std::uint64_t>();
    for (const auto& r : j.at("written")) {
      ShardRecord record;
      record.index = r.at(0).get<std::uint64_t>();
      record.state = ShardState::kWritten;
      record.nnz = r.at(1).get<std::uint64_t>();
      record.bytes = r.at(2).get<std::uint64_t>();
      record.crc32c = static_cast<std::uint32_t>(std::stoul(r.at(3).get<std::string>(), nullptr, 16));
      record.fingerprint = {r.at(4).get<std::uint64_t>(), std::stoull(r.at(5).get<std::string>(), nullptr, 16)};
      segment.written.push_back(std::move(record));
    }
    return segment;
  } catch (const std::exception& e) {
    return Status::Invalid(std::string("journal segment is not valid: ") + e.what());
  }
}

Status JournalSegment::apply_to(Manifest& manifest) const {
  if (job_id != manifest.job_id) return Status::Invalid("journal segment belongs to job " + job_id);
  for (const auto& r : written) {
    if (r.index >= manifest.shards.size()) {
      return Status::Invalid("journal segment names shard " + std::to_string(r.index) + " of " +
                             std::to_string(manifest.shards.size()));
    }
    ShardRecord& record = manifest.shards[r.index];
    const std::string key = record.key;
    record = r;
    record.key = key;
  }
  return Status::Ok();
}

std::string compute_job_id(const Manifest& m) {
  json j;
  j["src"] = m.src_pattern;
  j["dst"] = m.dst_pattern;
  j["old_scheme"] = m.old_scheme;
  j["new_scheme"] = m.new_scheme;
  j["compression"] = m.compression;
  if (!m.src_group.empty()) j["src_group"] = m.src_group;
  if (!m.dst_group.empty()) j["dst_group"] = m.dst_group;
  json& srcs = j["sources"] = json::array();
  for (const auto& s : m.sources) srcs.push_back({s.index, s.key, s.size, s.version, s.tail_crc});
  escape_strings(j);
  return digest(j.dump());
}

Bytes SuccessMarker::encode() const {
  json j = {{"job_id", job_id},
            {"nnz", nnz},
            {"fingerprint", fingerprint_json(fingerprint)},
            {"shard_count", shard_count},
            {"wall_seconds", wall_seconds},
            {"finished_at", finished_at}};
  return dump(j);
}

Result<SuccessMarker> SuccessMarker::decode(ByteView bytes) {
  try {
    const json j = json::parse(bytes.begin(), bytes.end());
    SuccessMarker s;
    s.job_id = j.at("job_id").get<std::string>();
    s.nnz = j.at("nnz").get<std::uint64_t>();
    s.fingerprint = fingerprint_from(j.at("fingerprint"));
    s.shard_count = j.at("shard_count").get<std::uint64_t>();
    s.wall_seconds = j.value("wall_seconds", 0.0);
    s.finished_at = j.value("finished_at", "");
    return s;
  } catch (const std::exception& e) {
    return Status::Invalid(std::string("_SUCCESS is not valid: ") + e.what());
  }
}

std::string journal_directory(const std::string& destination_directory) {
  return destination_directory + "_reshard/journal/";
}

std::string sequence_name(std::uint64_t number) {
  char name[32];
  std::snprintf(name, sizeof(name), "%020llu.json", static_cast<unsigned long long>(number));
  return name;
}

std::optional<std::uint64_t> sequence_number(const std::string& name) {
  constexpr std::size_t kDigits = 20;
  if (name.size() != kDigits + 5 || name.compare(kDigits, 5, ".json") != 0) return std::nullopt;
  std::uint64_t number = 0;
  for (std::size_t i = 0; i < kDigits; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    const auto digit = static_cast<std::uint64_t>(name[i] - '0');
    // 20 digits reach past 2^64; such a name is no number of ours.
    if (number > (UINT64_MAX - digit) / 10) return std::nullopt;
    number = number * 10 + digit;
  }
  return number;
}

std::string journal_segment_key(const std::string& destination_directory, std::uint64_t number) {
  return journal_directory(destination_directory) + sequence_name(number);
}

std::optional<std::uint64_t> journal_segment_number(const std::string& key, const std::string& destination_directory) {
  const std::string prefix = journal_directory(destination_directory);
  if (key.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  return sequence_number(key.substr(prefix.size()));
}

std::string manifest_key(const std::string& destination_directory) {
  return destination_directory + "_reshard/manifest.json";
}
std::string success_key(const std::string& destination_directory) { return destination_directory + "_SUCCESS"; }

}  // namespace reshard

// The checkpoint manifest (<destination dir>/_reshard/manifest.json) and the
// _SUCCESS marker: their JSON encoding and decoding, no I/O.
// docs/commit-protocol.md describes how they are used.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "reshard/bytes.hpp"
#include "reshard/fingerprint.hpp"
#include "reshard/sharding_spec.hpp"
#include "reshard/status.hpp"

namespace reshard {

// What a source shard was when the job was planned; a change means the
// manifest's work no longer describes this source.
struct SourceIdentity {
  std::uint64_t index = 0;
  std::string key;
  std::uint64_t size = 0;
  std::string version;         // store's version (POSIX: size, mtime, inode)
  std::uint32_t tail_crc = 0;  // CRC-32 of the file's tail holding the zip directory
  bool operator==(const SourceIdentity&) const = default;
};

enum class ShardState { kPending, kWritten };

struct ShardRecord {
  std::uint64_t index = 0;
  std::string key;
  ShardState state = ShardState::kPending;
  std::uint64_t nnz = 0;
  std::uint64_t bytes = 0;
  std::uint32_t crc32c = 0;  // of the whole file
  Fingerprint fingerprint;
};

struct Manifest {
  static constexpr int kFormatVersion = 1;
  std::string job_id;
  std::string src_pattern;
  std::string dst_pattern;
  std::string old_scheme;  // normalized text form
  std::string new_scheme;
  std::string compression;  // "none" or "deflate:L"
  // HDF5 shards: the groups given with --src-group/--dst-group (empty: the
  // defaults; left out of the file then).
  std::string src_group;
  std::string dst_group;
  GlobalShape shape;
  std::vector<SourceIdentity> sources;
  std::optional<Fingerprint> source_fingerprint;  // known once every source was read
  std::vector<ShardRecord> shards;                // one per destination shard, by index
  bool committed = false;
  // Journal segments numbered below this are already folded in here (and
  // may linger after a crash during compaction): readers skip them.
  std::uint64_t journal_from = 0;

  Bytes encode() const;
  static Result<Manifest> decode(ByteView bytes);
};

// One round of the write stage as rank 0 records it: the shards written,
// appended as its own small object instead of rewriting the manifest
// (docs/commit-protocol.md, "Journal").
struct JournalSegment {
  std::string job_id;
  std::uint64_t number = 0;
  std::vector<ShardRecord> written;  // index, nnz, bytes, crc32c, fingerprint; state kWritten

  Bytes encode() const;
  static Result<JournalSegment> decode(ByteView bytes);
  // Marks the recorded shards written in `manifest`; an index out of range
  // means the segment is not this manifest's.
  Status apply_to(Manifest& manifest) const;
};

// A deterministic id for "this job": the sources' identities, both schemes,
// the destination pattern and the output options. Independent of rank count.
std::string compute_job_id(const Manifest& manifest);

// _SUCCESS: present only once every shard is written and verified.
struct SuccessMarker {
  std::string job_id;
  std::uint64_t nnz = 0;
  Fingerprint fingerprint;
  std::uint64_t shard_count = 0;
  double wall_seconds = 0;
  std::string finished_at;  // UTC, ISO 8601

  Bytes encode() const;
  static Result<SuccessMarker> decode(ByteView bytes);
};

// Control objects kept in sequence (journal segments, destination claims)
// are named by a 20-digit zero-padded number and ".json", so a listing's
// order is their numeric order.
std::string sequence_name(std::uint64_t number);
// The number `name` (a bare name, no directory) gives, or nullopt when it is
// not such a name or its number does not fit 64 bits.
std::optional<std::uint64_t> sequence_number(const std::string& name);

std::string manifest_key(const std::string& destination_directory);
// <dst dir>/_reshard/journal/, and the key of segment `number` in it.
std::string journal_directory(const std::string& destination_directory);
std::string journal_segment_key(const std::string& destination_directory, std::uint64_t number);
// The segment number a key of journal_directory() names, or nullopt for
// anything else there (temp files).
std::optional<std::uint64_t> journal_segment_number(const std::string& key, const std::string& destination_directory);
std::string success_key(const std::string& destination_directory);

}  // namespace reshard

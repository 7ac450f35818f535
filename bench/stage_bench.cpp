// The CPU stages of one rank on a synthetic skewed source shard, each at
// --threads 1 and 2: inflate (decode), bucket, assemble and deflate (encode)
// in ns per entry, and the speed-up of 2 threads over 1 measured in the same
// run. Usage:
//   build/bin/stage_bench [ENTRIES] [shuffle]   (default 8,000,000; "shuffle":
//                                               bucket and assemble only)
// Each figure is the best of 3 runs. The output arrays of 1 and 2 threads
// are compared, so a speed-up never hides a different result.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "reshard/format/deflate.hpp"
#include "reshard/format/npz.hpp"
#include "reshard/parallel.hpp"
#include "reshard/pipeline/assemble.hpp"
#include "reshard/pipeline/bucket.hpp"
#include "reshard/process_memory.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace reshard;

// The process's CPU seconds so far, all threads: in user mode (the stages'
// own code) and in the kernel (on a VM, mostly faulting in and zeroing
// fresh pages).
struct CpuSeconds {
  double user = 0;
  double kernel = 0;
};

CpuSeconds cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
  };
  return {seconds(usage.ru_utime), seconds(usage.ru_stime)};
}

// The fastest of 3 runs: its wall seconds and the kernel CPU seconds (all
// threads) it took; and the least user CPU seconds of the 3.
struct Timing {
  double wall = 1e300;
  double kernel = 0;
  double user = 1e300;
};

// `before_each` runs before each timed run, untimed: it frees what the
// previous run made, which a job frees in a later stage.
Timing best_of_3(
    const std::function<void()>& run, const std::function<void()>& before_each = [] {}) {
  Timing best;
  for (int i = 0; i < 3; ++i) {
    before_each();
    const CpuSeconds before = cpu_seconds();
    const auto t0 = Clock::now();
    run();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    const CpuSeconds after = cpu_seconds();
    best.user = std::min(best.user, after.user - before.user);
    if (wall < best.wall) {
      best.wall = wall;
      best.kernel = after.kernel - before.kernel;
    }
  }
  return best;
}

// Microseconds that run_in_parallel takes to start and join a second
// thread (two empty tasks on two threads, mean of 1000 calls): the cost
// that the stages' minimum part sizes (kMinEntriesPerMergePiece and the
// like) must outweigh.
double thread_start_us() {
  constexpr int kCalls = 1000;
  const auto t0 = Clock::now();
  for (int i = 0; i < kCalls; ++i) run_in_parallel(2, 2, [](std::size_t) {});
  return std::chrono::duration<double>(Clock::now() - t0).count() * 1e6 / kCalls;
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "stage_bench: %s\n", what.c_str());
  std::exit(1);
}

// Bad arguments: exit code 2, as every command of the project.
[[noreturn]] void refuse(const std::string& what) {
  std::fprintf(stderr, "stage_bench: %s (usage: stage_bench [ENTRIES] [shuffle])\n", what.c_str());
  std::exit(2);
}

// Rows of skewed length (a few long ones), columns clustered in the first
// eighth as in bench.py's matrix, values small integers (compressible).
struct SourceArrays {
  std::uint64_t nrows = 0;
  std::uint64_t ncols = 0;
  std::vector<std::uint64_t> indptr{0};
  std::vector<std::uint64_t> indices;
  std::vector<double> values;
};

SourceArrays make_source(std::uint64_t entries) {
  SourceArrays a;
  a.nrows = std::max<std::uint64_t>(1000, entries / 20);
  a.ncols = std::max<std::uint64_t>(1000, entries / 80);
  std::uint64_t state = 42;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  const double mean = static_cast<double>(entries) / static_cast<double>(a.nrows);
  std::vector<std::uint64_t> row;
  for (std::uint64_t r = 0; r < a.nrows; ++r) {
    const std::uint64_t length =
        next() % 100 == 0 ? static_cast<std::uint64_t>(mean * 40)
                          : static_cast<std::uint64_t>(mean * 0.6 * static_cast<double>(next() % 100) / 50.0);
    row.clear();
    for (std::uint64_t j = 0; j < length; ++j) {
      const bool hot = next() % 10 != 0;
      row.push_back(hot ? next() % (a.ncols / 8) : next() % a.ncols);
    }
    std::sort(row.begin(), row.end());
    row.erase(std::unique(row.begin(), row.end()), row.end());
    for (const auto c : row) {
      a.indices.push_back(c);
      a.values.push_back(static_cast<double>(1 + next() % 16));
    }
    a.indptr.push_back(a.indices.size());
  }
  return a;
}

// The index arrays at 4 bytes, as an assembled shard holds them when they
// fit int32 (the writer then sends them from its buffers unconverted).
struct NarrowIndices {
  std::vector<std::uint32_t> indptr;
  std::vector<std::uint32_t> indices;
  explicit NarrowIndices(const SourceArrays& a)
      : indptr(a.indptr.begin(), a.indptr.end()), indices(a.indices.begin(), a.indices.end()) {}
};

IndexView narrow_view(const std::vector<std::uint32_t>& words) {
  return IndexView(ByteView(reinterpret_cast<const std::uint8_t*>(words.data()), words.size() * 4), 4);
}

npz::EncodeInput encode_input(const SourceArrays& a, const NarrowIndices& narrow) {
  npz::EncodeInput input;
  input.nrows = a.nrows;
  input.ncols = a.ncols;
  input.indptr = narrow_view(narrow.indptr);
  input.indices = narrow_view(narrow.indices);
  input.value_dtype = {'f', 8};
  input.values = ByteView(reinterpret_cast<const std::uint8_t*>(a.values.data()), a.values.size() * sizeof(double));
  return input;
}

struct Row {
  explicit Row(std::string name) : stage(std::move(name)) {}
  std::string stage;
  Timing one;
  Timing two;
};

}  // namespace

int main(int argc, char** argv) {
  // As mpi_reshard does: large buffers are their own mappings, on huge pages.
  configure_process_memory();
  std::uint64_t wanted = 8'000'000;
  if (argc > 1) {
    char* end = nullptr;
    wanted = std::strtoull(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || wanted < 1000) {
      refuse(std::string("ENTRIES must be a whole number of at least 1000, not '") + argv[1] + "'");
    }
  }
  // "shuffle": only bucket and assemble, the stages of target 4.
  if (argc > 2 && std::strcmp(argv[2], "shuffle") != 0) refuse(std::string("unknown argument '") + argv[2] + "'");
  if (argc > 3) refuse("too many arguments");
  const bool shuffle_only = argc > 2;
  const SourceArrays arrays = make_source(wanted);
  const std::uint64_t nnz = arrays.indices.size();
  if (nnz == 0) refuse("ENTRIES " + std::to_string(wanted) + " gave a matrix with no entries; ask for more");
  const auto n = static_cast<double>(nnz);
  std::printf("stage_bench: %llu entries, %llux%llu, one source shard -> 8 column blocks, best of 3\n",
              static_cast<unsigned long long>(nnz), static_cast<unsigned long long>(arrays.nrows),
              static_cast<unsigned long long>(arrays.ncols));
  std::printf("run_in_parallel: %.1f us to start and join a second thread (mean of 1000 calls)\n", thread_start_us());
  std::vector<Row> rows;

  // Encode: the write stage's CPU part, at the default and at deflate:6.
  if (!npz::fits_int32(arrays.nrows, arrays.ncols, nnz)) fail("too many entries for int32 indices");
  const NarrowIndices narrow(arrays);
  const npz::EncodeInput input = encode_input(arrays, narrow);
  std::vector<std::pair<std::string, zip::WriteOptions>> encoders;
  if (!shuffle_only) {
    encoders = {{"deflate igzip:1", {zip::Method::kDeflate, 1, false, 1, zip::Deflater::kIgzip}},
                {"deflate deflate:6", {zip::Method::kDeflate, 6, false, 1, zip::Deflater::kLibdeflate}}};
  }
  // The file goes into one buffer, sized and touched before the timing: in a
  // job the write stage streams it to the store, and a vector growing by
  // doubling (npz::encode) would time its copies and fresh pages instead.
  Bytes file(input.values.size() + input.indices.bytes().size() + input.indptr.bytes().size() + (1 << 20), 1);
  std::size_t file_size = 0;
  const ByteSink into_file = [&](ByteView bytes) {
    if (file_size + bytes.size() > file.size()) return Status::Internal("encoded file larger than its buffer");
    std::memcpy(file.data() + file_size, bytes.data(), bytes.size());
    file_size += bytes.size();
    return Status::Ok();
  };
  for (const auto& [name, options] : encoders) {
    Row row{name};
    Bytes first;
    for (const int threads : {1, 2}) {
      zip::WriteOptions o = options;
      o.threads = threads;
      const Timing t = best_of_3([&] {
        file_size = 0;
        const Status encoded = npz::encode_streamed(input, o, into_file);
        if (!encoded.ok()) fail("encode: " + encoded.message());
      });
      (threads == 1 ? row.one : row.two) = t;
      const Bytes out(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(file_size));
      if (threads == 1) first = out;
      if (threads == 2 && out != first) fail(name + ": 2 threads wrote other bytes than 1");
    }
    rows.push_back(row);
  }

  // libdeflate has no flush: it cannot end a piece of an array on a byte
  // boundary, so deflate:6 splits a shard by array only (zip.cpp's
  // plan_deflate_chunks), and its largest array bounds what threads gain.
  std::string deflate6_arrays;
  if (!shuffle_only) {
    const std::pair<const char*, ByteView> members[] = {
        {"data", input.values}, {"indices", input.indices.bytes()}, {"indptr", input.indptr.bytes()}};
    double total = 0;
    double largest = 0;
    ByteArray compressed;
    for (const auto& [name, bytes] : members) {
      const Timing t = best_of_3([&] {
        const Status s = deflate::libdeflate_stream(bytes, 6, compressed);
        if (!s.ok()) fail("deflate:6 of " + std::string(name) + ": " + s.message());
      });
      total += t.wall;
      largest = std::max(largest, t.wall);
      char part[64];
      std::snprintf(part, sizeof part, "%s%s %.1f ms", deflate6_arrays.empty() ? "" : ", ", name, t.wall * 1e3);
      deflate6_arrays += part;
    }
    char bound[96];
    std::snprintf(bound, sizeof bound, "; one array per thread, 2 threads reach at most %.2fx", total / largest);
    deflate6_arrays += bound;
  }

  // Decode: the read stage's CPU part (inflate, validate).
  if (!shuffle_only) {
    auto compressed = npz::encode(input, {zip::Method::kDeflate, 1, false, 2, zip::Deflater::kIgzip});
    if (!compressed.ok()) fail("encode: " + compressed.status().message());
    Row row{"inflate (decode)"};
    for (const int threads : {1, 2}) {
      // decode() takes the file it reads; in a job the read stage has just
      // filled it, so its copies are made before the timing.
      std::vector<Bytes> files(3, *compressed);
      std::size_t run = 0;
      // The decoded arrays are freed after the timing: a job keeps them
      // until the source is bucketed.
      Result<npz::DecodedShard> decoded = Status::Internal("not decoded yet");
      (threads == 1 ? row.one : row.two) = best_of_3(
          [&] {
            decoded = npz::decode(std::move(files.at(run++)), threads);
            if (!decoded.ok()) fail("decode: " + decoded.status().message());
          },
          [&] { decoded = Status::Internal("not decoded yet"); });
    }
    rows.push_back(row);
  }

  // Bucket and assemble on a decoded stored shard, as a rank holds it.
  auto stored = npz::encode(input, {zip::Method::kStored});
  if (!stored.ok()) fail("encode: " + stored.status().message());
  auto decoded = npz::decode(std::move(stored).value(), 1);
  if (!decoded.ok()) fail("decode: " + decoded.status().message());
  const GlobalShape shape{arrays.nrows, arrays.ncols};
  Plan plan;
  plan.shape = shape;
  auto spec = ShardingSpec::parse_text("cols:block=" + std::to_string((arrays.ncols + 7) / 8));
  if (!spec.ok()) fail(spec.status().message());
  auto map = ShardMap::bind(*spec, shape);
  if (!map.ok()) fail(map.status().message());
  plan.destination_map = *map;
  for (std::uint64_t d = 0; d < map->shard_count(); ++d) {
    plan.destinations.push_back({d, "shard_" + std::to_string(d), map->box(d)});
  }
  SourceShard source_shard;
  source_shard.box = {0, arrays.nrows, 0, arrays.ncols};
  LoadedSource source;
  source.shard = &source_shard;
  source.decoded = std::move(decoded).value();
  const std::vector<bool> skip(map->shard_count(), false);
  BucketBlock blocks[2];
  {
    Row row{"bucket cols:block"};
    for (const int threads : {1, 2}) {
      (threads == 1 ? row.one : row.two) =
          best_of_3([&] { blocks[threads - 1] = bucket_source(source, plan.destination_map, skip, threads); },
                    [&] { blocks[threads - 1] = BucketBlock{}; });
    }
    if (blocks[0].entries.size() != blocks[1].entries.size() ||
        std::memcmp(blocks[0].entries.data(), blocks[1].entries.data(), blocks[0].entries.size() * sizeof(Entry)) !=
            0) {
      fail("bucket: 2 threads made another block than 1");
    }
    rows.push_back(row);
  }
  {
    // rows:hash computes a row's shard once (bucket.cpp), not per entry.
    auto hash_spec = ShardingSpec::parse_text("rows:hash=mix,shards=8");
    if (!hash_spec.ok()) fail(hash_spec.status().message());
    auto hash_map = ShardMap::bind(*hash_spec, shape);
    if (!hash_map.ok()) fail(hash_map.status().message());
    const std::vector<bool> keep_all(hash_map->shard_count(), false);
    BucketBlock hashed[2];
    Row row{"bucket rows:hash"};
    for (const int threads : {1, 2}) {
      (threads == 1 ? row.one : row.two) =
          best_of_3([&] { hashed[threads - 1] = bucket_source(source, *hash_map, keep_all, threads); },
                    [&] { hashed[threads - 1] = BucketBlock{}; });
    }
    if (hashed[0].entries.size() != hashed[1].entries.size() ||
        std::memcmp(hashed[0].entries.data(), hashed[1].entries.data(), hashed[0].entries.size() * sizeof(Entry)) !=
            0) {
      fail("bucket rows:hash: 2 threads made another block than 1");
    }
    rows.push_back(row);
  }
  {
    // Every destination shard in turn, as the owner of all of them would.
    Row row{"assemble"};
    std::vector<std::vector<SourceSegment>> parts;
    std::uint64_t offset = 0;
    for (const auto& segment : blocks[0].segments) {
      parts.push_back({{std::span<const Entry>(blocks[0].entries).subspan(offset, segment.count), blocks[0].source,
                        blocks[0].sorted}});
      offset += segment.count;
    }
    std::vector<Fingerprint> fingerprints[2];
    for (const int threads : {1, 2}) {
      (threads == 1 ? row.one : row.two) = best_of_3([&] {
        fingerprints[threads - 1].clear();
        for (std::size_t k = 0; k < parts.size(); ++k) {
          const AssembledShard shard =
              assemble_shard(parts[k], plan.destinations[blocks[0].segments[k].shard], plan, {'f', 8}, {}, threads);
          fingerprints[threads - 1].push_back(shard.fingerprint);
        }
      });
    }
    if (fingerprints[0] != fingerprints[1]) fail("assemble: 2 threads assembled other arrays than 1");
    rows.push_back(row);
  }

  // "kernel": CPU time in the kernel during the timed run, all threads, per
  // entry; on this VM writing fresh memory can cost more than the stage.
  // "user": the least CPU time in user mode of the 3 runs, all threads, per
  // entry: the stage's own work, without the VM's cost of fresh pages.
  std::printf("\n%-20s%14s%9s%7s%15s%9s%7s%12s\n", "stage", "1 thread ns/e", "kernel", "user", "2 threads ns/e",
              "kernel", "user", "speed-up");
  for (const auto& row : rows) {
    std::printf("%-20s%14.1f%9.1f%7.1f%15.1f%9.1f%7.1f%11.2fx\n", row.stage.c_str(), row.one.wall * 1e9 / n,
                row.one.kernel * 1e9 / n, row.one.user * 1e9 / n, row.two.wall * 1e9 / n, row.two.kernel * 1e9 / n,
                row.two.user * 1e9 / n, row.one.wall / row.two.wall);
  }
  if (!deflate6_arrays.empty()) std::printf("\ndeflate:6 by array, one thread: %s\n", deflate6_arrays.c_str());
  return 0;
}

// Deflate libraries on real shard arrays: zlib and libdeflate at the levels
// users pick, one thread, compress and decompress MB/s and ratio. Usage:
//   build/bin/deflate_bench shard.npz [more.npz ...]
// Every member of every file is inflated first (with the library's own zip
// reader), then recompressed by each library; figures are per byte of input.
#include <libdeflate.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "reshard/format/zip.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using reshard::Bytes;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

Bytes zlib_compress(const Bytes& in, int level) {
  z_stream z{};
  deflateInit2(&z, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  Bytes out(deflateBound(&z, in.size()));
  z.next_in = const_cast<Bytes::value_type*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void zlib_decompress(const Bytes& in, Bytes& out) {
  z_stream z{};
  inflateInit2(&z, -15);
  z.next_in = const_cast<Bytes::value_type*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  inflate(&z, Z_FINISH);
  inflateEnd(&z);
}

Bytes libdeflate_compress(const Bytes& in, int level) {
  auto* c = libdeflate_alloc_compressor(level);
  Bytes out(libdeflate_deflate_compress_bound(c, in.size()));
  out.resize(libdeflate_deflate_compress(c, in.data(), in.size(), out.data(), out.size()));
  libdeflate_free_compressor(c);
  return out;
}

void libdeflate_decompress(const Bytes& in, Bytes& out) {
  auto* d = libdeflate_alloc_decompressor();
  libdeflate_deflate_decompress(d, in.data(), in.size(), out.data(), out.size(), nullptr);
  libdeflate_free_decompressor(d);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: deflate_bench shard.npz [...]\n");
    return 2;
  }
  std::vector<Bytes> arrays;
  double total = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    Bytes file((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto members = reshard::zip::read_directory(file, file.size());
    if (!members.ok()) {
      std::fprintf(stderr, "deflate_bench: %s: %s\n", argv[i], members.status().message().c_str());
      return 2;
    }
    for (const auto& m : *members) {
      auto offset = reshard::zip::member_data_offset(reshard::ByteView(file).subspan(m.local_header_offset), m);
      if (!offset.ok()) return 2;
      auto data = reshard::zip::extract(reshard::ByteView(file).subspan(*offset, m.compressed_size), m);
      if (!data.ok() || data->size() < 4096) continue;
      total += static_cast<double>(data->size());
      arrays.push_back(std::move(data).value());
    }
  }
  std::printf("deflate_bench: %zu arrays, %.1f MB uncompressed, one thread\n", arrays.size(), total / 1e6);
  std::printf("%-14s%6s%12s%14s%10s\n", "library", "level", "comp MB/s", "decomp MB/s", "ratio");
  for (const char* library : {"zlib", "libdeflate"}) {
    for (int level : {1, 6, 9}) {
      const bool zlib = std::string(library) == "zlib";
      std::vector<Bytes> compressed;
      auto t0 = Clock::now();
      std::uint64_t out_bytes = 0;
      for (const auto& a : arrays) {
        compressed.push_back(zlib ? zlib_compress(a, level) : libdeflate_compress(a, level));
        out_bytes += compressed.back().size();
      }
      const double comp = seconds_since(t0);
      t0 = Clock::now();
      for (std::size_t k = 0; k < arrays.size(); ++k) {
        Bytes out(arrays[k].size());
        zlib ? zlib_decompress(compressed[k], out) : libdeflate_decompress(compressed[k], out);
        if (out != arrays[k]) {
          std::fprintf(stderr, "deflate_bench: %s level %d did not round-trip\n", library, level);
          return 1;
        }
      }
      const double decomp = seconds_since(t0);
      std::printf("%-14s%6d%12.1f%14.1f%10.3f\n", library, level, total / 1e6 / comp, total / 1e6 / decomp,
                  static_cast<double>(out_bytes) / total);
    }
  }
  return 0;
}

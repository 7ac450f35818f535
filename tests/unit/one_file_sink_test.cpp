// The one-file HDF5 sink without MPI (one rank, HDF5's default driver): parts
// written in any order land where the plan says, and the file is anndata's
// layout; a part with the wrong entry count is refused before it is written.
#include "reshard/pipeline/one_file_sink.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "reshard/format/h5sparse.hpp"
#include "reshard/store/posix_store.hpp"

namespace reshard {
namespace {

namespace fs = std::filesystem;

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A 6 x 4 CSR matrix cut into parts of rows [0, 2), [2, 3), [3, 6):
//   row 0: (0, 1.0) (3, 2.0)   row 1: -   row 2: (1, 3.0)
//   row 3: (0, 4.0)            row 4: -   row 5: (2, 5.0) (3, 6.0)
struct Part {
  DestinationShard shard;
  AssembledShard assembled;
};

Part make_part(std::uint64_t index, std::vector<std::uint64_t> indptr, std::vector<std::uint64_t> indices,
               std::vector<float> values) {
  Part part;
  part.shard.index = index;
  part.assembled.layout = Layout::kCsr;
  // Kept 8 bytes wide: the sink converts them to the file's int32.
  part.assembled.index_width = 8;
  part.assembled.indptr.resize(indptr.size() * 8);
  std::memcpy(part.assembled.indptr.data(), indptr.data(), indptr.size() * 8);
  part.assembled.indices.resize(indices.size() * 8);
  if (!indices.empty()) std::memcpy(part.assembled.indices.data(), indices.data(), indices.size() * 8);
  part.assembled.value_dtype = {'f', 4};
  part.assembled.values.resize(values.size() * 4);
  if (!values.empty()) std::memcpy(part.assembled.values.data(), values.data(), values.size() * 4);
  return part;
}

OneFileLayout layout_in(const fs::path& dir, int gzip) {
  OneFileLayout layout;
  layout.path = (dir / "m.h5ad").string();
  layout.temp_path = one_file_temp_path(layout.path, "job1");
  layout.nrows = 6;
  layout.ncols = 4;
  layout.value_dtype = {'f', 4};
  layout.gzip_level = gzip;
  layout.chunk_elements = 2;  // chunks shared by neighbouring parts
  layout.part_bounds = {0, 2, 3, 6};
  layout.part_offsets = {0, 2, 3, 6};
  return layout;
}

TEST(OneFileSink, PartsLandAtTheirOffsetsInAnyOrder) {
  const fs::path dir = fs::temp_directory_path() / ("one_file_sink_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto comm = make_self_comm();
  auto store = make_posix_store();
  for (int gzip : {0, 1}) {
    SCOPED_TRACE(gzip);
    std::vector<Part> parts;
    parts.push_back(make_part(2, {0, 1, 1, 3}, {0, 2, 3}, {4, 5, 6}));
    parts.push_back(make_part(0, {0, 2, 2}, {0, 3}, {1, 2}));
    parts.push_back(make_part(1, {0, 1}, {1}, {3}));
    auto sink = OneFileSink::create(*comm, *store, layout_in(dir, gzip));
    ASSERT_TRUE(sink.ok()) << sink.status().message();
    EXPECT_EQ(one_file_temp_path((dir / "m.h5ad").string(), "job1"), (dir / ".m.h5ad.tmp.job1.collective").string());
    for (auto& part : parts) {
      part.assembled.shard = &part.shard;
      ASSERT_TRUE((*sink)->write_part(*comm, &part.assembled).ok());
    }
    ASSERT_TRUE((*sink)->write_part(*comm, nullptr).ok()) << "a round without a part writes nothing";
    auto closed = (*sink)->close(*comm);
    ASSERT_TRUE(closed.ok()) << closed.status().message();
    EXPECT_FALSE(fs::exists(dir / "m.h5ad")) << "the final name appears only when published";
    ASSERT_TRUE((*sink)->move_into_place().ok());
    const Bytes file = read_file(dir / "m.h5ad");
    EXPECT_EQ(closed->bytes, file.size());
    auto decoded = h5sparse::decode(file, "");
    ASSERT_TRUE(decoded.ok()) << decoded.status().message();
    const auto& m = decoded->matrix;
    EXPECT_EQ(m.nrows, 6u);
    EXPECT_EQ(m.ncols, 4u);
    std::vector<std::tuple<std::uint64_t, std::uint64_t, float>> got;
    m.for_each_entry([&](std::uint64_t r, std::uint64_t c, std::uint64_t bits, std::uint64_t) {
      float v;
      const auto narrow = static_cast<std::uint32_t>(bits);
      std::memcpy(&v, &narrow, 4);
      got.emplace_back(r, c, v);
    });
    const std::vector<std::tuple<std::uint64_t, std::uint64_t, float>> expected = {
        {0, 0, 1.0f}, {0, 3, 2.0f}, {2, 1, 3.0f}, {3, 0, 4.0f}, {5, 2, 5.0f}, {5, 3, 6.0f}};
    EXPECT_EQ(got, expected);
    auto summary = h5sparse::summarize(file, "");
    ASSERT_TRUE(summary.ok());
    EXPECT_EQ(summary->compressed, gzip > 0);
    fs::remove(dir / "m.h5ad");
  }
  fs::remove_all(dir);
}

TEST(OneFileSink, APartWithAnotherEntryCountIsRefusedAndNothingIsLeft) {
  const fs::path dir = fs::temp_directory_path() / ("one_file_sink_bad_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto comm = make_self_comm();
  auto store = make_posix_store();
  {
    auto sink = OneFileSink::create(*comm, *store, layout_in(dir, 0));
    ASSERT_TRUE(sink.ok());
    Part part = make_part(1, {0, 0}, {}, {});  // planned: 1 entry
    part.assembled.shard = &part.shard;
    const Status status = (*sink)->write_part(*comm, &part.assembled);
    EXPECT_EQ(status.kind(), ErrorKind::kVerification);
    EXPECT_NE(status.message().find("part 1 of " + (dir / "m.h5ad").string() +
                                    " holds 0 entries where the exchange "
                                    "planned 1"),
              std::string::npos)
        << status.message();
  }
  EXPECT_TRUE(fs::is_empty(dir)) << "an unpublished sink removes its temp file";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace reshard

#include <gtest/gtest.h>

#include "reshard/shard_pattern.hpp"

namespace reshard {
namespace {

TEST(ShardPattern, RendersAndMatches) {
  auto p = *ShardPattern::parse("data/m/shard_{i}.npz");
  EXPECT_EQ(p.render(17, 0, 0), "data/m/shard_17.npz");
  EXPECT_EQ(p.directory(), "data/m/");
  auto name = p.match("data/m/shard_17.npz");
  ASSERT_TRUE(name.has_value());
  EXPECT_EQ(name->index, 17u);
  EXPECT_FALSE(p.match("data/m/shard_17.npz.tmp").has_value());
  EXPECT_FALSE(p.match("data/m/shard_.npz").has_value());
  EXPECT_FALSE(p.match("data/m/shard_007.npz").has_value()) << "only canonical numbers";
  EXPECT_FALSE(p.match("data/m/.shard_1.npz.tmp.1.2.3").has_value());
}

TEST(ShardPattern, RowAndColumnPlaceholders) {
  auto p = *ShardPattern::parse("out/r{row}_c{col}.npz");
  EXPECT_EQ(p.render(5, 2, 1), "out/r2_c1.npz");
  auto name = p.match("out/r2_c1.npz");
  ASSERT_TRUE(name.has_value());
  EXPECT_EQ(name->row_block, 2u);
  EXPECT_EQ(name->col_block, 1u);
  EXPECT_FALSE(name->index.has_value());
  EXPECT_EQ((*ShardPattern::parse("{i}.npz")).directory(), "");
}

TEST(ShardPattern, Errors) {
  // No placeholder: one file (the 'single' scheme), matched exactly.
  auto one = ShardPattern::parse("data/m/whole.h5ad");
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(one->names_one_file());
  EXPECT_EQ(one->render(0, 0, 0), "data/m/whole.h5ad");
  EXPECT_EQ(one->directory(), "data/m/");
  EXPECT_TRUE(one->match("data/m/whole.h5ad").has_value());
  EXPECT_FALSE(one->match("data/m/whole.h5ad.tmp").has_value());
  EXPECT_FALSE(ShardPattern::parse("data/{i}/x_{i}.npz").ok());
  EXPECT_FALSE(ShardPattern::parse("data/{i}/x.npz").ok());
  EXPECT_FALSE(ShardPattern::parse("x_{n}.npz").ok());
  EXPECT_FALSE(ShardPattern::parse("x_{row}{col}.npz").ok());
  EXPECT_FALSE(ShardPattern::parse("x_{i.npz").ok());
}

}  // namespace
}  // namespace reshard

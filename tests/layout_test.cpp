// The flat parameter layout, the gradient pieces backprop finishes, and
// --hidden parsing.
#include <gtest/gtest.h>

#include <cstdint>

#include "nn_dist/common/error.hpp"
#include "nn_dist/model/mlp.hpp"

namespace nn_dist {
namespace {

TEST(LayoutTest, TensorsAreAlignedAndDisjoint) {
  const Layout layout({784, 512, 256, 10});
  EXPECT_EQ(layout.num_layers(), 3);
  EXPECT_EQ(layout.num_parameters(), 784u * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10);
  std::size_t end = 0;
  for (int l = 0; l < 3; ++l) {
    for (const TensorSlot& t : {layout.weight(l), layout.bias(l)}) {
      EXPECT_EQ(t.offset % kTensorAlign, 0u);
      EXPECT_GE(t.offset, end);
      end = t.offset + t.size();
    }
  }
  EXPECT_LE(end, layout.total());
  EXPECT_EQ(layout.weight(1).rows, 256);
  EXPECT_EQ(layout.weight(1).cols, 512);
}

TEST(LayoutTest, PiecesTileTheBufferFromTheEnd) {
  const Layout layout({30, 20, 7});
  Mlp<float> mlp(layout, Activation::kRelu, Loss::kSoftmax, 4, /*piece_elements=*/100);
  const auto& pieces = mlp.pieces();
  ASSERT_FALSE(pieces.empty());
  EXPECT_EQ(pieces.front().end, layout.total());
  EXPECT_EQ(pieces.back().begin, 0u);
  for (std::size_t i = 0; i + 1 < pieces.size(); ++i) {
    EXPECT_EQ(pieces[i + 1].end, pieces[i].begin);
    EXPECT_LT(pieces[i].begin, pieces[i].end);
  }
  // W1 is 20 x 30: 100 elements hold 5 columns, so it is cut into 6 pieces.
  std::size_t w1_pieces = 0;
  for (const auto& p : pieces) w1_pieces += p.end <= layout.bias(0).offset ? 1 : 0;
  EXPECT_EQ(w1_pieces, 6u);
}

TEST(LayoutTest, ParseHidden) {
  EXPECT_EQ(parse_hidden("128,64"), (std::vector<long>{128, 64}));
  EXPECT_TRUE(parse_hidden("none").empty());
  EXPECT_TRUE(parse_hidden("").empty());
  for (const char* bad : {"0", "-3", "abc", "8,,4", "12x", "4,"}) {
    EXPECT_THROW(parse_hidden(bad), Error) << bad;
  }
}

TEST(LayoutTest, LinePartsTileTheBufferOnCacheLines) {
  for (const std::size_t total : {std::size_t{1}, std::size_t{16}, std::size_t{100}, std::size_t{535818}}) {
    for (std::size_t parts = 1; parts <= 5; ++parts) {
      std::size_t expected_begin = 0;
      for (std::size_t part = 0; part < parts; ++part) {
        std::size_t begin = 0, end = 0;
        line_part(total, part, parts, &begin, &end);
        EXPECT_EQ(begin, expected_begin) << total << " " << part << "/" << parts;
        EXPECT_EQ(begin % kTensorAlign, 0u);
        EXPECT_LE(begin, end);
        expected_begin = end;
      }
      EXPECT_EQ(expected_begin, total) << total << " in " << parts;
    }
  }
}

TEST(LayoutTest, FlatBuffersStartOnACacheLineWhateverTheCompileFlags) {
  // The parts of shared-memory mode are cut on cache lines counted from the
  // buffer's start, and the packed kernels store aligned: a baseline x86-64
  // build (16-byte SSE alignment by default) must still give 64 bytes.
  for (std::size_t n : {1, 17, 1000, 100000}) {
    const FlatBuffer b(n);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % 64, 0u) << n;
  }
}

}  // namespace
}  // namespace nn_dist

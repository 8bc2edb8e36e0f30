// The chunked reader's piece copies (io/pieces.hpp): both copies give
// memcpy's bytes for every piece size from 1 to 200 (under, at and past the
// 16- and 64-byte moves), at any alignment, and write nothing between or
// after the pieces.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "nn_dist/common/cpu.hpp"
#include "nn_dist/io/pieces.hpp"

namespace nn_dist {
namespace {

using Copy = void (*)(const unsigned char*, std::size_t, unsigned char*, std::size_t, std::size_t, long);

void expect_memcpy_bytes(Copy copy, const char* name) {
  constexpr long kCount = 5;
  for (std::size_t bytes = 1; bytes <= 200; ++bytes) {
    for (std::size_t misalign : {0, 1, 7, 13}) {
      const std::size_t src_stride = bytes + 3, dst_stride = bytes + 11;  // gaps between the pieces
      std::vector<unsigned char> src(misalign + src_stride * kCount + 64);
      for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<unsigned char>(i * 131 + 7);
      std::vector<unsigned char> got(misalign + dst_stride * kCount + 64, 0xee), want = got;
      for (long k = 0; k < kCount; ++k) {
        std::memcpy(want.data() + misalign + k * dst_stride, src.data() + misalign + k * src_stride, bytes);
      }
      copy(src.data() + misalign, src_stride, got.data() + misalign, dst_stride, bytes, kCount);
      ASSERT_EQ(got, want) << name << ": " << bytes << "-byte pieces, " << misalign << " bytes off alignment";
    }
  }
}

TEST(PiecesTest, Sse2CopyGivesMemcpysBytesAndNoOthers) { expect_memcpy_bytes(copy_pieces_sse2, "sse2"); }

TEST(PiecesTest, Avx512CopyGivesMemcpysBytesAndNoOthers) {
  if (!cpu_has_avx512()) GTEST_SKIP() << "this CPU has no AVX-512";
  expect_memcpy_bytes(copy_pieces_avx512, "avx512");
}

TEST(PiecesTest, NothingToCopy) {
  std::vector<unsigned char> dst(8, 0xee);
  const unsigned char src[8] = {};
  copy_pieces(src, 1, dst.data(), 1, 0, 8);
  copy_pieces(src, 1, dst.data(), 1, 4, 0);
  EXPECT_EQ(dst, std::vector<unsigned char>(8, 0xee));
}

}  // namespace
}  // namespace nn_dist

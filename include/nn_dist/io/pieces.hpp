// Copies of many small pieces at a fixed stride: the chunked reader's
// assembly of rows from its chunk columns (RowReader::copy_rows), where a
// piece is one row's part of a chunk (13 float32 = 52 bytes in h5py's usual
// chunks) and a row has dozens of them.
#pragma once

#include <cstddef>

namespace nn_dist {

// Piece k: `bytes` bytes from src + k * src_stride to dst + k * dst_stride,
// for k < count. Pieces must not overlap one another. Writes no byte outside
// them. Picks the AVX-512 copy at run time where the CPU has it.
void copy_pieces(const unsigned char* src, std::size_t src_stride, unsigned char* dst, std::size_t dst_stride,
                 std::size_t bytes, long count);

// The two copies copy_pieces() picks from (for tests): 16-byte moves (SSE2, any
// x86-64), and masked 64-byte moves (AVX-512 BW: call only where cpu_has_avx512()).
void copy_pieces_sse2(const unsigned char* src, std::size_t src_stride, unsigned char* dst, std::size_t dst_stride,
                      std::size_t bytes, long count);
void copy_pieces_avx512(const unsigned char* src, std::size_t src_stride, unsigned char* dst, std::size_t dst_stride,
                        std::size_t bytes, long count);

}  // namespace nn_dist

// Copies of many small pieces at a fixed stride: the chunked reader's
// assembly of rows from its chunk columns (RowReader::copy_rows), where a
// piece is one row's part of a chunk (13 float32 = 52 bytes in h5py's usual
// chunks) and a row has dozens of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

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

// Rows whose bytes are a whole number of 64-byte lines, assembled a line at
// a time straight from their pieces (no row-sized copy in between): piece c
// of row k at src + run * c + stride * k, as copy_rows stages them. A line
// takes each of its parts from one piece: the bytes `mask` selects, read at
// row k's src + stride * k + run * column + shift (lane j at that + j).
struct LinePart {
  std::uint32_t column = 0;
  std::int32_t shift = 0;
  std::uint64_t mask = 0;
};
struct LinePlan {
  std::vector<LinePart> parts;
  std::vector<std::uint32_t> line_begin;  // line L's parts: [line_begin[L], line_begin[L + 1])
};

// The plan for rows of row_bytes (a multiple of 64) in pieces of `stride`
// bytes (the last piece may pass the row's end: its extra bytes are left out).
LinePlan plan_lines(std::size_t row_bytes, std::size_t stride);

// Rows k < count assembled by `plan` and written with non-temporal 64-byte
// stores to dst + row_bytes * (place ? place[k] : k), which must be 64-byte
// aligned (AVX-512 BW: call only where cpu_has_avx512()). The caller fences
// (_mm_sfence) before another thread reads them.
void assemble_lines_avx512(const unsigned char* src, std::size_t run, std::size_t stride, long count,
                           const LinePlan& plan, std::size_t row_bytes, unsigned char* dst, const std::uint32_t* place);

}  // namespace nn_dist

// The matrix product C = op(A) op(B) for the step's shapes, of f32 matrices:
// a packed, cache-blocked product around a register-blocked kernel for the
// CPU's instruction set, chosen at run time. f32 products: AVX-512, else
// AVX2 + FMA, else Eigen's product. bf16 products (--precision bf16, inputs
// rounded to bf16, sums in f32): AMX tiles, else AVX512_BF16. Column-major
// throughout. Allocates nothing: the caller owns the packing space
// (GemmWorkspace).
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nn_dist/common/name_table.hpp"
#include "nn_dist/model/layout.hpp"

namespace nn_dist {

enum class GemmKernel { kAuto, kAvx512, kAvx2, kEigen, kAmx, kAvx512Bf16 };
// What the products multiply: f32, or f32 rounded to bf16 (sums in f32 either way).
enum class Precision { kF32, kBf16 };

// The kernel gemm() runs: the best f32 kernel this CPU supports, unless set_gemm_kernel chose another.
GemmKernel gemm_kernel();
Precision gemm_precision();  // of gemm_kernel()
bool gemm_kernel_supported(GemmKernel kernel);
Precision kernel_precision(GemmKernel kernel);
// Chooses the kernel for the whole process (kAuto: the best for the
// precision); throws Error naming --gemm or --precision when this CPU lacks
// the instructions or the kernel computes in the other precision.
void set_gemm_kernel(GemmKernel kernel, Precision precision = Precision::kF32);
// Throws Error naming --gemm and --precision when `kernel` (not kAuto) computes in the other precision.
void check_kernel_precision(GemmKernel kernel, Precision precision);
const NameTable<Precision>& precision_names();         // the names --precision takes
Precision parse_precision(const std::string& name);    // throws Error naming --precision
std::string precision_name(Precision precision);
const NameTable<GemmKernel>& gemm_kernel_names();        // the names --gemm takes
GemmKernel parse_gemm_kernel(const std::string& name);  // throws Error naming --gemm
std::string gemm_kernel_name(GemmKernel kernel);

class GemmWorkspace {
 public:
  GemmWorkspace();
  float* packed_a() { return a_.data(); }
  float* packed_b() { return b_.data(); }
  std::uint16_t* packed_bf16_a() { return bf16_a_.data(); }
  std::uint16_t* packed_bf16_b() { return bf16_b_.data(); }

  // Memory to claim for writing while products run: each kernel call also
  // prefetches the next few cache lines of [begin, end) with write intent, so
  // lines that other cores hold become this core's while it computes, and a
  // later loop that writes them does not wait for them. A hint: no value
  // changes. begin and end are cache-line aligned.
  void start_claim(const void* begin, const void* end) {
    claim_next_ = static_cast<const char*>(begin);
    claim_end_ = static_cast<const char*>(end);
  }
  void extend_claim(const void* end) { claim_end_ = static_cast<const char*>(end); }
  void stop_claim() { claim_next_ = claim_end_ = nullptr; }
  std::size_t claim_remaining() const { return claim_end_ > claim_next_ ? claim_end_ - claim_next_ : 0; }  // bytes
  // Called by the product after each kernel call.
  void claim_some() {
    for (int i = 0; i < kClaimLines && claim_next_ < claim_end_; ++i, claim_next_ += 64) {
      __builtin_prefetch(claim_next_, 1, 3);
    }
  }

 private:
  // Lines per kernel call: a backward pass of the standard model at any batch
  // size makes ~2,500 kernel calls, enough for a 2-rank part (~17,000 lines).
  static constexpr int kClaimLines = 8;
  FlatBuffer a_, b_;
  std::vector<std::uint16_t, Eigen::aligned_allocator<std::uint16_t>> bf16_a_, bf16_b_;
  const char* claim_next_ = nullptr;
  const char* claim_end_ = nullptr;
};

// C (m x n, leading dimension ldc) = op(A) op(B), op(A) (m x k), op(B) (k x n).
// A is stored (m x k, lda) or, with trans_a, (k x m, lda); B likewise.
// add: C += op(A) op(B) (BLAS's beta = 1), for gradients accumulated over
// micro-batches: the kernels add to C as they store, no second pass.
void gemm(long m, long n, long k, const float* a, long lda, bool trans_a, const float* b, long ldb, bool trans_b,
          float* c, long ldc, GemmWorkspace& workspace, bool add = false);

// bf16 kernels only (gemm_precision() is kBf16): op(A) (m x k) rounded and
// packed once for several products that multiply it, as backward's weight
// gradient pieces share Delta. The space it takes (bf16 elements, at most;
// grows with m and k, so the largest shape's space fits every smaller one),
// the packing, and gemm() with the packed op(A): the same bits as gemm().
std::size_t bf16_packed_a_elements(long m, long k);
void bf16_pack_a(long m, long k, const float* a, long lda, bool trans_a, std::uint16_t* out);
// Of A not transposed (m x k, lda = m): packs the elements [begin, end) of
// a into bf16_pack_a's layout `out` (made once with bf16_pack_a, or zeroed):
// each element alone, so processes that pack disjoint ranges into one shared
// `out` write no element twice.
void bf16_repack_a(long m, long k, const float* a, std::size_t begin, std::size_t end, std::uint16_t* out);
void gemm_packed_a(long m, long n, long k, const std::uint16_t* packed_a, const float* b, long ldb, bool trans_b,
                   float* c, long ldc, GemmWorkspace& workspace, bool add = false);

// out[i] = in[i] rounded to bf16 as the bf16 kernels round (nearest even,
// denormal inputs as 0: vcvtne2ps2bf16) and widened back to f32. Needs
// gemm_kernel_supported(GemmKernel::kAvx512Bf16).
void round_to_bf16(const float* in, std::size_t n, float* out);
// The same rounding, kept as bf16 bits (a float's upper half), and back:
// from_bf16(to_bf16(x)) is round_to_bf16(x). Need the same CPU.
void to_bf16(const float* in, std::size_t n, std::uint16_t* out);
void from_bf16(const std::uint16_t* in, std::size_t n, float* out);

// The same product through Eigen (any scalar, and Eigen's own threading).
template <typename T>
void eigen_gemm(long m, long n, long k, const T* a, long lda, bool trans_a, const T* b, long ldb, bool trans_b, T* c,
                long ldc, bool add = false) {
  using Dense = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using Stride = Eigen::OuterStride<>;
  using ConstMap = Eigen::Map<const Dense, 0, Stride>;
  Eigen::Map<Dense, 0, Stride> out(c, m, n, Stride(ldc));
  const ConstMap a_map(a, trans_a ? k : m, trans_a ? m : k, Stride(lda));
  const ConstMap b_map(b, trans_b ? n : k, trans_b ? k : n, Stride(ldb));
  const auto store = [&](const auto& product) {
    if (add) {
      out.noalias() += product;
    } else {
      out.noalias() = product;
    }
  };
  if (!trans_a && !trans_b) {
    store(a_map * b_map);
  } else if (!trans_a) {
    store(a_map * b_map.transpose());
  } else if (!trans_b) {
    store(a_map.transpose() * b_map);
  } else {
    store(a_map.transpose() * b_map.transpose());
  }
}

}  // namespace nn_dist

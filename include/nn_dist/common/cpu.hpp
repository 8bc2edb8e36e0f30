// The vector instruction sets this CPU runs, read from its feature bits, for
// the kernels compiled for several sets (model/gemm.cpp, math/smooth_activation.cpp).
#pragma once

namespace nn_dist {

// AVX-512 F, DQ, BW and VL with FMA (Skylake-SP, Zen 4 and later).
inline bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
}

// AVX2 with FMA (x86-64-v3: Haswell and later).
inline bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace nn_dist

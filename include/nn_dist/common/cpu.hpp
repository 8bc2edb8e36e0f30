// The vector instruction sets this CPU runs, read from its feature bits, for
// the kernels compiled for several sets (model/gemm.cpp, math/smooth_activation.cpp,
// model/gemm_bf16.cpp).
#pragma once

#include <cpuid.h>

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

// AVX512_BF16 (vdpbf16ps; Zen 4, Cooper Lake, Sapphire Rapids and later): CPUID leaf 7.1 EAX bit 5.
inline bool cpu_has_avx512_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1);
}

// AMX tiles with bf16 products (Sapphire Rapids and later): CPUID leaf 7.0 EDX bits 22 and 24.
// The OS must still grant the tile registers (model/gemm_bf16.cpp asks).
inline bool cpu_has_amx_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 22 & 1) && (d >> 24 & 1);
}

}  // namespace nn_dist

// Shared helpers for the tests: random parameters and data for small nets,
// error messages, temporary folders.
#pragma once

#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "nn_dist/common/error.hpp"
#include "nn_dist/model/gemm.hpp"
#include "nn_dist/model/init.hpp"
#include "nn_dist/model/layout.hpp"

namespace nn_dist::testing {

// The kernels of `wanted` this CPU runs.
inline std::vector<GemmKernel> supported_kernels(std::initializer_list<GemmKernel> wanted) {
  std::vector<GemmKernel> kernels;
  for (GemmKernel k : wanted) {
    if (gemm_kernel_supported(k)) kernels.push_back(k);
  }
  return kernels;
}

// Forces a matrix kernel (in its precision) while in scope, then restores the automatic f32 choice.
struct KernelChoice {
  explicit KernelChoice(GemmKernel k) { set_gemm_kernel(k, kernel_precision(k)); }
  ~KernelChoice() { set_gemm_kernel(GemmKernel::kAuto); }
};

// Fills a flat buffer's tensors with N(0, scale^2) values (padding stays 0).
template <typename Buffer>
void random_params(const Layout& layout, uint64_t seed, double scale, Buffer& params) {
  params.assign(layout.total(), 0);
  Rng rng(seed);
  for (int l = 0; l < layout.num_layers(); ++l) {
    for (const TensorSlot& t : {layout.weight(l), layout.bias(l)}) {
      for (std::size_t i = 0; i < t.size(); ++i) params[t.offset + i] = static_cast<typename Buffer::value_type>(scale * rng.normal());
    }
  }
}

// The message of the Error that f throws ("" if it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

inline bool has(const std::string& text, const std::string& word) { return text.find(word) != std::string::npos; }

// A fresh folder under the system temp dir.
inline std::string temp_dir(const std::string& tag) {
  std::string pattern = (std::filesystem::temp_directory_path() / ("nn_dist_" + tag + "_XXXXXX")).string();
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  return mkdtemp(buf.data());
}

}  // namespace nn_dist::testing

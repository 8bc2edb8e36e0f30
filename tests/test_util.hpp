// Shared helpers for the tests: random parameters and data for small nets,
// error messages, temporary folders.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

// A fresh folder under the system temp dir (TMPDIR), removed with all it holds
// when it goes out of scope: on every way out of a test, an ASSERT that returns
// early or an exception too, so no run leaves files behind.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    const std::filesystem::path parent = std::filesystem::temp_directory_path();
    std::string pattern = (parent / ("nn_dist_" + tag + "_XXXXXX")).string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw Error("cannot make a temporary folder in " + parent.string() + ": " + std::strerror(errno));
    }
    str_ = pattern;
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    if (ec) std::fprintf(stderr, "warning: cannot remove %s: %s\n", str_.c_str(), ec.message().c_str());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::string& str() const { return str_; }

 private:
  std::filesystem::path path_;
  std::string str_;
};

}  // namespace nn_dist::testing

// Where every parameter tensor lives in the one flat buffer. The gradient
// buffer and each optimizer state share this layout, so zeroing, the
// allreduce and the optimizer are flat loops over one span.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <Eigen/Core>

namespace nn_dist {

// Parameters, gradients and optimizer states: 64-byte aligned float buffers.
using FlatBuffer = std::vector<float, Eigen::aligned_allocator<float>>;

// The widest layer accepted anywhere (flags, checkpoints, labels): beyond it a
// width is a typo or garbage, and products of two widths still fit in a long.
constexpr long kMaxWidth = 1000000000;

// Every tensor starts on a 64-byte boundary (16 floats) so Eigen maps are aligned.
constexpr std::size_t kTensorAlign = 16;

// Part `part` of `parts` of a flat buffer of `total` elements: [*begin, *end),
// cut between 64-byte cache lines (the buffer itself starts on one), so no two
// parts share a line. The parts tile the buffer in order.
void line_part(std::size_t total, std::size_t part, std::size_t parts, std::size_t* begin, std::size_t* end);

struct TensorSlot {
  std::size_t offset;  // in elements from the buffer start
  long rows;
  long cols;
  std::size_t size() const { return static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols); }
};

class Layout {
 public:
  Layout() = default;
  // sizes = d_1 .. d_L: input width, hidden widths, output width (L >= 2).
  explicit Layout(std::vector<long> sizes);

  const std::vector<long>& sizes() const { return sizes_; }
  int num_layers() const { return static_cast<int>(weights_.size()); }  // L - 1
  const TensorSlot& weight(int l) const { return weights_[l]; }  // W_{l+1}: (d_{l+2}, d_{l+1})
  const TensorSlot& bias(int l) const { return biases_[l]; }     // b_{l+1}: (d_{l+2})
  std::size_t total() const { return total_; }                   // elements incl. padding
  std::size_t num_parameters() const;                            // without padding
  long max_width() const;

 private:
  std::vector<long> sizes_;
  std::vector<TensorSlot> weights_, biases_;
  std::size_t total_ = 0;
};

// Hidden widths from "--hidden 128,64"; "" or "none" is no hidden layer.
std::vector<long> parse_hidden(const std::string& text);  // throws Error naming --hidden

// "784-512-256-10"
std::string sizes_string(const std::vector<long>& sizes);

}  // namespace nn_dist

// The multilayer perceptron: forward pass, loss, and backpropagation over a
// batch whose samples are columns, reading parameters from and writing
// gradient sums to flat buffers laid out by Layout. Owns only its scratch
// activations, sized once for the largest batch: a step allocates nothing.
#pragma once

#include <cstdint>
#include <vector>

#include "nn_dist/math/activation.hpp"
#include "nn_dist/math/loss.hpp"
#include "nn_dist/model/dropout.hpp"
#include "nn_dist/model/gemm.hpp"
#include "nn_dist/model/layout.hpp"

namespace nn_dist {

// The most elements one gradient piece holds unless the Mlp is told otherwise.
constexpr std::size_t kGradientPieceElements = 1 << 16;

// A contiguous range [begin, end) of the flat gradient buffer that backward()
// finishes in one go. Pieces are listed in the order backward() finishes them
// (last layer first, each tensor from its end), so they tile the buffer from
// the end down to offset 0.
struct GradientPiece {
  std::size_t begin;
  std::size_t end;
};

// Told as soon as each piece is final, so its allreduce can start while
// backprop continues.
class BackwardObserver {
 public:
  virtual ~BackwardObserver() = default;
  virtual void piece_done(std::size_t piece_index) = 0;
};

// A backward() pass's place in its step. A step is one pass, or several
// whose gradients add up (gradient accumulation: K micro-batches): the first
// overwrites grad's values, the others add to them. Only a step's last pass
// claims the update range (set_update_range): the update follows it alone.
enum class BackwardPass { kOnly, kFirst, kMiddle, kLast };
// The pass of a batch that is (or is not) its step's first and last.
inline BackwardPass backward_pass(bool first, bool last) {
  if (first) return last ? BackwardPass::kOnly : BackwardPass::kFirst;
  return last ? BackwardPass::kLast : BackwardPass::kMiddle;
}

template <typename T>
class Mlp {
 public:
  // piece_elements: the most elements one gradient piece may hold (weights
  // are cut between columns; a column is never split).
  Mlp(Layout layout, ActivationFn hidden, Loss loss, long max_batch,
      std::size_t piece_elements = kGradientPieceElements);

  const Layout& layout() const { return layout_; }
  const ActivationFn& activation() const { return hidden_; }
  Loss loss() const { return loss_; }
  long max_batch() const { return max_batch_; }
  const std::vector<GradientPiece>& pieces() const { return pieces_; }

  // x: (d_1, n), column-major, n <= max_batch. Keeps every layer's output.
  // With a draw (training only), hidden layers with a dropout rate drop units
  // by dropout_mask(); without one nothing is dropped (evaluation).
  void forward(const T* params, const T* x, long n, const DropoutDraw* draw = nullptr);
  // The dropout rate of each hidden layer (empty or all 0: none). Sizes the
  // mask buffers once, for max_batch: the step allocates nothing.
  void set_dropout(const std::vector<double>& rates);
  // The mask the last forward() applied to hidden layer l: (d_{l+2}, n), 0 or
  // 1 / (1 - p); nullptr when that pass did not drop in layer l.
  const T* dropout_mask(int l) const;
  // Output h(x) of the last forward(): (d_L, n).
  Eigen::Map<const Matrix<T>> output() const;

  // After forward(): loss sums over the batch, and the output delta for backward().
  // labels: (n) for softmax; values: (d_L, n) column-major for logistic and mse.
  LossSums loss_and_delta(const int32_t* labels, const T* values);
  LossSums loss_only(const int32_t* labels, const T* values) const;

  // After loss_and_delta(): writes the gradient SUMS over the batch into grad
  // (every parameter element; padding is left alone), or as a step's kMiddle or
  // kLast pass adds them to grad's values in the same pass (the products
  // accumulate as they store). x must be the forward input. input_grad, if
  // given, receives d(loss sum)/dx: (d_1, n).
  void backward(const T* params, const T* x, T* grad, BackwardObserver* observer = nullptr,
                T* input_grad = nullptr, BackwardPass pass = BackwardPass::kOnly);

  // The part [begin, end) of the parameters this process updates after each
  // step's last backward() while other processes read them (node-shared parameters).
  // backward() claims those cache lines for writing while its products run,
  // each tensor once backprop has read it for the last time, so the update
  // does not stall while other cores give the lines up. A hint only.
  void set_update_range(std::size_t begin, std::size_t end) {
    update_begin_ = begin;
    update_end_ = end;
  }
  // Bytes of that range backward() could not claim before it ended (for tests).
  std::size_t unclaimed_bytes() const { return unclaimed_; }

  // --precision bf16: the weights rounded and packed for forward()'s products
  // once per step, by whoever updates them, instead of once per product.
  // The space that takes (bf16 elements; 0 when the products are f32).
  std::size_t packed_weight_elements() const;
  // From now on forward() multiplies the packed weights in `storage` (zeroed,
  // packed_weight_elements(), 64-byte aligned; e.g. node-shared memory), or
  // in storage of its own when `storage` is null. Whoever changes parameters
  // then packs them (pack_weights): forward() trusts the packing.
  void place_packed_weights(std::uint16_t* storage);
  bool packs_weights() const { return packed_weights_ != nullptr; }
  // Packs the weights among params[begin, end) (any range: elements are
  // packed one by one, so processes may pack disjoint ranges at once).
  void pack_weights(const T* params, std::size_t begin, std::size_t end);

 private:
  void plan_pieces(std::size_t piece_elements);
  // Claims the update range's share of W_1 for writing if this pass should
  // (see backward()); true when it did, and the rest is to follow.
  bool start_update_claim(const T* params, bool input_grad, BackwardPass pass);
  // c (m x n) = op(a) op(b) (add: +=): nn_dist's kernel for float on one thread or in bf16, else Eigen.
  void multiply(long m, long n, long k, const T* a, long lda, bool trans_a, const T* b, long ldb, bool trans_b, T* c,
                long ldc, bool add = false);
  // The same with A not transposed, or, when packed_a is not null (bf16), with op(A) packed once
  // (bf16_pack_a, pack_weights): the same bits.
  void multiply(const std::uint16_t* packed_a, long m, long n, long k, const T* a, long lda, const T* b, long ldb,
                bool trans_b, T* c, long ldc, bool add = false);

  Layout layout_;
  ActivationFn hidden_;
  Loss loss_;
  long max_batch_;
  long n_ = 0;
  std::vector<Matrix<T>> outputs_;  // outputs_[l]: a_{l+2} (d_{l+2}, max_batch); last is z_L
  // Dropout, per hidden layer l with a rate: the mask and the dropped output
  // a_{l+2} * mask that layer l+1 reads (outputs_[l] keeps f(z) for f').
  std::vector<double> dropout_;
  std::vector<Matrix<T>> masks_, dropped_;  // (d_{l+2}, max_batch) each, or empty
  bool dropping_ = false;                   // the last forward() dropped
  bool drops(int l) const { return dropping_ && l < static_cast<int>(dropout_.size()) && dropout_[l] > 0; }
  const T* layer_input(int l, const T* x) const;  // what layer l reads: x, a_{l+1}, or its dropped copy
  // g = d(loss sum)/d(hidden output l), (width, n), becomes layer l's delta: dropout's mask, then f'.
  void hidden_delta(int l, T* g) const;
  // Where the activation keeps_derivative: derivatives_[l] = f'(z_{l+2}) beside outputs_[l], hidden layers only.
  std::vector<Matrix<T>> derivatives_;
  Matrix<T> delta_, delta_next_;    // (max width, max_batch) each
  std::vector<GradientPiece> pieces_;
  // For each layer, the column cuts of its weight gradient, highest first.
  std::vector<std::vector<long>> weight_cuts_;
  GemmWorkspace gemm_workspace_;
  // bf16 (sized when the Mlp is made with a bf16 kernel chosen): a layer's
  // Delta packed once for all its weight gradient's pieces, not once a piece.
  std::vector<std::uint16_t, Eigen::aligned_allocator<std::uint16_t>> packed_delta_;
  // The packed weights (place_packed_weights): layer l's at packed_offsets_[l], packed_layer_elements(l) long.
  std::size_t packed_layer_elements(int l) const;
  std::vector<std::size_t> packed_offsets_;
  std::uint16_t* packed_weights_ = nullptr;
  std::vector<std::uint16_t, Eigen::aligned_allocator<std::uint16_t>> own_packed_weights_;
  // dW[:, c0 .. c0+width) (+)= Delta A[c0 .. c0+width, :]^T for each piece of
  // layer l's weight gradient, telling the observer as each is done.
  void weight_gradient(int l, const T* delta, const T* a, T* dw, bool add, BackwardObserver* observer,
                       std::size_t* piece);
  std::size_t update_begin_ = 0, update_end_ = 0, unclaimed_ = 0;
};

}  // namespace nn_dist

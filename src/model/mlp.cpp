// Batched forward and backward passes of the seed's backprop:
//   Z = W A + b 1^T, A' = f(Z);  dW = Delta A^T, db = Delta 1, Delta_prev = f'(Z) ∘ (W^T Delta).
// f'(Z) comes from A' where it can (relu, tanh, ...), else from the forward pass (gelu, silu).
#include "nn_dist/model/mlp.hpp"

#include <algorithm>
#include <type_traits>

#include "nn_dist/common/error.hpp"

namespace nn_dist {

template <typename T>
Mlp<T>::Mlp(Layout layout, ActivationFn hidden, Loss loss, long max_batch, std::size_t piece_elements)
    : layout_(std::move(layout)), hidden_(hidden), loss_(loss), max_batch_(max_batch) {
  if (max_batch_ <= 0) throw Error("batch size must be positive");
  const int num = layout_.num_layers();
  for (int l = 0; l < num; ++l) outputs_.emplace_back(layout_.sizes()[l + 1], max_batch_);
  if (keeps_derivative(hidden_.kind)) {
    for (int l = 0; l + 1 < num; ++l) derivatives_.emplace_back(layout_.sizes()[l + 1], max_batch_);
  }
  delta_.resize(layout_.max_width(), max_batch_);
  delta_next_.resize(layout_.max_width(), max_batch_);
  if (std::is_same_v<T, float> && gemm_precision() == Precision::kBf16) {
    packed_delta_.resize(bf16_packed_a_elements(layout_.max_width(), max_batch_));
  }
  plan_pieces(std::max<std::size_t>(piece_elements, 1));
}

template <typename T>
void Mlp<T>::plan_pieces(std::size_t piece_elements) {
  const int num = layout_.num_layers();
  weight_cuts_.assign(num, {});
  std::size_t end = layout_.total();
  for (int l = num - 1; l >= 0; --l) {
    const TensorSlot& w = layout_.weight(l);
    const TensorSlot& b = layout_.bias(l);
    pieces_.push_back({b.offset, end});
    end = b.offset;
    const long cols_per_piece = std::max<long>(1, static_cast<long>(piece_elements) / w.rows);
    std::vector<long>& cuts = weight_cuts_[l];
    for (long c = w.cols; c > 0; c -= cols_per_piece) cuts.push_back(c);
    cuts.push_back(0);  // cuts: cols, ..., 0; piece i covers [cuts[i+1], cuts[i])
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
      const std::size_t begin = w.offset + static_cast<std::size_t>(cuts[i + 1] * w.rows);
      pieces_.push_back({begin, end});
      end = begin;
    }
  }
}

template <typename T>
std::size_t Mlp<T>::packed_weight_elements() const {
  if (!std::is_same_v<T, float> || gemm_precision() != Precision::kBf16) return 0;
  std::size_t total = 0;
  for (int l = 0; l < layout_.num_layers(); ++l) total += packed_layer_elements(l);
  return total;
}

template <typename T>
std::size_t Mlp<T>::packed_layer_elements(int l) const {
  const TensorSlot& w = layout_.weight(l);
  return (bf16_packed_a_elements(w.rows, w.cols) + 31) / 32 * 32;  // each layer's on a 64-byte boundary
}

template <typename T>
void Mlp<T>::place_packed_weights(std::uint16_t* storage) {
  const std::size_t elements = packed_weight_elements();
  if (elements == 0) throw Error("internal: packed weights without bf16 products");
  if (storage == nullptr) {
    own_packed_weights_.assign(elements, 0);
    storage = own_packed_weights_.data();
  }
  packed_weights_ = storage;
  packed_offsets_.assign(1, 0);
  for (int l = 0; l + 1 < layout_.num_layers(); ++l) {
    packed_offsets_.push_back(packed_offsets_.back() + packed_layer_elements(l));
  }
}

template <typename T>
void Mlp<T>::pack_weights(const T* params, std::size_t begin, std::size_t end) {
  if constexpr (std::is_same_v<T, float>) {
    for (int l = 0; l < layout_.num_layers(); ++l) {
      const TensorSlot& w = layout_.weight(l);
      const std::size_t b = std::max(begin, w.offset), e = std::min(end, w.offset + w.size());
      if (b >= e) continue;
      bf16_repack_a(w.rows, w.cols, params + w.offset, b - w.offset, e - w.offset,
                    packed_weights_ + packed_offsets_[l]);
    }
  }
}

template <typename T>
void Mlp<T>::multiply(long m, long n, long k, const T* a, long lda, bool trans_a, const T* b, long ldb, bool trans_b,
                      T* c, long ldc, bool add) {
  if constexpr (std::is_same_v<T, float>) {
    // With more than one thread per rank, Eigen's threaded product does the
    // f32 work; bf16 products are nn_dist's alone.
    if (gemm_precision() == Precision::kBf16 || (gemm_kernel() != GemmKernel::kEigen && Eigen::nbThreads() == 1)) {
      gemm(m, n, k, a, lda, trans_a, b, ldb, trans_b, c, ldc, gemm_workspace_, add);
      return;
    }
  }
  eigen_gemm(m, n, k, a, lda, trans_a, b, ldb, trans_b, c, ldc, add);
}

template <typename T>
void Mlp<T>::multiply(const std::uint16_t* packed_a, long m, long n, long k, const T* a, long lda, const T* b,
                      long ldb, bool trans_b, T* c, long ldc, bool add) {
  if constexpr (std::is_same_v<T, float>) {
    if (packed_a != nullptr) {
      gemm_packed_a(m, n, k, packed_a, b, ldb, trans_b, c, ldc, gemm_workspace_, add);
      return;
    }
  }
  multiply(m, n, k, a, lda, false, b, ldb, trans_b, c, ldc, add);
}

template <typename T>
void Mlp<T>::set_dropout(const std::vector<double>& rates) {
  const int hidden = layout_.num_layers() - 1;
  if (!rates.empty() && static_cast<int>(rates.size()) != hidden) throw Error("dropout: one rate per hidden layer");
  dropout_ = rates;
  masks_.assign(static_cast<std::size_t>(hidden), Matrix<T>());
  dropped_.assign(static_cast<std::size_t>(hidden), Matrix<T>());
  for (int l = 0; l < static_cast<int>(dropout_.size()); ++l) {
    if (dropout_[l] <= 0) continue;
    masks_[l].resize(layout_.sizes()[l + 1], max_batch_);
    dropped_[l].resize(layout_.sizes()[l + 1], max_batch_);
  }
}

template <typename T>
const T* Mlp<T>::dropout_mask(int l) const {
  return drops(l) ? masks_[l].data() : nullptr;
}

template <typename T>
const T* Mlp<T>::layer_input(int l, const T* x) const {
  if (l == 0) return x;
  return drops(l - 1) ? dropped_[l - 1].data() : outputs_[l - 1].data();
}

template <typename T>
void Mlp<T>::forward(const T* params, const T* x, long n, const DropoutDraw* draw) {
  eigen_assert(n > 0 && n <= max_batch_);
  n_ = n;
  dropping_ = draw != nullptr;
  const int num = layout_.num_layers();
  for (int l = 0; l < num; ++l) {
    const TensorSlot& ws = layout_.weight(l);
    Eigen::Map<const Matrix<T>, Eigen::Aligned64> w(params + ws.offset, ws.rows, ws.cols);  // (d_out, d_in)
    Eigen::Map<const Vector<T>, Eigen::Aligned64> b(params + layout_.bias(l).offset, ws.rows);
    Eigen::Map<Matrix<T>, Eigen::Aligned64> z(outputs_[l].data(), ws.rows, n);                // (d_out, n)
    const T* in = layer_input(l, x);                                                            // (d_in, n)
    const std::uint16_t* packed = packed_weights_ != nullptr ? packed_weights_ + packed_offsets_[l] : nullptr;
    multiply(packed, ws.rows, n, ws.cols, w.data(), ws.rows, in, ws.cols, false, z.data(), ws.rows);
    if (l + 1 < num && !derivatives_.empty()) {
      bias_activate<T>(hidden_, z, b, Eigen::Map<Matrix<T>>(derivatives_[l].data(), ws.rows, n));
    } else {
      bias_activate<T>(l + 1 < num ? hidden_ : ActivationFn(Activation::kIdentity), z, b);
    }
    if (drops(l)) {
      T* mask = masks_[l].data();  // (d_out, n)
      nn_dist::dropout_mask<T>(draw->key, draw->samples, n, l, ws.rows, dropout_[l], mask);
      Eigen::Map<const Matrix<T>> m(mask, ws.rows, n);
      Eigen::Map<Matrix<T>>(dropped_[l].data(), ws.rows, n).array() = z.array() * m.array();
    }
  }
}

template <typename T>
Eigen::Map<const Matrix<T>> Mlp<T>::output() const {
  return Eigen::Map<const Matrix<T>>(outputs_.back().data(), layout_.sizes().back(), n_);
}

template <typename T>
LossSums Mlp<T>::loss_and_delta(const int32_t* labels, const T* values) {
  const long k = layout_.sizes().back();
  Eigen::Map<Matrix<T>> delta(delta_.data(), k, n_);
  Eigen::Map<const Matrix<T>> targets(values, values ? k : 0, values ? n_ : 0);
  return nn_dist::loss_and_delta<T>(loss_, output(), labels, targets, delta);
}

template <typename T>
LossSums Mlp<T>::loss_only(const int32_t* labels, const T* values) const {
  const long k = layout_.sizes().back();
  Eigen::Map<const Matrix<T>> targets(values, values ? k : 0, values ? n_ : 0);
  return nn_dist::loss_only<T>(loss_, output(), labels, targets);
}

template <typename T>
void Mlp<T>::hidden_delta(int l, T* g) const {
  const long width = layout_.weight(l).rows, n = n_;
  Eigen::Map<Matrix<T>> dg(g, width, n);
  if (drops(l)) dg.array() *= Eigen::Map<const Matrix<T>>(masks_[l].data(), width, n).array();
  if (derivatives_.empty()) {
    // f' from the layer's own output f(z), before any dropout
    multiply_derivative<T>(hidden_, Eigen::Map<const Matrix<T>>(outputs_[l].data(), width, n), dg);
  } else {
    dg.array() *= Eigen::Map<const Matrix<T>>(derivatives_[l].data(), width, n).array();
  }
}

template <typename T>
void Mlp<T>::weight_gradient(int l, const T* delta, const T* a, T* dw, bool add, BackwardObserver* observer,
                             std::size_t* piece) {
  const long n = n_, d_out = layout_.weight(l).rows, d_in = layout_.weight(l).cols;
  const std::uint16_t* packed = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    if (gemm_precision() == Precision::kBf16 && packed_delta_.size() >= bf16_packed_a_elements(d_out, n)) {
      bf16_pack_a(d_out, n, delta, d_out, false, packed_delta_.data());
      packed = packed_delta_.data();
    }
  }
  const std::vector<long>& cuts = weight_cuts_[l];
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
    const long c0 = cuts[i + 1], width = cuts[i] - cuts[i + 1];
    multiply(packed, d_out, width, n, delta, d_out, a + c0, d_in, true, dw + c0 * d_out, d_out, add);
    if (observer) observer->piece_done(*piece);
    ++*piece;
  }
}

// Backprop reads W_l (l > 1) for the last time at the end of layer l's
// turn, and never reads W_1 (unless it computes input_grad), so the update
// range's share of W_1 can be claimed from the start and the rest once
// layer 1's turn begins. Parts are whole cache lines, so no claim reaches
// into another rank's part. The other processes still read the parameters
// in the step's other passes: only its only or last pass claims.
template <typename T>
bool Mlp<T>::start_update_claim(const T* params, bool input_grad, BackwardPass pass) {
  const bool claim = update_end_ > update_begin_ && !input_grad &&
                     (pass == BackwardPass::kOnly || pass == BackwardPass::kLast);
  if (claim) {
    const TensorSlot& w1 = layout_.weight(0);
    const std::size_t w1_end = std::clamp(w1.offset + w1.size(), update_begin_, update_end_);
    gemm_workspace_.start_claim(params + update_begin_, params + w1_end);
  }
  return claim;
}

template <typename T>
void Mlp<T>::backward(const T* params, const T* x, T* grad, BackwardObserver* observer, T* input_grad,
                      BackwardPass pass) {
  const long n = n_;
  const bool add = pass == BackwardPass::kMiddle || pass == BackwardPass::kLast;
  std::size_t piece = 0;
  auto finished = [&] {
    if (observer) observer->piece_done(piece);
    ++piece;
  };
  T* delta_data = delta_.data();
  T* next_data = delta_next_.data();
  const bool claim = start_update_claim(params, input_grad != nullptr, pass);
  for (int l = layout_.num_layers() - 1; l >= 0; --l) {
    if (l == 0 && claim) gemm_workspace_.extend_claim(params + update_end_);
    const TensorSlot& ws = layout_.weight(l);
    const long d_out = ws.rows, d_in = ws.cols;
    Eigen::Map<const Matrix<T>> delta(delta_data, d_out, n);  // (d_out, n)
    Eigen::Map<const Matrix<T>> a(layer_input(l, x), d_in, n);  // (d_in, n), as forward() read it

    Eigen::Map<Vector<T>, Eigen::Aligned64> db(grad + layout_.bias(l).offset, d_out);
    if (add) {
      db.noalias() += delta.rowwise().sum();
    } else {
      db.noalias() = delta.rowwise().sum();
    }
    finished();

    weight_gradient(l, delta.data(), a.data(), grad + ws.offset, add, observer, &piece);

    if (l > 0 || input_grad) {
      // W^T Delta: (d_in, n)
      T* g = l > 0 ? next_data : input_grad;
      multiply(d_in, n, d_out, params + ws.offset, d_out, true, delta.data(), d_out, false, g, d_in);
      if (l > 0) {
        hidden_delta(l - 1, g);
        std::swap(delta_data, next_data);
      }
    }
  }
  eigen_assert(piece == pieces_.size());
  unclaimed_ = claim ? gemm_workspace_.claim_remaining() : 0;
  gemm_workspace_.stop_claim();
}

template class Mlp<float>;
template class Mlp<double>;

}  // namespace nn_dist

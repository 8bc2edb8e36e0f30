// Losses over column batches: sums of per-sample losses and d(sum)/dz, in one
// pass per column, numerically stable for large |z|.
#include "nn_dist/math/loss.hpp"

#include <cmath>

namespace nn_dist {

const NameTable<Loss>& loss_names() {
  static const NameTable<Loss> table("--loss",
                                     {{Loss::kSoftmax, "softmax"}, {Loss::kLogistic, "logistic"}, {Loss::kMse, "mse"}});
  return table;
}

Loss parse_loss(const std::string& name) { return loss_names().parse(name); }

std::string loss_name(Loss loss) { return loss_names().name(loss); }

bool is_classification(Loss loss) { return loss != Loss::kMse; }

double softplus(double z) { return std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z))); }

namespace {

// One template for both passes: with_delta selects whether the gradient is written.
template <typename T, bool with_delta>
LossSums loss_pass(Loss loss, const ConstMatrixRef<T>& z, const int32_t* labels,
                   const ConstMatrixRef<T>& values, T* delta, Eigen::Index delta_stride) {
  const Eigen::Index k = z.rows();
  const Eigen::Index n = z.cols();
  LossSums sums;
  switch (loss) {
    case Loss::kSoftmax:
      for (Eigen::Index j = 0; j < n; ++j) {
        const auto col = z.col(j);
        Eigen::Index argmax = 0;
        const T zmax = col.maxCoeff(&argmax);
        T denom = 0;
        for (Eigen::Index i = 0; i < k; ++i) denom += std::exp(col[i] - zmax);
        const int32_t y = labels[j];
        sums.loss += static_cast<double>(std::log(denom) + zmax - col[y]);
        sums.correct += (argmax == y) ? 1 : 0;
        if constexpr (with_delta) {
          T* out = delta + j * delta_stride;
          const T inv = T(1) / denom;
          for (Eigen::Index i = 0; i < k; ++i) out[i] = std::exp(col[i] - zmax) * inv;
          out[y] -= T(1);
        }
      }
      break;
    case Loss::kLogistic:
      for (Eigen::Index j = 0; j < n; ++j) {
        const T zj = z(0, j);
        const T y = values(0, j);
        const T softplus_z = std::max(zj, T(0)) + std::log1p(std::exp(-std::abs(zj)));
        sums.loss += static_cast<double>(softplus_z - y * zj);
        sums.correct += ((zj > 0) == (y > T(0.5))) ? 1 : 0;
        if constexpr (with_delta) {
          // sigma(z) - y, with sigma written to avoid exp overflow on either side.
          const T e = std::exp(-std::abs(zj));
          const T sigma = zj >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
          delta[j * delta_stride] = sigma - y;
        }
      }
      break;
    case Loss::kMse:
      for (Eigen::Index j = 0; j < n; ++j) {
        double s = 0;
        for (Eigen::Index i = 0; i < k; ++i) {
          const T r = z(i, j) - values(i, j);
          s += static_cast<double>(r) * static_cast<double>(r);
          if constexpr (with_delta) delta[j * delta_stride + i] = r;
        }
        sums.loss += 0.5 * s;
      }
      break;
  }
  return sums;
}

}  // namespace

template <typename T>
LossSums loss_and_delta(Loss loss, const ConstMatrixRef<T>& z, const int32_t* labels,
                        const ConstMatrixRef<T>& values, MatrixRef<T> delta) {
  eigen_assert(delta.rows() == z.rows() && delta.cols() == z.cols());
  return loss_pass<T, true>(loss, z, labels, values, delta.data(), delta.outerStride());
}

template <typename T>
LossSums loss_only(Loss loss, const ConstMatrixRef<T>& z, const int32_t* labels,
                   const ConstMatrixRef<T>& values) {
  return loss_pass<T, false>(loss, z, labels, values, nullptr, 0);
}

template LossSums loss_and_delta<float>(Loss, const ConstMatrixRef<float>&, const int32_t*,
                                        const ConstMatrixRef<float>&, MatrixRef<float>);
template LossSums loss_and_delta<double>(Loss, const ConstMatrixRef<double>&, const int32_t*,
                                         const ConstMatrixRef<double>&, MatrixRef<double>);
template LossSums loss_only<float>(Loss, const ConstMatrixRef<float>&, const int32_t*,
                                   const ConstMatrixRef<float>&);
template LossSums loss_only<double>(Loss, const ConstMatrixRef<double>&, const int32_t*,
                                    const ConstMatrixRef<double>&);

}  // namespace nn_dist

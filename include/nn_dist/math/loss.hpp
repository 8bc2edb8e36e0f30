// Output losses and their gradients with respect to the output z = h(x).
// Every function returns SUMS over the batch; the caller divides by the
// global sample count once, after the ranks have added their sums.
#pragma once

#include <cstdint>
#include <string>

#include "nn_dist/math/activation.hpp"

namespace nn_dist {

// kSoftmax: cross-entropy over K classes, integer labels.
// kLogistic: log(1 + exp(z)) - y z, one output, y in {0, 1}.
// kMse: 1/2 ||z - y||^2 per sample, k outputs.
enum class Loss { kSoftmax, kLogistic, kMse };

// The names --loss and checkpoints use ("auto" is the flag's own, decided from the data).
const NameTable<Loss>& loss_names();
Loss parse_loss(const std::string& name);  // throws Error naming --loss
std::string loss_name(Loss loss);
bool is_classification(Loss loss);

struct LossSums {
  double loss = 0;     // sum of per-sample losses
  double correct = 0;  // correctly classified samples (classification only)
};

// Targets: labels (n) for softmax, values (k, n) otherwise (the other is
// unused and may be empty). Loss sum over the n columns of z (k, n); writes delta = d(loss sum)/dz into
// delta (k, n), which may alias z.
template <typename T>
LossSums loss_and_delta(Loss loss, const ConstMatrixRef<T>& z, const int32_t* labels,
                        const ConstMatrixRef<T>& values, MatrixRef<T> delta);

// Loss sum only (evaluation): no gradient.
template <typename T>
LossSums loss_only(Loss loss, const ConstMatrixRef<T>& z, const int32_t* labels,
                   const ConstMatrixRef<T>& values);

// Scalar reference: log(1 + exp(z)) computed without overflow.
double softplus(double z);

}  // namespace nn_dist

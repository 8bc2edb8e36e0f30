// nn_eval's evaluation over the ranks: the model read once and broadcast, a
// shard per rank, forward passes in batches, the sums added over the ranks
// (regression takes a second pass for R^2's deviations from the mean).
#include "nn_dist/eval/evaluate.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "nn_dist/common/error.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/io/dataset.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/io/names.hpp"
#include "nn_dist/io/predictions.hpp"
#include "nn_dist/model/mlp.hpp"
#include "nn_dist/parallel/comm.hpp"

namespace nn_dist {

namespace {

struct LoadedModel {
  std::vector<long> sizes;
  ActivationFn activation;
  Loss loss = Loss::kSoftmax;
  FlatBuffer params;
  Standardization standardization;
  DataNames names;  // read on rank 0 only
};

// This rank's part of the data.
struct EvalShard {
  DatasetInfo info;
  Shard shard;
  Targets targets;
  long count = 0;
};

// What the forward passes over a shard leave: sums (loss, correct; then the
// confusion matrix for classification), each sample's outputs (count, k)
// row-major, the class as training counts it (first largest z), and the sum
// of each target column (regression).
struct ShardOutputs {
  std::vector<double> sums;
  std::vector<float> outputs, predicted;
  std::vector<double> y_sum;
};

void check_files(const Communicator& comm, const EvalOptions& o) {
  comm.agreed([&] {
    require_input_file(o.model, "--model " + o.model);
    require_input_file(o.data, "--data " + o.data);
    if (comm.root() && !o.predictions.empty()) {
      require_output_file(o.predictions, "--predictions " + o.predictions);
      require_distinct_files({{"--model", o.model}, {"--data", o.data}}, {{"--predictions", o.predictions}}, {});
    }
  });
}

// Rank 0 reads the checkpoint; every rank receives the same model.
LoadedModel load_model(const Communicator& comm, const EvalOptions& o) {
  LoadedModel m;
  const std::string what = "--model " + o.model;
  int64_t header[4] = {0, 0, 0, 0};  // layers, activation, loss, has standardization
  comm.agreed([&] {
    if (!comm.root()) return;
    const CheckpointModel cm = read_checkpoint_model(o.model, what);
    m.sizes = cm.sizes;
    m.activation = ActivationFn(parse_activation(cm.activation), cm.leaky_slope);
    m.loss = parse_loss(cm.loss);
    const Layout layout(m.sizes);
    m.params.assign(layout.total(), 0.0f);
    read_checkpoint_params(o.model, what, layout, m.params.data());
    m.standardization = read_checkpoint_standardization(o.model, what, m.sizes.front());
    m.names = cm.names;
    header[0] = static_cast<int64_t>(m.sizes.size());
    header[1] = static_cast<int64_t>(m.activation.kind);
    header[2] = static_cast<int64_t>(m.loss);
    header[3] = m.standardization.empty() ? 0 : 1;
  });
  comm.broadcast(header, 4);
  std::vector<int64_t> widths(m.sizes.begin(), m.sizes.end());
  widths.resize(header[0]);
  comm.broadcast(widths.data(), static_cast<int>(header[0]));
  m.sizes.assign(widths.begin(), widths.end());
  m.activation.kind = static_cast<Activation>(header[1]);
  comm.broadcast(&m.activation.leaky_slope, 1);
  m.loss = static_cast<Loss>(header[2]);
  const Layout layout(m.sizes);
  m.params.resize(layout.total());
  comm.broadcast(m.params.data(), m.params.size());
  if (header[3]) {
    const long d = m.sizes.front();
    m.standardization.mean.resize(d);
    m.standardization.scale.resize(d);
    comm.broadcast(m.standardization.mean.data(), static_cast<int>(d));
    comm.broadcast(m.standardization.scale.data(), static_cast<int>(d));
  }
  return m;
}

// The data file fits the model (features, names, labels, targets) and splits
// over the ranks; this rank's shard, standardised as in training.
EvalShard read_eval_shard(const Communicator& comm, const EvalOptions& o, const LoadedModel& model) {
  const long k = model.sizes.back();
  const int p = comm.size();
  const std::string what = "--data " + o.data;
  EvalShard s;
  comm.agreed([&] {
    s.info = inspect_dataset(o.data, what, o.x_name, o.y_name);
    const DatasetInfo& info = s.info;
    if (info.features != model.sizes.front()) {
      throw Error(what + ": has " + std::to_string(info.features) + " features, but the model --model " + o.model +
                  " takes " + std::to_string(model.sizes.front()));
    }
    if (comm.root()) require_same_names(info.names, what, model.names, "--model " + o.model);
    if (info.samples < p) {
      throw Error(what + ": " + std::to_string(info.samples) + " sample(s) cannot be split over " + std::to_string(p) +
                  " ranks");
    }
    if (model.loss == Loss::kMse && info.target_width != k) {
      throw Error(what + ": has " + std::to_string(info.target_width) + " target column(s), the model predicts " +
                  std::to_string(k));
    }
    if (!o.predictions.empty() && static_cast<double>(info.samples) * static_cast<double>(k) > INT_MAX) {
      throw Error("--predictions: " + std::to_string(info.samples) + " x " + std::to_string(k) +
                  " outputs are more than one file of this tool holds (2^31 values)");
    }
    long offset = 0;
    shard_range(info.samples, p, comm.rank(), &offset, &s.count);
    s.shard = read_shard(info, offset, s.count);
    s.targets = make_targets(info, s.shard, model.loss);
    if (model.loss == Loss::kSoftmax && s.targets.max_label >= k) {
      throw Error(what + ": label " + std::to_string(s.targets.max_label) + " is not a class of the model (0.." +
                  std::to_string(k - 1) + ")");
    }
  });
  apply_standardization(model.standardization, &s.shard.x);
  return s;
}

// Sample j's output column z (k): its outputs (probabilities, the probability
// of class 1, or the predicted values) into out, and what it adds to the sums.
void record_output(const LoadedModel& model, const Targets& targets, long j, const Eigen::Ref<const Vector<float>>& z,
                   long classes, float* out, ShardOutputs* r) {
  const long k = model.sizes.back();
  if (model.loss == Loss::kSoftmax) {  // probabilities; the class is the first largest z, as in training
    Eigen::Index arg = 0;
    const float zmax = z.maxCoeff(&arg);
    float denom = 0;
    for (long i = 0; i < k; ++i) denom += std::exp(z(i) - zmax);
    for (long i = 0; i < k; ++i) out[i] = std::exp(z(i) - zmax) / denom;
    r->sums[2 + targets.labels[j] * classes + arg] += 1;
    r->predicted[j] = static_cast<float>(arg);
  } else if (model.loss == Loss::kLogistic) {
    const float zj = z(0);
    const float e = std::exp(-std::abs(zj));
    out[0] = zj >= 0 ? 1 / (1 + e) : e / (1 + e);
    const long truth = targets.values(0, j) > 0.5f ? 1 : 0;
    r->sums[2 + truth * classes + (zj > 0 ? 1 : 0)] += 1;
    r->predicted[j] = zj > 0 ? 1.0f : 0.0f;
  } else {
    for (long i = 0; i < k; ++i) {
      out[i] = z(i);
      r->y_sum[i] += targets.values(i, j);
    }
  }
}

// Forward passes over this rank's shard, `batch` samples at a time.
ShardOutputs forward_shard(const LoadedModel& model, const EvalShard& s, long batch_limit, long classes) {
  const long k = model.sizes.back(), count = s.count;
  const bool classify = model.loss != Loss::kMse;
  const Layout layout(model.sizes);
  const long batch = std::min(batch_limit, std::max(1L, count));
  Mlp<float> mlp(layout, model.activation, model.loss, batch);
  ShardOutputs r;
  r.sums.assign(2 + (classify ? classes * classes : 0), 0.0);
  r.outputs.resize(static_cast<std::size_t>(count * k));
  r.y_sum.assign(classify ? 0 : k, 0.0);
  r.predicted.resize(classify ? count : 0);
  const bool has_labels = !s.targets.labels.empty();
  for (long begin = 0; begin < count; begin += batch) {
    const long m = std::min(batch, count - begin);
    mlp.forward(model.params.data(), s.shard.x.data() + begin * s.shard.x.rows(), m);
    const LossSums sums = mlp.loss_only(has_labels ? s.targets.labels.data() + begin : nullptr,
                                        has_labels ? nullptr : s.targets.values.data() + begin * s.targets.values.rows());
    r.sums[0] += sums.loss;
    r.sums[1] += sums.correct;
    const auto z = mlp.output();
    for (long j = 0; j < m; ++j) {
      record_output(model, s.targets, begin + j, z.col(j), classes, r.outputs.data() + (begin + j) * k, &r);
    }
  }
  return r;
}

// Regression's error sums over all ranks; y_sum (the column sums over all
// ranks) gives the mean each deviation is taken from.
RegressionSums regression_sums(const Communicator& comm, const EvalShard& s, const ShardOutputs& r, long k, double n) {
  RegressionSums reg;
  reg.abs_error.assign(k, 0.0);
  reg.sq_error.assign(k, 0.0);
  reg.sq_deviation.assign(k, 0.0);
  for (long j = 0; j < s.count; ++j) {
    for (long i = 0; i < k; ++i) {
      const double y = s.targets.values(i, j), e = r.outputs[j * k + i] - y, dev = y - r.y_sum[i] / n;
      reg.abs_error[i] += std::abs(e);
      reg.sq_error[i] += e * e;
      reg.sq_deviation[i] += dev * dev;
    }
  }
  std::vector<double> flat;
  for (const auto* v : {&reg.abs_error, &reg.sq_error, &reg.sq_deviation}) flat.insert(flat.end(), v->begin(), v->end());
  comm.sum(flat.data(), static_cast<int>(flat.size()));
  for (int part = 0; part < 3; ++part) {
    std::vector<double>& v = part == 0 ? reg.abs_error : part == 1 ? reg.sq_error : reg.sq_deviation;
    std::copy(flat.begin() + part * k, flat.begin() + (part + 1) * k, v.begin());
  }
  return reg;
}

// Every rank's outputs, gathered to rank 0 in file order and written there.
void write_all_predictions(const Communicator& comm, const EvalOptions& o, const LoadedModel& model,
                           const EvalShard& s, const ShardOutputs& r) {
  const long k = model.sizes.back();
  const std::vector<float> all = comm.gather(r.outputs.data(), s.count * k);
  const std::vector<float> classes_all = comm.gather(r.predicted.data(), static_cast<long>(r.predicted.size()));
  comm.agreed([&] {
    if (!comm.root()) return;
    const std::vector<int64_t> predicted(classes_all.begin(), classes_all.end());
    const std::string kind = model.loss == Loss::kSoftmax    ? "class probabilities"
                             : model.loss == Loss::kLogistic ? "probability of class 1"
                                                             : "predicted values";
    write_predictions(o.predictions, "--predictions " + o.predictions, all, s.info.samples, k, predicted, kind);
  });
}

}  // namespace

std::string EvalResult::model_text() const { return sizes_string(sizes) + " (" + loss_name(loss) + ")"; }

EvalResult evaluate(const Communicator& comm, const EvalOptions& o) {
  check_files(comm, o);
  const LoadedModel model = load_model(comm, o);
  const EvalShard s = read_eval_shard(comm, o, model);
  EvalResult result;
  result.sizes = model.sizes;
  result.loss = model.loss;
  result.samples = static_cast<double>(s.info.samples);
  result.classes = model.loss == Loss::kSoftmax ? model.sizes.back() : 2;
  ShardOutputs r = forward_shard(model, s, o.batch, result.classes);
  comm.sum(r.sums.data(), static_cast<int>(r.sums.size()));
  if (result.classification()) {
    result.confusion.assign(r.sums.begin() + 2, r.sums.end());
  } else {
    comm.sum(r.y_sum.data(), static_cast<int>(r.y_sum.size()));
    result.regression = regression_sums(comm, s, r, model.sizes.back(), result.samples);
  }
  result.loss_sum = r.sums[0];
  result.correct = r.sums[1];
  if (!o.predictions.empty()) write_all_predictions(comm, o, model, s, r);
  return result;
}

}  // namespace nn_dist

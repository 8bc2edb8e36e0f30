// nn_eval: evaluates a checkpoint on a dataset, alone or under mpirun (each
// rank its own shard, the sums added over the ranks). Classification: loss,
// accuracy, per-class precision/recall/F1 and the confusion matrix.
// Regression: MSE, MAE and R^2. --predictions writes every sample's outputs
// in file order; --json prints the results for machines.
#include <boost/program_options.hpp>
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "nn_dist/cli/mpi_tool.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/eval/metrics.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/io/dataset.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/io/predictions.hpp"
#include "nn_dist/model/mlp.hpp"
#include "nn_dist/parallel/comm.hpp"

namespace po = boost::program_options;
using namespace nn_dist;

namespace {

struct Options {
  std::string model, data, predictions, x_name = "X", y_name = "y";
  long batch = 256;
  bool json = false;
  double timeout = 300;
};

// Returns false for --help (printed by rank 0).
bool parse(int argc, char** argv, Options* o, std::string* help) {
  po::options_description desc("Usage: [mpirun -np N] nn_eval --model CKPT.h5 --data test.h5 [options]", 100);
  desc.add_options()
      ("help,h", "show this help")
      ("model", po::value(&o->model), "checkpoint written by nn_dist (or a model file with its /model group)")
      ("data", po::value(&o->data), "HDF5 data in nn_dist's format (X, and y)")
      ("x-dataset", po::value(&o->x_name)->default_value(o->x_name), "name of the feature dataset")
      ("y-dataset", po::value(&o->y_name)->default_value(o->y_name), "name of the label/target dataset")
      ("predictions", po::value(&o->predictions), "write each sample's outputs here (HDF5), in file order")
      ("json", po::bool_switch(&o->json), "print the results as one JSON object")
      ("batch", po::value(&o->batch)->default_value(o->batch), "samples per forward pass");
  if (!parse_mpi_tool_options(argc, argv, &desc, &o->timeout, help)) return false;
  if (o->model.empty()) throw Error("--model: required (a checkpoint written by nn_dist)");
  if (o->data.empty()) throw Error("--data: required (the data to evaluate on)");
  if (!(o->batch > 0 && o->batch <= 1 << 20)) throw Error("--batch: must be 1 to 1048576");
  return true;
}

std::string json_number(double v) {
  if (std::isnan(v)) return "null";
  if (std::isinf(v)) return v > 0 ? "1e308" : "-1e308";
  return fmt("%.10g", v);
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += fmt("\\u%04x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

struct LoadedModel {
  std::vector<long> sizes;
  Activation activation = Activation::kRelu;
  Loss loss = Loss::kSoftmax;
  FlatBuffer params;
  Standardization standardization;
  DataNames names;  // read on rank 0 only
};

// Rank 0 reads the checkpoint; every rank receives the same model.
LoadedModel load_model(const Communicator& comm, const Options& o) {
  LoadedModel m;
  const std::string what = "--model " + o.model;
  int64_t header[4] = {0, 0, 0, 0};  // layers, activation, loss, has standardization
  comm.agreed([&] {
    if (!comm.root()) return;
    const CheckpointModel cm = read_checkpoint_model(o.model, what);
    m.sizes = cm.sizes;
    m.activation = parse_activation(cm.activation);
    m.loss = parse_loss(cm.loss);
    const Layout layout(m.sizes);
    m.params.assign(layout.total(), 0.0f);
    read_checkpoint_params(o.model, what, layout, m.params.data());
    m.standardization = read_checkpoint_standardization(o.model, what, m.sizes.front());
    m.names = cm.names;
    header[0] = static_cast<int64_t>(m.sizes.size());
    header[1] = static_cast<int64_t>(m.activation);
    header[2] = static_cast<int64_t>(m.loss);
    header[3] = m.standardization.empty() ? 0 : 1;
  });
  comm.broadcast(header, 4);
  std::vector<int64_t> widths(m.sizes.begin(), m.sizes.end());
  widths.resize(header[0]);
  comm.broadcast(widths.data(), static_cast<int>(header[0]));
  m.sizes.assign(widths.begin(), widths.end());
  m.activation = static_cast<Activation>(header[1]);
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

// Rank 0: the classification report (text or JSON).
void report_classification(const Options& o, const std::string& model_text, const std::vector<double>& sums,
                           long classes, double n) {
  const double loss = sums[0] / n;
  const std::vector<double> confusion(sums.begin() + 2, sums.end());
  const std::vector<ClassMetrics> per = class_metrics(confusion, classes);
  double macro[3] = {0, 0, 0};
  for (const ClassMetrics& c : per) {
    macro[0] += c.precision / classes;
    macro[1] += c.recall / classes;
    macro[2] += c.f1 / classes;
  }
  const double accuracy = sums[1] / n;
  if (o.json) {
    std::string s = "{\"samples\":" + json_number(n) + ",\"model\":" + json_string(model_text) +
                    ",\"task\":\"classification\",\"loss\":" + json_number(loss) + ",\"accuracy\":" +
                    json_number(accuracy) + ",\"classes\":[";
    for (long c = 0; c < classes; ++c) {
      s += std::string(c ? "," : "") + "{\"class\":" + std::to_string(c) + ",\"precision\":" +
           json_number(per[c].precision) + ",\"recall\":" + json_number(per[c].recall) + ",\"f1\":" +
           json_number(per[c].f1) + ",\"support\":" + json_number(per[c].support) + "}";
    }
    s += "],\"macro\":{\"precision\":" + json_number(macro[0]) + ",\"recall\":" + json_number(macro[1]) +
         ",\"f1\":" + json_number(macro[2]) + "},\"confusion\":[";
    for (long t = 0; t < classes; ++t) {
      s += t ? ",[" : "[";
      for (long q = 0; q < classes; ++q) s += (q ? "," : "") + json_number(confusion[t * classes + q]);
      s += "]";
    }
    std::printf("%s]}\n", s.c_str());
    return;
  }
  std::printf("nn_eval: %s: %.0f samples, model %s, %ld classes\n", o.data.c_str(), n, model_text.c_str(), classes);
  std::printf("loss %.6f  accuracy %.6f\n\n", loss, accuracy);
  std::printf("%-8s %10s %10s %10s %10s\n", "class", "precision", "recall", "f1", "support");
  for (long c = 0; c < classes; ++c) {
    std::printf("%-8ld %10.4f %10.4f %10.4f %10.0f\n", c, per[c].precision, per[c].recall, per[c].f1,
                per[c].support);
  }
  std::printf("%-8s %10.4f %10.4f %10.4f %10.0f\n\n", "macro", macro[0], macro[1], macro[2], n);
  std::printf("confusion matrix (rows: true class, columns: predicted)\n%8s", "");
  for (long q = 0; q < classes; ++q) std::printf(" %7ld", q);
  std::printf("\n");
  for (long t = 0; t < classes; ++t) {
    std::printf("%8ld", t);
    for (long q = 0; q < classes; ++q) std::printf(" %7.0f", confusion[t * classes + q]);
    std::printf("\n");
  }
}

// Rank 0: the regression report (text or JSON).
void report_regression(const Options& o, const std::string& model_text, const RegressionSums& reg, double loss,
                       long k, double n) {
  const RegressionMetrics rm = regression_metrics(reg, n);
  if (o.json) {
    std::string s = "{\"samples\":" + json_number(n) + ",\"model\":" + json_string(model_text) +
                    ",\"task\":\"regression\",\"loss\":" + json_number(loss) + ",\"mse\":" + json_number(rm.mse) +
                    ",\"mae\":" + json_number(rm.mae) + ",\"r2\":[";
    for (std::size_t j = 0; j < rm.r2.size(); ++j) s += (j ? "," : "") + json_number(rm.r2[j]);
    std::printf("%s],\"r2_mean\":%s}\n", s.c_str(), json_number(rm.r2_mean).c_str());
    return;
  }
  std::printf("nn_eval: %s: %.0f samples, model %s, %ld target(s)\n", o.data.c_str(), n, model_text.c_str(), k);
  std::printf("loss %.6f (training's: mean of |h - y|^2 / 2)  mse %.6f  mae %.6f  r2 %.6f\n", loss, rm.mse, rm.mae,
              rm.r2_mean);
  if (k > 1) {
    for (long i = 0; i < k; ++i) std::printf("  target %ld: r2 %.6f\n", i, rm.r2[i]);
  }
}

int run(const Communicator& comm, const Options& o) {
  const int p = comm.size(), r = comm.rank();
  comm.agreed([&] {
    require_input_file(o.model, "--model " + o.model);
    require_input_file(o.data, "--data " + o.data);
    if (comm.root() && !o.predictions.empty()) {
      require_output_file(o.predictions, "--predictions " + o.predictions);
      require_distinct_files({{"--model", o.model}, {"--data", o.data}}, {{"--predictions", o.predictions}}, {});
    }
  });
  const LoadedModel model = load_model(comm, o);
  const long k = model.sizes.back();
  const bool classify = model.loss == Loss::kSoftmax || model.loss == Loss::kLogistic;
  const long classes = model.loss == Loss::kSoftmax ? k : 2;
  const std::string what = "--data " + o.data;
  DatasetInfo info;
  Shard shard;
  Targets targets;
  long offset = 0, count = 0;
  comm.agreed([&] {
    info = inspect_dataset(o.data, what, o.x_name, o.y_name);
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
    shard_range(info.samples, p, r, &offset, &count);
    shard = read_shard(info, offset, count);
    targets = make_targets(info, shard, model.loss);
    if (model.loss == Loss::kSoftmax && targets.max_label >= k) {
      throw Error(what + ": label " + std::to_string(targets.max_label) + " is not a class of the model (0.." +
                  std::to_string(k - 1) + ")");
    }
  });
  apply_standardization(model.standardization, &shard.x);

  const Layout layout(model.sizes);
  const long batch = std::min(o.batch, std::max(1L, count));
  Mlp<float> mlp(layout, model.activation, model.loss, batch);
  // sums: loss, correct; then the confusion matrix (classification) or nothing.
  std::vector<double> sums(2 + (classify ? classes * classes : 0), 0.0);
  std::vector<float> outputs(static_cast<std::size_t>(count * k));  // this rank's, row-major (count, k)
  std::vector<double> y_sum(classify ? 0 : k, 0.0);
  std::vector<float> predicted_local(classify ? count : 0);  // the class, as training counts it (first largest z)
  const bool has_labels = !targets.labels.empty();
  for (long begin = 0; begin < count; begin += batch) {
    const long m = std::min(batch, count - begin);
    mlp.forward(model.params.data(), shard.x.data() + begin * shard.x.rows(), m);
    const LossSums s = mlp.loss_only(has_labels ? targets.labels.data() + begin : nullptr,
                                     has_labels ? nullptr : targets.values.data() + begin * targets.values.rows());
    sums[0] += s.loss;
    sums[1] += s.correct;
    const auto z = mlp.output();
    for (long j = 0; j < m; ++j) {
      float* out = outputs.data() + (begin + j) * k;
      const auto col = z.col(j);
      if (model.loss == Loss::kSoftmax) {  // probabilities; the class is the first largest z, as in training
        Eigen::Index arg = 0;
        const float zmax = col.maxCoeff(&arg);
        float denom = 0;
        for (long i = 0; i < k; ++i) denom += std::exp(col[i] - zmax);
        for (long i = 0; i < k; ++i) out[i] = std::exp(col[i] - zmax) / denom;
        sums[2 + targets.labels[begin + j] * classes + arg] += 1;
        predicted_local[begin + j] = static_cast<float>(arg);
      } else if (model.loss == Loss::kLogistic) {
        const float zj = col[0];
        const float e = std::exp(-std::abs(zj));
        out[0] = zj >= 0 ? 1 / (1 + e) : e / (1 + e);
        const long truth = targets.values(0, begin + j) > 0.5f ? 1 : 0;
        sums[2 + truth * classes + (zj > 0 ? 1 : 0)] += 1;
        predicted_local[begin + j] = zj > 0 ? 1.0f : 0.0f;
      } else {
        for (long i = 0; i < k; ++i) {
          out[i] = col[i];
          y_sum[i] += targets.values(i, begin + j);
        }
      }
    }
  }
  comm.sum(sums.data(), static_cast<int>(sums.size()));
  const double n = static_cast<double>(info.samples);
  RegressionSums reg;
  if (!classify) {  // second pass: deviations from the mean target, for R^2
    comm.sum(y_sum.data(), static_cast<int>(k));
    reg.abs_error.assign(k, 0.0);
    reg.sq_error.assign(k, 0.0);
    reg.sq_deviation.assign(k, 0.0);
    for (long j = 0; j < count; ++j) {
      for (long i = 0; i < k; ++i) {
        const double y = targets.values(i, j), e = outputs[j * k + i] - y, dev = y - y_sum[i] / n;
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
  }

  if (!o.predictions.empty()) {
    const std::vector<float> all = comm.gather(outputs.data(), count * k);
    const std::vector<float> classes_all = comm.gather(predicted_local.data(), static_cast<long>(predicted_local.size()));
    comm.agreed([&] {
      if (!comm.root()) return;
      const std::vector<int64_t> predicted(classes_all.begin(), classes_all.end());
      const std::string kind = model.loss == Loss::kSoftmax    ? "class probabilities"
                               : model.loss == Loss::kLogistic ? "probability of class 1"
                                                               : "predicted values";
      write_predictions(o.predictions, "--predictions " + o.predictions, all, info.samples, k, predicted, kind);
    });
  }
  if (!comm.root()) return 0;
  const std::string model_text = sizes_string(model.sizes) + " (" + loss_name(model.loss) + ")";
  if (classify) {
    report_classification(o, model_text, sums, classes, n);
  } else {
    report_regression(o, model_text, reg, sums[0] / n, k, n);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mpi_tool_main<Options>("nn_eval", &argc, &argv, parse, run); }

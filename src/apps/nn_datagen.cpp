// nn_datagen: writes synthetic datasets in nn_dist's HDF5 format -- spirals
// and a random teacher network (classification no linear model fits), xor and
// linear binary sets (logistic loss), and teacher regression.
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>

#include "nn_dist/cli/options.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/io/dataset.hpp"
#include "nn_dist/model/init.hpp"

namespace po = boost::program_options;
using nn_dist::Matrix;

namespace {

struct Options {
  std::string out, val_out, kind = "spirals", x_dtype = "float32";
  long samples = 10000, val_samples = 2000, features = 0, classes = 3, targets = 1;
  double noise = 0.1;
  long long seed = 1;
};

// A fixed random network d -> 32 (tanh) -> k, drawn from the seed.
struct Teacher {
  Matrix<double> w1, w2;
  Teacher(long d, long k, nn_dist::Rng& rng) : w1(32, d), w2(k, 32) {
    for (long i = 0; i < w1.size(); ++i) w1.data()[i] = rng.normal() * 2.0 / std::sqrt(double(d));
    for (long i = 0; i < w2.size(); ++i) w2.data()[i] = rng.normal() * 2.0 / std::sqrt(32.0);
  }
  Eigen::VectorXd operator()(const Eigen::VectorXd& x) const { return w2 * (w1 * x).array().tanh().matrix(); }
};

void generate(const Options& o, long n, nn_dist::Rng& sample_rng, const Teacher* teacher, Matrix<float>& x,
              Matrix<double>& y) {
  const long d = o.features;
  x.resize(d, n);
  const bool regression = o.kind == "regression";
  y.resize(regression ? o.targets : 1, n);
  for (long j = 0; j < n; ++j) {
    Eigen::VectorXd v(d);
    if (o.kind == "spirals") {
      const long arm = static_cast<long>(sample_rng.below(o.classes));
      const double t = sample_rng.uniform();  // position along the arm
      const double angle = 2 * M_PI * (1.5 * t + static_cast<double>(arm) / o.classes);
      v.setZero();
      v[0] = t * std::cos(angle) + o.noise * sample_rng.normal();
      v[1] = t * std::sin(angle) + o.noise * sample_rng.normal();
      for (long i = 2; i < d; ++i) v[i] = sample_rng.normal();  // uninformative extra features
      y(0, j) = static_cast<double>(arm);
    } else if (o.kind == "xor" || o.kind == "linear") {
      for (long i = 0; i < d; ++i) v[i] = 2 * sample_rng.uniform() - 1;
      double score = o.kind == "xor" ? v[0] * v[1] : v.sum();
      score += o.noise * sample_rng.normal();
      y(0, j) = score > 0 ? 1 : 0;
    } else {
      for (long i = 0; i < d; ++i) v[i] = sample_rng.normal();
      Eigen::VectorXd out = (*teacher)(v);
      if (regression) {
        for (long i = 0; i < o.targets; ++i) y(i, j) = out[i] + o.noise * sample_rng.normal();
      } else {
        for (long i = 0; i < o.classes; ++i) out[i] += o.noise * sample_rng.normal();
        Eigen::Index best = 0;
        out.maxCoeff(&best);
        y(0, j) = static_cast<double>(best);
      }
    }
    if (o.x_dtype == "int32") v = (v * 100).array().round().matrix();  // integer features for tests
    x.col(j) = v.cast<float>();
  }
}

int run(int argc, char** argv) {
  const nn_dist::ProgramHelp program{"nn_datagen", "synthetic datasets for nn_dist",
                            {"nn_datagen --out train.h5 [--kind spirals] [options]"}};
  Options o;
  po::options_description table = nn_dist::option_table();
  table.add_options()
      ("out", po::value(&o.out), "output HDF5 file (required)")
      ("val-out", po::value(&o.val_out), "also write a validation set from the same distribution")
      ("kind", po::value(&o.kind)->default_value(o.kind), "spirals|teacher|xor|linear|regression")
      ("samples", po::value(&o.samples)->default_value(o.samples), "samples in --out")
      ("val-samples", po::value(&o.val_samples)->default_value(o.val_samples), "samples in --val-out")
      ("features", po::value(&o.features)->default_value(0), "features (0: 2 for spirals and xor, 20 otherwise)")
      ("classes", po::value(&o.classes)->default_value(o.classes), "classes (spirals, teacher)")
      ("targets", po::value(&o.targets)->default_value(o.targets), "target columns (regression)")
      ("noise", po::value(&o.noise)->default_value(o.noise), "noise level")
      ("seed", po::value(&o.seed)->default_value(o.seed), "random seed")
      ("x-dtype", po::value(&o.x_dtype)->default_value(o.x_dtype), "stored type of X: float32|float64|int32");
  std::string help;
  if (!nn_dist::parse_options(argc, argv, program, table, &help)) {
    std::printf("%s", help.c_str());
    return 0;
  }
  if (o.out.empty()) throw nn_dist::Error("--out: required");
  const bool known = o.kind == "spirals" || o.kind == "teacher" || o.kind == "xor" || o.kind == "linear" ||
                     o.kind == "regression";
  if (!known) throw nn_dist::Error("--kind: unknown value '" + o.kind + "'");
  if (o.features == 0) o.features = (o.kind == "spirals" || o.kind == "xor") ? 2 : 20;
  if (o.samples <= 0 || o.val_samples <= 0) throw nn_dist::Error("--samples: must be positive");
  if (o.classes < 2 || o.targets < 1) throw nn_dist::Error("--classes must be >= 2 and --targets >= 1");
  if ((o.kind == "spirals" || o.kind == "xor") && o.features < 2) throw nn_dist::Error("--features: at least 2");
  nn_dist::StoredType type = nn_dist::StoredType::kFloat32;
  if (o.x_dtype == "float64") type = nn_dist::StoredType::kFloat64;
  else if (o.x_dtype == "int32") type = nn_dist::StoredType::kInt32;
  else if (o.x_dtype != "float32") throw nn_dist::Error("--x-dtype: unknown value '" + o.x_dtype + "'");

  nn_dist::Rng teacher_rng(nn_dist::mix_seed(static_cast<uint64_t>(o.seed), 7));
  const Teacher teacher(o.features, o.kind == "regression" ? o.targets : o.classes, teacher_rng);
  const bool labels = o.kind != "regression";
  Matrix<float> x;
  Matrix<double> y;
  nn_dist::Rng train_rng(nn_dist::mix_seed(static_cast<uint64_t>(o.seed), 1));
  generate(o, o.samples, train_rng, &teacher, x, y);
  nn_dist::write_dataset(o.out, x, y, labels, type);
  std::printf("nn_datagen: wrote %s (%ld x %ld, %s)\n", o.out.c_str(), o.samples, o.features, o.kind.c_str());
  if (!o.val_out.empty()) {
    nn_dist::Rng val_rng(nn_dist::mix_seed(static_cast<uint64_t>(o.seed), 2));
    generate(o, o.val_samples, val_rng, &teacher, x, y);
    nn_dist::write_dataset(o.val_out, x, y, labels, type);
    std::printf("nn_datagen: wrote %s (%ld x %ld, %s)\n", o.val_out.c_str(), o.val_samples, o.features,
                o.kind.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return nn_dist::program_main("nn_datagen", [&] { return run(argc, argv); });
}

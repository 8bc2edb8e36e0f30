// nn_datagen: writes synthetic datasets (data/synthetic.hpp) in nn_dist's
// HDF5 format: a training set and, from the same distribution, a validation set.
#include <boost/program_options.hpp>
#include <cstdio>
#include <string>

#include "nn_dist/cli/options.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/name_table.hpp"
#include "nn_dist/data/synthetic.hpp"
#include "nn_dist/io/dataset.hpp"

namespace po = boost::program_options;
using namespace nn_dist;

namespace {

struct Options {
  std::string out, val_out, kind = "spirals", x_dtype = "float32";
  long samples = 10000, val_samples = 2000;
  long long seed = 1;
  SyntheticOptions data;  // features 0 until checked: 2 for spirals and xor, 20 otherwise
  StoredType x_type = StoredType::kFloat32;
};

po::options_description option_table(Options* o) {
  po::options_description table = nn_dist::option_table();
  table.add_options()
      ("out", po::value(&o->out), "output HDF5 file (required)")
      ("val-out", po::value(&o->val_out), "also write a validation set from the same distribution")
      ("kind", po::value(&o->kind)->default_value(o->kind), "spirals|teacher|xor|linear|regression")
      ("samples", po::value(&o->samples)->default_value(o->samples), "samples in --out")
      ("val-samples", po::value(&o->val_samples)->default_value(o->val_samples), "samples in --val-out")
      ("features", po::value(&o->data.features)->default_value(0), "features (0: 2 for spirals and xor, 20 otherwise)")
      ("classes", po::value(&o->data.classes)->default_value(o->data.classes), "classes (spirals, teacher)")
      ("targets", po::value(&o->data.targets)->default_value(o->data.targets), "target columns (regression)")
      ("noise", po::value(&o->data.noise)->default_value(o->data.noise), "noise level")
      ("seed", po::value(&o->seed)->default_value(o->seed), "random seed")
      ("x-dtype", po::value(&o->x_dtype)->default_value(o->x_dtype), "stored type of X: float32|float64|int32");
  return table;
}

// Returns false for --help (then printed).
bool parse(int argc, char** argv, Options* o) {
  const ProgramHelp program{"nn_datagen", "synthetic datasets for nn_dist",
                            {"nn_datagen --out train.h5 [--kind spirals] [options]"}};
  std::string help;
  if (!parse_options(argc, argv, program, option_table(o), &help)) {
    std::printf("%s", help.c_str());
    return false;
  }
  SyntheticOptions& d = o->data;
  if (o->out.empty()) throw Error("--out: required");
  d.kind = synthetic_kind_names().parse(o->kind);
  const bool plane = d.kind == SyntheticKind::kSpirals || d.kind == SyntheticKind::kXor;
  if (d.features == 0) d.features = plane ? 2 : 20;
  if (o->samples <= 0 || o->val_samples <= 0) throw Error("--samples: must be positive");
  if (d.classes < 2 || d.targets < 1) throw Error("--classes must be >= 2 and --targets >= 1");
  if (plane && d.features < 2) throw Error("--features: at least 2");
  const NameTable<StoredType> x_types(
      "--x-dtype", {{StoredType::kFloat32, "float32"}, {StoredType::kFloat64, "float64"}, {StoredType::kInt32, "int32"}});
  o->x_type = x_types.parse(o->x_dtype);
  d.integer_features = o->x_type == StoredType::kInt32;  // whole numbers, for the integer-storage tests
  return true;
}

// n samples from stream `stream` of the seed, written to path.
void write(const Options& o, const SyntheticData& data, const std::string& path, long n, uint64_t stream) {
  Rng rng(mix_seed(static_cast<uint64_t>(o.seed), stream));
  Matrix<float> x;
  Matrix<double> y;
  data.draw(n, rng, &x, &y);
  write_dataset(path, x, y, data.labels(), o.x_type);
  std::printf("nn_datagen: wrote %s (%ld x %ld, %s)\n", path.c_str(), n, o.data.features, o.kind.c_str());
}

int run(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 0;
  const SyntheticData data(o.data, static_cast<uint64_t>(o.seed));
  write(o, data, o.out, o.samples, 1);
  if (!o.val_out.empty()) write(o, data, o.val_out, o.val_samples, 2);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return program_main("nn_datagen", [&] { return run(argc, argv); });
}

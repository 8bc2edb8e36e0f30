// nn_eval: evaluates a checkpoint on a dataset, alone or under mpirun (each
// rank its own shard, the sums added over the ranks). Classification: loss,
// accuracy, per-class precision/recall/F1 and the confusion matrix.
// Regression: MSE, MAE and R^2. --predictions writes every sample's outputs
// in file order; --json prints the results for machines.
#include <boost/program_options.hpp>
#include <cstdio>
#include <string>

#include "nn_dist/cli/mpi_program.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/eval/evaluate.hpp"
#include "nn_dist/eval/report.hpp"
#include "nn_dist/parallel/comm.hpp"

namespace po = boost::program_options;
using namespace nn_dist;

namespace {

struct Options {
  EvalOptions eval;
  bool json = false;
  double timeout = 300;
};

// Returns false for --help (printed by rank 0).
bool parse(int argc, char** argv, Options* o, std::string* help) {
  const ProgramHelp program{"nn_eval",
                            "a checkpoint's loss and metrics on a dataset (accuracy, precision/recall/F1, "
                            "confusion matrix; or MSE, MAE, R^2)",
                            {"[mpirun -np N] nn_eval --model CKPT.h5 --data test.h5 [options]"}};
  EvalOptions& e = o->eval;
  po::options_description table = option_table();
  table.add_options()
      ("model", po::value(&e.model), "checkpoint written by nn_dist (or a model file with its /model group)")
      ("data", po::value(&e.data), "HDF5 data in nn_dist's format (X, and y)")
      ("x-dataset", po::value(&e.x_name)->default_value(e.x_name), "name of the feature dataset")
      ("y-dataset", po::value(&e.y_name)->default_value(e.y_name), "name of the label/target dataset")
      ("predictions", po::value(&e.predictions), "write each sample's outputs here (HDF5), in file order")
      ("json", po::bool_switch(&o->json), "print the results as one JSON object")
      ("batch", po::value(&e.batch)->default_value(e.batch), "samples per forward pass");
  if (!parse_mpi_tool_options(argc, argv, program, &table, &o->timeout, help)) return false;
  if (e.model.empty()) throw Error("--model: required (a checkpoint written by nn_dist)");
  if (e.data.empty()) throw Error("--data: required (the data to evaluate on)");
  if (!(e.batch > 0 && e.batch <= 1 << 20)) throw Error("--batch: must be 1 to 1048576");
  return true;
}

int run(const Communicator& comm, const Options& o) {
  const EvalResult r = evaluate(comm, o.eval);
  if (!comm.root()) return 0;
  const ReportHeader header{o.eval.data, r.model_text(), r.samples};
  const std::string report =
      r.classification()
          ? classification_report(header, r.loss_sum, r.correct, r.confusion, r.classes, o.json)
          : regression_report(header, r.loss_sum / r.samples, r.regression, r.sizes.back(), o.json);
  std::printf("%s", report.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mpi_tool_main<Options>("nn_eval", &argc, &argv, parse, run); }

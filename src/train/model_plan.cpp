// The model's widths and the memory check before it is built: the message
// names what the user can change (a label that makes many classes, the batch,
// the checkpoint, --hidden), whichever dominates the need.
#include "nn_dist/train/model_plan.hpp"

#include <algorithm>
#include <string>

#include "nn_dist/common/text.hpp"
#include "nn_dist/model/dropout.hpp"
#include "nn_dist/train/memory.hpp"
#include "nn_dist/train/run_files.hpp"

namespace nn_dist {

long output_width(const TrainingSet& set) {
  switch (set.loss) {
    case Loss::kSoftmax: return set.classes;
    case Loss::kLogistic: return 1;
    case Loss::kMse: return set.info.target_width;
  }
  return 0;
}

std::vector<long> planned_sizes(const Config& config, const TrainingSet& set) {
  std::vector<long> sizes{set.info.features};
  sizes.insert(sizes.end(), config.hidden_widths.begin(), config.hidden_widths.end());
  sizes.push_back(output_width(set));
  return sizes;
}

long model_batch(const TrainingSet& set) { return std::max<long>(set.batch, 256); }

void require_model_memory(const Communicator& comm, const Config& config, const TrainingSet& set,
                          const std::vector<long>& sizes, Activation hidden, bool from_checkpoint) {
  const int states = static_cast<int>(optimizer_state_names(config.optimizer).size());
  const long max_batch = model_batch(set);
  // Rates that do not fit the hidden layers are refused later, with the model.
  const std::vector<double>& given = config.dropout_rates;
  const int layers = static_cast<int>(sizes.size()) - 2;
  const std::vector<double> dropout =
      given.size() == 1 || static_cast<int>(given.size()) == layers ? dropout_rates(given, layers) : std::vector<double>{};
  const ModelMemory need = model_memory(sizes, max_batch, states, keeps_derivative(hidden), dropout,
                                        config.precision == Precision::kBf16);
  const std::string model =
      "the model " + sizes_string(sizes) + " (" + fmt("%.3g", need.parameter_count) + " parameters)";
  std::string what;
  if (set.loss == Loss::kSoftmax && sizes.back() > 2 && sizes.back() == *std::max_element(sizes.begin(), sizes.end())) {
    what = "--data " + config.data + ": label " + std::to_string(sizes.back() - 1) + " makes " +
           std::to_string(sizes.back()) + " classes; " + model;
  } else if (need.activation_bytes > need.parameter_bytes) {
    const bool global = config.global_batch_size > 0;
    what = std::string(global ? "--global-batch-size " : "--batch-size ") +
           std::to_string(global ? config.global_batch_size : config.batch_size) + ": batches of " +
           std::to_string(max_batch) + " samples through " + model;
  } else if (from_checkpoint && !config.hidden_given) {
    what = checkpoint_flag(config) + ": " + model;
  } else {
    what = "--hidden " + config.hidden + ": " + model;
  }
  require_memory(need.total(), memory_per_rank(comm.node_size()), comm.node_size(), what);
}

}  // namespace nn_dist

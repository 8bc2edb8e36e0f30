// Checkpoint writer and readers. Tensors are stored row-major as HDF5 wants,
// so W{l} reads in h5py/PyTorch with the shape of nn.Linear.weight. Readers
// check every shape, type, range and value, so a damaged or hand-edited file
// is one clear error, never a model trained from garbage.
#include "nn_dist/io/checkpoint.hpp"

#include <algorithm>
#include <limits>

#include "h5util.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/files.hpp"

namespace nn_dist {

namespace {

// Writes the tensors of one flat buffer as W1, b1, ... into group `group`.
void write_tensors(hid_t group, const Layout& layout, const float* flat) {
  std::vector<float> row_major;
  for (int l = 0; l < layout.num_layers(); ++l) {
    const TensorSlot& w = layout.weight(l);
    row_major.resize(w.size());
    for (long i = 0; i < w.rows; ++i) {
      for (long j = 0; j < w.cols; ++j) row_major[i * w.cols + j] = flat[w.offset + j * w.rows + i];
    }
    const std::string index = std::to_string(l + 1);
    h5::write_floats(group, "W" + index, {static_cast<hsize_t>(w.rows), static_cast<hsize_t>(w.cols)},
                     row_major.data());
    const TensorSlot& b = layout.bias(l);
    h5::write_floats(group, "b" + index, {static_cast<hsize_t>(b.rows)}, flat + b.offset);
  }
}

// Reads W1, b1, ... of `group_name`; each must have exactly the shape the
// layout gives (a transposed W1 has the right count but is refused) and only
// finite values.
void read_tensors(hid_t group, const std::string& what, const std::string& group_name, const Layout& layout,
                  float* flat) {
  const std::string source = "/model 'sizes' (layers " + sizes_string(layout.sizes()) + ")";
  for (int l = 0; l < layout.num_layers(); ++l) {
    const std::string index = std::to_string(l + 1);
    const TensorSlot& w = layout.weight(l);
    const TensorSlot& b = layout.bias(l);
    const std::vector<float> wv =
        h5::read_tensor(group, "W" + index, what, group_name + "/W" + index,
                        {static_cast<hsize_t>(w.rows), static_cast<hsize_t>(w.cols)}, source);
    const std::vector<float> bv =
        h5::read_tensor(group, "b" + index, what, group_name + "/b" + index, {static_cast<hsize_t>(b.rows)}, source);
    for (long i = 0; i < w.rows; ++i) {
      for (long j = 0; j < w.cols; ++j) flat[w.offset + j * w.rows + i] = wv[i * w.cols + j];
    }
    std::copy(bv.begin(), bv.end(), flat + b.offset);
  }
}

h5::Handle open_group(hid_t file, const std::string& name, const std::string& what) {
  if (!h5::exists(file, name)) throw Error(what + ": not an nn_dist checkpoint (no '" + name + "' group)");
  hid_t g = H5Gopen2(file, name.c_str(), H5P_DEFAULT);
  if (g < 0) throw Error(what + ": '" + name + "' is not a group");
  return h5::Handle(g, H5Gclose);
}

h5::Handle create_group(hid_t file, const std::string& name) {
  return h5::Handle(H5Gcreate2(file, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
}

// An integer attribute that must lie in [low, high].
long long read_int_in_range(hid_t loc, const std::string& where, const std::string& name, const std::string& what,
                            long long low, long long high) {
  const long long v = h5::read_attr_int(loc, name, what);
  if (v < low || v > high) {
    throw Error(what + ": " + where + " attribute '" + name + "' is " + std::to_string(v) + "; it must be " +
                (v < low ? "at least " + std::to_string(low) : "at most " + std::to_string(high)));
  }
  return v;
}

// A string attribute that must be one of the names `parse` accepts.
template <typename Parse>
std::string read_name(hid_t loc, const std::string& where, const std::string& name, const std::string& what,
                      Parse parse, const char* expected) {
  const std::string value = h5::read_attr_string(loc, name, what);
  try {
    parse(value);
  } catch (const Error&) {
    throw Error(what + ": " + where + " attribute '" + name + "' is '" + printable(value) + "' (expected " + expected +
                ")");
  }
  return value;
}

constexpr long long kMaxCount = std::numeric_limits<int64_t>::max() / 2;  // a step or epoch count, not garbage

}  // namespace

void write_checkpoint(const std::string& path, const Layout& layout, Activation hidden, Loss loss,
                      const float* params, Optimizer& optimizer, const TrainingState& state,
                      const std::string& what_given) {
  const std::string what = what_given.empty() ? "--checkpoint " + path : what_given;
  // The whole file is built in memory first: HDF5 never writes to the disk,
  // so a full disk is one checked write() below, not a failure deep inside HDF5.
  std::vector<char> image;
  try {
    h5::Handle file = h5::create_in_memory_file();
    h5::Handle model = create_group(file.get(), "model");
    write_tensors(model.get(), layout, params);
    std::vector<long long> sizes(layout.sizes().begin(), layout.sizes().end());
    h5::write_attr_ints(model.get(), "sizes", sizes);
    h5::write_attr_string(model.get(), "activation", activation_name(hidden));
    h5::write_attr_string(model.get(), "loss", loss_name(loss));

    h5::Handle opt = create_group(file.get(), "optimizer");
    h5::write_attr_string(opt.get(), "name", optimizer_name(optimizer.options().kind));
    h5::write_attr_ints(opt.get(), "step", {optimizer.step()});
    const std::vector<std::string> names = optimizer.state_names();
    const std::vector<float*> buffers = optimizer.state();
    for (std::size_t i = 0; i < names.size(); ++i) {
      h5::Handle g = create_group(opt.get(), names[i]);
      write_tensors(g.get(), layout, buffers[i]);
    }

    h5::Handle training = create_group(file.get(), "training");
    h5::write_attr_ints(training.get(), "epoch", {state.epoch});
    h5::write_attr_ints(training.get(), "global_step", {state.global_step});
    h5::write_attr_ints(training.get(), "seed", {static_cast<long long>(state.seed)});
    h5::write_attr_ints(training.get(), "ranks", {state.ranks});
    h5::write_attr_string(training.get(), "options", state.options);
    image = h5::file_image(file.get());
  } catch (const Error& e) {
    throw Error(what + ": cannot build the checkpoint (" + std::string(e.what()) + "); the old checkpoint is unchanged");
  }
  write_file_atomically(path, image.data(), image.size(), what);
}

CheckpointModel read_checkpoint_model(const std::string& path, const std::string& what) {
  h5::Handle file = h5::open_file(path, what);
  h5::Handle model = open_group(file.get(), "model", what);
  CheckpointModel out;
  for (long long d : h5::read_attr_ints(model.get(), "sizes", what)) {
    if (d <= 0 || d > kMaxWidth) {
      throw Error(what + ": /model attribute 'sizes' has width " + std::to_string(d) + ", outside 1.." +
                  std::to_string(kMaxWidth));
    }
    out.sizes.push_back(static_cast<long>(d));
  }
  if (out.sizes.size() < 2) throw Error(what + ": /model 'sizes' needs at least two layer widths");
  out.activation = read_name(model.get(), "/model", "activation", what, parse_activation,
                             "relu, tanh, sigmoid or identity");
  out.loss = read_name(model.get(), "/model", "loss", what, parse_loss, "softmax, logistic or mse");
  return out;
}

void read_checkpoint_params(const std::string& path, const std::string& what, const Layout& layout, float* params) {
  h5::Handle file = h5::open_file(path, what);
  h5::Handle model = open_group(file.get(), "model", what);
  std::fill(params, params + layout.total(), 0.0f);
  read_tensors(model.get(), what, "/model", layout, params);
}

TrainingState read_checkpoint_state(const std::string& path, const std::string& what, const Layout& layout,
                                    Optimizer& optimizer) {
  h5::Handle file = h5::open_file(path, what);
  h5::Handle opt = open_group(file.get(), "optimizer", what);
  h5::Handle training = open_group(file.get(), "training", what);
  const std::string name =
      read_name(opt.get(), "/optimizer", "name", what, parse_optimizer, "sgd or adam");
  if (name != optimizer_name(optimizer.options().kind)) {
    throw Error(what + ": was written by optimizer '" + name + "', but this run uses --optimizer " +
                optimizer_name(optimizer.options().kind));
  }
  const std::vector<std::string> names = optimizer.state_names();
  const std::vector<float*> buffers = optimizer.state();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (!h5::exists(opt.get(), names[i])) {
      throw Error(what + ": has no /optimizer/" + names[i] + " (was it written with other --momentum?)");
    }
    h5::Handle g = open_group(opt.get(), names[i], what);
    read_tensors(g.get(), what, "/optimizer/" + names[i], layout, buffers[i]);
    if (names[i] == "exp_avg_sq" &&
        std::any_of(buffers[i], buffers[i] + optimizer.size(), [](float v) { return v < 0; })) {
      throw Error(what + ": /optimizer/exp_avg_sq holds negative values (a sum of squares cannot be negative)");
    }
  }
  optimizer.set_step(read_int_in_range(opt.get(), "/optimizer", "step", what, 0, kMaxCount));
  TrainingState state;
  state.epoch = read_int_in_range(training.get(), "/training", "epoch", what, 0, kMaxCount);
  state.global_step = read_int_in_range(training.get(), "/training", "global_step", what, 0, kMaxCount);
  state.seed = static_cast<uint64_t>(
      read_int_in_range(training.get(), "/training", "seed", what, 0, std::numeric_limits<int64_t>::max()));
  state.ranks = read_int_in_range(training.get(), "/training", "ranks", what, 1, std::numeric_limits<int>::max());
  state.options = h5::read_attr_string(training.get(), "options", what);
  return state;
}

}  // namespace nn_dist

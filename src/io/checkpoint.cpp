// Checkpoint writer and readers. Tensors are stored row-major as HDF5 wants,
// so W{l} reads in h5py/PyTorch with the shape of nn.Linear.weight.
#include "nn_dist/io/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "h5util.hpp"
#include "nn_dist/common/error.hpp"

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

void read_tensors(hid_t group, const std::string& what, const std::string& group_name, const Layout& layout,
                  float* flat) {
  for (int l = 0; l < layout.num_layers(); ++l) {
    const std::string index = std::to_string(l + 1);
    const TensorSlot& w = layout.weight(l);
    const TensorSlot& b = layout.bias(l);
    const std::vector<float> wv = h5::read_floats(group, "W" + index, what);
    const std::vector<float> bv = h5::read_floats(group, "b" + index, what);
    if (wv.size() != w.size() || bv.size() != b.size()) {
      throw Error(what + ": " + group_name + "/W" + index + " or b" + index + " does not have the shape that " +
                  "'sizes' gives");
    }
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

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

void write_checkpoint(const std::string& path, const Layout& layout, Activation hidden, Loss loss,
                      const float* params, Optimizer& optimizer, const TrainingState& state) {
  namespace fs = std::filesystem;
  h5::quiet_errors();
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string tmp = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()))).string();
  {
    h5::Handle file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (!file.valid()) throw Error("--checkpoint " + path + ": cannot create '" + tmp + "' (folder missing or not writable?)");
    try {
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
      if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) throw Error("flush failed");
    } catch (const Error& e) {
      file.reset();
      std::remove(tmp.c_str());
      throw Error("--checkpoint " + path + ": writing failed (" + std::string(e.what()) + "); the old checkpoint is unchanged");
    }
  }
  fsync_path(tmp, O_RDONLY);
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error("--checkpoint " + path + ": cannot rename the new checkpoint into place: " + ec.message());
  }
  fsync_path(dir.string(), O_RDONLY | O_DIRECTORY);
}

CheckpointModel read_checkpoint_model(const std::string& path, const std::string& what) {
  h5::Handle file = h5::open_file(path, what);
  h5::Handle model = open_group(file.get(), "model", what);
  CheckpointModel out;
  for (long long d : h5::read_attr_ints(model.get(), "sizes", what)) out.sizes.push_back(static_cast<long>(d));
  if (out.sizes.size() < 2) throw Error(what + ": /model 'sizes' needs at least two layer widths");
  for (long d : out.sizes) {
    if (d <= 0) throw Error(what + ": /model 'sizes' has a non-positive width");
  }
  out.activation = h5::read_attr_string(model.get(), "activation", what);
  out.loss = h5::read_attr_string(model.get(), "loss", what);
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
  const std::string name = h5::read_attr_string(opt.get(), "name", what);
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
  }
  optimizer.set_step(h5::read_attr_int(opt.get(), "step", what));
  TrainingState state;
  state.epoch = h5::read_attr_int(training.get(), "epoch", what);
  state.global_step = h5::read_attr_int(training.get(), "global_step", what);
  state.seed = static_cast<uint64_t>(h5::read_attr_int(training.get(), "seed", what));
  state.ranks = h5::read_attr_int(training.get(), "ranks", what);
  state.options = h5::read_attr_string(training.get(), "options", what);
  return state;
}

}  // namespace nn_dist

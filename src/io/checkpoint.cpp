// Checkpoint writer and readers. Tensors are stored row-major as HDF5 wants,
// so W{l} reads in h5py/PyTorch with the shape of nn.Linear.weight. Readers
// check every shape, type, range and value, so a damaged or hand-edited file
// is one clear error, never a model trained from garbage.
#include "nn_dist/io/checkpoint.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>

#include "io/h5util.hpp"
#include "io/names_h5.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/dataset.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/model/gemm.hpp"

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

// A string attribute that must be one of the names in `names`.
template <typename Value>
std::string read_name(hid_t loc, const std::string& where, const std::string& name, const std::string& what,
                      const NameTable<Value>& names) {
  const std::string value = h5::read_attr_string(loc, name, what);
  Value unused{};
  if (!names.find(value, &unused)) {
    throw Error(what + ": " + where + " attribute '" + name + "' is '" + printable(value) + "' (expected " +
                names.expected() + ")");
  }
  return value;
}

// A run id as written (new_run_id) or as a user may have set it by hand: short and printable.
bool valid_run_id(const std::string& id) {
  const auto ok = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; };
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), ok);
}

constexpr long long kMaxCount = std::numeric_limits<int64_t>::max() / 2;  // a step or epoch count, not garbage

// The header in the user block (see verify_checkpoint_file).
constexpr std::size_t kHeaderBytes = 512;
constexpr const char* kMagic = "nn_dist checkpoint\n";

// A 64-bit checksum: four lanes of multiply-rotate over 8-byte words, then a
// final mix. Not cryptographic: it finds damaged, truncated or edited bytes.
class Checksum {
 public:
  // Bytes in order; every call but the last must pass a multiple of 32 bytes.
  void update(const unsigned char* p, std::size_t n) {
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
      for (int j = 0; j < 4; ++j) lane_[j] = round(lane_[j], word(p + i + 8 * j));
    }
    for (; i < n; ++i) tail_ = tail_ * 0x100000001B3ull + p[i] + 1;
    length_ += n;
  }
  uint64_t finish() const {
    uint64_t h = length_ * kPrime1;
    for (int j = 0; j < 4; ++j) h = (rotl(h ^ round(0, lane_[j]), 27) * kPrime1) + kPrime2;
    h ^= tail_ * kPrime2;
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
  }

 private:
  static constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ull, kPrime2 = 0xC2B2AE3D27D4EB4Full;
  static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
  static uint64_t round(uint64_t acc, uint64_t w) { return rotl(acc + w * kPrime2, 31) * kPrime1; }
  static uint64_t word(const unsigned char* p) {
    uint64_t w = 0;
    for (int b = 7; b >= 0; --b) w = (w << 8) | p[b];  // little-endian on every host
    return w;
  }
  uint64_t lane_[4] = {kPrime1 + kPrime2, kPrime2, 0, 0 - kPrime1};
  uint64_t tail_ = 0;
  uint64_t length_ = 0;
};

std::string hex64(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
  return text;
}

constexpr const char* kRunLine = "\nrun ";  // the header's line naming the run, if any

// Writes the header into the image's user block.
void seal(std::vector<char>* image, const std::string& run_id) {
  Checksum sum;
  sum.update(reinterpret_cast<const unsigned char*>(image->data()) + kHeaderBytes, image->size() - kHeaderBytes);
  const std::string header = std::string(kMagic) + "bytes " + std::to_string(image->size()) + "\nchecksum " +
                             hex64(sum.finish()) + " (of the bytes after the first " + std::to_string(kHeaderBytes) +
                             ")" + (run_id.empty() ? "" : kRunLine + run_id) + "\n";
  std::fill(image->begin(), image->begin() + kHeaderBytes, '\0');
  std::copy(header.begin(), header.end(), image->begin());
}

// The learning-rate flags in /training (see TrainingState).
void write_schedule(hid_t training, const TrainingState& state) {
  const ScheduleOptions& o = state.schedule;
  h5::write_attr_string(training, "lr_schedule", lr_schedule_name(o.schedule));
  h5::write_attr_doubles(training, "lr", {state.lr});
  h5::write_attr_doubles(training, "lr_peak", {state.lr_peak});
  h5::write_attr_doubles(training, "warmup_epochs", {o.warmup_epochs});
  if (!o.decay_epochs.empty()) h5::write_attr_doubles(training, "lr_decay_epochs", o.decay_epochs);
  h5::write_attr_doubles(training, "lr_decay_factor", {o.decay_factor});
  h5::write_attr_doubles(training, "lr_min", {o.lr_min});
  h5::write_attr_ints(training, "total_epochs", {o.epochs});
  h5::write_attr_string(training, "lr_scaling", lr_scaling_name(o.scaling));
  h5::write_attr_ints(training, "lr_reference_batch", {o.reference_batch});
  if (o.schedule == LrSchedule::kPlateau) {
    h5::write_attr_ints(training, "plateau_patience", {o.plateau_patience});
    h5::write_attr_doubles(training, "plateau_factor", {o.plateau_factor});
    h5::write_attr_doubles(training, "plateau_min_lr", {o.plateau_min_lr});
  }
}

// Early stopping's and the plateau's states in /training (see TrainingState).
void write_monitor(hid_t training, const TrainingState& state) {
  if (!state.has_early_stopping && !state.has_plateau) return;
  h5::write_attr_string(training, "monitor", monitor_name(state.monitor));
  if (state.has_early_stopping) {
    const EarlyStoppingState& e = state.early_stopping;
    h5::write_attr_doubles(training, "early_stopping_best", {e.best});
    h5::write_attr_ints(training, "early_stopping_best_epoch", {e.best_epoch});
    h5::write_attr_ints(training, "early_stopping_wait", {e.wait});
  }
  if (state.has_plateau) {
    const PlateauState& p = state.plateau;
    h5::write_attr_doubles(training, "plateau_lr", {p.lr});
    h5::write_attr_doubles(training, "plateau_best", {p.best});
    h5::write_attr_ints(training, "plateau_bad_epochs", {p.bad_epochs});
  }
}

// One float64 attribute that is not NaN (a best value is +-inf before the first epoch).
double read_not_nan(hid_t loc, const std::string& name, const std::string& what) {
  const std::vector<double> v = h5::read_attr_doubles(loc, name, what);
  if (v.size() != 1 || std::isnan(v[0])) {
    throw Error(what + ": /training attribute '" + name + "' must hold one number (not NaN)");
  }
  return v[0];
}

// One float64 attribute, finite and not negative.
double read_nonnegative(hid_t loc, const std::string& name, const std::string& what) {
  const std::vector<double> v = h5::read_attr_doubles(loc, name, what);
  if (v.size() != 1 || !std::isfinite(v[0]) || v[0] < 0) {
    throw Error(what + ": /training attribute '" + name + "' must hold one finite number not below 0");
  }
  return v[0];
}

void read_schedule(hid_t training, const std::string& what, TrainingState* state) {
  ScheduleOptions& o = state->schedule;
  const std::string where = "/training";
  o.schedule = parse_lr_schedule(read_name(training, where, "lr_schedule", what, lr_schedule_names()));
  o.scaling = parse_lr_scaling(read_name(training, where, "lr_scaling", what, lr_scaling_names()));
  state->lr = read_nonnegative(training, "lr", what);
  state->lr_peak = read_nonnegative(training, "lr_peak", what);
  o.warmup_epochs = read_nonnegative(training, "warmup_epochs", what);
  if (H5Aexists(training, "lr_decay_epochs") > 0) {
    o.decay_epochs = h5::read_attr_doubles(training, "lr_decay_epochs", what);
    if (!std::all_of(o.decay_epochs.begin(), o.decay_epochs.end(), [](double e) { return std::isfinite(e); })) {
      throw Error(what + ": /training attribute 'lr_decay_epochs' holds a value that is not a finite number");
    }
  }
  o.decay_factor = read_nonnegative(training, "lr_decay_factor", what);
  o.lr_min = read_nonnegative(training, "lr_min", what);
  o.epochs = read_int_in_range(training, where, "total_epochs", what, 1, kMaxCount);
  o.reference_batch = read_int_in_range(training, where, "lr_reference_batch", what, 1, kMaxCount);
  if (H5Aexists(training, "plateau_patience") > 0) {
    o.plateau_patience = static_cast<long>(read_int_in_range(training, where, "plateau_patience", what, 0, kMaxCount));
    o.plateau_factor = read_nonnegative(training, "plateau_factor", what);
    o.plateau_min_lr = read_nonnegative(training, "plateau_min_lr", what);
  }
  state->has_schedule = true;
}

void read_monitor(hid_t training, const std::string& what, TrainingState* state) {
  const std::string where = "/training";
  if (H5Aexists(training, "monitor") <= 0) return;
  state->monitor = parse_monitor(read_name(training, where, "monitor", what, monitor_names()));
  if (H5Aexists(training, "early_stopping_best") > 0) {
    EarlyStoppingState& e = state->early_stopping;
    e.best = read_not_nan(training, "early_stopping_best", what);
    e.best_epoch = read_int_in_range(training, where, "early_stopping_best_epoch", what, 0, kMaxCount);
    e.wait = static_cast<long>(read_int_in_range(training, where, "early_stopping_wait", what, 0, kMaxCount));
    state->has_early_stopping = true;
  }
  if (H5Aexists(training, "plateau_lr") > 0) {
    PlateauState& p = state->plateau;
    p.lr = read_nonnegative(training, "plateau_lr", what);
    p.best = read_not_nan(training, "plateau_best", what);
    p.bad_epochs = static_cast<long>(read_int_in_range(training, where, "plateau_bad_epochs", what, 0, kMaxCount));
    state->has_plateau = true;
  }
}

// /model: the parameters and what the network is.
void write_model(hid_t file, const Layout& layout, const ActivationFn& hidden, Loss loss, const float* params,
                 const TrainingState& state) {
  h5::Handle model = create_group(file, "model");
  write_tensors(model.get(), layout, params);
  std::vector<long long> sizes(layout.sizes().begin(), layout.sizes().end());
  h5::write_attr_ints(model.get(), "sizes", sizes);
  h5::write_attr_string(model.get(), "activation", activation_name(hidden.kind));
  if (hidden.kind == Activation::kLeakyRelu) h5::write_attr_doubles(model.get(), "leaky_slope", {hidden.leaky_slope});
  h5::write_attr_string(model.get(), "loss", loss_name(loss));
  write_names(model.get(), state.names);
}

// /optimizer: its name, step and state buffers.
void write_optimizer(hid_t file, const Layout& layout, Optimizer& optimizer) {
  h5::Handle opt = create_group(file, "optimizer");
  h5::write_attr_string(opt.get(), "name", optimizer_name(optimizer.options().kind));
  h5::write_attr_ints(opt.get(), "step", {optimizer.step()});
  const std::vector<std::string> names = optimizer.state_names();
  const std::vector<float*> buffers = optimizer.state();
  for (std::size_t i = 0; i < names.size(); ++i) {
    h5::Handle g = create_group(opt.get(), names[i]);
    write_tensors(g.get(), layout, buffers[i]);
  }
}

// /training: the run, its position and the state of its schedules; /best and /preprocess.
void write_training(hid_t file, const Layout& layout, const TrainingState& state) {
  h5::Handle training = create_group(file, "training");
  h5::write_attr_ints(training.get(), "epoch", {state.epoch});
  h5::write_attr_ints(training.get(), "global_step", {state.global_step});
  h5::write_attr_ints(training.get(), "seed", {static_cast<long long>(state.seed)});
  h5::write_attr_ints(training.get(), "ranks", {state.ranks});
  h5::write_attr_string(training.get(), "options", state.options);
  h5::write_attr_ints(training.get(), "epoch_step", {state.epoch_step});
  const EpochSums& sums = state.epoch_sums;
  h5::write_attr_doubles(training.get(), "epoch_sums", {sums.loss, sums.correct, sums.count});
  h5::write_attr_ints(training.get(), "global_batch", {state.global_batch});
  h5::write_attr_ints(training.get(), "accumulate_steps", {state.accumulate_steps});
  h5::write_attr_ints(training.get(), "samples", {state.samples});
  if (!state.sample_order.empty()) h5::write_attr_string(training.get(), "sample_order", state.sample_order);
  if (!state.precision.empty()) h5::write_attr_string(training.get(), "precision", state.precision);
  if (!state.run_id.empty()) h5::write_attr_string(training.get(), "run_id", state.run_id);
  if (state.has_schedule) write_schedule(training.get(), state);
  write_monitor(training.get(), state);
  if (state.best_params != nullptr) {
    h5::Handle best = create_group(file, "best");
    write_tensors(best.get(), layout, state.best_params);
    h5::write_attr_ints(best.get(), "epoch", {state.early_stopping.best_epoch});
  }
  const Standardization& st = state.standardization;
  if (!st.empty()) {
    h5::Handle pre = create_group(file, "preprocess");
    h5::write_attr_string(pre.get(), "kind", "standardize");
    const std::vector<hsize_t> shape{static_cast<hsize_t>(st.features())};
    h5::write_doubles(pre.get(), "mean", shape, st.mean.data());
    h5::write_doubles(pre.get(), "scale", shape, st.scale.data());
  }
}

}  // namespace

void write_checkpoint(const std::string& path, const Layout& layout, const ActivationFn& hidden, Loss loss,
                      const float* params, Optimizer& optimizer, const TrainingState& state,
                      const std::string& what_given) {
  const std::string what = what_given.empty() ? "--checkpoint " + path : what_given;
  // The whole file is built in memory first: HDF5 never writes to the disk,
  // so a full disk is one checked write() below, not a failure deep inside HDF5.
  std::vector<char> image;
  try {
    std::lock_guard<std::mutex> lock(hdf5_mutex());  // a streaming reader may be reading
    h5::Handle file = h5::create_in_memory_file(kHeaderBytes);
    write_model(file.get(), layout, hidden, loss, params, state);
    write_optimizer(file.get(), layout, optimizer);
    write_training(file.get(), layout, state);
    // The image holds the HDF5 file from its superblock on; the header goes in front.
    const std::vector<char> hdf5 = h5::file_image(file.get());
    image.assign(kHeaderBytes, '\0');
    image.insert(image.end(), hdf5.begin(), hdf5.end());
    seal(&image, state.run_id);
  } catch (const Error& e) {
    throw Error(what + ": cannot build the checkpoint (" + std::string(e.what()) + "); the old checkpoint is unchanged");
  }
  write_file_atomically(path, image.data(), image.size(), what);
}

std::string checkpoint_run_id(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return "";  // a FIFO would block the read
  std::ifstream in(path, std::ios::binary);
  char block[kHeaderBytes] = {};
  in.read(block, sizeof block);
  const std::string header(block, strnlen(block, static_cast<std::size_t>(in.gcount())));
  if (header.rfind(kMagic, 0) != 0) return "";
  const std::size_t at = header.find(kRunLine);
  if (at == std::string::npos) return "";
  const std::size_t from = at + std::strlen(kRunLine);
  const std::string id = header.substr(from, header.find('\n', from) - from);
  return valid_run_id(id) ? id : "";
}

std::string new_run_id() {
  std::random_device source;
  const uint64_t id = (static_cast<uint64_t>(source()) << 32) ^ source();
  return hex64(id);
}

bool verify_checkpoint_file(const std::string& path, const std::string& what) {
  require_input_file(path, what);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw Error(what + ": cannot be opened (" + std::string(std::strerror(errno)) + ")");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(f, std::fclose);
  std::vector<unsigned char> block(kHeaderBytes);
  const std::size_t got = std::fread(block.data(), 1, kHeaderBytes, f);
  const std::string magic(kMagic);
  if (got < magic.size() || std::memcmp(block.data(), magic.data(), magic.size()) != 0) return false;
  const std::string header(reinterpret_cast<const char*>(block.data()), strnlen(reinterpret_cast<const char*>(block.data()), got));
  unsigned long long bytes = 0;
  char hex[17] = {};
  if (std::sscanf(header.c_str() + magic.size(), "bytes %llu\nchecksum %16[0-9a-f]", &bytes, hex) != 2) {
    throw Error(what + ": its nn_dist header is damaged (no length or checksum in the first " +
                std::to_string(kHeaderBytes) + " bytes)");
  }
  Checksum sum;
  std::vector<unsigned char> chunk(1 << 20);  // a multiple of 32
  uint64_t length = got;
  for (std::size_t n; (n = std::fread(chunk.data(), 1, chunk.size(), f)) > 0;) {
    sum.update(chunk.data(), n);
    length += n;
    if (n < chunk.size()) break;
  }
  if (std::ferror(f)) throw Error(what + ": read failed (" + std::string(std::strerror(errno)) + ")");
  if (length != bytes) {
    throw Error(what + ": is " + (length < bytes ? "truncated" : "longer than written") + ": it holds " +
                std::to_string(length) + " bytes, its header says " + std::to_string(bytes) +
                " (an interrupted copy or a damaged disk?)");
  }
  if (hex64(sum.finish()) != hex) {
    throw Error(what + ": is damaged: its bytes do not match the checksum in its header (changed after nn_dist "
                "wrote it, or a disk or copy error)");
  }
  return true;
}

CheckpointModel read_checkpoint_model(const std::string& path, const std::string& what) {
  verify_checkpoint_file(path, what);
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
  out.activation = read_name(model.get(), "/model", "activation", what, activation_names());
  if (out.activation == activation_name(Activation::kLeakyRelu)) {
    const std::vector<double> slope = h5::read_attr_doubles(model.get(), "leaky_slope", what + ": /model");
    if (slope.size() != 1 || !std::isfinite(slope[0]) || slope[0] <= 0) {
      throw Error(what + ": /model attribute 'leaky_slope' must hold one positive finite number");
    }
    out.leaky_slope = slope[0];
  }
  out.loss = read_name(model.get(), "/model", "loss", what, loss_names());
  out.names = read_names(model.get(), what, "/model/");
  require_names_fit(out.names, out.sizes.front(), out.loss == "softmax" ? out.sizes.back() : 0, what, "/model/");
  return out;
}

void read_checkpoint_params(const std::string& path, const std::string& what, const Layout& layout, float* params) {
  h5::Handle file = h5::open_file(path, what);
  h5::Handle model = open_group(file.get(), "model", what);
  std::fill(params, params + layout.total(), 0.0f);
  read_tensors(model.get(), what, "/model", layout, params);
}

Standardization read_checkpoint_standardization(const std::string& path, const std::string& what, long features) {
  verify_checkpoint_file(path, what);  // may be the first reader of the file (before read_checkpoint_model)
  h5::Handle file = h5::open_file(path, what);
  Standardization out;
  if (!h5::exists(file.get(), "preprocess")) return out;
  h5::Handle pre = open_group(file.get(), "preprocess", what);
  const std::string kind = h5::read_attr_string(pre.get(), "kind", what + ": /preprocess");
  if (kind != "standardize") {
    throw Error(what + ": /preprocess attribute 'kind' is '" + printable(kind) + "' (expected standardize)");
  }
  const std::vector<hsize_t> shape{static_cast<hsize_t>(features)};
  const std::string source = "the data's " + std::to_string(features) + " features";
  out.mean = h5::read_tensor_f64(pre.get(), "mean", what, "/preprocess/mean", shape, source);
  out.scale = h5::read_tensor_f64(pre.get(), "scale", what, "/preprocess/scale", shape, source);
  for (double v : out.scale) {
    if (!(v > 0)) throw Error(what + ": /preprocess/scale holds a value that is not positive");
  }
  return out;
}

bool read_checkpoint_best(const std::string& path, const std::string& what, const Layout& layout, float* params) {
  h5::Handle file = h5::open_file(path, what);
  if (!h5::exists(file.get(), "best")) return false;
  h5::Handle best = open_group(file.get(), "best", what);
  std::fill(params, params + layout.total(), 0.0f);
  read_tensors(best.get(), what, "/best", layout, params);
  return true;
}

namespace {

// The /optimizer group `opt` into `optimizer`: the same optimizer, its state buffers (checked) and its step.
void read_optimizer_state(hid_t opt, const std::string& what, const Layout& layout, Optimizer& optimizer) {
  const std::string name = read_name(opt, "/optimizer", "name", what, optimizer_names());
  if (name != optimizer_name(optimizer.options().kind)) {
    throw Error(what + ": was written by optimizer '" + name + "', but this run uses --optimizer " +
                optimizer_name(optimizer.options().kind));
  }
  const std::vector<std::string> names = optimizer.state_names();
  const std::vector<float*> buffers = optimizer.state();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (!h5::exists(opt, names[i])) {
      throw Error(what + ": has no /optimizer/" + names[i] + " (was it written with other --momentum?)");
    }
    h5::Handle g = open_group(opt, names[i], what);
    read_tensors(g.get(), what, "/optimizer/" + names[i], layout, buffers[i]);
    if (names[i] == "exp_avg_sq" &&
        std::any_of(buffers[i], buffers[i] + optimizer.size(), [](float v) { return v < 0; })) {
      throw Error(what + ": /optimizer/exp_avg_sq holds negative values (a sum of squares cannot be negative)");
    }
  }
  optimizer.set_step(read_int_in_range(opt, "/optimizer", "step", what, 0, kMaxCount));
}

}  // namespace

std::string read_checkpoint_precision(const std::string& path, const std::string& what) {
  h5::Handle file = h5::open_file(path, what);
  if (H5Lexists(file.get(), "training", H5P_DEFAULT) <= 0) return "";
  h5::Handle training = open_group(file.get(), "training", what);
  if (H5Aexists(training.get(), "precision") <= 0) return "";
  return read_name(training.get(), "/training", "precision", what, precision_names());
}

TrainingState read_checkpoint_state(const std::string& path, const std::string& what, const Layout& layout,
                                    Optimizer& optimizer) {
  h5::Handle file = h5::open_file(path, what);
  h5::Handle opt = open_group(file.get(), "optimizer", what);
  h5::Handle training = open_group(file.get(), "training", what);
  read_optimizer_state(opt.get(), what, layout, optimizer);
  TrainingState state;
  state.epoch = read_int_in_range(training.get(), "/training", "epoch", what, 0, kMaxCount);
  state.global_step = read_int_in_range(training.get(), "/training", "global_step", what, 0, kMaxCount);
  state.seed = static_cast<uint64_t>(
      read_int_in_range(training.get(), "/training", "seed", what, 0, std::numeric_limits<int64_t>::max()));
  state.ranks = read_int_in_range(training.get(), "/training", "ranks", what, 1, std::numeric_limits<int>::max());
  state.options = h5::read_attr_string(training.get(), "options", what);
  // Added with mid-epoch checkpoints: older files have none and end epochs.
  const auto optional_int = [&](const char* name, long long low) -> int64_t {
    if (H5Aexists(training.get(), name) <= 0) return 0;
    return read_int_in_range(training.get(), "/training", name, what, low, kMaxCount);
  };
  state.epoch_step = optional_int("epoch_step", 0);
  state.global_batch = optional_int("global_batch", 0);
  state.accumulate_steps = std::max<int64_t>(1, optional_int("accumulate_steps", 1));  // older files: 1
  state.samples = optional_int("samples", 0);
  if (H5Aexists(training.get(), "lr_schedule") > 0) read_schedule(training.get(), what, &state);
  read_monitor(training.get(), what, &state);
  if (H5Aexists(training.get(), "sample_order") > 0) {
    state.sample_order = printable(h5::read_attr_string(training.get(), "sample_order", what), 120);
  }
  if (H5Aexists(training.get(), "precision") > 0) {
    state.precision = read_name(training.get(), "/training", "precision", what, precision_names());
  }
  if (H5Aexists(training.get(), "run_id") > 0) {
    state.run_id = h5::read_attr_string(training.get(), "run_id", what);
    if (!valid_run_id(state.run_id)) {
      throw Error(what + ": /training attribute 'run_id' is '" + printable(state.run_id, 80) +
                  "' (expected 1 to 64 letters, digits, '-' or '_')");
    }
  }
  if (H5Aexists(training.get(), "epoch_sums") > 0) {
    const std::vector<double> sums = h5::read_attr_doubles(training.get(), "epoch_sums", what);
    if (sums.size() != 3 || !std::all_of(sums.begin(), sums.end(), [](double v) { return std::isfinite(v); }) ||
        sums[1] < 0 || sums[2] < 0) {
      throw Error(what + ": /training attribute 'epoch_sums' must hold 3 finite values (loss, correct, count)");
    }
    state.epoch_sums = EpochSums{sums[0], sums[1], sums[2]};
  }
  return state;
}

}  // namespace nn_dist

// Distributed correctness at any rank count: the allreduced gradient is the
// single-process gradient of the union of the shards, N-rank training equals
// single-process training on the same global batches, ranks stay bit-identical,
// uneven shards finish, errors stop every rank, checkpoints and resume are exact,
// and the distributed step allocates nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>

#include "alloc_counter.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/io/dataset.hpp"
#include "nn_dist/train/memory.hpp"
#include "nn_dist/train/trainer.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

const Communicator& comm() {
  static const Communicator c;
  return c;
}

// A folder every rank sees (made by rank 0), removed by rank 0 at the end of
// the test once every rank is done with it (the barrier).
class SharedDir {
 public:
  explicit SharedDir(const std::string& tag) {
    if (comm().root()) {
      dir_.emplace(tag);
      path_ = dir_->str();
    }
    comm().broadcast(&path_);
  }
  ~SharedDir() { comm().barrier(); }  // then dir_, on rank 0, removes the folder
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::optional<testing::TempDir> dir_;
  std::string path_;
};

struct Data {
  Matrix<float> x;   // (d, n)
  Matrix<double> y;  // (1, n) labels
};

Data make_data(long n, long d, long classes, uint64_t seed) {
  Rng rng(seed);
  Data data;
  data.x.resize(d, n);
  data.y.resize(1, n);
  for (long j = 0; j < n; ++j) {
    for (long i = 0; i < d; ++i) data.x(i, j) = static_cast<float>(rng.normal());
    data.y(0, j) = static_cast<double>((data.x(0, j) > 0) + (data.x(1, j) > 0.5 ? 1 : 0)) ;
  }
  (void)classes;
  return data;
}

// Rank 0 writes the file; every rank returns once it exists.
Data write_data(const std::string& path, long n, long d, uint64_t seed) {
  Data data = make_data(n, d, 3, seed);
  if (comm().root()) write_dataset(path, data.x, data.y, true);
  comm().barrier();
  return data;
}

Config base_config(const std::string& data) {
  Config c;
  c.data = data;
  c.hidden = "8,6";
  c.hidden_widths = {8, 6};
  c.epochs = 3;
  c.batch_size = 4;
  c.optimizer.lr = 0.1;
  c.quiet = true;
  return c;
}

bool same_on_all_ranks(const FlatBuffer& params) {
  const std::vector<float> all = comm().allgather(params.data(), static_cast<int>(params.size()));
  bool same = true;
  for (int r = 1; r < comm().size(); ++r) {
    same = same && std::memcmp(all.data(), all.data() + r * params.size(), params.size() * sizeof(float)) == 0;
  }
  return same;
}

// A small softmax problem for the gradient-sum tests: n samples of d features,
// layers d-7-3, random parameters.
struct GradientCase {
  static constexpr long n = 23, d = 5;
  Data data;
  Layout layout{{d, 7, 3}};
  FlatBuffer params;
  std::vector<int32_t> labels;
  explicit GradientCase(uint64_t seed) : data(make_data(n, d, 3, seed)), labels(n) {
    testing::random_params(layout, seed, 0.5, params);
    for (long j = 0; j < n; ++j) labels[j] = static_cast<int32_t>(data.y(0, j));
  }
};

TEST(MpiGradientTest, AllreducedGradientEqualsUnionGradient) {
  const GradientCase g(8);
  const long n = g.n, d = g.d;
  const Data& data = g.data;
  const Layout& layout = g.layout;
  const FlatBuffer& params = g.params;
  const std::vector<int32_t>& labels = g.labels;

  // Single-process gradient of all n samples, in double.
  Mlp<double> whole(layout, Activation::kTanh, Loss::kSoftmax, n);
  std::vector<double> params_d(params.begin(), params.end()), grad_d(layout.total(), 0.0);
  const Matrix<double> xd = data.x.cast<double>();
  whole.forward(params_d.data(), xd.data(), n);
  const double loss = whole.loss_and_delta(labels.data(), nullptr).loss;
  whole.backward(params_d.data(), xd.data(), grad_d.data());

  struct Variant {
    AllreduceMode mode;
    bool overlap;
    std::size_t shared_buffers;
  };
  for (const Variant v : {Variant{AllreduceMode::kShared, true, 0}, Variant{AllreduceMode::kShared, true, 2},
                          Variant{AllreduceMode::kHierarchical, true, 0}, Variant{AllreduceMode::kHierarchical, true, 2},
                          Variant{AllreduceMode::kHierarchical, false, 0},
                          Variant{AllreduceMode::kHierarchical, false, 2},
                          Variant{AllreduceMode::kMpi, false, 0}}) {
    SCOPED_TRACE(allreduce_mode_name(v.mode) + (v.overlap ? " overlap" : "") + " buffers " +
                 std::to_string(v.shared_buffers));
    long offset = 0, count = 0;
    shard_range(n, comm().size(), comm().rank(), &offset, &count);
    Mlp<float> local(layout, Activation::kTanh, Loss::kSoftmax, count, /*piece_elements=*/9);
    FlatBuffer grad(layout.total(), 0.0f);
    const auto made = GradientSync::create(comm(), grad.data(), grad.size(), local.pieces(), /*bucket_bytes=*/64,
                                           v.overlap, v.mode, v.shared_buffers);
    GradientSync& sync = *made;
    const bool partial = sync.shared_buffer(0) != nullptr;  // each rank sums only its own part
    const bool equal_nodes = comm().min(comm().node_size()) == comm().max(comm().node_size());
    const bool one_node = comm().node_size() == comm().size();
    if (v.mode == AllreduceMode::kHierarchical) {  // needs nodes of equal size, else Open MPI's allreduce
      EXPECT_EQ(sync.mode(), equal_nodes ? AllreduceMode::kHierarchical : AllreduceMode::kMpi);
    }
    if (v.mode == AllreduceMode::kShared && !one_node) {  // shared memory cannot span nodes
      EXPECT_EQ(sync.mode(), equal_nodes ? AllreduceMode::kHierarchical : AllreduceMode::kMpi);
    }
    const bool shares = (sync.mode() == AllreduceMode::kShared || sync.mode() == AllreduceMode::kHierarchical);
    EXPECT_EQ(partial, v.shared_buffers > 0 && shares);
    const std::size_t own_begin = sync.own_begin(), own_end = sync.own_end();
    if (partial && sync.mode() == AllreduceMode::kShared) {
      EXPECT_EQ(own_begin % 16, 0u) << "parts start on a cache line";
    }
    local.forward(params.data(), data.x.data() + offset * d, count);
    const LossSums s = local.loss_and_delta(labels.data() + offset, nullptr);
    // The control values ride in the same sum: a stop seen by the odd ranks, a checkpoint due on rank 0.
    const int me = comm().rank();
    const double mine[kStepStats] = {s.loss, s.correct, static_cast<double>(count), me % 2 == 1 ? 1.0 : 0.0,
                                     me % 2 == 1 ? 0.25 * me : 0.0, me == 0 ? 1.0 : 0.0};
    sync.start_stats(mine);
    local.backward(params.data(), data.x.data() + offset * d, sync.backward_buffer(), &sync);
    const double* stats = sync.wait_stats();
    std::size_t covered = 0;
    FlatBuffer sums(layout.total(), 0.0f);  // as the optimizer would add them up
    std::vector<char> handed(layout.total(), 0);
    const bool one_range = own_end > own_begin;  // else (hierarchical) a part of every bucket
    sync.wait([&](std::size_t begin, std::size_t end, const float* first, const float* second) {
      if (one_range) {
        EXPECT_TRUE(begin >= own_begin && end <= own_end);
      }
      for (std::size_t i = begin; i < end; ++i) {
        sums[i] = second ? first[i] + second[i] : first[i];
        EXPECT_EQ(handed[i]++, 0) << "element " << i << " handed twice";
      }
      covered += end - begin;
    });
    EXPECT_EQ(covered, sync.own_elements());
    // Every rank handed an element holds the same bits of it: the largest and
    // smallest over the ranks agree (floats are exact as doubles; ranks not
    // handed it take -inf; the smallest is minus the largest of the negations).
    std::vector<double> high(layout.total()), low(layout.total());
    for (std::size_t i = 0; i < layout.total(); ++i) {
      high[i] = handed[i] ? sums[i] : -std::numeric_limits<double>::infinity();
      low[i] = handed[i] ? -static_cast<double>(sums[i]) : -std::numeric_limits<double>::infinity();
    }
    comm().max(high.data(), static_cast<int>(high.size()));
    comm().max(low.data(), static_cast<int>(low.size()));
    for (std::size_t i = 0; i < layout.total(); ++i) {
      if (handed[i]) {
        EXPECT_EQ(high[i], -low[i]) << "element " << i << " differs between ranks";
      }
    }
    double parts = static_cast<double>(covered);
    comm().sum(&parts, 1);
    // With parts, every element is handed to one rank of each node (on one node: once).
    const std::size_t nodes = static_cast<std::size_t>(comm().size() / comm().node_size());
    EXPECT_EQ(parts, static_cast<double>(layout.total() * (partial ? nodes : comm().size())));
    EXPECT_EQ(stats[kStatCount], static_cast<double>(n));
    EXPECT_NEAR(stats[kStatLoss], loss, 1e-4);
    const int odd = comm().size() / 2;
    double odd_seconds = 0;
    for (int r = 1; r < comm().size(); r += 2) odd_seconds += 0.25 * r;
    EXPECT_EQ(stats[kStatStopRanks], odd);
    EXPECT_EQ(stats[kStatStopSeconds], odd_seconds);
    EXPECT_EQ(stats[kStatCheckpointDue], 1.0);
    for (std::size_t i = 0; i < layout.total(); ++i) {
      if (!handed[i]) continue;
      EXPECT_NEAR(sums[i], grad_d[i], 1e-4 * std::max(1.0, std::abs(grad_d[i]))) << "element " << i;
    }
    if (sync.mode() == AllreduceMode::kHierarchical) {  // overlap: buckets as backprop finishes them; else one
      EXPECT_EQ(sync.num_buckets() > 2u, v.overlap) << sync.num_buckets() << " buckets";
    }
    if (v.mode == AllreduceMode::kShared && comm().size() == 1) {  // nothing to sum: MPI's one-rank allreduce
      EXPECT_EQ(sync.mode(), AllreduceMode::kMpi);
    }
  }
}

// --allreduce none (a benchmark of the scaling ceiling): the optimizer gets
// this rank's own gradient, bit for bit, while the loss sums still cover all ranks.
TEST(MpiGradientTest, NoneModeKeepsEachRanksOwnGradient) {
  const GradientCase g(9);
  const Layout& layout = g.layout;
  const FlatBuffer& params = g.params;
  long offset = 0, count = 0;
  shard_range(g.n, comm().size(), comm().rank(), &offset, &count);
  const float* x = g.data.x.data() + offset * g.d;
  const int32_t* labels = g.labels.data() + offset;

  Mlp<float> alone(layout, Activation::kTanh, Loss::kSoftmax, count);
  FlatBuffer own(layout.total(), 0.0f);
  alone.forward(params.data(), x, count);
  alone.loss_and_delta(labels, nullptr);
  alone.backward(params.data(), x, own.data());

  Mlp<float> local(layout, Activation::kTanh, Loss::kSoftmax, count);
  FlatBuffer grad(layout.total(), 0.0f);
  const auto made = GradientSync::create(comm(), grad.data(), grad.size(), local.pieces(), 64, true, AllreduceMode::kNone);
  GradientSync& sync = *made;
  EXPECT_EQ(sync.mode(), AllreduceMode::kNone);
  local.forward(params.data(), x, count);
  const LossSums s = local.loss_and_delta(labels, nullptr);
  const double mine[kStepStats] = {s.loss, s.correct, static_cast<double>(count)};
  sync.start_stats(mine);
  local.backward(params.data(), x, sync.backward_buffer(), &sync);
  EXPECT_EQ(sync.wait_stats()[2], static_cast<double>(g.n));
  FlatBuffer handed(layout.total(), 0.0f);
  sync.wait([&](std::size_t begin, std::size_t end, const float* first, const float* second) {
    EXPECT_EQ(second, nullptr);
    std::copy(first + begin, first + end, handed.data() + begin);
  });
  EXPECT_EQ(std::memcmp(handed.data(), own.data(), handed.size() * sizeof(float)), 0);
}

// Without shuffling, the global batch of step s: the union of the ranks'
// local batches of batch_of(r) samples, in rank order. x: (d, count); rows:
// each sample's row in the data, if given.
template <typename BatchOf>
void union_batch(const Data& data, long n, long s, BatchOf batch_of, Matrix<float>* x, std::vector<int32_t>* y,
                 std::vector<int64_t>* rows = nullptr) {
  const int p = comm().size();
  x->resize(data.x.rows(), 0);
  y->clear();
  if (rows) rows->clear();
  for (int r = 0; r < p; ++r) {
    long offset = 0, count = 0;
    shard_range(n, p, r, &offset, &count);
    const long b = batch_of(r);
    for (long j = offset + s * b; j < offset + std::min(count, (s + 1) * b); ++j) {
      x->conservativeResize(Eigen::NoChange, x->cols() + 1);
      x->col(x->cols() - 1) = data.x.col(j);
      y->push_back(static_cast<int32_t>(data.y(0, j)));
      if (rows) rows->push_back(j);
    }
  }
}

// Trains `steps` steps on `ranks` ranks without shuffling, with per-rank batch
// b(r), and checks the parameters against one process stepping through the
// same global batches: the union of the ranks' local batches. With dropout,
// the process draws each sample's mask from its row: the masks, and so the
// steps, do not depend on which rank holds a sample. In bf16 the trainer
// multiplies weights packed once a step by the ranks that update them, the
// process packs them for every product: a packing that missed an update
// moves the parameters by a whole step's change (here ~1e-2), far beyond
// what bf16's rounding of other sums makes of the ranks' float differences.
void check_against_single_process(long global_batch, double dropout = 0, Precision precision = Precision::kF32) {
  SharedDir dir("equiv");
  const long n = 61, d = 4, steps = 5;  // 5 steps fit in one epoch at up to 4 ranks
  const Data data = write_data(dir.file("d.h5"), n, d, 7);
  Config c = base_config(dir.file("d.h5"));
  c.shuffle = false;
  c.batch_size = 3;
  c.global_batch_size = global_batch;
  c.max_steps = steps;
  c.epochs = 1;
  c.optimizer.momentum = 0.9;
  c.optimizer.weight_decay = 0.01;
  c.dropout_rates = {dropout};
  c.precision = precision;
  Trainer trainer(comm(), c);
  trainer.run();
  ASSERT_EQ(trainer.global_step(), steps);

  const int p = comm().size();
  auto batch_of = [&](int r) { return global_batch > 0 ? global_batch / p + (r < global_batch % p ? 1 : 0) : 3L; };
  const Layout& layout = trainer.layout();
  FlatBuffer ref(layout.total());
  init_parameters(layout, Activation::kRelu, c.seed, ref.data());
  Optimizer sgd(c.optimizer, layout.total());
  Mlp<float> mlp(layout, Activation::kRelu, Loss::kSoftmax, n);
  mlp.set_dropout({dropout, dropout});
  FlatBuffer grad(layout.total(), 0.0f);
  Matrix<float> xb(d, 0);
  std::vector<int32_t> yb;
  std::vector<int64_t> rows;
  for (long s = 0; s < steps; ++s) {
    union_batch(data, n, s, batch_of, &xb, &yb, &rows);
    if (global_batch > 0) {
      ASSERT_EQ(xb.cols(), global_batch);
    }
    const DropoutDraw draw{DropoutKey{c.seed, 0, s}, rows.data()};
    mlp.forward(ref.data(), xb.data(), xb.cols(), &draw);
    mlp.loss_and_delta(yb.data(), nullptr);
    mlp.backward(ref.data(), xb.data(), grad.data());
    sgd.update(ref.data(), grad.data(), 1.0f / xb.cols(), 0, layout.total());
    sgd.finish_step();
  }
  const FlatBuffer params = trainer.params();
  const double tolerance = precision == Precision::kF32 ? 2e-5 : p == 1 ? 0 : 1e-3;
  for (std::size_t i = 0; i < layout.total(); ++i) {
    EXPECT_NEAR(params[i], ref[i], tolerance * std::max(1.0f, std::abs(ref[i]))) << "element " << i;
  }
}

TEST(MpiTrainingTest, NRanksEqualSingleProcessOnTheSameGlobalBatches) { check_against_single_process(0); }

TEST(MpiTrainingTest, Bf16NRanksEqualSingleProcessOnTheSameGlobalBatches) {
  if (!gemm_kernel_supported(GemmKernel::kAvx512Bf16)) GTEST_SKIP() << "this CPU has no bf16 products";
  check_against_single_process(0, 0, Precision::kBf16);
  check_against_single_process(7, 0.4, Precision::kBf16);
  set_gemm_kernel(GemmKernel::kAuto);
}

TEST(MpiTrainingTest, GlobalBatchSizeIsSplitOverTheRanks) { check_against_single_process(7); }

TEST(MpiTrainingTest, DropoutNRanksEqualSingleProcessOnTheSameGlobalBatches) {
  check_against_single_process(0, 0.4);
  check_against_single_process(7, 0.4);
}

// With a schedule (cosine after a fractional warmup, lr scaled with the
// global batch), every SGD step moves each parameter by lr_at(step) times the
// mean gradient of that step's global batch, and not by a neighbour's lr.
TEST(MpiTrainingTest, EachScheduledStepMovesTheParametersByItsLrTimesTheGradient) {
  SharedDir dir("schedule");
  const long n = 61, d = 4, b = 3;
  const Data data = write_data(dir.file("d.h5"), n, d, 13);
  Config c = base_config(dir.file("d.h5"));
  c.shuffle = false;  // step s of every epoch trains on the same global batch
  c.batch_size = b;
  c.epochs = 3;
  c.optimizer.lr = 0.4;
  c.schedule.schedule = LrSchedule::kCosine;
  c.schedule.epochs = c.epochs;
  c.schedule.warmup_epochs = 0.5;
  c.schedule.scaling = LrScaling::kLinear;
  c.schedule.reference_batch = 4;
  Trainer trainer(comm(), c);
  const long spe = trainer.steps_per_epoch();
  EXPECT_DOUBLE_EQ(trainer.peak_lr(), 0.4 * static_cast<double>(b * comm().size()) / 4);

  const Layout& layout = trainer.layout();
  Mlp<float> mlp(layout, Activation::kRelu, Loss::kSoftmax, n);
  FlatBuffer grad(layout.total(), 0.0f);
  Matrix<float> xb;
  std::vector<int32_t> yb;
  for (int64_t e = 0; e < c.epochs; ++e) {
    trainer.start_epoch(e);
    for (long s = 0; s < spe; ++s) {
      const int64_t k = e * spe + s;
      const FlatBuffer before = trainer.params();
      ASSERT_TRUE(trainer.train_step(s));
      const FlatBuffer after = trainer.params();
      union_batch(data, n, s, [&](int) { return b; }, &xb, &yb);
      mlp.forward(before.data(), xb.data(), xb.cols());
      mlp.loss_and_delta(yb.data(), nullptr);
      mlp.backward(before.data(), xb.data(), grad.data());
      const float scale = static_cast<float>(1.0 / static_cast<double>(xb.cols()));
      // Whether after = before - lr * mean gradient, up to float rounding (a
      // few ulps of the parameter) and the ranks' order of summing (1e-4).
      const auto moved_by = [&](double lr) {
        for (std::size_t i = 0; i < layout.total(); ++i) {
          const float delta = static_cast<float>(lr) * (grad[i] * scale);
          const float tolerance = 4 * std::numeric_limits<float>::epsilon() * std::abs(before[i]) + 1e-4f * std::abs(delta);
          if (!(std::abs(after[i] - (before[i] - delta)) <= tolerance)) return false;
        }
        return true;
      };
      const double lr = lr_at(c.schedule, trainer.peak_lr(), k, spe);
      EXPECT_TRUE(moved_by(lr)) << "step " << k << ": not moved by lr " << lr;
      const double next = lr_at(c.schedule, trainer.peak_lr(), k + 1, spe);
      if (std::abs(next - lr) > 0.01 * lr) {
        EXPECT_FALSE(moved_by(next)) << "step " << k << ": the test cannot tell lr " << lr << " from " << next;
      }
    }
  }
  // Closed-form spot checks of the lrs used: the first warmup step, the peak, the last step.
  const double peak = trainer.peak_lr(), ramp = 0.5 * static_cast<double>(spe);
  EXPECT_DOUBLE_EQ(lr_at(c.schedule, peak, 0, spe), peak / ramp);
  const int64_t last = 3 * spe - 1;
  const double p = (static_cast<double>(last) / static_cast<double>(spe) - 0.5) / 2.5;
  EXPECT_DOUBLE_EQ(lr_at(c.schedule, peak, last, spe), peak * (1 + std::cos(std::acos(-1.0) * p)) / 2);
}

TEST(MpiTrainingTest, ParametersAreBitIdenticalOnAllRanksAndAcrossRuns) {
  SharedDir dir("bitwise");
  write_data(dir.file("d.h5"), 101, 6, 3);
  Config c = base_config(dir.file("d.h5"));
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr = 0.01;
  c.bucket_mb = 0.0005;  // several buckets
  c.allreduce = AllreduceMode::kHierarchical;
  Trainer first(comm(), c);
  first.run();
  EXPECT_TRUE(same_on_all_ranks(first.params()));
  Trainer second(comm(), c);
  second.run();
  EXPECT_EQ(first.params(), second.params()) << "same seed and ranks must repeat bit for bit";

  // Other ways of summing (another bucket layout, one bucket, shared memory,
  // Open MPI's allreduce): the same on every rank, and equal within float tolerance.
  struct Variant {
    AllreduceMode mode;
    bool overlap;
    double bucket_mb;
  };
  for (const Variant v : {Variant{AllreduceMode::kHierarchical, true, 1},
                          Variant{AllreduceMode::kHierarchical, false, 1}, Variant{AllreduceMode::kShared, true, 1},
                          Variant{AllreduceMode::kMpi, true, 1}}) {
    SCOPED_TRACE(allreduce_mode_name(v.mode) + (v.overlap ? " overlap" : ""));
    Config other = c;
    other.bucket_mb = v.bucket_mb;
    other.overlap = v.overlap;
    other.allreduce = v.mode;
    Trainer t(comm(), other);
    t.run();
    const FlatBuffer params = t.params(), reference = first.params();
    EXPECT_TRUE(same_on_all_ranks(params));
    for (std::size_t i = 0; i < params.size(); ++i) {
      EXPECT_NEAR(params[i], reference[i], 1e-4 * std::max(1.0f, std::abs(reference[i])));
    }
  }
}

// --precision bf16, on each bf16 kernel this CPU runs: every rank holds the
// same bits, and the same run repeats them.
TEST(MpiTrainingTest, Bf16ParametersAreBitIdenticalOnAllRanksAndAcrossRuns) {
  SharedDir dir("bitwise_bf16");
  write_data(dir.file("d.h5"), 101, 6, 3);
  for (GemmKernel kernel : {GemmKernel::kAmx, GemmKernel::kAvx512Bf16}) {
    if (!gemm_kernel_supported(kernel)) continue;
    SCOPED_TRACE(gemm_kernel_name(kernel));
    Config c = base_config(dir.file("d.h5"));
    c.optimizer.kind = OptimizerKind::kAdam;
    c.optimizer.lr = 0.01;
    c.precision = Precision::kBf16;
    c.gemm = kernel;
    for (AllreduceMode mode : {AllreduceMode::kShared, AllreduceMode::kHierarchical}) {
      c.allreduce = mode;
      Trainer first(comm(), c);
      first.run();
      EXPECT_EQ(gemm_kernel(), kernel);
      EXPECT_TRUE(same_on_all_ranks(first.params()));
      Trainer second(comm(), c);
      second.run();
      EXPECT_EQ(first.params(), second.params()) << "same seed, ranks and kernel must repeat bit for bit";
    }
  }
  set_gemm_kernel(GemmKernel::kAuto);
}

TEST(MpiTrainingTest, UnevenShardsFinishWithEqualStepCounts) {
  SharedDir dir("uneven");
  const long n = 3 * comm().size() + 1;  // one rank holds one sample more
  write_data(dir.file("d.h5"), n, 3, 5);
  Config c = base_config(dir.file("d.h5"));
  c.batch_size = 2;
  c.epochs = 2;
  Trainer trainer(comm(), c);
  trainer.run();
  EXPECT_EQ(comm().min(static_cast<long>(trainer.global_step())), comm().max(static_cast<long>(trainer.global_step())));
  EXPECT_EQ(trainer.global_step(), 2 * ((n / comm().size() + (n % comm().size() ? 1 : 0) + 1) / 2));
  EXPECT_TRUE(same_on_all_ranks(trainer.params()));
}

TEST(MpiErrorTest, AnErrorOnOneRankStopsEveryRank) {
  const int last = comm().size() - 1;
  try {
    comm().agreed([&] {
      if (comm().rank() == last) throw Error("seen by rank " + std::to_string(last) + " only");
    });
    FAIL() << "no error";
  } catch (const AgreedError& e) {
    EXPECT_EQ(std::string(e.what()), "seen by rank " + std::to_string(last) + " only");
  }

  // A NaN in the last sample is in the last rank's shard only.
  SharedDir dir("nan");
  Data data = make_data(10, 3, 3, 1);
  data.x(2, 9) = std::numeric_limits<float>::infinity();
  if (comm().root()) write_dataset(dir.file("d.h5"), data.x, data.y, true);
  comm().barrier();
  try {
    Trainer trainer(comm(), base_config(dir.file("d.h5")));
    FAIL() << "no error";
  } catch (const AgreedError& e) {
    EXPECT_NE(std::string(e.what()).find("NaN or Inf value at sample 9"), std::string::npos) << e.what();
  }
}

TEST(MpiCheckpointTest, RoundTripAndBitwiseResume) {
  SharedDir dir("resume");
  write_data(dir.file("d.h5"), 57, 5, 11);
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdam, OptimizerKind::kAdamW}) {
    Config c = base_config(dir.file("d.h5"));
    c.optimizer.kind = kind;
    c.optimizer.momentum = 0.9;
    c.optimizer.lr = kind == OptimizerKind::kSgd ? 0.05 : 0.01;
    if (kind == OptimizerKind::kAdamW) c.optimizer.weight_decay = 0.05;
    c.epochs = 4;
    c.checkpoint = dir.file("straight.h5");
    Trainer straight(comm(), c);
    straight.run();

    // The checkpoint holds exactly the final parameters.
    FlatBuffer saved(straight.layout().total());
    read_checkpoint_params(c.checkpoint, "ck", straight.layout(), saved.data());
    EXPECT_EQ(saved, straight.params());

    Config part = c;
    part.epochs = 2;
    part.checkpoint = dir.file("part.h5");
    Trainer first(comm(), part);
    first.run();
    Config rest = part;
    rest.epochs = 4;
    rest.resume = part.checkpoint;
    rest.seed = 12345;  // ignored on resume: the shuffle stream comes from the checkpoint
    Trainer second(comm(), rest);
    second.run();
    EXPECT_EQ(second.global_step(), straight.global_step());
    EXPECT_EQ(second.params(), straight.params()) << optimizer_name(kind) << ": 2 + 2 epochs differ from 4";
  }
}

TEST(MpiAllocationTest, DistributedStepAllocatesNothing) {
  SharedDir dir("alloc");
  write_data(dir.file("d.h5"), 400, 20, 2);
  struct Variant {
    AllreduceMode mode;
    bool overlap;
    bool regularised = false;  // --dropout and --clip-grad-norm: masks and slices kept in buffers made once
    bool reproducible = false;  // --reproducible: the block source (a mapped file) and the exact sum
    long accumulate = 1;        // --accumulate-steps: micro-batches added up in backprop
  };
  for (const Variant v : {Variant{AllreduceMode::kShared, true}, Variant{AllreduceMode::kHierarchical, true},
                          Variant{AllreduceMode::kHierarchical, false},
                          Variant{AllreduceMode::kShared, true, true},
                          Variant{AllreduceMode::kHierarchical, true, true},
                          Variant{AllreduceMode::kShared, true, false, true},
                          Variant{AllreduceMode::kShared, true, true, true},
                          Variant{AllreduceMode::kShared, true, false, false, 4},
                          Variant{AllreduceMode::kHierarchical, true, false, false, 4},
                          Variant{AllreduceMode::kHierarchical, true, true, false, 4},
                          Variant{AllreduceMode::kShared, true, true, true, 4}}) {
    Config c = base_config(dir.file("d.h5"));
    if (v.regularised) {
      c.dropout_rates = {0.3, 0.1};
      c.clip_grad_norm = 0.1;
    }
    c.allreduce = v.mode;
    c.hidden = "64,32";
    c.hidden_widths = {64, 32};
    c.batch_size = 16;
    c.optimizer.momentum = 0.9;
    c.bucket_mb = 0.002;
    c.overlap = v.overlap;
    c.schedule.schedule = LrSchedule::kCosine;  // the step's lr comes from the schedule, allocation-free
    c.schedule.warmup_epochs = 1.5;
    c.schedule.epochs = 4;
    c.accumulate_steps = v.accumulate;
    if (v.reproducible) {  // 2 blocks of 8 a rank a micro-batch at 1, 2 and 3 ranks
      c.reproducible = true;
      c.block_size = 8;
      c.global_batch_size = 16 * comm().size() * v.accumulate;
    }
    Trainer trainer(comm(), c);
    auto epoch = [&](int64_t e) {
      trainer.start_epoch(e);
      for (long s = 0; s < trainer.steps_per_epoch(); ++s) trainer.train_step(s);
    };
    epoch(0);  // warm-up: MPI's free lists reach their working size
    long allocations = 0;
    {
      testing::AllocationCounter counter;
      for (int64_t e = 1; e <= 3; ++e) epoch(e);
      allocations = static_cast<long>(counter.count());
    }
    // Across nodes the hierarchical sum calls Open MPI's MPI_Allreduce, which
    // allocates inside (acceptable: Open MPI's business). On one node the same
    // nn_dist code runs with a one-rank MPI_Allreduce, and must allocate nothing.
    // (--allreduce shared on several nodes is the hierarchical sum.)
    const bool open_mpi_allocates = (v.mode == AllreduceMode::kHierarchical || v.mode == AllreduceMode::kShared) &&
                                    comm().node_size() < comm().size();
    if (open_mpi_allocates) {
      if (comm().root()) std::printf("[          ] hierarchical across nodes: %ld allocations on rank 0 (inside Open MPI)\n", allocations);
    } else {
      EXPECT_EQ(allocations, 0) << allreduce_mode_name(v.mode) << " overlap " << v.overlap << " dropout and clipping "
                                << v.regularised << " reproducible " << v.reproducible << " accumulate "
                                << v.accumulate << " on rank " << comm().rank();
    }
  }
}

// --allreduce's names (parallel/ is the only place that knows them).
TEST(MpiGradientTest, AllreduceNamesParseAndPrint) {
  for (const char* name : {"auto", "shared", "hierarchical", "mpi", "none"}) {
    EXPECT_EQ(allreduce_mode_name(parse_allreduce_mode(name)), name);
  }
  EXPECT_EQ(testing::error_of([] { parse_allreduce_mode("tr\tee"); }),
            "--allreduce: unknown value 'tr\\x09ee' (expected auto, shared, hierarchical, mpi or none)");
}

// The pre-training memory check counts what Mlp allocates: with gelu, gelu_tanh
// or silu, f'(z) of every hidden layer (hidden widths x batch floats) besides the outputs.
TEST(MpiMemoryTest, KeptDerivativesAreCounted) {
  const std::vector<long> sizes{20, 300, 100, 10};
  const long batch = 256;
  const ModelMemory relu = model_memory(sizes, batch, 0, keeps_derivative(Activation::kRelu));
  // outputs 300 + 100 + 10, two deltas 300 wide
  EXPECT_EQ(relu.activation_bytes, 4.0 * batch * (410 + 600));
  for (Activation f : {Activation::kGelu, Activation::kGeluTanh, Activation::kSilu}) {
    const ModelMemory kept = model_memory(sizes, batch, 0, keeps_derivative(f));
    EXPECT_EQ(kept.activation_bytes - relu.activation_bytes, 4.0 * batch * (300 + 100)) << activation_name(f);
    EXPECT_EQ(kept.parameter_bytes, relu.parameter_bytes) << activation_name(f);
  }
}

// And a layer that drops units keeps its mask and its dropped output (Mlp::set_dropout).
TEST(MpiMemoryTest, DropoutMasksAndDroppedOutputsAreCounted) {
  const std::vector<long> sizes{20, 300, 100, 10};
  const long batch = 256;
  const ModelMemory plain = model_memory(sizes, batch, 0, false);
  EXPECT_EQ(model_memory(sizes, batch, 0, false, {0.0, 0.0}).activation_bytes, plain.activation_bytes);
  EXPECT_EQ(model_memory(sizes, batch, 0, false, {0.5, 0.5}).activation_bytes - plain.activation_bytes,
            4.0 * batch * 2 * (300 + 100));
  EXPECT_EQ(model_memory(sizes, batch, 0, false, {0.0, 0.2}).activation_bytes - plain.activation_bytes,
            4.0 * batch * 2 * 100);
}

// bf16 adds the products' packed copies (2 bytes a value, padded as packed): each layer's weights
// (Mlp::place_packed_weights) and a Delta as wide as the widest layer (backward's, packed once).
TEST(MpiMemoryTest, Bf16PackedCopiesAreCounted) {
  const std::vector<long> sizes{20, 300, 100, 10};
  const long batch = 256;
  const ModelMemory f32 = model_memory(sizes, batch, 1, false), bf16 = model_memory(sizes, batch, 1, false, {}, true);
  // rows padded to 32, columns to 32 per block of at most 512
  EXPECT_EQ(bf16.parameter_bytes - f32.parameter_bytes, 2.0 * (320 * (20 + 32) + 128 * (300 + 32) + 32 * (100 + 32)));
  EXPECT_EQ(bf16.activation_bytes - f32.activation_bytes, 2.0 * 320 * (256 + 32));
  EXPECT_EQ(bf16.parameter_count, f32.parameter_count);
}

}  // namespace
}  // namespace nn_dist

// The sums nn_allreduce_bench times: each way of summing behind one small
// interface (SumPath), a pattern whose sums are exact in float to check them,
// and the measurement of one path at one size.
#include "nn_dist/bench/allreduce.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <sstream>

#include "nn_dist/common/clock.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/model/mlp.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/parallel/watchdog.hpp"

namespace nn_dist {

namespace {

const Path kPaths[] = {
    {"mpi", false, AllreduceMode::kMpi, false},
    {"impi", false, AllreduceMode::kMpi, true},
    {"nn-shared", true, AllreduceMode::kShared, false},
    {"nn-hierarchical", true, AllreduceMode::kHierarchical, false},
    {"nn-mpi", true, AllreduceMode::kMpi, false},
    {"p2p-exchange", false, AllreduceMode::kMpi, false, P2p::kExchange},
    {"p2p-relay", false, AllreduceMode::kMpi, false, P2p::kRelay},
};

// The values of a checked sum: in the pass seeded k, rank r holds
// 1 + (i + k) % 61 + 64 * ((r + k) % classes) at element i. Small positive
// integers, so every sum over the ranks is exact in float, and a value that is
// missing, counted twice or at the wrong element changes the sum.
class Pattern {
 public:
  Pattern(int ranks, int64_t seed) : ranks_(ranks), seed_(seed) {
    // Sums stay below 2^24 (exact in float): fewer rank classes on huge jobs.
    classes_ = std::clamp<int64_t>(((int64_t{1} << 24) / ranks - 62) / 64 + 1, 1, 7);
    for (int r = 0; r < ranks; ++r) rank_terms_ += rank_term(r);
  }
  void fill(int rank, float* out, std::size_t n) const {
    const float base = static_cast<float>(1 + rank_term(rank));
    std::size_t cycle = static_cast<std::size_t>(seed_ % 61);
    for (std::size_t i = 0; i < n; ++i) {
      out[i] = base + static_cast<float>(cycle);
      if (++cycle == 61) cycle = 0;
    }
  }
  // The sum over the ranks at element i.
  float sum(std::size_t i) const {
    return static_cast<float>(ranks_ * (1 + static_cast<int64_t>((i + static_cast<std::size_t>(seed_)) % 61)) +
                              rank_terms_);
  }
  // The step statistics of a rank, and their sums.
  double stat(int rank, int j) const { return rank + j + static_cast<double>(seed_); }
  double stat_sum(int j) const { return ranks_ * (j + static_cast<double>(seed_)) + ranks_ * (ranks_ - 1) / 2.0; }

 private:
  int64_t rank_term(int rank) const { return 64 * ((rank + seed_) % classes_); }
  int ranks_;
  int64_t seed_, classes_ = 1, rank_terms_ = 0;
};

// Compares what a path hands over with the pattern's sums.
struct Check {
  explicit Check(const Pattern& p) : pattern(p) {}
  const Pattern& pattern;
  std::size_t covered = 0;  // elements handed over
  std::string error;        // the first difference; "" for none

  void stats(const double* sums) {
    for (int j = 0; j < kStepStats && error.empty(); ++j) {
      if (sums[j] != pattern.stat_sum(j)) {
        error = "step statistic " + std::to_string(j) + " is " + std::to_string(sums[j]) + " instead of " +
                std::to_string(pattern.stat_sum(j));
      }
    }
  }
  void slice(std::size_t begin, std::size_t end, const float* first, const float* second) {
    covered += end - begin;
    for (std::size_t i = begin; i < end && error.empty(); ++i) {
      const float got = second != nullptr ? first[i] + second[i] : first[i];
      if (got != pattern.sum(i)) {
        char text[160];
        std::snprintf(text, sizeof text, "element %zu is %.9g instead of %.9g", i, got, pattern.sum(i));
        error = text;
      }
    }
  }
};

// One way of summing n floats over the ranks, driven as its user drives it.
class SumPath {
 public:
  virtual ~SumPath() = default;
  // Where this rank writes its values before the next run().
  virtual float* input() = 0;
  // How many elements of the result this rank is handed: all, or its own part.
  virtual std::size_t part() const = 0;
  // One sum (stats: the step statistics, where the path sums them); with
  // check, hands it the result.
  virtual void run(const double* stats, Check* check) = 0;
};

// Open MPI's allreduce of the buffer in place: MPI_Allreduce, or
// MPI_Iallreduce then MPI_Wait.
class MpiPath : public SumPath {
 public:
  MpiPath(const Communicator& comm, float* data, float* scratch, std::size_t n, bool nonblocking, P2p p2p)
      : comm_(comm), data_(data), scratch_(scratch), n_(n), nonblocking_(nonblocking), p2p_(p2p) {}
  float* input() override { return data_; }
  std::size_t part() const override { return n_; }
  void run(const double*, Check* check) override {
    if (p2p_ == P2p::kExchange) {
      comm_.exchange_sum(data_, scratch_, n_);
    } else if (p2p_ == P2p::kRelay) {
      comm_.relay_sum(data_, scratch_, n_);
    } else if (nonblocking_) {
      comm_.sum_via_iallreduce(data_, n_);
    } else {
      comm_.sum(data_, n_);
    }
    if (check != nullptr) check->slice(0, n_, data_, nullptr);
  }

 private:
  const Communicator& comm_;
  float* data_;
  float* scratch_;  // p2p: the peer's values
  std::size_t n_;
  bool nonblocking_;
  P2p p2p_;
};

// The pieces backprop would report for a gradient of n floats: the trainer's
// piece size, from the end of the buffer down (last layer first).
std::vector<GradientPiece> pieces_of(std::size_t n) {
  std::vector<GradientPiece> pieces;
  for (std::size_t end = n; end > 0;) {
    const std::size_t begin = end > kGradientPieceElements ? end - kGradientPieceElements : 0;
    pieces.push_back({begin, end});
    end = begin;
  }
  return pieces;
}

// One of nn_dist's gradient sums, driven as Trainer::train_step drives it:
// the step statistics start, backprop reports its pieces (none computed here),
// publish, wait for the statistics, then wait() hands over the result slice by
// slice. Where the sum leaves its last addition to the optimizer (shared
// memory: first + second), that addition is done here, into the node-shared
// parameter buffer, as the optimizer's pass would; the optimizer's own work is
// not. As in training, the sum keeps one node-shared parameter buffer, so each
// rank of a node sums and receives only its own part.
class SyncPath : public SumPath {
 public:
  SyncPath(const Communicator& comm, AllreduceMode mode, float* sums, std::size_t n, const BucketSettings& buckets)
      : pieces_(pieces_of(n)),
        sync_(GradientSync::create(comm, sums, n, pieces_, buckets.bucket_bytes, buckets.overlap, mode, 1)),
        params_(sync_->shared_buffer(0)) {}
  const GradientSync& sync() const { return *sync_; }
  float* input() override { return sync_->backward_buffer(); }
  std::size_t part() const override { return sync_->own_elements(); }
  void run(const double* stats, Check* check) override {
    sync_->start_stats(stats);
    for (std::size_t i = 0; i < pieces_.size(); ++i) sync_->piece_done(i);
    sync_->publish();
    const double* sums = sync_->wait_stats();
    if (check != nullptr) check->stats(sums);
    sync_->wait([&](std::size_t begin, std::size_t end, const float* first, const float* second) {
      if (second != nullptr) {
        float* __restrict out = params_;
        for (std::size_t i = begin; i < end; ++i) out[i] = first[i] + second[i];
      }
      if (check != nullptr) check->slice(begin, end, first, second);
    });
  }

 private:
  std::vector<GradientPiece> pieces_;
  std::unique_ptr<GradientSync> sync_;
  float* params_;
};

// Measures one path at one size: a checked sum, the warmup, the timed sums
// and another checked sum. Each sum starts from values this rank has just
// written (as backprop writes its gradient), after a barrier; each rank times
// its own sums, and an iteration's time is its slowest rank's.
class Measurement {
 public:
  Measurement(const Communicator& comm, SumPath* path, const Path& info, std::size_t bytes, long nodes)
      : comm_(comm),
        path_(path),
        info_(info),
        bytes_(bytes),
        n_(bytes / sizeof(float)),
        nodes_(nodes),
        what_("summing " + std::to_string(bytes) + " bytes with " + info.name) {
    const char* fault = std::getenv(kFaultVariable);
    fault_ = fault != nullptr && fault == std::string(info.name) && comm.rank() == comm.size() - 1;
    for (int j = 0; j < kStepStats; ++j) timed_stats_[j] = comm.rank();
  }

  Timing run(const MeasureOptions& o) {
    check(1);
    std::vector<double> warmup(static_cast<std::size_t>(o.warmup_iters));
    for (long i = 0; i < o.warmup_iters; ++i) {
      const auto t0 = Clock::now();
      timed_sum();
      warmup[i] = seconds_between(t0, Clock::now());
    }
    // Every rank has the same slowest times, so every rank picks the same count.
    comm_.max(warmup.data(), static_cast<int>(warmup.size()));
    const double per_iteration = median(&warmup);
    Timing t;
    t.iters = o.max_iters;
    if (per_iteration > 0 && o.min_seconds / per_iteration < static_cast<double>(o.max_iters)) {
      t.iters = std::max(o.min_iters, static_cast<long>(std::ceil(o.min_seconds / per_iteration)));
    }
    std::vector<double> times(static_cast<std::size_t>(t.iters));
    for (long i = 0; i < t.iters; ++i) times[i] = timed_sum();
    comm_.max(times.data(), static_cast<int>(times.size()));
    t.median_us = median(&times) * 1e6;
    t.min_us = times.front() * 1e6;
    check(2);
    return t;
  }

 private:
  // Sorts and returns the median.
  static double median(std::vector<double>* v) {
    std::sort(v->begin(), v->end());
    const std::size_t m = v->size() / 2;
    return v->size() % 2 == 1 ? (*v)[m] : ((*v)[m - 1] + (*v)[m]) / 2;
  }

  // One sum after this rank has written fill's values; returns its seconds.
  template <typename Fill>
  double one_sum(Fill&& fill, const double* stats, Check* check) {
    watchdog::set_step(sums_done_++);  // the watchdog's message counts this size's sums as steps
    watchdog::Wait wait(what_.c_str());
    fill(path_->input());
    comm_.barrier();
    const auto t0 = Clock::now();
    path_->run(stats, check);
    return seconds_between(t0, Clock::now());
  }

  double timed_sum() {
    // Values that stay small as in-place sums are summed again.
    const float value = static_cast<float>(comm_.rank() % 7 + 1);
    return one_sum([&](float* in) { std::fill(in, in + n_, value); }, timed_stats_, nullptr);
  }

  // A sum of the pattern seeded `seed`, checked on every rank: a difference
  // anywhere is an AgreedError with kWrongSumExitCode on every rank.
  void check(int64_t seed) {
    const Pattern pattern(comm_.size(), seed);
    double stats[kStepStats];
    for (int j = 0; j < kStepStats; ++j) stats[j] = pattern.stat(comm_.rank(), j);
    Check check(pattern);
    one_sum(
        [&](float* in) {
          pattern.fill(comm_.rank(), in, n_);
          if (fault_) in[0] += 1;
        },
        stats, &check);
    std::string error = check.error;
    if (error.empty() && check.covered != path_->part()) {
      error = "handed " + std::to_string(check.covered) + " elements instead of " + std::to_string(path_->part());
    }
    // Each node's ranks hold the whole result between them (shared memory:
    // each its own part; otherwise each all of it).
    double covered = static_cast<double>(check.covered);
    comm_.sum(&covered, 1);
    if (error.empty() && covered < static_cast<double>(n_) * static_cast<double>(nodes_)) {
      error = "the ranks were handed " + std::to_string(static_cast<long long>(covered)) +
              " elements in all, fewer than " + std::to_string(n_) + " x " + std::to_string(nodes_) + " node(s)";
    }
    try {
      comm_.agree(error.empty() ? "" : "rank " + std::to_string(comm_.rank()) + ": " + error);
    } catch (const AgreedError& e) {
      throw AgreedError("wrong sum: path " + std::string(info_.name) + ", " + std::to_string(bytes_) + " bytes: " +
                        e.what(),
                        kWrongSumExitCode);
    }
  }

  const Communicator& comm_;
  SumPath* path_;
  const Path& info_;
  std::size_t bytes_, n_;
  long nodes_;
  std::string what_;  // for the watchdog's message
  bool fault_ = false;
  int64_t sums_done_ = 0;
  double timed_stats_[kStepStats];
};

}  // namespace

std::vector<const Path*> parse_paths(const std::string& list) {
  std::vector<const Path*> chosen;
  if (list == "all") {
    for (const Path& p : kPaths) chosen.push_back(&p);
    return chosen;
  }
  std::string names;
  for (const Path& p : kPaths) names += std::string(names.empty() ? "" : ", ") + p.name;
  std::stringstream words(list);
  std::string word;
  while (std::getline(words, word, ',')) {
    const Path* found = nullptr;
    for (const Path& p : kPaths) {
      if (word == p.name) found = &p;
    }
    if (found == nullptr) {
      throw Error("--paths: unknown path '" + printable(word) + "' (expected all, or a comma-separated list of " +
                  names + ")");
    }
    if (std::find(chosen.begin(), chosen.end(), found) != chosen.end()) {
      throw Error("--paths: '" + word + "' is listed twice");
    }
    chosen.push_back(found);
  }
  if (chosen.empty()) throw Error("--paths: empty (expected all, or a comma-separated list of " + names + ")");
  return chosen;
}

AllreduceBench::AllreduceBench(const Communicator& comm, std::size_t max_bytes, const BucketSettings& buckets,
                               const MeasureOptions& measure)
    : comm_(comm), buckets_(buckets), measure_(measure) {
  double node_shares = 1.0 / comm.node_size();  // each node's ranks add up to 1
  comm.sum(&node_shares, 1);
  nodes_ = std::lround(node_shares);
  comm.agreed([&] {
    try {
      data_.assign(max_bytes / sizeof(float), 0.0f);
      sums_.assign(data_.size(), 0.0f);
    } catch (const std::bad_alloc&) {
      throw Error("--max-bytes: cannot allocate two buffers of " + std::to_string(max_bytes) + " bytes");
    }
  });
}

std::optional<Timing> AllreduceBench::measure(const Path& info, std::size_t bytes, std::string* skip_note) {
  const std::size_t n = bytes / sizeof(float);
  const int ranks = comm_.size();
  std::unique_ptr<SumPath> path;
  {
    watchdog::Wait wait("setting up a sum");
    if (info.p2p != P2p::kNone && ranks != 2) {
      *skip_note = "skipping " + std::string(info.name) + ": it pairs exactly 2 ranks (here " + std::to_string(ranks) +
                   ")";
      return std::nullopt;
    }
    if (!info.gradient_sync) {
      path = std::make_unique<MpiPath>(comm_, data_.data(), sums_.data(), n, info.nonblocking, info.p2p);
    } else {
      auto sync = std::make_unique<SyncPath>(comm_, info.mode, sums_.data(), n, buckets_);
      // GradientSync::create falls back where a sum cannot run (shared memory across nodes).
      if (sync->sync().mode() != info.mode) {
        *skip_note = "skipping " + std::string(info.name) + ": it does not apply to " + std::to_string(ranks) +
                     " rank(s) on " + std::to_string(nodes_) + " node(s) (nn_dist would use " +
                     allreduce_mode_name(sync->sync().mode()) + ": " + sync->sync().reason() + ")";
        return std::nullopt;
      }
      path = std::move(sync);
    }
  }
  return Measurement(comm_, path.get(), info, bytes, nodes_).run(measure_);
}

}  // namespace nn_dist

// nn_allreduce_bench: the latency and bandwidth of summing a float buffer over
// the ranks (like nccl-tests' all_reduce_perf and OSU's osu_allreduce), for
// Open MPI's allreduce called directly and for each of nn_dist's gradient sums
// driven as the trainer drives them, so the times are those of the trainer's
// sum itself (without the wait for slower ranks' backprop, or the overlap).
#include <boost/program_options.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/cli/mpi_tool.hpp"
#include "nn_dist/common/clock.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/model/layout.hpp"
#include "nn_dist/model/mlp.hpp"
#include "nn_dist/parallel/comm.hpp"
#include "nn_dist/parallel/watchdog.hpp"

namespace po = boost::program_options;
using namespace nn_dist;

namespace {

constexpr std::size_t kMaxBytes = std::size_t{64} << 30;  // per buffer: far beyond any gradient
// For tests: in the checked sums of the path it names, the last rank adds 1 to
// element 0 of its values, so the check must report a wrong sum.
constexpr const char* kFaultVariable = "NN_ALLREDUCE_BENCH_FAULT";

// The ways of summing, in the order they are measured at each size.
// p2p-exchange and p2p-relay (2 ranks only) measure the transport under the
// allreduce: the whole buffer sent both ways at once, against one way then
// back. Their ratio says whether a link carries both directions at once (the
// performance model's duplex factor, scripts/perf_model.py).
enum class P2p { kNone, kExchange, kRelay };
struct Path {
  const char* name;
  bool gradient_sync;  // one of nn_dist's GradientSync sums; else Open MPI's allreduce called directly
  AllreduceMode mode;  // gradient_sync: which one
  bool nonblocking;    // otherwise: MPI_Iallreduce + MPI_Wait instead of MPI_Allreduce
  P2p p2p = P2p::kNone;  // otherwise: a 2-rank sum by point-to-point messages
};
const Path kPaths[] = {
    {"mpi", false, AllreduceMode::kMpi, false},
    {"impi", false, AllreduceMode::kMpi, true},
    {"nn-shared", true, AllreduceMode::kShared, false},
    {"nn-hierarchical", true, AllreduceMode::kHierarchical, false},
    {"nn-ring", true, AllreduceMode::kRing, false},
    {"nn-mpi", true, AllreduceMode::kMpi, false},
    {"p2p-exchange", false, AllreduceMode::kMpi, false, P2p::kExchange},
    {"p2p-relay", false, AllreduceMode::kMpi, false, P2p::kRelay},
};

struct Options {
  std::string min_bytes = "4", max_bytes = "256M", paths = "all", csv, overlap;
  long factor = 2, warmup_iters = 5, min_iters = 10, max_iters = 100000;
  double min_seconds = 0.2, bucket_mb = 0, timeout = 0;
  // From the above:
  std::vector<std::size_t> sizes;  // bytes, ascending
  std::vector<const Path*> chosen;
};

// A byte count: digits with an optional K, M or G (KiB, MiB, GiB).
std::size_t parse_bytes(const std::string& text, const std::string& flag) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string unit = text.substr(digits);
  const int shift = unit.empty() ? 0 : unit == "K" || unit == "k" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : -1;
  if (digits == 0 || digits > 12 || shift < 0) {
    throw Error(flag + ": expected a byte count like 4096, 64K, 256M or 1G, got '" + printable(text) + "'");
  }
  const std::size_t count = std::stoull(text.substr(0, digits));
  if (count > (kMaxBytes >> shift)) throw Error(flag + ": at most 64G, got " + printable(text));
  return count << shift;
}

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

// Returns false for --help (printed by rank 0).
bool parse(int argc, char** argv, Options* o, std::string* help) {
  const Config trainer;  // the ring's buckets and overlap, and the timeout, default to the trainer's
  o->bucket_mb = trainer.bucket_mb;
  o->overlap = trainer.overlap ? "on" : "off";
  o->timeout = trainer.collective_timeout;
  po::options_description desc("Usage: mpirun -np N nn_allreduce_bench [options]", 100);
  desc.add_options()
      ("help,h", "show this help")
      ("min-bytes", po::value(&o->min_bytes)->default_value(o->min_bytes),
       "smallest message (bytes, or with K, M, G: KiB, MiB, GiB); a multiple of 4 (float32 values)")
      ("max-bytes", po::value(&o->max_bytes)->default_value(o->max_bytes), "largest message")
      ("factor", po::value(&o->factor)->default_value(o->factor), "each size is the previous one times this")
      ("paths", po::value(&o->paths)->default_value(o->paths),
       "all, or a comma-separated list of mpi, impi, nn-shared, nn-hierarchical, nn-ring, nn-mpi, "
       "p2p-exchange, p2p-relay (2 ranks: the buffer both ways at once, or one way and back) "
       "(paths that do not apply to the ranks' layout are skipped with a note)")
      ("warmup-iters", po::value(&o->warmup_iters)->default_value(o->warmup_iters),
       "untimed sums per path and size (their times set the iteration count)")
      ("min-seconds", po::value(&o->min_seconds)->default_value(o->min_seconds, "0.2"),
       "timed iterations per path and size: enough to last about this long (refill and barrier included)")
      ("min-iters", po::value(&o->min_iters)->default_value(o->min_iters), "at least this many timed iterations")
      ("max-iters", po::value(&o->max_iters)->default_value(o->max_iters), "at most this many timed iterations")
      ("csv", po::value(&o->csv), "also write the results to this CSV file (rank 0)")
      ("bucket-mb", po::value(&o->bucket_mb)->default_value(o->bucket_mb), "nn-ring: bucket size in MB, as nn_dist's")
      ("overlap", po::value(&o->overlap)->default_value(o->overlap),
       "nn-ring: on, buckets started as backprop reports its pieces; off, one ring after backprop (as nn_dist's)");
  if (!parse_mpi_tool_options(argc, argv, &desc, &o->timeout, help)) return false;
  const std::size_t min_bytes = parse_bytes(o->min_bytes, "--min-bytes");
  const std::size_t max_bytes = parse_bytes(o->max_bytes, "--max-bytes");
  if (min_bytes < 4 || min_bytes % 4 != 0) {
    throw Error("--min-bytes: must be a positive multiple of 4 (whole float32 values), got " + o->min_bytes);
  }
  if (max_bytes < min_bytes) throw Error("--max-bytes: must be at least --min-bytes (" + o->min_bytes + ")");
  if (!(o->factor >= 2 && o->factor <= 1024)) throw Error("--factor: must be 2 to 1024");
  if (!(o->warmup_iters >= 1 && o->warmup_iters <= 1000000)) throw Error("--warmup-iters: must be 1 to 1000000");
  if (!(o->min_iters >= 1 && o->min_iters <= 10000000)) throw Error("--min-iters: must be 1 to 10000000");
  if (!(o->max_iters >= o->min_iters && o->max_iters <= 10000000)) {
    throw Error("--max-iters: must be --min-iters (" + std::to_string(o->min_iters) + ") to 10000000");
  }
  if (!(o->min_seconds >= 0 && o->min_seconds <= 1e5)) throw Error("--min-seconds: must be 0 to 100000");
  if (!(o->bucket_mb > 0 && o->bucket_mb <= 1e6)) throw Error("--bucket-mb: must be in (0, 1000000]");
  if (o->overlap != "on" && o->overlap != "off") {
    throw Error("--overlap: unknown value '" + printable(o->overlap) + "' (expected on or off)");
  }
  o->chosen = parse_paths(o->paths);
  for (std::size_t bytes = min_bytes; bytes <= max_bytes; bytes *= static_cast<std::size_t>(o->factor)) {
    o->sizes.push_back(bytes);
  }
  return true;
}

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
  SyncPath(const Communicator& comm, AllreduceMode mode, float* sums, std::size_t n, const Options& o)
      : pieces_(pieces_of(n)),
        sync_(GradientSync::create(comm, sums, n, pieces_, static_cast<std::size_t>(o.bucket_mb * 1024 * 1024),
                                   o.overlap == "on", mode, 1)),
        params_(sync_->shared_buffer(0)) {}
  const GradientSync& sync() const { return *sync_; }
  float* input() override { return sync_->backward_buffer(); }
  std::size_t part() const override { return sync_->own_end() - sync_->own_begin(); }
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

// The exit code of every rank when a checked sum was wrong.
constexpr int kWrongSumExitCode = 1;

struct Timing {
  long iters = 0;
  double median_us = 0, min_us = 0;
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

  Timing run(const Options& o) {
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

int run(const Communicator& comm, const Options& o) {
  const int ranks = comm.size();
  double node_shares = 1.0 / comm.node_size();  // each node's ranks add up to 1
  comm.sum(&node_shares, 1);
  const long nodes = std::lround(node_shares);
  const double bus_factor = 2.0 * (ranks - 1) / ranks;

  TextFileWriter csv;
  comm.agreed([&] {
    if (!comm.root() || o.csv.empty()) return;
    csv.open(require_output_file(o.csv, "--csv"), false, "--csv");
    csv.write("path,ranks,nodes,bytes,iters,time_us_median,time_us_min,algbw_GBps,busbw_GBps\n");
  });
  // The trainer's two buffers: the gradient (summed in place by the ring and
  // by MPI) and the sums that shared memory adds 3 or more ranks into.
  FlatBuffer data, sums;
  comm.agreed([&] {
    try {
      data.assign(o.sizes.back() / sizeof(float), 0.0f);
      sums.assign(data.size(), 0.0f);
    } catch (const std::bad_alloc&) {
      throw Error("--max-bytes: cannot allocate two buffers of " + std::to_string(o.sizes.back()) + " bytes");
    }
  });

  if (comm.root()) {
    std::printf("# nn_allreduce_bench: %d rank(s) on %ld node(s); float32 sums of %zu to %zu bytes\n", ranks, nodes,
                o.sizes.front(), o.sizes.back());
    std::printf("# time_us: median over iterations of the slowest rank's time; min_us: the fastest iteration's\n"
                "# algbw = bytes / time_us; busbw = algbw * 2(p-1)/p (nccl-tests); GB/s = 1e9 bytes/s\n");
    std::printf("# nn-ring: buckets of %g MB, overlap %s (pieces of %zu floats reported last first, as backprop)\n",
                o.bucket_mb, o.overlap.c_str(), kGradientPieceElements);
    std::printf("%-16s %12s %8s %12s %12s %11s %11s\n", "path", "bytes", "iters", "time_us", "min_us", "algbw_GB/s",
                "busbw_GB/s");
    std::fflush(stdout);
  }
  std::vector<bool> skipped(o.chosen.size(), false);
  for (const std::size_t bytes : o.sizes) {
    const std::size_t n = bytes / sizeof(float);
    for (std::size_t k = 0; k < o.chosen.size(); ++k) {
      const Path& info = *o.chosen[k];
      if (skipped[k]) continue;
      std::unique_ptr<SumPath> path;
      {
        watchdog::Wait wait("setting up a sum");
        if (info.p2p != P2p::kNone && ranks != 2) {
          skipped[k] = true;
          if (comm.root()) {
            std::printf("# note: skipping %s: it pairs exactly 2 ranks (here %d)\n", info.name, ranks);
            std::fflush(stdout);
          }
          continue;
        }
        if (!info.gradient_sync) {
          path = std::make_unique<MpiPath>(comm, data.data(), sums.data(), n, info.nonblocking, info.p2p);
        } else {
          auto sync = std::make_unique<SyncPath>(comm, info.mode, sums.data(), n, o);
          // GradientSync::create falls back where a sum cannot run (shared memory across nodes).
          if (sync->sync().mode() != info.mode) {
            skipped[k] = true;
            if (comm.root()) {
              std::printf("# note: skipping %s: it does not apply to %d rank(s) on %ld node(s) (nn_dist would use %s: "
                          "%s)\n",
                          info.name, ranks, nodes, allreduce_mode_name(sync->sync().mode()).c_str(),
                          sync->sync().reason().c_str());
              std::fflush(stdout);
            }
            continue;
          }
          path = std::move(sync);
        }
      }
      const Timing t = Measurement(comm, path.get(), info, bytes, nodes).run(o);
      const double algbw = static_cast<double>(bytes) / t.median_us * 1e-3;  // bytes/us = MB/s
      const double busbw = algbw * bus_factor;
      comm.agreed([&] {
        if (!comm.root()) return;
        std::printf("%-16s %12zu %8ld %12.2f %12.2f %11.4f %11.4f\n", info.name, bytes, t.iters, t.median_us,
                    t.min_us, algbw, busbw);
        std::fflush(stdout);
        if (csv.is_open()) {
          csv.write(std::string(info.name) + "," + std::to_string(ranks) + "," + std::to_string(nodes) + "," +
                    std::to_string(bytes) + "," + std::to_string(t.iters) + "," + fmt("%.6g", t.median_us) + "," +
                    fmt("%.6g", t.min_us) + "," + fmt("%.6g", algbw) + "," + fmt("%.6g", busbw) + "\n");
        }
      });
    }
  }
  comm.agreed([&] { csv.close(); });
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mpi_tool_main<Options>("nn_allreduce_bench", &argc, &argv, parse, run); }

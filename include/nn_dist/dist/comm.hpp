// The communicator: every MPI call nn_dist makes goes through this header's
// classes (the only place that includes <mpi.h>). Collectives are called by
// every rank in the same order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn_dist/common/error.hpp"
#include "nn_dist/model/mlp.hpp"

namespace nn_dist {

// MPI_Init_thread / MPI_Finalize for the life of main().
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

class Communicator {
 public:
  Communicator();  // MPI_COMM_WORLD
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }

  // Setup errors: every rank passes its own error text ("" for none). If any
  // rank failed, every rank throws AgreedError with the lowest failing rank's message.
  void agree(const std::string& local_error) const;
  // Runs f; an Error thrown by f on any rank becomes AgreedError on all ranks.
  template <typename F>
  void agreed(F&& f) const {
    std::string error;
    try {
      f();
    } catch (const Error& e) {
      error = e.what();
    }
    agree(error);
  }

  void sum(double* data, int count) const;
  long max(long value) const;
  long min(long value) const;
  void broadcast(float* data, std::size_t count, int root = 0) const;
  void broadcast(int64_t* data, int count, int root = 0) const;
  void broadcast(std::string* text, int root = 0) const;
  // Gathers one buffer from every rank to every rank (for tests).
  std::vector<float> allgather(const float* data, int count) const;
  void barrier() const;
  [[noreturn]] void abort(int code) const;
  static double time();

 private:
  int rank_ = 0, size_ = 1;
};

// Sums the flat gradient buffer over the ranks in buckets: contiguous slices
// of whole gradient pieces, last layer first, each started as soon as
// backprop has finished it and moved on between later pieces. Also sums the
// step's (loss, correct, count). Without overlap: one bucket, summed after
// backprop.
class GradientSync : public BackwardObserver {
 public:
  // pieces: Mlp::pieces(); bucket_bytes: the least a bucket holds (the last
  // may be smaller); overlap false: one blocking allreduce after backprop.
  GradientSync(const Communicator& comm, float* grad, std::size_t grad_size, const std::vector<GradientPiece>& pieces,
               std::size_t bucket_bytes, bool overlap);
  ~GradientSync() override;
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Starts summing the step's statistics (copied in; read them after wait()).
  void start_stats(double loss, double correct, double count);
  void piece_done(std::size_t piece_index) override;
  // For a rank with no samples in this step: its zero gradient is final at once.
  void all_pieces_done();
  // Waits for the step's (loss, correct, count) sums: call before wait().
  const double* wait_stats();
  // Waits for every bucket in turn and hands its slice [begin, end) of the
  // summed gradient to on_bucket, so the optimizer updates a slice as soon as
  // it is summed while later buckets are still on the wire.
  template <typename F>
  void wait(F&& on_bucket) {
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      wait_bucket(b);
      on_bucket(buckets_[b].begin, buckets_[b].end);
    }
    next_bucket_ = 0;
  }
  const double* stats() const { return stats_; }
  std::size_t num_buckets() const { return buckets_.size(); }
  double test_seconds() const { return test_seconds_; }  // time spent in MPI_Test during backprop
  void reset_test_seconds() { test_seconds_ = 0; }

 private:
  struct Bucket {
    std::size_t begin, end;  // element range of grad
    std::size_t last_piece;  // the bucket may start once this piece is done
  };
  struct Rings;  // the allreduce state machines, kept out of this header
  void wait_bucket(std::size_t b);
  void progress();

  const Communicator& comm_;
  float* grad_;
  bool overlap_;
  std::vector<Bucket> buckets_;
  std::size_t next_bucket_ = 0;  // buckets start in order
  double stats_[3] = {0, 0, 0};
  std::unique_ptr<Rings> rings_;
  double test_seconds_ = 0;
};

}  // namespace nn_dist

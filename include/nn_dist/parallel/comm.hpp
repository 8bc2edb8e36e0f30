// The communicator: rank, size, collectives and error agreement. Every MPI
// call nn_dist makes is in parallel/ (the only place that includes <mpi.h>).
// Collectives are called by every rank in the same order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn_dist/common/error.hpp"

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
  // MPI's Fortran handle (MPI_Fint) of the communicator, so this header needs
  // no <mpi.h>; only parallel/ turns it back into an MPI_Comm.
  int handle() const { return handle_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }
  int node_size() const { return node_size_; }  // ranks on this rank's node (shared memory)

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
  void sum(int64_t* data, int count) const;  // exact: the same in any order
  // Every rank's floats summed in place, by Open MPI's MPI_Allreduce, or by
  // MPI_Iallreduce then MPI_Wait (for nn_allreduce_bench; the gradient goes
  // through GradientSync).
  void sum(float* data, std::size_t count) const;
  void sum_via_iallreduce(float* data, std::size_t count) const;
  // Two ranks' floats summed in place by point-to-point messages, to measure
  // the transport (nn_allreduce_bench): exchange_sum sends each whole buffer
  // both ways at once (MPI_Sendrecv, then each adds); relay_sum sends rank 1's
  // to rank 0, which adds and sends the sum back (two one-way transfers in
  // turn). scratch: count floats. Only for a communicator of 2 ranks.
  void exchange_sum(float* data, float* scratch, std::size_t count) const;
  void relay_sum(float* data, float* scratch, std::size_t count) const;
  void max(double* data, int count) const;  // element-wise, in place
  long max(long value) const;
  long min(long value) const;
  void broadcast(float* data, std::size_t count, int root = 0) const;
  void broadcast(int64_t* data, int count, int root = 0) const;
  void broadcast(double* data, int count, int root = 0) const;
  void broadcast(std::string* text, int root = 0) const;
  // Rank root receives every rank's `count` elements, in rank order (other ranks: empty).
  std::vector<float> gather(const float* data, long count, int root = 0) const;
  // Gathers one buffer from every rank to every rank (for tests).
  std::vector<float> allgather(const float* data, int count) const;
  void barrier() const;
  [[noreturn]] void abort(int code) const;

 private:
  int handle_ = 0;
  int rank_ = 0, size_ = 1, node_size_ = 1;
};

}  // namespace nn_dist

#include "nn_dist/parallel/gradient_sync.hpp"  // the gradient sums that run on a Communicator

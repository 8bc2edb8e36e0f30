// One MPI shared-memory window over the ranks of a node, each rank's segment
// in its own memory, and the spin-wait on its peers' step counters (with the
// watchdog's deadline). The shared-memory sums lay out their segments on it.
#pragma once

#include <mpi.h>
#include <sched.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn_dist/model/mlp.hpp"
#include "nn_dist/parallel/watchdog.hpp"

namespace nn_dist {

class NodeWindow {
 public:
  // Collective on node: every rank's segment of `bytes`, zeroed, starting on
  // a 64-byte boundary. world: the job's communicator (for naming ranks).
  NodeWindow(MPI_Comm node, MPI_Comm world, std::size_t bytes);
  ~NodeWindow();
  NodeWindow(const NodeWindow&) = delete;
  NodeWindow& operator=(const NodeWindow&) = delete;

  int size() const { return static_cast<int>(segments_.size()); }
  char* segment(int r) const { return segments_[static_cast<std::size_t>(r)]; }

  // Spins until *counter(r) >= step for every node rank r (acquire: what the
  // owner wrote before its release store is visible); yields so
  // oversubscribed ranks progress. Past the watchdog's deadline it aborts the
  // job: "rank(s) <missing> on this node <what> (stopped or hung?)". The
  // deadline is read after every yield, not every 1024 spins: on a loaded
  // machine a yield can last a time slice, and 1024 of them outlasted the
  // watchdog thread's grace, whose line cannot name the missing ranks.
  template <typename Counter>
  void wait_for(int64_t step, Counter counter, const char* what) const {
    for (int r = 0; r < size(); ++r) {
      for (int spins = 0; __atomic_load_n(counter(r), __ATOMIC_ACQUIRE) < step; ++spins) {
        if (spins <= 64) continue;
        sched_yield();
        if (!watchdog::expired()) continue;
        std::string missing;
        for (int q = 0; q < size(); ++q) {
          if (__atomic_load_n(counter(q), __ATOMIC_ACQUIRE) < step) {
            missing += (missing.empty() ? "" : ", ") + std::to_string(world_ranks_[static_cast<std::size_t>(q)]);
          }
        }
        watchdog::abort_job("rank(s) " + missing + " on this node " + what + " (stopped or hung?)");
      }
    }
  }

 private:
  MPI_Win window_ = MPI_WIN_NULL;
  std::vector<char*> segments_;   // every rank's segment, as mapped here
  std::vector<int> world_ranks_;  // each node rank's rank in the job, for messages
};

// --precision bf16 with the node's one copy of the parameters: the node's one
// copy of the weights packed for the products (Mlp::place_packed_weights),
// in node rank 0's segment of a window of its own, which that rank packs
// from `params` (its copy, filled); null when the products are f32.
// Collective on node; the caller's barrier then publishes the packing.
std::unique_ptr<NodeWindow> share_packed_weights(MPI_Comm node, MPI_Comm world, const float* params, Mlp<float>* mlp);

}  // namespace nn_dist

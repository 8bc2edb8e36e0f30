// Private to parallel/: the MPI_Comm behind a Communicator.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>

#include "nn_dist/parallel/comm.hpp"

namespace nn_dist {

inline MPI_Comm mpi_comm(const Communicator& comm) { return MPI_Comm_f2c(comm.handle()); }

// Calls f(offset, count) for consecutive pieces of [begin, end) small enough
// for MPI's int counts.
template <typename F>
void for_each_mpi_chunk(std::size_t begin, std::size_t end, F&& f) {
  for (std::size_t done = begin; done < end;) {
    const int chunk = static_cast<int>(std::min<std::size_t>(end - done, INT_MAX / 2));
    f(done, chunk);
    done += static_cast<std::size_t>(chunk);
  }
}

}  // namespace nn_dist

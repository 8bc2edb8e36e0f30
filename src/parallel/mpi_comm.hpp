// Private to parallel/: the MPI_Comm behind a Communicator.
#pragma once

#include <mpi.h>

#include "nn_dist/parallel/comm.hpp"

namespace nn_dist {

inline MPI_Comm mpi_comm(const Communicator& comm) { return MPI_Comm_f2c(comm.handle()); }

}  // namespace nn_dist

// The MPI session and the communicator: collectives and error agreement.
#include "nn_dist/parallel/comm.hpp"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "parallel/mpi_comm.hpp"
#include "nn_dist/parallel/watchdog.hpp"

namespace nn_dist {

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  watchdog::start(rank);
}

MpiSession::~MpiSession() {
  {
    watchdog::Wait wait("finishing (MPI_Finalize)");
    MPI_Finalize();
  }
  watchdog::stop();
}

Communicator::Communicator() : handle_(MPI_Comm_c2f(MPI_COMM_WORLD)) {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &node_size_);
  MPI_Comm_free(&node);
}

void Communicator::agree(const std::string& local_error) const {
  watchdog::Wait wait(nullptr);
  int mine = local_error.empty() ? size_ : rank_;
  int first = size_;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, mpi_comm(*this));
  if (first == size_) return;
  std::string message = local_error;
  broadcast(&message, first);
  throw AgreedError(message);
}

void Communicator::sum(double* data, int count) const {
  watchdog::Wait wait(nullptr);
  MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_DOUBLE, MPI_SUM, mpi_comm(*this));
}

void Communicator::sum(int64_t* data, int count) const {
  watchdog::Wait wait(nullptr);
  MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_INT64_T, MPI_SUM, mpi_comm(*this));
}

void Communicator::sum(float* data, std::size_t count) const {
  watchdog::Wait wait(nullptr);
  for_each_mpi_chunk(0, count, [&](std::size_t offset, int chunk) {
    MPI_Allreduce(MPI_IN_PLACE, data + offset, chunk, MPI_FLOAT, MPI_SUM, mpi_comm(*this));
  });
}

void Communicator::exchange_sum(float* data, float* scratch, std::size_t count) const {
  watchdog::Wait wait(nullptr);
  const int peer = 1 - rank();
  for_each_mpi_chunk(0, count, [&](std::size_t offset, int chunk) {
    MPI_Sendrecv(data + offset, chunk, MPI_FLOAT, peer, 0, scratch + offset, chunk, MPI_FLOAT, peer, 0,
                 mpi_comm(*this), MPI_STATUS_IGNORE);
  });
  // The same order of addition on both ranks: rank 0's value first.
  const float* first = rank() == 0 ? data : scratch;
  const float* second = rank() == 0 ? scratch : data;
  for (std::size_t i = 0; i < count; ++i) data[i] = first[i] + second[i];
}

void Communicator::relay_sum(float* data, float* scratch, std::size_t count) const {
  watchdog::Wait wait(nullptr);
  for_each_mpi_chunk(0, count, [&](std::size_t offset, int chunk) {
    if (rank() == 0) {
      MPI_Recv(scratch + offset, chunk, MPI_FLOAT, 1, 1, mpi_comm(*this), MPI_STATUS_IGNORE);
      for (std::size_t i = offset; i < offset + static_cast<std::size_t>(chunk); ++i) data[i] += scratch[i];
      MPI_Send(data + offset, chunk, MPI_FLOAT, 1, 2, mpi_comm(*this));
    } else {
      MPI_Send(data + offset, chunk, MPI_FLOAT, 0, 1, mpi_comm(*this));
      MPI_Recv(data + offset, chunk, MPI_FLOAT, 0, 2, mpi_comm(*this), MPI_STATUS_IGNORE);
    }
  });
}

void Communicator::sum_via_iallreduce(float* data, std::size_t count) const {
  watchdog::Wait wait(nullptr);
  for_each_mpi_chunk(0, count, [&](std::size_t offset, int chunk) {
    MPI_Request request = MPI_REQUEST_NULL;
    MPI_Iallreduce(MPI_IN_PLACE, data + offset, chunk, MPI_FLOAT, MPI_SUM, mpi_comm(*this), &request);
    MPI_Wait(&request, MPI_STATUS_IGNORE);
  });
}

void Communicator::max(double* data, int count) const {
  watchdog::Wait wait(nullptr);
  MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_DOUBLE, MPI_MAX, mpi_comm(*this));
}

long Communicator::max(long value) const {
  watchdog::Wait wait(nullptr);
  long out = value;
  MPI_Allreduce(&value, &out, 1, MPI_LONG, MPI_MAX, mpi_comm(*this));
  return out;
}

long Communicator::min(long value) const {
  watchdog::Wait wait(nullptr);
  long out = value;
  MPI_Allreduce(&value, &out, 1, MPI_LONG, MPI_MIN, mpi_comm(*this));
  return out;
}

void Communicator::broadcast(float* data, std::size_t count, int root) const {
  watchdog::Wait wait(nullptr);
  for_each_mpi_chunk(0, count, [&](std::size_t offset, int chunk) {
    MPI_Bcast(data + offset, chunk, MPI_FLOAT, root, mpi_comm(*this));
  });
}

void Communicator::broadcast(int64_t* data, int count, int root) const {
  watchdog::Wait wait(nullptr);
  MPI_Bcast(data, count, MPI_INT64_T, root, mpi_comm(*this));
}

void Communicator::broadcast(double* data, int count, int root) const {
  watchdog::Wait wait(nullptr);
  MPI_Bcast(data, count, MPI_DOUBLE, root, mpi_comm(*this));
}

void Communicator::broadcast(std::string* text, int root) const {
  watchdog::Wait wait(nullptr);
  int length = static_cast<int>(text->size());
  MPI_Bcast(&length, 1, MPI_INT, root, mpi_comm(*this));
  text->resize(length);
  MPI_Bcast(text->data(), length, MPI_CHAR, root, mpi_comm(*this));
}

std::vector<float> Communicator::gather(const float* data, long count, int root) const {
  watchdog::Wait wait(nullptr);
  if (count > INT_MAX) throw Error("internal: a gather of more than 2^31 values from one rank");
  const int mine = static_cast<int>(count);
  std::vector<int> counts(rank_ == root ? size_ : 0), offsets(counts.size());
  MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, root, mpi_comm(*this));
  std::vector<float> out;
  if (rank_ == root) {
    long total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[r] = static_cast<int>(total);
      total += counts[r];
    }
    if (total > INT_MAX) throw Error("internal: a gather of more than 2^31 values");
    out.resize(static_cast<std::size_t>(total));
  }
  MPI_Gatherv(data, mine, MPI_FLOAT, out.data(), counts.data(), offsets.data(), MPI_FLOAT, root, mpi_comm(*this));
  return out;
}

std::vector<float> Communicator::allgather(const float* data, int count) const {
  watchdog::Wait wait(nullptr);
  std::vector<float> out(static_cast<std::size_t>(count) * size_);
  MPI_Allgather(data, count, MPI_FLOAT, out.data(), count, MPI_FLOAT, mpi_comm(*this));
  return out;
}

void Communicator::barrier() const {
  watchdog::Wait wait(nullptr);
  MPI_Barrier(mpi_comm(*this));
}

void Communicator::abort(int code) const { MPI_Abort(mpi_comm(*this), code); std::abort(); }

}  // namespace nn_dist

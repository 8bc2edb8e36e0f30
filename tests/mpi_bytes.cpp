// A PMPI interposer for accumulate_test.py, loaded with LD_PRELOAD: counts the
// bytes each rank hands to MPI's sends and collectives (count x the type's
// size, as the caller passed them), and at MPI_Finalize writes the total to
// the file $NN_MPI_BYTES.<rank>. No effect on what MPI does.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

long long bytes = 0;

void count(int n, MPI_Datatype type) {
  int size = 0;
  PMPI_Type_size(type, &size);
  bytes += static_cast<long long>(n) * size;
}

}  // namespace

extern "C" {

int MPI_Allreduce(const void* in, void* out, int n, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  count(n, type);
  return PMPI_Allreduce(in, out, n, type, op, comm);
}

int MPI_Iallreduce(const void* in, void* out, int n, MPI_Datatype type, MPI_Op op, MPI_Comm comm,
                   MPI_Request* request) {
  count(n, type);
  return PMPI_Iallreduce(in, out, n, type, op, comm, request);
}

int MPI_Reduce(const void* in, void* out, int n, MPI_Datatype type, MPI_Op op, int root, MPI_Comm comm) {
  count(n, type);
  return PMPI_Reduce(in, out, n, type, op, root, comm);
}

int MPI_Bcast(void* data, int n, MPI_Datatype type, int root, MPI_Comm comm) {
  count(n, type);
  return PMPI_Bcast(data, n, type, root, comm);
}

int MPI_Allgather(const void* in, int n, MPI_Datatype type, void* out, int out_n, MPI_Datatype out_type,
                  MPI_Comm comm) {
  count(n, type);
  return PMPI_Allgather(in, n, type, out, out_n, out_type, comm);
}

int MPI_Send(const void* data, int n, MPI_Datatype type, int dest, int tag, MPI_Comm comm) {
  count(n, type);
  return PMPI_Send(data, n, type, dest, tag, comm);
}

int MPI_Isend(const void* data, int n, MPI_Datatype type, int dest, int tag, MPI_Comm comm, MPI_Request* request) {
  count(n, type);
  return PMPI_Isend(data, n, type, dest, tag, comm, request);
}

int MPI_Sendrecv(const void* send, int send_n, MPI_Datatype send_type, int dest, int send_tag, void* recv,
                 int recv_n, MPI_Datatype recv_type, int source, int recv_tag, MPI_Comm comm, MPI_Status* status) {
  count(send_n, send_type);
  return PMPI_Sendrecv(send, send_n, send_type, dest, send_tag, recv, recv_n, recv_type, source, recv_tag, comm,
                       status);
}

int MPI_Finalize() {
  const char* prefix = std::getenv("NN_MPI_BYTES");
  if (prefix != nullptr && *prefix != '\0') {
    int rank = 0;
    PMPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (std::FILE* f = std::fopen((std::string(prefix) + "." + std::to_string(rank)).c_str(), "w")) {
      std::fprintf(f, "%lld\n", bytes);
      std::fclose(f);
    }
  }
  return PMPI_Finalize();
}

}  // extern "C"

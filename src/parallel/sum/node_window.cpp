// The node's shared-memory window: allocation, mapping of every segment, and
// the job ranks of the node's ranks (for the messages of wait_for).
#include "parallel/sum/node_window.hpp"

#include <algorithm>

namespace nn_dist {

namespace {

// Segments are allocated 64 bytes larger and used from their first 64-byte
// boundary (the same offset in every process: mappings are page-aligned).
char* aligned(char* base) { return reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(base) + 63) / 64 * 64); }

}  // namespace

NodeWindow::NodeWindow(MPI_Comm node, MPI_Comm world, std::size_t bytes) {
  int node_size = 0;
  MPI_Comm_size(node, &node_size);
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true");  // each segment in its owner's memory
  char* mine = nullptr;
  MPI_Win_allocate_shared(static_cast<MPI_Aint>(bytes + 64), 1, info, node, &mine, &window_);
  MPI_Info_free(&info);
  std::fill(mine, mine + bytes + 64, 0);
  for (int r = 0; r < node_size; ++r) {
    MPI_Aint size = 0;
    int unit = 0;
    char* base = nullptr;
    MPI_Win_shared_query(window_, r, &size, &unit, &base);
    segments_.push_back(aligned(base));
  }
  MPI_Group node_group = MPI_GROUP_NULL, world_group = MPI_GROUP_NULL;
  MPI_Comm_group(node, &node_group);
  MPI_Comm_group(world, &world_group);
  std::vector<int> local(static_cast<std::size_t>(node_size));
  for (int r = 0; r < node_size; ++r) local[r] = r;
  world_ranks_.resize(local.size());
  MPI_Group_translate_ranks(node_group, node_size, local.data(), world_group, world_ranks_.data());
  MPI_Group_free(&node_group);
  MPI_Group_free(&world_group);
  MPI_Win_lock_all(MPI_MODE_NOCHECK, window_);
  MPI_Barrier(node);  // every segment zeroed before anyone reads one
}

NodeWindow::~NodeWindow() {
  MPI_Win_unlock_all(window_);
  MPI_Win_free(&window_);
}

std::unique_ptr<NodeWindow> share_packed_weights(MPI_Comm node, MPI_Comm world, const float* params, Mlp<float>* mlp) {
  const std::size_t elements = mlp->packed_weight_elements();
  if (elements == 0) return nullptr;
  int rank = 0;
  MPI_Comm_rank(node, &rank);
  auto window = std::make_unique<NodeWindow>(node, world, rank == 0 ? elements * sizeof(std::uint16_t) : 0);
  mlp->place_packed_weights(reinterpret_cast<std::uint16_t*>(window->segment(0)));
  if (rank == 0) mlp->pack_weights(params, 0, mlp->layout().total());
  return window;
}

}  // namespace nn_dist

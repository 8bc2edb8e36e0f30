// Open MPI's own allreduce over the whole gradient (kMpi), or no gradient sum
// at all (kNone: each rank trains its own model, a benchmark of the scaling
// ceiling); the loss sums are summed over the ranks either way.
#include "parallel/mpi_comm.hpp"
#include "parallel/sum/sums.hpp"

namespace nn_dist {

namespace {

class MpiSum : public GradientSync {
 public:
  MpiSum(const Communicator& comm, const SumSetup& setup)
      : GradientSync(comm, setup.sums, setup.grad_size, setup.mode, setup.reason) {}
  const double* wait_stats() override {
    MPI_Allreduce(MPI_IN_PLACE, stats_, kStepStats, MPI_DOUBLE, MPI_SUM, mpi_comm(comm_));
    return stats_;
  }

 protected:
  std::size_t num_slices() const override { return 1; }
  const float* finish_slice(std::size_t, std::size_t* begin, std::size_t* end, const float** second) override {
    *second = nullptr;
    if (mode_ == AllreduceMode::kMpi) {
      comm_.sum(sums_, size_);
    }
    *begin = 0;  // kNone: this rank's own gradient is the "sum"
    *end = size_;
    return sums_;
  }
};

}  // namespace

std::unique_ptr<GradientSync> make_mpi_sum(const Communicator& comm, const SumSetup& setup) {
  return std::make_unique<MpiSum>(comm, setup);
}

}  // namespace nn_dist

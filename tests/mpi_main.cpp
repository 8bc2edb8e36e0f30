// main() of the MPI test binary: initialises MPI, lets only rank 0 print,
// and makes every rank exit with the same code (failed on any rank = failed).
#include <gtest/gtest.h>

#include "nn_dist/parallel/comm.hpp"

int main(int argc, char** argv) {
  nn_dist::MpiSession mpi(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  nn_dist::Communicator comm;
  if (!comm.root()) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int local = RUN_ALL_TESTS();
  const long failed = comm.max(local != 0 ? 1 : 0);
  if (comm.root() && failed && local == 0) std::printf("a test failed on another rank\n");
  return failed ? 1 : 0;
}

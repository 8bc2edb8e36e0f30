// The stop signals' rule after training: a run that stopped on a signal
// takes a late first copy of it on a rank it had not reached (and ends on the
// one after); a run that did not stop on one ends at once. Each case runs in
// a forked child, as the handlers are process-wide.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nn_dist/train/signals.hpp"

namespace {

// The child installs the handlers, ends training (stopped on a signal or not),
// then receives `copies` SIGUSR1s and exits 0 if it is still alive.
// Returns the child's wait status.
int run_child(bool stopped_on_signal, int copies) {
  const pid_t pid = fork();
  if (pid == 0) {
    nn_dist::install_signal_handlers();
    nn_dist::end_stop_on_signal(stopped_on_signal);
    for (int i = 0; i < copies; ++i) ::raise(SIGUSR1);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

bool killed_by_usr1(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGUSR1; }

TEST(StopSignalsTest, LateCopyAfterAStopOnASignalIsTaken) {
  // The srun flake: rank 0 got USR1, every rank stopped at the agreed step and
  // checkpointed, then rank 1's own USR1 arrived; it must not kill rank 1.
  const int status = run_child(true, 1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST(StopSignalsTest, SecondSignalAfterAStopEndsTheProcess) {
  EXPECT_TRUE(killed_by_usr1(run_child(true, 2)));
}

TEST(StopSignalsTest, SignalAfterARunThatDidNotStopEndsTheProcessAtOnce) {
  // mpirun's SIGTERM to the ranks of a failing job must not wait.
  EXPECT_TRUE(killed_by_usr1(run_child(false, 1)));
}

}  // namespace

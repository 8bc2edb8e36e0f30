// Preemption: SIGTERM, SIGUSR1 and SIGINT ask the job to stop at the next
// step boundary with a checkpoint. The handler only records the signal and
// when it came; the trainer carries "stop" in the sum every step already
// makes (see StepStat), so all ranks stop at the same step, whichever ranks
// the signal reached. A second stop signal ends the process at once.
// Every other fatal signal (SIGHUP, SIGQUIT, SIGUSR2, SIGPIPE, SIGXCPU,
// SIGXFSZ) removes a half-written checkpoint and ends the process.
#pragma once

namespace nn_dist {

// Exit code of a job that stopped on a signal after writing a checkpoint:
// "checkpointed, resume me" (EX_TEMPFAIL). cluster/train.sbatch requeues on it.
constexpr int kResumeExitCode = 75;

// Installs the handlers (signals someone else already handles or ignores are
// left alone). Called before MPI_Init: a stop during start-up is then carried
// by the first step's sum like any other.
void install_signal_handlers();
// Once training is over (or failed), a stop signal ends the process at once
// again: mpirun's SIGTERM to the ranks of a failing job must not wait for a step.
// Except after a run that stopped on a signal (stopped_on_signal): the same
// preemption may still be on its way to the ranks it had not reached (the
// others stopped with them at the agreed step), so a rank that has had no
// stop signal yet takes one more as that late copy; any further one ends it.
void end_stop_on_signal(bool stopped_on_signal);
// The first stop signal received, or 0.
int stop_signal();
// Seconds since that signal (0 without one).
double seconds_since_stop_signal();
// "SIGTERM", "SIGUSR1", "SIGINT", or "signal N".
const char* signal_name(int signal);

}  // namespace nn_dist

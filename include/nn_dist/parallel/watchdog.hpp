// A deadline on every wait for the other ranks (--collective-timeout). A rank
// that is stopped (SIGSTOP, stuck I/O, a hung node) or cut off is not a death
// that mpirun notices: without a deadline its peers would wait for ever.
//
// The main thread marks each wait with a Wait object; a watchdog thread
// checks the deadline a few times a second and, once it has passed, prints
// one line naming this rank, the step and the wait, and aborts the whole job
// (MPI_Abort, exit code kAbortExitCode). Spin loops also call expired() and
// abort themselves with a more precise line (which ranks are missing).
#pragma once

#include <cstdint>
#include <string>

namespace nn_dist {

// Exit code of a job the watchdog aborted.
constexpr int kAbortExitCode = 3;

namespace watchdog {

// Starts the watchdog thread (after MPI_Init; idempotent) and stops it.
void start(int rank);
void stop();
// The deadline of every wait from now on, in seconds (default 300).
void set_timeout(double seconds);
double timeout();
// The global step being taken, for the messages.
void set_step(int64_t step);

// While a Wait lives this rank waits for the others, for at most
// scale x timeout. `what` says what it waits for ("summing the gradients").
// A Wait with what == nullptr is a plain collective: it keeps an enclosing
// Wait's deadline and text, or, with none, starts its own generic one.
class Wait {
 public:
  explicit Wait(const char* what, double scale = 1.0);
  ~Wait();
  Wait(const Wait&) = delete;
  Wait& operator=(const Wait&) = delete;

 private:
  const char* saved_what_;
  int64_t saved_deadline_;
  bool active_;
};

// Whether the innermost Wait has passed its deadline (cheap: one clock read).
bool expired();
// Prints "nn_dist: error: rank R: <what> at step S: <detail>" and aborts the
// job. Called once: a second caller (the thread, racing a spin loop) waits
// for the abort to end it.
[[noreturn]] void abort_job(const std::string& detail);

}  // namespace watchdog
}  // namespace nn_dist

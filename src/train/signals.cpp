// Signal handlers (see signals.hpp). Handlers touch only sig_atomic_t flags,
// clock_gettime, unlink and raise, all async-signal-safe.
#include "nn_dist/train/signals.hpp"

#include <signal.h>
#include <time.h>

#include <csignal>

#include "nn_dist/io/files.hpp"

namespace nn_dist {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
volatile std::sig_atomic_t g_stop_sec = 0;   // CLOCK_MONOTONIC at the signal
volatile std::sig_atomic_t g_stop_nsec = 0;

extern "C" void die_cleanly(int sig) {
  remove_temporary_file_from_signal_handler();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

extern "C" void request_stop(int sig) {
  if (g_stop_signal != 0) {  // asked twice: stop now
    die_cleanly(sig);
    return;
  }
  struct timespec now {};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  g_stop_sec = static_cast<std::sig_atomic_t>(now.tv_sec);
  g_stop_nsec = static_cast<std::sig_atomic_t>(now.tv_nsec);
  g_stop_signal = sig;
  note_stop_signal_from_handler();
}

void install(int sig, void (*handler)(int)) {
  struct sigaction old {};
  if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) return;  // someone else's, or ignored
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  // The handler only records: a system call it interrupts (in MPI_Init, or a
  // write to stdout's pipe) resumes instead of failing with EINTR.
  action.sa_flags = SA_RESTART;
  ::sigaction(sig, &action, nullptr);
}

}  // namespace

void install_signal_handlers() {
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) install(sig, request_stop);
  for (int sig : {SIGHUP, SIGQUIT, SIGUSR2, SIGPIPE, SIGXCPU, SIGXFSZ}) install(sig, die_cleanly);
}

void end_stop_on_signal(bool stopped_on_signal) {
  // request_stop already records a rank's first signal and ends it on the
  // second: exactly what a stopped run's ranks need (a late copy of the
  // preemption would otherwise kill a rank it had not reached yet, and the
  // job would end on that signal instead of 75; seen under srun).
  if (stopped_on_signal) return;
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) {
    struct sigaction current {};
    if (::sigaction(sig, nullptr, &current) != 0 || current.sa_handler != request_stop) continue;
    current.sa_handler = die_cleanly;
    ::sigaction(sig, &current, nullptr);
  }
}

int stop_signal() { return g_stop_signal; }

double seconds_since_stop_signal() {
  if (g_stop_signal == 0) return 0;
  struct timespec now {};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<double>(now.tv_sec - g_stop_sec) + 1e-9 * static_cast<double>(now.tv_nsec - g_stop_nsec);
}

const char* signal_name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGINT: return "SIGINT";
    default: return "a stop signal";
  }
}

}  // namespace nn_dist

// The watchdog thread and the deadlines of waits (see watchdog.hpp). The
// main thread only stores atomics; the thread calls MPI_Abort when a deadline
// passes (the one MPI call made outside the main thread: the job ends there).
#include "nn_dist/parallel/watchdog.hpp"

#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "nn_dist/common/text.hpp"

namespace nn_dist {
namespace watchdog {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr const char* kGeneric = "waiting for the other ranks";

std::atomic<const char*> g_what{nullptr};  // nullptr: not waiting
std::atomic<int64_t> g_deadline{0};        // steady-clock ns; 0: no deadline
std::atomic<int64_t> g_started{0};         // when the innermost wait began
std::atomic<int64_t> g_step{-1};
std::atomic<double> g_timeout{300.0};
std::atomic<bool> g_fired{false};
std::atomic<bool> g_running{false};
std::thread g_thread;
int g_rank = 0;

// Ranks fire 1 s apart (rank 0 first, then 1, ... up to 7): the first
// abort usually ends the job before the others have their say, so the job
// ends with one line, from the lowest waiting rank.
int64_t stagger_ns() { return static_cast<int64_t>(g_rank % 8) * 1'000'000'000; }

std::mutex g_mutex;  // with g_wake: stop() ends the thread's sleep at once
std::condition_variable g_wake;

void watch() {
  while (g_running.load(std::memory_order_acquire)) {
    {
      std::unique_lock<std::mutex> lock(g_mutex);
      g_wake.wait_for(lock, std::chrono::milliseconds(100),
                      [] { return !g_running.load(std::memory_order_acquire); });
    }
    const int64_t deadline = g_deadline.load(std::memory_order_relaxed);
    // Half a second of grace: a spin loop that checks itself says more.
    if (deadline != 0 && now_ns() > deadline + stagger_ns() + 500'000'000) {
      abort_job("no reply from the other ranks (one may be stopped, hung, dead or cut off)");
    }
  }
}

}  // namespace

void start(int rank) {
  if (g_running.exchange(true)) return;
  g_rank = rank;
  // Signals go to the main thread (the stop handlers): the thread starts with all blocked.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  g_thread = std::thread(watch);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void stop() {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_running.exchange(false)) return;
  }
  g_wake.notify_all();
  g_thread.join();
}

void set_timeout(double seconds) { g_timeout.store(seconds); }
double timeout() { return g_timeout.load(); }
void set_step(int64_t step) { g_step.store(step, std::memory_order_relaxed); }

Wait::Wait(const char* what, double scale)
    : saved_what_(g_what.load(std::memory_order_relaxed)),
      saved_deadline_(g_deadline.load(std::memory_order_relaxed)),
      active_(what != nullptr || saved_what_ == nullptr) {
  if (!active_) return;  // a collective inside an enclosing wait: its deadline holds
  const int64_t now = now_ns();
  g_started.store(now, std::memory_order_relaxed);
  g_what.store(what != nullptr ? what : kGeneric, std::memory_order_relaxed);
  g_deadline.store(now + static_cast<int64_t>(scale * g_timeout.load(std::memory_order_relaxed) * 1e9),
                   std::memory_order_relaxed);
}

Wait::~Wait() {
  if (!active_) return;
  g_deadline.store(saved_deadline_, std::memory_order_relaxed);
  g_what.store(saved_what_, std::memory_order_relaxed);
}

bool expired() {
  const int64_t deadline = g_deadline.load(std::memory_order_relaxed);
  return deadline != 0 && now_ns() > deadline + stagger_ns();
}

void abort_job(const std::string& detail) {
  if (g_fired.exchange(true)) {
    for (;;) ::pause();  // the other caller is aborting the job
  }
  const char* what = g_what.load();
  const int64_t step = g_step.load();
  const double waited = static_cast<double>(now_ns() - g_started.load()) / 1e9;
  const std::string where = step >= 0 ? " at step " + std::to_string(step) : " during setup";
  std::fprintf(stderr,
               "nn_dist: error: rank %d: %s%s: %s; waited %.1f s (--collective-timeout %g): aborting the job\n",
               g_rank, what != nullptr ? what : kGeneric, where.c_str(), printable(detail, 500).c_str(), waited,
               g_timeout.load());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, kAbortExitCode);
  ::_exit(kAbortExitCode);
}

}  // namespace watchdog
}  // namespace nn_dist

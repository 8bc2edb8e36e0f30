// Where stdout ends up (see terminal.hpp): under mpirun, the process tree is
// followed up to the process that reads this rank's pseudo-terminal (mpirun),
// and the file behind that process's stdout decides. Linux /proc only; any
// doubt means plain lines, which read well everywhere.
#include "nn_dist/train/terminal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

namespace nn_dist {

namespace {

bool set(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0 && std::strcmp(value, "false") != 0;
}

// The parent of process pid, from /proc/PID/stat ("pid (name) state ppid ...",
// where the name may hold spaces and parentheses), or 0.
long parent_of(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const std::size_t name_end = text.rfind(')');
  long parent = 0;
  char state = 0;
  if (name_end == std::string::npos || std::sscanf(text.c_str() + name_end + 1, " %c %ld", &state, &parent) != 2) {
    return 0;
  }
  return parent;
}

// Whether the file at path (a /proc/PID/fd/N link) is a terminal. Only
// character devices are opened: a tty, or a device such as /dev/null.
bool is_terminal(const std::string& path, const struct stat& st) {
  if (!S_ISCHR(st.st_mode)) return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;
  const bool terminal = ::isatty(fd) == 1;
  ::close(fd);
  return terminal;
}

}  // namespace

bool output_reaches_terminal() {
  // A batch job's output goes to a file, whatever the ranks are given.
  if (std::getenv("SLURM_JOB_ID") || std::getenv("PBS_JOBID") || std::getenv("LSB_JOBID")) return false;
  if (::isatty(STDOUT_FILENO) != 1) return false;
  if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr) return true;  // not started by mpirun: stdout is the user's
  // mpirun writing each rank's output to files (--output-filename).
  if (set("OMPI_MCA_orte_output_filename")) return false;
  // A rank on another node than mpirun: its parent is an orted, not mpirun.
  const char* hnp = std::getenv("OMPI_MCA_orte_hnp_uri");
  const char* daemon = std::getenv("OMPI_MCA_orte_local_daemon_uri");
  if (hnp != nullptr && daemon != nullptr && std::strcmp(hnp, daemon) != 0) return false;
  struct stat mine {};
  if (::fstat(STDOUT_FILENO, &mine) != 0) return false;
  // Up past wrappers that share this pseudo-terminal (sh -c, numactl, time)
  // to the first process whose stdout is another file: mpirun.
  long pid = static_cast<long>(::getppid());
  for (int depth = 0; depth < 32 && pid > 1; ++depth) {
    const std::string out = "/proc/" + std::to_string(pid) + "/fd/1";
    struct stat st {};
    if (::stat(out.c_str(), &st) != 0) return false;  // not ours to look at, or no /proc
    if (!S_ISCHR(st.st_mode) || st.st_rdev != mine.st_rdev) return is_terminal(out, st);
    pid = parent_of(pid);
  }
  return false;
}

}  // namespace nn_dist

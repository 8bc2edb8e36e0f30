// File checks by kind and identity (stat, not string comparison), atomic
// whole-file writes, and the signal-safe removal of their temporary file.
#include "nn_dist/io/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits.h>

#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"

namespace nn_dist {

namespace fs = std::filesystem;

namespace {

std::string quoted(const std::string& path) { return "'" + printable(path, 200) + "'"; }

std::string errno_text(int error) { return std::strerror(error); }

// What a non-regular file is, for "is a FIFO (named pipe), not a regular file".
std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// stat() that explains itself: ENOENT on a path that is itself a symlink is a dangling link.
bool stat_or_explain(const std::string& path, struct stat* st, std::string* why) {
  if (::stat(path.c_str(), st) == 0) return true;
  const int error = errno;
  struct stat link {};
  if (error == ENOENT && ::lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
    std::error_code ec;
    *why = "is a symbolic link to " + quoted(fs::read_symlink(path, ec).string()) + ", which does not exist";
  } else if (error == ENOENT) {
    *why = "";  // absent
  } else if (error == ENOTDIR) {
    *why = "a part of the path is not a folder";
  } else {
    *why = "cannot be examined (" + errno_text(error) + ")";
  }
  return false;
}

std::string hostname() {
  char name[HOST_NAME_MAX + 1] = {0};
  if (::gethostname(name, sizeof name - 1) != 0) return "host";
  return name;
}

fs::path folder_of(const fs::path& path) { return path.has_parent_path() ? path.parent_path() : fs::path("."); }

// ".ck.h5.tmp.HOST.PID" beside ck.h5: unique per process, and recognisable
// as this host's when a later run looks for leftovers.
std::string temp_prefix(const fs::path& path) { return "." + path.filename().string() + ".tmp."; }
std::string temp_path(const fs::path& path) {
  return (folder_of(path) / (temp_prefix(path) + hostname() + "." + std::to_string(::getpid()))).string();
}

// The temporary file being written, for the signal handler. A fixed buffer
// and a flag: the handler may only read plain memory and call unlink().
char g_temp_file[PATH_MAX + 1];
volatile std::sig_atomic_t g_temp_set = 0;

void set_temp(const std::string& path) {
  g_temp_set = 0;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  const std::size_t n = std::min(path.size(), sizeof g_temp_file - 1);
  std::memcpy(g_temp_file, path.data(), n);
  g_temp_file[n] = '\0';
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the name is whole before the flag says so
  g_temp_set = 1;
}

void clear_temp() { g_temp_set = 0; }

extern "C" void remove_temporary_file_and_end(int sig) {
  remove_temporary_file_from_signal_handler();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void write_all(int fd, const char* data, std::size_t size, int* error) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = n < 0 ? errno : ENOSPC;  // a write of 0 bytes: the device takes no more
      return;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// Tries what writing target will do (create a file beside it), now rather
// than after an epoch of training.
void probe_new_file(const fs::path& target, const std::string& what) {
  const std::string probe = temp_path(target);
  set_temp(probe);  // a signal now must not leave the probe behind
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  const int error = errno;
  if (fd >= 0) ::close(fd);
  ::unlink(probe.c_str());
  clear_temp();
  if (fd < 0) {
    throw Error(what + ": cannot create files in folder " + quoted(folder_of(target).string()) + " (" +
                errno_text(error) + ")");
  }
}

// Set by the stop signals' handler, for the test-only pause.
volatile std::sig_atomic_t g_stop_noted = 0;

// The test-only pause of write_file_atomically (see kPauseInWriteVariable in
// files.hpp), polled every 10 ms: the handler may not write files itself.
void pause_for_test(const std::string& tmp) {
  static bool paused = false;  // once per process: the stop's own checkpoint then goes through
  const char* marker = std::getenv(kPauseInWriteVariable);
  if (marker == nullptr || *marker == '\0' || paused) return;
  paused = true;
  g_stop_noted = 0;
  const std::string part = std::string(marker) + ".part";  // renamed: the test never reads half a marker
  std::ofstream(part) << tmp << '\n';
  ::rename(part.c_str(), marker);
  bool noted = false;
  const timespec tick{0, 10 * 1000 * 1000};
  for (int i = 0; i < 12000 && ::access(marker, F_OK) == 0; ++i) {
    if (g_stop_noted && !noted) {
      noted = true;
      const int fd = ::open(marker, O_WRONLY | O_APPEND | O_CLOEXEC);
      if (fd >= 0) {
        int error = 0;
        write_all(fd, "stop signal\n", 12, &error);
        ::close(fd);
      }
    }
    ::nanosleep(&tick, nullptr);
  }
}

}  // namespace

void require_input_file(const std::string& path, const std::string& what) {
  if (path.empty()) throw Error(what + ": the path is empty");
  struct stat st {};
  std::string why;
  if (!stat_or_explain(path, &st, &why)) throw Error(what + ": " + (why.empty() ? "file not found" : why));
  if (S_ISDIR(st.st_mode)) throw Error(what + ": is a directory, not a file");
  if (!S_ISREG(st.st_mode)) throw Error(what + ": is " + kind_of(st.st_mode) + ", not a regular file");
  if (::access(path.c_str(), R_OK) != 0) throw Error(what + ": cannot be read (" + errno_text(errno) + ")");
}

std::string require_output_file(const std::string& path, const std::string& what) {
  if (path.empty()) throw Error(what + ": the path is empty");
  struct stat st {};
  std::string why;
  fs::path target(path);
  if (stat_or_explain(path, &st, &why)) {
    if (S_ISDIR(st.st_mode)) throw Error(what + ": is a directory; give a file name");
    if (!S_ISREG(st.st_mode)) {
      throw Error(what + ": is " + kind_of(st.st_mode) + "; nn_dist writes outputs only as regular files");
    }
    std::error_code ec;
    target = fs::canonical(path, ec);  // write to the symlink's target, not over the link
    if (ec) throw Error(what + ": cannot be resolved (" + ec.message() + ")");
  } else if (!why.empty()) {
    throw Error(what + ": " + why);
  } else if (!path.empty() && path.back() == '/') {
    throw Error(what + ": ends with '/'; give a file name");
  }
  const fs::path folder = folder_of(target);
  struct stat dir {};
  if (::stat(folder.c_str(), &dir) != 0) {
    throw Error(what + ": folder " + quoted(folder.string()) + " does not exist");
  }
  if (!S_ISDIR(dir.st_mode)) throw Error(what + ": " + quoted(folder.string()) + " is not a folder");
  probe_new_file(target, what);
  if (::access(target.c_str(), F_OK) == 0 && ::access(target.c_str(), W_OK) != 0) {
    throw Error(what + ": cannot be written (" + errno_text(errno) + ")");
  }
  return target.string();
}

bool path_exists(const std::string& path, const std::string& what) {
  struct stat st {};
  std::string why;
  if (stat_or_explain(path, &st, &why)) return true;
  if (!why.empty()) throw Error(what + ": " + why);
  return false;
}

std::string require_output_folder(const std::string& path, const std::string& what) {
  if (path.empty()) throw Error(what + ": the path is empty");
  if (!path_exists(path, what) && ::mkdir(path.c_str(), 0777) != 0 && errno != EEXIST) {
    const int error = errno;
    throw Error(what + ": cannot create the folder (" +
                (error == ENOENT ? std::string("its parent does not exist") : errno_text(error)) + ")");
  }
  struct stat st {};
  std::string why;
  if (!stat_or_explain(path, &st, &why)) throw Error(what + ": " + (why.empty() ? "vanished" : why));
  if (!S_ISDIR(st.st_mode)) throw Error(what + ": is not a folder");
  std::error_code ec;
  const fs::path folder = fs::canonical(path, ec);
  if (ec) throw Error(what + ": cannot be resolved (" + ec.message() + ")");
  probe_new_file(folder / ".probe", what);
  return folder.string();
}

namespace {

// A file's identity: (device, inode) when it exists, else its resolved path.
struct Identity {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  std::string resolved;
  bool operator==(const Identity& o) const {
    return exists == o.exists && (exists ? dev == o.dev && ino == o.ino : resolved == o.resolved);
  }
};

Identity identity_of(const std::string& path) {
  Identity id;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    id.exists = true;
    id.dev = st.st_dev;
    id.ino = st.st_ino;
  } else {
    std::error_code ec;
    const fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
    id.resolved = ec ? fs::absolute(path).lexically_normal().string() : p.string();
  }
  return id;
}

}  // namespace

void require_distinct_files(const std::vector<NamedPath>& inputs, const std::vector<NamedPath>& outputs,
                            const std::vector<std::pair<std::string, std::string>>& allowed) {
  const auto may_alias = [&](const std::string& out_flag, const std::string& in_flag) {
    for (const auto& [o, i] : allowed) {
      if (o == out_flag && i == in_flag) return true;
    }
    return false;
  };
  const auto name = [](const NamedPath& p) { return p.flag + " " + printable(p.path, 200); };
  for (std::size_t o = 0; o < outputs.size(); ++o) {
    if (outputs[o].path.empty()) continue;
    const Identity out = identity_of(outputs[o].path);
    for (const NamedPath& in : inputs) {
      if (in.path.empty() || may_alias(outputs[o].flag, in.flag)) continue;
      if (identity_of(in.path) == out) {
        throw Error(name(outputs[o]) + ": is the same file as " + name(in) +
                    "; an output must not overwrite an input (give it another path)");
      }
    }
    for (std::size_t other = 0; other < o; ++other) {
      if (!outputs[other].path.empty() && identity_of(outputs[other].path) == out) {
        throw Error(name(outputs[o]) + ": is the same file as " + name(outputs[other]) +
                    "; give each output its own file");
      }
    }
  }
}

namespace {

// Gives the anonymous file behind fd the name `name`.
bool link_anonymous(int fd, const std::string& name) {
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) return true;
  return ::linkat(fd, "", AT_FDCWD, name.c_str(), AT_EMPTY_PATH) == 0;  // without /proc (needs a capability)
}

}  // namespace

void write_file_atomically(const std::string& path, const void* data, std::size_t size, const std::string& what) {
  const std::string tmp = temp_path(path);
  const std::string kept = ::access(path.c_str(), F_OK) == 0 ? "; the previous file is unchanged" : "";
  set_temp(tmp);
  const auto fail = [&](const std::string& step, int error) {
    ::unlink(tmp.c_str());
    clear_temp();
    throw Error(what + ": " + step + " failed (" + errno_text(error) + ")" + kept);
  };
  ::unlink(tmp.c_str());  // a leftover of this very process id, from a killed run
  // Where the file system allows, the new file has no name until it is
  // complete: a process killed while writing (SIGKILL cannot be caught)
  // leaves nothing behind. Elsewhere (NFS, Lustre) it is written under tmp.
  int fd = ::open(folder_of(path).c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
  const bool anonymous = fd >= 0;
  if (!anonymous) fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail("creating the temporary file " + quoted(tmp), errno);
  int error = 0;
  write_all(fd, static_cast<const char*>(data), size, &error);
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (error == 0 && anonymous && !link_anonymous(fd, tmp)) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error != 0) fail("writing", error);
  pause_for_test(tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("renaming the new file into place", errno);
  clear_temp();
  const int dir = ::open(folder_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);  // the rename itself reaches the disk
    ::close(dir);
  }
}

std::vector<std::string> remove_stale_temporaries(const std::string& folder,
                                                  const std::function<bool(const std::string&)>& owns) {
  std::vector<std::string> removed;
  const std::string host = hostname();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    // ".NAME.tmp.HOST.PID", or ".NAME.tmp.PID" from versions before the host was named.
    const std::string name = entry.path().filename().string();
    const std::size_t tmp = name.rfind(".tmp.");
    if (name.empty() || name[0] != '.' || tmp == std::string::npos || tmp < 2 || !owns(name.substr(1, tmp - 1))) {
      continue;
    }
    const std::string rest = name.substr(tmp + 5);
    const std::size_t dot = rest.rfind('.');
    const std::string owner_host = dot == std::string::npos ? host : rest.substr(0, dot);
    const std::string pid_text = dot == std::string::npos ? rest : rest.substr(dot + 1);
    if (owner_host != host || pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos ||
        pid_text.size() > 9) {
      continue;  // another host's, or not ours at all: leave it
    }
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;  // still running
    if (fs::remove(entry.path(), ec)) removed.push_back(entry.path().string());
  }
  return removed;
}

std::vector<std::string> remove_stale_temporaries(const std::string& path) {
  const std::string file = fs::path(path).filename().string();
  return remove_stale_temporaries(folder_of(fs::path(path)).string(), [&](const std::string& name) { return name == file; });
}

bool same_file(const std::string& a, const std::string& b) { return identity_of(a) == identity_of(b); }

void remove_temporary_file_from_signal_handler() {
  if (g_temp_set) ::unlink(g_temp_file);
}

std::string temporary_path(const std::string& path) { return temp_path(fs::path(path)); }

void set_temporary_file(const std::string& path) {
  if (path.empty()) {
    clear_temp();
  } else {
    set_temp(path);
  }
}

void remove_temporary_file_on_signals() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGXCPU, SIGXFSZ}) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;  // ignored, or someone else's
    struct sigaction action {};
    action.sa_handler = remove_temporary_file_and_end;
    sigemptyset(&action.sa_mask);
    ::sigaction(sig, &action, nullptr);
  }
}

void note_stop_signal_from_handler() { g_stop_noted = 1; }

TextFileWriter::~TextFileWriter() { close(); }

void TextFileWriter::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void TextFileWriter::open(const std::string& path, bool append, const std::string& what) {
  what_ = what;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
  if (fd_ < 0) throw Error(what_ + ": cannot open for writing (" + errno_text(errno) + ")");
}

void TextFileWriter::write(const std::string& text) {
  int error = 0;
  write_all(fd_, text.data(), text.size(), &error);
  if (error != 0) throw Error(what_ + ": write failed (" + errno_text(error) + ")");
}

}  // namespace nn_dist

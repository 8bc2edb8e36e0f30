// Paths as the files they name. Inputs must be readable regular files (after
// symlinks); outputs must be regular files or absent, in a folder that takes
// new files, and never the same file as an input or as another output.
// Whole-file writes go through a temporary file that is removed on every exit
// path, signals included. Knows nothing of MPI: the caller agrees on errors.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace nn_dist {

// Throws Error "<what>: ..." unless path names an existing regular file that
// this process may read: a folder, FIFO, device, socket or dangling symlink is
// refused before anything opens it (a FIFO would block every rank forever).
void require_input_file(const std::string& path, const std::string& what);

// Checks an output before any work: path is absent or a regular file (a
// symlink is followed to its target), and its folder exists and accepts a new
// file (a probe file is created and removed). Returns the path to write,
// with symlinks resolved, so a rename replaces the target, not the link.
std::string require_output_file(const std::string& path, const std::string& what);

// Whether anything is at path (false: nothing, not even a dangling symlink).
// What keeps path from being examined (a symlink loop, a name too long, a
// folder on the way that cannot be searched, a file where a folder should
// be, a dangling symlink) is an Error "<what>: ...", never "absent".
bool path_exists(const std::string& path, const std::string& what);

// Checks an output folder before any work: creates it if absent (its parent
// must exist), refuses anything that is not a folder, and probes that it
// takes new files. Returns the folder with symlinks resolved.
std::string require_output_folder(const std::string& path, const std::string& what);

struct NamedPath {
  std::string flag;  // e.g. "--data"
  std::string path;
};

// Throws Error when an output is the same file as an input or as another
// output: the same device and inode (hard links, symlinks, "./x"), or for
// files not yet created the same resolved path. allowed lists the (output
// flag, input flag) pairs that may name one file (e.g. --checkpoint, --resume).
void require_distinct_files(const std::vector<NamedPath>& inputs, const std::vector<NamedPath>& outputs,
                            const std::vector<std::pair<std::string, std::string>>& allowed);

// Writes size bytes to path through a temporary file beside it (write, fsync,
// rename, fsync the folder): path holds either the old or the new contents.
// Any failure (a full disk, an I/O error) removes the temporary file and
// throws Error "<what>: writing failed (...)"; the old file is untouched.
void write_file_atomically(const std::string& path, const void* data, std::size_t size, const std::string& what);

// Test-only: with NN_DIST_TEST_PAUSE_IN_WRITE=MARKER in the environment, the
// first write_file_atomically of the process stops once its temporary file is
// complete and named but not yet renamed into place. It creates MARKER (first
// line: the temporary file's path) and waits until MARKER is removed (at most
// 120 s), adding the line "stop signal" if one arrives meanwhile. Tests signal
// or kill the writer there, so the event lands inside a write for certain
// (tests/hostile_test.cpp, tests/fault_test.sh). Unset, as in every real run:
// one getenv per write.
constexpr const char* kPauseInWriteVariable = "NN_DIST_TEST_PAUSE_IN_WRITE";
// For that pause: records that a stop signal arrived (async-signal-safe).
void note_stop_signal_from_handler();

// Temporary files that earlier runs on this host left beside path when they
// were killed (their process is gone): removes them and returns their names.
std::vector<std::string> remove_stale_temporaries(const std::string& path);
// The same for every file in folder whose name `owns` accepts (e.g. all of a
// folder's numbered checkpoints).
std::vector<std::string> remove_stale_temporaries(const std::string& folder,
                                                  const std::function<bool(const std::string& name)>& owns);

// Whether two paths name one file (device and inode; resolved paths for files
// that do not exist), as require_distinct_files compares them.
bool same_file(const std::string& a, const std::string& b);

// Removes the temporary file being written by write_file_atomically, if
// any: for signal handlers (async-signal-safe) before the process ends.
void remove_temporary_file_from_signal_handler();

// The temporary name beside path that a whole-file write goes through,
// ".NAME.tmp.HOST.PID" (the form remove_stale_temporaries knows), and for
// writers of their own (nn_convert's HDF5 files): which file a signal
// removes ("" for none).
std::string temporary_path(const std::string& path);
void set_temporary_file(const std::string& path);
// For programs without signal handlers of their own: SIGINT, SIGTERM, SIGHUP
// and the other signals that end a process remove the temporary file, then
// end it by the same signal. A signal the process was started ignoring (nohup) stays ignored.
void remove_temporary_file_on_signals();

// A text file written in whole lines; every write is checked, so a full disk
// or a device error is an Error naming the file, never a silently short file.
class TextFileWriter {
 public:
  TextFileWriter() = default;
  ~TextFileWriter();
  TextFileWriter(const TextFileWriter&) = delete;
  TextFileWriter& operator=(const TextFileWriter&) = delete;

  // Creates or truncates path (append: adds to its end); `what` names it in errors.
  void open(const std::string& path, bool append, const std::string& what);
  bool is_open() const { return fd_ >= 0; }
  void write(const std::string& text);
  void close();

 private:
  int fd_ = -1;
  std::string what_;
};

}  // namespace nn_dist

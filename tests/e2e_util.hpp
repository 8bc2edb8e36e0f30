// Helpers for the end-to-end tests of the real binaries: running them under
// mpirun with a deadline (or in the background, to act while they run), the
// error contract (one line, exit 2 on every rank), snapshots that prove files
// unchanged, and HDF5 files written by hand.
#pragma once

#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "nn_dist/io/dataset.hpp"
#include "test_util.hpp"

namespace nn_dist::e2e {

namespace fs = std::filesystem;

// A hung job fails its test after this long instead of stalling the suite.
// Bad input is rejected before training, in well under a second; the
// deadline only tells a hang from a slow start of mpirun on a loaded machine.
constexpr int kTrainingTimeoutSeconds = 120;
constexpr int kErrorTimeoutSeconds = 60;
constexpr int kTimedOut = 124;  // timeout(1)'s exit code

inline std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A hand edit: after changing a checkpoint's HDF5 contents, its nn_dist
// header (length and checksum in the 512-byte user block) no longer holds.
// Blanking the header makes the file one "without a checksum", as other
// tools write them, so the readers' own checks can be tested.
inline void drop_checksum(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  char head[18] = {};
  f.read(head, sizeof head);
  if (std::string(head, sizeof head) != "nn_dist checkpoint") return;
  f.seekp(0);
  const std::string zeros(512, '\0');
  f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
}

inline std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

inline std::vector<std::string> lines_containing(const std::string& text, const std::string& word) {
  std::vector<std::string> found;
  for (const std::string& line : lines_of(text)) {
    if (line.find(word) != std::string::npos) found.push_back(line);
  }
  return found;
}

inline bool contains(const std::string& text, const std::string& word) { return text.find(word) != std::string::npos; }

struct RunResult {
  int code = -1;                // exit code of the command (128 + signal if killed)
  std::string out, err;
  std::vector<int> rank_codes;  // with per-rank codes: rank r's own exit code, -1 if it left none
  std::string command;
};

// Runs a shell command under `timeout`, capturing stdout and stderr in `dir`.
inline RunResult run_shell(const std::string& dir, const std::string& command,
                    int timeout_seconds = kTrainingTimeoutSeconds) {
  static int counter = 0;
  fs::create_directories(dir + "/logs");  // kept apart, so snapshots of dir see only the run's own files
  const std::string base = dir + "/logs/run" + std::to_string(++counter);
  RunResult r;
  r.command = command;
  const std::string full = "timeout -k 5 " + std::to_string(timeout_seconds) + " " + command + " >" +
                           quote(base + ".out") + " 2>" + quote(base + ".err");
  const int status = std::system(full.c_str());
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = file_bytes(base + ".out");
  r.err = file_bytes(base + ".err");
  return r;
}

inline std::string mpirun_prefix(int ranks) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  setenv("OMP_NUM_THREADS", "1", 0);
  return std::string(NN_MPIEXEC) + " -np " + std::to_string(ranks) +
         " --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none";
}

inline std::string joined(const std::vector<std::string>& args) {
  std::string s;
  for (const std::string& a : args) s += " " + quote(a);
  return s;
}

// nn_dist under plain mpirun: the exit code is what a job script sees.
// launcher: a command mpirun runs under (e.g. setpriv), or "".
inline RunResult run_nn_dist(const std::string& dir, int ranks, const std::vector<std::string>& args,
                      int timeout_seconds = kTrainingTimeoutSeconds, const std::string& launcher = "") {
  return run_shell(dir, launcher + mpirun_prefix(ranks) + " " + quote(NN_DIST_BIN) + joined(args), timeout_seconds);
}

// nn_dist with each rank's own exit code recorded. mpirun is told not to kill
// the other ranks when the first one exits non-zero, so a rank that would
// hang shows up as a timeout instead of being killed quietly.
inline RunResult run_nn_dist_per_rank(const std::string& dir, int ranks, const std::vector<std::string>& args,
                                      const std::string& launcher = "") {
  static int counter = 0;
  fs::create_directories(dir + "/logs");
  const std::string prefix = dir + "/logs/rank_code" + std::to_string(++counter) + ".";
  // The trap ends a hung rank when `timeout` stops mpirun, which signals only its direct children.
  const std::string wrapper = "\"$0\" \"$@\" & pid=$!; trap 'kill -9 $pid; exit 143' TERM INT HUP; wait $pid; "
                              "code=$?; echo $code > " + prefix + "$OMPI_COMM_WORLD_RANK; exit $code";
  RunResult r = run_shell(dir, launcher + mpirun_prefix(ranks) + " --mca orte_abort_on_non_zero_status 0 sh -c " +
                                   quote(wrapper) + " " + quote(NN_DIST_BIN) + joined(args),
                           kErrorTimeoutSeconds);
  for (int rank = 0; rank < ranks; ++rank) {
    const std::string text = file_bytes(prefix + std::to_string(rank));
    r.rank_codes.push_back(text.empty() ? -1 : std::atoi(text.c_str()));
  }
  return r;
}

// ---- runs that a test acts on while they go (signals, pauses), each wait with a deadline

// Polls `happened` every 10 ms until it holds (true) or `seconds` have passed (false).
inline bool wait_for(const std::function<bool()>& happened, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!happened()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// The processes whose parent is `parent`, from /proc.
inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const std::size_t close = line.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos) continue;
    std::istringstream fields(line.substr(close + 1));
    std::string state;
    long ppid = 0;
    if (fields >> state >> ppid && ppid == parent) found.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return found;
}

// A variable of a running process's environment, or "" (gone, or not set).
inline std::string environment_of(pid_t pid, const std::string& variable) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  for (std::string entry; std::getline(in, entry, '\0');) {
    if (entry.rfind(variable + "=", 0) == 0) return entry.substr(variable.size() + 1);
  }
  return "";
}

// A command run by sh in the background (its output in dir/logs), so that
// the test can act while it runs. Whatever is left of it is killed at the end.
class BackgroundRun {
 public:
  BackgroundRun(const std::string& dir, const std::string& command) {
    static int counter = 0;
    fs::create_directories(dir + "/logs");
    base_ = dir + "/logs/background" + std::to_string(++counter);
    result_.command = command;
    // exec: the command itself (mpirun) has this process id.
    const std::string full = "exec " + command + " >" + quote(base_ + ".out") + " 2>" + quote(base_ + ".err");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~BackgroundRun() {
    if (pid_ > 0) end_now();
  }
  BackgroundRun(const BackgroundRun&) = delete;
  BackgroundRun& operator=(const BackgroundRun&) = delete;

  pid_t pid() const { return pid_; }

  // With the command an mpirun of `ranks` ranks: their process ids in rank
  // order, once all have started; empty if they have not within `seconds`.
  std::vector<pid_t> rank_pids(int ranks, double seconds) const {
    std::vector<pid_t> pids;
    wait_for(
        [&] {
          pids.assign(ranks, 0);
          int seen = 0;
          for (pid_t child : children_of(pid_)) {
            const std::string rank = environment_of(child, "OMPI_COMM_WORLD_RANK");
            if (rank.empty()) continue;
            const int r = std::atoi(rank.c_str());
            if (r >= 0 && r < ranks && pids[r] == 0) {
              pids[r] = child;
              ++seen;
            }
          }
          return seen == ranks;
        },
        seconds);
    if (std::count(pids.begin(), pids.end(), 0) > 0) pids.clear();
    return pids;
  }

  // Waits for the command to end, at most `seconds`; past that it is killed
  // and the code is kTimedOut. Its output is read either way.
  RunResult wait(double seconds) {
    int status = 0;
    const bool ended = pid_ > 0 && wait_for([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, seconds);
    if (ended) {
      result_.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      pid_ = -1;
    } else if (pid_ > 0) {
      end_now();
      result_.code = kTimedOut;
    }
    result_.out = file_bytes(base_ + ".out");
    result_.err = file_bytes(base_ + ".err");
    return result_;
  }

 private:
  // mpirun puts its ranks in process groups of their own: each is killed by its id.
  void end_now() {
    for (pid_t child : children_of(pid_)) ::kill(child, SIGKILL);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  pid_t pid_ = -1;
  std::string base_;
  RunResult result_;
};

inline RunResult run_datagen(const std::string& dir, const std::vector<std::string>& args) {
  return run_shell(dir, quote(NN_DATAGEN_BIN) + joined(args));
}

inline std::string describe(const RunResult& r) {
  return "command: " + r.command + "\nexit code: " + std::to_string(r.code) + "\n--- stdout ---\n" + r.out +
         "--- stderr ---\n" + r.err;
}

inline void expect_success(const RunResult& r) {
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(lines_containing(r.err, "error").empty()) << describe(r);
}

// The error contract: one line "nn_dist: error: ..." naming what is wrong,
// and no sign of an MPI abort, an uncaught exception or a signal.
inline void expect_one_clean_error_line(const RunResult& r, const std::vector<std::string>& expected) {
  const std::vector<std::string> error_lines = lines_containing(r.out + r.err, "error");
  ASSERT_EQ(error_lines.size(), 1u) << describe(r);
  const std::string& line = error_lines[0];
  EXPECT_EQ(line.rfind("nn_dist: error: ", 0), 0u) << "not printed once by rank 0:\n" << describe(r);
  EXPECT_TRUE(contains(r.err, line)) << "the error went to stdout:\n" << describe(r);
  for (const std::string& word : expected) {
    EXPECT_TRUE(contains(line, word)) << "missing '" << word << "'\n" << describe(r);
  }
  for (const char* bad : {"MPI_ABORT", "Abort", "terminate called", "Segmentation", "core dumped", "Signal:",
                          "what():", "Traceback"}) {
    EXPECT_FALSE(contains(r.out + r.err, bad)) << "found '" << bad << "'\n" << describe(r);
  }
}

// Fails the job with a clear error at `ranks` ranks: exit code 2 from every
// rank on its own (first run), and from mpirun as a job script sees it (second).
inline RunResult expect_clean_failure(const std::string& dir, int ranks, const std::vector<std::string>& args,
                                      const std::vector<std::string>& expected, const std::string& launcher = "") {
  SCOPED_TRACE("at " + std::to_string(ranks) + " ranks");
  const RunResult per_rank = run_nn_dist_per_rank(dir, ranks, args, launcher);
  EXPECT_NE(per_rank.code, kTimedOut) << "a rank was still running after " << kErrorTimeoutSeconds << " s\n"
                                      << describe(per_rank);
  for (int rank = 0; rank < ranks; ++rank) {
    EXPECT_EQ(per_rank.rank_codes[rank], 2) << "rank " << rank << "\n" << describe(per_rank);
  }
  expect_one_clean_error_line(per_rank, expected);

  // What a job script sees. When a rank exits non-zero, mpirun ends the job: SIGTERM to the ranks, then
  // odls_base_sigkill_timeout (1 s) of waiting even when they have all exited, then SIGKILL. The run
  // above showed that every rank exits by itself, so this one skips mpirun's wait (0.35 s, not 1.4 s).
  const RunResult plain =
      run_nn_dist(dir, ranks, args, kErrorTimeoutSeconds, launcher + "env OMPI_MCA_odls_base_sigkill_timeout=0 ");
  EXPECT_EQ(plain.code, 2) << describe(plain);
  expect_one_clean_error_line(plain, expected);
  return plain;
}

inline std::vector<std::string> epoch_lines(const std::string& out) {
  std::vector<std::string> found;
  for (const std::string& line : lines_of(out)) {
    if (line.rfind("epoch ", 0) == 0) found.push_back(line);
  }
  return found;
}

// Epoch lines without the timing columns, to compare two runs.
inline std::vector<std::string> epoch_lines_without_timing(const std::string& out) {
  std::vector<std::string> found;
  for (std::string line : epoch_lines(out)) {
    const std::size_t cut = line.find(" samples/s");
    line = line.substr(0, line.rfind(' ', cut - 1));
    found.push_back(line);
  }
  return found;
}

// A checkpoint's bytes and identity, to prove nothing replaced or rewrote it.
struct FileSnapshot {
  std::string bytes;
  ino_t inode = 0;
  long mtime_ns = 0;
  explicit FileSnapshot(const std::string& path) : bytes(file_bytes(path)) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
      inode = st.st_ino;
      mtime_ns = static_cast<long>(st.st_mtim.tv_sec) * 1000000000L + st.st_mtim.tv_nsec;
    }
  }
};

inline void expect_unchanged(const FileSnapshot& before, const std::string& path) {
  const FileSnapshot after(path);
  ASSERT_FALSE(before.bytes.empty());
  EXPECT_TRUE(after.bytes == before.bytes) << path << " was modified";
  EXPECT_EQ(after.inode, before.inode) << path << " was replaced";
  EXPECT_EQ(after.mtime_ns, before.mtime_ns) << path << " was rewritten";
  for (const auto& entry : fs::directory_iterator(fs::path(path).parent_path())) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos)
        << "left a temporary file " << entry.path();
  }
}

// Every entry under a folder (its "logs" subfolder aside), as lstat sees it:
// type, inode, mtime, and the bytes of regular files or the target of links.
struct TreeSnapshot {
  struct Entry {
    mode_t type = 0;
    ino_t inode = 0;
    long mtime_ns = 0;
    std::string content;
    bool operator==(const Entry& o) const {
      return type == o.type && inode == o.inode && mtime_ns == o.mtime_ns && content == o.content;
    }
  };
  std::map<std::string, Entry> entries;
  explicit TreeSnapshot(const std::string& dir) {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::recursive_directory_iterator(); ++it) {
      const std::string rel = it->path().lexically_relative(dir).string();  // fs::relative fails on a symlink loop
      if (rel == "logs") {
        it.disable_recursion_pending();
        continue;
      }
      struct stat st {};
      if (::lstat(it->path().c_str(), &st) != 0) continue;
      Entry e;
      e.type = st.st_mode & S_IFMT;
      e.inode = st.st_ino;
      e.mtime_ns = static_cast<long>(st.st_mtim.tv_sec) * 1000000000L + st.st_mtim.tv_nsec;
      if (S_ISREG(st.st_mode)) e.content = file_bytes(it->path().string());
      if (S_ISLNK(st.st_mode)) e.content = fs::read_symlink(it->path(), ec).string();
      entries[rel] = e;
    }
  }
};

// Nothing under dir was created, removed, replaced or rewritten.
inline void expect_tree_unchanged(const TreeSnapshot& before, const std::string& dir) {
  const TreeSnapshot after(dir);
  for (const auto& [name, entry] : before.entries) {
    const auto it = after.entries.find(name);
    if (it == after.entries.end()) {
      ADD_FAILURE() << dir << "/" << name << " was removed";
    } else if (!(it->second == entry)) {
      ADD_FAILURE() << dir << "/" << name << " was changed or replaced";
    }
  }
  for (const auto& [name, entry] : after.entries) {
    if (!before.entries.count(name)) ADD_FAILURE() << dir << "/" << name << " was created";
  }
}

// ---- HDF5 files written directly, for shapes and types nn_datagen never makes

inline void add_dataset(hid_t file, const std::string& name, const std::vector<hsize_t>& dims, hid_t file_type,
                 const std::vector<double>& values) {
  const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t ds = H5Dcreate2(file, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(ds, 0) << name;
  if (!values.empty()) {
    ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0) << name;
  }
  H5Dclose(ds);
  H5Sclose(space);
}

inline void add_string_dataset(hid_t file, const std::string& name, hsize_t rows, hsize_t cols) {
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, 4);
  const hsize_t dims[2] = {rows, cols};
  const hid_t space = H5Screate_simple(2, dims, nullptr);
  const hid_t ds = H5Dcreate2(file, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(ds, 0);
  const std::string text(rows * cols * 4, 'a');
  ASSERT_GE(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()), 0);
  H5Dclose(ds);
  H5Sclose(space);
  H5Tclose(type);
}

// A 1-D dataset of fixed-length strings, as nn_convert writes label_names and feature_names.
inline void add_names(hid_t file, const std::string& name, const std::vector<std::string>& names) {
  std::size_t longest = 1;
  for (const std::string& n : names) longest = std::max(longest, n.size());
  std::string packed(longest * names.size(), '\0');
  for (std::size_t i = 0; i < names.size(); ++i) packed.replace(i * longest, names[i].size(), names[i]);
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, longest);
  const hsize_t n = names.size();
  const hid_t space = H5Screate_simple(1, &n, nullptr);
  const hid_t ds = H5Dcreate2(file, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(ds, 0) << name;
  ASSERT_GE(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, packed.data()), 0) << name;
  H5Dclose(ds);
  H5Sclose(space);
  H5Tclose(type);
}

// Writes a file with whatever datasets `fill` adds.
inline void write_h5(const std::string& path, const std::function<void(hid_t)>& fill) {
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(file, 0) << path;
  fill(file);
  H5Fclose(file);
}

// n samples of d features (row-major, as stored), small values in [-0.5, 0.5].
inline std::vector<double> features(long n, long d) {
  std::vector<double> v(n * d);
  for (long i = 0; i < n; ++i) {
    for (long j = 0; j < d; ++j) v[i * d + j] = 0.1 * static_cast<double>((i * 7 + j * 3) % 11) - 0.5;
  }
  return v;
}

inline std::vector<double> labels(long n, long classes) {
  std::vector<double> v(n);
  for (long i = 0; i < n; ++i) v[i] = static_cast<double>(i % classes);
  return v;
}

// A labelled set with X (n, d) float32 and y (n) int64, after `edit` changes them.
using Edit = std::function<void(std::vector<double>& x, std::vector<double>& y)>;
inline void write_labelled(const std::string& path, long n, long d, const Edit& edit = nullptr) {
  std::vector<double> x = features(n, d), y = labels(n, 3);
  if (edit) edit(x, y);
  write_h5(path, [&](hid_t f) {
    add_dataset(f, "X", {hsize_t(n), hsize_t(d)}, H5T_IEEE_F32LE, x);
    add_dataset(f, "y", {hsize_t(n)}, H5T_STD_I64LE, y);
  });
}

// write_labelled's set (3 classes), naming its features and classes as given (empty: unnamed).
inline void write_named(const std::string& path, long n, long d, const std::vector<std::string>& feature_names,
                        const std::vector<std::string>& label_names, const Edit& edit = nullptr) {
  std::vector<double> x = features(n, d), y = labels(n, 3);
  if (edit) edit(x, y);
  write_h5(path, [&](hid_t f) {
    add_dataset(f, "X", {hsize_t(n), hsize_t(d)}, H5T_IEEE_F32LE, x);
    add_dataset(f, "y", {hsize_t(n)}, H5T_STD_I64LE, y);
    if (!feature_names.empty()) add_names(f, "feature_names", feature_names);
    if (!label_names.empty()) add_names(f, "label_names", label_names);
  });
}

// ---- data and a good checkpoint shared by every test (made once)

struct Shared {
  const testing::TempDir temp{"e2e_shared"};  // removed at the end of the program
  std::string dir = temp.str(), train, val, checkpoint;
  Shared() {
    train = dir + "/train.h5";
    val = dir + "/val.h5";
    checkpoint = dir + "/good_ck.h5";
    const RunResult gen = run_datagen(dir, {"--kind", "spirals", "--samples", "400", "--val-samples", "200", "--out",
                                            train, "--val-out", val});
    EXPECT_EQ(gen.code, 0) << describe(gen);
    const RunResult fit = run_nn_dist(dir, 2, {"--data", train, "--hidden", "8", "--epochs", "1", "--checkpoint",
                                               checkpoint, "--quiet"});
    EXPECT_EQ(fit.code, 0) << describe(fit);
    EXPECT_TRUE(fs::is_regular_file(checkpoint)) << describe(fit);
  }
};

inline const Shared& shared() {
  static const Shared s;
  return s;
}

class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs::is_regular_file(shared().checkpoint)); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  // A copy of the good checkpoint in this test's folder, for --checkpoint.
  std::string good_checkpoint_copy() const {
    const std::string ck = path("ck.h5");
    fs::copy_file(shared().checkpoint, ck, fs::copy_options::overwrite_existing);
    return ck;
  }
  // This test's folder, removed when the test ends, passed or failed: after what
  // a derived fixture or the test made in it (a run, a mount) has ended.
  const testing::TempDir temp_{"e2e"};
  const std::string dir_ = temp_.str();
};

}  // namespace nn_dist::e2e

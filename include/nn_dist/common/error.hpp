// The error types nn_dist's library code throws: a message meant for the
// user, naming the file or flag at fault and what was expected.
#pragma once

#include <stdexcept>
#include <string>

namespace nn_dist {

// Exit code for every user error (bad flag, bad data, bad checkpoint, divergence).
constexpr int kUsageExitCode = 2;

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// An Error that every rank throws at the same point, so the job can end
// cleanly (MPI_Finalize) instead of aborting, every rank with exit_code().
class AgreedError : public Error {
 public:
  explicit AgreedError(const std::string& message, int exit_code = kUsageExitCode)
      : Error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

}  // namespace nn_dist

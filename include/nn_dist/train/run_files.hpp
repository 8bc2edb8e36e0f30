// The files a run reads and writes, settled before any work: --resume auto
// made concrete, every input a readable file, every output writable and no
// output the same file as an input. Rank 0 alone reads checkpoints and
// writes the outputs; every rank reads the data where it runs.
#pragma once

#include <string>
#include <vector>

#include "nn_dist/cli/config.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/parallel/comm.hpp"

namespace nn_dist {

struct RunFiles {
  std::string checkpoint;         // rank 0: --checkpoint with symlinks resolved ("" without it)
  std::string checkpoint_dir;     // rank 0: --checkpoint-dir, resolved
  std::string metrics;            // rank 0: --metrics, resolved
  std::vector<NamedPath> inputs;  // every input file, which no output may replace
};

// --resume auto becomes the newest readable checkpoint's path, or "" (a
// fresh start); rank 0 says which. Collective.
void resolve_resume_auto(const Communicator& comm, Config* config);

// Checks every input and output (errors agreed) and removes the temporary
// files a killed run left beside --checkpoint. Collective.
RunFiles check_run_files(const Communicator& comm, const Config& config);

// The checkpoint --resume or --init names ("" for neither), and how errors
// name it: "--resume ck.h5".
std::string checkpoint_to_load(const Config& config);
std::string checkpoint_flag(const Config& config);

// Rank 0: one note per leftover temporary file removed.
void note_removed(const std::vector<std::string>& stale);

}  // namespace nn_dist

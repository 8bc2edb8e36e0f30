// A folder of numbered checkpoints, for jobs that are requeued: each save is
// a new file ckpt-<global step>.h5 (written atomically), the newest K are
// kept, and a resume takes the newest that loads. No MPI.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn_dist/io/files.hpp"

namespace nn_dist {

// "ckpt-0000001234.h5": the global step, zero-padded so names sort by step.
std::string checkpoint_file_name(int64_t global_step);

// Whether a file name is one of these (for finding their temporaries).
bool is_checkpoint_name(const std::string& name);

// The folder's checkpoints (files named as above), oldest first. A folder
// that cannot be listed is an Error naming `what`, never an empty folder.
std::vector<std::string> list_checkpoints(const std::string& dir, const std::string& what);

// The newest checkpoint whose model and training state can be read, or "" if
// there is none. Each newer one that cannot be read is named in *warnings.
std::string newest_valid_checkpoint(const std::string& dir, const std::string& what,
                                    std::vector<std::string>* warnings);

// Deletes all but the newest `keep` checkpoints, never a file that is one of
// `protect` (the run's inputs, compared by identity).
void prune_checkpoints(const std::string& dir, const std::string& what, long keep,
                       const std::vector<NamedPath>& protect);

}  // namespace nn_dist

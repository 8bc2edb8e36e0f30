// A folder of numbered checkpoints, for jobs that are requeued: each save is
// a new file ckpt-<global step>.h5 (written atomically), the newest K of the
// run's own are kept, and a resume takes the newest that loads. The folder
// belongs to one run (the run id in each file's header). No MPI.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn_dist/io/files.hpp"

namespace nn_dist {

// "ckpt-0000001234.h5": the global step, zero-padded so names sort by step.
std::string checkpoint_file_name(int64_t global_step);

// --early-stopping's best model in the folder: a complete checkpoint, never
// pruned, never taken by --resume auto (it is not a numbered one).
constexpr const char* kBestCheckpointName = "best.h5";

// Whether a file name is one of these (for finding their temporaries).
bool is_checkpoint_name(const std::string& name);

// The folder's files named as above, oldest first. A folder that cannot be
// listed is an Error naming `what`, never an empty folder.
std::vector<std::string> list_checkpoints(const std::string& dir, const std::string& what);

// The newest checkpoint whose model and training state can be read, or "" if
// there is none. Each newer one that cannot be read is named in *warnings.
std::string newest_valid_checkpoint(const std::string& dir, const std::string& what,
                                    std::vector<std::string>* warnings);

// Before a run writes into the folder: throws Error naming `what` if the
// folder holds another run's checkpoints (another run id, or a readable
// checkpoint without one past first_step, which --resume auto would take over
// this run's), a later readable checkpoint of this run (a continuation from
// an earlier one would overwrite it), or any other file under a name this run
// may write (steps first_step + 1 .. last_step).
void claim_checkpoint_dir(const std::string& dir, const std::string& what, const std::string& run_id,
                          int64_t first_step, int64_t last_step);

// Throws Error unless path is absent or one of run_id's checkpoints: a
// checkpoint is never written over a file this run did not write.
void require_own_or_absent(const std::string& path, const std::string& what, const std::string& run_id);

// Throws Error when an output lies in the folder under a checkpoint's name
// (e.g. --metrics dir/ckpt-0000000064.h5): that step's checkpoint would replace it.
void require_no_checkpoint_names(const std::string& dir, const std::string& what,
                                 const std::vector<NamedPath>& outputs);

// Deletes all but the newest `keep` of run_id's checkpoints up to step
// `newest`; never another run's file, a later one, or one of `protect` (the
// run's inputs, compared by identity).
void prune_checkpoints(const std::string& dir, const std::string& what, const std::string& run_id, int64_t newest,
                       long keep, const std::vector<NamedPath>& protect);

}  // namespace nn_dist

// The run's files: which checkpoint --resume auto means, and the checks that
// keep a run from reading what is not a file or writing over its own inputs
// (io/files.hpp does the checking; this file says which flag is which).
#include "nn_dist/train/run_files.hpp"

#include <cstdio>

#include "nn_dist/common/text.hpp"
#include "nn_dist/io/checkpoint_dir.hpp"

namespace nn_dist {

namespace {

// Rank 0: the checkpoint --resume auto takes: the newest readable one of
// --checkpoint-dir, or --checkpoint if it exists; "" for none. A folder that
// cannot be examined or listed is an error, never "no checkpoint yet".
std::string newest_checkpoint(const Config& config) {
  if (config.checkpoint_dir.empty()) {
    return path_exists(config.checkpoint, "--checkpoint " + config.checkpoint) ? config.checkpoint : "";
  }
  const std::string what = "--checkpoint-dir " + config.checkpoint_dir;
  if (!path_exists(config.checkpoint_dir, what)) return "";
  std::vector<std::string> warnings;
  const std::string chosen = newest_valid_checkpoint(config.checkpoint_dir, what, &warnings);
  for (const std::string& w : warnings) {
    std::fprintf(stderr, "warning: --resume auto: skipping an unreadable checkpoint: %s\n", printable(w, 300).c_str());
  }
  return chosen;
}

void require_inputs(const std::vector<NamedPath>& list) {
  for (const NamedPath& in : list) {
    if (!in.path.empty()) require_input_file(in.path, in.flag + " " + in.path);
  }
}

// Rank 0: the outputs checked and resolved, and kept apart from the inputs.
void check_outputs(const Config& config, RunFiles* files) {
  if (!config.checkpoint.empty()) {
    files->checkpoint = require_output_file(config.checkpoint, "--checkpoint " + config.checkpoint);
  }
  if (!config.checkpoint_dir.empty()) {
    files->checkpoint_dir = require_output_folder(config.checkpoint_dir, "--checkpoint-dir " + config.checkpoint_dir);
  }
  if (!config.metrics.empty()) files->metrics = require_output_file(config.metrics, "--metrics " + config.metrics);
  const std::vector<NamedPath> outputs{{"--checkpoint", config.checkpoint}, {"--metrics", config.metrics}};
  // The documented continuation: --resume X --checkpoint X rewrites X.
  require_distinct_files(files->inputs, outputs, {{"--checkpoint", "--resume"}});
  if (!files->checkpoint_dir.empty()) {
    require_no_checkpoint_names(files->checkpoint_dir, "--checkpoint-dir " + config.checkpoint_dir,
                                {{"--metrics", files->metrics}});
  }
}

}  // namespace

void resolve_resume_auto(const Communicator& comm, Config* config) {
  if (config->resume != "auto") return;
  std::string chosen;
  comm.agreed([&] {
    if (!comm.root()) return;
    chosen = newest_checkpoint(*config);
    if (!config->quiet) {
      std::printf("nn_dist: --resume auto: %s\n",
                  chosen.empty() ? "no checkpoint yet, starting fresh" : ("resuming from " + chosen).c_str());
      std::fflush(stdout);  // in the log even if the job is killed soon after
    }
  });
  comm.broadcast(&chosen);
  config->resume = chosen;  // "" starts fresh
}

RunFiles check_run_files(const Communicator& comm, const Config& config) {
  // Every rank reads the data where it runs; rank 0 alone reads checkpoints
  // (--config was checked where it was parsed) and writes the outputs.
  std::vector<NamedPath> every_rank{{"--val", config.val}};
  for (const std::string& file : config.data_files) every_rank.push_back({"--data", file});
  const std::vector<NamedPath> root_only{{"--init", config.init}, {"--resume", config.resume}};
  RunFiles files;
  files.inputs = every_rank;
  files.inputs.insert(files.inputs.end(), root_only.begin(), root_only.end());
  files.inputs.push_back({"--config", config.config_file});
  comm.agreed([&] {
    require_inputs(every_rank);
    if (!comm.root()) return;
    require_inputs(root_only);
    check_outputs(config, &files);
    // A --checkpoint-dir's leftovers are removed once the folder is known to
    // be this run's (Checkpointer::start_run).
    if (!files.checkpoint.empty()) note_removed(remove_stale_temporaries(files.checkpoint));
  });
  return files;
}

std::string checkpoint_to_load(const Config& config) {
  return !config.resume.empty() ? config.resume : config.init;
}

std::string checkpoint_flag(const Config& config) {
  return (!config.resume.empty() ? "--resume " : "--init ") + checkpoint_to_load(config);
}

void note_removed(const std::vector<std::string>& stale) {
  for (const std::string& file : stale) {
    std::printf("note: removed %s, left by an earlier run that was killed while writing a checkpoint\n",
                printable(file, 200).c_str());
  }
}

}  // namespace nn_dist

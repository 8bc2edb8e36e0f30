// Whether nn_dist's output reaches a terminal, for --progress auto. Under
// mpirun a rank's own stdout says nothing: it is a pseudo-terminal that mpirun
// copies to mpirun's stdout, which may be a log file.
#pragma once

namespace nn_dist {

// True when stdout is a terminal and, under mpirun, mpirun's own stdout (on
// this node) is one too; false under a batch system (SLURM, PBS, LSF), when
// mpirun writes the output to files, and whenever it cannot tell.
bool output_reaches_terminal();

}  // namespace nn_dist

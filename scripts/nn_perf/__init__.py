"""scripts/perf_model.py's parts: network (Open MPI's allreduce algorithms and their costs), model (one
step predicted), calibration (the model fitted to this machine), commands (predict, step) and plot."""


class ModelError(Exception):
    """An input perf_model.py cannot use: one line on stderr and exit code 2."""

"""scripts/scale.py's parts, one job each: options (the sweep's command line), sweep (running it),
runs_csv (runs.csv: written per run, read back), summary (medians per curve and rank count), final_loss
(each run's last losses as written, the same at every rank count or not), plots, and report (summary.csv,
final_loss.csv and the plots from a sweep's folder)."""

import sys


class UsageError(Exception):
    """A flag or argument scale.py refuses: one line on stderr and exit code 2, before any run."""


def say(msg):
    print("scale.py: " + msg, file=sys.stderr, flush=True)

#!/usr/bin/python3
"""--lr-schedule plateau against PyTorch: the same value sequences fed to
torch.optim.lr_scheduler.ReduceLROnPlateau (threshold_mode 'rel', threshold
1e-4, cooldown 0: nn_dist's) and to nn_dist's plateau logic (plateau_probe)
give the same lr after every epoch, bit for bit. Sequences: noisy losses that
level off, accuracies that rise and stall, values equal to the best or within
the threshold, negative values, and min_lr clamps; mode min and max; patience
0 to 5; factors 0.1 to 0.9.
Usage: plateau_torch_test.py PLATEAU_PROBE
"""
import os
import random
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testkit import check, finish  # noqa: E402

PROBE = sys.argv[1]


def torch_lrs(mode, patience, factor, min_lr, peak, values):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=peak)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=factor, patience=patience,
                                                       threshold=1e-4, threshold_mode="rel", cooldown=0,
                                                       min_lr=min_lr)
    lrs = []
    for v in values:
        sched.step(v)
        lrs.append(float(opt.param_groups[0]["lr"]))
    return lrs


def probe_lrs(mode, patience, factor, min_lr, peak, values):
    text = "%s %d %r %r %r\n" % (mode, patience, factor, min_lr, peak) + "\n".join(repr(v) for v in values) + "\n"
    out = subprocess.run([PROBE], input=text, capture_output=True, text=True, timeout=60, check=True).stdout
    return [float(line) for line in out.split()]


def sequences(rng):
    n = 60
    loss, level = [], 2.0
    for i in range(n):  # falls, then levels off with noise
        level = max(0.3, level * 0.9)
        loss.append(level + rng.gauss(0, 0.01))
    acc, a = [], 0.2
    for i in range(n):  # rises, then stalls
        a = min(0.9, a + 0.05)
        acc.append(round(a + rng.gauss(0, 0.005), 4))
    flat = [1.0] * 20  # equal to the best: never better
    near = [1.0, 0.99995, 0.9999, 0.99989, 0.9998, 0.99979]  # inside and just beyond the 1e-4 threshold
    negative = [-1.0, -1.05, -1.0501, -1.06, -1.06, -1.06, -1.2, -1.2]
    return [("min", loss), ("max", acc), ("min", flat), ("max", flat), ("min", near), ("min", negative),
            ("max", negative)]


def main():
    rng = random.Random(21)
    cases = 0
    for mode, values in sequences(rng):
        for patience in (0, 1, 2, 5):
            for factor, min_lr, peak in ((0.1, 0.0, 0.1), (0.5, 1e-3, 0.05), (0.3, 0.0, 1.0), (0.9, 0.04, 0.05)):
                expected = torch_lrs(mode, patience, factor, min_lr, peak, values)
                got = probe_lrs(mode, patience, factor, min_lr, peak, values)
                cases += 1
                check("mode %s patience %d factor %g min_lr %g: the lr sequence equals torch's bit for bit"
                      % (mode, patience, factor, min_lr), got == expected,
                      "torch %s\nnn_dist %s" % (expected, got))
    # The test can fail: the sequences above cut the lr many times.
    _, loss = sequences(random.Random(21))[0]
    cuts = torch_lrs("min", 1, 0.5, 0.0, 0.1, loss)
    check("the sequences exercise cuts (torch cut the lr at least 3 times on the levelling loss)",
          len(set(cuts)) >= 4, cuts)
    print("%d sequences compared" % cases)
    finish()


main()

#!/usr/bin/python3
"""Exit 0 if two nn_dist checkpoints hold the same bits: every dataset (the
model and the optimizer state) and the optimizer's step count.
Usage: same_bits.py A.h5 B.h5"""
import sys

import h5py
import numpy as np


def tensors(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def main():
    a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
    ta, tb = tensors(a), tensors(b)
    if ta.keys() != tb.keys():
        print("different datasets:", sorted(ta.keys() ^ tb.keys()))
        return 1
    differ = [k for k in ta if not np.array_equal(ta[k].view(np.uint8), tb[k].view(np.uint8))]
    if differ:
        print("different bits in", differ)
        return 1
    if a["optimizer"].attrs["step"] != b["optimizer"].attrs["step"]:
        print("different optimizer steps")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

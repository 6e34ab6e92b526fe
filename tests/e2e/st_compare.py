#!/usr/bin/env python3
"""Compares the F32 tensors of two safetensors files (stdlib only, no numpy/torch).

usage: st_compare.py A B REL_TOL
Prints the largest relative difference ||a-b|| / ||a|| over tensors and exits 1 if it exceeds
REL_TOL (0 means the files must hold bit-identical tensors).
"""
import json
import math
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        b, e = meta["data_offsets"]
        out[name] = struct.unpack("<%df" % ((e - b) // 4), body[b:e])
    return out


a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
if a.keys() != b.keys():
    sys.exit("tensor names differ: %s" % sorted(set(a) ^ set(b)))
worst, worst_name = 0.0, ""
for name in sorted(a):
    x, y = a[name], b[name]
    num = math.sqrt(sum((p - q) ** 2 for p, q in zip(x, y)))
    den = math.sqrt(sum(p * p for p in x)) or 1.0
    if num / den > worst:
        worst, worst_name = num / den, name
print("max relative difference %.3e (%s)" % (worst, worst_name or "all identical"))
sys.exit(0 if (worst <= tol if tol > 0 else worst == 0.0) else 1)

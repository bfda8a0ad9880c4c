"""Compares two safetensors dumps tensor by tensor (f32), e.g. two builds' `turbine-gpucheck
--parts vae --vae-dump FILE` of the same seeded weights and inputs: relative L2, largest absolute
difference, and whether they are bit for bit equal. Needs only numpy.

    python3 tools/gpu/dump_compare.py A.safetensors B.safetensors
"""
import json
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}; only F32 dumps are compared")
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype=np.float32).reshape(info["shape"])
    return tensors


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    for name in a:
        if name not in b:
            print(f"{name}: only in {sys.argv[1]}")
            continue
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        rel = np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)
        print(f"{name} {list(x.shape)}: rel L2 {rel:.3e}, max |diff| {np.abs(x - y).max():.3e},"
              f" equal {np.array_equal(x, y)}")


if __name__ == "__main__":
    main()

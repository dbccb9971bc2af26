#!/usr/bin/env python3
"""compare_checkpoints.py A B - exit 0 if two ote-c checkpoints (weights.pth or last.pth) hold
bit-identical tensors ('model' state dict, and the 'optimizer' momentum buffers when either has
them), else print the largest absolute difference and the tensor it is in, and exit 1.
Opened with torch.load, so this also checks that PyTorch reads both files. Used by
tests/test_train_resume.sh."""
import sys

import torch


def load(p):
    return torch.load(p, map_location="cpu")


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    worst, where, n = 0.0, None, 0
    for part in ("model", "optimizer"):
        da, db = a.get(part, {}), b.get(part, {})
        if part == "optimizer" and not da and not db:
            continue
        if list(da.keys()) != list(db.keys()):
            print(f"{part}: different keys ({len(da)} vs {len(db)})")
            return 1
        for k in da:
            x, y = da[k], db[k]
            if x.shape != y.shape or x.dtype != y.dtype:
                print(f"{part}.{k}: shape/dtype {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}")
                return 1
            n += 1
            if not torch.equal(x, y):
                d = (x.double() - y.double()).abs().max().item()
                if d >= worst:
                    worst, where = d, f"{part}.{k}"
                if where is None:
                    where = f"{part}.{k}"
    if where is not None:
        print(f"differ: largest absolute difference {worst:.9g} in {where} ({n} tensors compared)")
        return 1
    print(f"identical: {n} tensors bit for bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())

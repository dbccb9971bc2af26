"""pth_ref.py - torch-written checkpoints for tests/test_io_pth.c (io/pth reader).

Run from the repo root with /usr/bin/python3 (Debian python3-torch 1.13); it rewrites
  tests/reference/fixtures/pth_ref_{mmcv,proto4,ote}.pth   files written by torch.save
  tests/reference/fixtures/pth_ref.fx                     expected tensors, named "<tag>:<name>",
                                                          in state-dict order, converted the way
                                                          io/pth converts them (floating ->
                                                          f32 via .float(), integer/bool -> i64)
plus "<tag>:__ndim" (i64, the rank of every tensor in order: the fixture format stores a 0-d
array as shape (1,)) and "<tag>:__confidence_threshold" (f64), "<tag>:__version" (i64) for the
OTE-layout file.
The .pth files exercise what a real checkpoint can contain beyond our own writer's output:
mmcv's {'meta', 'state_dict', 'optimizer'} with numpy objects and int dict keys, an nn.Module
state_dict's _metadata (BUILD), nn.Parameter, storages shared by several tensors at offsets,
f64/f16/bf16/i32/i16/i8/u8/bool storages, empty and 0-d tensors, pickle protocol 4.
"""
import collections
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def state_dict():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU6(), torch.nn.Conv2d(4, 2, 1))
    net.train()
    net(torch.randn(2, 3, 8, 8))  # moves BN running stats and num_batches_tracked
    sd = net.state_dict()
    base = torch.arange(20, dtype=torch.float32) * 0.5
    sd["view_a"] = base[5:11]  # two tensors sharing one storage, at offsets 5 and 2
    sd["view_b"] = base[2:4]
    sd["transposed_made_contiguous"] = torch.randn(3, 5).t().contiguous()
    sd["empty"] = torch.zeros(0)
    sd["empty2d"] = torch.zeros(3, 0)
    sd["scalar"] = torch.tensor(-2.25)
    sd["f64"] = torch.tensor([1.0 / 3.0, -1e300, 1e-320, 2.5], dtype=torch.float64)
    sd["f16"] = torch.tensor([0.1, -65504.0, 6e-8, 1.0], dtype=torch.float16)
    sd["bf16"] = torch.randn(5).bfloat16()
    sd["i32"] = torch.tensor([-5, 7, 2**31 - 1], dtype=torch.int32)
    sd["i16"] = torch.tensor([-32768, 3], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["param"] = torch.nn.Parameter(torch.randn(3))
    return net, sd


def expected(tag, sd):
    out = []
    for k, v in sd.items():
        v = v.detach()
        v = v.float() if v.is_floating_point() else v.long()
        out.append(("%s:%s" % (tag, k), v.contiguous().numpy()))
    out.append(("%s:__ndim" % tag, np.array([v.dim() for v in sd.values()], dtype=np.int64)))
    return out


def main():
    net, sd = state_dict()
    arrays = []
    # mmcv layout: meta with numpy scalars/arrays, optimizer state with int keys
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    mm = {"meta": {"epoch": 3, "CLASSES": ("person", "car"), "config": "model = dict(type='ATSS')",
                   "hook_msgs": {"best_score": np.float64(0.5), "arr": np.arange(3)}},
          "state_dict": sd, "optimizer": opt.state_dict()}
    torch.save(mm, os.path.join(OUT, "pth_ref_mmcv.pth"))
    arrays += expected("mmcv", sd)
    # bare state dict, pickle protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE, ...)
    torch.save(sd, os.path.join(OUT, "pth_ref_proto4.pth"), pickle_protocol=4)
    arrays += expected("proto4", sd)
    # OTE layout with a nested, mixed-type config (test_io_pth.c checks its flattening)
    cfg = {"learning_parameters": {"batch_size": {"value": "8", "default_value": 5}, "lr": 0.01, "flag": True,
                                   "none": None, "list": [1, "a", 2.5]},
           "name": "x"}
    torch.save({"model": sd, "config": cfg, "confidence_threshold": 0.3, "VERSION": 1, "labels": ["a", "b"]},
               os.path.join(OUT, "pth_ref_ote.pth"))
    arrays += expected("ote", sd)
    arrays.append(("ote:__confidence_threshold", np.array([0.3], dtype=np.float64)))
    arrays.append(("ote:__version", np.array([1], dtype=np.int64)))
    write_fixture(os.path.join(OUT, "pth_ref.fx"), arrays)


if __name__ == "__main__":
    main()

"""sgd_ref.py - torch.optim.SGD fixtures for tests/test_engine_sgd.c.

Run with /usr/bin/python3 (Debian torch 1.13, CPU, float32). Two optimisers, each over two small
parameters (w: 3x4, b: 5), 4 steps, fixed per-step gradients, and the learning rate set before
every step by the mmcv linear warm-up rule (spec-detector §9) with warmup_iters W = 3, ratio 1/3,
so the steps run at it = 0, 1, 2 (warm-up) and 3 (= W, the regular lr):
    run 'a': lr 0.01, momentum 0.9, weight_decay 1e-4 (the OTE setting)
    run 'c': lr 0.05, momentum 0.9, weight_decay 0.05 (large decay, so a wrong decay term shows)
Writes tests/reference/fixtures/sgd_ref.fx with, per run prefix: <p>_w0/<p>_b0 (initial params),
<p>_gw<k>/<p>_gb<k> (gradients of step k), <p>_lr (lr per step, f64) and <p>_w<k+1>/<p>_b<k+1>
(params after step k).
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

W, RATIO, STEPS = 3, 1.0 / 3.0, 4


def warmup_lr(base, it):
    # mmcv LrUpdaterHook, warmup='linear'
    if it >= W:
        return base
    k = (1 - it / W) * (1 - RATIO)
    return base * (1 - k)


def run(prefix, base_lr, wd, seed):
    gen = np.random.default_rng(seed)
    w0 = gen.normal(0, 1, (3, 4)).astype(np.float32)
    b0 = gen.normal(0, 1, 5).astype(np.float32)
    w = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    b = torch.nn.Parameter(torch.from_numpy(b0.copy()))
    opt = torch.optim.SGD([w, b], lr=base_lr, momentum=0.9, weight_decay=wd)
    out = {prefix + '_w0': w0, prefix + '_b0': b0}
    lrs = []
    for k in range(STEPS):
        lr = warmup_lr(base_lr, k)
        for g in opt.param_groups:
            g['lr'] = lr
        lrs.append(lr)
        gw = gen.normal(0, 1, (3, 4)).astype(np.float32)
        gb = gen.normal(0, 1, 5).astype(np.float32)
        w.grad = torch.from_numpy(gw.copy())
        b.grad = torch.from_numpy(gb.copy())
        opt.step()
        out['%s_gw%d' % (prefix, k)] = gw
        out['%s_gb%d' % (prefix, k)] = gb
        out['%s_w%d' % (prefix, k + 1)] = w.detach().numpy().copy()
        out['%s_b%d' % (prefix, k + 1)] = b.detach().numpy().copy()
    out[prefix + '_lr'] = np.array(lrs, dtype=np.float64)
    return out


def main():
    out = {}
    out.update(run('a', 0.01, 1e-4, 5))
    out.update(run('c', 0.05, 0.05, 6))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'sgd_ref.fx')
    write_fixture(path, out)
    print('wrote', path, os.path.getsize(path), 'bytes')


if __name__ == '__main__':
    main()

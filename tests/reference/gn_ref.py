"""gn_ref.py - torch.nn.GroupNorm forward + backward fixtures for tests/test_engine_groupnorm.c.

Run with /usr/bin/python3 (Debian torch 1.13, CPU, float32). Writes
tests/reference/fixtures/gn_ref.fx with, per case prefix (a: N=2 C=64 G=32 H=6 W=5,
b: N=3 C=20 G=10 H=4 W=7): x, gamma, beta, dy (inputs) and y, dx, dgamma, dbeta (torch outputs),
all NCHW float32. The C test feeds the inputs to engine/gn.c and compares.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402


def case(prefix, n, c, g, h, w, seed):
    gen = np.random.default_rng(seed)
    x = gen.normal(0.5, 2.0, (n, c, h, w)).astype(np.float32)
    gamma = gen.normal(1.0, 0.5, c).astype(np.float32)
    beta = gen.normal(0.0, 0.5, c).astype(np.float32)
    dy = gen.normal(0.0, 1.0, (n, c, h, w)).astype(np.float32)
    gn = torch.nn.GroupNorm(g, c, eps=1e-5, affine=True)
    with torch.no_grad():
        gn.weight.copy_(torch.from_numpy(gamma))
        gn.bias.copy_(torch.from_numpy(beta))
    xt = torch.from_numpy(x).requires_grad_(True)
    y = gn(xt)
    y.backward(torch.from_numpy(dy))
    return {
        prefix + '_x': x, prefix + '_gamma': gamma, prefix + '_beta': beta, prefix + '_dy': dy,
        prefix + '_y': y.detach().numpy(), prefix + '_dx': xt.grad.numpy(),
        prefix + '_dgamma': gn.weight.grad.numpy(), prefix + '_dbeta': gn.bias.grad.numpy(),
    }


def main():
    torch.manual_seed(0)
    out = {}
    out.update(case('a', 2, 64, 32, 6, 5, 1))
    out.update(case('b', 3, 20, 10, 4, 7, 2))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'gn_ref.fx')
    write_fixture(path, out)
    print('wrote', path, os.path.getsize(path), 'bytes')


if __name__ == '__main__':
    main()

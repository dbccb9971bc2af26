"""bn_ref.py - PyTorch reference for engine/bn (tests/test_engine_bn.c).

torch.nn.BatchNorm2d(5) (eps 1e-5, momentum 0.1) with fixed non-trivial gamma/beta, three training
forward steps on different inputs (N=3, C=5, H=4, W=6), recording the output and the running
statistics after each step; the backward of the third step for a fixed dy (dx, dgamma, dbeta);
and an eval-mode forward with the final running statistics.

Run: /usr/bin/python3 tests/reference/bn_ref.py   (Debian python3-torch 1.13, numpy)
Writes tests/reference/fixtures/bn_ref.fx (format: tests/reference/fixture_io.py).
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

N, C, H, W = 3, 5, 4, 6
rs = np.random.RandomState(1234)
torch.set_num_threads(1)

bn = torch.nn.BatchNorm2d(C, eps=1e-5, momentum=0.1)
gamma = rs.uniform(0.5, 1.5, C).astype(np.float32)
beta = rs.uniform(-1.0, 1.0, C).astype(np.float32)
with torch.no_grad():
    bn.weight.copy_(torch.from_numpy(gamma))
    bn.bias.copy_(torch.from_numpy(beta))
bn.train()

out = {'gamma': gamma, 'beta': beta}
for step in range(3):
    # per-channel offsets and scales so the statistics move between steps
    x = (rs.randn(N, C, H, W) * rs.uniform(0.5, 3.0, (1, C, 1, 1)) +
         rs.uniform(-2.0, 2.0, (1, C, 1, 1))).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    y = bn(xt)
    out['x%d' % step] = x
    out['y%d' % step] = y.detach().numpy()
    out['running_mean%d' % step] = bn.running_mean.numpy().copy()
    out['running_var%d' % step] = bn.running_var.numpy().copy()

dy = rs.randn(N, C, H, W).astype(np.float32)
y.backward(torch.from_numpy(dy))
out['dy'] = dy
out['dx'] = xt.grad.numpy()
out['dgamma'] = bn.weight.grad.numpy()
out['dbeta'] = bn.bias.grad.numpy()

bn.eval()
xe = (rs.randn(N, C, H, W) * 2.0 + 0.5).astype(np.float32)
with torch.no_grad():
    out['x_eval'] = xe
    out['y_eval'] = bn(torch.from_numpy(xe)).numpy()

here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, 'fixtures', 'bn_ref.fx')
write_fixture(path, out)
print('wrote', path, os.path.getsize(path), 'bytes')

#!/usr/bin/python3
"""detector_spread.py - how far PyTorch's own float32 results move when only the memory format
changes, for the detector parity fixture of detector_ref.py; and an eval-mode forward at the
generated weights.

Why: the parity batch (3 images of 128x160, random weights, BN in training mode over as few as
4x5x3 values per channel, GroupNorm over 2 channels x 1x2 pixels at P7) is ill-conditioned. ReLU /
ReLU6 kinks at values near 0 and BN/GN over tiny groups turn float32 rounding differences into
gradient differences of several percent relative to a tensor's largest element. PyTorch itself
shows this: running the same model with channels_last (different conv kernels, same maths) moves
backbone gradients by up to ~20% of their max and the loss after 5 SGD steps by ~1%. A C
implementation cannot be held to a tighter tolerance than PyTorch's own run-to-run variation; the
C test (tests/test_models_detector.c) accepts an error up to a small multiple of this spread.

Writes tests/reference/fixtures/detector_spread.fx (format: fixture_io.py):
  spread.grad.<param>     f64 (1)  max|g_cl - g| / max|g| over the FULL gradient (g: NCHW float32 run,
                                   the one detector_ref.py stores; g_cl: channels_last float32 run)
  spread.head.{cls,reg,ctr}.L f64 (1)  same measure for the training-mode head outputs
  spread.dhead.{cls,reg,ctr}.L f64 (1) and their loss gradients
  spread.sgd.loss         f64 (5)  |loss_cl - loss| / |loss| at each of the 5 SGD steps
  spread.eval.head.{cls,reg,ctr}.L f64 (1)  eval-mode head outputs after the 5 steps
  eval0.head.{cls,reg,ctr}.L f32 NCHW  eval-mode (BN running statistics) head outputs of the
                                   model with the generated weights, before any step (NCHW run)
  spread.eval0.head.{cls,reg,ctr}.L f64 (1)  channels_last spread of those

Run: /usr/bin/python3 tests/reference/detector_spread.py [--out DIR]
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import detector_ref as R  # noqa: E402
from fixture_io import write_fixture  # noqa: E402


def rel(a, b):
    a = a.detach().double()
    b = b.detach().double()
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-30))


def setup():
    H, W, C = 128, 160, 3
    imgs, gts_py, shapes = R.make_images(H, W)
    anchors_lv = R.make_anchors(H, W)
    gt_boxes = [torch.tensor([b for b, _ in g], dtype=torch.float32).reshape(-1, 4) for g in gts_py]
    gt_labels = [torch.tensor([lab for _, lab in g], dtype=torch.int64) for g in gts_py]
    targets = []
    for n in range(len(shapes)):
        v = R.valid_flags(H, W, shapes[n][0], shapes[n][1])
        targets.append(R.build_targets(anchors_lv, v, gt_boxes[n], gt_labels[n], C))
    return imgs, anchors_lv, targets, C


def run(imgs, anchors_lv, targets, C, channels_last):
    """Returns head outputs, dhead, grads of step 0, losses of 5 SGD steps, eval heads after them,
    and eval heads of a fresh model."""
    def prep(m, x):
        if channels_last:
            return m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        return m, x

    x0 = torch.from_numpy(imgs)
    fresh = R.Detector(C)
    R.init_weights(fresh)
    fresh, x = prep(fresh, x0)
    fresh.eval()
    with torch.no_grad():
        eval0 = [(c, r, z) for c, r, z, _ in fresh(x)]

    model = R.Detector(C)
    R.init_weights(model)
    model, x = prep(model, x0)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    losses = []
    for step in range(5):
        out = model(x)
        head = [(c, r, z) for c, r, z, _ in out]
        if step == 0:
            for h in head:
                for t in h:
                    t.retain_grad()
        L = R.atss_loss(head, anchors_lv, targets, C)
        opt.zero_grad()
        L['total'].backward()
        if step == 0:
            head0 = [tuple(t.detach().clone() for t in h) for h in head]
            dhead0 = [tuple(t.grad.detach().clone() for t in h) for h in head]
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        opt.step()
        losses.append(float(L['total']))
    model.eval()
    with torch.no_grad():
        evalh = [(c, r, z) for c, r, z, _ in model(x)]
    return head0, dhead0, grads, losses, evalh, eval0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures'))
    args = ap.parse_args()
    torch.set_num_threads(2)
    imgs, anchors_lv, targets, C = setup()
    a = run(imgs, anchors_lv, targets, C, False)
    b = run(imgs, anchors_lv, targets, C, True)
    fx = {}
    kinds = ('cls', 'reg', 'ctr')
    for lvl in range(5):
        for k in range(3):
            fx['spread.head.%s.%d' % (kinds[k], lvl)] = np.array([rel(b[0][lvl][k], a[0][lvl][k])])
            fx['spread.dhead.%s.%d' % (kinds[k], lvl)] = np.array([rel(b[1][lvl][k], a[1][lvl][k])])
            fx['spread.eval.head.%s.%d' % (kinds[k], lvl)] = np.array([rel(b[4][lvl][k], a[4][lvl][k])])
            fx['spread.eval0.head.%s.%d' % (kinds[k], lvl)] = np.array([rel(b[5][lvl][k], a[5][lvl][k])])
            fx['eval0.head.%s.%d' % (kinds[k], lvl)] = a[5][lvl][k].contiguous().numpy().astype(np.float32)
    for n in a[2]:
        fx['spread.grad.' + n] = np.array([rel(b[2][n], a[2][n])])
    fx['spread.sgd.loss'] = np.array([abs(x - y) / abs(y) for x, y in zip(b[3], a[3])])
    print('sgd loss NCHW        ', a[3])
    print('sgd loss channels_last', b[3])
    groups = {}
    for n in a[2]:
        g = n.split('.')[0]
        groups[g] = max(groups.get(g, 0.0), fx['spread.grad.' + n][0])
    print('worst gradient spread per group:', groups)
    print('eval after 5 steps spread:', max(fx['spread.eval.head.%s.%d' % (k, l)][0] for k in kinds for l in range(5)))
    print('eval0 spread:', max(fx['spread.eval0.head.%s.%d' % (k, l)][0] for k in kinds for l in range(5)))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, 'detector_spread.fx')
    write_fixture(path, fx)
    print('wrote %s (%.1f KB, %d arrays)' % (path, os.path.getsize(path) / 1e3, len(fx)))


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""detector_f64.py - float64 ground truth for the detector parity test, and how far PyTorch's own
float32 run is from it.

Why the channels_last run: PyTorch's NCHW float32 convolutions happen to sum in nearly the same
order as its float64 ones, so NCHW float32 alone can look much closer to float64 than the
conditioning of the problem allows (e.g. the last cls-tower conv weight gradient: NCHW 6e-5,
channels_last 7.5e-2 of its max). The worse of the two float32 runs is the honest measure of how
far a correct float32 implementation may land from the truth.

Why float64: float32 results, PyTorch's included, are only other float32 runs; the C test
(tests/test_models_detector.c) compares ote-c's float32 results with the float64 ones and prints
PyTorch float32's own errors (NCHW and channels_last, measured here) beside them.

Conditioning (measured with this script). With the mmdet-like 'init' weights the random backbone
(52 training-mode BNs, ReLU6 inputs ~N(0, 1)) is chaotic: PyTorch float32 missed float64 by up to
4.5e-2 (NCHW) / 2.3e-1 (channels_last) on backbone gradients, 3.8e-3 / 1.3e-1 on head gradients,
2.0e-2 / 1.2e-2 on the loss after 5 SGD steps and ~1 on eval heads after them (one thread; with
textured images - 30% noise on every pixel - about the same). The weight profile 'parity' (detector_ref.init_weights) puts the ReLU6 /
ReLU inputs far from their kinks; then (figures of this fixture, NCHW / channels_last): head outputs
7.9e-7 / 1.5e-6, dhead 3.0e-7 / 3.3e-7, loss parts 1.8e-7, neck gradients 4.1e-6 / 5.9e-6, head
gradients 5.5e-6 / 5.1e-6, SGD losses 1.4e-7, eval heads 6.6e-7 / 1.3e-6, backbone gradients
1.4e-4 / 4.2e-3 - the backbone worst being analytically zero tensors (rounding noise, which the C test
checks separately) and, for channels_last, tensors behind BNs whose input mean is ~30x its standard
deviation: PyTorch's channels_last BatchNorm statistics lose accuracy there (a lone BN on N(30, 1)
data: 4.9e-5 vs 3.6e-6 NCHW), ote-c's (oneDNN) do not.

Error measure, per tensor t of group G (group = a set of comparable tensors, e.g. "backbone
parameter gradients"):  max|t - t64| / max(max|t64|, FLOOR_FRAC * max over G of max|t64|).
The floor makes analytically-zero tensors (e.g. the gradient of a BN bias whose shift is removed by
a later training-mode BN; pure rounding noise in any implementation) answer to the scale of their
group instead of their own noise.

Writes tests/reference/fixtures/detector_f64.fx (format: fixture_io.py); arrays are the float64
results rounded to float32 (relative rounding 6e-8, far below any tolerance) unless stated:
  f64.head.{cls,reg,ctr}.L   f32 NCHW  training-mode head outputs at the generated weights
  f64.dhead.{cls,reg,ctr}.L  f32 NCHW  d loss.total / d head output
  f64.loss.cls/.box/.ctr     f64 (5)   loss parts per level; f64.loss.total f64 (1)
  f64.grad.<param>           f32       d loss.total / d param, sub-sampled exactly as grad.<param> of
                                       detector_ref.fx (every gradk-th element)
  f64.gradsum.<param>        f64 (2)   [sum, sum of squares] of the FULL gradient
  f64.sgd.loss               f64 (5)   loss.total at SGD steps 0..4 (lr detector_ref.SGD_LR = 0.005, momentum 0.9, wd 1e-4)
  f64.eval.head.{cls,reg,ctr}.L  f32   eval-mode head outputs after the 5 steps
  f64.eval0.head.{cls,reg,ctr}.L f32   eval-mode head outputs at the generated weights (no step)
  t32.<key>                  f64 (1)   error of PyTorch float32 vs float64 for that key, in the
                                       group-floored measure above (for the sgd losses: (5) relative):
                                       the WORSE of the NCHW and the channels_last float32 runs
  t32nchw.<key> / t32cl.<key>          the two runs separately (reported, not used by the C test)
  floor.frac                 f64 (1)   FLOOR_FRAC

Run: /usr/bin/python3 tests/reference/detector_f64.py [--out DIR]   (~3-8 min on 2 shared cores)
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import detector_ref as R  # noqa: E402
from fixture_io import write_fixture  # noqa: E402

FLOOR_FRAC = 1e-2
KINDS = ('cls', 'reg', 'ctr')


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


def run(imgs, anchors_lv, targets, C, dtype, channels_last=False):
    """Same quantities as detector_ref.py, computed in `dtype` (targets and anchors are the
    float32 ones of the fixture, converted exactly); channels_last selects PyTorch's other
    float32 conv kernels (same maths, different summation order)."""
    anc = [a.to(dtype) for a in anchors_lv]
    tg = [(t[0], t[1], t[2].to(dtype)) for t in targets]
    x = torch.from_numpy(imgs).to(dtype)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=mf)
    fresh = R.Detector(C)
    R.init_weights(fresh, R.PROFILE)
    fresh = fresh.to(dtype).to(memory_format=mf)
    fresh.eval()
    with torch.no_grad():
        eval0 = [(c, r, z) for c, r, z, _ in fresh(x)]
    model = R.Detector(C)
    R.init_weights(model, R.PROFILE)
    model = model.to(dtype).to(memory_format=mf)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=R.SGD_LR, momentum=0.9, weight_decay=1e-4)
    losses = []
    for step in range(5):
        head = [(c, r, z) for c, r, z, _ in model(x)]
        if step == 0:
            for h in head:
                for t in h:
                    t.retain_grad()
        L = R.atss_loss(head, anc, tg, C)
        opt.zero_grad()
        L['total'].backward()
        if step == 0:
            head0 = [tuple(t.detach().clone() for t in h) for h in head]
            dhead0 = [tuple(t.grad.detach().clone() for t in h) for h in head]
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
            parts = {k: [float(v) for v in L[k]] for k in ('cls', 'box', 'ctr')}
        opt.step()
        losses.append(float(L['total']))
    model.eval()
    with torch.no_grad():
        evalh = [(c, r, z) for c, r, z, _ in model(x)]
    return dict(head=head0, dhead=dhead0, grads=grads, parts=parts, sgd=losses, eval=evalh, eval0=eval0)


def group_err(pairs):
    """pairs: {key: (t32, t64)} of one group -> {key: floored error}."""
    gmax = max(float(b.abs().max()) for _, b in pairs.values())
    out = {}
    for k, (a, b) in pairs.items():
        a, b = a.double(), b.double()
        den = max(float(b.abs().max()), FLOOR_FRAC * gmax, 1e-300)
        out[k] = float((a - b).abs().max()) / den
    return out


def param_group(name):
    return name.split('.')[0]  # backbone / neck / bbox_head


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures'))
    args = ap.parse_args()
    torch.set_num_threads(2)
    imgs, anchors_lv, targets, C = setup()
    d = run(imgs, anchors_lv, targets, C, torch.float64)
    runs = {'nchw': run(imgs, anchors_lv, targets, C, torch.float32),
            'cl': run(imgs, anchors_lv, targets, C, torch.float32, channels_last=True)}
    fx = {'floor.frac': np.array([FLOOR_FRAC])}
    tables = {}
    for tag, a in runs.items():
        tables[tag] = measure(a, d, fx, 't32%s.' % tag)
    for k in list(fx):
        if k.startswith('t32nchw.'):
            base = k[len('t32nchw.'):]
            fx['t32.' + base] = np.maximum(fx[k], fx['t32cl.' + base])
    store(d, fx)
    print('PyTorch float32 vs float64, worst per group (floor %.0e x group max):   NCHW      channels_last' % FLOOR_FRAC)
    for k in tables['nchw']:
        print('  %-28s %.2e  %.2e' % (k, tables['nchw'][k], tables['cl'][k]))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, 'detector_f64.fx')
    write_fixture(path, fx)
    print('wrote %s (%.2f MB, %d arrays)' % (path, os.path.getsize(path) / 1e6, len(fx)))


def store(d, fx):
    """float64 results (rounded to float32 for the big arrays) under f64.*"""
    f32 = lambda t: t.detach().contiguous().numpy().astype(np.float32)  # noqa: E731
    for tag in ('head', 'dhead', 'eval', 'eval0'):
        for lvl in range(5):
            for k in range(3):
                fx['f64.' + key_of(tag, k, lvl)] = f32(d[tag][lvl][k])
    for part in ('cls', 'box', 'ctr'):
        fx['f64.loss.' + part] = np.array(d['parts'][part])
    fx['f64.loss.total'] = np.array([sum(sum(d['parts'][p]) for p in ('cls', 'box', 'ctr'))])
    for n, gt in d['grads'].items():
        flat = gt.reshape(-1)
        k = 1 if flat.numel() <= R.GRAD_FULL_MAX else -(-flat.numel() // R.GRAD_FULL_MAX)
        fx['f64.grad.' + n] = f32(flat[::k])
        fx['f64.gradsum.' + n] = np.array([float(flat.sum()), float((flat * flat).sum())])
    fx['f64.sgd.loss'] = np.array(d['sgd'])


def key_of(tag, k, lvl):
    pre = {'head': 'head', 'dhead': 'dhead', 'eval': 'eval.head', 'eval0': 'eval0.head'}[tag]
    return '%s.%s.%d' % (pre, KINDS[k], lvl)


def measure(a, d, fx, pfx):
    """errors of float32 run a vs float64 run d, stored under pfx; returns the worst per group"""
    table = {}
    for tag in ('head', 'dhead', 'eval', 'eval0'):
        pairs = {key_of(tag, k, lvl): (a[tag][lvl][k], d[tag][lvl][k]) for lvl in range(5) for k in range(3)}
        errs = group_err(pairs)
        for k, e in errs.items():
            fx[pfx + k] = np.array([e])
        table[tag] = max(errs.values())
    tot64 = sum(sum(d['parts'][p]) for p in ('cls', 'box', 'ctr'))
    tot32 = sum(sum(a['parts'][p]) for p in ('cls', 'box', 'ctr'))
    lerr = max(abs(x - y) / max(abs(y), 1e-12) for p in ('cls', 'box', 'ctr') for x, y in zip(a['parts'][p], d['parts'][p]))
    fx[pfx + 'loss.parts'] = np.array([lerr])
    fx[pfx + 'loss.total'] = np.array([abs(tot32 - tot64) / abs(tot64)])
    table['loss parts (rel)'] = lerr
    table['loss total (rel)'] = fx[pfx + 'loss.total'][0]
    groups = {}
    for n in d['grads']:
        groups.setdefault(param_group(n), {})[n] = (a['grads'][n], d['grads'][n])
    for g, pairs in groups.items():
        errs = group_err(pairs)
        for n, e in errs.items():
            fx[pfx + 'grad.' + n] = np.array([e])
        worst = max(errs, key=errs.get)
        table['grad ' + g] = errs[worst]
        print('%s grad %-10s worst %.2e (%s); median %.2e' % (pfx, g, errs[worst], worst,
                                                             float(np.median(list(errs.values())))))
    fx[pfx + 'sgd.loss'] = np.array([abs(x - y) / abs(y) for x, y in zip(a['sgd'], d['sgd'])])
    table['sgd loss (rel, worst step)'] = float(fx[pfx + 'sgd.loss'].max())
    print(pfx, 'sgd loss f32', a['sgd'], 'f64', d['sgd'])
    return table


if __name__ == '__main__':
    main()

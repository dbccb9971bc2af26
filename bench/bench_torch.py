#!/usr/bin/python3
"""bench_torch.py - the PyTorch side of bench/bench_detector.c: the reference detector of
tests/reference/detector_ref.py (same network, same losses in plain PyTorch) trained and run on
the same synthetic batches, with the same figures.

  bench_torch.py [--mode fast|default] [--steps S] [--warmup W] [--classes C] [--only HxW] [--batch N] [--threads T]

--mode fast: the tuned peer: channels_last memory format (model and input), Debian's libjemalloc2
preloaded with purging off (MALLOC_CONF=oversize_threshold:1,background_thread:false,dirty_decay_ms:-1,muzzy_decay_ms:-1, as PyTorch's CPU tuning
guides recommend; with jemalloc's default purging each reused page faults again and training is
10x slower on these VMs). The children get LD_PRELOAD and MALLOC_CONF from here unless they are set
already; the header line and every RESULT record what ran.
--mode default: NCHW, glibc malloc. torch.set_num_threads(2) in both (--threads changes it).

Each configuration (320x320, 512x512, 736x992 (H x W); batch 1 and 8) runs in a child process so
its peak RSS (ru_maxrss) is its own. Per configuration: train images/s (forward + ATSS targets +
losses + zero_grad + backward + SGD step; median of S steps after W warm-up), inference images/s
(eval mode, no_grad forward + post-processing per image; median), conv GFLOP/s (conv FLOPs of one
training step counted with forward hooks: dense + depthwise, forward + backward-data (not for the
first conv, whose input needs no gradient) + backward-weights, 2 FLOPs per MAC; divided by the
median step time), peak RSS, and CPU seconds (process_time, all threads) per training step. Prints a human line and a `RESULT` line for run_bench.sh.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

JEMALLOC = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2'
TUNED_MALLOC_CONF = 'oversize_threshold:1,background_thread:false,dirty_decay_ms:-1,muzzy_decay_ms:-1'

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'reference'))
import detector_ref as R  # noqa: E402

CONFIGS = [(320, 320), (512, 512), (736, 992)]
BATCHES = [1, 8]


def conv_flops(model, x):
    """2 * MACs of every Conv2d for one forward of x; training = 3x (2x for the image conv)."""
    fwd, first = [0.0], [None]

    def hook(m, inp, out):
        macs = out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        if first[0] is None:
            first[0] = 2.0 * macs
        fwd[0] += 2.0 * macs

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return 3 * fwd[0] - first[0], fwd[0]


def child(n, h, w, steps, warmup, classes, fast, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(42)
    model = R.Detector(classes)
    R.init_weights(model)
    x = torch.from_numpy(rng.random((n, 3, h, w), dtype=np.float32))
    if fast:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    boxes, labels = [], []
    for i in range(n):
        b = []
        for k in range(3):
            bw, bh = (0.1 + 0.4 * rng.random()) * w, (0.1 + 0.4 * rng.random()) * h
            x1, y1 = rng.random() * (w - bw), rng.random() * (h - bh)
            b.append([x1, y1, x1 + bw, y1 + bh])
        boxes.append(torch.tensor(b, dtype=torch.float32))
        labels.append(torch.from_numpy(rng.integers(0, classes, 3)).long())
    anchors_lv = R.make_anchors(h, w)
    flops_train, flops_infer = conv_flops(model, x)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9, weight_decay=1e-4)
    model.train()
    tt = []
    cpu0 = 0.0
    for s in range(warmup + steps):
        if s == warmup:
            cpu0 = time.process_time()
        t0 = time.perf_counter()
        targets = []
        for i in range(n):
            v = R.valid_flags(h, w, h, w)
            targets.append(R.build_targets(anchors_lv, v, boxes[i], labels[i], classes))
        out = model(x)
        L = R.atss_loss([(c, r, z) for c, r, z, _ in out], anchors_lv, targets, classes)
        opt.zero_grad()
        L['total'].backward()
        opt.step()
        if s >= warmup:
            tt.append(time.perf_counter() - t0)
    cpu_step = (time.process_time() - cpu0) / steps
    model.eval()
    ti = []
    sf = np.ones(4, dtype=np.float32)
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model(x)
            head = [(c, r, z) for c, r, z, _ in out]
            for i in range(n):
                R.predict_image(head, i, anchors_lv, (h, w), sf, classes)
        if s >= warmup:
            ti.append(time.perf_counter() - t0)
    mt, mi = statistics.median(tt), statistics.median(ti)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res = dict(h=h, w=w, n=n, train_ips=n / mt, step=mt, gflops=flops_train / mt / 1e9, gflop=flops_train / 1e9,
               infer_ips=n / mi, infer_gflops=flops_infer / mi / 1e9, rss_mb=rss, loss=float(L['total']), cpu_step=cpu_step)
    print('RESULT ' + json.dumps(res), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mode', default='fast', choices=['fast', 'default'])
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--classes', type=int, default=3)
    ap.add_argument('--only', default='')
    ap.add_argument('--batch', type=int, default=0)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--child', nargs=3, type=int)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], a.child[2], a.steps, a.warmup, a.classes, a.mode == 'fast', a.threads)
        return
    env = dict(os.environ)
    if a.mode == 'fast':
        env.setdefault('LD_PRELOAD', JEMALLOC)
        env.setdefault('MALLOC_CONF', TUNED_MALLOC_CONF)
    pre = env.get('LD_PRELOAD', '')
    conf = env.get('MALLOC_CONF', '')
    print('bench_torch: mode %s (%s, LD_PRELOAD=%s, MALLOC_CONF=%s), torch %s, %d threads, %d timed steps after %d warm-up, %d classes'
          % (a.mode, 'channels_last' if a.mode == 'fast' else 'NCHW', pre or '-', conf or '-', torch.__version__, a.threads, a.steps, a.warmup,
             a.classes), flush=True)
    for h, w in CONFIGS:
        if a.only and a.only != '%dx%d' % (h, w):
            continue
        for n in BATCHES:
            if a.batch and a.batch != n:
                continue
            heavy = h * w * n > 736 * 992 * 4
            steps, warm = (min(a.steps, 3), 1) if heavy else (a.steps, a.warmup)
            cmd = [sys.executable, os.path.abspath(__file__), '--mode', a.mode, '--steps', str(steps), '--warmup',
                   str(warm), '--classes', str(a.classes), '--threads', str(a.threads), '--child', str(n), str(h), str(w)]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [ln for ln in p.stdout.splitlines() if ln.startswith('RESULT ')]
            if p.returncode != 0 or not line:
                print('%4dx%-4d N=%d | FAILED: %s' % (h, w, n, p.stderr.strip().splitlines()[-1:] or p.returncode),
                      flush=True)
                continue
            r = json.loads(line[0][7:])
            r['ld_preload'], r['malloc_conf'] = pre, conf
            line[0] = 'RESULT ' + json.dumps(r)
            print('%4dx%-4d N=%d | train %7.2f img/s (step %7.3f s, conv %6.1f GFLOP/s of %6.1f GFLOP) | infer %7.2f img/s'
                  ' | peak RSS %6.0f MB' % (h, w, n, r['train_ips'], r['step'], r['gflops'], r['gflop'], r['infer_ips'],
                                            r['rss_mb']), flush=True)
            print(line[0], flush=True)


if __name__ == '__main__':
    main()

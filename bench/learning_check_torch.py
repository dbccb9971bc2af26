#!/usr/bin/python3
"""learning_check_torch.py - the PyTorch side of bench/learning_check.sh.

Trains tests/reference/detector_ref.py's MobileNetV2-ATSS (plain PyTorch, written from the spec)
under the settings `ote train` uses, on exactly the batches ote's trainer builds: the batches come
from `ote dump-batches` (same loader, seed, batch size, 5 scaled training sizes, MinIoU crop, flip,
shuffles), so only the network implementation and the initial random draws differ.

Settings replicated from train/trainer.c: OTE's adaptive repeat (epochs = ceil(num_iters/repeat)),
SGD momentum 0.9 and weight decay 1e-4 on every parameter, mmcv linear warm-up (ratio 1/3) over
`warmup` iterations, BN in training mode, mmdetection-style initialisation (kaiming-uniform
backbone, xavier-uniform FPN, N(0, 0.01) head, classification bias -log(99), GN/BN 1/0, scales 1).
ReduceLROnPlateau/early stopping never trigger in the few epochs this check runs (patience 5/8
epochs with 600/1000 iterations), so they are not replicated. Validation every epoch on the
test-time batches (resize to the input size, batch 1), scored by `ote eval --detections` (the same
evaluator as ote's trainer: VOC mAP@0.5, COCO maxDets 100,300,1000); the best epoch is reported.

Prints one JSON line at the end: {"best_map", "best_coco_ap", "best_epoch", "seconds", ...}.
"""
import argparse
import json
import math
import os
import re
import struct
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import detector_ref as ref  # noqa: E402


def read_exact(f, n):
    b = f.read(n)
    if len(b) != n:
        raise EOFError("short read from the batch stream")
    return b


def batches(f):
    """Yields (n, h, w, metas, boxes list, labels list, uint8 pixels) from an `ote dump-batches` stream."""
    if read_exact(f, 4) != b"OTEB":
        raise ValueError("not an ote batch stream")
    while True:
        n, h, w = struct.unpack("<3i", read_exact(f, 12))
        if n == 0:
            return
        metas = []
        for _ in range(n):
            idx, ih, iw, nb = struct.unpack("<4i", read_exact(f, 16))
            sc = struct.unpack("<4f", read_exact(f, 16))
            metas.append((idx, ih, iw, nb, sc))
        boxes, labels = [], []
        for (_, _, _, nb, _) in metas:
            bx = np.frombuffer(read_exact(f, nb * 16), np.float32).reshape(nb, 4) if nb else np.zeros((0, 4), np.float32)
            lb = np.frombuffer(read_exact(f, nb * 4), np.int32) if nb else np.zeros(0, np.int32)
            boxes.append(torch.from_numpy(bx.copy()))
            labels.append(torch.from_numpy(lb.astype(np.int64)))
        px = np.frombuffer(read_exact(f, n * 3 * h * w), np.uint8).reshape(n, 3, h, w)
        yield n, h, w, metas, boxes, labels, px


def init_like_ote(model, seed):
    """mmdetection-style initialisation, the distributions models/det.c draws from."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("backbone") and p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                b = math.sqrt(6.0 / fan_in)
                p.uniform_(-b, b, generator=g)
            elif name.startswith("neck") and p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                fan_out = p.shape[0] * p.shape[2] * p.shape[3]
                b = math.sqrt(6.0 / (fan_in + fan_out))
                p.uniform_(-b, b, generator=g)
            elif name.startswith("bbox_head") and p.dim() == 4:
                p.normal_(0.0, 0.01, generator=g)
            elif name == "bbox_head.atss_cls.bias":
                p.fill_(-math.log((1 - 0.01) / 0.01))
            elif name.endswith(".scale"):
                p.fill_(1.0)
            elif name.endswith("bn.weight") or name.endswith("gn.weight"):
                p.fill_(1.0)
            else:
                p.zero_()
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.zero_()
            elif name.endswith("running_var"):
                b.fill_(1.0)


def evaluate(model, val_bin, img_ids, cat_ids, C, args, tag):
    model.eval()
    res = []
    with open(val_bin, "rb") as f, torch.no_grad():
        for n, h, w, metas, _, _, px in batches(f):
            x = torch.from_numpy(px.astype(np.float32)) * np.float32(1.0 / 255.0)
            out = model(x)
            head = [(c, r, z) for c, r, z, _ in out]
            anchors = ref.make_anchors(h, w)
            for i, (idx, ih, iw, _, sc) in enumerate(metas):
                b, s, lab = ref.predict_image(head, i, anchors, (ih, iw), list(sc), C)
                for k in range(s.shape[0]):
                    x1, y1, x2, y2 = [float(v) for v in b[k]]
                    res.append({"image_id": img_ids[idx], "category_id": cat_ids[int(lab[k])],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s[k])})
    model.train()
    rj = os.path.join(args.out, "torch_dets_%s.json" % tag)
    with open(rj, "w") as f:
        json.dump(res, f)
    r = subprocess.run([args.ote, "eval", "--test-ann-files", args.val_ann, "--detections", rj,
                        "--coco-max-dets", "100,300,1000"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("ote eval failed: " + r.stderr)
    m = re.search(r"VOC mAP@0\.5 .*: [0-9.]+  \((.*)\)", r.stdout)
    ap = re.search(r"Average Precision  \(AP\) @\[ IoU=0\.50:0\.95 \| area=   all \| maxDets=100 \] = (-?[0-9.]+)", r.stdout)
    return float(m.group(1)), float(ap.group(1)), len(res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ote", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--train-ann", required=True)
    ap.add_argument("--train-roots", required=True)
    ap.add_argument("--val-ann", required=True)
    ap.add_argument("--val-roots", required=True)
    ap.add_argument("--size", default="320x320")
    ap.add_argument("--num-iters", type=int, required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.008)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    with open(args.train_ann) as f:
        tj = json.load(f)
    with open(args.val_ann) as f:
        vj = json.load(f)
    n_train = len(tj["images"])
    cats = sorted(c["id"] for c in tj["categories"])
    C = len(cats)
    img_ids = [im["id"] for im in vj["images"]]
    r = max(int(round(30 * math.exp(-0.002 * n_train))), 1)
    epochs = -(-args.num_iters // r)
    if epochs <= 1:
        r, epochs = 1, args.num_iters
    per_epoch = -(-n_train // args.batch)
    params = ["params", "--model.input_size", args.size, "--learning_parameters.batch_size", str(args.batch),
              "--model.seed", str(args.seed)]
    val_bin = os.path.join(args.out, "val_batches.bin")
    subprocess.run([args.ote, "dump-batches", args.template, "--ann-files", args.val_ann, "--data-roots",
                    args.val_roots, "--test", "--out", val_bin] + params, check=True)
    model = ref.Detector(C)
    init_like_ote(model, args.seed)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    stream = subprocess.Popen([args.ote, "dump-batches", args.template, "--ann-files", args.train_ann,
                               "--data-roots", args.train_roots, "--loader-epochs", str(epochs * r)] + params,
                              stdout=subprocess.PIPE, bufsize=1 << 22)
    it = 0
    best = (-1.0, -1.0, 0)
    history = []
    gen = batches(stream.stdout)
    t_train = 0.0
    print("torch: %d images, %d classes, %d epochs x %d repeat x %d batches; input %s" %
          (n_train, C, epochs, r, per_epoch, args.size), flush=True)
    for ep in range(epochs):
        for _ in range(r * per_epoch):
            n, h, w, metas, boxes, labels, px = next(gen)
            ts = time.time()
            lr = args.lr * (1 - (1 - it / args.warmup) * (1 - 1 / 3)) if it < args.warmup else args.lr
            for g in opt.param_groups:
                g["lr"] = lr
            x = torch.from_numpy(px.astype(np.float32)) * np.float32(1.0 / 255.0)
            out = model(x)
            head = [(c, rr, z) for c, rr, z, _ in out]
            anchors = ref.make_anchors(h, w)
            targets = []
            for i, (_, ih, iw, _, _) in enumerate(metas):
                valid = ref.valid_flags(h, w, ih, iw)
                targets.append(ref.build_targets(anchors, valid, boxes[i], labels[i], C))
            L = ref.atss_loss(head, anchors, targets, C)
            loss = L["total"]
            if not torch.isfinite(loss):
                raise RuntimeError("torch: loss not finite at iteration %d" % (it + 1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            it += 1
            t_train += time.time() - ts
            if it % 20 == 0 or it == 1:
                print("torch epoch %d/%d iter %d loss %.4f (cls %.4f box %.4f ctr %.4f) lr %.6g %.1f img/s" %
                      (ep + 1, epochs, it, float(loss), float(sum(L["cls"])), float(sum(L["box"])),
                       float(sum(L["ctr"])), lr, it * args.batch / t_train), flush=True)
        m, cap, nd = evaluate(model, val_bin, img_ids, cats, C, args, "ep%d" % (ep + 1))
        history.append(m)
        if m > best[0]:
            best = (m, cap, ep + 1)
        print("torch epoch %d/%d done: val mAP@0.5 %.4f COCO AP %.3f (%d dets)" % (ep + 1, epochs, m, cap, nd), flush=True)
    stream.stdout.close()
    stream.wait()
    secs = time.time() - t0
    print(json.dumps({"best_map": best[0], "best_coco_ap": best[1], "best_epoch": best[2], "epochs": epochs,
                      "repeat": r, "iterations": it, "seconds": secs, "train_seconds": t_train,
                      "map_per_epoch": history}))


if __name__ == "__main__":
    main()

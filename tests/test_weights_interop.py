"""test_weights_interop.py - ote's weights.pth against PyTorch and the reference detector.

Checks (one line each; exit status non-zero on any failure):
  1. `ote train` (one epoch on a tiny synthetic set) writes weights.pth that torch.load opens: {'model', 'config', 'confidence_threshold', 'VERSION': 1};
     the state_dict has exactly the keys, order, shapes and dtypes of
     tests/reference/detector_ref.py's Detector(num_classes) state_dict in the template's default
     configuration (torchvision variant, TF padding: what the shipped pretrained backbone needs),
     and config says so; label_schema.json lists
     the classes; config carries the hyper-parameters as strings.
  2. A checkpoint saved by torch from the reference model (hash-generated weights, BN in eval mode)
     loads into ote (`ote predict`, the `ote eval` path) and gives the reference's detections:
     every reference detection above the boundary of the 100-per-image cut is matched by an ote
     detection of the same class with |score difference| <= 2e-4 and box corners within 0.02 px
     (float32 oneDNN vs PyTorch through ~60 layers; observed differences are ~1e-5), for the OTE
     dict layout and for a bare state_dict.
  3. Unknown, missing and mis-shaped keys are refused with a one-line error naming the key (exit 1);
     a NaN loss (from a checkpoint with a NaN weight) stops training with one line naming the
     iteration and leaves the weights.pth of an earlier run intact;
     a class-count mismatch in `ote train --load-weights` re-initialises only bbox_head.atss_cls.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

SRC = os.environ.get("OTE_SRC", os.getcwd())
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
import detector_ref as ref  # noqa: E402

OTE_BIN = os.environ.get("OTE_BIN") or os.path.join(os.environ.get("OTE_BUILD", "build"), "ote")
TEMPLATE = os.path.join(SRC, "models/templates/gen3_mobilenetV2_ATSS/template.yaml")
# Smaller images under ASan/UBSan (OTE_SANITIZED=1) to keep the suite fast.
H, W, C = (96, 128, 3) if os.environ.get("OTE_SANITIZED") == "1" else (128, 160, 3)
# The template's default model (model.backbone: torchvision, model.tf_padding: true).
VARIANT, TF_PADDING = "torchvision", True
failures = 0


def check(ok, what):
    global failures
    print(("ok - " if ok else "FAIL - ") + what)
    if not ok:
        failures += 1


def write_bmp(path, rgb):
    """24-bit bottom-up BMP (rows padded to 4 bytes) - OpenCV reads it losslessly."""
    h, w, _ = rgb.shape
    row = (w * 3 + 3) & ~3
    data = bytearray()
    for y in range(h - 1, -1, -1):
        line = rgb[y, :, ::-1].astype(np.uint8).tobytes()
        data += line + b"\0" * (row - w * 3)
    hdr = struct.pack("<2sIHHI", b"BM", 54 + len(data), 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    with open(path, "wb") as f:
        f.write(hdr + dib + data)


def make_dataset(d, n_images=2):
    """Images exactly W x H (so test-time resizing is the identity), one box or two each."""
    os.makedirs(os.path.join(d, "img"), exist_ok=True)
    rng = np.random.RandomState(5)
    images, anns = [], []
    for i in range(n_images):
        yy, xx = np.mgrid[0:H, 0:W]
        img = np.stack([(xx * 1.5 + 20 * i) % 256, (yy * 2.0) % 256, ((xx + yy) * 0.7) % 256], -1)
        img = img + rng.randint(0, 20, size=img.shape)
        boxes = [[16 + 8 * i, 20, W // 2 + 8 * i, H - 30], [W // 2 + 10, 10, W - 10, 60]]
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            img[y1:y2, x1:x2] = [[40, 200, 90], [220, 60, 30]][k]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": k + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        name = "im%d.bmp" % i
        write_bmp(os.path.join(d, "img", name), np.clip(img, 0, 255))
        images.append({"id": i + 1, "file_name": name, "width": W, "height": H})
    cats = [{"id": k + 1, "name": "c%d" % k} for k in range(C)]
    ann = os.path.join(d, "ann.json")
    with open(ann, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return ann, os.path.join(d, "img")


def run(*args):
    return subprocess.run([OTE_BIN, *args], capture_output=True, text=True)


def load_rgb(path):
    """Reads our own 24-bit BMP back (bottom-up BGR)."""
    with open(path, "rb") as f:
        b = f.read()
    off, = struct.unpack_from("<I", b, 10)
    w, h = struct.unpack_from("<ii", b, 18)
    row = (w * 3 + 3) & ~3
    px = np.frombuffer(b[off:off + row * h], np.uint8).reshape(h, row)[:, :w * 3].reshape(h, w, 3)
    return px[::-1, :, ::-1].copy()


def reference_model(num_classes):
    torch.manual_seed(0)
    m = ref.Detector(num_classes, VARIANT, TF_PADDING)
    ref.init_weights(m)
    with torch.no_grad():
        # Spread the class priors so that many boxes pass the 0.05 score threshold.
        m.bbox_head.atss_cls.bias.copy_(torch.tensor([1.5, 0.5, -0.5][:num_classes]))
    m.eval()
    return m


def reference_detections(m, img_dir, names):
    out = []
    anchors = ref.make_anchors(H, W)
    for name in names:
        rgb = load_rgb(os.path.join(img_dir, name)).astype(np.float32)
        x = torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy()) * np.float32(1.0 / 255.0)
        with torch.no_grad():
            o = m(x)
        head = [(c, r, z) for c, r, z, _ in o]
        b, s, lab = ref.predict_image(head, 0, anchors, (H, W), [1.0, 1.0, 1.0, 1.0], C)
        out.append((b.numpy(), s.numpy(), lab.numpy()))
    return out


def compare(ote_json, refdets, what):
    with open(ote_json) as f:
        res = json.load(f)
    ok = True
    worst_s, worst_b, n_cmp = 0.0, 0.0, 0
    for i, (rb, rs, rl) in enumerate(refdets):
        mine = [r for r in res if r["image_id"] == i + 1]
        if len(rs) < 100 and len(mine) != len(rs):
            print("  image %d: %d ote detections vs %d reference" % (i, len(mine), len(rs)))
            ok = False
        # Near the 100-per-image cut the last few may legitimately swap; compare above it.
        cut = rs[-1] + 1e-3 if len(rs) >= 100 else -1.0
        used = set()
        for k in range(len(rs)):
            if rs[k] <= cut:
                continue
            x1, y1, x2, y2 = rb[k]
            best, bd = None, 1e9
            for j, r in enumerate(mine):
                if j in used or r["category_id"] != int(rl[k]) + 1:
                    continue
                bx, by, bw, bh = r["bbox"]
                dist = max(abs(bx - x1), abs(by - y1), abs(bx + bw - x2), abs(by + bh - y2)) + abs(r["score"] - rs[k])
                if dist < bd:
                    best, bd = j, dist
            if best is None:
                ok = False
                continue
            used.add(best)
            r = mine[best]
            bx, by, bw, bh = r["bbox"]
            db = max(abs(bx - x1), abs(by - y1), abs(bx + bw - x2), abs(by + bh - y2))
            ds = abs(r["score"] - float(rs[k]))
            worst_s, worst_b = max(worst_s, ds), max(worst_b, db)
            n_cmp += 1
            if ds > 2e-4 or db > 0.02:
                ok = False
    check(ok and n_cmp > 20, "%s: %d reference detections matched (max |score diff| %.2e, max box diff %.2e px; "
          "tolerance 2e-4, 0.02 px)" % (what, n_cmp, worst_s, worst_b))


def main():
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp(prefix="ote_interop_")
    ann, img_dir = make_dataset(tmp)
    names = ["im0.bmp", "im1.bmp"]
    size = "%dx%d" % (W, H)

    # ---- 1. our weights.pth opened by torch
    out = os.path.join(tmp, "out")
    r = run("train", TEMPLATE, "--train-ann-files", ann, "--train-data-roots", img_dir, "--val-ann-files", ann,
            "--val-data-roots", img_dir, "--save-model-to", out, "params", "--model.input_size", size,
            "--learning_parameters.num_iters", "1", "--learning_parameters.batch_size", "2")
    check(r.returncode == 0, "ote train (1 epoch, %s) exits 0%s" % (size, "" if r.returncode == 0 else ": " + r.stderr.strip()))
    wp = os.path.join(out, "weights.pth")
    try:
        # (weights_only=True is not checked: torch 1.13's restricted unpickler rejects BINFLOAT, so it
        # refuses torch.save's own files holding a float such as confidence_threshold.)
        ck = torch.load(wp)
        check(True, "torch.load opens weights.pth")
    except Exception as e:  # noqa: BLE001
        check(False, "torch.load(weights.pth): %s" % e)
        ck = None
    if ck is not None:
        check(sorted(ck.keys()) == ["VERSION", "confidence_threshold", "config", "model"] and ck["VERSION"] == 1 and
              isinstance(ck["confidence_threshold"], float), "top level: model, config, confidence_threshold (float), VERSION 1 "
              "(got %s, VERSION %r, threshold %r)" % (sorted(ck.keys()), ck.get("VERSION"), ck.get("confidence_threshold")))
        want = ref.Detector(C, VARIANT, TF_PADDING).state_dict()
        got = ck["model"]
        check(list(got.keys()) == list(want.keys()), "state_dict keys and order equal the reference's (%d tensors)" % len(want))
        bad = [k for k in want if k in got and (tuple(got[k].shape) != tuple(want[k].shape) or got[k].dtype != want[k].dtype)]
        check(not bad, "shapes and dtypes equal the reference's%s" % ("" if not bad else ": " + ", ".join(bad[:4])))
        cfg = ck["config"]
        check(isinstance(cfg, dict) and cfg.get("learning_parameters", {}).get("num_iters") == "1" and
              cfg.get("learning_parameters", {}).get("batch_size") == "2" and cfg.get("model", {}).get("input_size") == size,
              "config holds the hyper-parameters as strings (nested dicts)")
        mc = cfg.get("model", {}) if isinstance(cfg, dict) else {}
        check(mc.get("backbone") == "torchvision" and mc.get("tf_padding") in ("true", "1"),
              "config names the template's default model: backbone torchvision, tf_padding true (got %r, %r)" %
              (mc.get("backbone"), mc.get("tf_padding")))
        finite = all(torch.isfinite(t.float()).all() for t in got.values())
        check(finite, "all saved tensors are finite")
    with open(os.path.join(out, "label_schema.json")) as f:
        ls = json.load(f)
    check([l["name"] for l in ls["labels"]] == ["c0", "c1", "c2"] and [l["id"] for l in ls["labels"]] == [0, 1, 2],
          "label_schema.json lists the classes in label order")

    # ---- 2. a torch-saved reference checkpoint predicts like the reference
    m = reference_model(C)
    refdets = reference_detections(m, img_dir, names)
    sd = m.state_dict()
    p_ote = os.path.join(tmp, "ref_ote.pth")
    torch.save({"model": sd, "config": {"model": {"input_size": size}}, "confidence_threshold": 0.35, "VERSION": 1}, p_ote)
    p_bare = os.path.join(tmp, "ref_bare.pth")
    torch.save(sd, p_bare)
    for p, what in ((p_ote, "torch.save'd OTE dict"), (p_bare, "torch.save'd bare state_dict")):
        dj = p + ".json"
        r = run("predict", TEMPLATE, "--load-weights", p, "--test-ann-files", ann, "--test-data-roots", img_dir,
                "--save-detections", dj, "params", "--model.input_size", size)
        check(r.returncode == 0, "ote predict on the %s exits 0%s" % (what, "" if r.returncode == 0 else ": " + r.stderr.strip()))
        if r.returncode == 0:
            compare(dj, refdets, what)

    # ---- 3. bad checkpoints
    def bad(mod, key_in_msg, what):
        sd2 = dict(sd)
        mod(sd2)
        p = os.path.join(tmp, "bad.pth")
        torch.save(sd2, p)
        r = run("predict", TEMPLATE, "--load-weights", p, "--test-ann-files", ann, "--test-data-roots", img_dir,
                "--save-detections", os.path.join(tmp, "bad.json"), "params", "--model.input_size", size)
        err = r.stderr.strip().splitlines()
        check(r.returncode == 1 and len(err) == 1 and key_in_msg in err[0] and not os.path.exists(os.path.join(tmp, "bad.json")),
              "%s: exit 1, one line naming %s (%s)" % (what, key_in_msg, err[0] if err else ""))

    bad(lambda d: d.__setitem__("bbox_head.extra.weight", torch.zeros(3)), "bbox_head.extra.weight", "unknown key")
    bad(lambda d: d.pop("neck.fpn_convs.0.conv.bias"), "neck.fpn_convs.0.conv.bias", "missing key")
    bad(lambda d: d.__setitem__("neck.lateral_convs.1.conv.weight", torch.zeros(64, 31, 1, 1)),
        "neck.lateral_convs.1.conv.weight", "mis-shaped key")

    # A non-finite loss stops training with a one-line error naming the iteration; the weights a
    # previous run saved in the same output folder are untouched and no temporary file is left.
    sdn = {k: v.clone() for k, v in sd.items()}
    sdn["bbox_head.atss_reg.weight"][0, 0, 0, 0] = float("nan")
    pn = os.path.join(tmp, "nan.pth")
    torch.save(sdn, pn)
    before = open(wp, "rb").read() if os.path.exists(wp) else None
    r = run("train", TEMPLATE, "--train-ann-files", ann, "--train-data-roots", img_dir, "--val-ann-files", ann,
            "--val-data-roots", img_dir, "--save-model-to", out, "--load-weights", pn, "params", "--model.input_size",
            size, "--learning_parameters.num_iters", "1", "--learning_parameters.batch_size", "2")
    err = r.stderr.strip().splitlines()
    after = open(wp, "rb").read() if os.path.exists(wp) else None
    leftovers = [f for f in os.listdir(out) if "tmp" in f]
    check(r.returncode == 1 and len(err) == 1 and "iteration 1 " in err[0] and "not finite" in err[0] and
          before is not None and before == after and not leftovers,
          "NaN loss: exit 1, one line naming the iteration, earlier weights.pth intact (%s)" % (err[0] if err else ""))

    # class-count change: a 2-class reference checkpoint into 3-class training data
    m2 = reference_model(2)
    p2 = os.path.join(tmp, "ref2.pth")
    torch.save(m2.state_dict(), p2)
    out2 = os.path.join(tmp, "out2.pth")
    r = run("train", TEMPLATE, "--train-ann-files", ann, "--train-data-roots", img_dir, "--val-ann-files", ann,
            "--val-data-roots", img_dir, "--save-model-to", out2, "--load-weights", p2, "params", "--model.input_size",
            size, "--learning_parameters.num_iters", "1", "--learning_parameters.batch_size", "2",
            "--learning_parameters.learning_rate", "0.0000001")
    check(r.returncode == 0 and "bbox_head.atss_cls re-initialised" in r.stdout and os.path.exists(out2),
          "class-count change (2 -> 3): only atss_cls re-initialised, training runs, OUT.pth written")
    if r.returncode == 0:
        ck = torch.load(out2)["model"]
        same = [k for k in sd if not k.startswith("bbox_head.atss_cls") and not k.endswith("num_batches_tracked")
                and k.startswith("backbone.features.init_block.conv")]
        # With lr 1e-7 and one step the loaded weights move by < 1e-5: the rest was loaded, not re-initialised.
        close = all(torch.allclose(ck[k], m2.state_dict()[k], atol=1e-5) for k in same)
        check(close and tuple(ck["bbox_head.atss_cls.weight"].shape)[0] == 3,
              "other weights kept from the checkpoint (|diff| <= 1e-5 after one step at lr 1e-7); atss_cls has 3 outputs")
    print("FAILED" if failures else "all ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""test_pth_interop.py - io/pth against real PyTorch (Debian python3-torch 1.13).

Both directions, through the hidden `ote pth-dump` command (tools/cmd_pth.c):
  * C writes (`ote pth-dump --sample OUT`): torch.load (default and weights_only=True) must see
    exactly the names, order, dtypes, shapes, strides, values (bitwise), config,
    confidence_threshold and VERSION that the formulas below define (written independently of
    the C code's sample generator).
  * torch.save writes (our dict layout, a bare nn.Module state_dict, mmcv's {'state_dict', 'meta',
    'optimizer'}, pickle protocol 4, shared storages with offsets, f64/f16/bf16/int dtypes, empty
    and 0-d tensors): the C dump must list every name/shape in order with a bitwise-equal hash
    of the values (converted to f32 / i64 like torch's .float() / .long()), and a C re-save must
    load back in torch with the same content.
  * Bad input written by torch (non-contiguous tensor, legacy format, deflated zip): the C side
    must fail with exit code 1 and a one-line message saying why.
Exit status is non-zero on any failure; one line is printed per check.
"""
import collections
import math
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch

OTE_BIN = os.environ.get("OTE_BIN") or os.path.join(os.environ.get("OTE_BUILD", "build"), "ote")
failures = 0


def check(ok, what):
    global failures
    print(("ok - " if ok else "FAIL - ") + what)
    if not ok:
        failures += 1


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def run(*args):
    return subprocess.run([OTE_BIN, "pth-dump", *args], capture_output=True, text=True)


def dump(path):
    """Parses `ote pth-dump FILE` into (meta dict, config list, tensors list)."""
    r = run(path)
    if r.returncode != 0:
        raise RuntimeError("pth-dump %s failed: %s" % (path, r.stderr.strip()))
    meta, config, tensors = {}, [], []
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if f[0] == "config":
            config.append((f[1], f[2]))
        elif f[0] == "tensor":
            shape = tuple(int(x) for x in f[4].split(",")) if f[4] else ()
            tensors.append((f[1], f[2], f[3], shape, f[5]))
        else:
            meta[f[0]] = f[1]
    return meta, config, tensors


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (NaN == NaN, -0.0 != 0.0)."""
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    return a.contiguous().numpy().tobytes() == b.contiguous().numpy().tobytes()


def as_c_view(t: torch.Tensor):
    """What the C side should hold for tensor t: f32 for floating types, i64 for the rest."""
    if t.is_floating_point():
        return "f32", t.detach().float().contiguous()
    return "i64", t.detach().long().contiguous()


def compare_dump(tensors_c, sd, what):
    names_ok = [t[0] for t in tensors_c] == list(sd.keys())
    check(names_ok, "%s: C sees the same %d names in the same order" % (what, len(sd)))
    bad = []
    for (name, dt, _src, shape, h), (k, v) in zip(tensors_c, sd.items()):
        edt, ev = as_c_view(v)
        if dt != edt or shape != tuple(v.shape) or h != fnv1a64(ev.numpy().tobytes()):
            bad.append(name)
    check(not bad, "%s: dtype, shape and bitwise values of every tensor match%s" % (what, (" (bad: %s)" % bad) if bad else ""))


# ----------------------------------------------------------------------------- expected sample
def expected_sample():
    """The checkpoint `ote pth-dump --sample` writes, from its documented formulas."""
    w = torch.tensor([((j * 37 + 11) % 97 - 48) / 16.0 for j in range(3 * 64 * 9)], dtype=torch.float32)
    sd = collections.OrderedDict()
    sd["backbone.features.init_block.conv.weight"] = w[: 4 * 27].reshape(4, 3, 3, 3)
    sd["backbone.features.init_block.bn.weight"] = torch.tensor([1.0, 1.25, 1.5, 1.75])
    sp = np.array([0, 0, 0, 0, 0, 0, 0.1, -2.5], dtype=np.float32)
    sp[0] = np.frombuffer(struct.pack("<I", 1), dtype=np.float32)[0]  # smallest subnormal
    sp[1] = -0.0
    sp[2] = np.finfo(np.float32).max
    sp[3], sp[4], sp[5] = np.inf, -np.inf, np.nan
    sd["backbone.features.init_block.bn.running_var"] = torch.from_numpy(sp)
    sd["backbone.features.init_block.bn.num_batches_tracked"] = torch.tensor(1234567890123, dtype=torch.int64)
    sd["neck.lateral_convs.0.conv.bias"] = torch.tensor([j * 0.125 - 4.0 for j in range(64)], dtype=torch.float32)
    sd["bbox_head.atss_cls.weight"] = w.reshape(3, 64, 3, 3)
    sd["bbox_head.empty"] = torch.zeros(0)
    sd["bbox_head.empty3d"] = torch.zeros(2, 0, 3)
    sd["bbox_head.scalar"] = torch.tensor(0.5)
    sd["bbox_head.counts"] = torch.tensor([-(2**63), -1, 0, 70000, 2**63 - 1], dtype=torch.int64)
    config = {
        "learning_parameters": {"batch_size": "8", "learning_rate": "0.008", "num_iters": "300"},
        "postprocessing": {"confidence_threshold": "0.35"},
        "model_name": "MobileNetV2-ATSS",
        "a": {"b": {"c": "deep"}},
        "unicode": "h\u00e9llo \u2713",
    }
    return sd, config


def check_state_dict(got, exp, what):
    check(type(got) is collections.OrderedDict, "%s: state dict is an OrderedDict" % what)
    check(list(got.keys()) == list(exp.keys()), "%s: names and order" % what)
    bad = [k for k in exp if k not in got or not bits_equal(got[k], exp[k]) or not got[k].is_contiguous()
           or got[k].stride() != exp[k].contiguous().stride() or got[k].requires_grad]
    check(not bad, "%s: dtype, shape, stride, values bitwise%s" % (what, (" (bad: %s)" % bad) if bad else ""))


def main():
    tmp = tempfile.mkdtemp(prefix="test_pth_interop_")
    P = lambda name: os.path.join(tmp, name)
    exp_sd, exp_cfg = expected_sample()
    check(os.access(OTE_BIN, os.X_OK), "ote binary at %s" % OTE_BIN)

    # ------------------------------------------------------------------ C writes, torch reads
    r = run("--sample", P("c_ote.pth"))
    check(r.returncode == 0, "C writes the sample in our layout" + (": " + r.stderr if r.returncode else ""))
    d = torch.load(P("c_ote.pth"))
    check(type(d) is dict and list(d.keys()) == ["model", "config", "confidence_threshold", "VERSION"],
          "torch.load: top level {'model', 'config', 'confidence_threshold', 'VERSION'}")
    check_state_dict(d["model"], exp_sd, "torch.load(C ote layout)")
    check(d["config"] == exp_cfg, "torch.load: config nested dict matches")
    check(type(d["confidence_threshold"]) is float and d["confidence_threshold"] == 0.35, "torch.load: confidence_threshold == 0.35 (float)")
    check(type(d["VERSION"]) is int and d["VERSION"] == 1, "torch.load: VERSION == 1 (int)")
    check(zipfile.ZipFile(P("c_ote.pth")).testzip() is None, "python zipfile: every CRC valid")

    # weights_only: torch 1.13's restricted unpickler has no BINFLOAT, so a dict holding a Python
    # float (confidence_threshold) cannot be read that way even when torch itself wrote it. We
    # require the same outcome as torch's own file, and success whenever torch's own succeeds.
    torch.save(d, P("torch_ote.pth"))
    def wo(path):
        try:
            return True, torch.load(path, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any refusal counts
            return False, str(e)
    own_ok, _ = wo(P("torch_ote.pth"))
    our_ok, ours = wo(P("c_ote.pth"))
    check(own_ok == our_ok, "weights_only=True on our layout: same outcome as torch's own file (%s)" % ("loads" if own_ok else "refused by torch %s" % torch.__version__))
    if our_ok:
        check_state_dict(ours["model"], exp_sd, "weights_only(C ote layout)")

    for lay in ("bare", "state_dict"):
        r = run("--sample", P("c_%s.pth" % lay), "--layout", lay)
        check(r.returncode == 0, "C writes the sample as %s" % lay)
        ok, got = wo(P("c_%s.pth" % lay))
        check(ok, "torch.load(weights_only=True) opens the C %s file%s" % (lay, "" if ok else ": " + got))
        if ok:
            sd = got if lay == "bare" else got.get("state_dict")
            if lay == "state_dict":
                check(list(got.keys()) == ["state_dict"], "state_dict layout: top level {'state_dict'}")
            check_state_dict(sd, exp_sd, "weights_only(C %s)" % lay)

    # ------------------------------------------------------------------ torch writes, C reads
    g = torch.Generator().manual_seed(0)
    base = torch.arange(20, dtype=torch.float32)
    base2 = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    sd = collections.OrderedDict()
    sd["backbone.conv.weight"] = torch.randn(8, 3, 3, 3, generator=g)
    sd["backbone.bn.running_mean"] = torch.randn(8, generator=g)
    sd["backbone.bn.num_batches_tracked"] = torch.tensor(17)
    sd["transposed_made_contiguous"] = torch.randn(5, 7, generator=g).t().contiguous()
    sd["empty"] = torch.zeros(0)
    sd["empty2d"] = torch.zeros(3, 0)
    sd["scalar"] = torch.tensor(2.5)
    sd["view_a"] = base[5:11]          # shares one storage with view_b, at offset 5
    sd["view_b"] = base[2:4]
    sd["slice_row"] = base2[1]         # offset 12 into a 24-element storage
    sd["f64"] = torch.tensor([1.0 / 3.0, -1e300, 1e-320, float("nan")], dtype=torch.float64)
    sd["f16"] = torch.tensor([0.1, -65504.0, 6e-8, float("inf")], dtype=torch.float16)
    sd["bf16"] = torch.randn(6, generator=g).bfloat16()
    sd["i32"] = torch.tensor([-5, 7, 2**31 - 1], dtype=torch.int32)
    sd["i16"] = torch.tensor([-32768, 3], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["param"] = torch.nn.Parameter(torch.randn(3, generator=g))
    cfg = {"learning_parameters": {"batch_size": {"value": "8", "default_value": 5}, "lr": 0.01, "flag": True,
                                   "none": None, "list": [1, "a", 2.5], "tup": (1,)},
           "name": "x"}
    exp_cfg_c = [("learning_parameters.batch_size.value", "8"), ("learning_parameters.batch_size.default_value", "5"),
                 ("learning_parameters.lr", "0.01"), ("learning_parameters.flag", "True"),
                 ("learning_parameters.none", "None"), ("learning_parameters.list", repr([1, "a", 2.5])),
                 ("learning_parameters.tup", repr((1,))), ("name", "x")]
    torch.save({"model": sd, "config": cfg, "confidence_threshold": 0.4, "VERSION": 1, "labels": ["a", "b"]}, P("t_ote.pth"))
    meta, config, tensors = dump(P("t_ote.pth"))
    check(meta.get("layout") == "ote", "C reads torch's dict as our layout")
    check(float(meta.get("confidence_threshold", "nan")) == 0.4 and meta.get("version") == "1",
          "C reads confidence_threshold 0.4 and VERSION 1")
    check(config == exp_cfg_c, "C flattens the nested config (non-strings as Python text)%s" % ("" if config == exp_cfg_c else ": %s" % config))
    compare_dump(tensors, sd, "torch.save(our layout)")

    # the C side re-saves what it read; torch must get back the same (converted) content
    r = run(P("t_ote.pth"), "--resave", P("c_resave.pth"))
    check(r.returncode == 0, "C re-saves a torch-written checkpoint")
    back = torch.load(P("c_resave.pth"))
    conv = collections.OrderedDict((k, as_c_view(v)[1]) for k, v in sd.items())
    check_state_dict(back["model"], conv, "torch.load(C re-save)")
    check(back["confidence_threshold"] == 0.4 and back["VERSION"] == 1, "re-save keeps confidence_threshold and VERSION")
    check(back["config"]["learning_parameters"]["batch_size"]["value"] == "8", "re-save keeps the nested config (as strings)")

    # a real module's state_dict (carries _metadata, applied with BUILD) saved bare
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU6(), torch.nn.Conv2d(4, 2, 1))
    net.train()
    net(torch.randn(2, 3, 8, 8))
    msd = net.state_dict()
    torch.save(msd, P("t_bare.pth"))
    meta, config, tensors = dump(P("t_bare.pth"))
    check(meta.get("layout") == "bare" and meta.get("confidence_threshold") == "-", "C reads a bare nn.Module state_dict")
    compare_dump(tensors, msd, "torch.save(module.state_dict())")
    check(any(t[0] == "1.num_batches_tracked" and t[1] == "i64" and t[3] == () for t in tensors),
          "num_batches_tracked is a 0-d int64")

    # mmcv layout with meta/optimizer objects we do not interpret (numpy scalars, int dict keys)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    mm = {"meta": {"epoch": 3, "CLASSES": ("person", "car"), "config": "model = dict(type='ATSS')",
                   "hook_msgs": {"best_score": np.float64(0.5), "arr": np.arange(3)}},
          "state_dict": msd, "optimizer": opt.state_dict()}
    torch.save(mm, P("t_mmcv.pth"))
    meta, config, tensors = dump(P("t_mmcv.pth"))
    check(meta.get("layout") == "state_dict", "C reads mmcv's {'state_dict', 'meta', 'optimizer'} checkpoint")
    compare_dump(tensors, msd, "torch.save(mmcv dict)")

    # pickle protocol 4 (SHORT_BINUNICODE, MEMOIZE, FRAME, ...)
    torch.save(sd, P("t_proto4.pth"), pickle_protocol=4)
    meta, config, tensors = dump(P("t_proto4.pth"))
    compare_dump(tensors, sd, "torch.save(..., pickle_protocol=4)")

    # ------------------------------------------------------------------ bad input from torch
    def expect_error(path, needle, what):
        r = run(path)
        msg = r.stderr.strip()
        check(r.returncode == 1 and needle in msg and "\n" not in msg and path in msg,
              "%s -> exit 1, one line naming the file and '%s'%s" % (what, needle, "" if needle in msg else ": " + msg))

    torch.save({"w": torch.randn(3, 4).t()}, P("bad_noncontig.pth"))
    expect_error(P("bad_noncontig.pth"), "non-contiguous", "non-contiguous tensor")
    torch.save(sd, P("bad_legacy.pth"), _use_new_zipfile_serialization=False)
    expect_error(P("bad_legacy.pth"), "legacy", "legacy (torch < 1.6) format")
    with zipfile.ZipFile(P("t_bare.pth")) as zin, zipfile.ZipFile(P("bad_deflate.pth"), "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    expect_error(P("bad_deflate.pth"), "compressed", "deflated zip")
    torch.save({"epoch": 3, "w": torch.zeros(2)}, P("bad_layout.pth"))
    expect_error(P("bad_layout.pth"), "not a bare state dict", "dict without model/state_dict and with a non-tensor")
    with open(P("bad_trunc.pth"), "wb") as f:
        f.write(open(P("t_ote.pth"), "rb").read()[:1000])
    expect_error(P("bad_trunc.pth"), "pth:", "truncated torch file")

    for name in os.listdir(tmp):
        os.unlink(os.path.join(tmp, name))
    os.rmdir(tmp)
    print("%s: %d failure(s)" % ("FAILED" if failures else "PASSED", failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

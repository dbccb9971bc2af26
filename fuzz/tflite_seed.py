#!/usr/bin/python3
"""fuzz/tflite_seed.py OUT.tflite - writes a small (~3 kB) valid TFLite model for the fuzz seed corpus.

The real MobileNetV2 files are 4 MB, 95% weight bytes, above libFuzzer's 1 MB input limit: as seeds
they are cut and never parse, so the fuzzer would only ever see truncation errors. This file has
the same structure at toy size - every table kind the reader walks: QUANTIZE, CONV_2D (per-channel
int8 weights, int32 bias), DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D, FULLY_CONNECTED (float32
weights), their options tables, an operator code above 127 (deprecated_builtin_code 127), tensor
names, shapes and quantisation. Written with a small forward-layout FlatBuffer writer: a parent is
written before its children, so every uoffset is positive, as the format requires; vtables precede
their tables. tests/reference/tflite_ref.py (an independent reader) reads it back below.
"""
import os
import struct
import sys

import numpy as np

SIZES = {"u8": 1, "i8": 1, "i32": 4, "u32": 4, "u64": 8, "ref": 4}
FMT = {"u8": "B", "i8": "b", "i32": "i", "u32": "I", "u64": "Q"}


class T:  # table: fields[id] = (kind, value) or None
    def __init__(self, *fields):
        self.f = list(fields)


class V:  # vector of kind ("u8", "i32", "f32", "i64", "ref")
    def __init__(self, kind, items):
        self.kind, self.items = kind, list(items)


def S(text):
    return V("str", text.encode())


class Writer:
    def __init__(self):
        self.b = bytearray(b"\0\0\0\0TFL3")

    def pad(self, mod, extra=0):
        while (len(self.b) + extra) % mod:
            self.b.append(0)

    def emit(self, o):
        kids = []
        if isinstance(o, T):
            offs, pos = [], 4  # field offsets in a table starting 8-aligned with its soffset
            for fld in o.f:
                if fld is None:
                    offs.append(0)
                    continue
                sz = SIZES[fld[0]]
                pos = (pos + sz - 1) // sz * sz
                offs.append(pos)
                pos += sz
            tsize = (pos + 3) // 4 * 4
            self.pad(2)
            vt = len(self.b)
            self.b += struct.pack("<HH", 4 + 2 * len(offs), tsize) + b"".join(struct.pack("<H", x) for x in offs)
            self.pad(8)
            start = len(self.b)
            self.b += struct.pack("<i", start - vt) + bytes(tsize - 4)
            for fld, off in zip(o.f, offs):
                if fld is None:
                    continue
                kind, val = fld
                if kind == "ref":
                    kids.append((start + off, val))
                else:
                    struct.pack_into("<" + FMT[kind], self.b, start + off, val)
        else:
            if o.kind == "str":
                self.pad(4)
                start = len(self.b)
                self.b += struct.pack("<I", len(o.items)) + bytes(o.items) + b"\0"
            else:
                esz = {"u8": 1, "i32": 4, "f32": 4, "i64": 8, "ref": 4}[o.kind]
                self.pad(max(4, esz, 16 if o.kind == "u8" else 1), 4)
                start = len(self.b)
                self.b += struct.pack("<I", len(o.items))
                if o.kind == "ref":
                    for i, it in enumerate(o.items):
                        kids.append((start + 4 + 4 * i, it))
                    self.b += bytes(4 * len(o.items))
                else:
                    self.b += struct.pack("<%d%s" % (len(o.items), {"u8": "B", "i32": "i", "f32": "f", "i64": "q"}[o.kind]), *o.items)
        for at, child in kids:
            p = self.emit(child)
            struct.pack_into("<I", self.b, at, p - at)
        return start

    def finish(self, root):
        p = self.emit(root)
        struct.pack_into("<I", self.b, 0, p)
        return bytes(self.b)


def main(path):
    rng = np.random.default_rng(0)
    raw = []  # buffers; 0 is the empty sentinel

    def buf(arr):
        raw.append(np.ascontiguousarray(arr).tobytes())
        return len(raw)

    tensors = []

    def tensor(name, shape, ttype, data=None, scale=None, zp=None, qdim=None):
        q = None
        if scale is not None:
            q = T(None, None, ("ref", V("f32", scale)), ("ref", V("i64", zp)), None, None,
                  ("i32", qdim) if qdim is not None else None)
        tensors.append(T(("ref", V("i32", shape)), ("i8", ttype), ("u32", buf(data) if data is not None else 0),
                         ("ref", S(name)), ("ref", q) if q else None))
        return len(tensors) - 1

    F32, I32, I8 = 0, 2, 9
    t_in = tensor("input", [1, 8, 8, 3], F32)
    t_inq = tensor("input_int8", [1, 8, 8, 3], I8, scale=[0.0078125], zp=[0])
    cw_s = [0.01, 0.02, 0.015, 0.03]
    t_cw = tensor("conv/weights", [4, 3, 3, 3], I8, rng.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8), cw_s, [0] * 4, 0)
    t_cb = tensor("conv/bias", [4], I32, rng.integers(-500, 500, 4, dtype=np.int32), [0.0078125 * s for s in cw_s], [0] * 4)
    t_c = tensor("conv/relu6", [1, 4, 4, 4], I8, scale=[0.0235], zp=[-128])
    dw_s = [0.05, 0.04, 0.03, 0.02]
    t_dw = tensor("dw/weights", [1, 3, 3, 4], I8, rng.integers(-127, 128, (1, 3, 3, 4), dtype=np.int8), dw_s, [0] * 4, 3)
    t_db = tensor("dw/bias", [4], I32, rng.integers(-500, 500, 4, dtype=np.int32), [0.0235 * s for s in dw_s], [0] * 4, 0)
    t_d = tensor("dw/out", [1, 4, 4, 4], I8, scale=[0.03], zp=[-5])
    t_add = tensor("add", [1, 4, 4, 4], I8, scale=[0.04], zp=[-3])
    t_pool = tensor("pool", [1, 1, 1, 4], I8, scale=[0.04], zp=[-3])
    t_fw = tensor("fc/weights", [2, 4], F32, rng.standard_normal((2, 4)).astype(np.float32))
    t_fb = tensor("fc/bias", [2], F32, np.array([0.5, -0.25], np.float32))
    t_out = tensor("logits", [1, 2], F32)

    codes = [3, 4, 0, 1, 9, 114]  # CONV_2D, DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D, FULLY_CONNECTED, QUANTIZE
    opcodes = V("ref", [T(("i8", min(c, 127)), None, ("i32", 1), ("i32", c)) for c in codes])

    def op(code, ins, outs, opt_tag=0, opt=None):
        return T(("u32", codes.index(code)), ("ref", V("i32", ins)), ("ref", V("i32", outs)),
                 ("u8", opt_tag) if opt_tag else None, ("ref", opt) if opt else None)

    ops = [op(114, [t_in], [t_inq]),
           op(3, [t_inq, t_cw, t_cb], [t_c], 1, T(("i8", 0), ("i32", 2), ("i32", 2), ("i8", 3), ("i32", 1), ("i32", 1))),
           op(4, [t_c, t_dw, t_db], [t_d], 2, T(("i8", 0), ("i32", 1), ("i32", 1), ("i32", 1), ("i8", 0), ("i32", 1), ("i32", 1))),
           op(0, [t_c, t_d], [t_add], 11, T(("i8", 1))),
           op(1, [t_add], [t_pool], 5, T(("i8", 1), ("i32", 1), ("i32", 1), ("i32", 4), ("i32", 4), ("i8", 0))),
           op(9, [t_pool, t_fw, t_fb], [t_out], 8, T(("i8", 0)))]
    sub = T(("ref", V("ref", tensors)), ("ref", V("i32", [t_in])), ("ref", V("i32", [t_out])),
            ("ref", V("ref", ops)), ("ref", S("main")))
    buffers = V("ref", [T()] + [T(("ref", V("u8", r))) for r in raw])
    model = T(("u32", 3), ("ref", opcodes), ("ref", V("ref", [sub])), ("ref", S("ote-c fuzz seed")), ("ref", buffers))
    data = Writer().finish(model)
    with open(path, "wb") as f:
        f.write(data)

    # read back with the independent reader of the tests
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
    from tflite_ref import read_model
    rt, rb, rops = read_model(path)
    assert len(rt) == len(tensors) and [o["code"] for o in rops] == [114, 3, 4, 0, 1, 9], rops
    assert rt[t_cw]["shape"] == [4, 3, 3, 3] and rt[t_cw]["quant_dim"] == 0 and len(rt[t_cw]["scale"]) == 4
    assert rt[t_dw]["quant_dim"] == 3 and rb[rt[t_fb]["buffer"]].tobytes() == raw[rt[t_fb]["buffer"] - 1]
    assert rops[1]["opt"][:4] == [2, 2, 0, 3], rops[1]


if __name__ == "__main__":
    main(sys.argv[1])

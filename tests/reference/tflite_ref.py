"""tflite_ref.py - independent reference facts about the two shared TFLite files, for
tests/test_io_tfl.c.

A second, separate FlatBuffer walk written with Python's struct module and numpy (no TensorFlow,
no flatbuffers package; nothing shared with io/tfl.c), following the FlatBuffer encoding
(root uoffset, soffset to the vtable, u16 field offsets, uoffset references, length-prefixed
vectors) and the TFLite schema field ids listed in io/tfl.c's header.

Run with /usr/bin/python3 from the repo root (OTE_SHARED or ../shared must hold the weights).
Writes tests/reference/fixtures/tflite_ref.fx with, per file prefix (tf2 = the int8 per-channel
file, v1 = the uint8 per-tensor file):
  <p>.n_tensors, <p>.n_buffers          scalars
  <p>.opcodes                           resolved builtin code of every operator, in order
  <p>.conv_opts                         per CONV_2D/DEPTHWISE op: [op, stride_w, stride_h, padding,
                                        activation, depth_multiplier (0 for CONV_2D)]
  <p>.<role>.index/.shape/.type/.quant_dim/.scale/.zero_point/.deq (first 64 values, numpy
  dequantisation scale*(q - zp) per channel), for role in w0 (first conv weight), dw0 (first
  depthwise weight), wcls (last conv weight, the classifier)
  <p>.b0.deq                            first conv's int32 bias * input_scale * weight_scale[c]
"""
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402


class Buf:
    def __init__(self, data):
        self.d = data

    def u8(self, o):
        return self.d[o]

    def i8(self, o):
        return struct.unpack_from('<b', self.d, o)[0]

    def u16(self, o):
        return struct.unpack_from('<H', self.d, o)[0]

    def u32(self, o):
        return struct.unpack_from('<I', self.d, o)[0]

    def i32(self, o):
        return struct.unpack_from('<i', self.d, o)[0]

    # table helpers: `t` is the absolute table position
    def field(self, t, fid):
        vt = t - self.i32(t)
        vsize = self.u16(vt)
        slot = 4 + 2 * fid
        if slot >= vsize:
            return None
        off = self.u16(vt + slot)
        return t + off if off else None

    def scalar(self, t, fid, fmt, default):
        p = self.field(t, fid)
        return default if p is None else struct.unpack_from('<' + fmt, self.d, p)[0]

    def ref(self, t, fid):
        p = self.field(t, fid)
        return None if p is None else p + self.u32(p)

    def vector(self, t, fid):
        v = self.ref(t, fid)
        if v is None:
            return 0, 0
        return self.u32(v), v + 4

    def tables(self, t, fid):
        n, start = self.vector(t, fid)
        return [start + 4 * i + self.u32(start + 4 * i) for i in range(n)]

    def array(self, t, fid, dtype):
        n, start = self.vector(t, fid)
        return np.frombuffer(self.d, dtype=dtype, count=n, offset=start) if n else np.zeros(0, dtype)

    def string(self, t, fid):
        n, start = self.vector(t, fid)
        return bytes(self.d[start:start + n]).decode('utf-8', 'replace')


NP_TYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 9: np.int8}


def read_model(path):
    b = Buf(open(path, 'rb').read())
    assert b.d[4:8] == b'TFL3', path
    root = b.u32(0)
    opcodes = []
    for oc in b.tables(root, 1):
        dep = b.scalar(oc, 0, 'b', 0)
        code = b.scalar(oc, 3, 'i', 0)
        opcodes.append(max(dep, code))
    buffers = [b.array(bt, 0, np.uint8) for bt in b.tables(root, 4)]
    sg = b.tables(root, 2)[0]
    tensors = []
    for tt in b.tables(sg, 0):
        t = {'shape': [int(x) for x in b.array(tt, 0, '<i4')],
             'type': b.scalar(tt, 1, 'b', 0),
             'buffer': b.scalar(tt, 2, 'I', 0),
             'name': b.string(tt, 3),
             'scale': np.zeros(0, np.float32), 'zero_point': np.zeros(0, np.int64), 'quant_dim': 0}
        q = b.ref(tt, 4)
        if q is not None:
            t['scale'] = b.array(q, 2, '<f4').astype(np.float32)
            t['zero_point'] = b.array(q, 3, '<i8').astype(np.int64)
            t['quant_dim'] = b.scalar(q, 6, 'i', 0)
        tensors.append(t)
    ops = []
    for ot in b.tables(sg, 3):
        op = {'code': opcodes[b.scalar(ot, 0, 'I', 0)],
              'inputs': [int(x) for x in b.array(ot, 1, '<i4')],
              'outputs': [int(x) for x in b.array(ot, 2, '<i4')],
              'opt_type': b.scalar(ot, 3, 'B', 0)}
        o = b.ref(ot, 4)
        if op['code'] == 3 and o is not None:      # Conv2DOptions
            op['opt'] = [b.scalar(o, 1, 'i', 0), b.scalar(o, 2, 'i', 0), b.scalar(o, 0, 'b', 0),
                         b.scalar(o, 3, 'b', 0), 0]
        elif op['code'] == 4 and o is not None:    # DepthwiseConv2DOptions
            op['opt'] = [b.scalar(o, 1, 'i', 0), b.scalar(o, 2, 'i', 0), b.scalar(o, 0, 'b', 0),
                         b.scalar(o, 4, 'b', 0), b.scalar(o, 3, 'i', 0)]
        ops.append(op)
    return tensors, buffers, ops


def dequant(t, buffers):
    q = buffers[t['buffer']].view(NP_TYPES[t['type']]).astype(np.float64).reshape(t['shape'])
    s = t['scale'].astype(np.float64)
    zp = t['zero_point'].astype(np.float64) if len(t['zero_point']) else np.zeros(1)
    if len(s) > 1:
        bshape = [1] * len(t['shape'])
        bshape[t['quant_dim']] = len(s)
        s = s.reshape(bshape)
        zp = zp.reshape(bshape) if len(zp) > 1 else zp
    return (s * (q - zp)).astype(np.float32).reshape(-1)


def facts(prefix, path):
    tensors, buffers, ops = read_model(path)
    out = {prefix + '.n_tensors': np.array(len(tensors)), prefix + '.n_buffers': np.array(len(buffers)),
           prefix + '.opcodes': np.array([o['code'] for o in ops], np.int64)}
    opts = [[i] + o['opt'] for i, o in enumerate(ops) if o['code'] in (3, 4)]
    out[prefix + '.conv_opts'] = np.array(opts, np.int64)
    convs = [o for o in ops if o['code'] == 3]
    dws = [o for o in ops if o['code'] == 4]
    for role, op in (('w0', convs[0]), ('dw0', dws[0]), ('wcls', convs[-1])):
        ti = op['inputs'][1]
        t = tensors[ti]
        p = prefix + '.' + role
        out[p + '.index'] = np.array(ti)
        out[p + '.shape'] = np.array(t['shape'], np.int64)
        out[p + '.type'] = np.array(t['type'])
        out[p + '.quant_dim'] = np.array(t['quant_dim'])
        out[p + '.scale'] = t['scale']
        out[p + '.zero_point'] = t['zero_point']
        out[p + '.deq'] = dequant(t, buffers)[:64]
    op = convs[0]
    bt, xt, wt = tensors[op['inputs'][2]], tensors[op['inputs'][0]], tensors[op['inputs'][1]]
    qb = buffers[bt['buffer']].view('<i4').astype(np.float64)
    ws = wt['scale'].astype(np.float64)
    out[prefix + '.b0.deq'] = (qb * float(xt['scale'][0]) * (ws if len(ws) > 1 else ws[0])).astype(np.float32)
    return out


def main():
    shared = os.environ.get('OTE_SHARED', os.path.join(os.getcwd(), '..', 'shared'))
    d = os.path.join(shared, 'weights', 'mobilenet_v2_1.0_224_tflite')
    arrays = {}
    arrays.update(facts('tf2', os.path.join(d, 'tf2_mobilenet_v2_1.0_224_ptq.tflite')))
    arrays.update(facts('v1', os.path.join(d, 'mobilenet_v2_1.0_224_quant.tflite')))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'tflite_ref.fx')
    write_fixture(out, arrays)
    print('wrote', out, os.path.getsize(out), 'bytes')


if __name__ == '__main__':
    main()

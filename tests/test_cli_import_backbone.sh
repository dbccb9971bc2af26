# test_cli_import_backbone.sh - `ote import-backbone` end to end.
#
# Both shared TFLite files import (backbone only, and with the classifier); the result is a real
# PyTorch checkpoint: torch.load opens it, and a torch forward written here with torch's own ops
# (F.conv2d, F.pad for TF "SAME" padding, F.batch_norm in eval mode with the stored statistics,
# ReLU6, residual adds, average pool, linear) on the imported weights classifies the four test
# images as the weights README says (cat 286, bird 20, grace_hopper 653, dragonfly 320).
# Bad input (not a FlatBuffer, truncated, a tensor shape that is not MobileNetV2's, a missing
# file, usage errors) gives exit code 1 or 2 and exactly one line on stderr.
set -u
. "$(dirname "$0")/lib.sh"
: "${OTE_BIN:?}" "${OTE_SHARED:?}" "${OTE_SRC:=.}"
W="$OTE_SHARED/weights/mobilenet_v2_1.0_224_tflite"

for f in tf2_mobilenet_v2_1.0_224_ptq mobilenet_v2_1.0_224_quant; do
    "$OTE_BIN" import-backbone "$W/$f.tflite" --save-model-to "$TMP/$f.pth" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    if [ $rc = 0 ] && [ -s "$TMP/$f.pth" ] && [ ! -s "$TMP/err" ]; then ok "$f: backbone import ($(cat "$TMP/out"))"; else bad "$f: rc $rc: $(cat "$TMP/err")"; fi
    "$OTE_BIN" import-backbone "$W/$f.tflite" --keep-classifier --save-model-to "$TMP/${f}_cls.pth" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    if [ $rc = 0 ] && [ -s "$TMP/${f}_cls.pth" ]; then ok "$f: import with classifier"; else bad "$f: --keep-classifier rc $rc: $(cat "$TMP/err")"; fi
done
"$OTE_BIN" import-backbone "$W/tf2_mobilenet_v2_1.0_224_ptq.tflite" --input-range unit --save-model-to "$TMP/unit.pth" >/dev/null 2>"$TMP/err"
if [ $? = 0 ] && [ -s "$TMP/unit.pth" ]; then ok "--input-range unit"; else bad "--input-range unit: $(cat "$TMP/err")"; fi
"$OTE_BIN" import-backbone "$W/tf2_mobilenet_v2_1.0_224_ptq.tflite" --save-model-to "$TMP/outdir" >/dev/null 2>"$TMP/err"
if [ $? = 0 ] && [ -s "$TMP/outdir/weights.pth" ]; then ok "directory output -> outdir/weights.pth"; else bad "directory output: $(cat "$TMP/err")"; fi

# torch: load, check names/shapes/BN, classify (tolerance: top-1 class must be exact)
checks_from /usr/bin/python3 - "$TMP" "$W" <<'EOF'
import sys
import numpy as np
import torch
import torch.nn.functional as F

T, W = sys.argv[1], sys.argv[2]
fail = 0
def check(ok, msg):
    global fail
    print(('ok  : ' if ok else 'FAIL: ') + msg)
    fail |= not ok

def read_bmp(path):
    b = open(path, 'rb').read()
    off = int.from_bytes(b[10:14], 'little'); w = int.from_bytes(b[18:22], 'little', signed=True)
    h = int.from_bytes(b[22:26], 'little', signed=True); bpp = int.from_bytes(b[28:30], 'little')
    assert bpp == 24
    row = (w * 3 + 3) & ~3
    a = np.frombuffer(b, np.uint8, row * abs(h), off).reshape(abs(h), row)[:, :w * 3].reshape(abs(h), w, 3)
    if h > 0:
        a = a[::-1]
    return a[:, :, ::-1].astype(np.float32)  # BGR -> RGB

def same_pad(x, k, s):
    h, w = x.shape[2], x.shape[3]
    def p(n):
        out = (n + s - 1) // s
        tot = max((out - 1) * s + k - n, 0)
        return tot // 2, tot - tot // 2
    (t, b), (l, r) = p(h), p(w)
    return F.pad(x, (l, r, t, b))

def cbr(sd, pre, x, stride, groups, act):
    wt = sd[pre + '.conv.weight']
    x = F.conv2d(same_pad(x, wt.shape[2], stride), wt, None, stride, 0, 1, groups)
    x = F.batch_norm(x, sd[pre + '.bn.running_mean'], sd[pre + '.bn.running_var'], sd[pre + '.bn.weight'],
                     sd[pre + '.bn.bias'], False, 0.1, 1e-5)
    return F.relu6(x) if act else x

def forward(sd, x):
    x = cbr(sd, 'backbone.features.init_block', x, 2, 1, True)
    cfg = [(1, 16, 1, 1, 1), (6, 24, 2, 2, 2), (6, 32, 3, 2, 3), (6, 64, 4, 2, 4), (6, 96, 3, 1, 4), (6, 160, 3, 2, 5), (6, 320, 1, 1, 5)]
    unit = {}
    for t, c, n, s, stage in cfg:
        for i in range(n):
            unit[stage] = unit.get(stage, 0) + 1
            pre = 'backbone.features.stage%d.unit%d' % (stage, unit[stage])
            cin, stride = x.shape[1], (s if i == 0 else 1)
            h = cbr(sd, pre + '.conv1', x, 1, 1, True) if t != 1 else x
            h = cbr(sd, pre + '.conv2', h, stride, h.shape[1], True)
            h = cbr(sd, pre + '.conv3', h, 1, 1, False)
            x = x + h if (stride == 1 and cin == c) else h
    x = cbr(sd, 'backbone.features.final_block', x, 1, 1, True)
    x = x.mean((2, 3))
    return F.linear(x, sd['backbone.output.weight'], sd['backbone.output.bias'])

want = {'cat': 286, 'bird': 20, 'grace_hopper': 653, 'dragonfly': 320}
imgs = {}
for name in want:
    a = torch.from_numpy(read_bmp('%s/testimages/%s.bmp' % (W, name)).copy()).permute(2, 0, 1)[None]
    a = F.interpolate(a, size=(224, 224), mode='bilinear', align_corners=False)
    imgs[name] = a / 127.5 - 1.0

for f in ('tf2_mobilenet_v2_1.0_224_ptq', 'mobilenet_v2_1.0_224_quant'):
    ck = torch.load('%s/%s.pth' % (T, f), map_location='cpu')
    sd = ck['model']
    check(len(sd) == 51 * 6 and 'backbone.output.weight' not in sd and ck['config']['import']['padding'] == 'tf_same',
          '%s: torch.load: %d tensors (want 306 = 51 convs x (weight + 5 BN)), no classifier, config import.padding=tf_same' % (f, len(sd)))
    check(tuple(sd['backbone.features.init_block.conv.weight'].shape) == (32, 3, 3, 3) and
          tuple(sd['backbone.features.stage5.unit4.conv3.conv.weight'].shape) == (320, 960, 1, 1) and
          'backbone.features.stage1.unit1.conv1.conv.weight' not in sd,
          '%s: OIHW shapes, torchvision variant (no stage1.unit1.conv1)' % f)
    ck = torch.load('%s/%s_cls.pth' % (T, f), map_location='cpu')
    sd = ck['model']
    check(tuple(sd['backbone.output.weight'].shape) == (1001, 1280), '%s: classifier (1001, 1280) kept' % f)
    with torch.no_grad():
        for name, k in want.items():
            p = torch.softmax(forward(sd, imgs[name]), 1)[0]
            top = int(p.argmax())
            check(top == k, '%s: torch forward: %s -> %d (p = %.4f), want %d' % (f, name, top, float(p[top]), k))
# --input-range unit: init_block weight doubled, bn.bias minus the per-channel weight sum (tol 1e-5 abs)
a = torch.load('%s/tf2_mobilenet_v2_1.0_224_ptq.pth' % T, map_location='cpu')
u = torch.load('%s/unit.pth' % T, map_location='cpu')
w, wu = a['model']['backbone.features.init_block.conv.weight'], u['model']['backbone.features.init_block.conv.weight']
b, bu = a['model']['backbone.features.init_block.bn.bias'], u['model']['backbone.features.init_block.bn.bias']
db = float((bu - (b - w.double().sum((1, 2, 3)).float())).abs().max())
check(torch.equal(wu, 2 * w) and db < 1e-5 and u['config']['import']['input'] == 'rgb_0_to_1' and
      torch.equal(a['model']['backbone.features.stage1.unit1.conv2.conv.weight'], u['model']['backbone.features.stage1.unit1.conv2.conv.weight']),
      '--input-range unit: weight x2, bias - sum(w) (max diff %.2g), other layers unchanged, config import.input=rgb_0_to_1' % db)
sys.exit(1 if fail else 0)
EOF

one_line_err() { # rc_expected label
    local want=$1 label=$2 rc=$3
    local n
    n=$(wc -l <"$TMP/err")
    if [ "$rc" = "$want" ] && [ "$n" = 1 ]; then ok "$label -> exit $rc: $(cat "$TMP/err")"; else bad "$label -> exit $rc (want $want), $n stderr lines: $(cat "$TMP/err")"; fi
}
"$OTE_BIN" import-backbone "$W/imagenet_labels.txt" --save-model-to "$TMP/x.pth" >/dev/null 2>"$TMP/err"
one_line_err 1 "not a FlatBuffer" $?
grep -q "TFL3" "$TMP/err" || bad "not-a-FlatBuffer message names the identifier"
head -c 2000000 "$W/mobilenet_v2_1.0_224_quant.tflite" >"$TMP/trunc.tflite"
"$OTE_BIN" import-backbone "$TMP/trunc.tflite" --save-model-to "$TMP/x.pth" >/dev/null 2>"$TMP/err"
one_line_err 1 "truncated file" $?
/usr/bin/python3 - "$W/mobilenet_v2_1.0_224_quant.tflite" "$TMP/shape.tflite" <<'EOF'
# Patch one activation tensor's shape (the input of the first projection conv: 32 -> 33
# channels) with the independent reference FlatBuffer walk.
import struct, sys
sys.path.insert(0, 'tests/reference')
from tflite_ref import Buf
b = Buf(bytearray(open(sys.argv[1], 'rb').read()))
root = b.u32(0)
sg = b.tables(root, 2)[0]
tensors, ops = b.tables(sg, 0), b.tables(sg, 3)
ti = int(b.array(ops[2], 1, '<i4')[0])
n, start = b.vector(tensors[ti], 0)
assert n == 4 and b.i32(start + 12) == 32
struct.pack_into('<i', b.d, start + 12, 33)
open(sys.argv[2], 'wb').write(bytes(b.d))
EOF
"$OTE_BIN" import-backbone "$TMP/shape.tflite" --save-model-to "$TMP/x.pth" >/dev/null 2>"$TMP/err"
one_line_err 1 "tensor shape not MobileNetV2's" $?
grep -q "33 channels, expected 32" "$TMP/err" || bad "shape-mismatch message names the shape"
"$OTE_BIN" import-backbone "$TMP/missing.tflite" --save-model-to "$TMP/x.pth" >/dev/null 2>"$TMP/err"
one_line_err 1 "missing file" $?
"$OTE_BIN" import-backbone "$W/mobilenet_v2_1.0_224_quant.tflite" >/dev/null 2>"$TMP/err"
one_line_err 2 "no --save-model-to" $?
"$OTE_BIN" import-backbone "$W/mobilenet_v2_1.0_224_quant.tflite" --save-model-to "$TMP/x.pth" --bogus >/dev/null 2>"$TMP/err"
one_line_err 2 "unknown option" $?
"$OTE_BIN" import-backbone "$W/mobilenet_v2_1.0_224_quant.tflite" --save-model-to "$TMP/x.pth" --input-range zero >/dev/null 2>"$TMP/err"
one_line_err 2 "bad --input-range value" $?
check "no output file after failures" "[ ! -e '$TMP/x.pth' ]"

finish

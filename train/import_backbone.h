/* import_backbone.h - maps a parsed TFLite MobileNetV2 (width 1.0, BatchNorm folded, ReLU6 fused)
 * onto the torchvision-variant backbone with mmdetection-style parameter names.
 *
 * Parameter names (torchvision block structure, named with the pytorchcv/mmdetection scheme of
 * spec-detector.md §2; `S.U` = stage.unit):
 *   backbone.features.init_block.conv.weight                 (32, 3, 3, 3)   3x3 s2
 *   backbone.features.stage1.unit1.conv2.conv.weight         (32, 1, 3, 3)   dw s1 (no conv1:
 *   backbone.features.stage1.unit1.conv3.conv.weight         (16, 32, 1, 1)   torchvision has no
 *                                                                              expansion for t=1)
 *   backbone.features.stage{S}.unit{U}.conv1.conv.weight     (mid, in, 1, 1) expansion, ReLU6
 *   backbone.features.stage{S}.unit{U}.conv2.conv.weight     (mid, 1, 3, 3)  depthwise, ReLU6
 *   backbone.features.stage{S}.unit{U}.conv3.conv.weight     (out, mid, 1, 1) linear projection
 *     stages: 1 (1 unit, 16 ch), 2 (2 units, 24), 3 (3, 32), 4 (7: 4 x 64 then 3 x 96),
 *     5 (4: 3 x 160 then 1 x 320); stride 2 in unit1 of stages 2..5 (on the depthwise conv).
 *   every conv above also has .bn.{weight,bias,running_mean,running_var}          (C)
 *   with keep_classifier only:
 *   backbone.features.final_block.conv.weight (1280, 320, 1, 1) + .bn.*, ReLU6
 *   backbone.output.weight (K, 1280), backbone.output.bias (K)   after global average pooling;
 *     K = 1001 for these files (class 0 = background, as in imagenet_labels.txt).
 *
 * Padding: the weights assume TF "SAME" padding: pad_total = max((ceil(in/s) - 1)*s + k - in, 0),
 * pad_before = pad_total / 2 (floor), pad_after = the rest. For a 3x3 stride-2 conv on an even
 * input that is 0 at top/left and 1 at bottom/right (PyTorch's symmetric pad 1 differs).
 * Input: RGB scaled to [-1, 1] (x / 127.5 - 1); after import_backbone_fold_unit_input, x / 255.
 *
 * BatchNorm: these files fold BN into conv weight + bias, so each conv gets a BN that is exactly
 * "identity + bias" in eval mode: weight (gamma) = 1, bias (beta) = the folded conv bias,
 * running_mean = 0, running_var = 1 - eps with eps = 1e-5 (PyTorch's default, spec §2), so that
 * (x - 0) / sqrt(var + eps) * 1 + beta = x + beta. In float32, (1 - 1e-5f) + 1e-5f rounds to 1
 * (checked by the test). In training mode BN normalises with batch statistics instead, which
 * discards the per-channel scale folded into the conv weights and replaces the folded shift by
 * beta alone; the pretrained function is then only approximately kept (the first training steps
 * re-learn gamma). Re-estimating statistics, or freezing BN (norm_eval), avoids that.
 *
 * Ownership: import_backbone_result owns every parameter buffer; import_backbone_free releases them.
 */
#ifndef OTE_IMPORT_BACKBONE_H
#define OTE_IMPORT_BACKBONE_H

#include <stdint.h>

#include "io/pth.h"
#include "io/tfl.h"

#define IMPORT_BACKBONE_BN_EPS 1e-5f

typedef struct import_backbone_param {
    char name[96];
    int ndim;
    int64_t shape[4];  /* PyTorch layout: conv OIHW, depthwise (C, 1, KH, KW), linear (K, C) */
    int64_t numel;
    float *data;       /* owned */
} import_backbone_param;

typedef struct import_backbone_result {
    import_backbone_param *p; /* in state-dict order */
    int n, cap;
    int n_convs;       /* convs mapped: 51 (init_block + 17 units), 52 with keep_classifier */
    int n_classes;     /* K when the classifier was kept, else 0 */
} import_backbone_result;

/* Walks m (which must be the 36 CONV_2D / 17 DEPTHWISE_CONV_2D / 10 ADD MobileNetV2 1.0 graph,
 * with an optional pooled 1x1-conv or FULLY_CONNECTED classifier), validates every operator's
 * wiring, options and tensor shapes, dequantises the weights and fills `out`. keep_classifier
 * also imports the final 1x1 conv and the classifier (an error if the model has none). Any
 * mismatch is OTE_EPARSE with a one-line message naming the operator and what was expected. */
int import_backbone_tflite(const tfl_model *m, int keep_classifier, import_backbone_result *out);
/* Folds the TF input mapping x/127.5 - 1 = 2*(x/255) - 1 into init_block so the weights take
 * x/255 in [0, 1], the detector's normalisation (spec-detector.md §1): conv weight *= 2 and
 * bn.bias -= sum of the (original) weights per output channel (exact because the BN is
 * identity + bias). Exact everywhere except where the first conv reads padding: TF pads with 0,
 * which is mid-grey in TF's [-1, 1] range but black after folding (for even inputs only the
 * bottom row and right column of the first feature map, see import_backbone.h padding). */
int import_backbone_fold_unit_input(import_backbone_result *r);
/* The checkpoint `ote import-backbone` writes (OTE layout): every parameter in order, each BN
 * followed by num_batches_tracked = 0 (int64 scalar, as torch's BatchNorm2d state dict has it),
 * and the config a consumer needs to reproduce the pretrained function: import.source (the file
 * name given), import.variant=torchvision, import.padding=tf_same, import.input=rgb_minus1_to_1
 * (or rgb_0_to_1 after import_backbone_fold_unit_input: unit_input = 1) and
 * import.bn=identity_plus_bias. On error out is left empty. */
int import_backbone_to_ckpt(const import_backbone_result *r, const char *source, int unit_input, pth_ckpt *out);
void import_backbone_free(import_backbone_result *r);
const import_backbone_param *import_backbone_find(const import_backbone_result *r, const char *name);

#endif

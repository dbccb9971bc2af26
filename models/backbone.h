/* backbone.h - the MobileNetV2 backbone (spec-detector.md §2): layers, per-shape plan, forward and
 * backward, and the BN-folded inference twins.
 *
 * Network (input H x W, stride of each stage's first unit 2 except stage 1):
 *   init_block  3x3 s2 conv + BN + ReLU6           (N, 32, H/2, W/2)
 *   stage1 unit 0        LinearBottleneck 32 -> 16   (N, 16, H/2, W/2)
 *   stage2 units 1-2     -> 24                      (N, 24, H/4, W/4)
 *   stage3 units 3-5     -> 32                      (N, 32, H/8, W/8)      unit 5 output = C3
 *   stage4 units 6-12    -> 64 (x4), 96 (x3)        (N, 96, H/16, W/16)    unit 12 output = C4
 *   stage5 units 13-16   -> 160 (x3), 320           (N, 320, H/32, W/32)   unit 16 output = C5
 * A unit is c[0] 1x1 expand (x6; absent in torchvision's unit 0) + ReLU6, c[1] 3x3 depthwise
 * (the unit's stride) + ReLU6, c[2] 1x1 linear projection, plus the input when cin == cout and
 * stride 1 (residual). Every conv is followed by BN (no conv bias).
 *
 * Ownership: the backbone owns its layers (weights in the detector's params_table arenas) and the
 * folded inference weights (iparams arena). A backbone_plan owns its primitives; its tensors are
 * registered with the plan's memplan, which places and binds them.
 *
 * Invariants: training BN uses batch statistics and updates the running statistics; inference
 * runs each block as one folded conv (BN in weights + bias, ReLU6 and the residual sum as
 * post-ops), valid only after backbone_fold since the last parameter change.
 */
#ifndef OTE_BACKBONE_H
#define OTE_BACKBONE_H

#include "engine/add.h"
#include "engine/bn.h"
#include "engine/bnr.h"
#include "engine/conv.h"
#include "engine/eltwise.h"
#include "models/det.h"
#include "models/det_impl.h"
#include "models/params.h"

#define BACKBONE_UNITS 17
/* Units whose outputs feed the FPN: C3, C4, C5 (C2 after unit 2 is unused). */
#define BACKBONE_TAP_C3 5
#define BACKBONE_TAP_C4 12
#define BACKBONE_TAP_C5 16

/* conv (no bias) + BN (+ ReLU6) */
typedef struct backbone_cbr {
    conv_layer conv;
    bn_layer bn;
    conv_layer iconv; /* inference twin: BN folded into weights + bias, ReLU6 / residual sum as
                       * post-ops (iparams arena), refolded before predict when weights changed */
    int relu6;
    int present;
} backbone_cbr;

/* LinearBottleneck: c[0] 1x1 expand (maybe absent), c[1] 3x3 depthwise, c[2] 1x1 linear */
typedef struct backbone_unit {
    backbone_cbr c[3];
    int cin, mid, cout, stride, residual;
} backbone_unit;

typedef struct backbone {
    det_backbone kind;    /* pytorchcv (stage1 has the 1x1 expansion conv) or torchvision */
    int tf_padding;       /* TF "SAME" padding on the stride-2 3x3 convs */
    int bn_onednn;        /* det_cfg.bn_onednn: oneDNN BN + eltwise instead of the fused bnrelu */
    int bn_frozen;        /* det_cfg.bn_frozen: every BN trains with frozen statistics (bn.h frozen) */
    arena iparams;        /* folded inference weights of every block */
    eltwise_layer relu6;  /* ReLU6 after BN when bn_onednn */
    backbone_cbr init;    /* init_block */
    backbone_unit u[BACKBONE_UNITS];
} backbone;

/* One conv + BN (+ ReLU6) block of a plan; (N, OC, OH, OW) is the block's output shape. */
typedef struct backbone_cbr_plan {
    tensor conv_out;    /* (N, OC, OH, OW) nChw<B>c conv output = BN input (saved); inference: the
                         * folded block's output */
    tensor bn_out;      /* (N, OC, OH, OW) nChw<B>c BN output, ReLU6 in place (saved, training only) */
    tensor d_out;       /* (N, OC, OH, OW) nChw<B>c gradient of the block output; ReLU6 and BN
                         * backward run in place on it (slot; C5's is fixed: the neck writes it) */
    tensor d_conv_out;  /* (N, OC, OH, OW) nChw<B>c BN input gradient when BN backward is out of place
                         * (residual conv3: d_out also feeds the skip) (slot) */
    tensor *out;        /* the block output: &bn_out (training), &conv_out or the unit input (inference);
                         * written by the residual add / sum post-op */
    conv_plan pl_conv;
    bn_plan pl_bn;      /* bn_onednn: oneDNN BN, then ReLU6 (pl_relu6) in place */
    eltwise_plan pl_relu6;
    bnr_plan pl_bnrelu; /* default: fused BN (+ ReLU6) */
    int fused;          /* 1: pl_bnrelu is used instead of pl_bn + pl_relu6 */
    int d_conv_out_used;
} backbone_cbr_plan;

typedef struct backbone_unit_plan {
    backbone_cbr_plan c[3];
    add_plan pl_residual; /* c[2] output += unit input (training; inference fuses it as a post-op) */
    const tensor *in;     /* (N, cin, H_in, W_in) nChw<B>c unit input = previous unit's (or init's) output */
    tensor *d_in;         /* (N, cin, H_in, W_in) nChw<B>c its gradient = previous block's d_out (training) */
} backbone_unit_plan;

typedef struct backbone_plan {
    tensor image;                           /* (N, 3, H, W) plain NCHW input, RGB / 255 (saved) */
    backbone_cbr_plan init;                 /* image -> (N, 32, H/2, W/2) */
    backbone_unit_plan u[BACKBONE_UNITS];
    const tensor *c3;                       /* (N, 32, H/8, W/8) nChw<B>c unit 5 output */
    const tensor *c4;                       /* (N, 96, H/16, W/16) nChw<B>c unit 12 output */
    const tensor *c5;                       /* (N, 320, H/32, W/32) nChw<B>c unit 16 output */
    tensor *d_c5;                           /* (N, 320, H/32, W/32) nChw<B>c gradient of C5 (fixed; training) */
} backbone_plan;

/* Creates the layers and registers their parameters under pytorchcv names
 * (backbone.features.init_block / stageS.unitU.convK.{conv,bn}). */
int backbone_init(backbone *b, eng_ctx *e, const det_cfg *cfg, params_table *tab);
/* Commits the folded-weights arena (after backbone_init). */
int backbone_commit(backbone *b);
/* Initial weights as the backbone's reference does (pytorchcv / torchvision), BN reset. */
int backbone_init_params(backbone *b, eng_ctx *e, rng *r, float *buf);
/* Marks every BN for calibration at the next training forward (engine/bn.h calibrate; fused BN
 * only): it then outputs its input plus its beta on that batch (BN-folded pretrained weights). */
void backbone_calibrate_bn(backbone *b);
/* Folds every BN's eval-mode statistics into the inference twins. */
int backbone_fold(backbone *b, eng_ctx *e);
void backbone_free(backbone *b);

/* Plans the backbone for pl's shape on an input of h x w: image -> C3, C4, C5. */
int backbone_plan_init(backbone_plan *p, backbone *b, det_planner *pl, int h, int w);
void backbone_plan_free(backbone_plan *p, const backbone *b);
/* image -> C3, C4, C5 (training: batch-statistics BN; inference: folded convs). */
int backbone_forward(backbone_plan *p, const backbone *b, eng_ctx *e, int training);
/* d_c5 (in p), d_c3, d_c4 (from the neck) -> every backbone parameter gradient; s != NULL: slot
 * simulation only. */
int backbone_backward(backbone_plan *p, const backbone *b, eng_ctx *e, memplan_sim *s, const tensor *d_c3,
                      const tensor *d_c4);

#endif

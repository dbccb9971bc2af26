/* det.h - the MobileNetV2-ATSS detector API (contract between models/ and tools/).
 *
 * A detector owns its parameters, gradients and optimiser state (one block each; DESIGN.md §2)
 * and a cache of plans, one per input shape (N, H, W). Plans share one saved-activation block and
 * one transient block (only one plan runs at a time), sized to the largest plan, so caching the
 * few training shapes does not multiply memory. Building a plan creates every oneDNN primitive;
 * a training step after that creates none and allocates nothing.
 *
 * Parameter names are mmdetection's state_dict names (spec-detector.md §2-§4), e.g.
 * `backbone.features.stage2.unit1.conv1.conv.weight`, `neck.lateral_convs.0.conv.weight`,
 * `bbox_head.cls_convs.0.gn.weight`, `bbox_head.scales.0.scale`; BN running statistics and
 * `num_batches_tracked` are listed as buffers.
 *
 * Implementation: det.c ties together backbone.c (MobileNetV2), neck.c (FPN), head.c (ATSS
 * head), params.c (parameter store) and memplan.c (activation memory), sharing det_impl.h.
 */
#ifndef OTE_DET_H
#define OTE_DET_H

#include <stdint.h>

#include "engine/eng.h"
#include "models/anchors.h"
#include "models/head_io.h"

typedef enum det_backbone {
    DET_BACKBONE_PYTORCHCV = 0, /* pytorchcv mobilenetv2_w1 (extra 1x1 conv in stage1), OTE's */
    DET_BACKBONE_TORCHVISION,   /* torchvision mobilenet_v2 (no stage1 expansion conv) */
} det_backbone;

typedef struct det_cfg {
    int num_classes;      /* from the dataset */
    det_backbone backbone;
    int tf_padding;       /* 1: TF "SAME" asymmetric padding on stride-2 convs (TFLite weights) */
    uint64_t seed;        /* parameter initialisation */
    int bn_onednn;        /* 1: training BN (+ReLU6) on oneDNN's bn + eltwise primitives; 0 (default):
                           * the fused hand-written layer engine/bnr.h (fewer memory passes, same
                           * maths). Kept for comparison (bench_detector --bn onednn). */
    int bn_frozen;        /* 1: every BatchNorm trains with frozen statistics (mmdetection's norm_eval:
                           * the running statistics normalise and stay unchanged; gamma/beta train;
                           * engine/bn.h frozen). Off in OTE's recipe; the data-parallel equivalence
                           * test uses it (samples become independent of their batch). Needs the
                           * fused BN layer (bn_onednn 0). */
} det_cfg;

/* One training batch, as the data loader produces it (models/ never reads files). */
typedef struct det_batch {
    int n, h, w;               /* padded batch shape; h, w multiples of 32 */
    const float *images;       /* (N, 3, H, W) plain NCHW, RGB / 255 */
    const int *img_h, *img_w;  /* (N) each image's own resized (unpadded) size */
    const float *boxes;        /* (total, 4) xyxy in resized-image pixels, images concatenated */
    const int *labels;         /* (total) contiguous class index */
    const int *first_box;      /* (N + 1): image i owns rows [first_box[i], first_box[i+1]) */
} det_batch;

typedef struct det_losses {
    double cls, box, ctr, total; /* summed over levels, as mmdetection reports them */
    double level_cls[ANCHORS_LEVELS], level_box[ANCHORS_LEVELS], level_ctr[ANCHORS_LEVELS]; /* P3..P7 */
    int npos;                    /* positives in the batch */
} det_losses;

typedef struct det_box {
    float x1, y1, x2, y2, score; /* original-image pixels */
    int label;
} det_box;

/* Named parameter / buffer view (plain PyTorch layout values are produced on demand). */
typedef struct det_param_info {
    const char *name;
    int ndim;
    long shape[4];
    int is_buffer;   /* running_mean / running_var / num_batches_tracked: no gradient */
    int is_int64;    /* num_batches_tracked: det_param_get/set exchange its value as one float
                      * (exact up to 2^24 steps); ndim 0 */
} det_param_info;

typedef struct detector detector;

/* Creates the detector and initialises parameters as mmdetection does (spec §2-§4 init). */
int det_create(detector **out, eng_ctx *e, const det_cfg *cfg);
/* Marks every backbone BatchNorm for calibration at the next training forward (engine/bn.h
 * calibrate): each BN then outputs its input plus its beta on that batch, which keeps a
 * BN-folded pretrained backbone's function (train/import_backbone.h) when BN trains in batch mode. */
int det_calibrate_bn(detector *d);
void det_free(detector *d);
const det_cfg *det_config(const detector *d);

/* Builds (or finds in the cache) the plan for a training batch shape / an inference shape.
 * Called before a step; cheap when the plan exists. */
int det_plan_train(detector *d, int n, int h, int w);
int det_plan_infer(detector *d, int n, int h, int w);

/* One training step's halves. forward_train runs the network in training mode (BN batch
 * statistics, running stats updated), assigns targets and computes the losses; backward fills the
 * gradient block (overwritten, not accumulated). Returns OTE_ENAN if a loss is not finite. */
int det_forward_train(detector *d, const det_batch *b, det_losses *out);
int det_backward(detector *d);
/* SGD step (momentum 0.9 and weight decay as configured, PyTorch semantics) with learning rate lr,
 * then refreshes the derived weight copies. */
int det_sgd_step(detector *d, double lr);
void det_set_optimizer(detector *d, double momentum, double weight_decay);

/* Data-parallel training (train/trainer.c): fn, when set, receives each det_forward_train's loss
 * normaliser sums v[0] = sum over images of max(positives, 1) and v[1] = sum of the positives'
 * centerness targets, and must replace them by their sums over every process of the job before
 * the losses are divided (models/losses.h losses_reduce_fn); its error fails the forward. The
 * losses and gradients of each process are then its share of the global batch's, and summing the
 * gradient blocks over the processes gives the global batch's gradient (up to BatchNorm, whose
 * batch statistics stay per process unless bn_frozen). fn NULL: the batch's own normalisers. */
typedef int (*det_reduce_fn)(void *ctx, double v[2]);
void det_set_norm_reduce(detector *d, det_reduce_fn fn, void *ctx);

/* The lifetime-class blocks as flat f32 arrays (DESIGN §2), for data-parallel training: the
 * gradient block (all parameter gradients of the last det_backward, blocked layouts, padding
 * zero), the parameter block (every parameter and BN running statistic; num_batches_tracked is a
 * counter outside it) and the SGD momentum block. *n receives the float count. After writing the
 * parameter block (a broadcast), call det_param_block_changed so the derived copies (conv weight
 * layouts, folded inference weights) follow. */
float *det_grad_block(detector *d, size_t *n);
float *det_param_block(detector *d, size_t *n);
float *det_momentum_block(detector *d, size_t *n);
int det_param_block_changed(detector *d);

/* Inference (BN in eval mode, folded into the backbone convs and refolded on the first call after
 * the parameters changed; spec §8a post-processing) on a batch of resized images
 * (N, 3, H, W) NCHW; scale_factor (N, 4) maps resized -> original coordinates (boxes are divided
 * by it) and img_h/img_w are the resized image sizes used for clipping. Results for image i go to
 * out[i] (up to max_per_img boxes), count in n_out[i]. */
int det_predict(detector *d, int n, int h, int w, const float *images, const int *img_h, const int *img_w,
                const float *scale_factor, det_box *const *out, int *n_out, int max_per_img);
/* The network part of det_predict alone: eval-mode forward of (N, 3, H, W) NCHW images (BN folded
 * as above), no post-processing; det_last_head then views the head outputs (the reference the
 * ONNX export is checked against, train/export.h). */
int det_forward_infer(detector *d, int n, int h, int w, const float *images);

/* Parameters by name (mmdetection state_dict order). get/set use plain PyTorch layouts (OIHW for
 * conv weights); set returns OTE_EINVAL naming the parameter on a shape mismatch. */
int det_n_params(const detector *d);
const det_param_info *det_param(const detector *d, int i);
int det_param_find(const detector *d, const char *name);
int det_param_get(detector *d, int i, float *dst);
int det_param_set(detector *d, int i, const float *src);
int det_grad_get(detector *d, int i, float *dst); /* the gradient of the last backward */
/* The optimiser's state, for saving and resuming a training (train/resume.h): parameter i's SGD
 * momentum buffer in the same plain layout as det_param_get (OTE_EINVAL for buffers, which do not
 * train), and the number of SGD steps taken (0: the next step initialises the buffers). */
int det_momentum_get(detector *d, int i, float *dst);
int det_momentum_set(detector *d, int i, const float *src);
long det_sgd_steps(const detector *d);
void det_sgd_set_steps(detector *d, long steps);
/* Re-initialises the classification conv (bbox_head.atss_cls) as at creation (class-count change). */
int det_reinit_cls(detector *d);

/* Figures for the benchmark: dense/depthwise conv FLOPs of one training step / inference of the
 * current plan shape, and bytes of each memory block. */
double det_flops_train(const detector *d, int n, int h, int w);
double det_flops_infer(const detector *d, int n, int h, int w);
/* Both return -1 if that plan has not been built. Counted at plan time, 2 FLOPs per MAC, for
 * dense and depthwise convs: training = forward + backward-data (where planned) + backward-weights.
 *
 * Bytes of the memory blocks: parameters, gradients, momentum, and the activation block that all
 * plans share (the largest plan's saved activations + gradients). */
void det_memory(const detector *d, size_t *params, size_t *grads, size_t *optim, size_t *activations);

/* Tests / benchmark: the head outputs of the plan that ran last (nChw<B>c views into the
 * detector's activation block, valid until another shape runs) and, after det_forward_train, the
 * gradients the loss wrote for them. g receives that plan's anchor grid. grad may be NULL. */
int det_last_head(const detector *d, anchor_grid *g, head_out out[ANCHORS_LEVELS],
                  head_grad grad[ANCHORS_LEVELS]);

#endif

/* export.h - `ote export`: the detector's BN-folded inference network as an ONNX model.
 *
 * The graph (ONNX IR 5, opset EXPORT_ONNX_OPSET = 10 of the default domain). Opset 10, not 11:
 * OpenCV 4.6's importer only takes Clip (ReLU6) in its attribute form, which opset 11 removed
 * (measured: an opset-11 Clip with min/max inputs fails in its parseClip); OpenVINO and
 * onnxruntime read opset 10 as well.
 *   input  "image" (1, 3, H, W) f32, NCHW, RGB / 255 (mean 0, std 255; the image resized to W x H
 *          with bilinear interpolation, keep_ratio false, as the validation pipeline does)
 *   outputs, per FPN level l = 3..7 (stride 2^l, H_l = ceil(H / 2^l)), in this order:
 *          "cls_p3".."cls_p7" (1, C, H_l, W_l) class logits (sigmoid not applied),
 *          "reg_p3".."reg_p7" (1, 4, H_l, W_l) box deltas AFTER the level's Scale (the
 *                             DeltaXYWH-normalised regression the post-processing decodes),
 *          "ctr_p3".."ctr_p7" (1, 1, H_l, W_l) centerness logits.
 *   These are exactly the engine's head outputs (models/head_io.h) in plain NCHW, so the same
 *   post-processing (models/postprocess.c: anchors, top-k, decode, class-aware NMS) runs on either;
 *   NMS stays outside the graph (OpenCV 4.6 has no ONNX NonMaxSuppression) and no anchor tables are
 *   baked in, which keeps every op one that OpenCV's importer handles natively.
 * Ops: Conv (backbone convs with their BatchNorm folded into weights + bias, W' = W g/sqrt(v+eps),
 * b' = beta - mean g/sqrt(v+eps); depthwise as group = C; TF-SAME padding as asymmetric pads),
 * Clip (ReLU6; min 0 / max 6 attributes), Add (residuals, FPN top-down), Resize (opset 10,
 * nearest, scales (1, 1, 2, 2): the FPN's exact 2x upsampling), Relu (before P7, after each GN),
 * GroupNorm(32) as Reshape (1, 64, H, W) -> (1, 32, 2H, W) + InstanceNormalization (scale 1,
 * bias 0, eps 1e-5) + Reshape back + Mul gamma + Add beta (per channel, (64, 1, 1)), Mul (the
 * per-level Scale, a scalar). Shapes are static: a model is exported for one input size.
 * Metadata (metadata_props): "ote-c.format" = "ote-c ATSS head maps v1", "num_classes",
 * "input_size" ("WxH"), "confidence_threshold", "labels" (the label_schema.json text, if any).
 *
 * Files are written to a temporary name and renamed, so no partial model.onnx is ever visible.
 */
#ifndef OTE_EXPORT_H
#define OTE_EXPORT_H

#include <stdio.h>

#include "io/pth.h"
#include "models/anchors.h"
#include "models/det.h"
#include "train/config.h"

#define EXPORT_ONNX_OPSET 10
#define EXPORT_N_OUTPUTS (3 * ANCHORS_LEVELS)
#define EXPORT_FORMAT "ote-c ATSS head maps v1"

/* Output i's name: kind i / 5 (0 cls, 1 reg, 2 ctr), level i % 5 (P3..P7). */
const char *export_output_name(int i);

typedef struct export_meta {
    int num_classes;
    int input_w, input_h;
    double confidence_threshold;
} export_meta;

/* Writes d's inference network for a 1 x 3 x h x w input to path (atomically). labels_json: the
 * label schema text stored in the metadata (may be NULL). OTE_EINVAL: h, w not positive multiples
 * of 32; OTE_EIO naming path on a write failure. */
int export_onnx(detector *d, int h, int w, double confidence_threshold, const char *labels_json, const char *path);

/* Reads an exported model's metadata (the file is parsed with the same generated protobuf code).
 * OTE_EIO: unreadable; OTE_EPARSE: not ONNX, or not an ote-c export (names the missing key). */
int export_read_meta(const char *path, export_meta *m);

/* `ote export`: a checkpoint (already read into c from weights_path; cfg carries its model
 * settings and the user's params) -> dir/model.onnx, dir/label_schema.json (the weights' own
 * label schema copied, or generic "class_<k>" names if it has none, with a warning on log) and
 * dir/README.md (inputs, outputs, pre-processing). dir is created if needed; on failure nothing
 * this call wrote (nor a folder it made) is left. model.onnx is renamed into place last. */
int export_run(const config_template *cfg, const pth_ckpt *c, const char *weights_path, const char *dir,
               int nthreads, FILE *log);

#endif

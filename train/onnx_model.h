/* onnx_model.h - an exported model (train/export.h) as a detector backend: OpenCV dnn forward
 * (train/onnx_dnn.h) returning the same head outputs as the engine (models/head_io.h, plain NCHW
 * = blocked layout with blk 1), then the engine's own post-processing (models/postprocess.h).
 *
 * `ote eval --load-weights model.onnx` uses it through trainer_evaluate; `ote predict` can call
 * onnx_model_predict the same way. Ownership: the model owns the net, the anchor table of its
 * (fixed) input size and a detection buffer; head views stay valid until the next forward.
 */
#ifndef OTE_ONNX_MODEL_H
#define OTE_ONNX_MODEL_H

#include "models/anchors.h"
#include "models/det.h"
#include "models/head_io.h"
#include "train/export.h"
#include "train/onnx_dnn.h"

typedef struct onnx_model {
    onnx_dnn *net;
    export_meta meta;     /* classes, input size, confidence threshold (from the file) */
    anchor_grid grid;     /* of the input size */
    float *anchors;       /* (grid.total, 4) xyxy */
    void *dets;           /* postprocess scratch: detection[dets_cap] */
    int dets_cap;
    int nthreads;         /* OpenCV threads per forward (0: OpenCV's default) */
    char path[1024];
} onnx_model;

/* Reads the metadata (export_read_meta) and the net. */
int onnx_model_open(onnx_model *m, const char *path, int nthreads);
/* Forward of one image (1, 3, H, W) NCHW RGB/255 at the model's input size; out[l] views the
 * level's cls / reg / ctr maps (blk 1), checked against the expected shapes. */
int onnx_model_head(onnx_model *m, const float *image, head_out out[ANCHORS_LEVELS]);
/* onnx_model_head + postprocess_image with the engine's settings (det_predict's), boxes divided
 * by scale (4) into original-image pixels; img_h x img_w is the resized image for clipping. */
int onnx_model_predict(onnx_model *m, const float *image, int img_h, int img_w, const float *scale, det_box *out,
                       int *n_out, int max_per_img);
void onnx_model_close(onnx_model *m);

#endif

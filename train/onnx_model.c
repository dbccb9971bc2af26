/* onnx_model.c - the exported-model backend (see onnx_model.h). */
#include "train/onnx_model.h"

#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "engine/ote.h"
#include "models/postprocess.h"

int onnx_model_open(onnx_model *m, const char *path, int nthreads) {
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", path);
    m->nthreads = nthreads;
    image_io_opencv_threads(nthreads); /* before any loader thread decodes (image.h) */
    CHECK(export_read_meta(path, &m->meta));
    CHECK(anchors_grid_init(&m->grid, m->meta.input_h, m->meta.input_w));
    m->anchors = malloc((size_t)m->grid.total * 4 * sizeof *m->anchors);
    if (!m->anchors) return ote_err(OTE_ENOMEM, "%s: cannot allocate the anchors", path);
    anchors_fill(&m->grid, m->anchors);
    const char *names[EXPORT_N_OUTPUTS];
    for (int i = 0; i < EXPORT_N_OUTPUTS; i++) names[i] = export_output_name(i);
    int s = onnx_dnn_load(&m->net, path, names, EXPORT_N_OUTPUTS);
    if (s < 0) {
        free(m->anchors);
        m->anchors = NULL;
    }
    return s;
}

int onnx_model_head(onnx_model *m, const float *image, head_out out[ANCHORS_LEVELS]) {
    const float *o[EXPORT_N_OUTPUTS];
    int sh[EXPORT_N_OUTPUTS][4];
    CHECK(onnx_dnn_forward(m->net, image, m->meta.input_h, m->meta.input_w, m->nthreads, o, sh));
    const int ch[3] = {m->meta.num_classes, 4, 1};
    for (int i = 0; i < EXPORT_N_OUTPUTS; i++) {
        int l = i % ANCHORS_LEVELS, k = i / ANCHORS_LEVELS;
        if (sh[i][0] != 1 || sh[i][1] != ch[k] || sh[i][2] != m->grid.h[l] || sh[i][3] != m->grid.w[l])
            return ote_err(OTE_EPARSE, "%s: output %s has shape %dx%dx%dx%d, expected 1x%dx%dx%d", m->path,
                           export_output_name(i), sh[i][0], sh[i][1], sh[i][2], sh[i][3], ch[k], m->grid.h[l],
                           m->grid.w[l]);
    }
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        out[l].cls = o[l];
        out[l].reg = o[ANCHORS_LEVELS + l];
        out[l].ctr = o[2 * ANCHORS_LEVELS + l];
        out[l].blk = 1; /* plain NCHW is nChw1c */
    }
    return OTE_OK;
}

int onnx_model_predict(onnx_model *m, const float *image, int img_h, int img_w, const float *scale, det_box *out,
                       int *n_out, int max_per_img) {
    *n_out = 0;
    if (max_per_img < 0) return ote_err(OTE_EINVAL, "onnx model: max_per_img: %d", max_per_img);
    if (max_per_img > m->dets_cap) {
        void *nd = realloc(m->dets, (size_t)max_per_img * sizeof(detection));
        if (!nd) return ote_err(OTE_ENOMEM, "onnx model: cannot allocate %d detections", max_per_img);
        m->dets = nd, m->dets_cap = max_per_img;
    }
    head_out ho[ANCHORS_LEVELS];
    CHECK(onnx_model_head(m, image, ho));
    if (max_per_img == 0) return OTE_OK;
    postprocess_cfg pc = postprocess_default_cfg();
    pc.max_per_img = max_per_img;
    int nd = 0;
    detection *dets = m->dets;
    CHECK(postprocess_image(&m->grid, m->anchors, m->meta.num_classes, 1, 0, ho, img_h, img_w, scale, &pc, dets,
                            &nd));
    for (int k = 0; k < nd; k++) {
        det_box *b = &out[k];
        b->x1 = dets[k].box[0], b->y1 = dets[k].box[1], b->x2 = dets[k].box[2], b->y2 = dets[k].box[3];
        b->score = dets[k].score;
        b->label = dets[k].label;
    }
    *n_out = nd;
    return OTE_OK;
}

void onnx_model_close(onnx_model *m) {
    onnx_dnn_free(m->net);
    free(m->anchors);
    free(m->dets);
    memset(m, 0, sizeof *m);
}

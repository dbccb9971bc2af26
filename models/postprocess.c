/* postprocess.c - ATSS inference post-processing (see postprocess.h). Sorting uses qsort with
 * the index as the last key, which is exactly a stable sort. */
#include "models/postprocess.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"
#include "engine/tensor.h"
#include "models/coder.h"

postprocess_cfg postprocess_default_cfg(void) {
    postprocess_cfg c = {1000, 0.05f, 0.6f, 100};
    return c;
}

typedef struct pp_key {
    float v;
    int i;
} pp_key;

/* Descending by value, ascending index on ties (= a stable descending sort). */
static int pp_key_cmp(const void *pa, const void *pb) {
    const pp_key *a = pa, *b = pb;
    if (a->v > b->v) return -1;
    if (a->v < b->v) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

int postprocess_nms(const float *boxes, const float *scores, int n, float iou_thr, int max_keep,
                    int *keep, int *order_ws) {
    if (n <= 0 || max_keep <= 0) return 0;
    pp_key *k = malloc((size_t)n * sizeof *k);
    if (!k) return ote_err(OTE_ENOMEM, "postprocess: nms: %d boxes", n);
    for (int i = 0; i < n; i++) {
        k[i].v = scores[i];
        k[i].i = i;
    }
    qsort(k, (size_t)n, sizeof *k, pp_key_cmp);
    for (int i = 0; i < n; i++) order_ws[i] = k[i].i;
    free(k);
    /* A candidate survives iff its IoU with every kept box is < thr: the same set as mmcv's
     * forward suppression (only kept boxes suppress), so we can stop at max_keep. */
    int nk = 0;
    for (int a = 0; a < n && nk < max_keep; a++) {
        int j = order_ws[a];
        const float *bj = boxes + 4 * (size_t)j;
        float area_j = (bj[2] - bj[0]) * (bj[3] - bj[1]);
        int ok = 1;
        for (int t = 0; t < nk && ok; t++) {
            const float *bi = boxes + 4 * (size_t)keep[t];
            float area_i = (bi[2] - bi[0]) * (bi[3] - bi[1]);
            float w = fmaxf(0.0f, fminf(bi[2], bj[2]) - fmaxf(bi[0], bj[0]));
            float h = fmaxf(0.0f, fminf(bi[3], bj[3]) - fmaxf(bi[1], bj[1]));
            float inter = w * h;
            float ovr = inter / (area_i + area_j - inter);
            if (ovr >= iou_thr) ok = 0;
        }
        if (ok) keep[nk++] = j;
    }
    return nk;
}

int postprocess_nms_classaware(const float *boxes, const float *scores, const int *labels, int n,
                               float iou_thr, int max_keep, int *keep) {
    if (n <= 0 || max_keep <= 0) return 0;
    float maxc = -INFINITY;
    for (size_t i = 0; i < 4 * (size_t)n; i++) maxc = fmaxf(maxc, boxes[i]);
    float *sh = malloc((size_t)n * 4 * sizeof(float));
    int *order = malloc((size_t)n * sizeof(int));
    if (!sh || !order) {
        free(sh);
        free(order);
        return ote_err(OTE_ENOMEM, "postprocess: class-aware nms: %d boxes", n);
    }
    /* mmcv batched_nms offset trick, in f32: boxes of different classes never overlap. */
    for (int i = 0; i < n; i++) {
        float off = (float)labels[i] * (maxc + 1.0f);
        for (int t = 0; t < 4; t++) sh[4 * (size_t)i + t] = boxes[4 * (size_t)i + t] + off;
    }
    int nk = postprocess_nms(sh, scores, n, iou_thr, max_keep, keep, order);
    free(sh);
    free(order);
    return nk;
}

int postprocess_image(const anchor_grid *g, const float *anchors, int n_classes, int N, int n,
                      const head_out out[ANCHORS_LEVELS], int img_h, int img_w, const float scale[4],
                      const postprocess_cfg *cfg, detection *dets, int *n_dets) {
    const int C = n_classes;
    *n_dets = 0;
    if (C <= 0 || n < 0 || n >= N || img_h <= 0 || img_w <= 0 || cfg->nms_pre <= 0 || cfg->max_per_img < 0)
        return ote_err(OTE_EINVAL, "postprocess: n_classes %d, image %d of %d, img %dx%d, nms_pre %d, max_per_img %d",
                       C, n, N, img_h, img_w, cfg->nms_pre, cfg->max_per_img);
    int n_loc = 0, max_hw = 0;
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        int hw = g->h[l] * g->w[l];
        n_loc += hw < cfg->nms_pre ? hw : cfg->nms_pre;
        if (hw > max_hw) max_hw = hw;
    }
    size_t n_pairs_max = (size_t)n_loc * C;
    float *lbox = malloc((size_t)n_loc * 4 * sizeof(float));  /* kept locations' boxes */
    float *lsc = malloc(n_pairs_max * sizeof(float));          /* their s*c per class */
    pp_key *mk = malloc((size_t)max_hw * sizeof *mk);
    float *cbox = malloc(n_pairs_max * 4 * sizeof(float));     /* candidate pairs */
    float *csc = malloc(n_pairs_max * sizeof(float));
    int *clab = malloc(n_pairs_max * sizeof(int));
    int *keep = malloc(((size_t)cfg->max_per_img + 1) * sizeof(int));
    int st = OTE_OK;
    if (!lbox || !lsc || !mk || !cbox || !csc || !clab || !keep) {
        st = ote_err(OTE_ENOMEM, "postprocess: scratch for %d locations x %d classes", n_loc, C);
        goto done;
    }
    int loc = 0;
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        const int H = g->h[l], W = g->w[l], HW = H * W;
        for (int p = 0; p < HW; p++) {
            int y = p / W, x = p % W;
            float c = sigmoidf(out[l].ctr[blk_off(1, H, W, out[l].blk, n, 0, y, x)]);
            float m = -1.0f;
            for (int k = 0; k < C; k++) {
                float v = sigmoidf(out[l].cls[blk_off(C, H, W, out[l].blk, n, k, y, x)]) * c;
                if (v > m) m = v;
            }
            mk[p].v = m;
            mk[p].i = p;
        }
        qsort(mk, (size_t)HW, sizeof *mk, pp_key_cmp);
        int k_keep = HW < cfg->nms_pre ? HW : cfg->nms_pre;
        for (int t = 0; t < k_keep; t++, loc++) {
            int p = mk[t].i, y = p / W, x = p % W;
            float d[4];
            for (int k = 0; k < 4; k++) d[k] = out[l].reg[blk_off(4, H, W, out[l].blk, n, k, y, x)];
            float *b = lbox + 4 * (size_t)loc;
            coder_decode(anchors + 4 * (size_t)(g->start[l] + p), d, (float)img_h, (float)img_w, b);
            for (int k = 0; k < 4; k++) b[k] = b[k] / scale[k];
            float c = sigmoidf(out[l].ctr[blk_off(1, H, W, out[l].blk, n, 0, y, x)]);
            for (int k = 0; k < C; k++)
                lsc[(size_t)loc * C + k] = sigmoidf(out[l].cls[blk_off(C, H, W, out[l].blk, n, k, y, x)]) * c;
        }
    }
    /* Threshold on the product, row-major over (location, class). */
    int nc = 0;
    for (int i = 0; i < loc; i++)
        for (int k = 0; k < C; k++) {
            float s = lsc[(size_t)i * C + k];
            if (!(s > cfg->score_thr)) continue;
            memcpy(cbox + 4 * (size_t)nc, lbox + 4 * (size_t)i, 4 * sizeof(float));
            csc[nc] = s;
            clab[nc] = k;
            nc++;
        }
    int nk = postprocess_nms_classaware(cbox, csc, clab, nc, cfg->iou_thr, cfg->max_per_img, keep);
    if (nk < 0) {
        st = nk;
        goto done;
    }
    for (int t = 0; t < nk; t++) {
        int i = keep[t];
        memcpy(dets[t].box, cbox + 4 * (size_t)i, 4 * sizeof(float));
        dets[t].score = csc[i];
        dets[t].label = clab[i];
    }
    *n_dets = nk;
done:
    free(lbox);
    free(lsc);
    free(mk);
    free(cbox);
    free(csc);
    free(clab);
    free(keep);
    return st;
}

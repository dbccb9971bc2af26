/* losses.c - ATSS losses and gradients (see losses.h). The batch function makes three passes:
 * (1) count positives and sum centerness targets (N_pos, B), (2) focal loss over every
 * (image, anchor, class) in blocked (nChw8c / nChw16c) memory order, OpenMP over channel-block
 * rows, (3) GIoU and centerness over the positives (few, serial). Per-position gradients are
 * written once, so no pre-zeroing of the outputs is needed beyond what the passes write. */
#include "models/losses.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "engine/ote.h"
#include "engine/tensor.h"
#include "models/coder.h"

#define FOCAL_ALPHA 0.25f

/* Inlined into the batch loop (the hot path: N * anchors * C elements). */
static inline float focal_elem(float x, int t, float *grad) {
    float p = 1.0f / (1.0f + expf(-x));
    float q = 1.0f - p;
    if (t) {
        float lp = logf(fmaxf(p, FLT_MIN));
        *grad = -FOCAL_ALPHA * q * q * (q - 2.0f * p * lp);
        return -FOCAL_ALPHA * q * q * lp;
    }
    float lq = logf(fmaxf(q, FLT_MIN));
    *grad = -(1.0f - FOCAL_ALPHA) * p * p * (2.0f * q * lq - p);
    return -(1.0f - FOCAL_ALPHA) * p * p * lq;
}

float losses_focal(float x, int t, float *grad) {
    float g;
    float v = focal_elem(x, t, &g);
    if (grad) *grad = g;
    return v;
}

float losses_giou(const float pr[4], const float tg[4], float g_pred[4]) {
    float ap = (pr[2] - pr[0]) * (pr[3] - pr[1]);
    float at = (tg[2] - tg[0]) * (tg[3] - tg[1]);
    float raw_iw = fminf(pr[2], tg[2]) - fmaxf(pr[0], tg[0]);
    float raw_ih = fminf(pr[3], tg[3]) - fmaxf(pr[1], tg[1]);
    float iw = raw_iw > 0 ? raw_iw : 0, ih = raw_ih > 0 ? raw_ih : 0;
    float inter = iw * ih;
    float u_raw = ap + at - inter;
    int u_floor = !(u_raw > LOSSES_GIOU_EPS); /* torch.max(union, eps): eps wins only if larger */
    float uni = u_floor ? LOSSES_GIOU_EPS : u_raw;
    float ew = fmaxf(pr[2], tg[2]) - fminf(pr[0], tg[0]);
    float eh = fmaxf(pr[3], tg[3]) - fminf(pr[1], tg[1]);
    ew = ew > 0 ? ew : 0;
    eh = eh > 0 ? eh : 0;
    float e_raw = ew * eh;
    int e_floor = !(e_raw > LOSSES_GIOU_EPS);
    float enc = e_floor ? LOSSES_GIOU_EPS : e_raw;
    float giou = inter / uni - (enc - uni) / enc;
    if (g_pred) {
        /* d GIoU: through I (direct and via U), A_p (via U) and E; spec §11. Double for the
         * partials so the f32 result is the correctly rounded product. */
        double U = uni, I = inter, E = enc;
        double G_I = 1.0 / U, G_A = 0, G_E = e_floor ? 0 : -U / (E * E);
        if (!u_floor) {
            G_I += I / (U * U) - 1.0 / E;
            G_A = -I / (U * U) + 1.0 / E;
        }
        double dAx1 = -(pr[3] - pr[1]), dAx2 = pr[3] - pr[1];
        double dAy1 = -(pr[2] - pr[0]), dAy2 = pr[2] - pr[0];
        /* torch's clamp(min=0) passes the gradient at exactly 0; max/min ties give the pred 0. */
        double dIx1 = (raw_iw >= 0 && pr[0] > tg[0]) ? -(double)ih : 0;
        double dIx2 = (raw_iw >= 0 && pr[2] < tg[2]) ? (double)ih : 0;
        double dIy1 = (raw_ih >= 0 && pr[1] > tg[1]) ? -(double)iw : 0;
        double dIy2 = (raw_ih >= 0 && pr[3] < tg[3]) ? (double)iw : 0;
        double dEx1 = pr[0] < tg[0] ? -(double)eh : 0, dEx2 = pr[2] > tg[2] ? (double)eh : 0;
        double dEy1 = pr[1] < tg[1] ? -(double)ew : 0, dEy2 = pr[3] > tg[3] ? (double)ew : 0;
        g_pred[0] = (float)(G_I * dIx1 + G_A * dAx1 + G_E * dEx1);
        g_pred[1] = (float)(G_I * dIy1 + G_A * dAy1 + G_E * dEy1);
        g_pred[2] = (float)(G_I * dIx2 + G_A * dAx2 + G_E * dEx2);
        g_pred[3] = (float)(G_I * dIy2 + G_A * dAy2 + G_E * dEy2);
    }
    return giou;
}

float losses_centerness_target(const float a[4], const float b[4]) {
    float cx = (a[2] + a[0]) / 2.0f, cy = (a[3] + a[1]) / 2.0f;
    float l = cx - b[0], t = cy - b[1], r = b[2] - cx, btm = b[3] - cy;
    return sqrtf((fminf(l, r) / fmaxf(l, r)) * (fminf(t, btm) / fmaxf(t, btm)));
}

float losses_bce_logits(float z, float c, float *grad) {
    float s = 1.0f / (1.0f + expf(-z));
    if (grad) *grad = s - c;
    return fmaxf(z, 0.0f) - z * c + log1pf(expf(-fabsf(z)));
}

/* Target box (round trip through the coder, OTE / v2.9) and centerness target of a positive. */
static float positive_target(const float *anchor, const float *gt, float tbox[4]) {
    float d[4];
    coder_encode(anchor, gt, d);
    coder_decode(anchor, d, 0, 0, tbox);
    return losses_centerness_target(anchor, tbox);
}

/* Pass 1: the normalisers N_pos (positives, at least 1 per image) and B (sum of the positives'
 * centerness targets), and the positives per level. */
static int losses_norms(const anchor_grid *g, const float *anchors, int n_img, const int *assigned,
                        const float *gt_boxes, const int *gt_first, losses_reduce_fn reduce, void *reduce_ctx,
                        loss_parts *parts) {
    const int total = g->total;
    double n_pos = 0, csum_all = 0;
    for (int n = 0; n < n_img; n++) {
        int np = 0;
        const int *as = assigned + (size_t)n * total;
        for (int l = 0; l < ANCHORS_LEVELS; l++)
            for (int a = g->start[l]; a < g->start[l + 1]; a++) {
                if (as[a] <= 0) continue;
                np++;
                parts->npos_level[l]++;
                float tb[4];
                const float *gt = gt_boxes + 4 * (size_t)(gt_first[n] + as[a] - 1);
                csum_all += (double)positive_target(anchors + 4 * (size_t)a, gt, tb);
            }
        n_pos += np > 0 ? np : 1;
    }
    if (reduce) { /* the sums over every process's share of the global batch */
        double v[2] = {n_pos, csum_all};
        CHECK(reduce(reduce_ctx, v));
        n_pos = v[0], csum_all = v[1];
    }
    if (n_pos < 1.0) n_pos = 1.0;
    parts->n_pos = n_pos;
    parts->b_norm = csum_all < 1e-12 ? 1.0 : csum_all;
    return OTE_OK;
}

/* Pass 2 at level l: the focal-loss sum over (image, channel block, pixel), in memory order, in
 * chunks of 256 pixels so that small batches still spread over the threads. The double partial
 * sums are combined in a fixed order for a given thread count. Writes grad[l].cls (padding
 * included) scaled by inv_npos; *bad |= a non-finite gradient. */
static double losses_focal_level(const anchor_grid *g, int l, int n_img, int C, const int *assigned,
                                 const int *labels, const head_out out[ANCHORS_LEVELS],
                                 const head_grad grad[ANCHORS_LEVELS], float inv_npos, int *bad) {
    const int total = g->total, HW = g->h[l] * g->w[l], B = out[l].blk, cb_n = (C + B - 1) / B;
    const int chunk = 256, n_chunk = (HW + chunk - 1) / chunk;
    const long n_task = (long)n_img * cb_n * n_chunk;
    double lsum = 0;
    int lbad = 0;
#pragma omp parallel for reduction(+ : lsum) reduction(| : lbad) schedule(static)
    for (long task = 0; task < n_task; task++) {
        int n = (int)(task / ((long)cb_n * n_chunk)), rem = (int)(task % ((long)cb_n * n_chunk));
        int cb = rem / n_chunk, p0 = (rem % n_chunk) * chunk, p1 = p0 + chunk < HW ? p0 + chunk : HW;
        const int *as = assigned + (size_t)n * total + g->start[l];
        const int *lb = labels + (size_t)n * total + g->start[l];
        size_t base = ((size_t)n * cb_n + cb) * HW * B;
        const float *x = out[l].cls + base;
        float *gx = grad ? grad[l].cls + base : NULL;
        for (int p = p0; p < p1; p++) {
            int w = as[p] >= 0;
            for (int k = 0; k < B; k++) {
                int c = cb * B + k;
                size_t o = (size_t)p * B + k;
                if (c >= C || !w) {
                    if (gx) gx[o] = 0.0f;
                    continue;
                }
                float gr;
                float v = focal_elem(x[o], lb[p] == c, &gr);
                lsum += (double)v;
                if (gx) {
                    gx[o] = gr * inv_npos;
                    lbad |= !isfinite(gx[o]);
                }
            }
        }
    }
    if (lbad) *bad = 1;
    return lsum;
}

/* Pass 3 at level l: the box (sum c* (1 - GIoU)) and centerness (BCE) sums over the positives;
 * writes grad[l].reg / grad[l].ctr (zero elsewhere); *bad |= a non-finite gradient. */
static void losses_box_level(const anchor_grid *g, int l, const float *anchors, int n_img, const int *assigned,
                             const float *gt_boxes, const int *gt_first, const head_out out[ANCHORS_LEVELS],
                             const head_grad grad[ANCHORS_LEVELS], double b_norm, float inv_npos, double *box_sum,
                             double *ctr_sum, int *bad) {
    const int total = g->total, H = g->h[l], W = g->w[l], HW = H * W, B = out[l].blk;
    size_t reg_bytes = (size_t)n_img * HW * B; /* reg (4 ch) and ctr (1 ch): one block each */
    if (grad) {
        memset(grad[l].reg, 0, reg_bytes * sizeof(float));
        memset(grad[l].ctr, 0, reg_bytes * sizeof(float));
    }
    double bsum = 0, zsum = 0;
    for (int n = 0; n < n_img; n++) {
        const int *as = assigned + (size_t)n * total + g->start[l];
        for (int p = 0; p < HW; p++) {
            if (as[p] <= 0) continue;
            const float *anc = anchors + 4 * (size_t)(g->start[l] + p);
            float tb[4], d[4], pb[4], gg[4], gd[4];
            float cstar = positive_target(anc, gt_boxes + 4 * (size_t)(gt_first[n] + as[p] - 1), tb);
            int y = p / W, xx = p % W;
            for (int k = 0; k < 4; k++) d[k] = out[l].reg[blk_off(4, H, W, B, n, k, y, xx)];
            coder_decode(anc, d, 0, 0, pb);
            float gi = losses_giou(pb, tb, gg);
            bsum += (double)cstar * (1.0 - (double)gi);
            size_t zo = blk_off(1, H, W, B, n, 0, y, xx);
            float gz;
            zsum += (double)losses_bce_logits(out[l].ctr[zo], cstar, &gz);
            if (grad) {
                /* dL/dGIoU = -2 c* / B, then through the decode. */
                float q = (float)(-(double)LOSSES_GIOU_WEIGHT * (double)cstar / b_norm);
                for (int k = 0; k < 4; k++) gg[k] *= q;
                coder_decode_backward(anc, d, gg, gd);
                for (int k = 0; k < 4; k++) {
                    float *r = &grad[l].reg[blk_off(4, H, W, B, n, k, y, xx)];
                    *r = gd[k];
                    *bad |= !isfinite(*r);
                }
                grad[l].ctr[zo] = gz * inv_npos;
                *bad |= !isfinite(grad[l].ctr[zo]);
            }
        }
    }
    *box_sum = bsum, *ctr_sum = zsum;
}

int losses_batch(const anchor_grid *g, const float *anchors, int n_img, int n_classes,
                 const int *assigned, const int *labels, const float *gt_boxes, const int *gt_first,
                 const head_out out[ANCHORS_LEVELS], const head_grad grad[ANCHORS_LEVELS], loss_parts *parts) {
    return losses_batch_reduced(g, anchors, n_img, n_classes, assigned, labels, gt_boxes, gt_first, out, grad, NULL,
                                NULL, parts);
}

int losses_batch_reduced(const anchor_grid *g, const float *anchors, int n_img, int n_classes,
                         const int *assigned, const int *labels, const float *gt_boxes, const int *gt_first,
                         const head_out out[ANCHORS_LEVELS], const head_grad grad[ANCHORS_LEVELS],
                         losses_reduce_fn reduce, void *reduce_ctx, loss_parts *parts) {
    const int C = n_classes;
    memset(parts, 0, sizeof *parts);
    if (n_img <= 0 || C <= 0)
        return ote_err(OTE_EINVAL, "losses: n_img: %d, n_classes: %d (must be positive)", n_img, C);
    CHECK(losses_norms(g, anchors, n_img, assigned, gt_boxes, gt_first, reduce, reduce_ctx, parts));
    const double n_pos = parts->n_pos, b_norm = parts->b_norm;
    const float inv_npos = (float)(1.0 / n_pos);
    int bad = 0;
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        double lsum = losses_focal_level(g, l, n_img, C, assigned, labels, out, grad, inv_npos, &bad);
        parts->cls[l] = lsum / n_pos;
        double bsum, zsum;
        losses_box_level(g, l, anchors, n_img, assigned, gt_boxes, gt_first, out, grad, b_norm, inv_npos, &bsum, &zsum,
                         &bad);
        parts->box[l] = (double)LOSSES_GIOU_WEIGHT * bsum / b_norm;
        parts->ctr[l] = zsum / n_pos;
        parts->cls_sum += parts->cls[l];
        parts->box_sum += parts->box[l];
        parts->ctr_sum += parts->ctr[l];
    }
    parts->total = parts->cls_sum + parts->box_sum + parts->ctr_sum;
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        if (!isfinite(parts->cls[l]) || !isfinite(parts->box[l]) || !isfinite(parts->ctr[l]))
            return ote_err(OTE_ENAN, "losses: level %d: loss_cls %g loss_bbox %g loss_centerness %g (not finite)",
                           l, parts->cls[l], parts->box[l], parts->ctr[l]);
    }
    if (bad) return ote_err(OTE_ENAN, "losses: gradient w.r.t. the head outputs is not finite (loss %g)", parts->total);
    return OTE_OK;
}

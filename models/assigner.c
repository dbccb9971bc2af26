/* assigner.c - ATSS assignment (see assigner.h).
 *
 * Per gt and level, the k nearest valid anchors are kept in a sorted list of (distance, index)
 * filled in increasing index order; a new anchor enters only if strictly nearer than the current
 * k-th, so equal distances keep the lower index. The scan is limited to a 7x7 window around the gt
 * centre when that provably gives the same list (see gt_candidates). Workspace layout:
 *   cand  int   (n_gts, K_max)  candidate anchor indices, K_max = topk * levels
 *   cdist float (n_gts, K_max)  their distances (scratch for the insertion lists)
 *   ciou  float (n_gts, K_max)  their IoUs
 *   ncand int   (n_gts)         number of candidates per gt
 *   best  float (total)         best positive-candidate IoU per anchor
 */
#include "models/assigner.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine/ote.h"

#define ASSIGNER_NEG_INF (-100000000.0f) /* mmdet's -INF */

static size_t align64(size_t b) { return (b + 63) & ~(size_t)63; }

size_t assigner_ws_bytes(const anchor_grid *g, int max_gts, int topk) {
    size_t m = max_gts > 0 ? (size_t)max_gts : 1, kmax = (size_t)topk * ANCHORS_LEVELS;
    return 3 * align64(m * kmax * 4) + align64(m * 4) + align64((size_t)g->total * 4);
}

/* f32 IoU exactly as mmdet's BboxOverlaps2D (no +1, union clamped to 1e-6). */
static float iou_f32(const float *a, const float *b) {
    float area_a = (a[2] - a[0]) * (a[3] - a[1]);
    float area_b = (b[2] - b[0]) * (b[3] - b[1]);
    float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
    float h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    w = w > 0 ? w : 0;
    h = h > 0 ? h : 0;
    float inter = w * h;
    float uni = area_a + area_b - inter;
    if (uni < 1e-6f) uni = 1e-6f;
    return inter / uni;
}

/* Valid anchors of one level: count and, when they form the rectangle [0,vh) x [0,vw) (always the
 * case for anchors_valid), its size, which allows the windowed search below. */
typedef struct level_valid {
    int n_in, vh, vw, rect;
} level_valid;

static void level_valid_scan(const anchor_grid *g, const unsigned char *valid, level_valid lv[ANCHORS_LEVELS]) {
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        int n = 0, vh = 0, vw = 0;
        for (int y = 0; y < g->h[l]; y++)
            for (int x = 0; x < g->w[l]; x++)
                if (valid[g->start[l] + y * g->w[l] + x]) {
                    n++;
                    if (y + 1 > vh) vh = y + 1;
                    if (x + 1 > vw) vw = x + 1;
                }
        lv[l].n_in = n;
        lv[l].vh = vh;
        lv[l].vw = vw;
        lv[l].rect = n == vh * vw;
    }
}

/* Inserts anchor i at distance d into the sorted list (cd, ci) of at most k entries. Called in
 * increasing index order, a strict '<' against the k-th and strict '>' shifts keep equal
 * distances in index order (lower index first). */
static void topk_insert(float *cd, int *ci, int *kept, int k, float d, int i) {
    if (*kept == k && !(d < cd[k - 1])) return;
    int pos = *kept < k ? *kept : k - 1;
    while (pos > 0 && cd[pos - 1] > d) {
        cd[pos] = cd[pos - 1];
        ci[pos] = ci[pos - 1];
        pos--;
    }
    cd[pos] = d;
    ci[pos] = i;
    if (*kept < k) (*kept)++;
}

static float centre_dist(const float *a, float gcx, float gcy) {
    float dx = (a[0] + a[2]) / 2.0f - gcx, dy = (a[1] + a[3]) / 2.0f - gcy;
    return sqrtf(dx * dx + dy * dy);
}

/* Lower bound of the distance of every anchor in column/row `c` (centre c*s) to the gt centre:
 * sqrtf(dx*dx) <= sqrtf(dx*dx + dy*dy) in f32 by monotonic rounding. */
static float axis_gap(int c, int s, float gc) {
    float d = (float)(c * s) - gc;
    return sqrtf(d * d);
}

static void gt_candidates(const anchor_grid *g, const float *anchors, const unsigned char *valid,
                          const level_valid *lv, const float *gt, int topk, int *cand, float *cdist,
                          int *ncand) {
    float gcx = (gt[0] + gt[2]) / 2.0f, gcy = (gt[1] + gt[3]) / 2.0f;
    int k_total = 0;
    for (int l = 0; l < ANCHORS_LEVELS; l++) {
        int *ci = cand + k_total;
        float *cd = cdist + k_total;
        int k = lv[l].n_in < topk ? lv[l].n_in : topk, kept = 0, done = 0;
        if (k == 0) continue;
        const int s = g->stride[l], W = g->w[l];
        if (lv[l].rect) {
            /* Windowed search around the nearest grid point; exact when the k-th distance found is
             * strictly below every anchor outside the window (else fall back to the full scan). */
            const int R = 3;
            int cx = (int)lrintf(gcx / (float)s), cy = (int)lrintf(gcy / (float)s);
            cx = cx < 0 ? 0 : (cx >= lv[l].vw ? lv[l].vw - 1 : cx);
            cy = cy < 0 ? 0 : (cy >= lv[l].vh ? lv[l].vh - 1 : cy);
            int x0 = cx - R < 0 ? 0 : cx - R, x1 = cx + R >= lv[l].vw ? lv[l].vw - 1 : cx + R;
            int y0 = cy - R < 0 ? 0 : cy - R, y1 = cy + R >= lv[l].vh ? lv[l].vh - 1 : cy + R;
            for (int y = y0; y <= y1; y++)
                for (int x = x0; x <= x1; x++) {
                    int i = g->start[l] + y * W + x;
                    topk_insert(cd, ci, &kept, k, centre_dist(anchors + 4 * (size_t)i, gcx, gcy), i);
                }
            if (kept == k) {
                float gap = INFINITY;
                if (x0 > 0) gap = fminf(gap, axis_gap(x0 - 1, s, gcx));
                if (x1 < lv[l].vw - 1) gap = fminf(gap, axis_gap(x1 + 1, s, gcx));
                if (y0 > 0) gap = fminf(gap, axis_gap(y0 - 1, s, gcy));
                if (y1 < lv[l].vh - 1) gap = fminf(gap, axis_gap(y1 + 1, s, gcy));
                done = cd[k - 1] < gap;
            }
        }
        if (!done) {
            kept = 0;
            for (int i = g->start[l]; i < g->start[l + 1]; i++)
                if (valid[i]) topk_insert(cd, ci, &kept, k, centre_dist(anchors + 4 * (size_t)i, gcx, gcy), i);
        }
        k_total += kept;
    }
    *ncand = k_total;
}

int assigner_atss(const anchor_grid *g, const float *anchors, const unsigned char *valid,
                  const float *gt_boxes, const int *gt_labels, int n_gts, int n_classes, int topk,
                  void *ws, size_t ws_bytes, int *assigned, int *labels) {
    int total = g->total;
    if (n_gts < 0 || topk <= 0)
        return ote_err(OTE_EINVAL, "assigner: n_gts: %d, topk: %d (must be >= 0 and > 0)", n_gts, topk);
    for (int j = 0; j < n_gts; j++)
        if (gt_labels[j] < 0 || gt_labels[j] >= n_classes)
            return ote_err(OTE_EINVAL, "assigner: gt %d: label: %d (classes: %d)", j, gt_labels[j], n_classes);
    for (int i = 0; i < total; i++) {
        assigned[i] = valid[i] ? 0 : -1;
        labels[i] = n_classes;
    }
    if (n_gts == 0) return OTE_OK; /* every valid anchor is negative */
    size_t need = assigner_ws_bytes(g, n_gts, topk);
    if (ws_bytes < need)
        return ote_err(OTE_EINVAL, "assigner: workspace: %zu bytes (need %zu for %d gts)", ws_bytes, need, n_gts);
    size_t kmax = (size_t)topk * ANCHORS_LEVELS;
    char *p = ws;
    int *cand = (int *)p;
    p += align64((size_t)n_gts * kmax * 4);
    float *cdist = (float *)p;
    p += align64((size_t)n_gts * kmax * 4);
    float *ciou = (float *)p;
    p += align64((size_t)n_gts * kmax * 4);
    int *ncand = (int *)p;
    p += align64((size_t)n_gts * 4);
    float *best = (float *)p;
    level_valid lv[ANCHORS_LEVELS];
    level_valid_scan(g, valid, lv);

    /* Candidates, IoU threshold (mean + unbiased std) and the centre test, per gt. Rejected
     * candidates get IoU -INF so the serial pass below skips them. */
#pragma omp parallel for schedule(static) if (n_gts > 256)
    for (int j = 0; j < n_gts; j++) {
        const float *gt = gt_boxes + 4 * (size_t)j;
        int *cj = cand + (size_t)j * kmax;
        float *ij = ciou + (size_t)j * kmax;
        gt_candidates(g, anchors, valid, lv, gt, topk, cj, cdist + (size_t)j * kmax, &ncand[j]);
        int K = ncand[j];
        double sum = 0, sq = 0;
        for (int c = 0; c < K; c++) {
            ij[c] = iou_f32(anchors + 4 * (size_t)cj[c], gt);
            sum += (double)ij[c];
        }
        double mean = K > 0 ? sum / K : 0;
        for (int c = 0; c < K; c++) sq += ((double)ij[c] - mean) * ((double)ij[c] - mean);
        double sd = K > 1 ? sqrt(sq / (K - 1)) : 0;
        float thr = (float)mean + (float)sd;
        for (int c = 0; c < K; c++) {
            const float *a = anchors + 4 * (size_t)cj[c];
            float cx = (a[0] + a[2]) / 2.0f, cy = (a[1] + a[3]) / 2.0f;
            float m = fminf(fminf(cx - gt[0], cy - gt[1]), fminf(gt[2] - cx, gt[3] - cy));
            if (!(ij[c] >= thr && m > 0.01f)) ij[c] = ASSIGNER_NEG_INF;
        }
    }
    /* Conflicts: highest IoU wins; gts in increasing order with a strict '>' keep the lower gt
     * index on exact ties. */
    for (int i = 0; i < total; i++) best[i] = ASSIGNER_NEG_INF; /* only candidates are read */
    for (int j = 0; j < n_gts; j++) {
        const int *cj = cand + (size_t)j * kmax;
        const float *ij = ciou + (size_t)j * kmax;
        for (int c = 0; c < ncand[j]; c++) {
            if (ij[c] == ASSIGNER_NEG_INF) continue;
            int i = cj[c];
            if (ij[c] > best[i]) {
                best[i] = ij[c];
                assigned[i] = j + 1;
            }
        }
    }
    for (int i = 0; i < total; i++)
        if (assigned[i] > 0) labels[i] = gt_labels[assigned[i] - 1];
    return OTE_OK;
}

/* eval.c - pieces shared by the evaluators: the detection list, numpy-exact summation, the stable
 * descending argsort, pycocotools' threshold grids, and the drivers that score a detection list
 * or a detector callback with both metrics.
 *
 * Owns nothing beyond what each call allocates and frees (eval_dets owns its array; eval_report
 * owns its two results). No global state.
 */
#include "data/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

void eval_dets_init(eval_dets *l) { memset(l, 0, sizeof *l); }

int eval_dets_push(eval_dets *l, eval_det d) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        if (cap < l->cap) return ote_err(OTE_ENOMEM, "eval: detection list: too many detections");
        eval_det *p = realloc(l->d, (size_t)cap * sizeof *p);
        if (!p) return ote_err(OTE_ENOMEM, "eval: detection list: out of memory for %d detections", cap);
        l->d = p;
        l->cap = cap;
    }
    l->d[l->n++] = d;
    return OTE_OK;
}

void eval_dets_free(eval_dets *l) {
    free(l->d);
    memset(l, 0, sizeof *l);
}

/* numpy's pairwise_sum (umath loops): below 8 elements a plain loop from 0; up to 128 eight
 * interleaved partial sums combined as a tree; above, split at a multiple of 8 near the middle.
 * The reduction hands the inner loop at most one buffer (8192 elements) at a time and adds each
 * chunk's pairwise sum to the running result; checked against numpy 1.24 for n up to 1e5.
 * numpy instantiates one template for DOUBLE and FLOAT (loops_utils.h.src); so does this macro,
 * so that the float32 sum rounds in float32 at every step exactly as the float64 one does in
 * float64. */
#define EVAL_NPY_BUFSIZE 8192
#define EVAL_DEFINE_SUM(T, SFX)                                                            \
    static T pairwise_##SFX(const T *a, size_t n) {                                        \
        if (n < 8) {                                                                       \
            T r = (T)0;                                                                    \
            for (size_t i = 0; i < n; i++) r += a[i];                                      \
            return r;                                                                      \
        }                                                                                  \
        if (n <= 128) {                                                                    \
            T r[8];                                                                        \
            for (int j = 0; j < 8; j++) r[j] = a[j];                                       \
            size_t i;                                                                      \
            for (i = 8; i < n - (n % 8); i += 8)                                           \
                for (int j = 0; j < 8; j++) r[j] += a[i + j];                              \
            T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));     \
            for (; i < n; i++) res += a[i];                                                \
            return res;                                                                    \
        }                                                                                  \
        size_t n2 = n / 2;                                                                 \
        n2 -= n2 % 8;                                                                      \
        return pairwise_##SFX(a, n2) + pairwise_##SFX(a + n2, n - n2);                     \
    }                                                                                      \
    T eval_sum_##SFX(const T *a, size_t n) {                                               \
        T r = (T)0;                                                                        \
        for (size_t i = 0; i < n; i += EVAL_NPY_BUFSIZE)                                   \
            r += pairwise_##SFX(a + i, n - i < EVAL_NPY_BUFSIZE ? n - i : EVAL_NPY_BUFSIZE); \
        return r;                                                                          \
    }

EVAL_DEFINE_SUM(double, f64)
EVAL_DEFINE_SUM(float, f32)

/* Bottom-up merge sort; the right run's element goes first only if strictly greater. */
void eval_argsort_desc(const float *score, int *idx, int n, int *tmp) {
    int *src = idx, *dst = tmp;
    for (int w = 1; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n;
            int hi = lo + 2 * w < n ? lo + 2 * w : n;
            int i = lo, j = mid, k = lo;
            while (i < mid && j < hi) dst[k++] = score[src[j]] > score[src[i]] ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        int *t = src;
        src = dst;
        dst = t;
    }
    if (src != idx) memcpy(idx, src, (size_t)n * sizeof *idx);
}

int eval_groups_alloc(eval_groups *g, int n_dets, int n_cats, int n_images) {
    const size_t nd1 = (size_t)n_dets + 1;
    g->by_label = malloc(nd1 * sizeof *g->by_label);
    g->label_start = calloc((size_t)n_cats + 1, sizeof *g->label_start);
    g->img_start = malloc(((size_t)n_images + 1) * sizeof *g->img_start);
    g->cat_det = malloc(nd1 * sizeof *g->cat_det);
    g->cat_score = malloc(nd1 * sizeof *g->cat_score);
    return g->by_label && g->label_start && g->img_start && g->cat_det && g->cat_score;
}

void eval_groups_free(eval_groups *g) {
    free(g->by_label), free(g->label_start), free(g->img_start);
    free(g->cat_det), free(g->cat_score);
    memset(g, 0, sizeof *g);
}

/* Stable counting sort of the n dets items[j] (items NULL: 0..n-1) by key(i) in [0, n_keys) into
 * out, key k's at [start[k], start[k + 1]); the key is the label, or with by_image the image's
 * rank (rank non-NULL) or index. start has n_keys + 1 entries. */
static int eval_key(const eval_det *d, int by_image, const int *rank) {
    if (!by_image) return d->label;
    return rank ? rank[d->image] : d->image;
}

static void eval_group(const eval_det *dets, const int *items, int n, int by_image, const int *rank, int n_keys,
                       int *start, int *out) {
    memset(start, 0, ((size_t)n_keys + 1) * sizeof *start);
    for (int j = 0; j < n; j++) start[eval_key(&dets[items ? items[j] : j], by_image, rank) + 1]++;
    for (int k = 0; k < n_keys; k++) start[k + 1] += start[k];
    for (int j = 0; j < n; j++) {
        const int i = items ? items[j] : j;
        /* start[k] is advanced while filling (so no cursor array), and restored below */
        out[start[eval_key(&dets[i], by_image, rank)]++] = i;
    }
    for (int k = n_keys; k > 0; k--) start[k] = start[k - 1];
    start[0] = 0;
}

void eval_groups_by_label(eval_groups *g, const eval_det *dets, int n_dets, int n_cats) {
    eval_group(dets, NULL, n_dets, 0, NULL, n_cats, g->label_start, g->by_label);
}

int eval_groups_class(eval_groups *g, const eval_det *dets, int c, const int *rank, int n_images) {
    const int nd = g->label_start[c + 1] - g->label_start[c];
    eval_group(dets, g->by_label + g->label_start[c], nd, 1, rank, n_images, g->img_start, g->cat_det);
    for (int j = 0; j < nd; j++) g->cat_score[j] = dets[g->cat_det[j]].score;
    return nd;
}

/* numpy linspace: y[i] = i * ((stop - start) / (num - 1)) + start, last element set to stop.
 * This gives 0.8999999999999999 for the 9th IoU threshold and 0.5700000000000001 for recall 0.57. */
static void linspace(double start, double stop, int num, double *y) {
    double step = (stop - start) / (double)(num - 1);
    for (int i = 0; i < num; i++) y[i] = (double)i * step + start;
    y[num - 1] = stop;
}

void eval_coco_iou_thrs(double thr[EVAL_COCO_NIOU]) { linspace(0.5, 0.95, EVAL_COCO_NIOU, thr); }
void eval_coco_rec_thrs(double thr[EVAL_COCO_NREC]) { linspace(0.0, 1.0, EVAL_COCO_NREC, thr); }

void eval_coco_format_stat(const eval_coco_result *r, int i, char *buf, size_t n) {
    /* pycocotools _summarizeDets: (ap?, iouThr index or -1, area label, maxDets) per stat. */
    static const struct {
        int ap, thr;
        const char *area;
        int md; /* index into max_dets, or -1 for the literal 100 of stats[0] */
    } s[EVAL_COCO_NSTATS] = {
        {1, -1, "all", -1},   {1, 0, "all", 2},     {1, 5, "all", 2},   {1, -1, "small", 2},
        {1, -1, "medium", 2}, {1, -1, "large", 2},  {0, -1, "all", 0},  {0, -1, "all", 1},
        {0, -1, "all", 2},    {0, -1, "small", 2},  {0, -1, "medium", 2}, {0, -1, "large", 2},
    };
    if (i < 0 || i >= EVAL_COCO_NSTATS) {
        if (n) buf[0] = 0;
        return;
    }
    double thr[EVAL_COCO_NIOU];
    eval_coco_iou_thrs(thr);
    char iou[32];
    if (s[i].thr < 0)
        snprintf(iou, sizeof iou, "%0.2f:%0.2f", thr[0], thr[EVAL_COCO_NIOU - 1]);
    else
        snprintf(iou, sizeof iou, "%0.2f", thr[s[i].thr]);
    int md = s[i].md < 0 ? 100 : r->max_dets[s[i].md];
    snprintf(buf, n, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f",
             s[i].ap ? "Average Precision" : "Average Recall", s[i].ap ? "(AP)" : "(AR)", iou,
             s[i].area, md, r->stats[i]);
}

int eval_run(const coco_dataset *gt, const eval_det *dets, int n_dets, eval_crowd_mode crowd,
             const int max_dets[3], eval_report *out) {
    memset(out, 0, sizeof *out);
    int s = eval_voc(gt, dets, n_dets, 0.5, crowd, &out->voc);
    if (s < 0) return s;
    s = eval_coco(gt, dets, n_dets, max_dets, &out->coco);
    if (s < 0) {
        eval_voc_result_free(&out->voc);
        return s;
    }
    return OTE_OK;
}

void eval_report_free(eval_report *r) {
    eval_voc_result_free(&r->voc);
    eval_coco_result_free(&r->coco);
}

int eval_dataset(const coco_dataset *gt, eval_predict_fn predict, void *ctx, eval_crowd_mode crowd,
                 const int max_dets[3], eval_report *out, eval_dets *keep) {
    memset(out, 0, sizeof *out);
    if (!predict) return ote_err(OTE_EINVAL, "eval_dataset: no predict callback");
    eval_dets all;
    eval_dets_init(&all);
    for (int i = 0; i < gt->n_images; i++) {
        int first = all.n;
        int s = predict(ctx, &gt->images[i], i, &all);
        if (s < 0) {
            eval_dets_free(&all);
            return ote_err_context(s, "eval_dataset: image %d (id %ld, %s)", i, gt->images[i].id,
                                   gt->images[i].file_name ? gt->images[i].file_name : "?");
        }
        for (int k = first; k < all.n; k++) all.d[k].image = i;
    }
    int s = eval_run(gt, all.d, all.n, crowd, max_dets, out);
    if (s < 0 || !keep)
        eval_dets_free(&all);
    else
        *keep = all;
    return s;
}

int eval_check_dets(const coco_dataset *gt, const eval_det *dets, int n_dets, const char *who) {
    if (n_dets < 0 || (n_dets > 0 && !dets))
        return ote_err(OTE_EINVAL, "%s: bad detection array (n=%d)", who, n_dets);
    for (int i = 0; i < n_dets; i++) {
        const eval_det *d = &dets[i];
        if (d->image < 0 || d->image >= gt->n_images)
            return ote_err(OTE_EINVAL, "%s: detection %d: image index %d outside [0, %d)", who, i,
                           d->image, gt->n_images);
        if (d->label < 0 || d->label >= gt->n_cats)
            return ote_err(OTE_EINVAL, "%s: detection %d: label %d outside [0, %d)", who, i, d->label,
                           gt->n_cats);
        if (!isfinite(d->x1) || !isfinite(d->y1) || !isfinite(d->x2) || !isfinite(d->y2) ||
            !isfinite(d->score))
            return ote_err(OTE_EINVAL, "%s: detection %d: non-finite box or score (%g %g %g %g, %g)",
                           who, i, (double)d->x1, (double)d->y1, (double)d->x2, (double)d->y2, (double)d->score);
    }
    return OTE_OK;
}

/* eval_coco.c - pycocotools COCOeval for iouType 'bbox' (cocoapi 8c9bcc3: evaluate, accumulate,
 * summarize), restated from spec-detector.md §10a and fixtures/eval/README.md.
 *
 * Exactness notes (each follows the reference; the fixtures check them bit for bit):
 * - dets are xywh in double with w = x2 - x1 computed in double from the float32 corners, as
 *   mmdet writes results; a det's area is w*h; a gt's IoU uses its box, its range test `area`;
 * - crowd gts: IoU = intersection / det area, they absorb any number of dets, and a det matched
 *   to one is ignored;
 * - per (image, category) dets are stable-sorted by descending score and cut to the last maxDets;
 *   across images (ascending image id) they are stable-sorted again;
 * - a match to a gt whose annotation id is 0 counts as "unmatched" in accumulate (pycocotools
 *   stores the gt id in dtMatches and tests it for truth) - kept for parity;
 * - the stats are numpy means: pairwise sums over the valid (> -1) entries in C order.
 * Owns only temporaries; the result's category array is owned by the caller after success.
 */
#include "data/eval.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

enum { T = EVAL_COCO_NIOU, R = EVAL_COCO_NREC, A = 4, M = 3 };

/* areaRng all, small, medium, large: [0, 1e5^2], [0, 32^2], [32^2, 96^2], [96^2, 1e5^2]. */
static const double coco_area_rng[A][2] = {{0., 1e10}, {0., 1024.}, {1024., 9216.}, {9216., 1e10}};

void eval_coco_result_free(eval_coco_result *r) {
    free(r->cat);
    memset(r, 0, sizeof *r);
}

/* maskApi bbIou for one pair of xywh boxes; crowd gts divide by the det area only. */
static double coco_iou(const double d[4], const double g[4], int crowd) {
    double dx2 = d[2] + d[0], gx2 = g[2] + g[0];
    double w = (dx2 < gx2 ? dx2 : gx2) - (d[0] > g[0] ? d[0] : g[0]);
    if (w <= 0) return 0.;
    double dy2 = d[3] + d[1], gy2 = g[3] + g[1];
    double h = (dy2 < gy2 ? dy2 : gy2) - (d[1] > g[1] ? d[1] : g[1]);
    if (h <= 0) return 0.;
    double i = w * h, da = d[2] * d[3], ga = g[2] * g[3];
    double u = crowd ? da : da + ga - i;
    return i / u;
}

double eval_coco_iou(const float d[4], const float g[4], int crowd) {
    /* the corners become xywh in double exactly as coco_eval_image converts dets and gts */
    const double dd[4] = {(double)d[0], (double)d[1], (double)d[2] - (double)d[0], (double)d[3] - (double)d[1]};
    const double gg[4] = {(double)g[0], (double)g[1], (double)g[2] - (double)g[0], (double)g[3] - (double)g[1]};
    return coco_iou(dd, gg, crowd);
}

typedef struct coco_work {
    int *img_order;     /* image indices by ascending id (ties in dataset order) */
    int *img_rank;      /* inverse of img_order */
    eval_groups g;      /* by category, then one category's dets by image rank (key = img_rank) */
    int *sidx, *stmp;   /* sort buffers (n_dets + 1) */
    /* per category, accumulated over its images: */
    float *p_score;     /* score of each kept det position */
    unsigned char *p_match[A], *p_ign[A]; /* (position, T) row-major */
    int *run_start, *run_len; /* one run per image with gts or dts, in id order */
    int n_runs;
    long npig[A];
    /* per image: */
    int *gidx;          /* the image's gts of the category, annotation order (max boxes) */
    int *gtind;         /* gts reordered: not ignored first (stable) */
    unsigned char *gig, *gtm;
    double *iou;        /* (kept dets, gts) of one image */
    double *dbox;       /* (kept dets, 4) xywh */
    double *gbox;       /* (gts, 4) xywh */
    /* accumulate: */
    int *acc;           /* positions of one (area, maxDet) list, then sorted */
    double *rc, *pr;
    double *precision;  /* (T, R, K, A, M), -1 where a category has no non-ignored gt */
    double *recall;     /* (T, K, A, M) */
    double *vals;       /* summarize buffer, T*R*K */
} coco_work;

static void coco_work_free(coco_work *w) {
    free(w->img_order);
    free(w->img_rank);
    eval_groups_free(&w->g);
    free(w->sidx);
    free(w->stmp);
    free(w->p_score);
    for (int a = 0; a < A; a++) {
        free(w->p_match[a]);
        free(w->p_ign[a]);
    }
    free(w->run_start);
    free(w->run_len);
    free(w->gidx);
    free(w->gtind);
    free(w->gig);
    free(w->gtm);
    free(w->iou);
    free(w->dbox);
    free(w->gbox);
    free(w->acc);
    free(w->rc);
    free(w->pr);
    free(w->precision);
    free(w->recall);
    free(w->vals);
}

typedef struct id_pos {
    long id;
    int pos;
} id_pos;

static int id_pos_cmp(const void *pa, const void *pb) {
    const id_pos *a = pa, *b = pb;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* evaluateImg for one (image, category) and every area range, appending one run of positions. */
static void coco_eval_image(coco_work *w, const coco_dataset *gt, const eval_det *dets,
                            const int *img_dets, int n_img_dets, int m, int k, int max_det,
                            const double thr[T], int *n_pos) {
    const coco_image *im = &gt->images[m];
    int G = 0;
    for (int b = im->first_box; b < im->first_box + im->n_boxes; b++)
        if (gt->boxes[b].label == k) w->gidx[G++] = b;
    if (G == 0 && n_img_dets == 0) return; /* evaluateImg returns None */

    /* dts stable-sorted by descending score, cut to the last maxDets */
    for (int j = 0; j < n_img_dets; j++) w->sidx[j] = img_dets[j];
    eval_argsort_desc(w->g.cat_score, w->sidx, n_img_dets, w->stmp);
    const int D = n_img_dets < max_det ? n_img_dets : max_det;
    const int p0 = *n_pos;
    for (int d = 0; d < D; d++) {
        const eval_det *e = &dets[w->g.cat_det[w->sidx[d]]];
        double *db = w->dbox + 4 * d;
        db[0] = (double)e->x1;
        db[1] = (double)e->y1;
        db[2] = (double)e->x2 - (double)e->x1;
        db[3] = (double)e->y2 - (double)e->y1;
        w->p_score[p0 + d] = e->score;
    }
    for (int g = 0; g < G; g++) {
        const coco_box *bx = &gt->boxes[w->gidx[g]];
        double *gb = w->gbox + 4 * g;
        gb[0] = (double)bx->x1;
        gb[1] = (double)bx->y1;
        gb[2] = (double)bx->x2 - (double)bx->x1;
        gb[3] = (double)bx->y2 - (double)bx->y1;
    }
    for (int d = 0; d < D; d++)
        for (int g = 0; g < G; g++)
            w->iou[d * G + g] = coco_iou(w->dbox + 4 * d, w->gbox + 4 * g,
                                         gt->boxes[w->gidx[g]].iscrowd != 0);

    for (int a = 0; a < A; a++) {
        const double lo = coco_area_rng[a][0], hi = coco_area_rng[a][1];
        /* _ignore = iscrowd or area outside the range; not-ignored gts first (stable) */
        int n = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int g = 0; g < G; g++) {
                const coco_box *bx = &gt->boxes[w->gidx[g]];
                int ig = bx->iscrowd != 0 || bx->area < lo || bx->area > hi;
                if (ig != pass) continue;
                w->gtind[n] = g;
                w->gig[n] = (unsigned char)ig;
                n++;
            }
        for (int g = 0; g < G; g++) w->npig[a] += !w->gig[g];
        unsigned char *mt = w->p_match[a] + (size_t)p0 * T;
        unsigned char *ig = w->p_ign[a] + (size_t)p0 * T;
        memset(mt, 0, (size_t)D * T);
        memset(ig, 0, (size_t)D * T);
        for (int t = 0; t < T; t++) {
            memset(w->gtm, 0, (size_t)G);
            for (int d = 0; d < D; d++) {
                double best = thr[t] < 1 - 1e-10 ? thr[t] : 1 - 1e-10;
                int mi = -1;
                for (int gi = 0; gi < G; gi++) {
                    const int g = w->gtind[gi];
                    const int crowd = gt->boxes[w->gidx[g]].iscrowd != 0;
                    if (w->gtm[gi] && !crowd) continue;
                    if (mi > -1 && !w->gig[mi] && w->gig[gi]) break;
                    const double v = w->iou[d * G + g];
                    if (v < best) continue;
                    best = v;
                    mi = gi;
                }
                if (mi == -1) continue;
                ig[d * T + t] = w->gig[mi];
                mt[d * T + t] = gt->boxes[w->gidx[w->gtind[mi]]].ann_id != 0;
                w->gtm[mi] = 1;
            }
        }
        /* an unmatched det outside the area range is ignored */
        for (int d = 0; d < D; d++) {
            const double da = w->dbox[4 * d + 2] * w->dbox[4 * d + 3];
            if (!(da < lo || da > hi)) continue;
            for (int t = 0; t < T; t++)
                if (!mt[d * T + t]) ig[d * T + t] = 1;
        }
    }
    w->run_start[w->n_runs] = p0;
    w->run_len[w->n_runs] = D;
    w->n_runs++;
    *n_pos = p0 + D;
}

/* accumulate for one (category, area, maxDet). */
static void coco_accumulate(coco_work *w, int k, int K, int a, int mi, int max_det,
                            const double rec_thr[R]) {
    if (w->npig[a] == 0) return; /* precision and recall stay -1 */
    int n = 0;
    for (int r = 0; r < w->n_runs; r++) {
        int len = w->run_len[r] < max_det ? w->run_len[r] : max_det;
        for (int j = 0; j < len; j++) w->acc[n++] = w->run_start[r] + j;
    }
    eval_argsort_desc(w->p_score, w->acc, n, w->stmp);
    const unsigned char *mt = w->p_match[a], *ig = w->p_ign[a];
    const double npig = (double)w->npig[a];
    for (int t = 0; t < T; t++) {
        double tp = 0., fp = 0.;
        for (int i = 0; i < n; i++) {
            const int p = w->acc[i];
            const int mm = mt[p * T + t], ii = ig[p * T + t];
            tp += mm && !ii;
            fp += !mm && !ii;
            w->rc[i] = tp / npig;
            w->pr[i] = tp / (fp + tp + DBL_EPSILON); /* np.spacing(1) */
        }
        w->recall[((t * K + k) * A + a) * M + mi] = n ? w->rc[n - 1] : 0.;
        for (int i = n - 1; i > 0; i--)
            if (w->pr[i] > w->pr[i - 1]) w->pr[i - 1] = w->pr[i];
        /* searchsorted(rc, recThrs, 'left'); once past the end the rest stay 0 */
        int i = 0;
        for (int r = 0; r < R; r++) {
            while (i < n && w->rc[i] < rec_thr[r]) i++;
            w->precision[(((t * R + r) * K + k) * A + a) * M + mi] = i < n ? w->pr[i] : 0.;
        }
    }
}

/* np.mean(s[s > -1]) over precision (ap) or recall entries, C order (T, R, K) or (T, K);
 * tsel < 0 means every threshold, kk < 0 every category. -1 if nothing is valid. */
static double coco_summarize(coco_work *w, int K, int ap, int tsel, int kk, int a, int mi) {
    if (tsel == -2 || mi < 0) return -1.; /* threshold or maxDets value not in the grid */
    size_t n = 0;
    for (int t = 0; t < T; t++) {
        if (tsel >= 0 && t != tsel) continue;
        for (int r = 0; r < (ap ? R : 1); r++)
            for (int k = 0; k < K; k++) {
                if (kk >= 0 && k != kk) continue;
                double v = ap ? w->precision[(((t * R + r) * K + k) * A + a) * M + mi]
                              : w->recall[((t * K + k) * A + a) * M + mi];
                if (v > -1) w->vals[n++] = v;
            }
    }
    return n ? eval_sum_f64(w->vals, n) / (double)n : -1.;
}

/* Allocates the work buffers, *ids (I + 1) and out->cat for K categories, I images, n_dets dets
 * and at most md2 kept dets per image; on failure frees them all. */
static int coco_work_alloc(coco_work *w, id_pos **ids, int n_dets, int K, int I, int max_boxes, int md2,
                           eval_coco_result *out) {
    const size_t nd1 = (size_t)n_dets + 1, nb1 = (size_t)max_boxes + 1;
    const size_t dmax = (size_t)(n_dets < md2 ? n_dets : md2) + 1; /* kept dets per image */
    memset(w, 0, sizeof *w);
    *ids = malloc(((size_t)I + 1) * sizeof **ids);
    w->img_order = malloc(((size_t)I + 1) * sizeof *w->img_order);
    w->img_rank = malloc(((size_t)I + 1) * sizeof *w->img_rank);
    const int groups_ok = eval_groups_alloc(&w->g, n_dets, K, I);
    w->sidx = malloc(nd1 * sizeof *w->sidx);
    w->stmp = malloc(nd1 * sizeof *w->stmp);
    w->p_score = malloc(nd1 * sizeof *w->p_score);
    int ok = *ids && w->img_order && w->img_rank && groups_ok && w->sidx && w->stmp && w->p_score;
    for (int a = 0; a < A; a++) {
        w->p_match[a] = malloc(nd1 * T);
        w->p_ign[a] = malloc(nd1 * T);
        ok = ok && w->p_match[a] && w->p_ign[a];
    }
    w->run_start = malloc(((size_t)I + 1) * sizeof *w->run_start);
    w->run_len = malloc(((size_t)I + 1) * sizeof *w->run_len);
    w->gidx = malloc(nb1 * sizeof *w->gidx);
    w->gtind = malloc(nb1 * sizeof *w->gtind);
    w->gig = malloc(nb1);
    w->gtm = malloc(nb1);
    w->iou = malloc(dmax * nb1 * sizeof *w->iou);
    w->dbox = malloc(dmax * 4 * sizeof *w->dbox);
    w->gbox = malloc(nb1 * 4 * sizeof *w->gbox);
    w->acc = malloc(nd1 * sizeof *w->acc);
    w->rc = malloc(nd1 * sizeof *w->rc);
    w->pr = malloc(nd1 * sizeof *w->pr);
    const size_t np = (size_t)T * R * (size_t)K * A * M, nr = (size_t)T * (size_t)K * A * M;
    w->precision = malloc((np + 1) * sizeof *w->precision);
    w->recall = malloc((nr + 1) * sizeof *w->recall);
    w->vals = malloc(((size_t)T * R * (size_t)K + 1) * sizeof *w->vals);
    out->cat = calloc((size_t)K + 1, sizeof *out->cat);
    ok = ok && w->run_start && w->run_len && w->gidx && w->gtind && w->gig && w->gtm && w->iou &&
         w->dbox && w->gbox && w->acc && w->rc && w->pr && w->precision && w->recall && w->vals && out->cat;
    if (!ok) {
        free(*ids);
        *ids = NULL;
        coco_work_free(w);
        eval_coco_result_free(out);
        return ote_err(OTE_ENOMEM, "eval_coco: out of memory (%d detections, %d images, %d classes)",
                       n_dets, I, K);
    }
    for (size_t i = 0; i < np; i++) w->precision[i] = -1.;
    for (size_t i = 0; i < nr; i++) w->recall[i] = -1.;
    return OTE_OK;
}

/* imgIds are sorted ids; ties (only possible across files) keep dataset order. Frees ids. */
static void coco_order_images(coco_work *w, const coco_dataset *gt, id_pos *ids) {
    const int I = gt->n_images;
    for (int m = 0; m < I; m++) {
        ids[m].id = gt->images[m].id;
        ids[m].pos = m;
    }
    qsort(ids, (size_t)I, sizeof *ids, id_pos_cmp);
    for (int r = 0; r < I; r++) {
        w->img_order[r] = ids[r].pos;
        w->img_rank[ids[r].pos] = r;
    }
    free(ids);
}

/* evaluate and accumulate for category k: its images in id order, then every (area, maxDet). */
static void coco_eval_category(coco_work *w, const coco_dataset *gt, const eval_det *dets, int k,
                               const int md[3], const double thr[T], const double rec_thr[R]) {
    const int K = gt->n_cats, I = gt->n_images;
    /* the category's dets grouped by image rank, list order inside */
    eval_groups_class(&w->g, dets, k, w->img_rank, I);

    w->n_runs = 0;
    for (int a = 0; a < A; a++) w->npig[a] = 0;
    int n_pos = 0;
    for (int r = 0; r < I; r++) {
        const int s = w->g.img_start[r], e = w->g.img_start[r + 1];
        /* the image's dets are positions s..e-1 of g.cat_det/g.cat_score */
        for (int j = s; j < e; j++) w->acc[j - s] = j;
        coco_eval_image(w, gt, dets, w->acc, e - s, w->img_order[r], k, md[2], thr, &n_pos);
    }
    for (int a = 0; a < A; a++)
        for (int mi = 0; mi < M; mi++) coco_accumulate(w, k, K, a, mi, md[mi], rec_thr);
}

/* summarize into out->stats and the per-category results: stats[0] uses the literal maxDets 100
 * of pycocotools' _summarize default */
static void coco_summarize_all(coco_work *w, int K, const int md[3], const double thr[T],
                               eval_coco_result *out) {
    int m100 = -1;
    for (int mi = 0; mi < M; mi++)
        if (md[mi] == 100) m100 = mi;
    int t50 = -2, t75 = -2;
    for (int t = 0; t < T; t++) {
        if (thr[t] == 0.5) t50 = t;
        if (thr[t] == 0.75) t75 = t;
    }
    double *st = out->stats;
    st[0] = coco_summarize(w, K, 1, -1, -1, 0, m100);
    st[1] = coco_summarize(w, K, 1, t50, -1, 0, 2);
    st[2] = coco_summarize(w, K, 1, t75, -1, 0, 2);
    st[3] = coco_summarize(w, K, 1, -1, -1, 1, 2);
    st[4] = coco_summarize(w, K, 1, -1, -1, 2, 2);
    st[5] = coco_summarize(w, K, 1, -1, -1, 3, 2);
    st[6] = coco_summarize(w, K, 0, -1, -1, 0, 0);
    st[7] = coco_summarize(w, K, 0, -1, -1, 0, 1);
    st[8] = coco_summarize(w, K, 0, -1, -1, 0, 2);
    st[9] = coco_summarize(w, K, 0, -1, -1, 1, 2);
    st[10] = coco_summarize(w, K, 0, -1, -1, 2, 2);
    st[11] = coco_summarize(w, K, 0, -1, -1, 3, 2);
    for (int k = 0; k < K; k++) {
        out->cat[k].ap = coco_summarize(w, K, 1, -1, k, 0, M - 1);
        out->cat[k].ap50 = coco_summarize(w, K, 1, t50, k, 0, M - 1);
        out->cat[k].ap75 = coco_summarize(w, K, 1, t75, k, 0, M - 1);
        out->cat[k].ar = coco_summarize(w, K, 0, -1, k, 0, M - 1);
    }
}

int eval_coco(const coco_dataset *gt, const eval_det *dets, int n_dets, const int max_dets[3],
              eval_coco_result *out) {
    memset(out, 0, sizeof *out);
    CHECK(eval_check_dets(gt, dets, n_dets, "eval_coco"));
    const int md_default[3] = {1, 10, 100};
    const int *md = max_dets ? max_dets : md_default;
    if (md[0] < 1 || md[1] <= md[0] || md[2] <= md[1])
        return ote_err(OTE_EINVAL, "eval_coco: max_dets %d,%d,%d: need 0 < m0 < m1 < m2", md[0],
                       md[1], md[2]);
    const int K = gt->n_cats, I = gt->n_images;
    int max_boxes = 0;
    for (int m = 0; m < I; m++)
        if (gt->images[m].n_boxes > max_boxes) max_boxes = gt->images[m].n_boxes;

    coco_work w;
    id_pos *ids = NULL;
    CHECK(coco_work_alloc(&w, &ids, n_dets, K, I, max_boxes, md[2], out));
    out->n_cats = K;
    memcpy(out->max_dets, md, sizeof out->max_dets);
    coco_order_images(&w, gt, ids);
    eval_groups_by_label(&w.g, dets, n_dets, K);

    double thr[T], rec_thr[R];
    eval_coco_iou_thrs(thr);
    eval_coco_rec_thrs(rec_thr);
    for (int k = 0; k < K; k++) coco_eval_category(&w, gt, dets, k, md, thr, rec_thr);
    coco_summarize_all(&w, K, md, thr, out);
    coco_work_free(&w);
    return OTE_OK;
}

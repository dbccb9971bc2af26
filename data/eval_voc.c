/* eval_voc.c - mmdetection's VOC-style `eval_map` (mmdet 2.9 core/evaluation/mean_ap.py as the
 * OTE fork ships it): IoU threshold iou_thr, no scale ranges, `tpfp_default`, 'area' AP.
 *
 * Reproduces the reference's arithmetic exactly (fixtures/eval/README.md):
 * - IoU in float32 with the union clamped to float32(1e-6) (bbox_overlaps casts to float32);
 * - per image, dets walked in descending score; a det takes the first gt with its max IoU
 *   (argmax) and never falls back to another gt; ignored gts come after the real ones;
 * - tp/fp cumulated in float32, recall = tp / num_gts in double, precision a float32 division;
 * - AP summed in double with numpy's pairwise sum, stored as float32;
 * - mAP a float32 (pairwise) mean over classes with gts.
 * Owns only temporaries; the result's class array (and eval_voc_pr's curves) are owned by the caller
 * after success.
 */
#include "data/eval.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

void eval_voc_result_free(eval_voc_result *r) {
    free(r->cls);
    memset(r, 0, sizeof *r);
}

/* bbox_overlaps(mode='iou') for one det/gt pair, in float32 as numpy computes it. */
static float voc_iou(const float d[4], const float g[4]) {
    float area_d = (d[2] - d[0]) * (d[3] - d[1]);
    float area_g = (g[2] - g[0]) * (g[3] - g[1]);
    float w = (d[2] < g[2] ? d[2] : g[2]) - (d[0] > g[0] ? d[0] : g[0]);
    float h = (d[3] < g[3] ? d[3] : g[3]) - (d[1] > g[1] ? d[1] : g[1]);
    float overlap = (w > 0.f ? w : 0.f) * (h > 0.f ? h : 0.f);
    float uni = area_d + area_g - overlap;
    if (!(uni >= 1e-6f)) uni = 1e-6f; /* np.maximum(union, eps): eps is cast to float32 */
    return overlap / uni;
}

/* average_precision(mode='area') on one class's curve; mrec/mpre/terms have room for n + 2. */
static float voc_area_ap(const double *rec, const float *prec, int n, double *mrec, double *mpre,
                         double *terms) {
    mrec[0] = 0.;
    mpre[0] = 0.;
    for (int i = 0; i < n; i++) {
        mrec[i + 1] = rec[i];
        mpre[i + 1] = (double)prec[i]; /* hstack with float64 zeros promotes precision to double */
    }
    mrec[n + 1] = 1.;
    mpre[n + 1] = 0.;
    for (int i = n + 1; i > 0; i--)
        if (mpre[i] > mpre[i - 1]) mpre[i - 1] = mpre[i];
    int nt = 0;
    for (int i = 0; i < n + 1; i++)
        if (mrec[i + 1] != mrec[i]) terms[nt++] = (mrec[i + 1] - mrec[i]) * mpre[i + 1];
    return (float)eval_sum_f64(terms, (size_t)nt);
}

typedef struct voc_work {
    eval_groups g;      /* by class, then this class's dets by image (dataset order) */
    float *tp, *fp;     /* indexed like g.cat_det */
    int *idx, *tmp;     /* sort buffers */
    double *rec;
    float *prec;
    double *mrec, *mpre, *terms;
    float (*gbox)[4];   /* one image's gts of the class, real ones first (max boxes per image) */
    unsigned char *gign, *covered;
    float *aps;         /* APs of classes with gts, in class order */
} voc_work;

static void voc_work_free(voc_work *w) {
    eval_groups_free(&w->g);
    free(w->tp);
    free(w->fp);
    free(w->idx);
    free(w->tmp);
    free(w->rec);
    free(w->prec);
    free(w->mrec);
    free(w->mpre);
    free(w->terms);
    free(w->gbox);
    free(w->gign);
    free(w->covered);
    free(w->aps);
}

void eval_pr_curves_free(eval_pr_curves *c) {
    for (int k = 0; c->cls && k < c->n_classes; k++) {
        free(c->cls[k].recall);
        free(c->cls[k].precision);
        free(c->cls[k].score);
    }
    free(c->cls);
    memset(c, 0, sizeof *c);
}

/* Copies class c's curve (nd points of rec/prec in the order of idx) into curves->cls[c]. */
static int voc_keep_curve(eval_pr_curves *curves, int c, const double *rec, const float *prec,
                          const float *score, const int *idx, int nd) {
    eval_pr_curve *k = &curves->cls[c];
    size_t m = (size_t)nd + 1;
    k->recall = malloc(m * sizeof *k->recall);
    k->precision = malloc(m * sizeof *k->precision);
    k->score = malloc(m * sizeof *k->score);
    if (!k->recall || !k->precision || !k->score) return ote_err(OTE_ENOMEM, "eval_voc: out of memory (curves)");
    for (int q = 0; q < nd; q++) {
        k->recall[q] = rec[q];
        k->precision[q] = prec[q];
        k->score[q] = score[idx[q]];
    }
    k->n = nd;
    return 0;
}

int eval_voc(const coco_dataset *gt, const eval_det *dets, int n_dets, double iou_thr,
             eval_crowd_mode crowd, eval_voc_result *out) {
    return eval_voc_pr(gt, dets, n_dets, iou_thr, crowd, out, NULL);
}

/* Allocates the work buffers, out->cls and (when asked) curves->cls; on failure frees them all. */
static int voc_work_alloc(voc_work *w, int n_dets, int K, int I, int max_boxes, eval_voc_result *out,
                          eval_pr_curves *curves) {
    size_t nd1 = (size_t)n_dets + 1, nd2 = (size_t)n_dets + 2, nb1 = (size_t)max_boxes + 1;
    memset(w, 0, sizeof *w);
    const int groups_ok = eval_groups_alloc(&w->g, n_dets, K, I);
    w->tp = malloc(nd1 * sizeof *w->tp);
    w->fp = malloc(nd1 * sizeof *w->fp);
    w->idx = malloc(nd1 * sizeof *w->idx);
    w->tmp = malloc(nd1 * sizeof *w->tmp);
    w->rec = malloc(nd1 * sizeof *w->rec);
    w->prec = malloc(nd1 * sizeof *w->prec);
    w->mrec = malloc(nd2 * sizeof *w->mrec);
    w->mpre = malloc(nd2 * sizeof *w->mpre);
    w->terms = malloc(nd2 * sizeof *w->terms);
    w->gbox = malloc(nb1 * sizeof *w->gbox);
    w->gign = malloc(nb1);
    w->covered = malloc(nb1);
    w->aps = malloc(((size_t)K + 1) * sizeof *w->aps);
    out->cls = calloc((size_t)K + 1, sizeof *out->cls);
    if (curves) {
        curves->cls = calloc((size_t)K + 1, sizeof *curves->cls);
        if (curves->cls) curves->n_classes = K;
    }
    if ((curves && !curves->cls) || !groups_ok || !w->tp || !w->fp || !w->idx || !w->tmp || !w->rec || !w->prec ||
        !w->mrec || !w->mpre || !w->terms || !w->gbox || !w->gign || !w->covered || !w->aps || !out->cls) {
        voc_work_free(w);
        eval_voc_result_free(out);
        if (curves) eval_pr_curves_free(curves);
        return ote_err(OTE_ENOMEM, "eval_voc: out of memory (%d detections, %d classes)", n_dets, K);
    }
    return OTE_OK;
}

/* gts of class c in image im into gbox/gign: real ones in annotation order, then the ignored
 * (crowd) ones; returns their count G and the number of real ones in *n_real. */
static int voc_image_gts(voc_work *w, const coco_dataset *gt, const coco_image *im, int c,
                         eval_crowd_mode crowd, int *n_real) {
    int G = 0;
    *n_real = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int b = im->first_box; b < im->first_box + im->n_boxes; b++) {
            const coco_box *bx = &gt->boxes[b];
            if (bx->label != c || bx->iscrowd != pass) continue;
            if (pass == 1 && crowd == EVAL_CROWD_ABSENT) continue;
            w->gbox[G][0] = bx->x1;
            w->gbox[G][1] = bx->y1;
            w->gbox[G][2] = bx->x2;
            w->gbox[G][3] = bx->y2;
            w->gign[G] = (unsigned char)pass;
            G++;
            if (!pass) (*n_real)++;
        }
    }
    return G;
}

/* tpfp_default for one image: its dets (positions s..e-1 of g.cat_det) in descending score take the
 * first gt of their max IoU (G >= 1 gts in gbox/gign). */
static void voc_match_image(voc_work *w, const eval_det *dets, int s, int e, int G, double iou_thr) {
    int n = e - s;
    for (int j = 0; j < n; j++) w->idx[j] = s + j;
    eval_argsort_desc(w->g.cat_score, w->idx, n, w->tmp);
    memset(w->covered, 0, (size_t)G);
    for (int q = 0; q < n; q++) {
        int j = w->idx[q];
        const eval_det *d = &dets[w->g.cat_det[j]];
        const float db[4] = {d->x1, d->y1, d->x2, d->y2};
        float best = voc_iou(db, w->gbox[0]);
        int arg = 0;
        for (int g = 1; g < G; g++) {
            float v = voc_iou(db, w->gbox[g]);
            if (v > best) { /* argmax: first maximum */
                best = v;
                arg = g;
            }
        }
        if ((double)best >= iou_thr) {
            if (w->gign[arg]) continue; /* on an ignored gt: neither TP nor FP */
            if (!w->covered[arg]) {
                w->covered[arg] = 1;
                w->tp[j] = 1.f;
            } else {
                w->fp[j] = 1.f; /* VOC rule: no fallback to another gt */
            }
        } else {
            w->fp[j] = 1.f;
        }
    }
}

/* tp/fp of class c's dets (grouped by eval_groups_class) over every image; returns num_gts. */
static int voc_tpfp_class(voc_work *w, const coco_dataset *gt, const eval_det *dets, int c,
                          eval_crowd_mode crowd, double iou_thr) {
    int num_gts = 0;
    for (int m = 0; m < gt->n_images; m++) {
        int n_real;
        const int G = voc_image_gts(w, gt, &gt->images[m], c, crowd, &n_real);
        num_gts += n_real;
        const int s = w->g.img_start[m], e = w->g.img_start[m + 1];
        if (s == e) continue;
        if (G == 0) { /* no gt at all: every det is a false positive */
            for (int j = s; j < e; j++) w->fp[j] = 1.f;
            continue;
        }
        voc_match_image(w, dets, s, e, G, iou_thr);
    }
    return num_gts;
}

/* Curve over all images: stable descending score order (left in idx), float32 cumsums. */
static void voc_curve(voc_work *w, int nd, int num_gts) {
    for (int j = 0; j < nd; j++) w->idx[j] = j;
    eval_argsort_desc(w->g.cat_score, w->idx, nd, w->tmp);
    float ctp = 0.f, cfp = 0.f;
    const double denom = num_gts > 0 ? (double)num_gts : (double)FLT_EPSILON;
    for (int q = 0; q < nd; q++) {
        ctp += w->tp[w->idx[q]];
        cfp += w->fp[w->idx[q]];
        w->rec[q] = (double)ctp / denom;
        float sum = ctp + cfp;
        w->prec[q] = ctp / (sum > FLT_EPSILON ? sum : FLT_EPSILON);
    }
}

int eval_voc_pr(const coco_dataset *gt, const eval_det *dets, int n_dets, double iou_thr,
                eval_crowd_mode crowd, eval_voc_result *out, eval_pr_curves *curves) {
    memset(out, 0, sizeof *out);
    if (curves) memset(curves, 0, sizeof *curves);
    CHECK(eval_check_dets(gt, dets, n_dets, "eval_voc"));
    if (crowd != EVAL_CROWD_IGNORED && crowd != EVAL_CROWD_ABSENT)
        return ote_err(OTE_EINVAL, "eval_voc: crowd mode %d unknown", (int)crowd);
    const int K = gt->n_cats, I = gt->n_images;
    int max_boxes = 0;
    for (int m = 0; m < I; m++)
        if (gt->images[m].n_boxes > max_boxes) max_boxes = gt->images[m].n_boxes;
    voc_work w;
    CHECK(voc_work_alloc(&w, n_dets, K, I, max_boxes, out, curves));
    out->n_classes = K;
    eval_groups_by_label(&w.g, dets, n_dets, K);

    int n_aps = 0;
    for (int c = 0; c < K; c++) {
        /* the class's dets grouped by image (vstack of per-image arrays), tp = fp = 0 */
        const int nd = eval_groups_class(&w.g, dets, c, NULL, I);
        memset(w.tp, 0, (size_t)nd * sizeof *w.tp);
        memset(w.fp, 0, (size_t)nd * sizeof *w.fp);
        int num_gts = voc_tpfp_class(&w, gt, dets, c, crowd, iou_thr);
        voc_curve(&w, nd, num_gts);
        if (curves && voc_keep_curve(curves, c, w.rec, w.prec, w.g.cat_score, w.idx, nd) < 0) {
            voc_work_free(&w);
            eval_voc_result_free(out);
            eval_pr_curves_free(curves);
            return OTE_ENOMEM;
        }
        float ap = voc_area_ap(w.rec, w.prec, nd, w.mrec, w.mpre, w.terms);
        out->cls[c].ap = ap;
        out->cls[c].num_gts = num_gts;
        out->cls[c].num_dets = nd;
        if (num_gts > 0) w.aps[n_aps++] = ap;
    }
    out->n_classes_with_gts = n_aps;
    /* np.array(aps).mean(): float32 pairwise sum, divided in double, rounded to float32. */
    out->map = n_aps ? (float)((double)eval_sum_f32(w.aps, (size_t)n_aps) / (double)n_aps) : 0.f;
    voc_work_free(&w);
    return OTE_OK;
}

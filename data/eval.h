/* eval.h - detection metrics over a ground-truth coco_dataset: mmdetection's VOC-style `eval_map`
 * (IoU 0.5, 'area' AP, tpfp_default) and pycocotools' COCOeval for iouType 'bbox'.
 *
 * Both evaluators reproduce their references bit for bit, including the float32/float64 mix,
 * the stable sorts and numpy's pairwise summation (see ../shared/fixtures/eval/README.md and
 * spec-detector.md §10). The metric code does no file I/O; eval_results.c reads and writes COCO
 * results files. Detections are plain arrays owned by the caller; every result struct owns its
 * per-class arrays (free with the matching *_free).
 *
 * Deliberate differences from the references, all outside what the fixtures exercise:
 * - ground-truth boxes come from coco_load, which clips boxes partly outside the image and drops
 *   degenerate ones (pycocotools would keep them); a gt's box width is x2 - x1 in double;
 * - images are told apart by their index in the dataset, not by id, so two images sharing an
 *   id (possible across several annotation files) stay separate; COCO still walks images in
 *   ascending id order (ties in dataset order);
 * - numpy's argsort in eval_map is not stable for more than 16 tied elements; we always use the
 *   stable order (dataset image order, then detection-list order), which is what numpy gives for
 *   small arrays.
 */
#ifndef OTE_EVAL_H
#define OTE_EVAL_H

#include <stddef.h>

#include "data/coco.h"

/* One detection, as a detector outputs it (after rescaling to the original image). */
typedef struct eval_det {
    int image;             /* index into coco_dataset.images */
    int label;             /* contiguous class index into coco_dataset.cats */
    float x1, y1, x2, y2;  /* original-image pixels, xyxy */
    float score;           /* finite */
} eval_det;

/* A growable list of detections (the order matters: it breaks score ties). */
typedef struct eval_dets {
    eval_det *d;
    int n, cap;
} eval_dets;

void eval_dets_init(eval_dets *l);
int eval_dets_push(eval_dets *l, eval_det d); /* OTE_ENOMEM */
void eval_dets_free(eval_dets *l);

/* How mmdet's eval_map sees crowd gts (iscrowd = 1). */
typedef enum eval_crowd_mode {
    EVAL_CROWD_IGNORED = 0, /* passed as bboxes_ignore + labels_ignore: dets on them are skipped */
    EVAL_CROWD_ABSENT = 1,  /* left out, as mmdet's CocoDataset effectively does (training default) */
} eval_crowd_mode;

/* ---- VOC-style mAP (mmdet eval_map, 'area' mode, tpfp_default) ---- */

typedef struct eval_voc_class {
    float ap;     /* float32 as mmdet stores it; 0 for a class without gts */
    int num_gts;  /* non-crowd gts of the class */
    int num_dets;
} eval_voc_class;

typedef struct eval_voc_result {
    float map;               /* float32 mean of `ap` over classes with num_gts > 0 (0 if none) */
    int n_classes;           /* = gt->n_cats */
    int n_classes_with_gts;
    eval_voc_class *cls;     /* n_classes, owned */
} eval_voc_result;

/* dets: n_dets detections in results order. iou_thr is 0.5 for OTE's mAP. Errors: a detection
 * with an out-of-range image/label or a non-finite value (OTE_EINVAL, names its index), or
 * OTE_ENOMEM. On error `out` is left empty (safe to free). */
int eval_voc(const coco_dataset *gt, const eval_det *dets, int n_dets, double iou_thr,
             eval_crowd_mode crowd, eval_voc_result *out);
void eval_voc_result_free(eval_voc_result *r);

/* The precision-recall curve of each class behind eval_voc's AP: the class's detections over all
 * images in descending score (stable), and after each one the recall tp / num_gts (double) and
 * the precision tp / (tp + fp) (float32), exactly the arrays eval_voc integrates ('area' AP over
 * the monotone envelope of this curve gives cls[c].ap). Detections on ignored gts count as
 * neither TP nor FP but keep their point. A class without gts has recall 0 everywhere. */
typedef struct eval_pr_curve {
    int n;          /* detections of the class = points on the curve */
    double *recall; /* (n), owned */
    float *precision; /* (n), owned */
    float *score;   /* (n) the detection score at each point, descending */
} eval_pr_curve;

typedef struct eval_pr_curves {
    int n_classes;       /* = gt->n_cats */
    eval_pr_curve *cls;  /* n_classes, owned */
} eval_pr_curves;

/* eval_voc plus the curves (same arguments, same result in *out; curves may be NULL). On error
 * both are left empty (safe to free). */
int eval_voc_pr(const coco_dataset *gt, const eval_det *dets, int n_dets, double iou_thr,
                eval_crowd_mode crowd, eval_voc_result *out, eval_pr_curves *curves);
void eval_pr_curves_free(eval_pr_curves *c);

/* ---- COCO bbox AP/AR (pycocotools COCOeval, iouType 'bbox') ---- */

#define EVAL_COCO_NSTATS 12

typedef struct eval_coco_category {
    double ap, ap50, ap75; /* mean precision (area all, the last maxDets) over valid entries */
    double ar;             /* mean recall over the 10 IoU thresholds; all -1 without non-crowd gts */
} eval_coco_category;

typedef struct eval_coco_result {
    /* AP, AP50, AP75, AP_small, AP_medium, AP_large, AR@md0, AR@md1, AR@md2, AR_s, AR_m, AR_l
     * exactly as COCOeval.stats (stats[0] uses maxDets 100, -1 if 100 is not among max_dets). */
    double stats[EVAL_COCO_NSTATS];
    int max_dets[3];
    int n_cats;               /* = gt->n_cats */
    eval_coco_category *cat;  /* n_cats, owned */
} eval_coco_result;

/* max_dets: strictly increasing positive triple; NULL means pycocotools' default {1, 10, 100}.
 * mmdet's CocoDataset.evaluate uses (const int[3]){100, 300, 1000}. Errors as eval_voc. */
int eval_coco(const coco_dataset *gt, const eval_det *dets, int n_dets, const int max_dets[3],
              eval_coco_result *out);
void eval_coco_result_free(eval_coco_result *r);

/* IoU of two xyxy float32 boxes as eval_coco computes it (maskApi bbIou on xywh in double, w =
 * x2 - x1 in double): intersection over union, or over the det's area alone for a crowd gt;
 * 0 when the boxes do not overlap. */
double eval_coco_iou(const float det[4], const float gt[4], int crowd);

/* Formats stats[i] as pycocotools' summarize() prints it, e.g.
 * " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.387". */
void eval_coco_format_stat(const eval_coco_result *r, int i, char *buf, size_t n);

/* ---- both at once, and over a detector ---- */

typedef struct eval_report {
    eval_voc_result voc;   /* IoU 0.5 with the requested crowd mode */
    eval_coco_result coco; /* with the requested max_dets */
} eval_report;

int eval_run(const coco_dataset *gt, const eval_det *dets, int n_dets, eval_crowd_mode crowd,
             const int max_dets[3], eval_report *out);
void eval_report_free(eval_report *r);

/* Detector plug point: append the detections of image `index` (gt->images[index]) to `out`.
 * The `image` field of appended detections is overwritten with `index`. Return 0 or a negative
 * OTE_E* status (with an ote_err message); it is passed up with the image named. */
typedef int (*eval_predict_fn)(void *ctx, const coco_image *img, int index, eval_dets *out);

/* Runs `predict` over every image of gt in dataset order and scores the result. If `keep` is
 * not NULL it receives the detections (caller frees), e.g. to write a results file. */
int eval_dataset(const coco_dataset *gt, eval_predict_fn predict, void *ctx, eval_crowd_mode crowd,
                 const int max_dets[3], eval_report *out, eval_dets *keep);

/* ---- confidence threshold (eval_threshold.c) ---- */

/* The confidence threshold with the best F-measure over all classes - our reading of OTE's
 * result_based_confidence_threshold. Thresholds 0.025, 0.05, ..., 0.975 are tried; at each, the
 * detections with score >= threshold are taken in descending score order (stable) and each is a
 * true positive when a not yet matched, non-crowd gt of its image and label overlaps it with IoU
 * >= 0.5 (eval_coco_iou; the highest such IoU, the later gt on ties), else a false positive;
 * F = 2 tp / (2 tp + fp + fn) with fn the non-crowd gts left unmatched. The first threshold with
 * the highest F wins (ties within 1e-12 keep the lower threshold). Without gt boxes or without
 * detections *threshold = fallback and *f1 = -1. f1 may be NULL. Errors: a bad detection
 * (OTE_EINVAL, as eval_check_dets), OTE_ENOMEM. */
int eval_threshold(const coco_dataset *gt, const eval_det *dets, int n_dets, double fallback, double *threshold,
                   double *f1);

/* ---- COCO results files (eval_results.c) ---- */

/* Reads a COCO results file: a JSON list of {image_id, category_id, bbox: [x, y, w, h], score}
 * (other fields ignored). Boxes become float32 xyxy (x2 = x + w in double, then rounded), so a
 * file written from float32 detector output (as mmdet and eval_save_results write) round-trips
 * exactly. Appends to `out` in file order. Errors name the file and the entry index: missing or
 * unreadable file (OTE_EIO), malformed JSON with line:column, a missing/mistyped field, a
 * non-finite or negative-size box, an image_id or category_id not in gt (OTE_EPARSE). */
int eval_load_results(const char *path, const coco_dataset *gt, eval_dets *out);

/* Writes dets as a COCO results file (bbox = [x1, y1, x2-x1, y2-y1] in double, as mmdet does),
 * through a temporary file renamed into place. */
int eval_save_results(const char *path, const coco_dataset *gt, const eval_det *dets, int n_dets);

/* Writes the scores as JSON through a temporary file renamed into place:
 * {"voc_map_050": x, "voc_crowd": "ignored"|"absent", "voc_ap_per_class": {name: {ap, num_gts,
 *  num_dets}}, "coco_max_dets": [3], "coco_stats": [12 numbers]}. Numbers read back exactly
 * (the float32 VOC values as their double value). */
int eval_save_performance(const char *path, const coco_dataset *gt, const eval_report *r,
                          eval_crowd_mode crowd);

/* ---- numeric helpers shared by the evaluators (exposed for tests) ---- */

/* np.sum / np.add.reduce of a contiguous array: pairwise summation in blocks of 8 inside chunks
 * of 8192 elements (numpy's buffer size), the chunk sums added left to right from 0. */
double eval_sum_f64(const double *a, size_t n);
float eval_sum_f32(const float *a, size_t n);

/* Stable sort of idx[0..n) by descending score[idx[i]]; ties keep their order (numpy's
 * argsort(-score, kind='mergesort')). tmp has room for n ints. */
void eval_argsort_desc(const float *score, int *idx, int n, int *tmp);

/* The detections as both evaluators walk them: grouped by class, then one class's grouped by
 * image (stable counting sorts: list order is kept inside every group). */
typedef struct eval_groups {
    int *by_label;    /* (n_dets + 1) det indices, class k's at [label_start[k], label_start[k + 1]) */
    int *label_start; /* (n_cats + 1) */
    int *img_start;   /* (n_images + 1) the class's dets of image key m at [img_start[m], img_start[m + 1]) */
    int *cat_det;     /* (n_dets + 1) the class's det indices grouped by image key */
    float *cat_score; /* (n_dets + 1) score of cat_det[j] */
} eval_groups;

/* Allocates g's arrays; 0 if one is missing (the caller reports, then eval_groups_free). */
int eval_groups_alloc(eval_groups *g, int n_dets, int n_cats, int n_images);
void eval_groups_free(eval_groups *g);
/* Groups the n_dets dets by label (their labels lie in [0, n_cats): eval_check_dets). */
void eval_groups_by_label(eval_groups *g, const eval_det *dets, int n_dets, int n_cats);
/* Groups class c's dets (after eval_groups_by_label) by image into cat_det / cat_score / img_start;
 * the key of image m is rank[m] (COCO's id order) or m itself (rank NULL). Returns their count. */
int eval_groups_class(eval_groups *g, const eval_det *dets, int c, const int *rank, int n_images);

/* Every detection has an image and label in range and finite box/score (OTE_EINVAL naming the
 * index and `who` otherwise). Both evaluators call it first. */
int eval_check_dets(const coco_dataset *gt, const eval_det *dets, int n_dets, const char *who);

/* pycocotools Params: iouThrs = linspace(0.5, 0.95, 10), recThrs = linspace(0, 1, 101). */
#define EVAL_COCO_NIOU 10
#define EVAL_COCO_NREC 101
void eval_coco_iou_thrs(double thr[EVAL_COCO_NIOU]);
void eval_coco_rec_thrs(double thr[EVAL_COCO_NREC]);

#endif

/* predict.h - a trained detector run on image files, with the detections drawn for a person to
 * look at (`ote predict`, the samples at the end of `ote train`; issue 14 section 3).
 *
 * The images go through the validation path (train/trainer.h's trainer_predictor: batch 1 at the
 * input size, the loader's resize) in chunks of a few images, so the detections are those `ote eval`
 * scores. Each image is decoded once first: an unreadable file is one line on `err` naming it
 * and counted, and the other images go on. Drawn images (data/draw.h: boxes with a score at or
 * above the threshold, class names and scores) keep the original size and file name; with ground
 * truth (green) a key strip is added below the image ("ground truth" and the classes drawn, in
 * their colours). The COCO results file holds every detection the model outputs.
 * Written files go to a temporary name first and are renamed into place.
 *
 * Owns nothing between calls; predict_files and the datasets it builds belong to the caller.
 */
#ifndef OTE_PREDICT_H
#define OTE_PREDICT_H

#include <stdio.h>

#include "data/coco.h"
#include "io/pth.h"
#include "train/config.h"

/* Image files to predict, in order. */
typedef struct predict_files {
    char **path;
    int n, cap;
} predict_files;

/* --images arguments -> files: a folder gives its image files (.jpg .jpeg .png .bmp .tif .tiff
 * .webp, any case; not recursive) sorted by name; any other argument is kept as given, so a
 * missing or unreadable file is reported when it is read. OTE_EINVAL naming the folder for a
 * folder without image files, or when nothing is given. */
int predict_expand(const char *const *args, int n_args, predict_files *out);
void predict_files_free(predict_files *f);

/* The class names of a checkpoint: its label_schema.json (weights_side_path(weights, ...)) if
 * present, else "class <k>" for each of the checkpoint's classes (bbox_head.atss_cls). The
 * categories go into ds->cats / ds->n_cats (coco_category_id as the schema says, else k + 1).
 * *from_schema (may be NULL) says which. Errors: a malformed schema or one whose label count
 * differs from the checkpoint's (OTE_EPARSE / OTE_EINVAL naming the file), a checkpoint without
 * bbox_head.atss_cls.weight (OTE_EINVAL). */
int predict_labels(const char *weights_path, const pth_ckpt *c, coco_dataset *ds, int *from_schema);

/* A dataset of the files (no boxes) with the categories of `labels` (deep-copied): image id =
 * position in the list from 1, file_name = path = the file, width/height 0 until decoded. */
int predict_dataset_of_files(const predict_files *f, const coco_dataset *labels, coco_dataset *ds);

typedef struct predict_opts {
    config_template cfg;         /* the template, the checkpoint's model settings, then params */
    const char *weights;         /* the checkpoint file */
    double score_thr;            /* detections drawn when score >= this */
    const char *save_images;     /* folder for the drawn images (created); NULL = none */
    const char *save_detections; /* COCO results JSON; NULL = none */
    int draw_gt;                 /* also draw the dataset's (non-crowd) boxes, in green, and a key strip */
    int nthreads;                /* OpenMP threads for oneDNN; 0 = default */
    FILE *log;                   /* per-image lines (up to 20 images) or progress lines; NULL = none */
    FILE *err;                   /* one line per image that cannot be read or written; NULL = none */
    const char *err_prefix;      /* put before those lines (e.g. "ote predict: "); NULL = none */
} predict_opts;

typedef struct predict_summary {
    int n_images, n_ok, n_failed;  /* failed: not readable, or its drawn image not written */
    long n_dets;                   /* detections in the results */
    long n_drawn;                  /* boxes drawn (score >= score_thr) */
    double seconds;
} predict_summary;

/* Checks the outputs before any work: creates the image folder (and parents) and proves it
 * writable, and refuses a drawn image that would replace one of the input images; the results
 * file's folder must exist and be writable. OTE_EIO / OTE_EINVAL naming the path. */
int predict_check_outputs(const predict_opts *o, const coco_dataset *ds);

/* Predicts every image of ds (its width/height are set from the decoded files), draws and writes
 * as the options say. Returns 0 when it ran (sum->n_failed says whether every image made it) or a
 * negative status for what stops everything (the checkpoint does not fit the model, a oneDNN
 * failure, the results file cannot be written). */
int predict_run(const predict_opts *o, coco_dataset *ds, predict_summary *sum);

/* The end of `ote train`: up to n validation images (a seeded subset, in validation order) with
 * the predictions of weights (score >= score_thr) and the ground truth, into dir. *written gets
 * the number of images written. */
int predict_samples(const config_template *cfg, const char *weights, const coco_dataset *val, int n, double score_thr,
                    const char *dir, int *written);

#endif

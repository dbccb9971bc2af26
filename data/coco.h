/* coco.h - COCO-format detection datasets (ground truth), as loaded from one or more JSON files.
 *
 * Contract shared by the loader (data/coco.c), the evaluators (data/eval_*.c) and the trainer.
 * Boxes are stored xyxy in original-image pixels (x2 = x + w, y2 = y + h, no +1), grouped per image.
 * Class indices are contiguous 0..n_cats-1 in ascending category-id order (as mmdetection's
 * CocoDataset maps cat_ids to labels); `cats[k].id` keeps the original id for writing results.
 * Crowd boxes (iscrowd = 1) are kept with iscrowd set: training skips them, COCO evaluation treats
 * them as crowd regions.
 */
#ifndef OTE_COCO_H
#define OTE_COCO_H

#include <stddef.h>

typedef struct coco_box {
    float x1, y1, x2, y2; /* original-image pixels */
    int label;            /* contiguous class index */
    int iscrowd;
    double area;          /* the annotation's `area` field if present, else w*h (COCO eval range test) */
    long ann_id;
} coco_box;

typedef struct coco_image {
    long id;              /* COCO image id */
    char *file_name;      /* as in the JSON */
    char *path;           /* resolved: data root + "/" + file_name */
    int width, height;    /* from the JSON */
    int first_box;        /* index into coco_dataset.boxes */
    int n_boxes;
} coco_image;

typedef struct coco_category {
    long id;
    char *name;
} coco_category;

typedef struct coco_dataset {
    coco_image *images;   /* in file order (files in the order given), n_images */
    int n_images;
    coco_box *boxes;      /* grouped by image, n_boxes */
    int n_boxes;
    coco_category *cats;  /* ascending id, n_cats */
    int n_cats;
    int n_warn_clipped;   /* boxes partly outside the image, clipped */
    int n_warn_dropped;   /* boxes dropped (non-positive size, fully outside, unknown image/category) */
    /* Added by data/coco.c: the same warnings by kind, with the first offender of each kind. */
    int n_warn[5];                /* indexed by coco_warn_kind */
    char warn_first[5][256];      /* "file: annotations[i] (id N): ..." of the first offender, "" if none */
} coco_dataset;

/* Kinds of counted warnings (the annotation is kept clipped, or dropped; loading goes on). */
typedef enum coco_warn_kind {
    COCO_WARN_BAD_SIZE = 0,      /* bbox w <= 0 or h <= 0: dropped */
    COCO_WARN_CLIPPED = 1,       /* bbox partly outside the image: clipped to it */
    COCO_WARN_OUTSIDE = 2,       /* bbox entirely outside the image: dropped */
    COCO_WARN_UNKNOWN_IMAGE = 3, /* image_id not in `images`: dropped */
    COCO_WARN_UNKNOWN_CAT = 4,   /* category_id not in `categories`: dropped */
    COCO_WARN_KINDS = 5
} coco_warn_kind;

/* Loads one or more COCO JSON files.
 * ann_files_csv: comma-separated annotation files; data_roots_csv: comma-separated image roots,
 * either one root for all files or exactly one per file (the i-th file's `file_name`s are relative
 * to the i-th root; an absolute file_name is kept as is; an empty root list means "as written").
 * Categories of several files are matched by name; the union is sorted by id (the id a name has in
 * the first file that lists it) and labels are 0..n_cats-1 in that order. A category without any
 * box stays a class (airport's `bg`, `vehicle`, `non-vehicle` keep labels 0, 1, 3).
 * Image ids must be unique within a file (they may repeat across files: key by image index).
 * Images without boxes are kept. `annotations` may be absent (no boxes). `segmentation` and unknown
 * fields are ignored. Errors (negative OTE_E*, message names the file and entry): missing or
 * unreadable file (OTE_EIO); malformed JSON with line:column (OTE_EPARSE); a missing or mistyped
 * required field, duplicate image/category id, an empty `images` list, two names sharing one id
 * across files (OTE_EPARSE); bad argument lists (OTE_EINVAL). Box problems are counted warnings
 * (see coco_warn_kind). On error `d` is left empty (safe to coco_free). */
int coco_load(coco_dataset *d, const char *ann_files_csv, const char *data_roots_csv);
/* Ground truth for scoring a results file (`ote eval --detections`): as coco_load, but images need
 * no file_name (pycocotools does not need it either; file_name and path are then ""). */
int coco_load_gt(coco_dataset *d, const char *ann_files_csv);
void coco_free(coco_dataset *d);

/* One line summarising the warnings ("" if none), e.g.
 * "coco: 3 boxes dropped, 1 clipped (first: a.json: annotations[4] (id 17): bbox w=0 ...)".
 * Returns the number of warnings. Library code never prints: the caller decides. */
int coco_warning_summary(const coco_dataset *d, char *buf, size_t n);

/* A seeded random subset of n_keep images (all if n_keep >= n_images), kept in the source order,
 * with their boxes and all categories (labels unchanged). dst is a deep copy (coco_free it).
 * Same (src, n_keep, seed) -> same subset. */
int coco_subset(coco_dataset *dst, const coco_dataset *src, int n_keep, unsigned long long seed);

/* Largest number of boxes of one image (optionally counting only iscrowd == 0 boxes). */
int coco_max_boxes_per_image(const coco_dataset *d, int non_crowd_only);

#endif

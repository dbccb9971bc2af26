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
} coco_dataset;

#endif

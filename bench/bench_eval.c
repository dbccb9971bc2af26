/* bench_eval.c - wall time of eval_voc and eval_coco on a synthetic COCO-val-sized problem
 * (default 5000 images, 80 classes, ~7 gts and 100 detections per image), to see what the
 * evaluation costs per validation epoch. Usage: bench_eval [n_images] [n_classes] [dets_per_image].
 * Prints figures only; never asserts a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/eval.h"
#include "engine/rng.h"
#include "engine/ote.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    int n_img = argc > 1 ? atoi(argv[1]) : 5000;
    int n_cls = argc > 2 ? atoi(argv[2]) : 80;
    int per_img = argc > 3 ? atoi(argv[3]) : 100;
    if (n_img < 1 || n_cls < 1 || per_img < 0) {
        fprintf(stderr, "usage: bench_eval [n_images] [n_classes] [dets_per_image]\n");
        return 2;
    }
    rng r;
    rng_seed(&r, 7);
    coco_dataset d;
    memset(&d, 0, sizeof d);
    d.n_images = n_img;
    d.n_cats = n_cls;
    d.images = calloc((size_t)n_img, sizeof *d.images);
    d.cats = calloc((size_t)n_cls, sizeof *d.cats);
    d.boxes = calloc((size_t)n_img * 15, sizeof *d.boxes);
    eval_det *dets = malloc((size_t)n_img * (size_t)per_img * sizeof *dets + 1);
    ASSERT(d.images && d.cats && d.boxes && dets);
    for (int k = 0; k < n_cls; k++) d.cats[k].id = 3 * k + 1;
    int nd = 0;
    for (int m = 0; m < n_img; m++) {
        coco_image *im = &d.images[m];
        im->id = 2 * m + 5;
        im->width = 640;
        im->height = 480;
        im->first_box = d.n_boxes;
        int ng = 1 + (int)rng_below(&r, 14);
        for (int g = 0; g < ng; g++) {
            coco_box *b = &d.boxes[d.n_boxes++];
            float w = 8.f + 300.f * (float)rng_uniform(&r), h = 8.f + 300.f * (float)rng_uniform(&r);
            b->x1 = (float)(int)(rng_uniform(&r) * (double)(640 - w));
            b->y1 = (float)(int)(rng_uniform(&r) * (double)(480 - h));
            b->x2 = b->x1 + (float)(int)w;
            b->y2 = b->y1 + (float)(int)h;
            b->label = (int)rng_below(&r, (unsigned long long)n_cls);
            b->iscrowd = rng_uniform(&r) < 0.01;
            b->area = (double)(b->x2 - b->x1) * (double)(b->y2 - b->y1);
            b->ann_id = d.n_boxes;
        }
        im->n_boxes = ng;
        for (int j = 0; j < per_img; j++) {
            eval_det *e = &dets[nd++];
            e->image = m;
            if (j < ng && rng_uniform(&r) < 0.7) { /* a jittered true box */
                const coco_box *b = &d.boxes[im->first_box + j];
                float jx = 4.f * ((float)rng_uniform(&r) - 0.5f), jy = 4.f * ((float)rng_uniform(&r) - 0.5f);
                e->label = b->label;
                e->x1 = b->x1 + jx;
                e->y1 = b->y1 + jy;
                e->x2 = b->x2 + jx;
                e->y2 = b->y2 + jy;
                e->score = 0.5f + 0.5f * (float)rng_uniform(&r);
            } else {
                float w = 8.f + 200.f * (float)rng_uniform(&r), h = 8.f + 200.f * (float)rng_uniform(&r);
                e->label = (int)rng_below(&r, (unsigned long long)n_cls);
                e->x1 = (float)rng_uniform(&r) * (640 - w);
                e->y1 = (float)rng_uniform(&r) * (480 - h);
                e->x2 = e->x1 + w;
                e->y2 = e->y1 + h;
                e->score = 0.05f + 0.6f * (float)rng_uniform(&r);
            }
        }
    }
    printf("bench_eval: %d images, %d classes, %d gts, %d detections\n", n_img, n_cls, d.n_boxes, nd);
    double t0 = now();
    eval_voc_result v;
    if (eval_voc(&d, dets, nd, 0.5, EVAL_CROWD_ABSENT, &v) < 0) {
        fprintf(stderr, "bench_eval: %s\n", ote_errmsg());
        return 1;
    }
    double t1 = now();
    eval_coco_result c;
    if (eval_coco(&d, dets, nd, NULL, &c) < 0) {
        fprintf(stderr, "bench_eval: %s\n", ote_errmsg());
        return 1;
    }
    double t2 = now();
    printf("eval_voc:  %.3f s  (mAP@0.5 %.4f)\n", t1 - t0, (double)v.map);
    printf("eval_coco: %.3f s  (AP %.4f, AP50 %.4f)\n", t2 - t1, c.stats[0], c.stats[1]);
    eval_voc_result_free(&v);
    eval_coco_result_free(&c);
    free(d.images);
    free(d.cats);
    free(d.boxes);
    free(dets);
    return 0;
}

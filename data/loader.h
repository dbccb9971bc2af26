/* loader.h - batches of augmented images with pthread prefetching (train) or plain resizing (test).
 *
 * A data_loader reads images of a coco_dataset (which must outlive it), augments them (aug.h)
 * and packs batches: float NCHW RGB/255 images zero-padded at the bottom/right to the largest H and
 * W of the batch, rounded up to a multiple of 32, plus per-image metadata and boxes. With
 * n_workers > 0, that many pthreads (never OpenMP; OpenCV limited to one thread) build whole
 * batches ahead into a bounded ring of preallocated slots while the caller computes; with
 * n_workers = 0 the caller's thread builds each batch inside loader_next (same results).
 * Every sample's randomness derives from (seed, epoch, image index), and the per-epoch shuffle from
 * (seed, epoch), so prefetching gives exactly the batches of a synchronous run.
 * Memory: all batch slots, box arrays and per-worker scratch are allocated by loader_create
 * (scratch grows only while the largest image is met); no allocation per batch after warm-up
 * except OpenCV's decoder internals.
 */
#ifndef OTE_LOADER_H
#define OTE_LOADER_H

#include <stdint.h>

#include "data/aug.h"
#include "data/coco.h"

/* Largest batch a loader takes (templates and HPO values are checked against it when read). */
#define LOADER_MAX_BATCH 4096

typedef struct data_sample {
    int index;            /* image index in the dataset */
    int ori_w, ori_h;     /* decoded image size (test: divide boxes by scale to get back to it) */
    int crop[4];          /* MinIoU patch in original pixels (x1, y1, x2, y2); whole image if none */
    int img_w, img_h;     /* resized, unpadded size (mmdet img_shape = pad_shape) */
    float scale[4];       /* [w'/w, h'/h, w'/w, h'/h] float32, relative to the (cropped) image */
    int flip;
    int n_boxes;          /* non-crowd boxes after augmentation */
    float *boxes;         /* (n_boxes, 4) xyxy in the resized image; points into the slot */
    int *labels;          /* (n_boxes) contiguous class indices */
} data_sample;

typedef struct data_batch {
    int index;            /* batch number within the epoch */
    int n;                /* images in this batch (the last batch of an epoch may be smaller); with
                           * shards: this shard's images, possibly 0 (then h = w = 0) */
    int n_global;         /* images of the whole batch over every shard (= n without shards) */
    int h, w;             /* padded size: max over the batch, rounded up to 32 */
    float *images;        /* (n, 3, h, w) NCHW f32, x = RGB/255, zero padding bottom/right */
    data_sample *samples; /* n */
} data_batch;

typedef struct loader_config {
    int batch_size;       /* >= 1 */
    int n_workers;        /* prefetch threads; 0 = synchronous */
    int n_slots;          /* ready-batch ring size; 0 = n_workers + 1 */
    int shuffle;          /* 1: new permutation every epoch from (seed, epoch); 0: dataset order */
    uint64_t seed;
    aug_config aug;       /* aug_config_train_default / _train_sizes / _test */
    /* Data-parallel shards (0 and 0/1 = none): the batches, their order and every image's
     * augmentation stay those of the unsharded loader (same seed), and shard r of n_shards builds
     * only its share of each batch: with m images in the batch, m / n_shards each and one more for
     * the first m % n_shards shards, in batch order (shard 0 the first images). A shard of a batch
     * smaller than n_shards may be empty. */
    int shard, n_shards;
} loader_config;

typedef struct data_loader data_loader;

/* Training defaults: batch 8, shuffle, spec augmentation, n_workers as given. */
void loader_config_train(loader_config *c, int n_workers, uint64_t seed);
/* Test-time: batch 1, dataset order, resize to exactly (w, h). */
void loader_config_test(loader_config *c, int w, int h, int n_workers);

/* Creates the loader (threads started, idle). ds must outlive it. */
int loader_create(data_loader **out, const coco_dataset *ds, const loader_config *c);
/* Starts epoch `epoch` (waits for in-flight work of the previous one and discards it). */
int loader_start_epoch(data_loader *l, int epoch);
/* Shard r's share [*first, *first + *count) of a batch of m images (loader_config shards). */
void loader_shard_range(int m, int r, int n_shards, int *first, int *count);
/* Next batch of the current epoch in order: 1 = *out valid until the next loader_next /
 * loader_start_epoch / loader_free call, 0 = epoch finished, < 0 = error (a missing or corrupt
 * image: the message names the file; the epoch is then over). */
int loader_next(data_loader *l, const data_batch **out);
int loader_n_batches(const data_loader *l);
/* Image files that decoded but disappoint, each counted once over the loader's life: truncated
 * JPEG/PNG files (the decoder fills the rest) and files whose decoded size differs from the
 * annotation's width/height. One line into buf ("" if none); returns the count. */
int loader_image_warnings(data_loader *l, char *buf, size_t n);
void loader_free(data_loader *l);

#endif

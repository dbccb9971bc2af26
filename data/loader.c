/* loader.c - batching and pthread prefetching over aug.c (see loader.h).
 *
 * Owns: the batch slots (images, samples, box stores), the per-worker scratch (decoded image,
 * resized u8 buffer, box arrays), the epoch permutation and the threads.
 * Concurrency: one mutex guards the ring state (slot states, claim/consume counters, epoch
 * activity). Batch b always lives in slot b % n_slots; a worker claims the next batch only when
 * that slot is FREE, and the consumer takes batches strictly in order, so the output order never
 * depends on thread timing. A worker reads `order`/`epoch` without the lock: they change only in
 * loader_start_epoch after every BUSY slot has finished and claiming is off.
 */
#include "data/loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "engine/ote.h"

enum { SLOT_FREE = 0, SLOT_BUSY = 1, SLOT_READY = 2 };

typedef struct loader_slot {
    data_batch b;
    float *box_store; /* (batch_size, max_boxes, 4) */
    int *label_store; /* (batch_size, max_boxes) */
    int state;
    int batch_idx;
    int status;
    char err[1024];
} loader_slot;

typedef struct loader_worker {
    data_loader *l;
    image_u8 img;
    uint8_t *scratch; /* resized u8 image, max_out_w * max_out_h * 3 */
    float *boxes;     /* max_boxes * 4 */
    int *labels;
    aug_geom *geoms;  /* batch_size */
    pthread_t thread;
    int started;
} loader_worker;

struct data_loader {
    const coco_dataset *ds;
    loader_config cfg;
    int max_boxes;
    int max_out_w, max_out_h; /* largest configured size */
    int cap_w, cap_h;         /* ... rounded up to 32: slot capacity */
    int *order;
    int n_batches;
    int epoch;
    loader_slot *slots;
    int n_slots;
    loader_worker *workers;
    int n_workers; /* threads; workers[] has max(1, n_workers) entries */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    int next_claim, next_consume, held, active, stop;
    int started; /* loader_start_epoch was called at least once */
    /* images whose file disappoints (loader_image_warnings), each counted once */
    pthread_mutex_t note_mu;
    unsigned char *noted; /* per image: 1 truncated, 2 size differs from the annotation */
    int n_truncated, n_resized;
    char first_truncated[256], first_resized[320];
};

static void loader_note_image(data_loader *l, const coco_image *im, const image_u8 *img) {
    int idx = (int)(im - l->ds->images);
    pthread_mutex_lock(&l->note_mu);
    if (img->truncated && !(l->noted[idx] & 1)) {
        l->noted[idx] |= 1;
        if (!l->n_truncated++) snprintf(l->first_truncated, sizeof l->first_truncated, "%s", im->path);
    }
    if ((img->w != im->width || img->h != im->height) && !(l->noted[idx] & 2)) {
        l->noted[idx] |= 2;
        if (!l->n_resized++)
            snprintf(l->first_resized, sizeof l->first_resized, "%.200s: annotation %dx%d, file %dx%d", im->path,
                     im->width, im->height, img->w, img->h);
    }
    pthread_mutex_unlock(&l->note_mu);
}

int loader_image_warnings(data_loader *l, char *buf, size_t n) {
    pthread_mutex_lock(&l->note_mu);
    int k = 0;
    buf[0] = '\0';
    if (l->n_truncated)
        k += snprintf(buf + k, n - (size_t)k, "%d truncated image file(s), decoded with the missing part filled in "
                      "(first: %s)", l->n_truncated, l->first_truncated);
    if (l->n_resized && (size_t)k < n)
        k += snprintf(buf + k, n - (size_t)k, "%s%d image(s) whose size differs from the annotation's width/height, "
                      "boxes may be off (first: %s)", k ? "; " : "", l->n_resized, l->first_resized);
    int total = l->n_truncated + l->n_resized;
    pthread_mutex_unlock(&l->note_mu);
    return total;
}

static int loader_round32(int v) { return (v + 31) / 32 * 32; }

void loader_config_train(loader_config *c, int n_workers, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->batch_size = 8; /* spec: 8 images per GPU */
    c->n_workers = n_workers;
    c->shuffle = 1;
    c->seed = seed;
    aug_config_train_default(&c->aug);
}

void loader_config_test(loader_config *c, int w, int h, int n_workers) {
    memset(c, 0, sizeof *c);
    c->batch_size = 1;
    c->n_workers = n_workers;
    c->shuffle = 0;
    int st = aug_config_test(&c->aug, w, h);
    ASSERT(st == OTE_OK);
}

/* Builds batch b of the current epoch into slot s (any thread; the message stays thread-local). */
static int loader_build(loader_worker *w, loader_slot *s, int b) {
    data_loader *l = w->l;
    const coco_dataset *ds = l->ds;
    const loader_config *c = &l->cfg;
    int start = b * c->batch_size;
    int n = ds->n_images - start < c->batch_size ? ds->n_images - start : c->batch_size;
    int n_global = n, first = 0;
    if (c->n_shards > 1) loader_shard_range(n_global, c->shard, c->n_shards, &first, &n);
    start += first;
    int ph = 0, pw = 0;
    for (int i = 0; i < n; i++) {
        rng r;
        aug_rng(&r, c->seed, l->epoch, l->order[start + i], AUG_STREAM_GEOM);
        aug_draw_geom(&c->aug, &r, &w->geoms[i]);
        if (w->geoms[i].out_h > ph) ph = w->geoms[i].out_h;
        if (w->geoms[i].out_w > pw) pw = w->geoms[i].out_w;
    }
    ph = loader_round32(ph);
    pw = loader_round32(pw);
    ASSERT(ph <= l->cap_h && pw <= l->cap_w);
    data_batch *bt = &s->b;
    bt->index = b;
    bt->n = n;
    bt->n_global = n_global;
    bt->h = ph;
    bt->w = pw;
    for (int i = 0; i < n; i++) {
        int idx = l->order[start + i];
        const coco_image *im = &ds->images[idx];
        const aug_geom *g = &w->geoms[i];
        data_sample *sm = &bt->samples[i];
        int st = image_read_rgb(im->path, &w->img);
        if (st < 0) return ote_err_context(st, "loader: image %d (id %ld)", idx, im->id);
        if (w->img.truncated || w->img.w != im->width || w->img.h != im->height) loader_note_image(l, im, &w->img);
        int nb = 0;
        for (int k = 0; k < im->n_boxes; k++) {
            const coco_box *cb = &ds->boxes[im->first_box + k];
            if (cb->iscrowd) continue; /* crowd regions are never trained on (spec §6: dropped) */
            w->boxes[4 * nb] = cb->x1;
            w->boxes[4 * nb + 1] = cb->y1;
            w->boxes[4 * nb + 2] = cb->x2;
            w->boxes[4 * nb + 3] = cb->y2;
            w->labels[nb] = cb->label;
            nb++;
        }
        int patch[4] = {0, 0, w->img.w, w->img.h};
        if (c->aug.min_iou_crop) {
            rng r;
            aug_rng(&r, c->seed, l->epoch, idx, AUG_STREAM_CROP);
            if (aug_min_iou_crop(&r, w->img.w, w->img.h, w->boxes, nb, c->aug.min_crop_size, patch, NULL))
                nb = aug_crop_boxes(w->boxes, w->labels, nb, patch);
        }
        sm->index = idx;
        sm->ori_w = w->img.w;
        sm->ori_h = w->img.h;
        memcpy(sm->crop, patch, sizeof patch);
        sm->img_w = g->out_w;
        sm->img_h = g->out_h;
        sm->flip = g->flip;
        aug_scale_factor(patch[2] - patch[0], patch[3] - patch[1], g->out_w, g->out_h, sm->scale);
        aug_resize_boxes(w->boxes, nb, sm->scale, g->out_w, g->out_h);
        if (g->flip) aug_flip_boxes(w->boxes, nb, g->out_w);
        ASSERT(nb <= l->max_boxes);
        sm->n_boxes = nb;
        memcpy(sm->boxes, w->boxes, sizeof *w->boxes * 4 * (size_t)nb);
        memcpy(sm->labels, w->labels, sizeof *w->labels * (size_t)nb);
        float *dst = bt->images + (size_t)i * 3 * (size_t)ph * (size_t)pw;
        st = aug_render(w->img.data, w->img.w, w->img.h, patch, g->out_w, g->out_h, g->flip, w->scratch, dst, pw, ph);
        if (st < 0) return ote_err_context(st, "loader: %s", im->path);
    }
    return OTE_OK;
}

void loader_shard_range(int m, int r, int n_shards, int *first, int *count) {
    if (n_shards < 2) {
        *first = 0, *count = m;
        return;
    }
    int base = m / n_shards, extra = m % n_shards;
    *count = base + (r < extra);
    *first = r * base + (r < extra ? r : extra);
}

static void *loader_worker_main(void *arg) {
    loader_worker *w = arg;
    data_loader *l = w->l;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop &&
               !(l->active && l->next_claim < l->n_batches && l->slots[l->next_claim % l->n_slots].state == SLOT_FREE))
            pthread_cond_wait(&l->cv_work, &l->mu);
        if (l->stop) break;
        int b = l->next_claim++;
        loader_slot *s = &l->slots[b % l->n_slots];
        s->state = SLOT_BUSY;
        pthread_mutex_unlock(&l->mu);
        int st = loader_build(w, s, b);
        pthread_mutex_lock(&l->mu);
        s->status = st;
        if (st < 0) snprintf(s->err, sizeof s->err, "%s", ote_errmsg());
        s->batch_idx = b;
        s->state = SLOT_READY;
        pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void *loader_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

int loader_create(data_loader **out, const coco_dataset *ds, const loader_config *c) {
    *out = NULL;
    if (!ds || ds->n_images <= 0) return ote_err(OTE_EINVAL, "loader: empty dataset");
    if (c->batch_size < 1 || c->batch_size > LOADER_MAX_BATCH)
        return ote_err(OTE_EINVAL, "loader: batch_size %d out of range", c->batch_size);
    if (c->n_workers < 0 || c->n_workers > 64) return ote_err(OTE_EINVAL, "loader: n_workers %d out of range", c->n_workers);
    if (c->n_slots < 0 || c->n_slots > 256) return ote_err(OTE_EINVAL, "loader: n_slots %d out of range", c->n_slots);
    if (c->aug.n_sizes < 1 || c->aug.n_sizes > AUG_MAX_SIZES)
        return ote_err(OTE_EINVAL, "loader: augmentation has %d sizes", c->aug.n_sizes);
    if (c->n_shards < 0 || c->n_shards > LOADER_MAX_BATCH || c->shard < 0 || (c->n_shards > 1 && c->shard >= c->n_shards))
        return ote_err(OTE_EINVAL, "loader: shard %d of %d", c->shard, c->n_shards);
    if (c->n_shards > c->batch_size)
        return ote_err(OTE_EINVAL, "loader: batch_size %d is smaller than the %d shards (processes): every process "
                                   "needs at least one image of each batch", c->batch_size, c->n_shards);
    data_loader *l = calloc(1, sizeof *l);
    if (!l) return ote_err(OTE_ENOMEM, "loader: out of memory");
    l->ds = ds;
    l->cfg = *c;
    l->held = -1;
    l->n_batches = (ds->n_images + c->batch_size - 1) / c->batch_size;
    l->max_boxes = coco_max_boxes_per_image(ds, 1);
    if (l->max_boxes < 1) l->max_boxes = 1;
    for (int i = 0; i < c->aug.n_sizes; i++) {
        if (c->aug.sizes[i].w > l->max_out_w) l->max_out_w = c->aug.sizes[i].w;
        if (c->aug.sizes[i].h > l->max_out_h) l->max_out_h = c->aug.sizes[i].h;
    }
    l->cap_w = loader_round32(l->max_out_w);
    l->cap_h = loader_round32(l->max_out_h);
    l->n_workers = c->n_workers;
    l->n_slots = c->n_workers == 0 ? 1 : (c->n_slots ? c->n_slots : c->n_workers + 1);
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->note_mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    int nw = c->n_workers ? c->n_workers : 1;
    l->order = malloc(sizeof *l->order * (size_t)ds->n_images);
    l->noted = calloc((size_t)ds->n_images, 1);
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    l->workers = calloc((size_t)nw, sizeof *l->workers);
    if (!l->order || !l->slots || !l->workers || !l->noted) goto oom;
    for (int i = 0; i < ds->n_images; i++) l->order[i] = i;
    /* a shard holds at most its share of a full batch */
    size_t bs = (size_t)(c->n_shards > 1 ? (c->batch_size + c->n_shards - 1) / c->n_shards : c->batch_size);
    for (int k = 0; k < l->n_slots; k++) {
        loader_slot *s = &l->slots[k];
        s->b.images = loader_alloc(sizeof(float) * bs * 3 * (size_t)l->cap_h * (size_t)l->cap_w);
        s->b.samples = calloc(bs, sizeof *s->b.samples);
        s->box_store = malloc(sizeof(float) * 4 * bs * (size_t)l->max_boxes);
        s->label_store = malloc(sizeof(int) * bs * (size_t)l->max_boxes);
        if (!s->b.images || !s->b.samples || !s->box_store || !s->label_store) goto oom;
        for (size_t i = 0; i < bs; i++) {
            s->b.samples[i].boxes = s->box_store + 4 * i * (size_t)l->max_boxes;
            s->b.samples[i].labels = s->label_store + i * (size_t)l->max_boxes;
        }
    }
    for (int k = 0; k < nw; k++) {
        loader_worker *w = &l->workers[k];
        w->l = l;
        w->scratch = malloc((size_t)l->max_out_w * (size_t)l->max_out_h * 3);
        w->boxes = malloc(sizeof(float) * 4 * (size_t)l->max_boxes);
        w->labels = malloc(sizeof(int) * (size_t)l->max_boxes);
        w->geoms = malloc(sizeof(aug_geom) * bs);
        if (!w->scratch || !w->boxes || !w->labels || !w->geoms) goto oom;
    }
    for (int k = 0; k < c->n_workers; k++) {
        if (pthread_create(&l->workers[k].thread, NULL, loader_worker_main, &l->workers[k]) != 0) {
            loader_free(l);
            return ote_err(OTE_ENOMEM, "loader: cannot start prefetch thread %d", k);
        }
        l->workers[k].started = 1;
    }
    *out = l;
    return OTE_OK;
oom:;
    /* the message's figures are read before l is freed */
    int slots = l->n_slots, ch = l->cap_h, cw = l->cap_w;
    loader_free(l);
    return ote_err(OTE_ENOMEM, "loader: out of memory allocating %d batch slots of %d x 3 x %d x %d floats", slots,
                   c->batch_size, ch, cw);
}

int loader_n_batches(const data_loader *l) { return l->n_batches; }

int loader_start_epoch(data_loader *l, int epoch) {
    pthread_mutex_lock(&l->mu);
    l->active = 0;
    for (;;) {
        int busy = 0;
        for (int k = 0; k < l->n_slots; k++) busy |= l->slots[k].state == SLOT_BUSY;
        if (!busy) break;
        pthread_cond_wait(&l->cv_ready, &l->mu);
    }
    for (int k = 0; k < l->n_slots; k++) l->slots[k].state = SLOT_FREE;
    int n = l->ds->n_images;
    for (int i = 0; i < n; i++) l->order[i] = i;
    if (l->cfg.shuffle) {
        rng r;
        aug_rng(&r, l->cfg.seed, epoch, 0, AUG_STREAM_SHUFFLE);
        rng_shuffle_int(&r, l->order, n);
    }
    l->epoch = epoch;
    l->next_claim = 0;
    l->next_consume = 0;
    l->held = -1;
    l->active = 1;
    l->started = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return OTE_OK;
}

int loader_next(data_loader *l, const data_batch **out) {
    *out = NULL;
    if (l->n_workers == 0) {
        l->held = -1;
        if (!l->started) return ote_err(OTE_EINVAL, "loader: loader_next called before loader_start_epoch");
        if (l->next_consume >= l->n_batches) return 0;
        int b = l->next_consume++;
        int st = loader_build(&l->workers[0], &l->slots[0], b);
        if (st < 0) {
            l->next_consume = l->n_batches; /* the epoch ends at the first error */
            return st;
        }
        l->held = b;
        *out = &l->slots[0].b;
        return 1;
    }
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
        l->slots[l->held % l->n_slots].state = SLOT_FREE;
        l->held = -1;
        pthread_cond_broadcast(&l->cv_work);
    }
    if (!l->started) {
        pthread_mutex_unlock(&l->mu);
        return ote_err(OTE_EINVAL, "loader: loader_next called before loader_start_epoch");
    }
    if (l->next_consume >= l->n_batches) {
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    loader_slot *s = &l->slots[l->next_consume % l->n_slots];
    while (!(s->state == SLOT_READY && s->batch_idx == l->next_consume)) pthread_cond_wait(&l->cv_ready, &l->mu);
    if (s->status < 0) {
        int st = s->status;
        char msg[sizeof s->err];
        memcpy(msg, s->err, sizeof msg);
        s->state = SLOT_FREE;
        l->active = 0; /* stop claiming: the epoch ends at the first error */
        l->next_consume = l->n_batches;
        pthread_cond_broadcast(&l->cv_work);
        pthread_mutex_unlock(&l->mu);
        return ote_err(st, "%s", msg);
    }
    l->held = l->next_consume++;
    pthread_mutex_unlock(&l->mu);
    *out = &s->b;
    return 1;
}

void loader_free(data_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    int nw = l->n_workers ? l->n_workers : 1;
    if (l->workers) {
        for (int k = 0; k < l->n_workers; k++)
            if (l->workers[k].started) pthread_join(l->workers[k].thread, NULL);
        for (int k = 0; k < nw; k++) {
            loader_worker *w = &l->workers[k];
            image_u8_free(&w->img);
            free(w->scratch);
            free(w->boxes);
            free(w->labels);
            free(w->geoms);
        }
    }
    if (l->slots) {
        for (int k = 0; k < l->n_slots; k++) {
            free(l->slots[k].b.images);
            free(l->slots[k].b.samples);
            free(l->slots[k].box_store);
            free(l->slots[k].label_store);
        }
    }
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_ready);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->note_mu);
    free(l->noted);
    free(l->order);
    free(l->slots);
    free(l->workers);
    free(l);
}

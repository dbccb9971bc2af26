/* test_data_loader.c - batching, padding, epoch coverage, prefetch == synchronous, test-time
 * loader, and bad images surfacing as errors through the worker threads.
 *
 * Uses a seeded 13-image subset of the face-mask set at small sizes so it runs in about a second.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/coco.h"
#include "data/image.h"
#include "data/loader.h"
#include "engine/ote.h"
#include "tests/expect.h"



static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ULL;
    return h;
}

static uint64_t batch_hash(const data_batch *b) {
    uint64_t h = 1469598103934665603ULL;
    h = fnv(h, &b->n, sizeof b->n);
    h = fnv(h, &b->h, sizeof b->h);
    h = fnv(h, &b->w, sizeof b->w);
    h = fnv(h, b->images, sizeof(float) * 3 * (size_t)b->n * (size_t)b->h * (size_t)b->w);
    for (int i = 0; i < b->n; i++) {
        const data_sample *s = &b->samples[i];
        h = fnv(h, &s->index, sizeof s->index);
        h = fnv(h, s->crop, sizeof s->crop);
        h = fnv(h, &s->img_w, sizeof s->img_w);
        h = fnv(h, &s->img_h, sizeof s->img_h);
        h = fnv(h, s->scale, sizeof s->scale);
        h = fnv(h, &s->flip, sizeof s->flip);
        h = fnv(h, &s->n_boxes, sizeof s->n_boxes);
        h = fnv(h, s->boxes, sizeof(float) * 4 * (size_t)s->n_boxes);
        h = fnv(h, s->labels, sizeof(int) * (size_t)s->n_boxes);
    }
    return h;
}

typedef struct epoch_run {
    uint64_t hash[64];
    int n_batches;
    int seen[64];
    int order[64];
    int n_seen;
    int bad_pad, bad_size, bad_boxes, bad_n;
    int status;
} epoch_run;

static void run_epoch(data_loader *l, const loader_config *c, const coco_dataset *ds, int epoch, epoch_run *r) {
    memset(r, 0, sizeof *r);
    r->status = loader_start_epoch(l, epoch);
    const data_batch *b;
    int st;
    while ((st = loader_next(l, &b)) == 1) {
        if (r->n_batches < 64) r->hash[r->n_batches] = batch_hash(b);
        int expect_n = ds->n_images - r->n_batches * c->batch_size;
        if (expect_n > c->batch_size) expect_n = c->batch_size;
        r->bad_n += b->n != expect_n || b->index != r->n_batches;
        r->n_batches++;
        int mh = 0, mw = 0;
        for (int i = 0; i < b->n; i++) {
            const data_sample *s = &b->samples[i];
            if (s->index >= 0 && s->index < 64) r->seen[s->index]++;
            if (r->n_seen < 64) r->order[r->n_seen++] = s->index;
            int size_ok = 0;
            for (int k = 0; k < c->aug.n_sizes; k++)
                size_ok |= s->img_w == c->aug.sizes[k].w && s->img_h == c->aug.sizes[k].h;
            r->bad_size += !size_ok;
            if (s->img_h > mh) mh = s->img_h;
            if (s->img_w > mw) mw = s->img_w;
            /* padding is zero in every channel */
            for (int ch = 0; ch < 3; ch++) {
                const float *pl = b->images + ((size_t)i * 3 + ch) * (size_t)b->h * (size_t)b->w;
                for (int y = 0; y < b->h; y++)
                    for (int x = 0; x < b->w; x++)
                        if ((x >= s->img_w || y >= s->img_h) && pl[(size_t)y * b->w + x] != 0.0f) r->bad_pad++;
            }
            for (int k = 0; k < s->n_boxes; k++) {
                const float *bx = s->boxes + 4 * k;
                if (!(bx[0] >= 0 && bx[1] >= 0 && bx[2] <= s->img_w && bx[3] <= s->img_h && bx[0] <= bx[2] &&
                      bx[1] <= bx[3] && s->labels[k] >= 0 && s->labels[k] < ds->n_cats))
                    r->bad_boxes++;
            }
        }
        if (b->h != (mh + 31) / 32 * 32 || b->w != (mw + 31) / 32 * 32 || b->h % 32 || b->w % 32) r->bad_pad++;
    }
    if (st < 0) r->status = st;
}

static void test_train_loader(const coco_dataset *ds) {
    loader_config c;
    loader_config_train(&c, 0, 1234);
    aug_size sizes[3] = {{320, 320}, {288, 256}, {200, 150}};
    EXPECT(aug_config_train_sizes(&c.aug, sizes, 3) == 0, "train sizes 320x320, 288x256, 200x150");
    c.batch_size = 4;
    data_loader *sync = NULL, *pre = NULL, *pre1 = NULL;
    int st = loader_create(&sync, ds, &c);
    EXPECT(st == 0, "synchronous loader created (%s)", ote_errmsg());
    if (st) return;
    const data_batch *b;
    EXPECT(loader_next(sync, &b) == OTE_EINVAL, "loader_next before loader_start_epoch -> EINVAL");
    EXPECT(loader_n_batches(sync) == (ds->n_images + 3) / 4, "%d images / batch 4 -> %d batches", ds->n_images,
           loader_n_batches(sync));
    epoch_run s0, s1, p0, p1, q0, s0b;
    run_epoch(sync, &c, ds, 0, &s0);
    run_epoch(sync, &c, ds, 1, &s1);
    EXPECT(s0.status == 0 && s0.n_batches == loader_n_batches(sync), "epoch 0: %d batches, status %d", s0.n_batches,
           s0.status);
    int once = 1;
    for (int i = 0; i < ds->n_images; i++) once &= s0.seen[i] == 1 && s1.seen[i] == 1;
    EXPECT(once && s0.n_seen == ds->n_images, "every image seen exactly once per epoch (epochs 0 and 1)");
    EXPECT(s0.bad_n == 0, "full batches of 4, last one smaller");
    EXPECT(s0.bad_pad == 0 && s1.bad_pad == 0, "batch H, W = max over the batch rounded up to 32; padding zero");
    EXPECT(s0.bad_size == 0, "every image resized to one of the configured sizes");
    EXPECT(s0.bad_boxes == 0 && s1.bad_boxes == 0, "boxes inside their resized image, labels valid");
    EXPECT(memcmp(s0.order, s1.order, sizeof(int) * (size_t)ds->n_images) != 0, "epochs are shuffled differently");
    int shuffled = 0;
    for (int i = 0; i < ds->n_images; i++) shuffled |= s0.order[i] != i;
    EXPECT(shuffled, "epoch order is not the dataset order");
    run_epoch(sync, &c, ds, 0, &s0b);
    EXPECT(memcmp(s0.hash, s0b.hash, sizeof s0.hash) == 0, "epoch 0 again: identical batches (deterministic)");

    loader_config cp = c;
    cp.n_workers = 2;
    st = loader_create(&pre, ds, &cp);
    loader_config c1 = c;
    c1.n_workers = 1;
    c1.n_slots = 3;
    int st1 = loader_create(&pre1, ds, &c1);
    EXPECT(st == 0 && st1 == 0, "prefetching loaders created (2 workers; 1 worker with 3 slots)");
    if (st == 0 && st1 == 0) {
        run_epoch(pre, &cp, ds, 0, &p0);
        run_epoch(pre, &cp, ds, 1, &p1);
        run_epoch(pre1, &c1, ds, 1, &q0);
        EXPECT(p0.n_batches == s0.n_batches && memcmp(p0.hash, s0.hash, sizeof s0.hash) == 0,
               "2-worker prefetch epoch 0 == synchronous run (all pixels, boxes, metadata)");
        EXPECT(memcmp(p1.hash, s1.hash, sizeof s1.hash) == 0, "2-worker prefetch epoch 1 == synchronous run");
        EXPECT(memcmp(q0.hash, s1.hash, sizeof s1.hash) == 0, "1-worker, 3-slot prefetch == synchronous run");
        /* abandon an epoch half way, restart: no deadlock, same batches */
        loader_start_epoch(pre, 0);
        loader_next(pre, &b);
        epoch_run p0b;
        run_epoch(pre, &cp, ds, 0, &p0b);
        EXPECT(memcmp(p0b.hash, s0.hash, sizeof s0.hash) == 0, "restarting an epoch mid-way gives the same batches");
    }
    loader_free(pre1);
    loader_free(pre);
    loader_free(sync);

    loader_config c2 = c;
    c2.seed = 99;
    data_loader *other = NULL;
    if (loader_create(&other, ds, &c2) == 0) {
        epoch_run o0;
        run_epoch(other, &c2, ds, 0, &o0);
        EXPECT(memcmp(o0.hash, s0.hash, sizeof s0.hash) != 0, "another seed gives other batches");
        loader_free(other);
    }
}

static void test_test_loader(coco_dataset *ds) {
    /* mark one box crowd: training must skip it */
    int crowd_img = -1;
    for (int i = 0; i < ds->n_images && crowd_img < 0; i++)
        if (ds->images[i].n_boxes >= 2) crowd_img = i;
    if (crowd_img >= 0) ds->boxes[ds->images[crowd_img].first_box].iscrowd = 1;
    loader_config c;
    loader_config_test(&c, 320, 256, 1);
    data_loader *l = NULL;
    int st = loader_create(&l, ds, &c);
    EXPECT(st == 0, "test loader created");
    if (st) return;
    loader_start_epoch(l, 0);
    const data_batch *b;
    int k = 0, order_ok = 1, meta_ok = 1, box_ok = 1, crowd_ok = 1, pix_ok = 1;
    double max_box_err = 0;
    while (loader_next(l, &b) == 1) {
        const data_sample *s = &b->samples[0];
        const coco_image *im = &ds->images[s->index];
        order_ok &= b->n == 1 && s->index == k;
        meta_ok &= b->h == 256 && b->w == 320 && s->img_w == 320 && s->img_h == 256 && s->flip == 0 &&
                   s->ori_w == im->width && s->ori_h == im->height && s->crop[0] == 0 && s->crop[1] == 0 &&
                   s->crop[2] == im->width && s->crop[3] == im->height &&
                   s->scale[0] == (float)(320.0 / im->width) && s->scale[1] == (float)(256.0 / im->height);
        int j = 0;
        for (int q = 0; q < im->n_boxes; q++) {
            const coco_box *cb = &ds->boxes[im->first_box + q];
            if (cb->iscrowd) continue;
            if (j >= s->n_boxes) {
                box_ok = 0;
                break;
            }
            const float *o = s->boxes + 4 * j;
            double e = fmax(fmax(fabs(o[0] / s->scale[0] - cb->x1), fabs(o[2] / s->scale[2] - cb->x2)),
                            fmax(fabs(o[1] / s->scale[1] - cb->y1), fabs(o[3] / s->scale[3] - cb->y2)));
            if (e > max_box_err) max_box_err = e;
            box_ok &= s->labels[j] == cb->label;
            j++;
        }
        box_ok &= j == s->n_boxes;
        if (s->index == crowd_img) crowd_ok = s->n_boxes == im->n_boxes - 1;
        double sum = 0;
        for (size_t p = 0; p < (size_t)3 * 256 * 320; p++) {
            float v = b->images[p];
            if (!(v >= 0 && v <= 1)) pix_ok = 0;
            sum += (double)v;
        }
        pix_ok &= sum > 0;
        k++;
    }
    EXPECT(k == ds->n_images && order_ok, "test loader: batch 1, dataset order, %d images", k);
    EXPECT(meta_ok, "test loader: resized to exactly 320x256, no crop/flip, original size and scale kept");
    /* boxes divided by the scale factor come back to the original within float32 rounding */
    EXPECT(box_ok && max_box_err < 1e-3, "boxes / scale == original boxes (max err %.2e px, tol 1e-3)", max_box_err);
    EXPECT(crowd_img >= 0 && crowd_ok, "crowd box excluded from the batch boxes");
    EXPECT(pix_ok, "pixels in [0,1], image not blank");
    loader_free(l);
    if (crowd_img >= 0) ds->boxes[ds->images[crowd_img].first_box].iscrowd = 0;
}

static void test_bad_images(void) {
    char dir[] = "/tmp/ote_test_loader_XXXXXX";
    if (!mkdtemp(dir)) {
        EXPECT(0, "mkdtemp");
        return;
    }
    char p[400];
    uint8_t px[16 * 12 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 13);
    snprintf(p, sizeof p, "%s/good.png", dir);
    image_write_rgb(p, px, 16, 12);
    snprintf(p, sizeof p, "%s/corrupt.jpg", dir);
    FILE *f = fopen(p, "wb");
    fputs("this is not a jpeg at all, just text pretending", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/ann.json", dir);
    f = fopen(p, "wb");
    fputs("{\"images\":[{\"id\":1,\"file_name\":\"good.png\",\"width\":16,\"height\":12},"
          "{\"id\":2,\"file_name\":\"missing.png\",\"width\":16,\"height\":12},"
          "{\"id\":3,\"file_name\":\"good.png\",\"width\":16,\"height\":12},"
          "{\"id\":4,\"file_name\":\"corrupt.jpg\",\"width\":16,\"height\":12}],"
          "\"categories\":[{\"id\":1,\"name\":\"a\"}],"
          "\"annotations\":[{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[2,2,5,5]}]}",
          f);
    fclose(f);
    coco_dataset ds;
    int st = coco_load(&ds, p, dir);
    EXPECT(st == 0, "temp dataset with a missing and a corrupt image loads (pixels are read later)");
    if (st) return;
    for (int nw = 0; nw <= 2; nw += 2) {
        loader_config c;
        loader_config_test(&c, 32, 32, nw);
        data_loader *l = NULL;
        if (loader_create(&l, &ds, &c) != 0) {
            EXPECT(0, "create");
            continue;
        }
        loader_start_epoch(l, 0);
        const data_batch *b;
        int a = loader_next(l, &b);
        int e = loader_next(l, &b);
        char msg[1100];
        snprintf(msg, sizeof msg, "%s", ote_errmsg());
        int after = loader_next(l, &b);
        EXPECT(a == 1 && e == OTE_EIO && strstr(msg, "missing.png") && after == 0,
               "%d workers: missing image -> EIO naming the file, then the epoch ends: %s", nw, msg);
        /* a new epoch after the error: image 0 loads again, image 1 fails again */
        loader_start_epoch(l, 1);
        int codes[4], k = 0;
        for (k = 0; k < 4; k++) {
            codes[k] = loader_next(l, &b);
            if (codes[k] != 1) break;
        }
        EXPECT(k == 1 && codes[1] == OTE_EIO, "%d workers: a new epoch restarts cleanly after an error", nw);
        loader_free(l);
    }
    /* the corrupt image alone */
    coco_dataset one;
    memset(&one, 0, sizeof one);
    one = ds;
    one.images = ds.images + 3;
    one.n_images = 1;
    one.n_boxes = 0;
    for (int nw = 0; nw <= 1; nw++) {
        loader_config c;
        loader_config_test(&c, 32, 32, nw);
        data_loader *l = NULL;
        if (loader_create(&l, &one, &c) != 0) continue;
        loader_start_epoch(l, 0);
        const data_batch *b;
        int e = loader_next(l, &b);
        EXPECT(e == OTE_EPARSE && strstr(ote_errmsg(), "corrupt.jpg"), "%d workers: corrupt image -> EPARSE: %s", nw,
               ote_errmsg());
        loader_free(l);
    }
    coco_free(&ds);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
}

/* Under ASan an allocation that cannot be served must return NULL, as malloc does (issue 13 item 1:
 * the out-of-memory path read the loader after freeing it). Ignored without ASan. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* A loader too large for memory fails cleanly: OTE_ENOMEM, a message with the real slot count and
 * batch size (read before the loader is freed). */
static void test_out_of_memory(const coco_dataset *ds) {
    loader_config c;
    loader_config_train(&c, 2, 1);
    aug_size sizes[1] = {{4096, 4096}};
    EXPECT(aug_config_train_sizes(&c.aug, sizes, 1) == 0, "train size 4096x4096");
    c.batch_size = 512; /* 3 slots x 512 x 3 x 4096 x 4096 floats = 309 GB */
    data_loader *l = NULL;
    int st = loader_create(&l, ds, &c);
    EXPECT(st == OTE_ENOMEM && l == NULL, "4096x4096 x batch 512: OTE_ENOMEM, no loader (got %d)", st);
    EXPECT(strstr(ote_errmsg(), "3 batch slots of 512 x 3 x 4096 x 4096 floats") != NULL,
           "message names the real slot count and sizes: %s", ote_errmsg());
}

/* Data-parallel shards (loader_config shard / n_shards): the 3 shards of every batch are the
 * unsharded batch's images in order (same samples, same pixels: each image keeps its augmentation).
 * 13 images in batches of 5: shares 2, 2, 1 of the full batches, 1, 1, 1 of the last one (3). */
static void test_shards(const coco_dataset *ds) {
    loader_config c;
    loader_config_train(&c, 0, 11);
    c.batch_size = 5;
    data_loader *whole = NULL, *sh[3] = {NULL, NULL, NULL};
    REQUIRE_OK(loader_create(&whole, ds, &c));
    for (int r = 0; r < 3; r++) {
        loader_config cs = c;
        cs.shard = r, cs.n_shards = 3;
        REQUIRE_OK(loader_create(&sh[r], ds, &cs));
        REQUIRE_OK(loader_start_epoch(sh[r], 2));
    }
    REQUIRE_OK(loader_start_epoch(whole, 2));
    int batches = 0, bad_n = 0, bad_idx = 0, bad_pix = 0, counts_ok = 1;
    const data_batch *b;
    while (loader_next(whole, &b) == 1) {
        int off = 0;
        for (int r = 0; r < 3; r++) {
            const data_batch *p;
            if (loader_next(sh[r], &p) != 1) {
                bad_n++;
                continue;
            }
            int first, cnt;
            loader_shard_range(b->n, r, 3, &first, &cnt);
            bad_n += p->n != cnt || p->n_global != b->n || first != off;
            if (batches == 0) counts_ok &= p->n == (r < 2 ? 2 : 1);
            for (int i = 0; i < p->n && off + i < b->n; i++) {
                const data_sample *x = &p->samples[i], *y = &b->samples[off + i];
                bad_idx += x->index != y->index || x->img_w != y->img_w || x->img_h != y->img_h ||
                           x->n_boxes != y->n_boxes || x->flip != y->flip;
                /* the image's own pixels (padding may differ: each shard pads to its own max) */
                for (int ch = 0; ch < 3; ch++)
                    for (int yy = 0; yy < x->img_h; yy++)
                        bad_pix += memcmp(p->images + (((size_t)i * 3 + ch) * p->h + yy) * p->w,
                                          b->images + (((size_t)(off + i) * 3 + ch) * b->h + yy) * b->w,
                                          sizeof(float) * (size_t)x->img_w) != 0;
            }
            off += p->n;
        }
        bad_n += off != b->n;
        batches++;
    }
    for (int r = 0; r < 3; r++) bad_n += loader_next(sh[r], &b) != 0;
    EXPECT(batches == 3 && bad_n == 0, "3 shards: the same %d batches, shares from loader_shard_range (%d mismatches)",
           batches, bad_n);
    EXPECT(counts_ok, "batch of 5 over 3 shards: 2, 2, 1 images");
    EXPECT(bad_idx == 0 && bad_pix == 0, "shard images = the unsharded batch's, in order (%d sample, %d row mismatches)",
           bad_idx, bad_pix);
    loader_config cs = c;
    cs.batch_size = 2, cs.shard = 0, cs.n_shards = 3;
    data_loader *l = NULL;
    EXPECT(loader_create(&l, ds, &cs) == OTE_EINVAL && !l && strstr(ote_errmsg(), "smaller than the 3 shards"),
           "batch 2 over 3 shards refused: %s", ote_errmsg());
    loader_free(whole);
    for (int r = 0; r < 3; r++) loader_free(sh[r]);
}

int main(void) {
    const char *shared = getenv("OTE_SHARED");
    if (!shared) shared = "../shared";
    char ann[512], root[512];
    snprintf(ann, sizeof ann, "%s/data/facemask_coco/annotations/custom_val.json", shared);
    snprintf(root, sizeof root, "%s/data/facemask_coco/val2017", shared);
    coco_dataset full, ds;
    int st = coco_load(&full, ann, root);
    EXPECT(st == 0, "face-mask val loads (%s)", ote_errmsg());
    if (st) return 1;
    st = coco_subset(&ds, &full, 13, 5);
    EXPECT(st == 0 && ds.n_images == 13, "13-image seeded subset");
    coco_free(&full);
    if (st) return 1;
    test_train_loader(&ds);
    test_test_loader(&ds);
    test_bad_images();
    test_out_of_memory(&ds);
    test_shards(&ds);
    coco_free(&ds);
    return expect_finish();
}

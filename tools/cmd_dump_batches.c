/* cmd_dump_batches.c - `ote dump-batches` (benchmark helper): streams the exact batches the trainer
 * would feed the detector (same loader, seed, batch size, training sizes, shuffles, augmentation),
 * or the test-time batches of a validation set, as a simple binary stream. The PyTorch side of
 * bench/learning_check.sh trains on this stream, so both trainers see identical data.
 *
 *   ote dump-batches TEMPLATE --ann-files A --data-roots D (--loader-epochs K | --test)
 *                    [--out FILE] [params ...]
 *
 * Stream (little-endian): "OTEB" then per batch: int32 n, h, w (n = 0 ends the stream); per image
 * int32 index, img_h, img_w, n_boxes, float32 scale[4]; then per image float32 boxes[n_boxes][4]
 * and int32 labels[n_boxes]; then uint8 pixels (n, 3, h, w) = round(x * 255) (exact: the loader
 * resizes 8-bit images and multiplies by 1/255; padding is 0). Training epochs are the loader's
 * epochs 0..K-1 (the trainer runs loader epoch e*repeat + r for epoch e, repeat r).
 * Exit codes: 0 ok, 1 runtime error, 2 usage error. Owns nothing beyond one call.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/coco.h"
#include "data/loader.h"
#include "engine/ote.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/trainer.h"

static int cmd_dump_batches_write(FILE *f, const data_batch *b, uint8_t *px) {
    int32_t hdr[3] = {b->n, b->h, b->w};
    fwrite(hdr, sizeof hdr, 1, f);
    for (int i = 0; i < b->n; i++) {
        const data_sample *s = &b->samples[i];
        int32_t m[4] = {s->index, s->img_h, s->img_w, s->n_boxes};
        fwrite(m, sizeof m, 1, f);
        fwrite(s->scale, sizeof(float), 4, f);
    }
    for (int i = 0; i < b->n; i++) {
        const data_sample *s = &b->samples[i];
        if (s->n_boxes) {
            fwrite(s->boxes, sizeof(float), (size_t)s->n_boxes * 4, f);
            fwrite(s->labels, sizeof(int32_t), (size_t)s->n_boxes, f);
        }
    }
    size_t np = (size_t)b->n * 3 * b->h * b->w;
    for (size_t k = 0; k < np; k++) {
        float v = b->images[k] * 255.0f;
        px[k] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : lrintf(v));
    }
    return fwrite(px, 1, np, f) == np ? 0 : ote_err(OTE_EIO, "dump-batches: write failed");
}

int cmd_dump_batches(int argc, char **argv) {
    const char *tpl = NULL, *ann = NULL, *roots = NULL, *out = "-";
    int epochs = 0, test = 0, params_at = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            printf("usage: ote dump-batches TEMPLATE --ann-files A --data-roots D (--loader-epochs K | --test)\n"
                   "                        [--out FILE] [params ...]\n"
                   "(benchmark helper) streams the trainer's batches; see tools/cmd_dump_batches.c\n");
            return 0;
        }
        if (!strcmp(o, "params")) {
            params_at = i;
            break;
        }
        if (!strcmp(o, "--test")) {
            test = 1;
            continue;
        }
        if (o[0] != '-') {
            tpl = o;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ote dump-batches: option %s needs a value\n", o);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(o, "--ann-files")) ann = v;
        else if (!strcmp(o, "--data-roots")) roots = v;
        else if (!strcmp(o, "--out")) out = v;
        else if (!strcmp(o, "--loader-epochs")) epochs = atoi(v);
        else {
            fprintf(stderr, "ote dump-batches: unknown option '%s'\n", o);
            return 2;
        }
    }
    if (!tpl || !ann || !roots || (!test && epochs < 1)) {
        fprintf(stderr, "ote dump-batches: needs TEMPLATE, --ann-files, --data-roots and --loader-epochs K or --test\n");
        return 2;
    }
    config_template cfg;
    if (config_load(&cfg, tpl) < 0 ||
        (params_at && config_apply_params(&cfg, argc - params_at - 1, argv + params_at + 1) < 0)) {
        fprintf(stderr, "ote dump-batches: %s\n", ote_errmsg());
        return 2;
    }
    coco_dataset ds;
    if (coco_load(&ds, ann, roots) < 0) {
        fprintf(stderr, "ote dump-batches: %s\n", ote_errmsg());
        return 1;
    }
    /* exactly the trainer's loaders */
    loader_config lc;
    int s = 0;
    if (test) {
        trainer_val_loader_config(&cfg, &lc);
        epochs = 1;
    } else {
        aug_size sizes[5];
        s = trainer_train_loader_config(&cfg, &lc, sizes);
    }
    data_loader *l = NULL;
    if (s >= 0) s = loader_create(&l, &ds, &lc);
    FILE *f = strcmp(out, "-") ? fopen(out, "wb") : stdout;
    uint8_t *px = NULL;
    size_t px_cap = 0;
    if (!f) s = ote_err(OTE_EIO, "dump-batches: cannot write %s", out);
    if (s >= 0) fwrite("OTEB", 1, 4, f);
    for (int e = 0; e < epochs && s >= 0; e++) {
        s = loader_start_epoch(l, e);
        const data_batch *b;
        while (s >= 0 && (s = loader_next(l, &b)) == 1) {
            size_t np = (size_t)b->n * 3 * b->h * b->w;
            if (np > px_cap) {
                free(px);
                px = malloc(np);
                px_cap = px ? np : 0;
                if (!px) s = ote_err(OTE_ENOMEM, "dump-batches: out of memory");
            }
            if (s >= 0) s = cmd_dump_batches_write(f, b, px);
        }
    }
    if (s >= 0) {
        int32_t end[3] = {0, 0, 0};
        fwrite(end, sizeof end, 1, f);
    }
    if (f && f != stdout) fclose(f);
    else if (f) fflush(f);
    free(px);
    loader_free(l);
    coco_free(&ds);
    if (s < 0) {
        fprintf(stderr, "ote dump-batches: %s\n", ote_errmsg());
        return 1;
    }
    return 0;
}

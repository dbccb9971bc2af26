/* eval_results.c - COCO results files (a JSON list of {image_id, category_id, bbox, score}):
 * reading them into eval_dets against a ground-truth dataset, and writing them as mmdet does.
 *
 * Also writes the scores of a run (eval_save_performance) for `ote eval --save-performance`.
 * Reading validates every entry and reports the first problem as one line naming the file and
 * the entry index. Writing goes through io/atomic.h (a temporary file in the same directory,
 * fsync, rename), so a crash never leaves a half-written results file. Owns nothing between calls.
 */
#include "data/eval.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"
#include "io/atomic.h"

typedef struct res_id {
    long id;
    int pos;
} res_id;

static int res_id_cmp(const void *pa, const void *pb) {
    const res_id *a = pa, *b = pb;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* Position of `id` in a sorted table, -1 if absent, -2 if it occurs more than once. */
static int res_find(const res_id *t, int n, long id) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (t[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= n || t[lo].id != id) return -1;
    if (lo + 1 < n && t[lo + 1].id == id) return -2;
    return t[lo].pos;
}

static int read_whole(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return ote_err(OTE_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    if (!b) {
        fclose(f);
        return ote_err(OTE_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *nb = cap * 2 > cap ? realloc(b, cap * 2 + 1) : NULL;
        if (!nb) {
            free(b);
            fclose(f);
            return ote_err(OTE_ENOMEM, "%s: out of memory", path);
        }
        b = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(b);
        return ote_err(OTE_EIO, "%s: read error", path);
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return OTE_OK;
}

static int get_integer(const cJSON *o, const char *key, long *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x)) return 0;
    double d = x->valuedouble;
    if (!(d == floor(d)) || fabs(d) > 9007199254740992.0) return 0;
    *v = (long)d;
    return 1;
}

int eval_load_results(const char *path, const coco_dataset *gt, eval_dets *out) {
    char *text = NULL;
    size_t len = 0;
    CHECK(read_whole(path, &text, &len));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        int line = 1, col = 1;
        const char *stop = end && end >= text && end <= text + len ? end : text + len;
        for (const char *p = text; p < stop; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        free(text);
        return ote_err(OTE_EPARSE, "%s: malformed JSON near line %d column %d", path, line, col);
    }
    free(text);
    int s = OTE_OK;
    res_id *imgs = malloc(((size_t)gt->n_images + 1) * sizeof *imgs);
    res_id *cats = malloc(((size_t)gt->n_cats + 1) * sizeof *cats);
    if (!imgs || !cats) {
        s = ote_err(OTE_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int m = 0; m < gt->n_images; m++) imgs[m] = (res_id){gt->images[m].id, m};
    for (int k = 0; k < gt->n_cats; k++) cats[k] = (res_id){gt->cats[k].id, k};
    qsort(imgs, (size_t)gt->n_images, sizeof *imgs, res_id_cmp);
    qsort(cats, (size_t)gt->n_cats, sizeof *cats, res_id_cmp);
    if (!cJSON_IsArray(root)) {
        s = ote_err(OTE_EPARSE, "%s: expected a JSON list of detections at the top level", path);
        goto done;
    }
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        long image_id, cat_id;
        if (!cJSON_IsObject(e)) {
            s = ote_err(OTE_EPARSE, "%s: entry %d: expected an object", path, i);
            goto done;
        }
        if (!get_integer(e, "image_id", &image_id)) {
            s = ote_err(OTE_EPARSE, "%s: entry %d: image_id missing or not an integer", path, i);
            goto done;
        }
        if (!get_integer(e, "category_id", &cat_id)) {
            s = ote_err(OTE_EPARSE, "%s: entry %d: category_id missing or not an integer", path, i);
            goto done;
        }
        const cJSON *bb = cJSON_GetObjectItemCaseSensitive(e, "bbox");
        double v[4];
        int nb = 0;
        if (cJSON_IsArray(bb) && cJSON_GetArraySize(bb) == 4) {
            const cJSON *x;
            cJSON_ArrayForEach(x, bb) {
                if (!cJSON_IsNumber(x)) break;
                v[nb++] = x->valuedouble;
            }
        }
        if (nb != 4) {
            s = ote_err(OTE_EPARSE, "%s: entry %d: bbox missing or not a list of 4 numbers", path, i);
            goto done;
        }
        if (!isfinite(v[0]) || !isfinite(v[1]) || !isfinite(v[2]) || !isfinite(v[3]) || v[2] < 0 ||
            v[3] < 0) {
            s = ote_err(OTE_EPARSE, "%s: entry %d: bbox [%g, %g, %g, %g]: need finite x, y and w, h >= 0",
                        path, i, v[0], v[1], v[2], v[3]);
            goto done;
        }
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(e, "score");
        if (!cJSON_IsNumber(sc) || !isfinite(sc->valuedouble)) {
            s = ote_err(OTE_EPARSE, "%s: entry %d: score missing or not a finite number", path, i);
            goto done;
        }
        int m = res_find(imgs, gt->n_images, image_id);
        if (m == -1) {
            s = ote_err(OTE_EPARSE, "%s: entry %d: image_id %ld is not in the ground truth", path, i,
                        image_id);
            goto done;
        }
        if (m == -2) {
            s = ote_err(OTE_EPARSE, "%s: entry %d: image_id %ld is ambiguous (several ground-truth images share it)",
                        path, i, image_id);
            goto done;
        }
        int k = res_find(cats, gt->n_cats, cat_id);
        if (k < 0) {
            s = ote_err(OTE_EPARSE, "%s: entry %d: category_id %ld is not in the ground truth", path,
                        i, cat_id);
            goto done;
        }
        eval_det d = {.image = m,
                      .label = k,
                      .x1 = (float)v[0],
                      .y1 = (float)v[1],
                      .x2 = (float)(v[0] + v[2]),
                      .y2 = (float)(v[1] + v[3]),
                      .score = (float)sc->valuedouble};
        s = eval_dets_push(out, d);
        if (s < 0) goto done;
        i++;
    }
done:
    free(imgs);
    free(cats);
    cJSON_Delete(root);
    return s;
}

/* cJSON prints doubles with 15 digits when they compare equal within an epsilon, which loses
 * the last bits; %.17g always reads back to the same double. */
static cJSON *exact_number(double v) {
    char b[40];
    snprintf(b, sizeof b, "%.17g", v);
    return cJSON_CreateRaw(b);
}

int eval_save_performance(const char *path, const coco_dataset *gt, const eval_report *r,
                          eval_crowd_mode crowd) {
    cJSON *o = cJSON_CreateObject();
    cJSON *per = o ? cJSON_CreateObject() : NULL;
    cJSON *md = o ? cJSON_CreateArray() : NULL;
    cJSON *st = o ? cJSON_CreateArray() : NULL;
    int ok = o && per && md && st;
    cJSON *m = ok ? exact_number((double)r->voc.map) : NULL;
    ok = ok && m;
    if (ok) cJSON_AddItemToObject(o, "voc_map_050", m);
    ok = ok && cJSON_AddStringToObject(o, "voc_crowd", crowd == EVAL_CROWD_IGNORED ? "ignored" : "absent");
    for (int k = 0; ok && k < r->voc.n_classes && k < gt->n_cats; k++) {
        cJSON *c = cJSON_CreateObject();
        cJSON *ap = c ? exact_number((double)r->voc.cls[k].ap) : NULL;
        if (ap) cJSON_AddItemToObject(c, "ap", ap);
        ok = c && ap &&
             cJSON_AddNumberToObject(c, "num_gts", r->voc.cls[k].num_gts) &&
             cJSON_AddNumberToObject(c, "num_dets", r->voc.cls[k].num_dets);
        if (ok) {
            char fallback[32];
            snprintf(fallback, sizeof fallback, "%ld", gt->cats[k].id);
            cJSON_AddItemToObject(per, gt->cats[k].name ? gt->cats[k].name : fallback, c);
        } else {
            cJSON_Delete(c);
        }
    }
    for (int i = 0; ok && i < 3; i++) {
        cJSON *x = cJSON_CreateNumber(r->coco.max_dets[i]);
        ok = x != NULL;
        if (ok) cJSON_AddItemToArray(md, x);
    }
    for (int i = 0; ok && i < EVAL_COCO_NSTATS; i++) {
        cJSON *x = exact_number(r->coco.stats[i]);
        ok = x != NULL;
        if (ok) cJSON_AddItemToArray(st, x);
    }
    if (ok) {
        cJSON_AddItemToObject(o, "voc_ap_per_class", per);
        cJSON_AddItemToObject(o, "coco_max_dets", md);
        cJSON_AddItemToObject(o, "coco_stats", st);
        per = md = st = NULL;
    }
    char *text = ok ? cJSON_Print(o) : NULL;
    cJSON_Delete(per);
    cJSON_Delete(md);
    cJSON_Delete(st);
    cJSON_Delete(o);
    if (!text) return ote_err(OTE_ENOMEM, "%s: out of memory while formatting", path);
    /* the mode every other output has (0666 minus the umask) */
    atomic_file a;
    int s = atomic_open(&a, path, 0666);
    if (s < 0) {
        free(text);
        return s;
    }
    fputs(text, a.f);
    fputc('\n', a.f);
    free(text);
    return atomic_commit(&a);
}

int eval_save_results(const char *path, const coco_dataset *gt, const eval_det *dets, int n_dets) {
    CHECK(eval_check_dets(gt, dets, n_dets, "eval_save_results"));
    atomic_file a;
    CHECK(atomic_open(&a, path, 0666));
    FILE *f = a.f;
    fputc('[', f);
    for (int i = 0; i < n_dets; i++) {
        const eval_det *d = &dets[i];
        /* mmdet: bbox = [x1, y1, x2 - x1, y2 - y1] with the differences taken in double;
         * %.17g and %.9g read back to the same double and float32 values. */
        fprintf(f, "%s\n{\"image_id\": %ld, \"bbox\": [%.17g, %.17g, %.17g, %.17g], \"score\": %.9g, \"category_id\": %ld}",
                i ? "," : "", gt->images[d->image].id, (double)d->x1, (double)d->y1,
                (double)d->x2 - (double)d->x1, (double)d->y2 - (double)d->y1, (double)d->score,
                gt->cats[d->label].id);
    }
    fputs("\n]\n", f);
    return atomic_commit(&a);
}

/* resume.c - the training state file and the resume check (see resume.h). Runs once per epoch
 * (save) or once per run (read, check, apply), never inside a training step. */
#include "train/resume.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"
#include "train/weights.h"

static const char *const resume_stops[] = {"done", "early", "callback", "deadline"};

const char *resume_stop_name(int stop) {
    return stop >= 0 && stop < (int)(sizeof resume_stops / sizeof resume_stops[0]) ? resume_stops[stop] : "running";
}

int resume_state_path(const char *weights_path, char *buf, size_t n) {
    return weights_side_path(weights_path, "last.pth", buf, n);
}

/* ---- data fingerprint ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t fnv_str(uint64_t h, const char *s) { return fnv(h, s ? s : "", s ? strlen(s) + 1 : 1); }
static uint64_t fnv_int(uint64_t h, long v) {
    int64_t x = v;
    return fnv(h, &x, sizeof x);
}

uint64_t resume_data_fingerprint(const coco_dataset *ds) {
    uint64_t h = 14695981039346656037ULL;
    h = fnv_int(h, ds->n_cats);
    for (int k = 0; k < ds->n_cats; k++) h = fnv_str(fnv_int(h, ds->cats[k].id), ds->cats[k].name);
    h = fnv_int(h, ds->n_images);
    for (int i = 0; i < ds->n_images; i++) {
        const coco_image *im = &ds->images[i];
        h = fnv_str(h, im->file_name);
        h = fnv_int(fnv_int(fnv_int(h, im->width), im->height), im->n_boxes);
        for (int b = 0; b < im->n_boxes; b++) {
            const coco_box *x = &ds->boxes[im->first_box + b];
            float v[4] = {x->x1, x->y1, x->x2, x->y2};
            h = fnv(h, v, sizeof v);
            h = fnv_int(fnv_int(h, x->label), x->iscrowd);
        }
    }
    return h;
}

/* ---- writing ---- */

static int set_str(pth_ckpt *c, const char *key, const char *v) { return pth_config_set(c, key, v); }
static int set_long(pth_ckpt *c, const char *key, long v) {
    char b[32];
    snprintf(b, sizeof b, "%ld", v);
    return pth_config_set(c, key, b);
}
static int set_dbl(pth_ckpt *c, const char *key, double v) {
    char b[40];
    snprintf(b, sizeof b, "%.17g", v);
    return pth_config_set(c, key, b);
}

static int set_data(pth_ckpt *c, const char *which, const coco_dataset *ds) {
    char k[64], v[32];
    snprintf(k, sizeof k, "resume.data.%s.images", which);
    CHECK(set_long(c, k, ds ? ds->n_images : 0));
    snprintf(k, sizeof k, "resume.data.%s.boxes", which);
    CHECK(set_long(c, k, ds ? ds->n_boxes : 0));
    snprintf(k, sizeof k, "resume.data.%s.fingerprint", which);
    snprintf(v, sizeof v, "%016" PRIx64, ds ? resume_data_fingerprint(ds) : 0);
    return set_str(c, k, v);
}

/* The resume.* entries of rs into c. */
static int resume_put(pth_ckpt *c, const resume_state *rs, const coco_dataset *train, const coco_dataset *val) {
    CHECK(set_str(c, "resume.format", RESUME_FORMAT));
    CHECK(set_long(c, "resume.version", RESUME_VERSION));
    CHECK(set_long(c, "resume.epochs_done", rs->epochs_done));
    CHECK(set_long(c, "resume.epochs", rs->epochs));
    CHECK(set_long(c, "resume.repeat", rs->repeat));
    CHECK(set_long(c, "resume.batches", rs->batches));
    CHECK(set_long(c, "resume.iter", rs->iter));
    CHECK(set_long(c, "resume.images", rs->images));
    CHECK(set_dbl(c, "resume.seconds", rs->seconds));
    CHECK(set_dbl(c, "resume.train_seconds", rs->train_seconds));
    CHECK(set_str(c, "resume.finished", rs->finished ? "true" : "false"));
    CHECK(set_str(c, "resume.stop", rs->finished ? resume_stop_name(rs->stop) : "running"));
    CHECK(set_dbl(c, "resume.plateau.lr", rs->plateau.lr));
    CHECK(set_dbl(c, "resume.plateau.best", rs->plateau.best));
    CHECK(set_long(c, "resume.plateau.bad", rs->plateau.bad));
    CHECK(set_long(c, "resume.plateau.last_iter", rs->plateau.last_iter));
    CHECK(set_dbl(c, "resume.early.best", rs->early.best));
    CHECK(set_long(c, "resume.early.wait", rs->early.wait));
    CHECK(set_long(c, "resume.early.last_iter", rs->early.last_iter));
    CHECK(set_dbl(c, "resume.best.map", rs->best_map));
    CHECK(set_long(c, "resume.best.epoch", rs->best_epoch));
    CHECK(set_dbl(c, "resume.best.confidence_threshold", rs->best_threshold));
    CHECK(set_long(c, "resume.sgd.steps", rs->sgd_steps));
    CHECK(set_str(c, "resume.sgd.momentum", "0.9"));
    CHECK(set_str(c, "resume.sgd.weight_decay", "0.0001"));
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, rs->seed);
    CHECK(set_str(c, "resume.rng.seed", b));
    CHECK(set_long(c, "resume.rng.next_pass", rs->next_pass));
    CHECK(set_str(c, "resume.rng.scheme", "counter-based aug_rng(seed, pass, image, stream): no other state"));
    CHECK(set_long(c, "resume.threads", rs->threads));
    CHECK(set_dbl(c, "resume.subset_ratio", rs->subset_ratio));
    CHECK(set_long(c, "resume.max_epochs", rs->max_epochs));
    CHECK(set_data(c, "train", train));
    return set_data(c, "val", val);
}

/* Every trained parameter's momentum buffer into c's aux ('optimizer') dict. */
static int resume_put_momentum(pth_ckpt *c, detector *d) {
    int n = det_n_params(d), s = 0;
    long maxn = 1;
    for (int i = 0; i < n; i++) {
        const det_param_info *p = det_param(d, i);
        long k = 1;
        for (int j = 0; j < p->ndim; j++) k *= p->shape[j];
        if (k > maxn) maxn = k;
    }
    float *buf = malloc((size_t)maxn * sizeof *buf);
    if (!buf) return ote_err(OTE_ENOMEM, "resume: out of memory");
    for (int i = 0; i < n && s >= 0; i++) {
        const det_param_info *p = det_param(d, i);
        if (p->is_buffer) continue;
        int64_t shape[4];
        for (int k = 0; k < p->ndim; k++) shape[k] = p->shape[k];
        s = det_momentum_get(d, i, buf);
        if (s >= 0) s = pth_add_aux_f32(c, p->name, p->ndim, shape, buf);
    }
    free(buf);
    return s;
}

int resume_save(const char *path, detector *d, const config_template *cfg, const resume_state *rs,
                const coco_dataset *train, const coco_dataset *val) {
    pth_ckpt c;
    CHECK(weights_build(d, cfg, rs->best_epoch > 0 ? rs->best_threshold : cfg->confidence_threshold, &c));
    int s = resume_put(&c, rs, train, val);
    if (s >= 0) s = resume_put_momentum(&c, d);
    if (s >= 0) s = pth_save(path, &c);
    pth_free(&c);
    return s;
}

/* ---- reading ---- */

static int get_key(const pth_ckpt *c, const char *path, const char *key, const char **v) {
    *v = pth_config_get(c, key);
    if (!*v) return ote_err(OTE_EINVAL, "%s: config.%s is missing (the state file is damaged or not ote-c's)", path, key);
    return 0;
}

static int get_long(const pth_ckpt *c, const char *path, const char *key, long *out) {
    const char *v;
    CHECK(get_key(c, path, key, &v));
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end) return ote_err(OTE_EINVAL, "%s: config.%s: '%s' is not an integer", path, key, v);
    *out = x;
    return 0;
}

static int get_int(const pth_ckpt *c, const char *path, const char *key, int *out) {
    long x;
    CHECK(get_long(c, path, key, &x));
    *out = (int)x;
    return 0;
}

static int get_dbl(const pth_ckpt *c, const char *path, const char *key, double *out) {
    const char *v;
    CHECK(get_key(c, path, key, &v));
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end) return ote_err(OTE_EINVAL, "%s: config.%s: '%s' is not a number", path, key, v);
    *out = x;
    return 0;
}

int resume_read(const char *path, pth_ckpt *c, resume_state *rs) {
    memset(rs, 0, sizeof *rs);
    CHECK(weights_read(path, c));
    const char *fmt = pth_config_get(c, "resume.format");
    int s = 0;
    if (!fmt || strcmp(fmt, RESUME_FORMAT)) {
        s = ote_err(OTE_EINVAL, "%s: not a training state (config.resume.format is %s%s%s; ote train writes "
                                "OUT/last.pth after every epoch)", path, fmt ? "'" : "", fmt ? fmt : "missing", fmt ? "'" : "");
        goto fail;
    }
    long ver;
    if ((s = get_long(c, path, "resume.version", &ver)) < 0) goto fail;
    if (ver != RESUME_VERSION) {
        s = ote_err(OTE_EINVAL, "%s: training state version %ld (this ote reads version %d)", path, ver, RESUME_VERSION);
        goto fail;
    }
    const char *v;
    if ((s = get_int(c, path, "resume.epochs_done", &rs->epochs_done)) < 0 ||
        (s = get_int(c, path, "resume.epochs", &rs->epochs)) < 0 || (s = get_int(c, path, "resume.repeat", &rs->repeat)) < 0 ||
        (s = get_int(c, path, "resume.batches", &rs->batches)) < 0 || (s = get_long(c, path, "resume.iter", &rs->iter)) < 0 ||
        (s = get_long(c, path, "resume.images", &rs->images)) < 0 ||
        (s = get_dbl(c, path, "resume.seconds", &rs->seconds)) < 0 ||
        (s = get_dbl(c, path, "resume.train_seconds", &rs->train_seconds)) < 0 ||
        (s = get_key(c, path, "resume.finished", &v)) < 0)
        goto fail;
    rs->finished = !strcmp(v, "true");
    if ((s = get_key(c, path, "resume.stop", &v)) < 0) goto fail;
    rs->stop = -1;
    for (int k = 0; k < (int)(sizeof resume_stops / sizeof resume_stops[0]); k++)
        if (!strcmp(v, resume_stops[k])) rs->stop = k;
    schedule_plateau_init(&rs->plateau, 0, 0);
    schedule_early_stop_init(&rs->early, 0);
    if ((s = get_dbl(c, path, "resume.plateau.lr", &rs->plateau.lr)) < 0 ||
        (s = get_dbl(c, path, "resume.plateau.best", &rs->plateau.best)) < 0 ||
        (s = get_int(c, path, "resume.plateau.bad", &rs->plateau.bad)) < 0 ||
        (s = get_long(c, path, "resume.plateau.last_iter", &rs->plateau.last_iter)) < 0 ||
        (s = get_dbl(c, path, "resume.early.best", &rs->early.best)) < 0 ||
        (s = get_int(c, path, "resume.early.wait", &rs->early.wait)) < 0 ||
        (s = get_long(c, path, "resume.early.last_iter", &rs->early.last_iter)) < 0 ||
        (s = get_dbl(c, path, "resume.best.map", &rs->best_map)) < 0 ||
        (s = get_int(c, path, "resume.best.epoch", &rs->best_epoch)) < 0 ||
        (s = get_dbl(c, path, "resume.best.confidence_threshold", &rs->best_threshold)) < 0 ||
        (s = get_long(c, path, "resume.sgd.steps", &rs->sgd_steps)) < 0 ||
        (s = get_long(c, path, "resume.rng.next_pass", &rs->next_pass)) < 0 ||
        (s = get_int(c, path, "resume.threads", &rs->threads)) < 0 ||
        (s = get_dbl(c, path, "resume.subset_ratio", &rs->subset_ratio)) < 0 ||
        (s = get_int(c, path, "resume.max_epochs", &rs->max_epochs)) < 0 ||
        (s = get_key(c, path, "resume.rng.seed", &v)) < 0)
        goto fail;
    rs->seed = strtoull(v, NULL, 10);
    if (rs->epochs_done < 0 || rs->epochs_done > rs->epochs || rs->iter < 0 || rs->sgd_steps < 0) {
        s = ote_err(OTE_EINVAL, "%s: inconsistent training state: %d of %d epochs done, iteration %ld, %ld SGD steps", path,
                    rs->epochs_done, rs->epochs, rs->iter, rs->sgd_steps);
        goto fail;
    }
    return 0;
fail:
    pth_free(c);
    return s;
}

/* ---- the settings check ---- */

#define RESUME_DIFFERS "%s: %s differs: %s in the interrupted training, %s now (a resume continues the same training)"

static int check_str(const pth_ckpt *c, const char *path, const char *key, const char *now) {
    const char *then = pth_config_get(c, key);
    if (then && !strcmp(then, now)) return 0;
    return ote_err(OTE_EINVAL, RESUME_DIFFERS, path, key, then ? then : "(absent)", now);
}

static int check_data(const pth_ckpt *c, const char *path, const char *which, const coco_dataset *ds) {
    char k[64], then[160], now[160];
    const char *im, *bx, *fp;
    snprintf(k, sizeof k, "resume.data.%s.images", which);
    CHECK(get_key(c, path, k, &im));
    snprintf(k, sizeof k, "resume.data.%s.boxes", which);
    CHECK(get_key(c, path, k, &bx));
    snprintf(k, sizeof k, "resume.data.%s.fingerprint", which);
    CHECK(get_key(c, path, k, &fp));
    snprintf(then, sizeof then, "%s images, %s boxes (fingerprint %s)", im, bx, fp);
    snprintf(now, sizeof now, "%d images, %d boxes (fingerprint %016" PRIx64 ")", ds->n_images, ds->n_boxes,
             resume_data_fingerprint(ds));
    if (!strcmp(then, now)) return 0;
    char what[48];
    snprintf(what, sizeof what, "the %s data", !strcmp(which, "train") ? "training" : "validation");
    return ote_err(OTE_EINVAL, RESUME_DIFFERS, path, what, then, now);
}

int resume_check(const pth_ckpt *c, const char *path, const config_template *cfg, const coco_dataset *train,
                 const coco_dataset *val, double subset_ratio, int max_epochs) {
    char v[64];
    for (int i = 0; i < cfg->n_hp; i++) {
        config_format_value(&cfg->hp[i], v, sizeof v);
        CHECK(check_str(c, path, cfg->hp[i].key, v));
    }
    snprintf(v, sizeof v, "%dx%d", cfg->input_w, cfg->input_h);
    CHECK(check_str(c, path, "model.input_size", v));
    CHECK(check_str(c, path, "model.backbone", cfg->backbone ? "torchvision" : "mobilenetv2_w1"));
    CHECK(check_str(c, path, "model.tf_padding", cfg->tf_padding ? "true" : "false"));
    snprintf(v, sizeof v, "%" PRIu64, cfg->seed);
    CHECK(check_str(c, path, "model.seed", v));
    CHECK(check_data(c, path, "train", train));
    if (val) CHECK(check_data(c, path, "val", val));
    snprintf(v, sizeof v, "%.17g", subset_ratio);
    CHECK(check_str(c, path, "resume.subset_ratio", v));
    snprintf(v, sizeof v, "%d", max_epochs);
    return check_str(c, path, "resume.max_epochs", v);
}

/* ---- applying ---- */

int resume_apply(detector *d, const pth_ckpt *c, const char *path, const resume_state *rs) {
    weights_load_info info;
    CHECK(weights_apply(d, c, path, &info));
    if (info.reinit_cls)
        return ote_err(OTE_EINVAL, "%s: the training state has %d classes, the data %d", path, info.ckpt_classes,
                       det_config(d)->num_classes);
    int n = det_n_params(d), s = 0;
    for (int i = 0; i < n && s >= 0; i++) {
        const det_param_info *p = det_param(d, i);
        if (p->is_buffer) continue;
        const pth_tensor *t = pth_find_aux(c, p->name);
        size_t numel = 1;
        for (int k = 0; k < p->ndim; k++) numel *= (size_t)p->shape[k];
        if (!t || t->dtype != PTH_F32 || t->numel != numel) {
            s = ote_err(OTE_EINVAL, "%s: optimizer.%s: %s", path, p->name,
                        !t ? "missing (no momentum buffer for this parameter)" : "not a float tensor of the parameter's shape");
            break;
        }
        s = det_momentum_set(d, i, t->data);
    }
    CHECK(s);
    det_sgd_set_steps(d, rs->sgd_steps);
    return 0;
}

/* weights.c - weights.pth and label_schema.json (see weights.h). Maps detector parameters to and
 * from io/pth checkpoints; writes JSON by hand (tools/ does not link cJSON by design). */
#include "train/weights.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/ote.h"
#include "io/atomic.h"
#include "io/tfl.h"
#include "train/import_backbone.h"

int weights_side_path(const char *weights_path, const char *side, char *buf, size_t n) {
    const char *slash = strrchr(weights_path, '/');
    const char *base = slash ? slash + 1 : weights_path;
    int dl = slash ? (int)(slash - weights_path + 1) : 0;
    size_t bl = strlen(base);
    int w;
    if (!strcmp(base, "weights.pth")) w = snprintf(buf, n, "%.*s%s", dl, weights_path, side);
    else w = snprintf(buf, n, "%.*s%.*s.%s", dl, weights_path, (int)(bl > 4 ? bl - 4 : bl), base, side);
    if (w < 0 || (size_t)w >= n) return ote_err(OTE_EINVAL, "--save-model-to: path too long: %s", weights_path);
    return 0;
}

int weights_paths(const char *save_to, char *weights, size_t wn, char *labels, size_t ln) {
    size_t n = strlen(save_to);
    if (n == 0) return ote_err(OTE_EINVAL, "--save-model-to: empty path");
    int w;
    if (n > 4 && !strcmp(save_to + n - 4, ".pth")) w = snprintf(weights, wn, "%s", save_to);
    else w = snprintf(weights, wn, "%s%sweights.pth", save_to, save_to[n - 1] == '/' ? "" : "/");
    if (w < 0 || (size_t)w >= wn) return ote_err(OTE_EINVAL, "--save-model-to: path too long: %s", save_to);
    return weights_side_path(weights, "label_schema.json", labels, ln);
}

/* mkdir -p; made (n bytes) receives the first directory level this call created ("" if none). */
static int weights_mkdirs(const char *dir, char *made, size_t n) {
    char buf[4096];
    made[0] = '\0';
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return ote_err(OTE_EINVAL, "path too long: %s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0777) == 0) {
            if (!made[0]) snprintf(made, n, "%s", buf);
        } else if (errno != EEXIST) {
            return ote_err(OTE_EIO, "cannot create directory %s: %s", buf, strerror(errno));
        }
        *p = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode)) return ote_err(OTE_EIO, "%s is not a directory", buf);
    return 0;
}

/* The directory part of a weights path. */
static void weights_dir_of(const char *weights_path, char *dir, size_t n) {
    const char *slash = strrchr(weights_path, '/');
    if (!slash) snprintf(dir, n, ".");
    else if (slash == weights_path) snprintf(dir, n, "/");
    else snprintf(dir, n, "%.*s", (int)(slash - weights_path), weights_path);
}

int weights_prepare_dir(const char *weights_path, char *made, size_t n) {
    char dir[4096];
    made[0] = '\0';
    struct stat st;
    if (stat(weights_path, &st) == 0 && S_ISDIR(st.st_mode))
        return ote_err(OTE_EIO, "%s is an existing directory, not a weights file (give the folder without .pth, "
                                "or another name)", weights_path);
    weights_dir_of(weights_path, dir, sizeof dir);
    CHECK(weights_mkdirs(dir, made, n));
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.ote-write-probe-%ld", dir, (long)getpid());
    FILE *f = fopen(probe, "w");
    if (!f) {
        int e = errno;
        weights_remove_made_dirs(weights_path, made);
        return ote_err(OTE_EIO, "output folder %s is not writable: %s", dir, strerror(e));
    }
    fclose(f);
    unlink(probe);
    return 0;
}

void weights_remove_made_dirs(const char *weights_path, const char *made) {
    if (!made || !made[0]) return;
    char dir[4096];
    weights_dir_of(weights_path, dir, sizeof dir);
    size_t m = strlen(made);
    /* from the weights folder up to the first level created; rmdir only removes empty folders */
    while (strlen(dir) >= m && !strncmp(dir, made, m)) {
        if (rmdir(dir) != 0) return;
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir) return;
        *slash = '\0';
    }
}

static int weights_same_shape(const det_param_info *p, const pth_tensor *t) {
    long pn = 1, tn = 1;
    for (int k = 0; k < p->ndim; k++) pn *= p->shape[k];
    for (int k = 0; k < t->ndim; k++) tn *= (long)t->shape[k];
    /* A 0-d scalar and a 1-element vector hold the same value (the Scale parameters). */
    if (pn == 1 && tn == 1 && p->ndim <= 1 && t->ndim <= 1) return 1;
    if (p->ndim != t->ndim) return 0;
    for (int k = 0; k < p->ndim; k++)
        if (p->shape[k] != (long)t->shape[k]) return 0;
    return 1;
}

static void weights_shape_str(char *buf, size_t n, int ndim, const long *s64, const int64_t *s) {
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int k = 0; k < ndim && len < n; k++)
        len += (size_t)snprintf(buf + len, n - len, "%s%ld", k ? ", " : "", s64 ? s64[k] : (long)s[k]);
    if (len < n) snprintf(buf + len, n - len, "]");
}

/* Appends a key to a bounded list: at most 4 names, then a count. */
typedef struct weights_keylist {
    char text[1024];
    int n;
} weights_keylist;

static void weights_keylist_add(weights_keylist *l, const char *name) {
    l->n++;
    if (l->n > 4) return;
    size_t len = strlen(l->text);
    snprintf(l->text + len, sizeof l->text - len, "%s%s", l->n > 1 ? ", " : "", name);
}

static int weights_is_cls(const char *name) {
    return !strcmp(name, "bbox_head.atss_cls.weight") || !strcmp(name, "bbox_head.atss_cls.bias");
}

/* The ImageNet classifier an `ote import-backbone --keep-classifier` file carries: not part of the
 * detector, skipped when loading a backbone. */
static int weights_is_classifier(const char *name) {
    return !strncmp(name, "backbone.output.", 16) || !strncmp(name, "backbone.features.final_block.", 30);
}

/* weights_match (backbone = 0) or weights_match_backbone (backbone = 1). */
static int weights_match_mode(const det_param_info *const *params, int n_params, const pth_ckpt *c, const char *what,
                              int backbone, weights_match_result *out) {
    out->reinit_cls = 0;
    out->ckpt_classes = 0;
    weights_keylist unknown = {{0}, 0}, missing = {{0}, 0}, shaped = {{0}, 0};
    for (int i = 0; i < n_params; i++) out->src[i] = -1;
    int cls_mismatch = 0, cls_other = 0;
    for (size_t j = 0; j < c->n_tensors; j++) {
        const pth_tensor *t = &c->tensors[j];
        if (backbone && weights_is_classifier(t->name)) continue;
        int i;
        for (i = 0; i < n_params; i++)
            if (!strcmp(params[i]->name, t->name)) break;
        if (i == n_params) {
            weights_keylist_add(&unknown, t->name);
            continue;
        }
        out->src[i] = (int)j;
        if (weights_is_cls(t->name) && t->ndim >= 1) out->ckpt_classes = (int)t->shape[0];
        if (!weights_same_shape(params[i], t)) {
            /* OTE: only the classification conv may differ, and only in its output channels. */
            int cls_ok = 0;
            if (!backbone && weights_is_cls(t->name) && t->ndim == params[i]->ndim) {
                cls_ok = 1;
                for (int k = 1; k < t->ndim; k++)
                    if ((long)t->shape[k] != params[i]->shape[k]) cls_ok = 0;
            }
            if (cls_ok) {
                cls_mismatch++;
                continue;
            }
            char a[96], b[96], e[400];
            weights_shape_str(a, sizeof a, t->ndim, NULL, t->shape);
            weights_shape_str(b, sizeof b, params[i]->ndim, params[i]->shape, NULL);
            snprintf(e, sizeof e, "%s (checkpoint %s vs model %s)", t->name, a, b);
            weights_keylist_add(&shaped, e);
        } else if (weights_is_cls(t->name)) {
            cls_other++;
        }
    }
    for (int i = 0; i < n_params && !backbone; i++)
        if (out->src[i] < 0) weights_keylist_add(&missing, params[i]->name);
    if (cls_mismatch && cls_other) {
        /* weight says one class count, bias another: not a class-count change */
        for (int i = 0; i < n_params; i++)
            if (weights_is_cls(params[i]->name) && out->src[i] >= 0) weights_keylist_add(&shaped, params[i]->name);
    }
    if (unknown.n || missing.n || shaped.n) {
        char msg[3600];
        size_t len = 0;
        const weights_keylist *ls[3] = {&unknown, &missing, &shaped};
        const char *names[3] = {"unknown keys", "missing keys", "mis-shaped keys"};
        for (int k = 0; k < 3; k++) {
            if (!ls[k]->n) continue;
            len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s (%d): %s", len ? "; " : "", names[k], ls[k]->n,
                                    ls[k]->text);
            if (ls[k]->n > 4 && len < sizeof msg) len += (size_t)snprintf(msg + len, sizeof msg - len, ", +%d more", ls[k]->n - 4);
            if (len >= sizeof msg) len = sizeof msg - 1;
        }
        return ote_err(OTE_EINVAL, "%s: checkpoint does not match the model: %s", what, msg);
    }
    if (cls_mismatch) {
        out->reinit_cls = 1;
        for (int i = 0; i < n_params; i++)
            if (weights_is_cls(params[i]->name)) out->src[i] = -1;
    }
    return 0;
}

int weights_match(const det_param_info *const *params, int n_params, const pth_ckpt *c, const char *what,
                  weights_match_result *out) {
    return weights_match_mode(params, n_params, c, what, 0, out);
}

int weights_match_backbone(const det_param_info *const *params, int n_params, const pth_ckpt *c, const char *what,
                           weights_match_result *out) {
    return weights_match_mode(params, n_params, c, what, 1, out);
}

static long weights_numel(const det_param_info *p) {
    long n = 1;
    for (int k = 0; k < p->ndim; k++) n *= p->shape[k];
    return n;
}

int weights_build(detector *d, const config_template *t, double confidence_threshold, pth_ckpt *out) {
    pth_init(out);
    out->confidence_threshold = confidence_threshold;
    int n = det_n_params(d), s = 0;
    long maxn = 1;
    for (int i = 0; i < n; i++) {
        long k = weights_numel(det_param(d, i));
        if (k > maxn) maxn = k;
    }
    float *buf = malloc((size_t)maxn * sizeof *buf);
    if (!buf) return ote_err(OTE_ENOMEM, "weights: out of memory");
    for (int i = 0; i < n && s >= 0; i++) {
        const det_param_info *p = det_param(d, i);
        int64_t shape[4];
        for (int k = 0; k < p->ndim; k++) shape[k] = p->shape[k];
        s = det_param_get(d, i, buf);
        if (s < 0) break;
        if (p->is_int64) {
            int64_t v = (int64_t)buf[0];
            s = pth_add_i64(out, p->name, p->ndim, shape, &v);
        } else {
            s = pth_add_f32(out, p->name, p->ndim, shape, buf);
        }
    }
    free(buf);
    for (int i = 0; i < t->n_hp && s >= 0; i++) {
        char v[64];
        config_format_value(&t->hp[i], v, sizeof v);
        s = pth_config_set(out, t->hp[i].key, v);
    }
    char v[64];
    snprintf(v, sizeof v, "%dx%d", t->input_w, t->input_h);
    if (s >= 0) s = pth_config_set(out, "model.input_size", v);
    if (s >= 0) s = pth_config_set(out, "model.backbone", t->backbone ? "torchvision" : "mobilenetv2_w1");
    if (s >= 0) s = pth_config_set(out, "model.tf_padding", t->tf_padding ? "true" : "false");
    snprintf(v, sizeof v, "%llu", (unsigned long long)t->seed);
    if (s >= 0) s = pth_config_set(out, "model.seed", v);
    if (s < 0) pth_free(out);
    return s;
}

int weights_save(detector *d, const config_template *t, double confidence_threshold, const char *path) {
    pth_ckpt c;
    CHECK(weights_build(d, t, confidence_threshold, &c));
    int s = pth_save(path, &c);
    pth_free(&c);
    return s;
}

static void weights_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* label_schema.json's text, staged (complete and fsync'ed, not yet published) in *a. */
static int weights_stage_labels(atomic_file *a, const char *path, const coco_dataset *ds) {
    CHECK(atomic_open(a, path, 0666));
    FILE *f = a->f;
    fprintf(f, "{\n  \"format\": \"ote-c label schema\",\n  \"version\": 1,\n  \"labels\": [");
    for (int k = 0; k < ds->n_cats; k++) {
        fprintf(f, "%s\n    {\"id\": %d, \"name\": ", k ? "," : "", k);
        weights_json_str(f, ds->cats[k].name ? ds->cats[k].name : "");
        fprintf(f, ", \"coco_category_id\": %ld}", ds->cats[k].id);
    }
    fprintf(f, "\n  ]\n}\n");
    return atomic_stage(a);
}

int weights_save_pair(detector *d, const config_template *t, double confidence_threshold, const char *weights_path,
                      const char *labels_path, const coco_dataset *ds) {
    if (!labels_path) return weights_save(d, t, confidence_threshold, weights_path);
    /* both written in full first: a failure here leaves the published pair as it was */
    atomic_file la, wa;
    CHECK(weights_stage_labels(&la, labels_path, ds));
    pth_ckpt c;
    int s = weights_build(d, t, confidence_threshold, &c);
    if (s < 0) {
        atomic_abort(&la);
        return s;
    }
    s = pth_stage(&wa, weights_path, &c);
    pth_free(&c);
    if (s < 0) {
        atomic_abort(&la);
        return s;
    }
    s = atomic_publish(&la);
    if (s < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ote_errmsg());
        atomic_abort(&wa);
        return ote_err(s, "%s (%s left as it was)", msg, weights_path);
    }
    return atomic_publish(&wa);
}

int weights_read(const char *path, pth_ckpt *c) {
    int s = pth_load(path, c);
    if (s < 0 && !strstr(ote_errmsg(), path)) return ote_err_context(s, "%s", path);
    return s;
}

/* weights_apply (backbone = 0) or weights_apply_backbone (backbone = 1). */
static int weights_apply_mode(detector *d, const pth_ckpt *c, const char *what, int backbone,
                              weights_load_info *info) {
    int n = det_n_params(d);
    const det_param_info **params = malloc((size_t)n * sizeof *params);
    int *src = malloc((size_t)n * sizeof *src);
    float *buf = NULL;
    int s = 0;
    if (!params || !src) {
        s = ote_err(OTE_ENOMEM, "weights: out of memory");
        goto done;
    }
    long maxn = 1;
    for (int i = 0; i < n; i++) {
        params[i] = det_param(d, i);
        long k = weights_numel(params[i]);
        if (k > maxn) maxn = k;
    }
    weights_match_result m = {src, 0, 0};
    s = weights_match_mode(params, n, c, what, backbone, &m);
    if (s < 0) goto done;
    buf = malloc((size_t)maxn * sizeof *buf);
    if (!buf) {
        s = ote_err(OTE_ENOMEM, "weights: out of memory");
        goto done;
    }
    for (int i = 0; i < n && s >= 0; i++) {
        if (src[i] < 0) continue;
        const pth_tensor *t = &c->tensors[src[i]];
        if (t->dtype == PTH_I64) {
            for (size_t k = 0; k < t->numel; k++) buf[k] = (float)((const int64_t *)t->data)[k];
        } else {
            memcpy(buf, t->data, t->numel * sizeof(float));
        }
        s = det_param_set(d, i, buf);
        if (s < 0) ote_err_context(s, "%s: %s", what, t->name);
    }
    if (s >= 0 && m.reinit_cls) s = det_reinit_cls(d);
    if (info) {
        memset(info, 0, sizeof *info);
        info->layout = c->layout;
        info->reinit_cls = m.reinit_cls;
        info->ckpt_classes = m.ckpt_classes;
        info->n_loaded = 0;
        for (int i = 0; i < n; i++) info->n_loaded += src[i] >= 0;
    }
done:
    free(buf);
    free(src);
    free(params);
    return s;
}

int weights_apply(detector *d, const pth_ckpt *c, const char *what, weights_load_info *info) {
    return weights_apply_mode(d, c, what, 0, info);
}

int weights_apply_backbone(detector *d, const pth_ckpt *c, const char *what, weights_load_info *info) {
    return weights_apply_mode(d, c, what, 1, info);
}

/* 1 if the file carries the TFLite FlatBuffer identifier "TFL3" at offset 4. */
static int weights_is_tflite(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char h[8];
    int yes = fread(h, 1, 8, f) == 8 && !memcmp(h + 4, "TFL3", 4);
    fclose(f);
    return yes;
}

int weights_read_backbone(const char *path, pth_ckpt *c, int *from_tflite) {
    int tfl = weights_is_tflite(path);
    if (from_tflite) *from_tflite = tfl;
    if (!tfl) return weights_read(path, c);
    tfl_model m;
    int s = tfl_load(&m, path);
    if (s < 0) return strstr(ote_errmsg(), path) ? s : ote_err_context(s, "%s", path);
    import_backbone_result r;
    s = import_backbone_tflite(&m, 0, &r);
    tfl_free(&m);
    if (s < 0) return ote_err_context(s, "%s", path);
    s = import_backbone_fold_unit_input(&r);
    const char *base = strrchr(path, '/');
    if (s >= 0) s = import_backbone_to_ckpt(&r, base ? base + 1 : path, 1, c);
    import_backbone_free(&r);
    return s < 0 ? ote_err_context(s, "%s", path) : s;
}

int weights_load_backbone(detector *d, const char *path, weights_load_info *info) {
    pth_ckpt c;
    pth_init(&c);
    int tfl = 0;
    int s = weights_read_backbone(path, &c, &tfl);
    if (s >= 0) s = weights_apply_backbone(d, &c, path, info);
    if (s >= 0 && info) {
        const char *bn = pth_config_get(&c, "import.bn"), *pad = pth_config_get(&c, "import.padding");
        const char *var = pth_config_get(&c, "import.variant"), *in = pth_config_get(&c, "import.input");
        info->from_tflite = tfl;
        info->bn_folded = bn && !strcmp(bn, "identity_plus_bias");
        info->tf_same = pad && !strcmp(pad, "tf_same");
        info->torchvision = var && !strcmp(var, "torchvision");
        info->minus1_input = in && !strcmp(in, "rgb_minus1_to_1");
    }
    pth_free(&c);
    return s;
}

int weights_config_to_template(const pth_ckpt *c, config_template *t) {
    static const char *const keys[] = {"model.input_size", "model.backbone", "model.tf_padding",
                                       "postprocessing.confidence_threshold"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *v = pth_config_get(c, keys[k]);
        if (v && config_set(t, keys[k], v) < 0) return ote_err_context(OTE_EINVAL, "checkpoint config");
    }
    return 0;
}

/* 1 if name is "<base>.tmp-<pid>" (io/atomic.h's temporary) with a pid that no longer runs. */
static int weights_is_stale_temp(const char *name, const char *base) {
    size_t bl = strlen(base), il = strlen(ATOMIC_TMP_INFIX);
    if (strncmp(name, base, bl) || strncmp(name + bl, ATOMIC_TMP_INFIX, il)) return 0;
    const char *d = name + bl + il;
    if (!*d) return 0;
    for (const char *q = d; *q; q++)
        if (*q < '0' || *q > '9') return 0;
    long pid = atol(d);
    return pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

int weights_clean_stale_temps(const char *weights_path, const char *labels_path) {
    char dir[4096];
    weights_dir_of(weights_path, dir, sizeof dir);
    const char *wb = strrchr(weights_path, '/'), *lb = strrchr(labels_path, '/');
    wb = wb ? wb + 1 : weights_path;
    lb = lb ? lb + 1 : labels_path;
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (!weights_is_stale_temp(e->d_name, wb) && !weights_is_stale_temp(e->d_name, lb)) continue;
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        n += unlink(p) == 0;
    }
    closedir(dp);
    return n;
}

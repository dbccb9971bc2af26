/* predict.c - image files through the trained detector, drawn and written (see predict.h).
 *
 * Owns, for one predict_run: the trainer_predictor (engine, detector, plan), one decode buffer
 * and the chunk's detections; everything is released before returning. Images are handled in
 * chunks of PREDICT_CHUNK: decoded once to check them and learn their size, predicted through a
 * loader over the readable ones, then decoded again to draw (the loader's own copy is resized),
 * so memory stays at a few images whatever the number of files.
 */
#include "train/predict.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/draw.h"
#include "data/eval.h"
#include "data/image.h"
#include "engine/ote.h"
#include "train/export.h"
#include "train/trainer.h"
#include "train/weights.h"

enum { PREDICT_CHUNK = 16, PREDICT_LIST_MAX = 20 };

static double predict_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the list of files ---- */

void predict_files_free(predict_files *f) {
    for (int i = 0; i < f->n; i++) free(f->path[i]);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static int predict_files_push(predict_files *f, const char *dir, const char *name) {
    if (f->n == f->cap) {
        int c = f->cap ? 2 * f->cap : 64;
        char **p = realloc(f->path, (size_t)c * sizeof *p);
        if (!p) return ote_err(OTE_ENOMEM, "predict: out of memory");
        f->path = p;
        f->cap = c;
    }
    size_t dl = dir ? strlen(dir) : 0, nl = strlen(name);
    char *s = malloc(dl + nl + 2);
    if (!s) return ote_err(OTE_ENOMEM, "predict: out of memory");
    if (dir) {
        memcpy(s, dir, dl);
        if (dl && dir[dl - 1] != '/') s[dl++] = '/';
    }
    memcpy(s + dl, name, nl + 1);
    f->path[f->n++] = s;
    return 0;
}

/* 1 if the name ends in one of the image extensions (any case). */
static int predict_is_image_name(const char *name) {
    static const char *const ext[] = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"};
    size_t n = strlen(name);
    for (size_t k = 0; k < sizeof ext / sizeof ext[0]; k++) {
        size_t e = strlen(ext[k]);
        if (n > e && !strcasecmp(name + n - e, ext[k])) return 1;
    }
    return 0;
}

static int predict_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int predict_expand_dir(const char *dir, predict_files *out) {
    DIR *d = opendir(dir);
    if (!d) return ote_err(OTE_EIO, "--images: cannot read folder %s: %s", dir, strerror(errno));
    predict_files names = {0};
    struct dirent *e;
    int s = 0;
    while (s >= 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !predict_is_image_name(e->d_name)) continue;
        s = predict_files_push(&names, NULL, e->d_name);
    }
    closedir(d);
    if (s >= 0 && names.n == 0)
        s = ote_err(OTE_EINVAL, "--images: no image files (.jpg .jpeg .png .bmp .tif .tiff .webp) in folder %s", dir);
    if (s >= 0) qsort(names.path, (size_t)names.n, sizeof *names.path, predict_cmp_str);
    for (int i = 0; s >= 0 && i < names.n; i++) s = predict_files_push(out, dir, names.path[i]);
    predict_files_free(&names);
    return s;
}

int predict_expand(const char *const *args, int n_args, predict_files *out) {
    memset(out, 0, sizeof *out);
    if (n_args < 1) return ote_err(OTE_EINVAL, "--images: no image file or folder given");
    int s = 0;
    for (int i = 0; i < n_args && s >= 0; i++) {
        struct stat st;
        if (stat(args[i], &st) == 0 && S_ISDIR(st.st_mode)) s = predict_expand_dir(args[i], out);
        else s = predict_files_push(out, NULL, args[i]);
    }
    if (s < 0) predict_files_free(out);
    return s;
}

/* ---- class names ---- */

static int predict_read_text(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return ote_err(OTE_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *nb = realloc(b, cap * 2);
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!b) return ote_err(OTE_ENOMEM, "%s: out of memory", path);
    if (bad) {
        free(b);
        return ote_err(OTE_EIO, "%s: read error", path);
    }
    b[n] = '\0';
    *out = b;
    return 0;
}

static int predict_set_cats(coco_dataset *ds, int n) {
    ds->cats = calloc((size_t)(n > 0 ? n : 1), sizeof *ds->cats);
    if (!ds->cats) return ote_err(OTE_ENOMEM, "predict: out of memory");
    ds->n_cats = n;
    return 0;
}

/* label_schema.json (train/weights.h's format) into ds->cats; the labels must be ids 0..n-1 in order. */
static int predict_read_schema(const char *path, int n_ckpt, coco_dataset *ds) {
    char *text = NULL;
    CHECK(predict_read_text(path, &text));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return ote_err(OTE_EPARSE, "%s: not valid JSON", path);
    int s = 0;
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(root, "labels");
    if (!cJSON_IsArray(labels)) {
        s = ote_err(OTE_EPARSE, "%s: no \"labels\" list", path);
        goto done;
    }
    int n = cJSON_GetArraySize(labels);
    if (n != n_ckpt) {
        s = ote_err(OTE_EINVAL, "%s lists %d labels but the checkpoint's model has %d classes", path, n, n_ckpt);
        goto done;
    }
    if ((s = predict_set_cats(ds, n)) < 0) goto done;
    int k = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, labels) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(l, "id");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(l, "name");
        const cJSON *cid = cJSON_GetObjectItemCaseSensitive(l, "coco_category_id");
        if (!cJSON_IsNumber(id) || id->valuedouble != k || !cJSON_IsString(name)) {
            s = ote_err(OTE_EPARSE, "%s: labels[%d]: expected {\"id\": %d, \"name\": \"...\"}", path, k, k);
            goto done;
        }
        ds->cats[k].id = cJSON_IsNumber(cid) ? (long)cid->valuedouble : k + 1;
        ds->cats[k].name = strdup(name->valuestring);
        if (!ds->cats[k].name) {
            s = ote_err(OTE_ENOMEM, "predict: out of memory");
            goto done;
        }
        k++;
    }
done:
    cJSON_Delete(root);
    return s;
}

int predict_labels(const char *weights_path, const pth_ckpt *c, coco_dataset *ds, int *from_schema) {
    if (from_schema) *from_schema = 0;
    int n;
    char schema[4200];
    if (trainer_is_onnx_path(weights_path)) { /* ote export writes DIR/label_schema.json beside DIR/model.onnx */
        export_meta em;
        CHECK(export_read_meta(weights_path, &em));
        n = em.num_classes;
        const char *slash = strrchr(weights_path, '/');
        int dl = slash ? (int)(slash - weights_path + 1) : 0;
        if (snprintf(schema, sizeof schema, "%.*slabel_schema.json", dl, weights_path) >= (int)sizeof schema)
            return ote_err(OTE_EINVAL, "%s: path too long", weights_path);
    } else {
        const pth_tensor *t = pth_find(c, "bbox_head.atss_cls.weight");
        if (!t || t->ndim < 1 || t->shape[0] < 1)
            return ote_err(OTE_EINVAL, "%s: no bbox_head.atss_cls.weight: cannot tell the number of classes", weights_path);
        n = (int)t->shape[0];
        CHECK(weights_side_path(weights_path, "label_schema.json", schema, sizeof schema));
    }
    if (access(schema, F_OK) == 0) {
        int s = predict_read_schema(schema, n, ds);
        if (s < 0) {
            for (int k = 0; ds->cats && k < ds->n_cats; k++) free(ds->cats[k].name);
            free(ds->cats);
            ds->cats = NULL;
            ds->n_cats = 0;
            return s;
        }
        if (from_schema) *from_schema = 1;
        return 0;
    }
    CHECK(predict_set_cats(ds, n));
    for (int k = 0; k < n; k++) {
        char name[32];
        snprintf(name, sizeof name, "class %d", k);
        ds->cats[k].id = k + 1;
        ds->cats[k].name = strdup(name);
        if (!ds->cats[k].name) return ote_err(OTE_ENOMEM, "predict: out of memory");
    }
    return 0;
}

int predict_dataset_of_files(const predict_files *f, const coco_dataset *labels, coco_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    ds->images = calloc((size_t)(f->n > 0 ? f->n : 1), sizeof *ds->images);
    int s = ds->images ? predict_set_cats(ds, labels->n_cats) : OTE_ENOMEM;
    for (int k = 0; s >= 0 && k < labels->n_cats; k++) {
        ds->cats[k].id = labels->cats[k].id;
        ds->cats[k].name = strdup(labels->cats[k].name ? labels->cats[k].name : "");
        if (!ds->cats[k].name) s = OTE_ENOMEM;
    }
    for (int i = 0; s >= 0 && i < f->n; i++) {
        coco_image *im = &ds->images[i];
        im->id = i + 1;
        im->file_name = strdup(f->path[i]);
        im->path = strdup(f->path[i]);
        ds->n_images = i + 1;
        if (!im->file_name || !im->path) s = OTE_ENOMEM;
    }
    if (s < 0) {
        coco_free(ds);
        return ote_err(OTE_ENOMEM, "predict: out of memory");
    }
    return 0;
}

/* ---- output names ---- */

/* mkdir -p. */
static int predict_mkdirs(const char *dir) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return ote_err(OTE_EINVAL, "path too long: %s", dir);
    for (char *p = buf + 1;; p++) {
        int end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return ote_err(OTE_EIO, "cannot create folder %s: %s", buf, strerror(errno));
            if (end) break;
            *p = '/';
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return ote_err(OTE_EIO, "%s is not a folder", dir);
    return 0;
}

/* The drawn image's file name for every image of ds: the input's last path component (extension
 * kept for .jpg .jpeg .png .bmp, else ".png" appended), "<stem>_<k><ext>" when two inputs share a
 * name. names[i] is malloc'ed (caller frees each and the array). */
static int predict_out_names(const coco_dataset *ds, char ***out) {
    char **names = calloc((size_t)(ds->n_images > 0 ? ds->n_images : 1), sizeof *names);
    if (!names) return ote_err(OTE_ENOMEM, "predict: out of memory");
    int s = 0;
    for (int i = 0; i < ds->n_images && s >= 0; i++) {
        const char *fn = ds->images[i].file_name && ds->images[i].file_name[0] ? ds->images[i].file_name : "image";
        const char *slash = strrchr(fn, '/');
        const char *base = slash ? slash + 1 : fn;
        if (!*base) base = "image";
        const char *dot = strrchr(base, '.');
        int keep = dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png") ||
                           !strcasecmp(dot, ".bmp"));
        int stem = keep ? (int)(dot - base) : (int)strlen(base);
        const char *ext = keep ? dot : ".png";
        char buf[1024];
        for (int k = 1;; k++) {
            if (k == 1 && keep) snprintf(buf, sizeof buf, "%s", base);
            else if (k == 1) snprintf(buf, sizeof buf, "%s%s", base, ext);
            else snprintf(buf, sizeof buf, "%.*s_%d%s", stem, base, k, ext);
            int used = 0;
            for (int j = 0; j < i && !used; j++) used = !strcmp(names[j], buf);
            if (!used) break;
        }
        names[i] = strdup(buf);
        if (!names[i]) s = ote_err(OTE_ENOMEM, "predict: out of memory");
    }
    if (s < 0) {
        for (int i = 0; i < ds->n_images; i++) free(names[i]);
        free(names);
        return s;
    }
    *out = names;
    return 0;
}

static void predict_free_names(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

int predict_check_outputs(const predict_opts *o, const coco_dataset *ds) {
    if (o->save_images) {
        CHECK(predict_mkdirs(o->save_images));
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/.ote-probe-%ld", o->save_images, (long)getpid());
        FILE *f = fopen(probe, "w");
        if (!f) return ote_err(OTE_EIO, "cannot write into %s: %s", o->save_images, strerror(errno));
        fclose(f);
        unlink(probe);
        char **names;
        CHECK(predict_out_names(ds, &names));
        int s = 0;
        for (int i = 0; i < ds->n_images && s >= 0; i++) {
            char out[4200];
            snprintf(out, sizeof out, "%s/%s", o->save_images, names[i]);
            struct stat a, b;
            if (stat(out, &a) == 0 && stat(ds->images[i].path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
                s = ote_err(OTE_EINVAL, "the drawn image %s would replace the input image %s: choose another folder", out,
                            ds->images[i].path);
        }
        predict_free_names(names, ds->n_images);
        CHECK(s);
    }
    if (o->save_detections) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", o->save_detections);
        char *slash = strrchr(dir, '/');
        if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
        else snprintf(dir, sizeof dir, ".");
        struct stat st;
        if (stat(o->save_detections, &st) == 0 && S_ISDIR(st.st_mode))
            return ote_err(OTE_EINVAL, "--save-detections %s is a folder (expected a .json file name)", o->save_detections);
        if (access(dir, W_OK) != 0)
            return ote_err(OTE_EIO, "--save-detections %s: folder %s not writable: %s", o->save_detections, dir,
                           strerror(errno));
    }
    return 0;
}

/* ---- drawing one image ---- */

typedef struct predict_run_state {
    const predict_opts *o;
    coco_dataset *ds;
    const char **cat_names;  /* ds->n_cats */
    char **out_names;        /* ds->n_images, when saving images */
    image_u8 img;
    draw_box *boxes;
    int cap_boxes;
    uint8_t *tall;           /* the image with the legend strip below it (draw_gt) */
    size_t tall_cap;
} predict_run_state;

static int predict_reserve_boxes(predict_run_state *r, int n) {
    if (n <= r->cap_boxes) return 0;
    draw_box *b = realloc(r->boxes, (size_t)n * sizeof *b);
    if (!b) return ote_err(OTE_ENOMEM, "predict: out of memory");
    r->boxes = b;
    r->cap_boxes = n;
    return 0;
}

/* With ground truth: a strip below the image with the key - "ground truth" in green, then the
 * classes of the drawn predictions in their colours (only those, so 80 classes never fill it).
 * *pixels / *out_h receive the taller image (r->tall). */
static int predict_add_legend(predict_run_state *r, const draw_box *pred, int k, const uint8_t **pixels, int *out_h) {
    const image_u8 *img = &r->img;
    int nc = r->ds->n_cats, n = 0;
    const char **texts = malloc((size_t)(nc + 1) * sizeof *texts);
    uint8_t(*cols)[3] = malloc((size_t)(nc + 1) * sizeof *cols);
    int s = texts && cols ? 0 : ote_err(OTE_ENOMEM, "predict: out of memory");
    if (s >= 0) {
        texts[n] = "ground truth";
        draw_gt_colour(cols[n++]);
        for (int c = 0; c < nc; c++) {
            int used = 0;
            for (int j = 0; j < k && !used; j++) used = pred[j].label == c;
            if (!used) continue;
            texts[n] = r->cat_names[c];
            draw_class_colour(c, cols[n++]);
        }
        s = draw_legend_height(img->w, img->h, texts, n);
    }
    if (s >= 0) {
        int h2 = img->h + s;
        size_t need = (size_t)img->w * (size_t)h2 * 3;
        if (need > r->tall_cap) {
            uint8_t *t = realloc(r->tall, need);
            if (!t) s = ote_err(OTE_ENOMEM, "predict: out of memory");
            else r->tall = t, r->tall_cap = need;
        }
        if (s >= 0) {
            memcpy(r->tall, img->data, (size_t)img->w * (size_t)img->h * 3);
            s = draw_legend(r->tall, img->w, h2, img->h, img->h, texts, (const uint8_t(*)[3])cols, n);
            *pixels = r->tall;
            *out_h = h2;
        }
    }
    free(texts);
    free(cols);
    return s < 0 ? s : 0;
}

/* Draws image gi (decoded into r->img) with its detections dets[0..n) and writes it through a
 * temporary file. *drawn receives the number of predictions drawn. */
static int predict_draw_write(predict_run_state *r, int gi, const eval_det *dets, int n, int *drawn) {
    const predict_opts *o = r->o;
    const coco_image *im = &r->ds->images[gi];
    *drawn = 0;
    CHECK(predict_reserve_boxes(r, n + im->n_boxes + 1));
    image_u8 *img = &r->img;
    int n_gt = 0;
    for (int b = 0; o->draw_gt && b < im->n_boxes; b++) {
        const coco_box *g = &r->ds->boxes[im->first_box + b];
        if (!g->iscrowd) r->boxes[n_gt++] = (draw_box){g->x1, g->y1, g->x2, g->y2, g->label, -1.f};
    }
    int k = 0;
    draw_box *pred = r->boxes + n_gt;
    for (int j = 0; j < n; j++)
        if ((double)dets[j].score >= o->score_thr)
            pred[k++] = (draw_box){dets[j].x1, dets[j].y1, dets[j].x2, dets[j].y2, dets[j].label, dets[j].score};
    CHECK(draw_detections(img->data, img->w, img->h, r->boxes, n_gt, pred, k, r->cat_names, r->ds->n_cats));
    *drawn = k;
    const uint8_t *pixels = img->data;
    int out_h = img->h;
    if (o->draw_gt) CHECK(predict_add_legend(r, pred, k, &pixels, &out_h));
    char out[4200];
    snprintf(out, sizeof out, "%s/%s", o->save_images, r->out_names[gi]);
    int s = image_write_rgb(out, pixels, img->w, out_h); /* atomic: temporary, fsync, rename */
    if (s < 0) return ote_err_context(OTE_EIO, "%s: cannot write %s", im->path, out);
    return 0;
}

static void predict_fmt_time(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e8) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

/* "[3/8] a.jpg: 2 boxes (circle 0.97, square 0.91) -> DIR/a.jpg" */
static void predict_log_image(predict_run_state *r, int gi, const eval_det *dets, int n, int drawn) {
    FILE *log = r->o->log;
    fprintf(log, "[%d/%d] %s: %d box%s", gi + 1, r->ds->n_images, r->ds->images[gi].path, drawn, drawn == 1 ? "" : "es");
    int shown = 0;
    /* dets come in descending score order per image from the detector's NMS; list the first few */
    for (int j = 0; j < n && shown < 3; j++) {
        if ((double)dets[j].score < r->o->score_thr) continue;
        fprintf(log, "%s%s %.2f", shown ? ", " : " (", r->cat_names[dets[j].label], (double)dets[j].score);
        shown++;
    }
    if (shown) fprintf(log, "%s)", drawn > shown ? ", ..." : "");
    if (r->out_names) fprintf(log, " -> %s/%s", r->o->save_images, r->out_names[gi]);
    fprintf(log, "\n");
    fflush(log);
}

static void predict_err_line(const predict_opts *o) {
    if (!o->err) return;
    fprintf(o->err, "%s%s\n", o->err_prefix ? o->err_prefix : "", ote_errmsg());
    fflush(o->err);
}

/* One chunk [start, end): check-decode, predict the readable images, draw and write. */
static int predict_chunk(predict_run_state *r, trainer_predictor *p, int start, int end, eval_dets *all,
                         eval_dets *cd, predict_summary *sum) {
    const predict_opts *o = r->o;
    coco_dataset *ds = r->ds;
    coco_image cimg[PREDICT_CHUNK];
    int gidx[PREDICT_CHUNK], k = 0;
    for (int i = start; i < end; i++) {
        if (image_read_rgb(ds->images[i].path, &r->img) < 0) {
            predict_err_line(o);
            sum->n_failed++;
            continue;
        }
        if (r->img.truncated && o->err) {
            fprintf(o->err, "%swarning: %s: truncated image file (the decoder filled the missing part)\n",
                    o->err_prefix ? o->err_prefix : "", ds->images[i].path);
        }
        ds->images[i].width = r->img.w;
        ds->images[i].height = r->img.h;
        cimg[k] = ds->images[i];
        gidx[k++] = i;
    }
    if (k == 0) return 0;
    coco_dataset view = *ds; /* borrows images, boxes and categories */
    view.images = cimg;
    view.n_images = k;
    cd->n = 0;
    CHECK(trainer_predictor_run(p, &view, cd));
    int first = 0;
    for (int j = 0; j < k; j++) {
        int gi = gidx[j], n = 0;
        while (first + n < cd->n && cd->d[first + n].image == j) n++;
        eval_det *dets = cd->d + first;
        first += n;
        for (int t = 0; t < n; t++) {
            dets[t].image = gi;
            CHECK(eval_dets_push(all, dets[t]));
        }
        int drawn = 0;
        for (int t = 0; t < n; t++) drawn += (double)dets[t].score >= o->score_thr;
        if (o->save_images) {
            int s = image_read_rgb(ds->images[gi].path, &r->img);
            if (s >= 0) s = predict_draw_write(r, gi, dets, n, &drawn);
            if (s < 0) {
                predict_err_line(o);
                sum->n_failed++;
                continue;
            }
        }
        sum->n_ok++;
        sum->n_drawn += drawn;
        if (o->log && ds->n_images <= PREDICT_LIST_MAX) predict_log_image(r, gi, dets, n, drawn);
    }
    return 0;
}

int predict_run(const predict_opts *o, coco_dataset *ds, predict_summary *sum) {
    memset(sum, 0, sizeof *sum);
    sum->n_images = ds->n_images;
    double t0 = predict_now();
    predict_run_state r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.ds = ds;
    eval_dets all, cd;
    eval_dets_init(&all);
    eval_dets_init(&cd);
    trainer_predictor *p = NULL;
    int s = trainer_predictor_open_file(&p, &o->cfg, o->weights, ds->n_cats, o->nthreads);
    if (s >= 0) {
        r.cat_names = calloc((size_t)(ds->n_cats > 0 ? ds->n_cats : 1), sizeof *r.cat_names);
        if (!r.cat_names) s = ote_err(OTE_ENOMEM, "predict: out of memory");
        for (int k = 0; s >= 0 && k < ds->n_cats; k++) r.cat_names[k] = ds->cats[k].name ? ds->cats[k].name : "?";
    }
    if (s >= 0 && o->save_images) s = predict_out_names(ds, &r.out_names);
    double last_log = t0;
    int last_done = 0;
    for (int start = 0; s >= 0 && start < ds->n_images; start += PREDICT_CHUNK) {
        int end = start + PREDICT_CHUNK < ds->n_images ? start + PREDICT_CHUNK : ds->n_images;
        s = predict_chunk(&r, p, start, end, &all, &cd, sum);
        double tnow = predict_now();
        /* many images: a line at every further 10% or every 10 s */
        if (s >= 0 && o->log && ds->n_images > PREDICT_LIST_MAX &&
            (end == ds->n_images || (end - last_done) * 10 >= ds->n_images || tnow - last_log >= 10)) {
            char eta[32];
            double rate = end / (tnow - t0 > 1e-9 ? tnow - t0 : 1e-9);
            predict_fmt_time((ds->n_images - end) / rate, eta, sizeof eta);
            fprintf(o->log, "predicted %d/%d images (%d failed), %.1f img/s, eta %s\n", end, ds->n_images,
                    sum->n_failed, rate, eta);
            fflush(o->log);
            last_log = tnow;
            last_done = end;
        }
    }
    sum->n_dets = all.n;
    if (s >= 0 && o->save_detections) s = eval_save_results(o->save_detections, ds, all.d, all.n);
    sum->seconds = predict_now() - t0;
    trainer_predictor_close(p);
    predict_free_names(r.out_names, ds->n_images);
    free(r.cat_names);
    free(r.boxes);
    free(r.tall);
    image_u8_free(&r.img);
    eval_dets_free(&all);
    eval_dets_free(&cd);
    return s;
}

int predict_samples(const config_template *cfg, const char *weights, const coco_dataset *val, int n, double score_thr,
                    const char *dir, int *written) {
    *written = 0;
    coco_dataset sub;
    CHECK(coco_subset(&sub, val, n, cfg->seed));
    predict_opts o;
    memset(&o, 0, sizeof o);
    o.cfg = *cfg;
    o.weights = weights;
    o.score_thr = score_thr;
    o.save_images = dir;
    o.draw_gt = 1;
    predict_summary sum;
    int s = predict_check_outputs(&o, &sub);
    if (s >= 0) s = predict_run(&o, &sub, &sum);
    if (s >= 0 && sum.n_failed)
        s = ote_err(OTE_EIO, "%d of %d sample images could not be read or written", sum.n_failed, sum.n_images);
    if (s >= 0) *written = sum.n_ok;
    coco_free(&sub);
    return s;
}

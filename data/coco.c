/* coco.c - COCO JSON loading (cJSON) into the coco_dataset contract of coco.h, and seeded subsets.
 *
 * Owns every array and string of a coco_dataset it fills; coco_free releases them. Invariants
 * after a successful load: n_images > 0; boxes are grouped by image in image order (then in
 * annotation order); every box has x1 < x2, y1 < y2 inside [0,width]x[0,height] of its image and
 * a label in 0..n_cats-1; cats are sorted by ascending id with unique ids and names.
 * Library code: never prints; problems with single boxes are counted warnings, everything else is
 * a negative status whose message names the file and the entry.
 */
#include "data/coco.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/rng.h"
#include "engine/ote.h"

/* ---------- small helpers ---------- */

static char *coco_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* Splits a comma-separated list in place into at most `max` trimmed items; returns the count. */
static int coco_split_csv(char *s, char **items, int max) {
    int n = 0;
    char *p = s;
    while (p && *p && n < max + 1) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        while (*p == ' ' || *p == '\t') p++;
        size_t len = strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) p[--len] = 0;
        if (len > 0) {
            if (n == max) return max + 1;
            items[n++] = p;
        }
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

static int coco_read_file(const char *path, char **out, size_t *len) {
    /* checked before fopen: a directory would "open" with a size of LONG_MAX, and opening a FIFO
     * blocks until a writer appears */
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return S_ISDIR(sb.st_mode) ? ote_err(OTE_EIO, "coco: %s: is a directory, not an annotation file", path)
                                   : ote_err(OTE_EIO, "coco: %s: not a regular file (a FIFO, socket or device)", path);
    FILE *f = fopen(path, "rb");
    if (!f) return ote_err(OTE_EIO, "coco: %s: cannot open annotation file: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return ote_err(OTE_EIO, "coco: %s: cannot seek", path);
    }
    long n = ftell(f);
    if (n < 0) {
        fclose(f);
        return ote_err(OTE_EIO, "coco: %s: cannot tell size", path);
    }
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return ote_err(OTE_ENOMEM, "coco: %s: cannot allocate %ld bytes", path, n);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(buf);
        return ote_err(OTE_EIO, "coco: %s: short read (%zu of %ld bytes)", path, got, n);
    }
    buf[n] = 0;
    *out = buf;
    *len = (size_t)n;
    return OTE_OK;
}

/* Reads a required number; returns 0 or an error naming file/section/index/key. */
static int coco_get_num(const cJSON *obj, const char *key, double *v, const char *file,
                        const char *section, int idx) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return ote_err(OTE_EPARSE, "coco: %s: %s[%d]: missing required field '%s'", file, section, idx, key);
    if (!cJSON_IsNumber(it))
        return ote_err(OTE_EPARSE, "coco: %s: %s[%d]: field '%s' is not a number", file, section, idx, key);
    *v = it->valuedouble;
    if (!isfinite(*v))
        return ote_err(OTE_EPARSE, "coco: %s: %s[%d]: field '%s' is not finite", file, section, idx, key);
    return OTE_OK;
}

static int coco_get_id(const cJSON *obj, const char *key, long *v, const char *file, const char *section,
                       int idx) {
    double x;
    CHECK(coco_get_num(obj, key, &x, file, section, idx));
    if (x != floor(x) || fabs(x) > 9e15)
        return ote_err(OTE_EPARSE, "coco: %s: %s[%d]: field '%s' = %g is not an integer id", file, section, idx,
                       key, x);
    *v = (long)x;
    return OTE_OK;
}

static int coco_get_str(const cJSON *obj, const char *key, const char **v, const char *file,
                        const char *section, int idx) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return ote_err(OTE_EPARSE, "coco: %s: %s[%d]: missing required field '%s'", file, section, idx, key);
    if (!cJSON_IsString(it) || !it->valuestring)
        return ote_err(OTE_EPARSE, "coco: %s: %s[%d]: field '%s' is not a string", file, section, idx, key);
    *v = it->valuestring;
    return OTE_OK;
}

typedef struct coco_id_index {
    long id;
    int idx;
} coco_id_index;

static int coco_cmp_id_index(const void *a, const void *b) {
    const coco_id_index *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static int coco_find_id(const coco_id_index *t, int n, long id) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (t[mid].id == id) return t[mid].idx;
        if (t[mid].id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static void coco_warn(coco_dataset *d, coco_warn_kind k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void coco_warn(coco_dataset *d, coco_warn_kind k, const char *fmt, ...) {
    if (d->n_warn[k]++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->warn_first[k], sizeof d->warn_first[k], fmt, ap);
        va_end(ap);
    }
    if (k == COCO_WARN_CLIPPED) d->n_warn_clipped++;
    else d->n_warn_dropped++;
}

/* ---------- growable arrays used while loading ---------- */

typedef struct coco_cat_acc { /* union of categories by name */
    long id;
    char *name;
    const char *first_file;
} coco_cat_acc;

typedef struct coco_build {
    coco_image *images;
    int n_images, cap_images;
    coco_box *boxes; /* in annotation order; grouped at the end */
    int *box_image;  /* image index of each box */
    int n_boxes, cap_boxes;
    coco_cat_acc *cats;
    int n_cats, cap_cats;
    int names_optional; /* coco_load_gt: images need no file_name */
} coco_build;

static int coco_grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return OTE_OK;
    int nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return ote_err(OTE_ENOMEM, "coco: cannot grow an array to %d entries", nc);
    *p = q;
    *cap = nc;
    return OTE_OK;
}

static void coco_build_free(coco_build *b) {
    for (int i = 0; i < b->n_images; i++) {
        free(b->images[i].file_name);
        free(b->images[i].path);
    }
    free(b->images);
    free(b->boxes);
    free(b->box_image);
    for (int i = 0; i < b->n_cats; i++) free(b->cats[i].name);
    free(b->cats);
    memset(b, 0, sizeof *b);
}

/* ---------- one file ---------- */

/* State of one annotation file while it is parsed into the build: id indexes sorted by id (image
 * id -> build image index, category id -> file category index) and the category map. */
typedef struct coco_file {
    coco_build *b;
    coco_dataset *d; /* receives the box warnings */
    const char *file, *root;
    coco_id_index *img_ids, *cat_ids;
    int *cat_map; /* file category index -> union index */
    int n_img, n_cat;
    int first_image; /* build index of the file's images[0] */
} coco_file;

/* Reads and parses file; a syntax error names the line and column where the parser stopped. */
static int coco_parse_json(const char *file, cJSON **out) {
    char *text = NULL;
    size_t len = 0;
    CHECK(coco_read_file(file, &text, &len));
    const char *end = NULL;
    cJSON *js = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!js) {
        size_t off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (text[i] == '\n') line++, col = 1;
            else col++;
        }
        free(text);
        return ote_err(OTE_EPARSE, "coco: %s: malformed JSON near line %d column %d (byte %zu)", file, line, col,
                       off);
    }
    free(text);
    *out = js;
    return OTE_OK;
}

/* Checks the top level (an object with 'images', 'categories' and optionally 'annotations') and
 * returns the three arrays (*anns may be NULL or a JSON null). */
static int coco_top_level(const coco_file *cf, const cJSON *js, const cJSON **images, const cJSON **anns,
                          const cJSON **cats) {
    const char *file = cf->file;
    if (!cJSON_IsObject(js)) return ote_err(OTE_EPARSE, "coco: %s: top level is not a JSON object", file);
    *images = cJSON_GetObjectItemCaseSensitive(js, "images");
    *anns = cJSON_GetObjectItemCaseSensitive(js, "annotations");
    *cats = cJSON_GetObjectItemCaseSensitive(js, "categories");
    if (!*images || !cJSON_IsArray(*images))
        return ote_err(OTE_EPARSE, "coco: %s: missing required array 'images'", file);
    if (!*cats || !cJSON_IsArray(*cats))
        return ote_err(OTE_EPARSE, "coco: %s: missing required array 'categories'", file);
    if (*anns && !cJSON_IsArray(*anns) && !cJSON_IsNull(*anns))
        return ote_err(OTE_EPARSE, "coco: %s: 'annotations' is not an array", file);
    if (cJSON_GetArraySize(*images) == 0)
        return ote_err(OTE_EPARSE, "coco: %s: 'images' is empty (no images in this dataset)", file);
    return OTE_OK;
}

/* The union index of category (id, name) of categories[i], added to the build when its name is
 * new; the ids of different names must not clash across files. */
static int coco_union_category(coco_file *cf, int i, long id, const char *name, int *out) {
    coco_build *b = cf->b;
    const char *file = cf->file;
    int u = -1;
    for (int j = 0; j < b->n_cats; j++)
        if (strcmp(b->cats[j].name, name) == 0) u = j;
    if (u < 0) {
        for (int j = 0; j < b->n_cats; j++)
            if (b->cats[j].id == id)
                return ote_err(OTE_EPARSE,
                               "coco: %s: categories[%d]: id %ld is named '%s' here but '%s' in %s "
                               "(several files are matched by name; ids must not clash)",
                               file, i, id, name, b->cats[j].name, b->cats[j].first_file);
        CHECK(coco_grow((void **)&b->cats, &b->cap_cats, b->n_cats + 1, sizeof *b->cats));
        u = b->n_cats;
        b->cats[u].id = id;
        b->cats[u].name = coco_strdup(name);
        b->cats[u].first_file = file;
        if (!b->cats[u].name) return ote_err(OTE_ENOMEM, "coco: %s: out of memory", file);
        b->n_cats++;
    }
    *out = u;
    return OTE_OK;
}

/* The 'categories' array into cat_ids (then sorted by id) and cat_map; ids and names are unique
 * within a file. */
static int coco_parse_categories(coco_file *cf, const cJSON *cats) {
    const char *file = cf->file;
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cats) {
        long id;
        const char *name;
        if (!cJSON_IsObject(c)) return ote_err(OTE_EPARSE, "coco: %s: categories[%d]: not an object", file, i);
        CHECK(coco_get_id(c, "id", &id, file, "categories", i));
        CHECK(coco_get_str(c, "name", &name, file, "categories", i));
        for (int j = 0; j < i; j++) {
            if (cf->cat_ids[j].id == id)
                return ote_err(OTE_EPARSE, "coco: %s: categories[%d]: duplicate category id %ld", file, i, id);
            if (strcmp(cf->b->cats[cf->cat_map[j]].name, name) == 0)
                return ote_err(OTE_EPARSE, "coco: %s: categories[%d]: duplicate category name '%s'", file, i,
                               name);
        }
        int u = -1;
        CHECK(coco_union_category(cf, i, id, name, &u));
        cf->cat_ids[i].id = id;
        cf->cat_ids[i].idx = i;
        cf->cat_map[i] = u;
        i++;
    }
    qsort(cf->cat_ids, (size_t)cf->n_cat, sizeof *cf->cat_ids, coco_cmp_id_index);
    return OTE_OK;
}

/* images[i] appended to the build, its path joined to the data root (rl = strlen(root)). */
static int coco_parse_image(coco_file *cf, const cJSON *im, int i, size_t rl) {
    coco_build *b = cf->b;
    const char *file = cf->file, *root = cf->root;
    long id;
    double w, h;
    const char *fn;
    if (!cJSON_IsObject(im)) return ote_err(OTE_EPARSE, "coco: %s: images[%d]: not an object", file, i);
    CHECK(coco_get_id(im, "id", &id, file, "images", i));
    if (b->names_optional && !cJSON_GetObjectItemCaseSensitive(im, "file_name")) fn = "";
    else CHECK(coco_get_str(im, "file_name", &fn, file, "images", i));
    CHECK(coco_get_num(im, "width", &w, file, "images", i));
    CHECK(coco_get_num(im, "height", &h, file, "images", i));
    if (w < 1 || h < 1 || w > 1e6 || h > 1e6 || w != floor(w) || h != floor(h))
        return ote_err(OTE_EPARSE, "coco: %s: images[%d] (id %ld): bad size width=%g height=%g", file, i, id, w,
                       h);
    CHECK(coco_grow((void **)&b->images, &b->cap_images, b->n_images + 1, sizeof *b->images));
    coco_image *ci = &b->images[b->n_images];
    memset(ci, 0, sizeof *ci);
    ci->id = id;
    ci->width = (int)w;
    ci->height = (int)h;
    ci->file_name = coco_strdup(fn);
    size_t fl = strlen(fn);
    ci->path = malloc(rl + fl + 2);
    b->n_images++; /* the build owns the strings from here, even on failure */
    if (!ci->file_name || !ci->path) return ote_err(OTE_ENOMEM, "coco: %s: out of memory", file);
    if (rl == 0 || fn[0] == '/') memcpy(ci->path, fn, fl + 1);
    else {
        memcpy(ci->path, root, rl);
        size_t o = rl;
        if (root[rl - 1] != '/') ci->path[o++] = '/';
        memcpy(ci->path + o, fn, fl + 1);
    }
    cf->img_ids[i].id = id;
    cf->img_ids[i].idx = b->n_images - 1;
    return OTE_OK;
}

/* The 'images' array into the build and img_ids (then sorted by id); image ids are unique
 * within a file. */
static int coco_parse_images(coco_file *cf, const cJSON *images) {
    int i = 0;
    const cJSON *im;
    size_t rl = cf->root ? strlen(cf->root) : 0;
    cJSON_ArrayForEach(im, images) {
        CHECK(coco_parse_image(cf, im, i, rl));
        i++;
    }
    qsort(cf->img_ids, (size_t)cf->n_img, sizeof *cf->img_ids, coco_cmp_id_index);
    const coco_id_index *ids = cf->img_ids;
    for (int k = 1; k < cf->n_img; k++)
        if (ids[k].id == ids[k - 1].id)
            return ote_err(OTE_EPARSE, "coco: %s: images[%d]: duplicate image id %ld (first at images[%d])",
                           cf->file, ids[k].idx - cf->first_image, ids[k].id, ids[k - 1].idx - cf->first_image);
    return OTE_OK;
}

/* The fields of one annotation as read, before they are checked against the images. */
typedef struct coco_ann {
    long image_id, cat_id, ann_id;
    double bb[4]; /* x, y, w, h */
    int iscrowd;
} coco_ann;

/* Reads annotations[i]'s fields into *an; a field of the wrong type is an error. */
static int coco_read_annotation(const coco_file *cf, const cJSON *a, int i, coco_ann *an) {
    const char *file = cf->file;
    /* Annotations without an id get 1-based ids: pycocotools treats an id of 0 as "no
     * match" when it records matches, so a default of 0 would turn a true positive into
     * a miss in COCO evaluation. */
    an->ann_id = i + 1;
    if (!cJSON_IsObject(a)) return ote_err(OTE_EPARSE, "coco: %s: annotations[%d]: not an object", file, i);
    if (cJSON_GetObjectItemCaseSensitive(a, "id")) CHECK(coco_get_id(a, "id", &an->ann_id, file, "annotations", i));
    CHECK(coco_get_id(a, "image_id", &an->image_id, file, "annotations", i));
    CHECK(coco_get_id(a, "category_id", &an->cat_id, file, "annotations", i));
    const cJSON *bbox = cJSON_GetObjectItemCaseSensitive(a, "bbox");
    if (!bbox)
        return ote_err(OTE_EPARSE, "coco: %s: annotations[%d] (id %ld): missing required field 'bbox'", file, i,
                       an->ann_id);
    if (!cJSON_IsArray(bbox) || cJSON_GetArraySize(bbox) != 4)
        return ote_err(OTE_EPARSE, "coco: %s: annotations[%d] (id %ld): 'bbox' is not an array of 4 numbers", file,
                       i, an->ann_id);
    for (int k = 0; k < 4; k++) {
        const cJSON *v = cJSON_GetArrayItem(bbox, k);
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return ote_err(OTE_EPARSE, "coco: %s: annotations[%d] (id %ld): bbox[%d] is not a finite number", file,
                           i, an->ann_id, k);
        an->bb[k] = v->valuedouble;
    }
    an->iscrowd = 0;
    const cJSON *ic = cJSON_GetObjectItemCaseSensitive(a, "iscrowd");
    if (ic && !cJSON_IsNull(ic)) {
        if (cJSON_IsBool(ic)) an->iscrowd = cJSON_IsTrue(ic);
        else if (cJSON_IsNumber(ic)) an->iscrowd = ic->valuedouble != 0;
        else
            return ote_err(OTE_EPARSE, "coco: %s: annotations[%d] (id %ld): 'iscrowd' is not 0/1", file, i,
                           an->ann_id);
    }
    return OTE_OK;
}

/* Appends annotations[i] (read into *an) to the build's boxes, clipped to its image; a box with an
 * unknown image or category, a non-positive size or outside its image is a counted warning and
 * dropped. */
static int coco_add_annotation(coco_file *cf, const cJSON *a, int i, const coco_ann *an) {
    coco_build *b = cf->b;
    coco_dataset *d = cf->d;
    const char *file = cf->file;
    const double *bb = an->bb;
    const long ann_id = an->ann_id, image_id = an->image_id;
    int im = coco_find_id(cf->img_ids, cf->n_img, image_id);
    int ck = coco_find_id(cf->cat_ids, cf->n_cat, an->cat_id);
    if (im < 0) {
        coco_warn(d, COCO_WARN_UNKNOWN_IMAGE, "%s: annotations[%d] (id %ld): unknown image_id %ld", file, i, ann_id,
                  image_id);
        return OTE_OK;
    }
    if (ck < 0) {
        coco_warn(d, COCO_WARN_UNKNOWN_CAT, "%s: annotations[%d] (id %ld): unknown category_id %ld", file, i, ann_id,
                  an->cat_id);
        return OTE_OK;
    }
    if (!(bb[2] > 0) || !(bb[3] > 0)) {
        coco_warn(d, COCO_WARN_BAD_SIZE, "%s: annotations[%d] (id %ld): bbox w=%g h=%g is not positive", file, i,
                  ann_id, bb[2], bb[3]);
        return OTE_OK;
    }
    const coco_image *ci = &b->images[im];
    double x1 = bb[0], y1 = bb[1], x2 = bb[0] + bb[2], y2 = bb[1] + bb[3];
    double cx1 = fmax(x1, 0), cy1 = fmax(y1, 0), cx2 = fmin(x2, ci->width), cy2 = fmin(y2, ci->height);
    if (!(cx2 > cx1) || !(cy2 > cy1)) {
        coco_warn(d, COCO_WARN_OUTSIDE,
                  "%s: annotations[%d] (id %ld): bbox [%g,%g,%g,%g] lies outside image %ld (%dx%d)", file, i,
                  ann_id, bb[0], bb[1], bb[2], bb[3], image_id, ci->width, ci->height);
        return OTE_OK;
    }
    if (cx1 != x1 || cy1 != y1 || cx2 != x2 || cy2 != y2)
        coco_warn(d, COCO_WARN_CLIPPED,
                  "%s: annotations[%d] (id %ld): bbox [%g,%g,%g,%g] crosses the border of image %ld (%dx%d)", file,
                  i, ann_id, bb[0], bb[1], bb[2], bb[3], image_id, ci->width, ci->height);
    double area = bb[2] * bb[3];
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(a, "area");
    if (ar && cJSON_IsNumber(ar) && isfinite(ar->valuedouble)) area = ar->valuedouble;
    CHECK(coco_grow((void **)&b->boxes, &b->cap_boxes, b->n_boxes + 1, sizeof *b->boxes));
    int cap2 = b->cap_boxes;
    void *q = realloc(b->box_image, sizeof *b->box_image * (size_t)cap2);
    if (!q) return ote_err(OTE_ENOMEM, "coco: %s: out of memory", file);
    b->box_image = q;
    coco_box *bx = &b->boxes[b->n_boxes];
    bx->x1 = (float)cx1;
    bx->y1 = (float)cy1;
    bx->x2 = (float)cx2;
    bx->y2 = (float)cy2;
    bx->label = cf->cat_map[ck]; /* union index for now; remapped to the sorted label later */
    bx->iscrowd = an->iscrowd;
    bx->area = area;
    bx->ann_id = ann_id;
    b->box_image[b->n_boxes] = im;
    b->n_boxes++;
    return OTE_OK;
}

/* The 'annotations' array into the build's boxes, in annotation order. */
static int coco_parse_annotations(coco_file *cf, const cJSON *anns) {
    int i = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, anns) {
        coco_ann an;
        CHECK(coco_read_annotation(cf, a, i, &an));
        CHECK(coco_add_annotation(cf, a, i, &an));
        i++;
    }
    return OTE_OK;
}

/* One annotation file into the build: categories (united by name), images, then annotations. */
static int coco_parse_file(coco_build *b, coco_dataset *d, const char *file, const char *root) {
    cJSON *js = NULL;
    CHECK(coco_parse_json(file, &js));
    coco_file cf = {.b = b, .d = d, .file = file, .root = root, .first_image = b->n_images};
    const cJSON *images = NULL, *anns = NULL, *cats = NULL;
    int st = coco_top_level(&cf, js, &images, &anns, &cats);
    if (st < 0) goto done;
    cf.n_img = cJSON_GetArraySize(images);
    cf.n_cat = cJSON_GetArraySize(cats);
    cf.cat_ids = malloc(sizeof *cf.cat_ids * (size_t)(cf.n_cat + 1));
    cf.cat_map = malloc(sizeof *cf.cat_map * (size_t)(cf.n_cat + 1));
    cf.img_ids = malloc(sizeof *cf.img_ids * (size_t)cf.n_img);
    if (!cf.cat_ids || !cf.cat_map || !cf.img_ids) {
        st = ote_err(OTE_ENOMEM, "coco: %s: out of memory", file);
        goto done;
    }
    if ((st = coco_parse_categories(&cf, cats)) < 0) goto done;
    if ((st = coco_parse_images(&cf, images)) < 0) goto done;
    if (anns && cJSON_IsArray(anns)) st = coco_parse_annotations(&cf, anns);
done:
    free(cf.img_ids);
    free(cf.cat_ids);
    free(cf.cat_map);
    cJSON_Delete(js);
    return st;
}

static int coco_cmp_cat(const void *a, const void *b) {
    const coco_cat_acc *x = a, *y = b;
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* ---------- public ---------- */

void coco_free(coco_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n_images; i++) {
        free(d->images[i].file_name);
        free(d->images[i].path);
    }
    free(d->images);
    free(d->boxes);
    for (int i = 0; i < d->n_cats; i++) free(d->cats[i].name);
    free(d->cats);
    memset(d, 0, sizeof *d);
}

#define COCO_MAX_FILES 64

static int coco_load_impl(coco_dataset *d, const char *ann_files_csv, const char *data_roots_csv, int names_optional);

int coco_load(coco_dataset *d, const char *ann_files_csv, const char *data_roots_csv) {
    return coco_load_impl(d, ann_files_csv, data_roots_csv, 0);
}

int coco_load_gt(coco_dataset *d, const char *ann_files_csv) { return coco_load_impl(d, ann_files_csv, "", 1); }

static int coco_load_impl(coco_dataset *d, const char *ann_files_csv, const char *data_roots_csv, int names_optional) {
    memset(d, 0, sizeof *d);
    if (!ann_files_csv) return ote_err(OTE_EINVAL, "coco: no annotation file given");
    char *files_s = coco_strdup(ann_files_csv);
    char *roots_s = coco_strdup(data_roots_csv ? data_roots_csv : "");
    char *files[COCO_MAX_FILES], *roots[COCO_MAX_FILES];
    coco_build b;
    memset(&b, 0, sizeof b);
    b.names_optional = names_optional;
    int st = OTE_OK;
    if (!files_s || !roots_s) {
        st = ote_err(OTE_ENOMEM, "coco: out of memory");
        goto out;
    }
    int nf = coco_split_csv(files_s, files, COCO_MAX_FILES);
    int nr = coco_split_csv(roots_s, roots, COCO_MAX_FILES);
    if (nf == 0) {
        st = ote_err(OTE_EINVAL, "coco: annotation file list '%s' is empty", ann_files_csv);
        goto out;
    }
    if (nf > COCO_MAX_FILES || nr > COCO_MAX_FILES) {
        st = ote_err(OTE_EINVAL, "coco: more than %d annotation files or data roots", COCO_MAX_FILES);
        goto out;
    }
    if (nr > 1 && nr != nf) {
        st = ote_err(OTE_EINVAL, "coco: %d annotation files but %d data roots ('%s'): give one root or one per file",
                     nf, nr, data_roots_csv);
        goto out;
    }
    for (int f = 0; f < nf; f++) {
        const char *root = nr == 0 ? "" : roots[nr == 1 ? 0 : f];
        if ((st = coco_parse_file(&b, d, files[f], root)) < 0) goto out;
    }
    if (b.n_cats == 0) { /* nothing to train or score (and no label order to build) */
        st = ote_err(OTE_EPARSE, "coco: %s: 'categories' is empty (a dataset needs at least one class)", ann_files_csv);
        goto out;
    }
    /* Labels: categories sorted by id (mmdetection's cat_ids order), then contiguous. */
    int *rank = malloc(sizeof *rank * (size_t)(b.n_cats + 1));
    coco_cat_acc *sorted = malloc(sizeof *sorted * (size_t)(b.n_cats + 1));
    if (!rank || !sorted) {
        free(rank);
        free(sorted);
        st = ote_err(OTE_ENOMEM, "coco: out of memory");
        goto out;
    }
    memcpy(sorted, b.cats, sizeof *sorted * (size_t)b.n_cats);
    qsort(sorted, (size_t)b.n_cats, sizeof *sorted, coco_cmp_cat);
    for (int u = 0; u < b.n_cats; u++)
        for (int k = 0; k < b.n_cats; k++)
            if (sorted[k].name == b.cats[u].name) rank[u] = k;
    d->cats = calloc((size_t)(b.n_cats + 1), sizeof *d->cats);
    d->images = b.images;
    d->n_images = b.n_images;
    d->boxes = malloc(sizeof *d->boxes * (size_t)(b.n_boxes + 1));
    if (!d->cats || !d->boxes) {
        free(rank);
        free(sorted);
        st = ote_err(OTE_ENOMEM, "coco: out of memory");
        b.images = NULL;
        b.n_images = 0;
        goto out;
    }
    for (int k = 0; k < b.n_cats; k++) {
        d->cats[k].id = sorted[k].id;
        d->cats[k].name = sorted[k].name; /* ownership moves to d */
    }
    d->n_cats = b.n_cats;
    free(sorted);
    /* Group boxes by image with a stable counting sort. */
    for (int i = 0; i < d->n_images; i++) d->images[i].n_boxes = 0;
    for (int k = 0; k < b.n_boxes; k++) d->images[b.box_image[k]].n_boxes++;
    int acc = 0;
    for (int i = 0; i < d->n_images; i++) {
        d->images[i].first_box = acc;
        acc += d->images[i].n_boxes;
    }
    int *fill = calloc((size_t)d->n_images, sizeof *fill);
    if (!fill) {
        free(rank);
        st = ote_err(OTE_ENOMEM, "coco: out of memory");
        b.images = NULL;
        b.n_images = 0;
        for (int k = 0; k < b.n_cats; k++) b.cats[k].name = NULL;
        goto out;
    }
    for (int k = 0; k < b.n_boxes; k++) {
        int im = b.box_image[k];
        coco_box bx = b.boxes[k];
        bx.label = rank[bx.label];
        d->boxes[d->images[im].first_box + fill[im]++] = bx;
    }
    d->n_boxes = b.n_boxes;
    free(fill);
    free(rank);
    /* Ownership of images and names moved to d. */
    b.images = NULL;
    b.n_images = 0;
    for (int k = 0; k < b.n_cats; k++) b.cats[k].name = NULL;
out:
    coco_build_free(&b);
    free(files_s);
    free(roots_s);
    if (st < 0) coco_free(d);
    return st;
}

int coco_warning_summary(const coco_dataset *d, char *buf, size_t n) {
    static const char *const what[COCO_WARN_KINDS] = {
        "dropped (non-positive size)", "clipped to the image", "dropped (outside the image)",
        "dropped (unknown image_id)", "dropped (unknown category_id)"};
    int total = 0;
    for (int k = 0; k < COCO_WARN_KINDS; k++) total += d->n_warn[k];
    if (n == 0) return total;
    buf[0] = 0;
    if (total == 0) return 0;
    size_t o = 0;
    int w = snprintf(buf, n, "coco: %d box warning%s:", total, total == 1 ? "" : "s");
    o = w < 0 ? 0 : (size_t)w;
    for (int k = 0; k < COCO_WARN_KINDS && o < n; k++) {
        if (!d->n_warn[k]) continue;
        w = snprintf(buf + o, n - o, " %d %s (first: %s);", d->n_warn[k], what[k], d->warn_first[k]);
        if (w < 0) break;
        o += (size_t)w;
    }
    return total;
}

int coco_max_boxes_per_image(const coco_dataset *d, int non_crowd_only) {
    int m = 0;
    for (int i = 0; i < d->n_images; i++) {
        int c = 0;
        for (int k = 0; k < d->images[i].n_boxes; k++)
            if (!non_crowd_only || !d->boxes[d->images[i].first_box + k].iscrowd) c++;
        if (c > m) m = c;
    }
    return m;
}

int coco_subset(coco_dataset *dst, const coco_dataset *src, int n_keep, unsigned long long seed) {
    memset(dst, 0, sizeof *dst);
    if (src->n_images <= 0) return ote_err(OTE_EINVAL, "coco: subset of an empty dataset");
    if (n_keep < 1) return ote_err(OTE_EINVAL, "coco: subset size %d must be at least 1", n_keep);
    if (n_keep > src->n_images) n_keep = src->n_images;
    int *perm = malloc(sizeof *perm * (size_t)src->n_images);
    char *keep = calloc((size_t)src->n_images, 1);
    if (!perm || !keep) {
        free(perm);
        free(keep);
        return ote_err(OTE_ENOMEM, "coco: out of memory");
    }
    for (int i = 0; i < src->n_images; i++) perm[i] = i;
    rng r;
    rng_seed(&r, (uint64_t)seed);
    rng_shuffle_int(&r, perm, src->n_images);
    int nb = 0;
    for (int i = 0; i < n_keep; i++) {
        keep[perm[i]] = 1;
        nb += src->images[perm[i]].n_boxes;
    }
    free(perm);
    int st = OTE_OK;
    dst->images = calloc((size_t)n_keep, sizeof *dst->images);
    dst->boxes = malloc(sizeof *dst->boxes * (size_t)(nb + 1));
    dst->cats = calloc((size_t)src->n_cats + 1, sizeof *dst->cats);
    if (!dst->images || !dst->boxes || !dst->cats) {
        st = ote_err(OTE_ENOMEM, "coco: out of memory");
        goto out;
    }
    for (int k = 0; k < src->n_cats; k++) {
        dst->cats[k].id = src->cats[k].id;
        dst->cats[k].name = coco_strdup(src->cats[k].name);
        dst->n_cats++;
        if (!dst->cats[k].name) {
            st = ote_err(OTE_ENOMEM, "coco: out of memory");
            goto out;
        }
    }
    for (int i = 0; i < src->n_images; i++) {
        if (!keep[i]) continue;
        const coco_image *s = &src->images[i];
        coco_image *t = &dst->images[dst->n_images++];
        *t = *s;
        t->file_name = coco_strdup(s->file_name);
        t->path = coco_strdup(s->path);
        t->first_box = dst->n_boxes;
        if (!t->file_name || !t->path) {
            st = ote_err(OTE_ENOMEM, "coco: out of memory");
            goto out;
        }
        memcpy(dst->boxes + dst->n_boxes, src->boxes + s->first_box, sizeof *dst->boxes * (size_t)s->n_boxes);
        dst->n_boxes += s->n_boxes;
    }
out:
    free(keep);
    if (st < 0) coco_free(dst);
    return st;
}

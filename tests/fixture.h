/* fixture.h - header-only reader for the named-array fixtures written by
 * tests/reference/fixture_io.py, plus small comparison helpers shared by the tests.
 *
 * fx_load() reads the whole file; fx_get() finds an array by name (aborting the test with a clear
 * message if it is missing, so a broken fixture can never pass silently). Values are returned as
 * doubles whatever the stored dtype.
 */
#ifndef OTE_TEST_FIXTURE_H
#define OTE_TEST_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fx_array {
    char name[128];
    int ndim;
    long dims[8];
    long numel;
    double *v;
} fx_array;

typedef struct fx_file {
    fx_array *a;
    int n;
} fx_file;

static inline int fx_load(fx_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "fixture: cannot open %s\n", path);
        return -1;
    }
    char line[1024];
    while (fgets(line, sizeof line, fp)) {
        fx_array x;
        memset(&x, 0, sizeof x);
        char dt[8];
        int off = 0;
        if (sscanf(line, "%127s %7s %d%n", x.name, dt, &x.ndim, &off) != 3 || x.ndim < 0 || x.ndim > 8) {
            fprintf(stderr, "fixture: %s: bad header '%s'\n", path, line);
            fclose(fp);
            return -1;
        }
        x.numel = 1;
        char *p = line + off;
        for (int i = 0; i < x.ndim; i++) {
            x.dims[i] = strtol(p, &p, 10);
            x.numel *= x.dims[i];
        }
        size_t esz = strcmp(dt, "f32") == 0 ? 4 : 8;
        unsigned char *raw = malloc((size_t)x.numel * esz + 1);
        x.v = malloc((size_t)x.numel * sizeof(double) + 1);
        if (fread(raw, esz, (size_t)x.numel, fp) != (size_t)x.numel) {
            fprintf(stderr, "fixture: %s: truncated array %s\n", path, x.name);
            free(raw);
            free(x.v);
            fclose(fp);
            return -1;
        }
        for (long i = 0; i < x.numel; i++) {
            if (esz == 4) {
                float v;
                memcpy(&v, raw + 4 * i, 4);
                x.v[i] = v;
            } else if (strcmp(dt, "f64") == 0) {
                double v;
                memcpy(&v, raw + 8 * i, 8);
                x.v[i] = v;
            } else {
                int64_t v;
                memcpy(&v, raw + 8 * i, 8);
                x.v[i] = (double)v;
            }
        }
        free(raw);
        f->a = realloc(f->a, (size_t)(f->n + 1) * sizeof *f->a);
        f->a[f->n++] = x;
    }
    fclose(fp);
    return f->n > 0 ? 0 : -1;
}

static inline const fx_array *fx_find(const fx_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->a[i].name, name) == 0) return &f->a[i];
    return NULL;
}

static inline const fx_array *fx_get(const fx_file *f, const char *name) {
    const fx_array *a = fx_find(f, name);
    if (!a) {
        fprintf(stderr, "FAIL: fixture array '%s' missing\n", name);
        exit(1);
    }
    return a;
}

static inline void fx_free(fx_file *f) {
    for (int i = 0; i < f->n; i++) free(f->a[i].v);
    free(f->a);
    memset(f, 0, sizeof *f);
}

/* Largest relative error max|a-b| / max(max|b|, floor) over n values. */
static inline double fx_max_rel(const double *a, const double *b, long n, double floor_) {
    double num = 0, den = floor_;
    for (long i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > num || d != d) num = d != d ? (double)INFINITY : d;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / den;
}

#endif

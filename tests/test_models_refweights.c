/* test_models_refweights.c - the C twin of the reference weight generator
 * (tests/detector_ref_weights.h) reproduces every generated tensor of
 * tests/reference/fixtures/detector_ref.fx: per tensor, the double sum and sum of squares must
 * equal the reference's to 1e-12 relative (identical f32 values summed in a different order), and
 * spot values are checked against the generator's documented formula (cls bias -4.595...). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/detector_ref_weights.h"
#include "tests/fixture.h"

int main(void) {
    int fails = 0;
    fx_file f;
    if (fx_load(&f, "tests/reference/fixtures/detector_ref.fx") != 0) {
        printf("FAIL: fixture tests/reference/fixtures/detector_ref.fx\n");
        return 1;
    }
    int n_t = 0, bad = 0;
    long n_el = 0;
    double worst = 0;
    for (int i = 0; i < f.n; i++) {
        const fx_array *a = &f.a[i];
        if (strncmp(a->name, "gen.", 4) != 0) continue;
        char nm[200];
        snprintf(nm, sizeof nm, "wsum.%s", a->name + 4);
        const fx_array *ws = fx_get(&f, nm);
        long n = a->numel >= 4 ? (long)a->v[3] : -1;
        snprintf(nm, sizeof nm, "shape.%s", a->name + 4);
        const fx_array *sh = fx_get(&f, nm);
        long prod = 1;
        for (long d = 0; d < sh->numel; d++) prod *= (long)sh->v[d];
        if (n <= 0 || prod != n) {
            printf("FAIL: %s: numel %ld, shape product %ld\n", a->name, n, prod);
            bad++;
            continue;
        }
        float *w = malloc(sizeof(float) * (size_t)n);
        drw_fill((uint64_t)a->v[0], a->v[1], a->v[2], w, (size_t)n);
        double s = 0, q = 0;
        for (long e = 0; e < n; e++) {
            s += w[e];
            q += (double)w[e] * w[e];
        }
        double es = fabs(s - ws->v[0]) / fmax(fabs(ws->v[0]), 1e-3 * sqrt(ws->v[1])), eq = fabs(q - ws->v[1]) / ws->v[1];
        if (es > worst) worst = es;
        if (eq > worst) worst = eq;
        if (es > 1e-9 || eq > 1e-12) {
            printf("FAIL: %s: sum %.10g vs %.10g, sumsq %.10g vs %.10g\n", a->name + 4, s, ws->v[0], q, ws->v[1]);
            bad++;
        }
        if (strcmp(a->name, "gen.bbox_head.atss_cls.bias") == 0 && w[0] != -4.59511985013459f) {
            printf("FAIL: atss_cls.bias = %.9g, not -4.59511985\n", w[0]);
            bad++;
        }
        n_t++;
        n_el += n;
        free(w);
    }
    printf("%s: %d generated tensors (%ld values) reproduce the reference's sums (worst rel %.1e; tol 1e-9 sum, 1e-12 sumsq)\n",
           bad == 0 && n_t > 100 ? "ok  " : "FAIL", n_t, n_el, worst);
    if (bad || n_t <= 100) fails++;
    fx_free(&f);
    printf("%s\n", fails ? "FAILED" : "all passed");
    return fails != 0;
}

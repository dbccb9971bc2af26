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
#include "tests/expect.h"
#include "tests/fixture.h"

int main(void) {
    fx_file f;
    REQUIRE(fx_load(&f, "tests/reference/fixtures/detector_ref.fx") == 0, "fixture tests/reference/fixtures/detector_ref.fx");
    int n_t = 0, bad_shape = 0, bad_sum = 0, bias_seen = 0;
    long n_el = 0;
    double worst_s = 0, worst_q = 0;
    float bias0 = 0;
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
            printf("     %s: numel %ld, shape product %ld\n", a->name, n, prod);
            bad_shape++;
            continue;
        }
        float *w = malloc(sizeof(float) * (size_t)n);
        drw_fill((uint64_t)a->v[0], a->v[1], a->v[2], w, (size_t)n);
        double s = 0, q = 0;
        for (long e = 0; e < n; e++) {
            s += (double)w[e];
            q += (double)w[e] * (double)w[e];
        }
        double es = fabs(s - ws->v[0]) / fmax(fabs(ws->v[0]), 1e-3 * sqrt(ws->v[1])), eq = fabs(q - ws->v[1]) / ws->v[1];
        if (!(es <= worst_s)) worst_s = es; /* a NaN sticks */
        if (!(eq <= worst_q)) worst_q = eq;
        if (!(es <= 1e-9 && eq <= 1e-12)) {
            printf("     %s: sum %.10g vs %.10g, sumsq %.10g vs %.10g\n", a->name + 4, s, ws->v[0], q, ws->v[1]);
            bad_sum++;
        }
        if (strcmp(a->name, "gen.bbox_head.atss_cls.bias") == 0) bias_seen = 1, bias0 = w[0];
        n_t++;
        n_el += n;
        free(w);
    }
    EXPECT(n_t > 100, "%d generated tensors (%ld values) in the fixture (need > 100)", n_t, n_el);
    EXPECT(bad_shape == 0, "every tensor's numel equals its shape's product (%d differ)", bad_shape);
    EXPECT_ERR(worst_s, 1e-9, "sums reproduce the reference's, worst relative error (%d tensors off)", bad_sum);
    EXPECT_ERR(worst_q, 1e-12, "sums of squares reproduce the reference's, worst relative error");
    EXPECT(bias_seen && bias0 == -4.59511985013459f, "atss_cls.bias[0] = %.9g, the documented -4.59511985", (double)bias0);
    fx_free(&f);
    return expect_finish();
}

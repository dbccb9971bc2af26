/* bench_engine_h2.c - timings of the hand-written engine ops: GroupNorm, nearest 2x upsample
 * (against oneDNN's resampling primitives, to justify the hand-written choice), add (oneDNN
 * binary) and add_accumulate, Scale, and one SGD step over 4M parameters.
 *
 * Reports the best of many runs (onednn-notes §2.10 item 12: the 2-core VM is shared, medians are
 * noisy). Never run by ctest. This program includes dnnl.h only to time oneDNN's resampling as a
 * comparison; product code keeps oneDNN inside engine/.
 * Usage: bench_engine_h2 [reps]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "engine/add.h"
#include "engine/eng.h"
#include "engine/gn.h"
#include "engine/rng.h"
#include "engine/scale.h"
#include "engine/sgd.h"
#include "engine/ote.h"
#include "engine/upsample.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

#define BEST(reps, stmt)                                          \
    ({                                                            \
        double best_ = 1e30;                                      \
        for (int r_ = 0; r_ < 2; r_++) stmt;                      \
        for (int r_ = 0; r_ < (reps); r_++) {                     \
            double t0_ = now_ms();                                \
            stmt;                                                 \
            double t_ = now_ms() - t0_;                           \
            if (t_ < best_) best_ = t_;                           \
        }                                                         \
        best_;                                                    \
    })

static void fill(rng *g, tensor *t) {
    size_t n = t->bytes / sizeof(float);
    for (size_t i = 0; i < n; i++) t->data[i] = (float)rng_normal(g);
}

#define OK(x) ASSERT((x) >= 0)

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 50;
    eng_ctx e;
    OK(eng_init(&e, 0));
    rng g;
    rng_seed(&g, 1);
    printf("threads %d, ISA %s, best of %d\n", e.nthreads, eng_isa_name(), reps);

    /* GroupNorm, N=8, C=64, G=32 at 40x40 (the shape of onednn-notes §2.8) and 80x80. */
    int sizes[2] = {40, 80};
    for (int si = 0; si < 2; si++) {
        int hw = sizes[si];
        arena params, grads, act;
        arena_init(&params, "params"), arena_init(&grads, "grads"), arena_init(&act, "act");
        gn_layer l;
        gn_cfg cfg = {64, 32, 1e-5f};
        OK(gn_layer_init(&l, &e, &cfg, &params, &grads));
        tensor x, y, dy, dx;
        OK(tensor_plan_act(&e, &x, 8, 64, hw, hw, &act));
        OK(tensor_plan_act(&e, &y, 8, 64, hw, hw, &act));
        OK(tensor_plan_act(&e, &dy, 8, 64, hw, hw, &act));
        OK(tensor_plan_act(&e, &dx, 8, 64, hw, hw, &act));
        OK(arena_commit(&params)); OK(arena_commit(&grads)); OK(arena_commit(&act));
        gn_layer_reset_params(&l);
        fill(&g, &x), fill(&g, &dy);
        gn_plan p;
        OK(gn_plan_init(&p, &e, &l, &x, &y, &dy, &dx, 1));
        double tf = BEST(reps, gn_forward(&p, &e));
        double tb = BEST(reps, gn_backward(&p, &e, 0));
        printf("groupnorm N=8 C=64 G=32 %dx%d: forward %.3f ms, backward %.3f ms (%.1f MB per tensor)\n", hw, hw, tf,
               tb, x.bytes / 1e6);
        gn_plan_free(&p);
        tensor_free(&x), tensor_free(&y), tensor_free(&dy), tensor_free(&dx);
        gn_layer_free(&l);
        arena_free(&params), arena_free(&grads), arena_free(&act);
    }

    /* Upsample N=8, C=64, 40x40 -> 80x80: hand-written vs oneDNN resampling. */
    {
        arena act;
        arena_init(&act, "act");
        tensor x, y, dy, dx, y2;
        OK(tensor_plan_act(&e, &x, 8, 64, 40, 40, &act));
        OK(tensor_plan_act(&e, &y, 8, 64, 80, 80, &act));
        OK(tensor_plan_act(&e, &y2, 8, 64, 80, 80, &act));
        OK(tensor_plan_act(&e, &dy, 8, 64, 80, 80, &act));
        OK(tensor_plan_act(&e, &dx, 8, 64, 40, 40, &act));
        OK(arena_commit(&act));
        fill(&g, &x), fill(&g, &dy), fill(&g, &y2);
        upsample_plan p;
        OK(upsample_plan_init(&p, &e, &x, &y, &dy, &dx, 1));
        double tf = BEST(reps, upsample_forward(&p, &e));
        double tfa = BEST(reps, upsample_forward_add(&p, &e));
        double tb = BEST(reps, upsample_backward(&p, &e, 0));

        const dnnl_memory_desc_t *xmd, *ymd;
        OK(eng_check(dnnl_memory_get_memory_desc(x.mem, &xmd), "x md"));
        OK(eng_check(dnnl_memory_get_memory_desc(y.mem, &ymd), "y md"));
        dnnl_resampling_desc_t fd, bd;
        OK(eng_check(dnnl_resampling_forward_desc_init(&fd, dnnl_forward_training, dnnl_resampling_nearest, NULL, xmd, ymd),
                     "resampling fwd desc"));
        OK(eng_check(dnnl_resampling_backward_desc_init(&bd, dnnl_resampling_nearest, NULL, xmd, ymd), "resampling bwd desc"));
        dnnl_primitive_desc_t fpd, bpd;
        dnnl_primitive_t fprim, bprim;
        OK(eng_create_primitive(&e, &fd, NULL, "resampling fwd", &fpd, &fprim));
        OK(eng_create_primitive(&e, &bd, fpd, "resampling bwd", &bpd, &bprim));
        dnnl_memory_t s1, s2;
        OK(eng_scratch_memory(&e, fpd, &s1));
        OK(eng_scratch_memory(&e, bpd, &s2));
        const char *fimpl = NULL, *bimpl = NULL;
        dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &fimpl);
        dnnl_primitive_desc_query(bpd, dnnl_query_impl_info_str, 0, &bimpl);
        dnnl_exec_arg_t fa[3] = {{DNNL_ARG_SRC, x.mem}, {DNNL_ARG_DST, y2.mem}, {DNNL_ARG_SCRATCHPAD, s1}};
        dnnl_exec_arg_t ba[3] = {{DNNL_ARG_DIFF_DST, dy.mem}, {DNNL_ARG_DIFF_SRC, dx.mem}, {DNNL_ARG_SCRATCHPAD, s2}};
        double tof = BEST(reps, eng_exec(&e, fprim, 3, fa, "resampling fwd"));
        double tob = BEST(reps, eng_exec(&e, bprim, 3, ba, "resampling bwd"));
        OK(upsample_forward(&p, &e)); /* y was changed by the forward_add timing */
        OK(eng_exec(&e, fprim, 3, fa, "resampling fwd"));
        int same = memcmp(y.data, y2.data, y.bytes) == 0;
        printf("upsample 2x N=8 C=64 40x40->80x80: hand fwd %.3f ms, fwd_add %.3f ms, bwd %.3f ms | oneDNN fwd %.3f ms "
               "(%s), bwd %.3f ms (%s) | fwd outputs identical: %s\n",
               tf, tfa, tb, tof, fimpl, tob, bimpl, same ? "yes" : "NO");
        dnnl_primitive_destroy(fprim), dnnl_primitive_destroy(bprim);
        dnnl_primitive_desc_destroy(fpd), dnnl_primitive_desc_destroy(bpd);

        /* add (oneDNN binary) and add_accumulate on 80x80 tensors. */
        add_plan ap;
        OK(add_plan_init(&ap, &e, &y, &y2, &dy));
        double ta = BEST(reps, add_forward(&ap, &e));
        double tacc = BEST(reps, add_accumulate(&y, &y2));
        const char *aimpl = NULL;
        dnnl_primitive_desc_query(ap.pd, dnnl_query_impl_info_str, 0, &aimpl);
        printf("add N=8 C=64 80x80: oneDNN binary %.3f ms (%s); add_accumulate (dst += src) %.3f ms\n", ta, aimpl, tacc);
        add_plan_free(&ap);

        /* Scale on the same tensor (the head applies it to 4 channels only; this is an upper bound). */
        arena params, grads;
        arena_init(&params, "params"), arena_init(&grads, "grads");
        scale_layer sl;
        OK(scale_layer_init(&sl, &e, &params, &grads));
        OK(arena_commit(&params)); OK(arena_commit(&grads));
        scale_layer_reset_params(&sl, 1.0f);
        scale_plan sp;
        OK(scale_plan_init(&sp, &e, &sl, &y, &y2, &dy, &dy, 1));
        double tsf = BEST(reps, scale_forward(&sp, &e));
        double tsb = BEST(reps, scale_backward(&sp, &e, 0));
        printf("scale N=8 C=64 80x80: forward %.3f ms, backward %.3f ms\n", tsf, tsb);
        scale_plan_free(&sp);
        scale_layer_free(&sl);
        arena_free(&params), arena_free(&grads);
        upsample_plan_free(&p);
        tensor_free(&x), tensor_free(&y), tensor_free(&y2), tensor_free(&dy), tensor_free(&dx);
        arena_free(&act);
    }

    /* SGD over 4M parameters in 200 tensors. */
    {
        enum { NT = 200 };
        arena params, grads;
        arena_init(&params, "params"), arena_init(&grads, "grads");
        static tensor p[NT], gr[NT];
        for (int t = 0; t < NT; t++) {
            OK(tensor_plan_plain(&e, &p[t], TL_X, 20000, 1, 1, 1, &params));
            OK(tensor_plan_plain(&e, &gr[t], TL_X, 20000, 1, 1, 1, &grads));
        }
        sgd o;
        sgd_init(&o, 0.9f, 1e-4f, &params, &grads);
        for (int t = 0; t < NT; t++) OK(sgd_add(&o, &p[t], &gr[t]));
        OK(arena_commit(&params)); OK(arena_commit(&grads)); OK(sgd_commit(&o));
        double ts = BEST(reps, sgd_step(&o, 0.008));
        printf("sgd step, 4.0M params in %d tensors (%d span(s)): %.3f ms\n", NT, o.n_spans, ts);
        sgd_free(&o);
        for (int t = 0; t < NT; t++) tensor_free(&p[t]), tensor_free(&gr[t]);
        arena_free(&params), arena_free(&grads);
    }
    eng_free(&e);
    return 0;
}

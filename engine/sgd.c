/* sgd.c - torch.optim.SGD (momentum, weight decay) over registered spans of the params arena,
 * warm-up schedule and gradient clipping (see sgd.h). */
#include "engine/sgd.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

#if defined(__x86_64__) && !defined(__clang__)
#define SGD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SGD_CLONES
#endif

#define SGD_CHUNK 8192 /* floats per OpenMP work item */

void sgd_init(sgd *o, float momentum, float weight_decay, arena *params, arena *grads) {
    memset(o, 0, sizeof *o);
    o->momentum = momentum;
    o->weight_decay = weight_decay;
    o->params = params;
    o->grads = grads;
    arena_init(&o->mom, "momentum");
}

int sgd_add(sgd *o, const tensor *param, const tensor *grad) {
    ASSERT(!o->committed);
    if (param->home != o->params || grad->home != o->grads || param->bytes != grad->bytes ||
        param->bytes % sizeof(float) != 0)
        return ote_err(OTE_EINVAL, "sgd: parameter of %zu bytes (arena %s) and gradient of %zu bytes (arena %s) "
                       "do not match the optimiser's arenas", param->bytes,
                       param->home && param->home->name ? param->home->name : "none", grad->bytes,
                       grad->home && grad->home->name ? grad->home->name : "none");
    if (o->n_spans == o->cap_spans) {
        int cap = o->cap_spans ? 2 * o->cap_spans : 64;
        sgd_span *s = realloc(o->spans, (size_t)cap * sizeof *s);
        if (!s) return ote_err(OTE_ENOMEM, "sgd: span list");
        o->spans = s;
        o->cap_spans = cap;
    }
    sgd_span *s = &o->spans[o->n_spans++];
    s->p_off = param->offset;
    s->g_off = grad->offset;
    s->m_off = arena_reserve(&o->mom, param->bytes, NULL);
    s->n = param->bytes / sizeof(float);
    return OTE_OK;
}

int sgd_commit(sgd *o) {
    /* Merge span b into a when b starts where a's 64-byte-rounded reservation ends in all three
     * arenas: the gap floats are unowned zero padding, which SGD keeps at zero. */
    int k = 0;
    for (int i = 0; i < o->n_spans; i++) {
        if (k > 0) {
            sgd_span *a = &o->spans[k - 1];
            const sgd_span *b = &o->spans[i];
            size_t end = (a->n * sizeof(float) + 63) / 64 * 64;
            if (b->p_off == a->p_off + end && b->g_off == a->g_off + end && b->m_off == a->m_off + end) {
                a->n = end / sizeof(float) + b->n;
                continue;
            }
        }
        o->spans[k++] = o->spans[i];
    }
    o->n_spans = k;
    CHECK(arena_commit(&o->mom));
    o->committed = 1;
    o->steps = 0;
    return OTE_OK;
}

SGD_CLONES static void sgd_k_first(float *restrict p, const float *restrict g, float *restrict m, size_t n, float wd,
                                   float lr) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        m[i] = d;
        p[i] -= lr * d;
    }
}

SGD_CLONES static void sgd_k_step(float *restrict p, const float *restrict g, float *restrict m, size_t n, float wd,
                                  float mu, float lr) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        float b = mu * m[i] + d;
        m[i] = b;
        p[i] -= lr * b;
    }
}

void sgd_step(sgd *o, double lr) {
    ASSERT(o->committed);
    const int first = o->steps == 0;
    const float wd = o->weight_decay, mu = o->momentum, flr = (float)lr;
    char *pb = o->params->base, *gb = o->grads->base, *mb = o->mom.base;
#pragma omp parallel
    for (int s = 0; s < o->n_spans; s++) {
        const sgd_span *sp = &o->spans[s];
        float *p = (float *)(pb + sp->p_off), *m = (float *)(mb + sp->m_off);
        const float *g = (const float *)(gb + sp->g_off);
        size_t nch = (sp->n + SGD_CHUNK - 1) / SGD_CHUNK;
#pragma omp for schedule(static) nowait
        for (size_t c = 0; c < nch; c++) {
            size_t i0 = c * SGD_CHUNK, len = sp->n - i0 < SGD_CHUNK ? sp->n - i0 : SGD_CHUNK;
            if (first)
                sgd_k_first(p + i0, g + i0, m + i0, len, wd, flr);
            else
                sgd_k_step(p + i0, g + i0, m + i0, len, wd, mu, flr);
        }
    }
    o->steps++;
}

float *sgd_momentum_of(const sgd *o, size_t p_off) {
    if (!o->committed || !o->mom.base) return NULL;
    for (int s = 0; s < o->n_spans; s++) {
        const sgd_span *sp = &o->spans[s];
        if (p_off >= sp->p_off && p_off < sp->p_off + sp->n * sizeof(float))
            return (float *)(o->mom.base + sp->m_off + (p_off - sp->p_off));
    }
    return NULL;
}

void sgd_reset_state(sgd *o) {
    arena_zero(&o->mom);
    o->steps = 0;
}

double sgd_grad_norm(const sgd *o) {
    /* Deterministic: each thread sums a static share into its own slot, slots are added in thread
     * order (an OpenMP reduction may combine partial sums in any order). */
    enum { MAX_T = 256 };
    double part[MAX_T] = {0};
    int nt = 1;
#pragma omp parallel
    {
        int t = omp_get_thread_num();
#pragma omp single
        nt = omp_get_num_threads();
        ASSERT(nt <= MAX_T);
        double acc = 0;
        for (int s = 0; s < o->n_spans; s++) {
            const float *g = (const float *)(o->grads->base + o->spans[s].g_off);
            size_t n = o->spans[s].n;
#pragma omp for schedule(static) nowait
            for (size_t i = 0; i < n; i++) acc += (double)g[i] * (double)g[i];
        }
        part[t] = acc;
    }
    double ss = 0;
    for (int t = 0; t < nt; t++) ss += part[t];
    return sqrt(ss);
}

double sgd_clip_grad_norm(sgd *o, double max_norm) {
    double norm = sgd_grad_norm(o);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
        for (int s = 0; s < o->n_spans; s++) {
            float *g = (float *)(o->grads->base + o->spans[s].g_off);
            size_t n = o->spans[s].n;
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) g[i] *= c;
        }
    }
    return norm;
}

void sgd_free(sgd *o) {
    arena_free(&o->mom);
    free(o->spans);
    memset(o, 0, sizeof *o);
}

double sgd_lr_warmup(double base_lr, long iter, long warmup_iters, double ratio) {
    if (iter >= warmup_iters || warmup_iters <= 0) return base_lr;
    double k = (1.0 - (double)iter / (double)warmup_iters) * (1.0 - ratio);
    return base_lr * (1.0 - k);
}

/* det.c - the MobileNetV2-ATSS detector (spec-detector.md §2-§4, §7, §8a, §11): ties the
 * components together behind models/det.h.
 *
 *   image --backbone.c--> C3, C4, C5 --neck.c--> P3..P7 --head.c--> cls, reg, ctr per level
 *         --assigner.c + losses.c--> losses and head-output gradients --(reverse)--> parameter grads
 *
 * Ownership. The detector owns the components' layers, the parameter store (models/params.c: one
 * params arena and one grads arena with the SAME layout, so a parameter's gradient sits at the
 * same offset), the SGD state, the plan cache and ONE activation block shared by every plan (only
 * one plan runs at a time; models/memplan.c). A plan (one per (N, H, W, training)) owns the
 * components' sub-plans (their oneDNN primitives), the placement of their tensors in the block,
 * and the anchor tables; it is (re)bound to the block before it runs whenever another plan ran in
 * between or the block grew (binding = re-pointing data handles; no allocation).
 *
 * Invariants: after a plan exists, det_forward_train / det_backward / det_sgd_step allocate
 * nothing and create no primitive (a batch with more boxes per image than any before grows the
 * assigner workspace once). BN running statistics live in the params arena but are never
 * registered with SGD. Inference (det_predict) runs the backbone on its BN-folded inference twins,
 * refolded (reorders, i.e. planning-time work) on the first predict after any parameter or running
 * statistic changed (params_gen != folded_gen). FPN and head run their training layers with
 * forward_inference primitives. The post-processing (models/postprocess.c) allocates its own
 * scratch per image.
 */
#include "models/det.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rng.h"
#include "engine/sgd.h"
#include "engine/ote.h"
#include "models/assigner.h"
#include "models/backbone.h"
#include "models/det_impl.h"
#include "models/head.h"
#include "models/losses.h"
#include "models/memplan.h"
#include "models/neck.h"
#include "models/params.h"
#include "models/postprocess.h"

#define DET_TOPK 9         /* ATSS candidates per level (spec §6) */
#define DET_WS_MIN_GTS 64  /* boxes per image the assigner workspace is first sized for */

typedef struct det_plan {
    int n, h, w, training;
    struct det_plan *next;
    memplan mem;             /* where every tensor of the sub-plans lives in the shared block */
    double flops;            /* conv FLOPs of one step (det_flops_train / det_flops_infer) */
    backbone_plan backbone;  /* image (N, 3, H, W) -> C3, C4, C5 */
    neck_plan neck;          /* C3, C4, C5 -> P3..P7 (N, 64, H/s, W/s) */
    head_plan head;          /* P3..P7 -> cls, reg, ctr per level */
    /* targets */
    anchor_grid grid;
    float *anchors;          /* (total, 4) xyxy */
    unsigned char *valid;    /* (N, total) */
    int *assigned, *labels;  /* (N, total) */
} det_plan;

struct detector {
    eng_ctx *e;
    det_cfg cfg;
    params_table params;
    unsigned long params_gen, folded_gen; /* folded_gen == params_gen: the folded copy is current */
    sgd opt;
    backbone backbone;
    neck neck;
    head head;
    det_plan *plans;
    det_plan *last;        /* plan that ran last */
    memplan_block block;   /* shared activation block */
    void *ws;              /* assigner workspace */
    size_t ws_bytes;
    int ws_max_gts;
    detection *dets;
    int dets_cap;
    int have_grads;        /* the last forward_train wrote head gradients */
    det_reduce_fn reduce;  /* data-parallel loss normalisers (det_set_norm_reduce), or NULL */
    void *reduce_ctx;
};

/* ------------------------------------------------------------------------------------------ */
/* Helpers shared with the components (det_impl.h) */

conv_cfg det_conv_cfg(int ic, int oc, int k, int stride, int groups, int bias, int tf_pad) {
    conv_cfg c;
    memset(&c, 0, sizeof c);
    c.ic = ic, c.oc = oc, c.kh = c.kw = k, c.stride_h = c.stride_w = stride, c.groups = groups, c.bias = bias;
    int p = k / 2;
    c.pad_t = c.pad_l = c.pad_b = c.pad_r = p;
    if (tf_pad && stride == 2 && k == 3) {
        /* TF "SAME" on even inputs: all padding after (onednn: t=l=0, b=r=1) */
        c.pad_t = c.pad_l = 0;
        c.pad_b = c.pad_r = 1;
    }
    return c;
}

int det_plan_conv(det_planner *pl, conv_plan *cp, conv_layer *l, const tensor *x, tensor *y, const tensor *dy,
                  tensor *dx) {
    int tr = pl->training;
    CHECK(conv_plan_init(cp, pl->e, l, x, y, tr ? dy : NULL, tr ? dx : NULL, tr));
    /* training = forward + backward-weights (+ backward-data where planned); 2 FLOPs per MAC */
    const conv_cfg *c = &l->cfg;
    int g = c->groups ? c->groups : 1;
    int has_dx = tr && dx != NULL;
    double macs = (double)y->n * y->h * y->w * c->oc * (double)(c->ic / g) * c->kh * c->kw;
    pl->flops += 2 * macs * (tr ? (2 + (has_dx ? 1 : 0)) : 1);
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Creation */

/* Initial parameters as mmdetection does (spec §2-§4 init); one random stream in state_dict order. */
static int det_init_params(detector *d) {
    rng r;
    rng_seed(&r, d->cfg.seed);
    /* OIHW staging for the largest conv (stage 5's 960 -> 320 1x1; 64 x 64 x 3 x 3 in the head) */
    float *buf = malloc((size_t)960 * 320 * 9 * sizeof *buf + 64);
    if (!buf) return ote_err(OTE_ENOMEM, "detector: cannot allocate the init buffer");
    int s = backbone_init_params(&d->backbone, d->e, &r, buf);
    if (s == OTE_OK) s = neck_init_params(&d->neck, d->e, &r, buf);
    if (s == OTE_OK) s = head_init_params(&d->head, d->e, &r, buf);
    free(buf);
    return s;
}

static int det_build(detector *d) {
    /* registration order = state_dict order: backbone, neck, head */
    CHECK(backbone_init(&d->backbone, d->e, &d->cfg, &d->params));
    CHECK(neck_init(&d->neck, d->e, &d->params));
    CHECK(head_init(&d->head, d->e, &d->params, d->cfg.num_classes));
    CHECK(params_register_sgd(&d->params, &d->opt));
    CHECK(params_commit(&d->params));
    CHECK(backbone_commit(&d->backbone));
    CHECK(sgd_commit(&d->opt));
    return det_init_params(d);
}

int det_create(detector **out, eng_ctx *e, const det_cfg *cfg) {
    *out = NULL;
    if (!cfg || cfg->num_classes < 1)
        return ote_err(OTE_EINVAL, "detector: num_classes: %d (must be >= 1)", cfg ? cfg->num_classes : 0);
    if (cfg->backbone != DET_BACKBONE_PYTORCHCV && cfg->backbone != DET_BACKBONE_TORCHVISION)
        return ote_err(OTE_EINVAL, "detector: backbone: %d (unknown)", (int)cfg->backbone);
    detector *d = calloc(1, sizeof *d);
    if (!d) return ote_err(OTE_ENOMEM, "detector: cannot allocate");
    int s = params_table_init(&d->params);
    if (s < 0) {
        free(d);
        return s;
    }
    d->e = e;
    d->cfg = *cfg;
    /* OTE / mmdet SGD defaults (spec §9); det_set_optimizer changes them */
    sgd_init(&d->opt, 0.9f, 1e-4f, &d->params.values, &d->params.grads);
    s = det_build(d);
    d->params_gen = 1; /* the folded inference weights are derived before the first predict */
    if (s < 0) {
        det_free(d);
        return s;
    }
    *out = d;
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Plans */

static void det_plan_free(detector *d, det_plan *p) {
    if (!p) return;
    /* sub-plans: free whatever was initialised (zeroed structs are safe to free for every layer) */
    backbone_plan_free(&p->backbone, &d->backbone);
    neck_plan_free(&p->neck);
    head_plan_free(&p->head);
    memplan_free(&p->mem);
    free(p->anchors), free(p->valid), free(p->assigned), free(p->labels);
    free(p);
}

static int det_plan_anchors(det_plan *p) {
    CHECK(anchors_grid_init(&p->grid, p->h, p->w));
    size_t tot = (size_t)p->grid.total;
    p->anchors = malloc(tot * 4 * sizeof(float));
    p->valid = malloc(tot * (size_t)p->n);
    p->assigned = malloc(tot * (size_t)p->n * sizeof(int));
    p->labels = malloc(tot * (size_t)p->n * sizeof(int));
    if (!p->anchors || !p->valid || !p->assigned || !p->labels)
        return ote_err(OTE_ENOMEM, "detector: cannot allocate the anchor tables");
    anchors_fill(&p->grid, p->anchors);
    return OTE_OK;
}

/* Training plans: assigns the gradient slots by simulating the backward (det_backward's order),
 * then sizes the assigner workspace for the plan's anchor grid. */
static int det_plan_slots(detector *d, det_plan *p) {
    memplan_sim sim;
    memplan_sim_start(&sim, &p->mem);
    /* the neck's gradients are all fixed: it takes no part */
    int s = head_backward(&p->head, d->e, &sim, p->neck.d_out);
    if (s == OTE_OK) s = backbone_backward(&p->backbone, &d->backbone, d->e, &sim, &p->neck.d_c3, &p->neck.d_c4);
    int s2 = memplan_sim_finish(&sim);
    if (s < 0) return s;
    CHECK(s2);
    int gts = d->ws_max_gts > DET_WS_MIN_GTS ? d->ws_max_gts : DET_WS_MIN_GTS;
    size_t ws = assigner_ws_bytes(&p->grid, gts, DET_TOPK);
    if (ws > d->ws_bytes) {
        void *nw = realloc(d->ws, ws);
        if (!nw) return ote_err(OTE_ENOMEM, "detector: cannot allocate the assigner workspace");
        d->ws = nw, d->ws_bytes = ws, d->ws_max_gts = gts;
    }
    return OTE_OK;
}

/* Builds every primitive and places every tensor of the plan for (n, h, w, training). */
static int det_plan_build(detector *d, det_plan *p) {
    det_planner pl = {d->e, &p->mem, p->n, p->training, 0.0};
    backbone_plan *bp = &p->backbone;
    int s = backbone_plan_init(bp, &d->backbone, &pl, p->h, p->w);
    if (s == OTE_OK) s = neck_plan_init(&p->neck, &d->neck, &pl, bp->c3, bp->c4, bp->c5, bp->d_c5);
    if (s == OTE_OK) s = head_plan_init(&p->head, &d->head, &pl, p->neck.out, p->neck.d_out);
    p->flops = pl.flops;
    if (s == OTE_OK) s = det_plan_anchors(p);
    if (s == OTE_OK && p->training) s = det_plan_slots(d, p);
    memplan_total(&p->mem);
    if (s == OTE_OK) s = memplan_block_grow(&d->block, p->mem.total_bytes);
    return s;
}

static det_plan *det_plan_find(const detector *d, int n, int h, int w, int training) {
    for (det_plan *p = d->plans; p; p = p->next)
        if (p->n == n && p->h == h && p->w == w && p->training == training) return p;
    return NULL;
}

static int det_plan_get(detector *d, int n, int h, int w, int training, det_plan **out) {
    det_plan *p = det_plan_find(d, n, h, w, training);
    if (p) {
        *out = p;
        return OTE_OK;
    }
    if (n < 1 || h < 32 || w < 32 || h % 32 || w % 32)
        return ote_err(OTE_EINVAL, "detector: plan shape N=%d H=%d W=%d (N >= 1, H and W positive multiples of 32)", n,
                       h, w);
    p = calloc(1, sizeof *p);
    if (!p) return ote_err(OTE_ENOMEM, "detector: cannot allocate a plan");
    p->n = n, p->h = h, p->w = w, p->training = training;
    int s = det_plan_build(d, p);
    if (s < 0) {
        det_plan_free(d, p);
        return s;
    }
    p->next = d->plans;
    d->plans = p;
    *out = p;
    return OTE_OK;
}

int det_plan_train(detector *d, int n, int h, int w) {
    det_plan *p;
    return det_plan_get(d, n, h, w, 1, &p);
}

int det_plan_infer(detector *d, int n, int h, int w) {
    det_plan *p;
    return det_plan_get(d, n, h, w, 0, &p);
}

/* ------------------------------------------------------------------------------------------ */
/* Training step */

/* image -> C3..C5 -> P3..P7 -> cls, reg, ctr */
static int det_forward(detector *d, det_plan *p) {
    CHECK(backbone_forward(&p->backbone, &d->backbone, d->e, p->training));
    CHECK(neck_forward(&p->neck, d->e));
    return head_forward(&p->head, d->e);
}

/* Rejects an inconsistent batch; grows the assigner workspace if an image has more boxes than any
 * before (rare; grows once). */
static int det_batch_check(detector *d, const det_batch *b) {
    int maxg = 0;
    for (int i = 0; i < b->n; i++) {
        int m = b->first_box[i + 1] - b->first_box[i];
        if (m < 0) return ote_err(OTE_EINVAL, "detector: batch: first_box[%d] > first_box[%d]", i, i + 1);
        if (m > maxg) maxg = m;
        if (b->img_h[i] < 1 || b->img_h[i] > b->h || b->img_w[i] < 1 || b->img_w[i] > b->w)
            return ote_err(OTE_EINVAL, "detector: batch: image %d size %dx%d outside the padded %dx%d", i, b->img_h[i],
                           b->img_w[i], b->h, b->w);
    }
    if (maxg <= d->ws_max_gts) return OTE_OK;
    size_t ws = 0;
    for (det_plan *q = d->plans; q; q = q->next)
        if (q->training) {
            size_t x = assigner_ws_bytes(&q->grid, maxg, DET_TOPK);
            if (x > ws) ws = x;
        }
    void *nw = realloc(d->ws, ws);
    if (!nw) return ote_err(OTE_ENOMEM, "detector: cannot grow the assigner workspace to %d boxes", maxg);
    d->ws = nw, d->ws_bytes = ws, d->ws_max_gts = maxg;
    return OTE_OK;
}

/* ATSS targets of every image (spec §5-§6) into p->valid / assigned / labels. */
static int det_targets(detector *d, det_plan *p, const det_batch *b) {
    int T = p->grid.total;
    for (int i = 0; i < b->n; i++) {
        int f = b->first_box[i], m = b->first_box[i + 1] - f;
        anchors_valid(&p->grid, b->img_h[i], b->img_w[i], p->valid + (size_t)i * T);
        CHECK(assigner_atss(&p->grid, p->anchors, p->valid + (size_t)i * T, b->boxes + 4 * (size_t)f, b->labels + f, m,
                            d->cfg.num_classes, DET_TOPK, d->ws, d->ws_bytes, p->assigned + (size_t)i * T,
                            p->labels + (size_t)i * T));
    }
    return OTE_OK;
}

int det_forward_train(detector *d, const det_batch *b, det_losses *out) {
    det_plan *p;
    d->have_grads = 0;
    CHECK(det_plan_get(d, b->n, b->h, b->w, 1, &p));
    CHECK(det_batch_check(d, b));
    CHECK(memplan_bind(&d->block, &p->mem));
    d->last = p;
    memcpy(p->backbone.image.data, b->images, (size_t)b->n * 3 * b->h * b->w * sizeof(float));
    CHECK(det_forward(d, p));
    if (!d->cfg.bn_frozen) { /* frozen BN (eval mode) counts no batches, as torch */
        d->params.nbt++;
        d->params_gen++; /* running statistics changed */
    }
    CHECK(det_targets(d, p, b));
    head_out ho[ANCHORS_LEVELS];
    head_grad hg[ANCHORS_LEVELS];
    head_plan_views(&p->head, 1, ho, hg);
    loss_parts lp; /* losses and dL/d(cls, reg, ctr) of every level into the head's d_cls, d_reg, d_ctr */
    CHECK(losses_batch_reduced(&p->grid, p->anchors, b->n, d->cfg.num_classes, p->assigned, p->labels, b->boxes,
                               b->first_box, ho, hg, d->reduce, d->reduce_ctx, &lp));
    d->have_grads = 1;
    if (out) {
        memset(out, 0, sizeof *out);
        out->cls = lp.cls_sum, out->box = lp.box_sum, out->ctr = lp.ctr_sum, out->total = lp.total;
        for (int l = 0; l < ANCHORS_LEVELS; l++) {
            out->level_cls[l] = lp.cls[l], out->level_box[l] = lp.box[l], out->level_ctr[l] = lp.ctr[l];
            out->npos += lp.npos_level[l];
        }
    }
    if (!isfinite(lp.total)) return ote_err(OTE_ENAN, "detector: loss is not finite (%g)", lp.total);
    return OTE_OK;
}

int det_backward(detector *d) {
    det_plan *p = d->last;
    if (!p || !p->training || !d->have_grads)
        return ote_err(OTE_EINVAL, "detector: det_backward without a preceding det_forward_train");
    CHECK(memplan_bind(&d->block, &p->mem));
    CHECK(head_backward(&p->head, d->e, NULL, p->neck.d_out));   /* d_cls, d_reg, d_ctr -> dP3..P7 */
    CHECK(neck_backward(&p->neck, d->e));                         /* dP3..P7 -> dC3, dC4, dC5 */
    CHECK(backbone_backward(&p->backbone, &d->backbone, d->e, NULL, &p->neck.d_c3, &p->neck.d_c4)); /* -> dW */
    d->have_grads = 0;
    return OTE_OK;
}

int det_sgd_step(detector *d, double lr) {
    sgd_step(&d->opt, lr);
    d->params_gen++;
    return params_refresh_convs(&d->params, d->e);
}

void det_set_optimizer(detector *d, double momentum, double weight_decay) {
    d->opt.momentum = (float)momentum;
    d->opt.weight_decay = (float)weight_decay;
}

/* ------------------------------------------------------------------------------------------ */
/* Inference */

int det_forward_infer(detector *d, int n, int h, int w, const float *images) {
    det_plan *p;
    CHECK(det_plan_get(d, n, h, w, 0, &p));
    if (d->folded_gen != d->params_gen) {
        CHECK(backbone_fold(&d->backbone, d->e));
        d->folded_gen = d->params_gen;
    }
    CHECK(memplan_bind(&d->block, &p->mem));
    d->last = p;
    d->have_grads = 0;
    memcpy(p->backbone.image.data, images, (size_t)n * 3 * h * w * sizeof(float));
    return det_forward(d, p);
}

int det_predict(detector *d, int n, int h, int w, const float *images, const int *img_h, const int *img_w,
                const float *scale_factor, det_box *const *out, int *n_out, int max_per_img) {
    det_plan *p;
    if (max_per_img < 0) return ote_err(OTE_EINVAL, "detector: max_per_img: %d", max_per_img);
    CHECK(det_plan_get(d, n, h, w, 0, &p));
    if (max_per_img > d->dets_cap) {
        detection *nd = realloc(d->dets, (size_t)max_per_img * sizeof *nd);
        if (!nd) return ote_err(OTE_ENOMEM, "detector: cannot allocate %d detections", max_per_img);
        d->dets = nd, d->dets_cap = max_per_img;
    }
    CHECK(det_forward_infer(d, n, h, w, images));
    head_out ho[ANCHORS_LEVELS];
    head_plan_views(&p->head, 0, ho, NULL);
    postprocess_cfg pc = postprocess_default_cfg();
    pc.max_per_img = max_per_img;
    for (int i = 0; i < n; i++) {
        int nd = 0;
        if (max_per_img > 0)
            CHECK(postprocess_image(&p->grid, p->anchors, d->cfg.num_classes, n, i, ho, img_h[i], img_w[i],
                                    scale_factor + 4 * (size_t)i, &pc, d->dets, &nd));
        for (int k = 0; k < nd; k++) {
            det_box *o = &out[i][k];
            o->x1 = d->dets[k].box[0], o->y1 = d->dets[k].box[1], o->x2 = d->dets[k].box[2], o->y2 = d->dets[k].box[3];
            o->score = d->dets[k].score;
            o->label = d->dets[k].label;
        }
        n_out[i] = nd;
    }
    return OTE_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Parameters, figures, teardown */

void det_set_norm_reduce(detector *d, det_reduce_fn fn, void *ctx) {
    d->reduce = fn;
    d->reduce_ctx = ctx;
}

float *det_grad_block(detector *d, size_t *n) {
    *n = d->params.grads.used / sizeof(float);
    return (float *)d->params.grads.base;
}

float *det_param_block(detector *d, size_t *n) {
    *n = d->params.values.used / sizeof(float);
    return (float *)d->params.values.base;
}

float *det_momentum_block(detector *d, size_t *n) {
    *n = d->opt.mom.used / sizeof(float);
    return (float *)d->opt.mom.base;
}

int det_param_block_changed(detector *d) {
    d->params_gen++; /* the folded inference copy is stale */
    return params_refresh_convs(&d->params, d->e);
}

int det_calibrate_bn(detector *d) {
    if (d->cfg.bn_onednn)
        return ote_err(OTE_EINVAL, "detector: BN calibration needs the fused BN layer (bn_onednn is set)");
    if (d->cfg.bn_frozen)
        return ote_err(OTE_EINVAL, "detector: BN calibration re-estimates statistics: not with bn_frozen");
    backbone_calibrate_bn(&d->backbone);
    d->params_gen++; /* gamma/beta change at the next training forward */
    return OTE_OK;
}

const det_cfg *det_config(const detector *d) { return &d->cfg; }
int det_n_params(const detector *d) { return d->params.n; }

const det_param_info *det_param(const detector *d, int i) {
    if (i < 0 || i >= d->params.n) return NULL;
    return &d->params.e[i].info;
}

int det_param_find(const detector *d, const char *name) { return params_find(&d->params, name); }
int det_momentum_get(detector *d, int i, float *dst) { return params_momentum_get(&d->params, d->e, &d->opt, i, dst); }
int det_momentum_set(detector *d, int i, const float *src) {
    return params_momentum_set(&d->params, d->e, &d->opt, i, src);
}
long det_sgd_steps(const detector *d) { return d->opt.steps; }
void det_sgd_set_steps(detector *d, long steps) { d->opt.steps = steps < 0 ? 0 : steps; }

int det_param_get(detector *d, int i, float *dst) { return params_get(&d->params, d->e, i, dst); }

int det_param_set(detector *d, int i, const float *src) {
    if (i >= 0 && i < d->params.n) d->params_gen++; /* the folded inference copy is stale */
    return params_set(&d->params, d->e, i, src);
}

int det_grad_get(detector *d, int i, float *dst) { return params_grad_get(&d->params, d->e, i, dst); }

int det_reinit_cls(detector *d) {
    d->params_gen++;
    return head_reinit_cls(&d->head, d->e, d->cfg.seed);
}

double det_flops_train(const detector *d, int n, int h, int w) {
    det_plan *p = det_plan_find(d, n, h, w, 1);
    return p ? p->flops : -1;
}

double det_flops_infer(const detector *d, int n, int h, int w) {
    det_plan *p = det_plan_find(d, n, h, w, 0);
    return p ? p->flops : -1;
}

void det_memory(const detector *d, size_t *params, size_t *grads, size_t *optim, size_t *activations) {
    if (params) *params = d->params.values.used;
    if (grads) *grads = d->params.grads.used;
    if (optim) *optim = d->opt.mom.used;
    if (activations) *activations = d->block.cap;
}

int det_last_head(const detector *d, anchor_grid *g, head_out out[ANCHORS_LEVELS], head_grad grad[ANCHORS_LEVELS]) {
    if (!d->last || d->block.bound != &d->last->mem) return ote_err(OTE_EINVAL, "detector: no plan has run");
    if (g) *g = d->last->grid;
    head_plan_views(&d->last->head, d->last->training, out, grad);
    return OTE_OK;
}

void det_free(detector *d) {
    if (!d) return;
    while (d->plans) {
        det_plan *p = d->plans;
        d->plans = p->next;
        det_plan_free(d, p);
    }
    backbone_free(&d->backbone);
    neck_free(&d->neck);
    head_free(&d->head);
    sgd_free(&d->opt);
    params_table_free(&d->params);
    memplan_block_free(&d->block);
    free(d->ws), free(d->dets);
    free(d);
}

/* trainer.c - the training loop and model evaluation (see trainer.h).
 *
 * Owns, for one call: the oneDNN context, the detector, the training and validation loaders, the
 * batch packing buffers and the best epoch's report; everything is released before returning.
 * Invariant: the weights file on disk, if any, is always the best-mAP epoch so far (written
 * through pth_save's temp file + rename), so a failure later never loses it.
 */
#include "train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/loader.h"
#include "dist/dist.h"
#include "engine/eng.h"
#include "engine/ote.h"
#include "models/det.h"
#include "train/export.h"
#include "train/metrics.h"
#include "train/onnx_model.h"
#include "train/resume.h"
#include "train/schedule.h"
#include "train/weights.h"

/* mmdetection's CocoDataset.evaluate uses maxDets (100, 300, 1000). */
static const int trainer_max_dets[3] = {100, 300, 1000};

static double trainer_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void trainer_opts_init(trainer_opts *o, const config_template *cfg) {
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->subset_ratio = 1.0;
    o->log_every = 10;
}

int trainer_is_writer(int data_parallel) { return !data_parallel || dist_size() <= 1 || dist_rank() == 0; }

void trainer_result_free(trainer_result *r) {
    if (r->has_best) eval_report_free(&r->best);
    r->has_best = 0;
}

int trainer_check_classes(const coco_dataset *train, const coco_dataset *val) {
    int same = train->n_cats == val->n_cats;
    for (int k = 0; same && k < train->n_cats; k++)
        same = !strcmp(train->cats[k].name ? train->cats[k].name : "", val->cats[k].name ? val->cats[k].name : "");
    if (!same)
        return ote_err(OTE_EINVAL, "training (%d classes) and validation (%d classes) annotations list different "
                                   "categories; both must have the same names in the same id order",
                       train->n_cats, val->n_cats);
    return 0;
}

/* Predicts every image of a test loader (batch 1 or more) and appends the detections. */
/* Predicts every image of vl with the engine (d) or, if om is set, the exported ONNX model (batch
 * 1 at its input size; same post-processing). */
static int trainer_predict_with(detector *d, onnx_model *om, data_loader *vl, eval_dets *dets) {
    enum { MAXDET = 100 };
    CHECK(loader_start_epoch(vl, 0));
    det_box *boxes = NULL;
    det_box **outs = NULL;
    int *n_out = NULL, *ih = NULL, *iw = NULL, cap = 0, s;
    float *sf = NULL;
    const data_batch *b;
    while ((s = loader_next(vl, &b)) == 1) {
        if (b->n > cap) {
            free(boxes), free(outs), free(n_out), free(ih), free(iw), free(sf);
            cap = b->n;
            boxes = malloc((size_t)cap * MAXDET * sizeof *boxes);
            outs = malloc((size_t)cap * sizeof *outs);
            n_out = malloc((size_t)cap * sizeof *n_out);
            ih = malloc((size_t)cap * sizeof *ih);
            iw = malloc((size_t)cap * sizeof *iw);
            sf = malloc((size_t)cap * 4 * sizeof *sf);
            if (!boxes || !outs || !n_out || !ih || !iw || !sf) {
                s = ote_err(OTE_ENOMEM, "trainer: out of memory");
                break;
            }
        }
        for (int i = 0; i < b->n; i++) {
            outs[i] = boxes + (size_t)i * MAXDET;
            ih[i] = b->samples[i].img_h;
            iw[i] = b->samples[i].img_w;
            memcpy(sf + 4 * i, b->samples[i].scale, 4 * sizeof(float));
        }
        if (!om) {
            s = det_predict(d, b->n, b->h, b->w, b->images, ih, iw, sf, outs, n_out, MAXDET);
        } else if (b->n != 1 || b->h != om->meta.input_h || b->w != om->meta.input_w) {
            s = ote_err(OTE_EINVAL, "%s: exported for 1x3x%dx%d, the batch is %dx3x%dx%d", om->path, om->meta.input_h,
                        om->meta.input_w, b->n, b->h, b->w);
        } else {
            s = onnx_model_predict(om, b->images, ih[0], iw[0], sf, outs[0], &n_out[0], MAXDET);
        }
        if (s < 0) break;
        for (int i = 0; i < b->n && s >= 0; i++)
            for (int k = 0; k < n_out[i] && s >= 0; k++) {
                const det_box *x = &outs[i][k];
                eval_det e = {b->samples[i].index, x->label, x->x1, x->y1, x->x2, x->y2, x->score};
                s = eval_dets_push(dets, e);
            }
        if (s < 0) break;
    }
    free(boxes), free(outs), free(n_out), free(ih), free(iw), free(sf);
    return s < 0 ? s : 0;
}

static int trainer_predict_all(detector *d, data_loader *vl, eval_dets *dets) {
    return trainer_predict_with(d, NULL, vl, dets);
}

/* Packs a loader batch into the detector's batch struct (boxes concatenated). */
typedef struct trainer_pack {
    float *boxes;
    int *labels, *first, *ih, *iw;
    int cap_boxes, cap_n;
} trainer_pack;

static int trainer_pack_batch(trainer_pack *p, const data_batch *b, det_batch *db) {
    int total = 0;
    for (int i = 0; i < b->n; i++) total += b->samples[i].n_boxes;
    if (total > p->cap_boxes) {
        int c = total * 2 + 16;
        float *nb = realloc(p->boxes, (size_t)c * 4 * sizeof *nb);
        if (!nb) return ote_err(OTE_ENOMEM, "trainer: out of memory");
        p->boxes = nb;
        int *nl = realloc(p->labels, (size_t)c * sizeof *nl);
        if (!nl) return ote_err(OTE_ENOMEM, "trainer: out of memory");
        p->labels = nl;
        p->cap_boxes = c;
    }
    if (b->n > p->cap_n) {
        int c = b->n;
        int *a = realloc(p->first, (size_t)(c + 1) * sizeof *a);
        if (!a) return ote_err(OTE_ENOMEM, "trainer: out of memory");
        p->first = a;
        a = realloc(p->ih, (size_t)c * sizeof *a);
        if (!a) return ote_err(OTE_ENOMEM, "trainer: out of memory");
        p->ih = a;
        a = realloc(p->iw, (size_t)c * sizeof *a);
        if (!a) return ote_err(OTE_ENOMEM, "trainer: out of memory");
        p->iw = a;
        p->cap_n = c;
    }
    int k = 0;
    for (int i = 0; i < b->n; i++) {
        const data_sample *s = &b->samples[i];
        p->first[i] = k;
        p->ih[i] = s->img_h;
        p->iw[i] = s->img_w;
        if (s->n_boxes) {
            memcpy(p->boxes + 4 * (size_t)k, s->boxes, (size_t)s->n_boxes * 4 * sizeof(float));
            memcpy(p->labels + k, s->labels, (size_t)s->n_boxes * sizeof(int));
        }
        k += s->n_boxes;
    }
    p->first[b->n] = k;
    db->n = b->n;
    db->h = b->h;
    db->w = b->w;
    db->images = b->images;
    db->img_h = p->ih;
    db->img_w = p->iw;
    db->boxes = p->boxes;
    db->labels = p->labels;
    db->first_box = p->first;
    return 0;
}

static void trainer_pack_free(trainer_pack *p) {
    free(p->boxes), free(p->labels), free(p->first), free(p->ih), free(p->iw);
    memset(p, 0, sizeof *p);
}

static void trainer_fmt_time(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e8) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

void trainer_det_cfg(const config_template *cfg, int n_classes, det_cfg *dc) {
    memset(dc, 0, sizeof *dc);
    dc->num_classes = n_classes;
    dc->backbone = cfg->backbone ? DET_BACKBONE_TORCHVISION : DET_BACKBONE_PYTORCHCV;
    dc->tf_padding = cfg->tf_padding;
    dc->seed = cfg->seed;
}

/* Creates the detector for cfg (ctx must be initialised). */
static int trainer_make_detector(detector **d, eng_ctx *e, const config_template *cfg, int n_classes) {
    det_cfg dc;
    trainer_det_cfg(cfg, n_classes, &dc);
    CHECK(det_create(d, e, &dc));
    /* OTE's SGD: momentum 0.9, weight decay 1e-4 on every parameter (spec-detector §9). */
    det_set_optimizer(*d, 0.9, 1e-4);
    return 0;
}

/* One training run's progress (trainer_run only). */
typedef struct trainer_progress {
    const trainer_opts *o;
    const coco_dataset *train;   /* the training set or its seeded subset (st->sub) */
    const coco_dataset *val;     /* NULL: no validation (nothing is saved) */
    trainer_result *res;
    int epochs, repeat, batches; /* after OTE's adaptive repeat; batches per loader pass */
    long total_iters;            /* epochs x repeat x batches */
    schedule_plateau plateau;    /* the regular lr (warm-up applied per iteration) */
    schedule_early_stop early;
    long iter, images;           /* done so far */
    double t0;                   /* start of the run, CLOCK_MONOTONIC seconds */
    double train_secs;           /* time spent in training iterations (loader waits included) */
    int stop;                    /* 1: no further epoch (res->stop says why) */
    int warned_train, warned_val; /* image-file warnings printed so far (loader_image_warnings) */
    det_losses acc;              /* losses summed since the last progress line */
    int acc_n;
} trainer_progress;

typedef struct trainer_state {
    eng_ctx e;
    int have_e;
    detector *d;
    data_loader *tl, *vl;
    coco_dataset sub;
    int have_sub;
    trainer_pack pack;
    eval_dets dets;
    trainer_progress p;
    resume_state rs;             /* --resume-from: the state read (valid when resumed) */
    int resumed;
    metrics_run *metrics;        /* metrics.csv + figures (o->write_metrics), or NULL */
    /* data-parallel training (trainer.h) */
    int dp;                      /* 1: o->data_parallel and more than one rank */
    int rank, nranks;
    trainer_opts rank_opts;      /* rank > 0: the caller's options with every output off (p.o) */
    int calibrating;             /* the first step calibrates BN (BN-folded backbone): resync after it */
} trainer_state;

static void trainer_state_free(trainer_state *st) {
    loader_free(st->tl);
    loader_free(st->vl);
    det_free(st->d);
    if (st->have_e) eng_free(&st->e);
    if (st->have_sub) coco_free(&st->sub);
    trainer_pack_free(&st->pack);
    eval_dets_free(&st->dets);
    metrics_close(st->metrics);
}

/* Validation of one epoch: predicts, scores, and returns the report in *rep (caller frees). */
static int trainer_validate(trainer_state *st, const coco_dataset *val, eval_report *rep) {
    st->dets.n = 0;
    CHECK(trainer_predict_all(st->d, st->vl, &st->dets));
    return eval_run(val, st->dets.d, st->dets.n, EVAL_CROWD_ABSENT, trainer_max_dets, rep);
}

/* ---- setup ---- */

/* The training set (a seeded subset for HPO trials), the class check and the epoch plan. */
static int trainer_setup_data(trainer_state *st) {
    trainer_progress *p = &st->p;
    const config_template *cfg = &p->o->cfg;
    if (p->o->subset_ratio > 0 && p->o->subset_ratio < 1) {
        int keep = (int)(p->train->n_images * p->o->subset_ratio);
        if (keep < 1) keep = 1;
        CHECK(coco_subset(&st->sub, p->train, keep, cfg->seed));
        st->have_sub = 1;
        p->train = &st->sub;
    }
    if (p->train->n_images < 1) return ote_err(OTE_EINVAL, "trainer: the training set has no images");
    if (st->dp && cfg->batch_size < st->nranks)
        return ote_err(OTE_EINVAL, "data-parallel training: learning_parameters.batch_size %d is smaller than the %d "
                       "processes (mpirun -np): each process needs at least one image of every batch",
                       cfg->batch_size, st->nranks);
    if (p->val) CHECK(trainer_check_classes(p->train, p->val));
    schedule_adaptive_repeat(p->train->n_images, cfg->num_iters, &p->repeat, &p->epochs);
    if (p->o->max_epochs > 0) p->epochs = p->o->max_epochs;
    p->res->repeat = p->repeat;
    p->res->epochs_planned = p->epochs;
    return 0;
}

/* ---- resume (issue 14; train/resume.h) ---- */

/* --resume-from: reads the state, checks the settings and the epoch plan, loads weights, momentum
 * and SGD steps (instead of any initialisation). */
static int trainer_resume_model(trainer_state *st) {
    trainer_progress *p = &st->p;
    const trainer_opts *o = p->o;
    pth_ckpt c;
    pth_init(&c);
    CHECK(resume_read(o->resume_from, &c, &st->rs));
    const resume_state *rs = &st->rs;
    int s = resume_check(&c, o->resume_from, &o->cfg, p->train, p->val, o->subset_ratio, o->max_epochs);
    if (s >= 0 && (rs->epochs != p->epochs || rs->repeat != p->repeat))
        s = ote_err(OTE_EINVAL, "%s: the epoch plan differs: %d epochs x %d repeat in the interrupted training, %d x %d now",
                    o->resume_from, rs->epochs, rs->repeat, p->epochs, p->repeat);
    if (s >= 0) s = resume_apply(st->d, &c, o->resume_from, rs);
    pth_free(&c);
    CHECK(s);
    st->resumed = 1;
    if (o->log) {
        fprintf(o->log, "resumed from %s: %d of %d epochs done, %ld iterations; best epoch %d (val mAP@0.5 %.4f); %s\n",
                o->resume_from, rs->epochs_done, rs->epochs, rs->iter, rs->best_epoch, rs->best_epoch ? rs->best_map : 0.0,
                rs->finished ? "the training had finished" : "continuing");
        if (o->init_weights) fprintf(o->log, "note: --load-weights %s not used: the weights come from the training state\n", o->init_weights);
        if (rs->threads != st->e.nthreads)
            fprintf(o->log, "note: the interrupted training ran %d threads, this run %d: the result will not be bit-identical "
                            "to an uninterrupted run\n", rs->threads, st->e.nthreads);
    }
    return 0;
}

/* After the schedule's init: the progress counters, lr schedule, early stopping and best epoch. */
static int trainer_resume_loop(trainer_state *st) {
    trainer_progress *p = &st->p;
    const resume_state *rs = &st->rs;
    if (rs->batches != p->batches)
        return ote_err(OTE_EINVAL, "%s: the epoch plan differs: %d batches per pass in the interrupted training, %d now",
                       p->o->resume_from, rs->batches, p->batches);
    p->plateau.lr = rs->plateau.lr, p->plateau.best = rs->plateau.best;
    p->plateau.bad = rs->plateau.bad, p->plateau.last_iter = rs->plateau.last_iter;
    p->early.best = rs->early.best, p->early.wait = rs->early.wait, p->early.last_iter = rs->early.last_iter;
    p->iter = rs->iter;
    p->images = rs->images;
    p->train_secs = rs->train_seconds;
    p->t0 -= rs->seconds;
    trainer_result *res = p->res;
    res->best_map = rs->best_epoch ? rs->best_map : -1;
    res->best_epoch = rs->best_epoch;
    res->confidence_threshold = rs->best_threshold;
    res->epochs_run = rs->epochs_done;
    res->iters = rs->iter;
    res->images = rs->images;
    if (rs->finished) {
        p->stop = 1;
        res->stop = rs->stop >= 0 ? (trainer_stop)rs->stop : TRAINER_STOP_DONE;
    }
    return 0;
}

/* After epoch ep: the training state, atomically (a kill loses at most the next epoch). */
static int trainer_save_state(trainer_state *st, int ep) {
    trainer_progress *p = &st->p;
    const trainer_opts *o = p->o;
    resume_state rs;
    memset(&rs, 0, sizeof rs);
    rs.epochs_done = ep + 1;
    rs.epochs = p->epochs, rs.repeat = p->repeat, rs.batches = p->batches;
    rs.iter = p->iter, rs.images = p->images;
    rs.seconds = trainer_now() - p->t0;
    rs.train_seconds = p->train_secs;
    rs.finished = p->stop || ep + 1 >= p->epochs;
    rs.stop = rs.finished ? (p->stop ? (int)p->res->stop : TRAINER_STOP_DONE) : -1;
    rs.plateau = p->plateau;
    rs.early = p->early;
    rs.best_map = p->res->best_epoch ? p->res->best_map : -1;
    rs.best_epoch = p->res->best_epoch;
    rs.best_threshold = p->res->best_epoch ? p->res->confidence_threshold : o->cfg.confidence_threshold;
    rs.sgd_steps = det_sgd_steps(st->d);
    rs.seed = o->cfg.seed;
    rs.next_pass = (long)(ep + 1) * p->repeat;
    rs.threads = st->e.nthreads;
    rs.subset_ratio = o->subset_ratio;
    rs.max_epochs = o->max_epochs;
    return resume_save(o->state_path, st->d, &o->cfg, &rs, p->train, p->val);
}

/* --load-weights W into the detector (a different class count re-initialises atss_cls). */
static int trainer_load_init_weights(trainer_state *st) {
    const char *path = st->p.o->init_weights;
    FILE *log = st->p.o->log;
    pth_ckpt c;
    pth_init(&c);
    CHECK(weights_read(path, &c));
    weights_load_info info;
    int s = weights_apply(st->d, &c, path, &info);
    pth_free(&c);
    CHECK(s);
    if (log) {
        fprintf(log, "init: all weights from %s (%s layout)\n", path, pth_layout_name(info.layout));
        if (info.reinit_cls)
            fprintf(log, "note: the checkpoint has %d classes, the data %d: bbox_head.atss_cls re-initialised\n",
                    info.ckpt_classes, st->p.train->n_cats);
    }
    return 0;
}

/* The engine and the detector, initialised from --load-weights, else from the template's
 * pretrained backbone (path relative to the template), else as mmdetection initialises it. */
static int trainer_setup_model(trainer_state *st) {
    const trainer_opts *o = st->p.o;
    const config_template *cfg = &o->cfg;
    CHECK(eng_init(&st->e, o->nthreads));
    st->have_e = 1;
    CHECK(trainer_make_detector(&st->d, &st->e, cfg, st->p.train->n_cats));
    if (o->resume_from) return trainer_resume_model(st); /* issue 14 */
    if (o->init_weights) return trainer_load_init_weights(st);
    if (!cfg->pretrained_backbone[0]) {
        if (o->log) fprintf(o->log, "init: random (model.pretrained_backbone: none)\n");
        return 0;
    }
    char path[2 * CONFIG_PATH_LEN + 2];
    CHECK(config_pretrained_path(cfg, path, sizeof path));
    weights_load_info info;
    CHECK(weights_load_backbone(st->d, path, &info));
    /* the pretrained function needs the settings it was trained with */
    if (info.tf_same && !cfg->tf_padding)
        return ote_err(OTE_EINVAL, "model.pretrained_backbone %s was trained with TF SAME padding: set model.tf_padding: true", path);
    if (info.minus1_input)
        return ote_err(OTE_EINVAL, "model.pretrained_backbone %s takes input in [-1, 1]; the detector feeds x/255: "
                       "re-import it with `ote import-backbone --input-range unit`", path);
    if (info.bn_folded) CHECK(det_calibrate_bn(st->d));
    st->calibrating = info.bn_folded;
    if (o->log)
        fprintf(o->log, "init: backbone from %s (%d tensors%s%s); neck and head initialised as mmdetection does\n", path,
                info.n_loaded, info.from_tflite ? ", TFLite imported in memory" : "",
                info.bn_folded ? ", folded BatchNorm re-estimated on the first batch" : "");
    return 0;
}

int trainer_train_loader_config(const config_template *cfg, loader_config *lc, aug_size sizes[5]) {
    loader_config_train(lc, cfg->num_workers, cfg->seed);
    lc->batch_size = cfg->batch_size;
    schedule_train_sizes(cfg->input_w, cfg->input_h, sizes);
    return aug_config_train_sizes(&lc->aug, sizes, 5);
}

void trainer_val_loader_config(const config_template *cfg, loader_config *lc) {
    loader_config_test(lc, cfg->input_w, cfg->input_h, cfg->num_workers > 1 ? 1 : cfg->num_workers);
}

/* The loaders, the lr schedule and early stopping; prints the plan. */
static int trainer_setup_loop(trainer_state *st) {
    trainer_progress *p = &st->p;
    const config_template *cfg = &p->o->cfg;
    loader_config lc;
    aug_size sz[5];
    CHECK(trainer_train_loader_config(cfg, &lc, sz));
    if (st->dp) lc.shard = st->rank, lc.n_shards = st->nranks; /* batch_size >= ranks: trainer_setup_data */
    CHECK(loader_create(&st->tl, p->train, &lc));
    if (p->val && (!st->dp || st->rank == 0)) { /* data-parallel: rank 0 validates */
        loader_config vc;
        trainer_val_loader_config(cfg, &vc);
        CHECK(loader_create(&st->vl, p->val, &vc));
    }
    p->batches = loader_n_batches(st->tl);
    p->total_iters = (long)p->epochs * p->repeat * p->batches;
    if (p->o->log)
        fprintf(p->o->log,
                "training: %d images, %d classes; %d epochs x %d repeat x %d batches of %d = %ld iterations; "
                "input %dx%d (train sizes %dx%d %dx%d %dx%d %dx%d %dx%d); lr %g, warm-up %d\n",
                p->train->n_images, p->train->n_cats, p->epochs, p->repeat, p->batches, cfg->batch_size,
                p->total_iters, cfg->input_w, cfg->input_h, sz[0].w, sz[0].h, sz[1].w, sz[1].h, sz[2].w, sz[2].h,
                sz[3].w, sz[3].h, sz[4].w, sz[4].h, cfg->learning_rate, cfg->warmup_iters);
    if (p->o->log && st->dp) {
        int first, lo, hi;
        char share[32];
        loader_shard_range(cfg->batch_size, st->nranks - 1, st->nranks, &first, &lo);
        loader_shard_range(cfg->batch_size, 0, st->nranks, &first, &hi);
        if (lo == hi) snprintf(share, sizeof share, "%d", lo);
        else snprintf(share, sizeof share, "%d-%d", lo, hi);
        fprintf(p->o->log, "data-parallel: %d processes x %d threads (rank 0's); each takes %s images of every batch of "
                           "%d; gradients summed (MPI_Allreduce), BatchNorm statistics per process\n",
                st->nranks, st->e.nthreads, share, cfg->batch_size);
    }
    schedule_plateau_init(&p->plateau, cfg->learning_rate, cfg->warmup_iters);
    schedule_early_stop_init(&p->early, cfg->warmup_iters);
    if (st->resumed) CHECK(trainer_resume_loop(st)); /* issue 14 */
    return 0;
}

/* ---- the step and the epoch ---- */

static int trainer_nan_error(trainer_state *st, double lr, int ep, const det_losses *L) {
    return ote_err(OTE_ENAN,
                   "iteration %ld (epoch %d, lr %g): loss is not finite (cls %g, box %g, centerness %g); "
                   "training stopped%s",
                   st->p.iter + 1, ep + 1, lr, L->cls, L->box, L->ctr,
                   st->p.res->best_epoch ? ", the best checkpoint so far is kept" : "");
}

/* ---- data-parallel training (trainer.h) ---- */

/* det_set_norm_reduce's hook: the loss normalisers summed over the ranks. */
static int trainer_dp_reduce(void *ctx, double v[2]) {
    (void)ctx;
    return dist_allreduce_sum_f64(v, 2);
}

/* Rank 0's parameters (BN statistics included), momentum and SGD step count on every rank. */
static int trainer_dp_bcast_model(trainer_state *st) {
    size_t n;
    float *pb = det_param_block(st->d, &n);
    CHECK(dist_bcast(pb, n * sizeof *pb, 0));
    float *mb = det_momentum_block(st->d, &n);
    if (n) CHECK(dist_bcast(mb, n * sizeof *mb, 0));
    long steps = det_sgd_steps(st->d);
    CHECK(dist_bcast(&steps, sizeof steps, 0));
    det_sgd_set_steps(st->d, steps);
    return det_param_block_changed(st->d);
}

/* The BN running statistics (per rank during the epoch) replaced by their mean over the ranks. */
static int trainer_dp_average_bn(trainer_state *st) {
    detector *d = st->d;
    size_t total = 0, maxn = 0;
    for (int i = 0; i < det_n_params(d); i++) {
        const det_param_info *in = det_param(d, i);
        if (!in->is_buffer || in->is_int64) continue;
        size_t k = 1;
        for (int j = 0; j < in->ndim; j++) k *= (size_t)in->shape[j];
        total += k;
        if (k > maxn) maxn = k;
    }
    if (!total) return 0;
    double *acc = malloc(total * sizeof *acc);
    float *tmp = malloc(maxn * sizeof *tmp);
    int s = acc && tmp ? 0 : ote_err(OTE_ENOMEM, "trainer: out of memory");
    for (int pass = 0; pass < 2 && s >= 0; pass++) {
        size_t off = 0;
        for (int i = 0; i < det_n_params(d) && s >= 0; i++) {
            const det_param_info *in = det_param(d, i);
            if (!in->is_buffer || in->is_int64) continue;
            size_t k = 1;
            for (int j = 0; j < in->ndim; j++) k *= (size_t)in->shape[j];
            if (pass == 0) {
                s = det_param_get(d, i, tmp);
                for (size_t j = 0; j < k; j++) acc[off + j] = tmp[j];
            } else {
                for (size_t j = 0; j < k; j++) tmp[j] = (float)(acc[off + j] / st->nranks);
                s = det_param_set(d, i, tmp);
            }
            off += k;
        }
        if (pass == 0 && s >= 0) s = dist_allreduce_sum_f64(acc, total);
    }
    free(acc), free(tmp);
    return s;
}

/* Rank 0's end-of-epoch decisions, broadcast so that no rank diverges. */
typedef struct trainer_dp_epoch {
    schedule_plateau plateau;
    schedule_early_stop early;
    double best_map, threshold;
    int best_epoch, stop, why;
} trainer_dp_epoch;

static int trainer_dp_end_epoch(trainer_state *st) {
    trainer_progress *p = &st->p;
    trainer_dp_epoch m;
    memset(&m, 0, sizeof m);
    m.plateau = p->plateau, m.early = p->early;
    m.best_map = p->res->best_map, m.threshold = p->res->confidence_threshold;
    m.best_epoch = p->res->best_epoch, m.stop = p->stop, m.why = (int)p->res->stop;
    CHECK(dist_bcast(&m, sizeof m, 0));
    p->plateau = m.plateau, p->early = m.early;
    p->res->best_map = m.best_map, p->res->confidence_threshold = m.threshold;
    p->res->best_epoch = m.best_epoch, p->stop = m.stop, p->res->stop = (trainer_stop)m.why;
    return 0;
}

/* A data-parallel iteration: this rank's share of the batch forward (normalisers summed inside),
 * backward, the loss parts summed (a NaN or a reached deadline on any rank reaches all), the
 * gradient block summed, SGD. *L receives the global batch's losses; *stop_all whether a rank
 * reached the deadline. An empty share (a last batch smaller than the rank count) contributes
 * zeros to every sum. */
static int trainer_step_dp(trainer_state *st, const data_batch *b, double lr, int ep, det_losses *L, int *stop_all) {
    memset(L, 0, sizeof *L);
    int nan = 0;
    if (b->n > 0) {
        det_batch db;
        CHECK(trainer_pack_batch(&st->pack, b, &db));
        int s = det_forward_train(st->d, &db, L);
        if (s == OTE_ENAN || (s >= 0 && !isfinite(L->total))) nan = 1;
        else CHECK(s);
        if (!nan) CHECK(det_backward(st->d));
    } else {
        double v[2] = {0, 0};
        CHECK(trainer_dp_reduce(NULL, v));
    }
    size_t ng;
    float *g = det_grad_block(st->d, &ng);
    if (b->n == 0 || nan) memset(g, 0, ng * sizeof *g);
    double o = st->p.o->deadline;
    double v[6] = {L->cls, L->box, L->ctr, L->total, nan ? 1.0 : 0.0, o > 0 && trainer_now() >= o ? 1.0 : 0.0};
    CHECK(dist_allreduce_sum_f64(v, 6));
    L->cls = v[0], L->box = v[1], L->ctr = v[2], L->total = v[3];
    *stop_all = v[5] > 0;
    if (v[4] > 0 || !isfinite(L->total)) return trainer_nan_error(st, lr, ep, L);
    CHECK(dist_allreduce_sum_f32(g, ng));
    CHECK(det_sgd_step(st->d, lr));
    if (st->calibrating) { /* each rank calibrated BN on its own share: rank 0's values for all */
        st->calibrating = 0;
        CHECK(trainer_dp_bcast_model(st));
    }
    return 0;
}

/* One iteration: pack the batch, forward (losses into *L), backward, SGD at lr. A non-finite loss
 * is OTE_ENAN naming the iteration. */
static int trainer_step(trainer_state *st, const data_batch *b, double lr, int ep, det_losses *L) {
    det_batch db;
    CHECK(trainer_pack_batch(&st->pack, b, &db));
    /* the parts stay NaN in the message if the detector stops before computing them */
    L->cls = L->box = L->ctr = L->total = NAN;
    int s = det_forward_train(st->d, &db, L);
    if (s == OTE_ENAN || (s >= 0 && !isfinite(L->total))) return trainer_nan_error(st, lr, ep, L);
    CHECK(s);
    CHECK(det_backward(st->d));
    return det_sgd_step(st->d, lr);
}

/* The progress line every log_every iterations (and after the first): mean losses since the last
 * line, lr, training images/s and the remaining time at that speed. */
static void trainer_log_progress(trainer_progress *p, int ep, double lr) {
    FILE *log = p->o->log;
    int log_every = p->o->log_every > 0 ? p->o->log_every : 10;
    if (!log || (p->iter % log_every != 0 && p->iter != 1)) return;
    char eta[32];
    double per_it = p->train_secs / (double)p->iter;
    trainer_fmt_time(per_it * (double)(p->total_iters - p->iter), eta, sizeof eta);
    const det_losses *a = &p->acc;
    fprintf(log,
            "epoch %d/%d iter %ld/%ld  loss %.4f (cls %.4f box %.4f ctr %.4f)  lr %.6g  %.1f img/s  eta %s\n",
            ep + 1, p->epochs, p->iter, p->total_iters, a->total / p->acc_n, a->cls / p->acc_n, a->box / p->acc_n,
            a->ctr / p->acc_n, lr, (double)p->images / (p->train_secs > 0 ? p->train_secs : 1e-9), eta);
    fflush(log);
    memset(&p->acc, 0, sizeof p->acc);
    p->acc_n = 0;
}

/* Epoch ep's `repeat` shuffled passes over the training loader; stops early at the deadline (the
 * epoch in flight is still validated). */
static int trainer_train_epoch(trainer_state *st, int ep) {
    trainer_progress *p = &st->p;
    memset(&p->acc, 0, sizeof p->acc);
    p->acc_n = 0;
    for (int rep = 0; rep < p->repeat && !p->stop; rep++) {
        CHECK(loader_start_epoch(st->tl, ep * p->repeat + rep));
        const data_batch *b;
        int s;
        double it_t0 = trainer_now();
        while ((s = loader_next(st->tl, &b)) == 1) {
            double lr = schedule_lr(&p->plateau, p->iter);
            det_losses L;
            int dl_all = 0;
            if (st->dp) CHECK(trainer_step_dp(st, b, lr, ep, &L, &dl_all));
            else CHECK(trainer_step(st, b, lr, ep, &L));
            p->iter++;
            p->images += b->n_global; /* data-parallel: the whole batch's */
            p->acc.cls += L.cls, p->acc.box += L.box, p->acc.ctr += L.ctr, p->acc.total += L.total;
            p->acc_n++;
            metrics_iter_add(st->metrics, lr, L.total, L.cls, L.box, L.ctr);
            double tnow = trainer_now();
            p->train_secs += tnow - it_t0;
            it_t0 = tnow;
            trainer_log_progress(p, ep, lr);
            if (st->dp ? dl_all : p->o->deadline > 0 && tnow >= p->o->deadline) {
                p->stop = 1;
                p->res->stop = TRAINER_STOP_DEADLINE;
                break;
            }
        }
        CHECK(s);
    }
    p->res->epochs_run = ep + 1;
    p->res->iters = p->iter;
    p->res->images = p->images;
    return 0;
}

/* ---- end of epoch ---- */

/* An epoch with a better mAP than any before: its confidence threshold, the weights and
 * label_schema.json written (weights_save_pair), its report kept in res (takes rep). */
static int trainer_keep_best(trainer_state *st, int ep, eval_report *rep) {
    trainer_progress *p = &st->p;
    const config_template *cfg = &p->o->cfg;
    double thr = cfg->confidence_threshold;
    int s = 0;
    if (cfg->result_based_confidence_threshold)
        s = eval_threshold(p->val, st->dets.d, st->dets.n, cfg->confidence_threshold, &thr, NULL);
    if (s >= 0 && p->o->save_path) /* the pair together, every time (issue 13 item 5) */
        s = weights_save_pair(st->d, cfg, thr, p->o->save_path, p->o->labels_path, p->val);
    if (s < 0) {
        eval_report_free(rep);
        return s;
    }
    trainer_result *res = p->res;
    if (res->has_best) eval_report_free(&res->best);
    res->best = *rep;
    res->has_best = 1;
    res->best_map = rep->voc.map;
    res->best_epoch = ep + 1;
    res->confidence_threshold = thr;
    return 0;
}

/* Sets the stop flag and reason unless training already stops. */
static void trainer_stop_for(trainer_progress *p, trainer_stop why) {
    if (p->stop) return;
    p->stop = 1;
    p->res->stop = why;
}

/* After epoch ep (started at ep_t0): validate, keep the best, ReduceLROnPlateau, early stopping,
 * the per-epoch callback and the deadline. */
/* Truncated image files and files whose size differs from the annotation: said once each time the
 * count grows (normally after the first epoch), never silently trained on. */
static void trainer_warn_images(trainer_state *st) {
    trainer_progress *p = &st->p;
    char buf[1024];
    int n = st->tl ? loader_image_warnings(st->tl, buf, sizeof buf) : 0;
    if (n > p->warned_train && p->o->log) fprintf(p->o->log, "warning: training images: %s\n", buf);
    if (n > p->warned_train) p->warned_train = n;
    n = st->vl ? loader_image_warnings(st->vl, buf, sizeof buf) : 0;
    if (n > p->warned_val && p->o->log) fprintf(p->o->log, "warning: validation images: %s\n", buf);
    if (n > p->warned_val) p->warned_val = n;
}

/* The epoch's row of metrics.csv and the refreshed figures (train/metrics.h; warnings only). */
static void trainer_record_epoch(trainer_state *st, int ep, double ep_t0, const eval_report *rep, int improved) {
    trainer_progress *p = &st->p;
    if (!st->metrics) return;
    double tnow = trainer_now();
    metrics_epoch row;
    memset(&row, 0, sizeof row);
    row.epoch = ep + 1;
    row.iters = p->iter;
    row.images_per_s = (double)p->images / (p->train_secs > 0 ? p->train_secs : 1e-9); /* as the epoch line */
    row.voc_map50 = rep->voc.map;
    row.coco_ap = rep->coco.stats[0];
    row.coco_ap50 = rep->coco.stats[1];
    row.epoch_seconds = tnow - ep_t0;
    row.wall_seconds = tnow - p->t0;
    row.best = improved;
    metrics_epoch_end(st->metrics, &row, st->dets.d, st->dets.n);
}

static int trainer_end_epoch(trainer_state *st, int ep, double ep_t0) {
    trainer_progress *p = &st->p;
    FILE *log = p->o->log;
    eval_report rep;
    memset(&rep, 0, sizeof rep);
    CHECK(trainer_validate(st, p->val, &rep));
    trainer_warn_images(st);
    double map = rep.voc.map;
    int improved = !p->res->best_epoch || map > p->res->best_map; /* best_epoch: also set by a resume */
    trainer_record_epoch(st, ep, ep_t0, &rep, improved);
    if (improved) CHECK(trainer_keep_best(st, ep, &rep));
    else eval_report_free(&rep);
    double old_lr = p->plateau.lr;
    int dropped = schedule_plateau_update(&p->plateau, map, p->iter);
    int early = schedule_early_stop_update(&p->early, map, p->iter);
    double tnow = trainer_now();
    if (log) {
        fprintf(log, "epoch %d/%d done: val mAP@0.5 %.4f%s  (%.1f s, %.1f img/s train)\n", ep + 1, p->epochs, map,
                improved ? (p->o->save_path ? "  best, saved" : "  best") : "", tnow - ep_t0,
                (double)p->images / (p->train_secs > 0 ? p->train_secs : 1e-9));
        if (dropped) fprintf(log, "ReduceLROnPlateau: lr %g -> %g\n", old_lr, p->plateau.lr);
        fflush(log);
    }
    if (early && !p->stop) {
        trainer_stop_for(p, TRAINER_STOP_EARLY);
        if (log) fprintf(log, "early stopping: no mAP improvement for %d epochs\n", p->early.wait);
    }
    if (p->o->on_epoch) {
        trainer_epoch_report r = {ep + 1, p->epochs, map, tnow - p->t0, p->images, p->iter, p->plateau.lr};
        if (p->o->on_epoch(p->o->on_epoch_ctx, &r)) trainer_stop_for(p, TRAINER_STOP_CALLBACK);
    }
    if (p->o->deadline > 0 && tnow >= p->o->deadline) trainer_stop_for(p, TRAINER_STOP_DEADLINE);
    return 0;
}

/* ---- the run ---- */

static int trainer_loop(trainer_state *st) {
    trainer_progress *p = &st->p;
    p->t0 = trainer_now();
    CHECK(trainer_setup_data(st));
    CHECK(trainer_setup_model(st));
    if (st->dp) { /* the same start on every rank, whatever each one read */
        det_set_norm_reduce(st->d, trainer_dp_reduce, NULL);
        CHECK(trainer_dp_bcast_model(st));
    }
    CHECK(trainer_setup_loop(st));
    if (p->o->write_metrics && p->o->save_path)
        st->metrics = metrics_open(p->o->save_path, p->total_iters, p->epochs, p->val, p->o->log,
                                   st->resumed ? st->rs.epochs_done : 0);
    for (int ep = st->resumed ? st->rs.epochs_done : 0; ep < p->epochs && !p->stop; ep++) {
        double ep_t0 = trainer_now();
        CHECK(trainer_train_epoch(st, ep));
        if (p->val && st->dp) CHECK(trainer_dp_average_bn(st));
        if (p->val && (!st->dp || st->rank == 0)) CHECK(trainer_end_epoch(st, ep, ep_t0));
        if (p->val && st->dp) CHECK(trainer_dp_end_epoch(st));
        if (p->val && p->o->state_path) CHECK(trainer_save_state(st, ep)); /* issue 14 */
    }
    metrics_finish(st->metrics);
    p->res->seconds = trainer_now() - p->t0;
    return 0;
}

int trainer_run(const trainer_opts *o, const coco_dataset *train, const coco_dataset *val, trainer_result *res) {
    memset(res, 0, sizeof *res);
    res->best_map = -1;
    trainer_state st;
    memset(&st, 0, sizeof st);
    eval_dets_init(&st.dets);
    st.p.o = o;
    if (o->data_parallel && dist_size() > 1) st.dp = 1, st.rank = dist_rank(), st.nranks = dist_size();
    if (!trainer_is_writer(o->data_parallel)) { /* the other ranks: every output off (trainer.h) */
        st.rank_opts = *o;
        st.rank_opts.log = NULL;
        st.rank_opts.save_path = st.rank_opts.labels_path = st.rank_opts.state_path = NULL;
        st.rank_opts.write_metrics = 0;
        st.rank_opts.on_epoch = NULL;
        st.p.o = &st.rank_opts;
    }
    st.p.train = train;
    st.p.val = val;
    st.p.res = res;
    int s = trainer_loop(&st);
    trainer_state_free(&st);
    /* resumed, best epoch before the resume: its report from the weights file (same numbers) */
    if (s >= 0 && !res->has_best && res->best_epoch > 0 && st.p.o->save_path && val) {
        s = trainer_evaluate(&o->cfg, o->save_path, val, o->nthreads, &res->best, NULL);
        res->has_best = s >= 0;
    }
    if (s < 0) trainer_result_free(res);
    return s;
}

/* trainer_evaluate of an exported model (OpenCV dnn): the same loader, post-processing and scoring. */
static int trainer_evaluate_onnx(const config_template *cfg, const char *path, const coco_dataset *ds, int nthreads,
                                 eval_report *out, eval_dets *keep) {
    onnx_model om;
    int s = onnx_model_open(&om, path, nthreads);
    if (s < 0) {
        onnx_model_close(&om);
        return s;
    }
    eval_dets dets;
    eval_dets_init(&dets);
    data_loader *vl = NULL;
    if (om.meta.num_classes != ds->n_cats) {
        s = ote_err(OTE_EINVAL, "%s: the model has %d classes, the test annotations %d", path, om.meta.num_classes,
                    ds->n_cats);
    } else if (cfg->input_w != om.meta.input_w || cfg->input_h != om.meta.input_h) {
        s = ote_err(OTE_EINVAL, "%s: exported for input size %dx%d, model.input_size is %dx%d (export again)", path,
                    om.meta.input_w, om.meta.input_h, cfg->input_w, cfg->input_h);
    } else {
        loader_config vc;
        trainer_val_loader_config(cfg, &vc);
        s = loader_create(&vl, ds, &vc);
    }
    if (s >= 0) s = trainer_predict_with(NULL, &om, vl, &dets);
    if (s >= 0) s = eval_run(ds, dets.d, dets.n, EVAL_CROWD_ABSENT, trainer_max_dets, out);
    for (int i = 0; s >= 0 && keep && i < dets.n; i++) s = eval_dets_push(keep, dets.d[i]);
    if (vl) loader_free(vl);
    eval_dets_free(&dets);
    onnx_model_close(&om);
    return s;
}

int trainer_is_onnx_path(const char *path) {
    size_t n = strlen(path);
    return n >= 5 && !strcmp(path + n - 5, ".onnx");
}

int trainer_model_settings(const char *path, config_template *cfg, pth_ckpt *c) {
    if (trainer_is_onnx_path(path)) { /* an exported model: its input size is fixed by the file */
        export_meta em;
        CHECK(export_read_meta(path, &em));
        cfg->input_w = em.input_w, cfg->input_h = em.input_h;
        cfg->confidence_threshold = em.confidence_threshold;
        return 0;
    }
    CHECK(weights_read(path, c));
    CHECK(weights_config_to_template(c, cfg));
    if (c->has_confidence_threshold) cfg->confidence_threshold = c->confidence_threshold;
    return 0;
}

int trainer_evaluate(const config_template *cfg, const char *weights_path, const coco_dataset *ds, int nthreads,
                     eval_report *out, eval_dets *keep) {
    memset(out, 0, sizeof *out);
    if (trainer_is_onnx_path(weights_path)) return trainer_evaluate_onnx(cfg, weights_path, ds, nthreads, out, keep);
    trainer_state st;
    memset(&st, 0, sizeof st);
    eval_dets_init(&st.dets);
    pth_ckpt c;
    pth_init(&c);
    int s = weights_read(weights_path, &c);
    if (s < 0) goto done;
    s = eng_init(&st.e, nthreads);
    if (s < 0) goto done;
    st.have_e = 1;
    s = trainer_make_detector(&st.d, &st.e, cfg, ds->n_cats);
    if (s < 0) goto done;
    weights_load_info info;
    s = weights_apply(st.d, &c, weights_path, &info);
    if (s < 0) goto done;
    if (info.reinit_cls) {
        s = ote_err(OTE_EINVAL, "%s: the model has %d classes, the test annotations %d", weights_path,
                    info.ckpt_classes, ds->n_cats);
        goto done;
    }
    loader_config vc;
    trainer_val_loader_config(cfg, &vc);
    s = loader_create(&st.vl, ds, &vc);
    if (s < 0) goto done;
    s = trainer_validate(&st, ds, out);
    for (int i = 0; s >= 0 && keep && i < st.dets.n; i++) s = eval_dets_push(keep, st.dets.d[i]);
done:
    pth_free(&c);
    trainer_state_free(&st);
    return s;
}

/* ---- a kept detector for `ote predict` and the training samples (train/predict.c) ---- */

struct trainer_predictor {
    trainer_state st; /* the engine and detector; a loader per trainer_predictor_run */
    config_template cfg;
    int onnx;         /* 1: an exported model run by OpenCV dnn (om) instead of the detector */
    onnx_model om;
};

void trainer_predictor_close(trainer_predictor *p) {
    if (!p) return;
    trainer_state_free(&p->st);
    if (p->onnx) onnx_model_close(&p->om);
    free(p);
}

int trainer_predictor_open(trainer_predictor **out, const config_template *cfg, const pth_ckpt *c, const char *what,
                           int n_classes, int nthreads) {
    *out = NULL;
    trainer_predictor *p = calloc(1, sizeof *p);
    if (!p) return ote_err(OTE_ENOMEM, "trainer: out of memory");
    eval_dets_init(&p->st.dets);
    p->cfg = *cfg;
    int s = eng_init(&p->st.e, nthreads);
    if (s >= 0) p->st.have_e = 1;
    if (s >= 0) s = trainer_make_detector(&p->st.d, &p->st.e, cfg, n_classes);
    weights_load_info info;
    if (s >= 0) s = weights_apply(p->st.d, c, what, &info);
    if (s >= 0 && info.reinit_cls)
        s = ote_err(OTE_EINVAL, "%s: the model has %d classes, the labels %d", what, info.ckpt_classes, n_classes);
    if (s < 0) {
        trainer_predictor_close(p);
        return s;
    }
    *out = p;
    return 0;
}

int trainer_predictor_open_file(trainer_predictor **out, const config_template *cfg, const char *path, int n_classes,
                                int nthreads) {
    *out = NULL;
    if (!trainer_is_onnx_path(path)) {
        pth_ckpt c;
        pth_init(&c);
        int s = weights_read(path, &c);
        if (s >= 0) s = trainer_predictor_open(out, cfg, &c, path, n_classes, nthreads);
        pth_free(&c);
        return s;
    }
    trainer_predictor *p = calloc(1, sizeof *p);
    if (!p) return ote_err(OTE_ENOMEM, "trainer: out of memory");
    eval_dets_init(&p->st.dets);
    p->cfg = *cfg;
    p->onnx = 1;
    int s = onnx_model_open(&p->om, path, nthreads);
    if (s >= 0 && p->om.meta.num_classes != n_classes)
        s = ote_err(OTE_EINVAL, "%s: the model has %d classes, the labels %d", path, p->om.meta.num_classes, n_classes);
    if (s >= 0 && (cfg->input_w != p->om.meta.input_w || cfg->input_h != p->om.meta.input_h))
        s = ote_err(OTE_EINVAL, "%s: exported for input size %dx%d, model.input_size is %dx%d (export again)", path,
                    p->om.meta.input_w, p->om.meta.input_h, cfg->input_w, cfg->input_h);
    if (s < 0) {
        trainer_predictor_close(p);
        return s;
    }
    *out = p;
    return 0;
}

int trainer_predictor_run(trainer_predictor *p, const coco_dataset *ds, eval_dets *out) {
    loader_config vc;
    trainer_val_loader_config(&p->cfg, &vc);
    CHECK(loader_create(&p->st.vl, ds, &vc));
    int s = p->onnx ? trainer_predict_with(NULL, &p->om, p->st.vl, out) : trainer_predict_all(p->st.d, p->st.vl, out);
    loader_free(p->st.vl);
    p->st.vl = NULL;
    return s;
}

/* One training iteration for trainer_time_steps; a tiny lr so that the timing never depends on the
 * template's lr diverging. */
static int trainer_time_one_step(detector *d, const det_batch *db) {
    det_losses L;
    CHECK(det_forward_train(d, db, &L));
    CHECK(det_backward(d));
    return det_sgd_step(d, 1e-6);
}

int trainer_time_steps(const config_template *cfg, const coco_dataset *train, const coco_dataset *val, int steps,
                       int preds, int nthreads, trainer_timing *out) {
    memset(out, 0, sizeof *out);
    if (steps < 1) steps = 1;
    if (preds < 1) preds = 1;
    double t_all = trainer_now();
    trainer_state st;
    memset(&st, 0, sizeof st);
    eval_dets_init(&st.dets);
    coco_dataset vsub;
    int have_vsub = 0, s;
    if ((s = eng_init(&st.e, nthreads)) < 0) goto done;
    st.have_e = 1;
    if ((s = trainer_make_detector(&st.d, &st.e, cfg, train->n_cats)) < 0) goto done;
    /* One size only (the input size): a second shape would build a second plan inside the timing. */
    loader_config lc;
    loader_config_train(&lc, 0, cfg->seed);
    lc.batch_size = cfg->batch_size;
    aug_size size = {cfg->input_w, cfg->input_h};
    if ((s = aug_config_train_sizes(&lc.aug, &size, 1)) < 0) goto done;
    if ((s = loader_create(&st.tl, train, &lc)) < 0) goto done;
    if ((s = loader_start_epoch(st.tl, 0)) < 0) goto done;
    const data_batch *b;
    s = loader_next(st.tl, &b);
    if (s <= 0) {
        if (s == 0) s = ote_err(OTE_EINVAL, "trainer: the training set has no images");
        goto done;
    }
    det_batch db;
    if ((s = trainer_pack_batch(&st.pack, b, &db)) < 0) goto done;
    out->step_images = b->n;
    double first = 0, timed = 0;
    for (int i = 0; i <= steps; i++) {
        double t0 = trainer_now();
        if ((s = trainer_time_one_step(st.d, &db)) < 0) goto done;
        double dt = trainer_now() - t0;
        if (i == 0) first = dt;
        else timed += dt;
    }
    out->step_seconds = timed / steps;
    out->plan_seconds = first > out->step_seconds ? first - out->step_seconds : 0;
    if (val && val->n_images > 0) {
        int k = preds < val->n_images ? preds : val->n_images;
        if ((s = coco_subset(&vsub, val, k, cfg->seed)) < 0) goto done;
        have_vsub = 1;
        loader_config vc;
        loader_config_test(&vc, cfg->input_w, cfg->input_h, 0);
        if ((s = loader_create(&st.vl, &vsub, &vc)) < 0) goto done;
        double t0 = trainer_now();
        if ((s = trainer_predict_all(st.d, st.vl, &st.dets)) < 0) goto done;
        double t1 = trainer_now();
        st.dets.n = 0;
        if ((s = trainer_predict_all(st.d, st.vl, &st.dets)) < 0) goto done;
        double t2 = trainer_now();
        out->predict_seconds = (t2 - t1) / k;
        out->predict_plan_seconds = (t1 - t0) > (t2 - t1) ? (t1 - t0) - (t2 - t1) : 0;
        /* train -> validate -> train, as every epoch does */
        if ((s = trainer_time_one_step(st.d, &db)) < 0) goto done;
        double t3 = trainer_now();
        st.dets.n = 0;
        if ((s = trainer_predict_all(st.d, st.vl, &st.dets)) < 0) goto done;
        double t4 = trainer_now();
        double extra_step = (t3 - t2) - out->step_seconds, extra_pred = (t4 - t3) - (t2 - t1);
        out->switch_seconds = (extra_step > 0 ? extra_step : 0) + (extra_pred > 0 ? extra_pred : 0);
    }
    s = 0;
done:
    trainer_state_free(&st);
    if (have_vsub) coco_free(&vsub);
    out->seconds = trainer_now() - t_all;
    return s;
}

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
#include "engine/ctx.h"
#include "engine/status.h"
#include "models/detector.h"
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
static int trainer_predict_all(detector *d, data_loader *vl, eval_dets *dets) {
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
        s = det_predict(d, b->n, b->h, b->w, b->images, ih, iw, sf, outs, n_out, MAXDET);
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

/* Confidence threshold with the best F-measure over all classes (IoU 0.5, each gt matched at most
 * once, greedy by score), over thresholds 0.025, 0.05, ..., 0.975 - our reading of OTE's
 * result_based_confidence_threshold. Returns fallback when there are no gts. */
static double trainer_best_threshold(const coco_dataset *gt, const eval_dets *dets, double fallback) {
    int n = dets->n;
    if (gt->n_boxes == 0 || n == 0) return fallback;
    int *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    int *tmp = malloc((size_t)(n > 0 ? n : 1) * sizeof *tmp);
    float *score = malloc((size_t)(n > 0 ? n : 1) * sizeof *score);
    char *used = calloc((size_t)gt->n_boxes, 1);
    if (!order || !tmp || !score || !used) {
        free(order), free(tmp), free(score), free(used);
        return fallback;
    }
    for (int i = 0; i < n; i++) order[i] = i, score[i] = dets->d[i].score;
    eval_argsort_desc(score, order, n, tmp);
    int n_gt = 0;
    for (int b = 0; b < gt->n_boxes; b++) n_gt += !gt->boxes[b].iscrowd;
    double best_f = -1, best_t = fallback;
    for (int ti = 1; ti < 40; ti++) {
        double thr = 0.025 * ti;
        memset(used, 0, (size_t)gt->n_boxes);
        int tp = 0, fp = 0;
        for (int r = 0; r < n; r++) {
            const eval_det *e = &dets->d[order[r]];
            if (e->score < thr) break;
            const coco_image *im = &gt->images[e->image];
            int best = -1;
            double best_iou = 0.5;
            for (int k = im->first_box; k < im->first_box + im->n_boxes; k++) {
                const coco_box *g = &gt->boxes[k];
                if (g->iscrowd || g->label != e->label || used[k]) continue;
                double iw = fmin(e->x2, g->x2) - fmax(e->x1, g->x1), ih = fmin(e->y2, g->y2) - fmax(e->y1, g->y1);
                if (iw <= 0 || ih <= 0) continue;
                double inter = iw * ih;
                double uni = (double)(e->x2 - e->x1) * (e->y2 - e->y1) + (double)(g->x2 - g->x1) * (g->y2 - g->y1) - inter;
                double iou = inter / (uni > 1e-6 ? uni : 1e-6);
                if (iou >= best_iou) best_iou = iou, best = k;
            }
            if (best >= 0) used[best] = 1, tp++;
            else fp++;
        }
        double f = (2.0 * tp) / (2.0 * tp + fp + (n_gt - tp) > 0 ? 2.0 * tp + fp + (n_gt - tp) : 1);
        if (f > best_f + 1e-12) best_f = f, best_t = thr;
    }
    free(order), free(tmp), free(score), free(used);
    return best_t;
}

/* Loads a `ote import-backbone` checkpoint into the matching parameters (every tensor must name a
 * parameter of the same shape; parameters it does not list keep their initialisation). */
static int trainer_load_backbone(detector *d, const char *path) {
    pth_ckpt c;
    pth_init(&c);
    CHECK(weights_read(path, &c));
    int s = 0;
    float *buf = NULL;
    for (size_t j = 0; j < c.n_tensors && s >= 0; j++) {
        const pth_tensor *t = &c.tensors[j];
        if (!strncmp(t->name, "backbone.output.", 16) || !strncmp(t->name, "backbone.features.final_block.", 30))
            continue; /* the ImageNet classifier is not part of the detector */
        int i = det_param_find(d, t->name);
        const det_param_info *p = i >= 0 ? det_param(d, i) : NULL;
        long pn = 1;
        for (int k = 0; p && k < p->ndim; k++) pn *= p->shape[k];
        if (!p || (size_t)pn != t->numel) {
            s = ote_err(OTE_EINVAL, "%s: %s %s", path, t->name, p ? "has a different shape than the model's" : "is not a detector parameter");
            break;
        }
        float *nb = realloc(buf, t->numel * sizeof *nb + 4);
        if (!nb) {
            s = ote_err(OTE_ENOMEM, "trainer: out of memory");
            break;
        }
        buf = nb;
        if (t->dtype == PTH_I64)
            for (size_t k = 0; k < t->numel; k++) buf[k] = (float)((const int64_t *)t->data)[k];
        else
            memcpy(buf, t->data, t->numel * sizeof(float));
        s = det_param_set(d, i, buf);
    }
    free(buf);
    pth_free(&c);
    return s;
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

/* Creates the detector for cfg (ctx must be initialised). */
static int trainer_make_detector(detector **d, eng_ctx *e, const config_template *cfg, int n_classes) {
    det_cfg dc;
    memset(&dc, 0, sizeof dc);
    dc.num_classes = n_classes;
    dc.backbone = cfg->backbone ? DET_BACKBONE_TORCHVISION : DET_BACKBONE_PYTORCHCV;
    dc.tf_padding = cfg->tf_padding;
    dc.seed = cfg->seed;
    CHECK(det_create(d, e, &dc));
    /* OTE's SGD: momentum 0.9, weight decay 1e-4 on every parameter (spec-detector §9). */
    det_set_optimizer(*d, 0.9, 1e-4);
    return 0;
}

typedef struct trainer_state {
    eng_ctx e;
    int have_e;
    detector *d;
    data_loader *tl, *vl;
    coco_dataset sub;
    int have_sub;
    trainer_pack pack;
    eval_dets dets;
} trainer_state;

static void trainer_state_free(trainer_state *st) {
    loader_free(st->tl);
    loader_free(st->vl);
    det_free(st->d);
    if (st->have_e) eng_free(&st->e);
    if (st->have_sub) coco_free(&st->sub);
    trainer_pack_free(&st->pack);
    eval_dets_free(&st->dets);
}

/* Validation of one epoch: predicts, scores, and returns the report in *rep (caller frees). */
static int trainer_validate(trainer_state *st, const coco_dataset *val, eval_report *rep) {
    st->dets.n = 0;
    CHECK(trainer_predict_all(st->d, st->vl, &st->dets));
    return eval_run(val, st->dets.d, st->dets.n, EVAL_CROWD_ABSENT, trainer_max_dets, rep);
}

static int trainer_loop(trainer_state *st, const trainer_opts *o, const coco_dataset *train, const coco_dataset *val,
                        trainer_result *res) {
    const config_template *cfg = &o->cfg;
    FILE *log = o->log;
    double t0 = trainer_now();
    const coco_dataset *tr = train;
    if (o->subset_ratio > 0 && o->subset_ratio < 1) {
        int keep = (int)(train->n_images * o->subset_ratio);
        if (keep < 1) keep = 1;
        CHECK(coco_subset(&st->sub, train, keep, cfg->seed));
        st->have_sub = 1;
        tr = &st->sub;
    }
    if (tr->n_images < 1) return ote_err(OTE_EINVAL, "trainer: the training set has no images");
    if (val) CHECK(trainer_check_classes(tr, val));
    int repeat, epochs;
    schedule_adaptive_repeat(tr->n_images, cfg->num_iters, &repeat, &epochs);
    if (o->max_epochs > 0) epochs = o->max_epochs;
    res->repeat = repeat;
    res->epochs_planned = epochs;

    CHECK(eng_init(&st->e, o->nthreads));
    st->have_e = 1;
    CHECK(trainer_make_detector(&st->d, &st->e, cfg, tr->n_cats));
    if (cfg->pretrained_backbone[0] && !o->init_weights) {
        char p[2 * CONFIG_PATH_LEN + 2];
        if (cfg->pretrained_backbone[0] == '/') snprintf(p, sizeof p, "%s", cfg->pretrained_backbone);
        else snprintf(p, sizeof p, "%s/%s", cfg->dir, cfg->pretrained_backbone);
        CHECK(trainer_load_backbone(st->d, p));
        if (log) fprintf(log, "backbone initialised from %s\n", p);
    }
    if (o->init_weights) {
        pth_ckpt c;
        pth_init(&c);
        CHECK(weights_read(o->init_weights, &c));
        weights_load_info info;
        int s = weights_apply(st->d, &c, o->init_weights, &info);
        pth_free(&c);
        CHECK(s);
        if (log) {
            fprintf(log, "loaded weights from %s (%s layout)\n", o->init_weights, pth_layout_name(info.layout));
            if (info.reinit_cls)
                fprintf(log, "note: the checkpoint has %d classes, the data %d: bbox_head.atss_cls re-initialised\n",
                        info.ckpt_classes, tr->n_cats);
        }
    }

    loader_config lc;
    loader_config_train(&lc, cfg->num_workers, cfg->seed);
    lc.batch_size = cfg->batch_size;
    aug_size sizes[5];
    schedule_train_sizes(cfg->input_w, cfg->input_h, sizes);
    CHECK(aug_config_train_sizes(&lc.aug, sizes, 5));
    CHECK(loader_create(&st->tl, tr, &lc));
    if (val) {
        loader_config vc;
        loader_config_test(&vc, cfg->input_w, cfg->input_h, cfg->num_workers > 1 ? 1 : cfg->num_workers);
        CHECK(loader_create(&st->vl, val, &vc));
    }
    int nb = loader_n_batches(st->tl);
    long total_iters = (long)epochs * repeat * nb;
    if (log)
        fprintf(log,
                "training: %d images, %d classes; %d epochs x %d repeat x %d batches of %d = %ld iterations; "
                "input %dx%d (train sizes %dx%d %dx%d %dx%d %dx%d %dx%d); lr %g, warm-up %d\n",
                tr->n_images, tr->n_cats, epochs, repeat, nb, cfg->batch_size, total_iters, cfg->input_w,
                cfg->input_h, sizes[0].w, sizes[0].h, sizes[1].w, sizes[1].h, sizes[2].w, sizes[2].h, sizes[3].w,
                sizes[3].h, sizes[4].w, sizes[4].h, cfg->learning_rate, cfg->warmup_iters);

    schedule_plateau pl;
    schedule_plateau_init(&pl, cfg->learning_rate, cfg->warmup_iters);
    schedule_early_stop es;
    schedule_early_stop_init(&es, cfg->warmup_iters);
    int log_every = o->log_every > 0 ? o->log_every : 10;
    long iter = 0, images = 0;
    double train_secs = 0;
    int stop = 0, labels_written = 0;
    for (int ep = 0; ep < epochs && !stop; ep++) {
        double ep_t0 = trainer_now();
        long ep_images = 0;
        det_losses acc;
        memset(&acc, 0, sizeof acc);
        int acc_n = 0;
        for (int rep = 0; rep < repeat && !stop; rep++) {
            CHECK(loader_start_epoch(st->tl, ep * repeat + rep));
            const data_batch *b;
            int s;
            double it_t0 = trainer_now();
            while ((s = loader_next(st->tl, &b)) == 1) {
                double lr = schedule_lr(&pl, iter);
                det_batch db;
                CHECK(trainer_pack_batch(&st->pack, b, &db));
                det_losses L;
                /* the parts stay NaN in the message if the detector stops before computing them */
                L.cls = L.box = L.ctr = L.total = NAN;
                s = det_forward_train(st->d, &db, &L);
                if (s == OTE_ENAN || (s >= 0 && !isfinite(L.total)))
                    return ote_err(OTE_ENAN,
                                   "iteration %ld (epoch %d, lr %g): loss is not finite (cls %g, box %g, centerness %g); "
                                   "training stopped%s",
                                   iter + 1, ep + 1, lr, L.cls, L.box, L.ctr,
                                   res->best_epoch ? ", the best checkpoint so far is kept" : "");
                CHECK(s);
                CHECK(det_backward(st->d));
                CHECK(det_sgd_step(st->d, lr));
                iter++;
                images += b->n;
                ep_images += b->n;
                acc.cls += L.cls, acc.box += L.box, acc.ctr += L.ctr, acc.total += L.total;
                acc_n++;
                double tnow = trainer_now();
                train_secs += tnow - it_t0;
                it_t0 = tnow;
                if (log && (iter % log_every == 0 || iter == 1)) {
                    char eta[32];
                    double per_it = train_secs / (double)iter;
                    trainer_fmt_time(per_it * (double)(total_iters - iter), eta, sizeof eta);
                    fprintf(log,
                            "epoch %d/%d iter %ld/%ld  loss %.4f (cls %.4f box %.4f ctr %.4f)  lr %.6g  %.1f img/s  "
                            "eta %s\n",
                            ep + 1, epochs, iter, total_iters, acc.total / acc_n, acc.cls / acc_n, acc.box / acc_n,
                            acc.ctr / acc_n, lr, (double)images / (train_secs > 0 ? train_secs : 1e-9), eta);
                    fflush(log);
                    memset(&acc, 0, sizeof acc);
                    acc_n = 0;
                }
                if (o->deadline > 0 && tnow >= o->deadline) {
                    stop = 1;
                    res->stop = TRAINER_STOP_DEADLINE;
                    break;
                }
            }
            CHECK(s);
        }
        res->epochs_run = ep + 1;
        res->iters = iter;
        res->images = images;
        if (!val) continue;
        eval_report rep;
        memset(&rep, 0, sizeof rep);
        CHECK(trainer_validate(st, val, &rep));
        double map = rep.voc.map;
        int improved = !res->has_best || map > res->best_map;
        if (improved) {
            double thr = cfg->result_based_confidence_threshold
                             ? trainer_best_threshold(val, &st->dets, cfg->confidence_threshold)
                             : cfg->confidence_threshold;
            if (o->save_path) {
                int s = weights_save(st->d, cfg, thr, o->save_path);
                if (s < 0) {
                    eval_report_free(&rep);
                    return s;
                }
                if (o->labels_path && !labels_written) {
                    s = weights_save_labels(o->labels_path, val);
                    if (s < 0) {
                        eval_report_free(&rep);
                        return s;
                    }
                    labels_written = 1;
                }
            }
            if (res->has_best) eval_report_free(&res->best);
            res->best = rep;
            res->has_best = 1;
            res->best_map = map;
            res->best_epoch = ep + 1;
            res->confidence_threshold = thr;
        } else {
            eval_report_free(&rep);
        }
        double old_lr = pl.lr;
        int dropped = schedule_plateau_update(&pl, map, iter);
        int early = schedule_early_stop_update(&es, map, iter);
        double tnow = trainer_now();
        if (log) {
            fprintf(log, "epoch %d/%d done: val mAP@0.5 %.4f%s  (%.1f s, %.1f img/s train)\n", ep + 1, epochs, map,
                    improved ? (o->save_path ? "  best, saved" : "  best") : "", tnow - ep_t0,
                    (double)images / (train_secs > 0 ? train_secs : 1e-9));
            if (dropped) fprintf(log, "ReduceLROnPlateau: lr %g -> %g\n", old_lr, pl.lr);
            fflush(log);
        }
        if (early && !stop) {
            stop = 1;
            res->stop = TRAINER_STOP_EARLY;
            if (log) fprintf(log, "early stopping: no mAP improvement for %d epochs\n", es.wait);
        }
        if (o->on_epoch) {
            trainer_epoch_report r = {ep + 1, epochs, map, tnow - t0, images, iter, pl.lr};
            if (o->on_epoch(o->on_epoch_ctx, &r) && !stop) {
                stop = 1;
                res->stop = TRAINER_STOP_CALLBACK;
            }
        }
        if (o->deadline > 0 && tnow >= o->deadline && !stop) {
            stop = 1;
            res->stop = TRAINER_STOP_DEADLINE;
        }
    }
    res->seconds = trainer_now() - t0;
    return 0;
}

int trainer_run(const trainer_opts *o, const coco_dataset *train, const coco_dataset *val, trainer_result *res) {
    memset(res, 0, sizeof *res);
    res->best_map = -1;
    trainer_state st;
    memset(&st, 0, sizeof st);
    eval_dets_init(&st.dets);
    int s = trainer_loop(&st, o, train, val, res);
    trainer_state_free(&st);
    if (s < 0) trainer_result_free(res);
    return s;
}

int trainer_evaluate(const config_template *cfg, const char *weights_path, const coco_dataset *ds, int nthreads,
                     eval_report *out, eval_dets *keep) {
    memset(out, 0, sizeof *out);
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
    loader_config_test(&vc, cfg->input_w, cfg->input_h, cfg->num_workers > 1 ? 1 : cfg->num_workers);
    s = loader_create(&st.vl, ds, &vc);
    if (s < 0) goto done;
    s = trainer_validate(&st, ds, out);
    for (int i = 0; s >= 0 && keep && i < st.dets.n; i++) s = eval_dets_push(keep, st.dets.d[i]);
done:
    pth_free(&c);
    trainer_state_free(&st);
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

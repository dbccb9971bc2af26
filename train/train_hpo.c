/* train_hpo.c - the HPO phase of `ote train --enable-hpo` (see train_hpo.h).
 *
 * Owns nothing beyond one call: the hpo_config, the plan and the trial callback context. The
 * datasets belong to cmd_train. Invariant: no trial writes weights; the only files written here
 * are hpo_run's status and trial files and trials.csv (atomically, in hpo/ beside the weights),
 * and the figures history.png and space.png there.
 */
#include "train/train_hpo.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "dist/dist.h"
#include "engine/ote.h"
#include "hpo/plan.h"
#include "hpo/plan_record.h"
#include "train/hpo_dist.h"
#include "train/plots.h"
#include "train/schedule.h"
#include "train/trainer.h"
#include "train/weights.h"

/* Calibration: 3 timed iterations after the warm-up one, 3 validation images (the brief of issue 6). */
enum { TRAIN_HPO_STEPS = 3, TRAIN_HPO_PREDS = 3 };
/* Plan building counted once for training and once for validation: the first plan of a process
 * is the expensive one (observed on airport at 256x160: epochs 2-3, which meet new multi-scale
 * shapes, ran at the steady speed while epoch 1 took 4x longer). */
enum { TRAIN_HPO_TRAIN_PLANS = 1 };
/* Smallest trial input side (see train_hpo_train_trial). */
enum { TRAIN_HPO_MIN_SIDE = 96 };

static double train_hpo_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int train_hpo_parse_resume(const char *s) {
    if (!s || !strcmp(s, "ask")) return HPO_RESUME_ASK;
    if (!strcmp(s, "yes")) return HPO_RESUME_YES;
    if (!strcmp(s, "no")) return HPO_RESUME_NO;
    return -1;
}

void train_hpo_estimate_run(const config_template *cfg, const coco_dataset *train, const coco_dataset *val,
                            const trainer_timing *tm, train_hpo_estimate *e) {
    memset(e, 0, sizeof *e);
    schedule_adaptive_repeat(train->n_images, cfg->num_iters, &e->repeat, &e->epochs);
    e->batches = (train->n_images + cfg->batch_size - 1) / cfg->batch_size;
    e->iters = (long)e->epochs * e->repeat * e->batches;
    e->train_s = (double)e->iters * tm->step_seconds;
    e->val_s = (double)e->epochs * (val->n_images * tm->predict_seconds + tm->switch_seconds);
    e->setup_s = TRAIN_HPO_TRAIN_PLANS * tm->plan_seconds + tm->predict_plan_seconds;
    e->total_s = e->train_s + e->val_s + e->setup_s;
}

/* Images one trainer epoch processes for a training set of n images (hpo_budget_in.epoch_images):
 * the trainer's adaptive repeat for n images and the template's num_iters. */
static long train_hpo_epoch_images(void *ctx, long n) {
    const config_template *cfg = ctx;
    int repeat = 1, epochs = 1;
    schedule_adaptive_repeat((int)n, cfg->num_iters, &repeat, &epochs);
    return n * repeat;
}

/* Sets one hyper-parameter through config_set (type and min/max checked like a `params` override). */
static int train_hpo_set_value(config_template *c, const hp_param *p, double v) {
    char buf[64];
    hp_format_value(p, v, buf, sizeof buf);
    return config_set(c, p->name, buf);
}

int train_hpo_trial_template(const config_template *cfg, const hp_space *space, const double *values, int trial_epochs,
                             int full_epochs, double image_resize, config_template *tc) {
    *tc = *cfg;
    int warmup_searched = 0;
    for (int i = 0; i < space->n; i++) {
        CHECK(train_hpo_set_value(tc, &space->p[i], values[i]));
        if (!strcmp(space->p[i].name, "learning_parameters.learning_rate_warmup_iters")) warmup_searched = 1;
    }
    /* Scaled warm-up (OTE >= v0.3): the trial's short schedule keeps the full run's shape. */
    if (!warmup_searched && full_epochs > 0) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d", (int)((double)tc->warmup_iters * trial_epochs / full_epochs));
        CHECK(config_set(tc, "learning_parameters.learning_rate_warmup_iters", buf));
    }
    int w = hpo_plan_trial_size(cfg->input_w, image_resize);
    int h = hpo_plan_trial_size(cfg->input_h, image_resize);
    /* Below 96 pixels the stride-32 stage is 1-2 pixels wide and oneDNN 2.6 has no JIT kernel for
     * the depthwise conv's backward-weights there (only ref:any, which plans refuse). */
    if (w < TRAIN_HPO_MIN_SIDE) w = cfg->input_w < TRAIN_HPO_MIN_SIDE ? cfg->input_w : TRAIN_HPO_MIN_SIDE;
    if (h < TRAIN_HPO_MIN_SIDE) h = cfg->input_h < TRAIN_HPO_MIN_SIDE ? cfg->input_h : TRAIN_HPO_MIN_SIDE;
    char size[32];
    snprintf(size, sizeof size, "%dx%d", w, h);
    return config_set(tc, "model.input_size", size);
}

typedef struct train_hpo_trial_ctx {
    const train_hpo_args *a;
    const config_template *cfg;  /* template + user params */
    int full_epochs;          /* epochs of the full training (after adaptive repeat) */
    double predict_seconds;   /* one validation image at full size */
    /* per trial */
    const hpo_trial *t;
    hpo_reporter *r;
    double last_seconds;
    int report_err;
} train_hpo_trial_ctx;

static int train_hpo_on_epoch(void *vctx, const trainer_epoch_report *rep) {
    train_hpo_trial_ctx *c = vctx;
    double secs = rep->seconds - c->last_seconds;
    c->last_seconds = rep->seconds;
    int s = hpo_report(c->r, rep->epoch, rep->map, secs, rep->images);
    if (c->a->out) {
        fprintf(c->a->out, "  trial %d epoch %d/%d: val mAP@0.5 %.4f (%.1f s, %ld images)%s\n", c->t->id, rep->epoch,
                c->t->max_epochs, rep->map, secs, rep->images, s == HPO_STOP_TRIAL ? ", trial ends" : "");
        fflush(c->a->out);
    }
    if (s < 0) {
        c->report_err = s;
        return 1;
    }
    return s == HPO_STOP_TRIAL;
}

/* hpo/history.png and hpo/space.png after every recorded trial (issue 14); a figure that cannot
 * be drawn is a warning on the output, once per figure. */
typedef struct train_hpo_figs {
    const char *work;
    FILE *out;
    int warned[2];
} train_hpo_figs;

static void train_hpo_on_record(void *vctx, const hpo_state *st) {
    train_hpo_figs *f = vctx;
    char path[4096 + 32];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", f->work, k ? "space.png" : "history.png");
        int s = k ? plots_hpo_space(path, st) : plots_hpo_history(path, st);
        if (s < 0 && !f->warned[k] && f->out) {
            fprintf(f->out, "HPO: warning: %s (the search goes on)\n", ote_errmsg());
            fflush(f->out);
        }
        if (s < 0) f->warned[k] = 1;
    }
}

/* The objective: one in-process trial. */
void train_hpo_trial_opts(const config_template *tc, double subset_ratio, int max_epochs, trainer_opts *o) {
    trainer_opts_init(o, tc);
    o->save_path = NULL; /* trials never write weights */
    o->labels_path = NULL;
    o->subset_ratio = subset_ratio;
    o->max_epochs = max_epochs;
    o->log = NULL;
    o->data_parallel = 0; /* a trial is one rank's own training, even under mpirun */
}

static int train_hpo_train_trial(void *vctx, const hpo_trial *t, hpo_reporter *r) {
    train_hpo_trial_ctx *c = vctx;
    c->t = t;
    c->r = r;
    c->last_seconds = 0;
    c->report_err = 0;
    config_template tc;
    CHECK(train_hpo_trial_template(c->cfg, t->space, t->values, t->max_epochs, c->full_epochs, t->image_resize, &tc));
    int w = tc.input_w, h = tc.input_h;
    trainer_opts o;
    train_hpo_trial_opts(&tc, t->subset_ratio, t->max_epochs, &o);
    o.init_weights = c->a->init_weights;
    o.nthreads = c->a->nthreads;
    o.on_epoch = train_hpo_on_epoch;
    o.on_epoch_ctx = c;
    double end = hpo_reporter_deadline(r);
    if (end > 0) {
        /* stop training early enough that validating the epoch in flight still fits */
        double val_s = c->a->val->n_images * c->predict_seconds * ((double)w * h) /
                       ((double)c->cfg->input_w * c->cfg->input_h);
        o.deadline = end - val_s;
        if (o.deadline <= 0) o.deadline = 1e-9; /* > 0: already due, one iteration then validate */
    }
    trainer_result res;
    int s = trainer_run(&o, c->a->train, c->a->val, &res);
    if (s >= 0) trainer_result_free(&res);
    if (c->report_err < 0) return c->report_err;
    if (s < 0 && c->a->out) {
        fprintf(c->a->out, "  trial %d: %s\n", t->id, ote_errmsg());
        fflush(c->a->out);
    }
    return s < 0 ? s : 0;
}

int train_hpo_plan(const config_template *cfg, const coco_dataset *train, const train_hpo_estimate *est,
                   const hpo_config *eff, double ratio, hpo_budget_in *bi, hpo_plan *plan) {
    memset(bi, 0, sizeof *bi);
    bi->train_seconds = est->total_s > 0 ? est->total_s : 1e-3;
    bi->val_fraction = est->total_s > 0 ? est->val_s / est->total_s : 0;
    bi->ratio = ratio;
    bi->full_dataset_size = train->n_images;
    bi->full_epochs = est->epochs;
    bi->input_w = cfg->input_w; /* the trial's real pixel count: multiples of 32, raised to TRAIN_HPO_MIN_SIDE */
    bi->input_h = cfg->input_h;
    bi->min_side = TRAIN_HPO_MIN_SIDE;
    bi->epoch_images = train_hpo_epoch_images;
    bi->epoch_ctx = (void *)(uintptr_t)cfg;
    bi->workers = dist_size(); /* under mpirun: every rank runs trials (hpo/hpo.h) */
    hpo_plan_budget_from_config(bi, eff);
    return hpo_plan_budget(bi, plan);
}

/* The values the final training uses instead of the template's (sent to the worker ranks). */
typedef struct train_hpo_final {
    int n;
    char name[HP_MAX_PARAMS][HP_NAME_MAX];
    char value[HP_MAX_PARAMS][64];
} train_hpo_final;

/* What the steps of one search on rank 0 share (train_hpo_run_main). A step returns 0 to go on,
 * else the exit status for `ote train`; done = 1 ends the phase there with status 0 and the
 * template's values (search skipped, nothing scored, or nothing told apart). */
typedef struct train_hpo_main {
    const train_hpo_args *a;
    config_template *cfg;
    FILE *out;
    char path[2 * CONFIG_PATH_LEN]; /* hpo_config.yaml, named in the range errors */
    hpo_config hc;                  /* as loaded */
    hpo_config eff;                 /* hc with the recorded or the planned fidelity */
    double defaults[HP_MAX_PARAMS]; /* the template's values: trial 0 */
    char work[4096 + 8];            /* DIR/hpo or DIR/X.hpo */
    long n_train;
    int recorded;                   /* eff comes from an earlier search's status file */
    trainer_timing tm;
    train_hpo_estimate est;
    double budget;                  /* seconds for the trials */
    int done;
    /* referenced by opt while hpo_run runs */
    train_hpo_trial_ctx tc;
    train_hpo_figs figs;
    hpo_link link;
    char extra[128];
    hpo_options opt;
} train_hpo_main;

/* Ranges against the template (issue 13 item 13): found here, not when every trial fails. */
static int train_hpo_check_ranges(const train_hpo_main *m) {
    for (int i = 0; i < m->hc.space.n; i++) {
        const hp_param *p = &m->hc.space.p[i];
        const config_hparam *h = config_find(m->cfg, p->name);
        double lo = p->lo, hi = p->hi;
        if (p->type == HP_CHOICE) {
            lo = hi = p->choice[0];
            for (int k = 1; k < p->nchoice; k++) lo = fmin(lo, p->choice[k]), hi = fmax(hi, p->choice[k]);
        }
        const char *bad = NULL;
        char why[160];
        if (h->has_min && lo < h->min) snprintf(why, sizeof why, "%g is below the template's min_value %g", lo, h->min), bad = why;
        else if (h->has_max && hi > h->max) snprintf(why, sizeof why, "%g is above the template's max_value %g", hi, h->max), bad = why;
        else if (h->type == CONFIG_INTEGER && p->type != HP_CHOICE && !(p->q > 0 && p->q == floor(p->q) && lo == floor(lo)))
            snprintf(why, sizeof why, "an INTEGER parameter needs a q type with an integer quantum and bounds"), bad = why;
        if (bad) {
            fprintf(stderr, "ote train: --enable-hpo: %s:%d: hp_space %s: %s\n", m->path, p->line, p->name, bad);
            return 2;
        }
    }
    return 0;
}

/* hpo_config.yaml beside the template, checked against the template before any timing. */
static int train_hpo_load(train_hpo_main *m) {
    const config_template *cfg = m->cfg;
    snprintf(m->path, sizeof m->path, "%s/hpo_config.yaml", cfg->dir);
    int s = hpo_config_load(&m->hc, m->path);
    if (s < 0) {
        fprintf(stderr, "ote train: --enable-hpo: %s\n", ote_errmsg());
        return s == OTE_EIO ? 1 : 2;
    }
    /* Searchable names: the template's TRAINING hyper-parameters except num_iters (a trial runs
     * max_iterations epochs whatever num_iters says). */
    const char *known[CONFIG_MAX_HP + 1];
    int nk = 0;
    for (int i = 0; i < cfg->n_hp; i++)
        if (cfg->hp[i].affects == CONFIG_AFFECTS_TRAINING && strcmp(cfg->hp[i].key, "learning_parameters.num_iters"))
            known[nk++] = cfg->hp[i].key;
    known[nk] = NULL;
    s = hpo_config_check_names(&m->hc, known);
    if (s < 0) {
        fprintf(stderr, "ote train: --enable-hpo: %s\n", ote_errmsg());
        return 2;
    }
    int rc = train_hpo_check_ranges(m);
    if (rc) return rc;
    for (int i = 0; i < m->hc.space.n; i++) m->defaults[i] = config_find(cfg, m->hc.space.p[i].name)->value;
    return 0;
}

/* The work dir and a recorded search in it: a corrupt status file is reported before minutes of
 * calibration. */
static int train_hpo_open_work(train_hpo_main *m) {
    if (weights_side_path(m->a->weights_path, "hpo", m->work, sizeof m->work) < 0) {
        fprintf(stderr, "ote train: --enable-hpo: %s\n", ote_errmsg());
        return 2;
    }
    m->n_train = m->a->train->n_images;
    m->eff = m->hc;
    if (m->a->resume != HPO_RESUME_NO) {
        m->recorded = hpo_plan_record_load(m->work, &m->hc, m->n_train, &m->eff);
        if (m->recorded < 0) {
            fprintf(stderr, "ote train: --enable-hpo: %s\n", ote_errmsg());
            return 1;
        }
    }
    return 0;
}

/* Real steps at full size: what one plain training would take. */
static int train_hpo_calibrate(train_hpo_main *m) {
    const train_hpo_args *a = m->a;
    const config_template *cfg = m->cfg;
    FILE *out = m->out;
    if (out) {
        fprintf(out, "HPO: timing %d training steps (batch %d, %dx%d) and %d predictions to plan the budget...\n",
                TRAIN_HPO_STEPS, cfg->batch_size, cfg->input_w, cfg->input_h, TRAIN_HPO_PREDS);
        fflush(out);
    }
    trainer_timing *tm = &m->tm;
    int s = trainer_time_steps(cfg, a->train, a->val, TRAIN_HPO_STEPS, TRAIN_HPO_PREDS, a->nthreads, tm);
    if (s < 0) {
        fprintf(stderr, "ote train: --enable-hpo: timing the training steps: %s\n", ote_errmsg());
        return 1;
    }
    train_hpo_estimate *est = &m->est;
    train_hpo_estimate_run(cfg, a->train, a->val, tm, est);
    if (out)
        fprintf(out,
                "HPO: %.3f s per iteration of %d images, %.3f s per validation image, %.1f s per train/validate "
                "switch, %.1f s to build plans; one training (%d epochs x %d repeat x %d batches = %ld iterations, "
                "%d validations) ~ %.0f s (validation %.0f s); calibration took %.1f s\n",
                tm->step_seconds, tm->step_images, tm->predict_seconds, tm->switch_seconds, est->setup_s, est->epochs,
                est->repeat, est->batches, est->iters, est->epochs, est->total_s, est->val_s, tm->seconds);
    return 0;
}

/* The plan's lines on the output, after hpo_plan_apply. */
static void train_hpo_print_plan(const train_hpo_main *m, const hpo_plan *plan) {
    const config_template *cfg = m->cfg;
    FILE *out = m->out;
    char line[512];
    hpo_plan_format(plan, m->n_train, cfg->input_w, cfg->input_h, line, sizeof line);
    fprintf(out, "%s\n", line);
    int tw = hpo_plan_trial_size(cfg->input_w, m->eff.image_resize);
    int th = hpo_plan_trial_size(cfg->input_h, m->eff.image_resize);
    if (tw < TRAIN_HPO_MIN_SIDE || th < TRAIN_HPO_MIN_SIDE)
        fprintf(out, "HPO: trial input raised to at least %d pixels a side (smaller inputs have no JIT kernels)\n",
                TRAIN_HPO_MIN_SIDE);
    if (m->recorded)
        fprintf(out, "HPO: subset_ratio, image_resize and max_iterations as recorded in %s/hpopt_status.json "
                     "(kept so that the search can be resumed or reused)\n", m->work);
    fprintf(out, "HPO: time budget %.0f s%s ((R - 1) x one training - calibration), work dir %s\n", m->budget,
            dist_size() > 1 ? " wall clock" : "", m->work);
    fflush(out);
}

/* A recorded plan (resume / reuse) or a new one, into eff and the budget. */
static int train_hpo_make_plan(train_hpo_main *m) {
    const train_hpo_args *a = m->a;
    FILE *out = m->out;
    hpo_budget_in bi;
    hpo_plan plan;
    int s = train_hpo_plan(m->cfg, a->train, &m->est, &m->eff, a->ratio, &bi, &plan);
    if (s < 0) {
        fprintf(stderr, "ote train: --enable-hpo: %s\n", ote_errmsg());
        return 1;
    }
    if (!plan.meaningful && !m->recorded) {
        /* Trials this short or this small would not rank configurations (bench/hpo_fidelity.sh):
         * a search on them is a ritual, so train once with the template's values instead. */
        if (out && !plan.over_budget) {
            /* Within the budget, so values fixed in hpo_config.yaml made the trials too short or too
             * small: saying "the budget is too small" would send the user to the wrong knob. */
            fprintf(out,
                    "HPO: skipped - the trials fixed by hpo_config.yaml (%d trials of %d epochs, subset_ratio %.2f, "
                    "image_resize %.2f) would train for %.3f of the full run's iterations; trials rank configurations "
                    "from %.2f of them and an image_resize of %.2f (bench/hpo_fidelity.sh). Training once with the "
                    "template's values; raise max_iterations, subset_ratio or image_resize in hpo_config.yaml to search.\n",
                    plan.num_trials, plan.epochs, plan.subset_ratio, plan.image_resize, plan.horizon, HPO_PLAN_H_MIN,
                    HPO_PLAN_Z_MIN);
            fflush(out);
        } else if (out) {
            fprintf(out,
                    "HPO: skipped - the budget (--hpo-time-ratio %g: %.0f s) is too small for trials that can rank "
                    "configurations: even %d trials of %d epochs at image_resize %.2f, subset_ratio %.2f would take %.0f s. "
                    "Training once with the template's values; raise --hpo-time-ratio to %.1f or more to search.\n",
                    a->ratio, (a->ratio - 1) * m->est.total_s, plan.num_trials, plan.epochs, plan.image_resize,
                    plan.subset_ratio, plan.expected_seconds, 1.0 + plan.cost + m->tm.seconds / bi.train_seconds + 0.05);
            fflush(out);
        }
        m->done = 1;
        return 0;
    }
    hpo_plan_apply(&plan, &m->eff);
    m->budget = (a->ratio - 1) * m->est.total_s - m->tm.seconds;
    if (m->budget < 1) m->budget = 1; /* > 0: the budget stays enforced (0 would mean unlimited) */
    if (out) train_hpo_print_plan(m, &plan);
    return 0;
}

/* hpo_run's options: the trial context, the figures and, under mpirun, the link to the workers. */
static void train_hpo_search_options(train_hpo_main *m) {
    const train_hpo_args *a = m->a;
    memset(&m->tc, 0, sizeof m->tc);
    m->tc.a = a;
    m->tc.cfg = m->cfg;
    m->tc.full_epochs = m->est.epochs;
    m->tc.predict_seconds = m->tm.predict_seconds;
    hpo_options *opt = &m->opt;
    memset(opt, 0, sizeof *opt);
    opt->work_dir = m->work;
    opt->resume = a->resume;
    opt->interactive = a->interactive;
    opt->in = stdin;
    opt->out = m->out;
    opt->full_dataset_size = m->n_train;
    opt->budget_seconds = m->budget;
    opt->defaults = m->defaults;
    opt->seed = m->cfg->seed;
    m->figs = (train_hpo_figs){m->work, m->out, {0, 0}};
    opt->on_record = train_hpo_on_record;
    opt->on_record_ctx = &m->figs;
    if (dist_size() > 1) { /* parallel trials: what a worker's trial needs beyond the order */
        hpo_dist_link(&m->link);
        opt->link = &m->link;
        snprintf(m->extra, sizeof m->extra, "{\"full_epochs\": %d, \"predict_seconds\": %.17g}", m->est.epochs,
                 m->tm.predict_seconds);
        opt->order_extra = m->extra;
    }
}

/* The best values into cfg for the final training (the user's other params stay) and into fin for
 * the worker ranks - unless every trial scored the same: then the search saw nothing, and picking
 * "the best" would be silent noise (the first trial, the template's values, wins ties). */
static int train_hpo_take_best(const train_hpo_main *m, const hpo_result *res, double t0, train_hpo_final *fin) {
    FILE *out = m->out;
    const hpo_config *eff = &m->eff;
    if (res->trials_scored > 0 && res->score_max <= res->score_min) {
        if (out) {
            fprintf(out,
                    "HPO: warning - all %d scored trials have %s %.4f: the trials could not tell the configurations "
                    "apart; training with the template's values (raise --hpo-time-ratio for longer trials)\n",
                    res->trials_scored, eff->metric, res->score_max);
            fflush(out);
        }
        return 0;
    }
    for (int i = 0; i < eff->space.n; i++) {
        int s = train_hpo_set_value(m->cfg, &eff->space.p[i], res->best_values[i]);
        if (s < 0) {
            fprintf(stderr, "ote train: --enable-hpo: best value: %s\n", ote_errmsg());
            return 1;
        }
        snprintf(fin->name[fin->n], sizeof fin->name[0], "%s", eff->space.p[i].name);
        hp_format_value(&eff->space.p[i], res->best_values[i], fin->value[fin->n], sizeof fin->value[0]);
        fin->n++;
    }
    if (out) {
        char d[1024];
        hpo_format_dict(&eff->space, res->best_values, d, sizeof d);
        fprintf(out,
                "HPO done in %.0f s (%s%d trials run, %d on record); best trial %d (%s %.4f); final training with %s\n",
                train_hpo_now() - t0 + m->tm.seconds, res->reused ? "reused, " : res->resumed ? "resumed, " : "",
                res->trials_run, res->trials_total, res->best_id, eff->metric, res->best_score, d);
        fflush(out);
    }
    return 0;
}

/* The trials (hpo_run), then the best values. */
static int train_hpo_search(train_hpo_main *m, train_hpo_final *fin) {
    FILE *out = m->out;
    train_hpo_search_options(m);
    hpo_result res;
    double t0 = train_hpo_now();
    int s = hpo_run(&m->eff, &m->opt, train_hpo_train_trial, &m->tc, &res);
    if (s == OTE_ECANCEL && strstr(ote_errmsg(), "no valid answer")) return TRAIN_HPO_QUIT;
    if (s == OTE_ESTATE && res.best_id < 0 && strstr(ote_errmsg(), "no trial produced a score")) {
        if (out) {
            fprintf(out, "HPO: no trial finished within the budget (%s); training with the template's values\n",
                    ote_errmsg());
            fflush(out);
        }
        return 0;
    }
    if (s < 0) {
        fprintf(stderr, "ote train: --enable-hpo: %s\n", ote_errmsg());
        return 1;
    }
    return train_hpo_take_best(m, &res, t0, fin);
}

/* Rank 0 (or the only process): the search; on 0 with fin->n > 0, cfg holds the best values. */
static int train_hpo_run_main(const train_hpo_args *a, config_template *cfg, train_hpo_final *fin) {
    train_hpo_main m;
    memset(&m, 0, sizeof m);
    m.a = a;
    m.cfg = cfg;
    m.out = a->out;
    int rc = train_hpo_load(&m);
    if (!rc) rc = train_hpo_open_work(&m);
    if (!rc) rc = train_hpo_calibrate(&m);
    if (!rc) rc = train_hpo_make_plan(&m);
    if (!rc && !m.done) rc = train_hpo_search(&m, fin);
    return rc;
}

/* A worker rank's trial: the order's extra (full epochs, validation time) into the context first. */
static int train_hpo_worker_trial(void *vctx, const hpo_trial *t, hpo_reporter *r) {
    train_hpo_trial_ctx *c = vctx;
    cJSON *x = t->extra ? cJSON_Parse(t->extra) : NULL;
    const cJSON *fe = cJSON_GetObjectItemCaseSensitive(x, "full_epochs");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(x, "predict_seconds");
    c->full_epochs = cJSON_IsNumber(fe) ? fe->valueint : 0;
    c->predict_seconds = cJSON_IsNumber(ps) ? ps->valuedouble : 0;
    cJSON_Delete(x);
    return train_hpo_train_trial(vctx, t, r);
}

/* Ranks 1..N-1: serve trials, then take rank 0's outcome. */
static int train_hpo_worker(const train_hpo_args *a, config_template *cfg) {
    char path[2 * CONFIG_PATH_LEN];
    snprintf(path, sizeof path, "%s/hpo_config.yaml", cfg->dir);
    hpo_config hc;
    int loaded = hpo_config_load(&hc, path) == 0; /* if not, rank 0 fails the same way and says so */
    train_hpo_trial_ctx tc;
    memset(&tc, 0, sizeof tc);
    tc.a = a;
    tc.cfg = cfg;
    hpo_link link;
    hpo_dist_link(&link);
    char *payload = NULL;
    int s = hpo_serve(&link, loaded ? &hc : NULL, train_hpo_worker_trial, &tc, a->out, &payload);
    if (s < 0) {
        fprintf(stderr, "ote train: --enable-hpo: rank %d: %s\n", dist_rank(), ote_errmsg());
        dist_abort(1);
    }
    cJSON *j = payload ? cJSON_Parse(payload) : NULL;
    free(payload);
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(j, "rc"), *v;
    int code = cJSON_IsNumber(rc) ? rc->valueint : 1;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(j, "values")) {
        if (code == 0 && cJSON_IsString(v) && config_set(cfg, v->string, v->valuestring) < 0) {
            fprintf(stderr, "ote train: --enable-hpo: rank %d: best value: %s\n", dist_rank(), ote_errmsg());
            code = 1;
        }
    }
    cJSON_Delete(j);
    return code;
}

int train_hpo_run(const train_hpo_args *a, config_template *cfg) {
    if (dist_size() > 1 && dist_rank() != 0) return train_hpo_worker(a, cfg);
    train_hpo_final fin;
    memset(&fin, 0, sizeof fin);
    int rc = train_hpo_run_main(a, cfg, &fin);
    if (dist_size() <= 1) return rc;
    if (rc != 0 && rc != TRAIN_HPO_QUIT) { /* the message is out; end the workers wherever they are */
        fflush(stdout);
        fflush(stderr);
        dist_abort(rc);
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "rc", rc);
    cJSON *v = cJSON_AddObjectToObject(j, "values");
    for (int i = 0; i < fin.n; i++) cJSON_AddStringToObject(v, fin.name[i], fin.value[i]);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    hpo_link link;
    hpo_dist_link(&link);
    int s = text ? hpo_par_stop(&link, text) : ote_err(OTE_ENOMEM, "out of memory");
    free(text);
    if (s < 0) {
        fprintf(stderr, "ote train: --enable-hpo: telling the other ranks: %s\n", ote_errmsg());
        dist_abort(1);
    }
    return rc;
}

/* hpo.c - the HPO driver loop: resume/reuse/rerun decision, trial generation (defaults, Sobol,
 * SMBO), per-epoch reports with median stop / ASHA / budget decisions, failed trials, the result
 * table. See hpo.h for the rules. */
#include "hpo/hpo.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/ote.h"
#include "hpo/smbo.h"

typedef struct hpo_par hpo_par;
static int par_service(hpo_par *p, int block);

struct hpo_reporter {
    hpo_state *st;
    int ti;                 /* index of the running trial in st->t */
    const hpo_options *opt;
    int num_init;
    double t0, spent_before;
    double last_clock;
    int failed;
    int io_error;
    hpo_par *par;           /* rank 0 of a parallel search: collect worker results after each report */
};

static double mono_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now_of(const hpo_options *o) { return o->clock ? o->clock(o->clock_ctx) : mono_now(); }

static void say(const hpo_options *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const hpo_options *o, const char *fmt, ...) {
    if (!o->out) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(o->out, fmt, ap);
    va_end(ap);
    fflush(o->out);
}

double hpo_trial_value(const hpo_trial *t, const char *name, double fallback) {
    for (int i = 0; i < t->space->n; i++)
        if (!strcmp(t->space->p[i].name, name)) return t->values[i];
    return fallback;
}

/* Scores in "bigger is better" form. */
static double good(const hpo_state *st, double v) { return st->cfg.mode_max ? v : -v; }

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double best_upto(const hpo_state *st, const hpo_trial_rec *t, int n) {
    double b = -HUGE_VAL;
    for (int i = 0; i < n && i < t->n; i++) b = fmax(b, good(st, t->scores[i]));
    return b;
}

/* median stop (spec §4.6); 1 = stop */
static int median_stop(const hpo_state *st, const hpo_trial_rec *t) {
    int k = t->n - 1;
    double *v = malloc((size_t)st->n * sizeof *v);
    if (!v) return 0;
    int m = 0;
    for (int j = 0; j < st->n; j++) {
        const hpo_trial_rec *o = &st->t[j];
        if (o == t || o->status != HPO_STOP || o->n <= k) continue;
        v[m++] = o->median[k];
    }
    int stop = 0;
    if (m > 0) {
        qsort(v, (size_t)m, sizeof *v, dcmp);
        double med = m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
        stop = good(st, med) > best_upto(st, t, t->n);
    }
    free(v);
    return stop;
}

static int asha_rf(const hpo_config *c) { return c->reduction_factor > 1 ? c->reduction_factor : 2; }
static int asha_min(const hpo_config *c) { return c->min_iterations > 0 ? c->min_iterations : 1; }

/* Number of rungs of bracket s (spec §4.7): int(log(max - min + 1) / log(rf) - s + 1). */
static int asha_rungs(const hpo_config *c, int s) {
    return (int)(log((double)(c->max_iterations - asha_min(c) + 1)) / log((double)asha_rf(c)) - s + 1);
}

/* ASHA rung cut; 1 = stop */
static int asha_stop(const hpo_state *st, const hpo_trial_rec *t) {
    const hpo_config *c = &st->cfg;
    int rf = asha_rf(c), s = t->bracket < 0 ? 0 : t->bracket;
    int K = asha_rungs(c, s);
    for (int k = 0; k < K; k++) {
        long rung = asha_min(c) - 1 + (long)llround(pow(rf, k + s));
        if (rung != t->n || rung >= c->max_iterations) continue;
        double *v = malloc((size_t)st->n * sizeof *v);
        if (!v) return 0;
        int m = 0;
        for (int j = 0; j < st->n; j++) {
            const hpo_trial_rec *o = &st->t[j];
            if (o->bracket != t->bracket || o->n < rung) continue;
            if (o != t && o->status != HPO_STOP) continue;
            v[m++] = best_upto(st, o, (int)rung);
        }
        qsort(v, (size_t)m, sizeof *v, dcmp);
        /* numpy percentile, linear interpolation, q = (1 - 1/rf) * 100 */
        double pos = (1.0 - 1.0 / rf) * (m - 1);
        int lo = (int)floor(pos);
        double cut = lo + 1 < m ? v[lo] + (pos - lo) * (v[lo + 1] - v[lo]) : v[lo];
        free(v);
        if (cut > best_upto(st, t, (int)rung)) return 1;
    }
    return 0;
}

static double mean_epoch_seconds(const hpo_trial_rec *t) {
    double s = 0;
    for (int i = 0; i < t->n; i++) s += t->seconds[i];
    return t->n ? s / t->n : 0;
}

int hpo_report(hpo_reporter *r, int epoch, double score, double seconds, long images) {
    hpo_state *st = r->st;
    hpo_trial_rec *t = &st->t[r->ti];
    const hpo_options *o = r->opt;
    if (r->failed) return HPO_STOP_TRIAL;
    if (epoch != t->n + 1)
        return ote_err(OTE_EINVAL, "hpo: trial %d reported epoch %d after %d epochs", t->id, epoch, t->n);
    double clk = now_of(o);
    if (!(seconds > 0)) seconds = clk - r->last_clock; /* the trainer did not time the epoch: we do */
    r->last_clock = clk;
    if (!isfinite(score)) {
        r->failed = 1;
        snprintf(t->stop_reason, sizeof t->stop_reason, "non-finite score at epoch %d", epoch);
        return HPO_STOP_TRIAL;
    }
    CHECK(hpo_store_trial_push(t, score, seconds, images));
    const char *why = NULL;
    if (t->n >= st->cfg.max_iterations)
        why = "max_iterations";
    else if (st->cfg.algo == HPO_ALGO_SMBO && st->cfg.early_stop == HPO_ES_MEDIAN && t->id >= r->num_init &&
             median_stop(st, t))
        why = "median_stop";
    else if (st->cfg.algo == HPO_ALGO_ASHA && asha_stop(st, t))
        why = "asha";
    else if (o->budget_seconds > 0) {
        double elapsed = clk - r->t0 + r->spent_before;
        if (elapsed + mean_epoch_seconds(t) > o->budget_seconds) why = "budget";
    }
    if (why) snprintf(t->stop_reason, sizeof t->stop_reason, "%s", why);
    int s = o->work_dir ? hpo_store_trial_save(o->work_dir, st, t) : 0; /* a worker rank writes no file */
    if (s == 0 && r->par) s = par_service(r->par, 0); /* t may move: not used below */
    if (s < 0) {
        r->io_error = s;
        return s;
    }
    return why ? HPO_STOP_TRIAL : HPO_CONTINUE;
}

double hpo_reporter_deadline(const hpo_reporter *r) {
    if (r->opt->budget_seconds <= 0) return 0;
    return r->t0 - r->spent_before + r->opt->budget_seconds;
}

static int py_center(char *buf, size_t size, const char *s, int width) {
    int len = (int)strlen(s), marg = width - len;
    if (marg <= 0) return snprintf(buf, size, "%s", s);
    int left = marg / 2 + (marg & width & 1); /* CPython's str.center */
    return snprintf(buf, size, "%*s%s%*s", left, "", s, marg - left, "");
}

static int name_idx_cmp(const void *a, const void *b, const hp_space *sp) {
    return strcmp(sp->p[*(const int *)a].name, sp->p[*(const int *)b].name);
}

int hpo_format_dict(const hp_space *sp, const double *values, char *buf, size_t size) {
    int idx[HP_MAX_PARAMS];
    for (int i = 0; i < sp->n; i++) idx[i] = i;
    for (int i = 1; i < sp->n; i++) /* insertion sort by name (tiny n) */
        for (int j = i; j > 0 && name_idx_cmp(&idx[j - 1], &idx[j], sp) > 0; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    size_t len = 0;
    len += (size_t)snprintf(buf + len, size > len ? size - len : 0, "{");
    for (int i = 0; i < sp->n; i++) {
        char v[64];
        hp_format_value(&sp->p[idx[i]], values[idx[i]], v, sizeof v);
        len += (size_t)snprintf(buf + len, size > len ? size - len : 0, "%s'%s': %s", i ? ", " : "",
                                sp->p[idx[i]].name, v);
    }
    len += (size_t)snprintf(buf + len, size > len ? size - len : 0, "}");
    return (int)len;
}

void hpo_print_table(FILE *f, const hpo_state *st) {
    if (!f) return;
    const hp_space *sp = &st->cfg.space;
    char cell[HP_NAME_MAX + 64];
    py_center(cell, sizeof cell, "#", 5);
    fprintf(f, "|%s|", cell);
    for (int i = 0; i < sp->n; i++) {
        int w = (int)strlen(sp->p[i].name) + 2;
        if (w < 20) w = 20;
        py_center(cell, sizeof cell, sp->p[i].name, w);
        fprintf(f, "%s |", cell);
    }
    py_center(cell, sizeof cell, "score", 21);
    fprintf(f, "%s|\n", cell);
    for (int k = 0; k < st->n; k++) {
        const hpo_trial_rec *t = &st->t[k];
        if (!t->has_score) continue;
        fprintf(f, "|%4d |", k + 1);
        for (int i = 0; i < sp->n; i++) {
            int w = (int)strlen(sp->p[i].name) + 2;
            if (w < 20) w = 20;
            hp_format_value(&sp->p[i], t->values[i], cell, sizeof cell);
            fprintf(f, "%*s |", w, cell);
        }
        hp_format_double(t->score, cell, sizeof cell);
        fprintf(f, "%20s |\n", cell);
    }
    if (st->best_id >= 0) {
        char d[4096];
        hpo_format_dict(sp, st->t[st->best_id].values, d, sizeof d);
        fprintf(f, "Best Hyper-parameters\n%s\n", d);
    }
    fflush(f);
}

static int mkdir_p(const char *dir) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return ote_err(OTE_EIO, "%s: path too long", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return ote_err(OTE_EIO, "%s: cannot create: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return ote_err(OTE_EIO, "%s: cannot create: %s", p, strerror(errno));
    return 0;
}

/* OTE's prompt (spec §4.8). 1 yes, 0 no, OTE_ECANCEL after 5 invalid answers. */
static int ask(const hpo_options *o, const char *question) {
    FILE *in = o->in ? o->in : stdin;
    FILE *out = o->out ? o->out : stderr;
    for (int tries = 0; tries < 5; tries++) {
        fprintf(out, "%s [\033[1mY\033[0m/n]: ", question);
        fflush(out);
        char line[256];
        if (!fgets(line, sizeof line, in)) return 1; /* end of input: take the default */
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) return 1;
        if (n == 1 && (line[0] == 'y' || line[0] == 'Y')) return 1;
        if (n == 1 && (line[0] == 'n' || line[0] == 'N')) return 0;
        fprintf(out, "You should type 'y' or 'n'. Nothing means 'y'.\n");
    }
    fprintf(out, "Your inputs are invalid. The whole program is terminating...\n");
    fflush(out);
    return ote_err(OTE_ECANCEL, "hpo: no valid answer to the resume question");
}

static int find_best(const hpo_state *st) {
    int b = -1;
    for (int i = 0; i < st->n; i++) {
        const hpo_trial_rec *t = &st->t[i];
        if (t->status != HPO_STOP || !t->has_score) continue;
        if (b < 0 || good(st, t->score) > good(st, st->t[b].score)) b = i; /* first wins ties */
    }
    return b;
}

static void fill_result(const hpo_state *st, hpo_result *res) {
    res->best_id = st->best_id;
    res->trials_total = st->n;
    res->trials_scored = 0;
    for (int i = 0; i < st->n; i++) {
        const hpo_trial_rec *t = &st->t[i];
        if (t->status != HPO_STOP || !t->has_score) continue;
        if (!res->trials_scored || t->score < res->score_min) res->score_min = t->score;
        if (!res->trials_scored || t->score > res->score_max) res->score_max = t->score;
        res->trials_scored++;
    }
    if (st->best_id >= 0) {
        res->best_score = st->t[st->best_id].score;
        memcpy(res->best_values, st->t[st->best_id].values, sizeof res->best_values);
    }
}

/* Can a new trial (or a rerun) start within the budget? */
static int budget_allows(const hpo_state *st, const hpo_options *o, double t0, double spent_before) {
    if (o->budget_seconds <= 0) return 1;
    double elapsed = now_of(o) - t0 + spent_before, sum = 0;
    int n = 0;
    for (int i = 0; i < st->n; i++)
        for (int k = 0; k < st->t[i].n; k++) sum += st->t[i].seconds[k], n++;
    double est = n ? sum / n : 0;
    return elapsed + est <= o->budget_seconds && elapsed < o->budget_seconds;
}

static void trial_of(const hpo_state *st, const hpo_trial_rec *t, uint64_t seed, hpo_trial *tr) {
    memset(tr, 0, sizeof *tr);
    tr->id = t->id;
    tr->space = &st->cfg.space;
    memcpy(tr->values, t->values, sizeof tr->values);
    tr->max_epochs = st->cfg.max_iterations;
    tr->subset_ratio = st->cfg.subset_ratio;
    tr->image_resize = st->cfg.image_resize;
    tr->seed = seed * 1000003ULL + (uint64_t)t->id;
}

/* A trial's record after its callback returned rc: FAILED (with the message) or STOP with its
 * best epoch score. errmsg: the callback's error message (rc < 0). */
static void trial_outcome(hpo_state *st, hpo_trial_rec *t, int rc, int failed, const char *errmsg) {
    if (rc < 0 || failed || t->n == 0) {
        t->status = HPO_FAILED;
        t->has_score = 0;
        if (rc < 0)
            snprintf(t->stop_reason, sizeof t->stop_reason, "%s", errmsg && *errmsg ? errmsg : ote_strstatus(rc));
        else if (!failed)
            snprintf(t->stop_reason, sizeof t->stop_reason, "no score reported");
    } else {
        t->status = HPO_STOP;
        t->has_score = 1;
        t->score = t->scores[0];
        for (int i = 1; i < t->n; i++)
            if (good(st, t->scores[i]) > good(st, t->score)) t->score = t->scores[i];
    }
}

static int run_trial(hpo_state *st, int ti, const hpo_options *o, hpo_train_fn train, void *ctx, int num_init,
                     double t0, double spent_before, hpo_par *par) {
    hpo_trial_rec *t = &st->t[ti];
    hpo_store_trial_clear(t);
    t->status = HPO_RUNNING;
    if (par) t->rank = 0;
    CHECK(hpo_store_trial_save(o->work_dir, st, t));
    CHECK(hpo_store_save(o->work_dir, st));
    hpo_trial tr;
    trial_of(st, t, o->seed, &tr);
    hpo_reporter rep = {st, ti, o, num_init, t0, spent_before, now_of(o), 0, 0, par};
    char d[2048];
    hpo_format_dict(&st->cfg.space, t->values, d, sizeof d);
    if (par) say(o, "HPO trial %d: %s (rank 0)\n", t->id, d);
    else say(o, "HPO trial %d: %s\n", t->id, d);
    int rc = train(ctx, &tr, &rep);
    t = &st->t[ti];
    if (rc == OTE_ECANCEL) {
        say(o, "HPO interrupted during trial %d; run again to resume.\n", t->id);
        return OTE_ECANCEL;
    }
    if (rep.io_error < 0) return rep.io_error;
    trial_outcome(st, t, rc, rep.failed, rc < 0 ? ote_errmsg() : NULL);
    if (t->status == HPO_FAILED) say(o, "HPO trial %d failed: %s\n", t->id, t->stop_reason);
    CHECK(hpo_store_trial_save(o->work_dir, st, t));
    CHECK(hpo_store_save(o->work_dir, st));
    if (o->on_record) o->on_record(o->on_record_ctx, st);
    return 0;
}

/* Trials run at once: the workers and rank 0 itself (1 without a link). */
static double par_workers(const hpo_options *o) { return o->link && o->link->workers > 0 ? o->link->workers + 1 : 1; }

/* The next trial to run: a READY one (resume), or a new one (the defaults first, then SMBO with
 * the RUNNING trials as pending points). 0 and *ti, 1 when no trial is left (num_trials reached,
 * budget used up or space exhausted; said on opt->out), or OTE_E*. */
static int next_trial(hpo_state *st, smbo *sm, const hpo_options *opt, int num_trials, double t0, double spent_before,
                      int *ti) {
    int d = st->cfg.space.n;
    *ti = -1;
    for (int i = 0; i < st->n && *ti < 0; i++)
        if (st->t[i].status == HPO_READY) *ti = i;
    if (*ti < 0 && st->n >= num_trials) return 1;
    if (!budget_allows(st, opt, t0, spent_before)) {
        say(opt, "HPO time budget of %.0f s used up after %d trials.\n", opt->budget_seconds, st->n);
        return 1; /* a pending rerun left READY stays READY with no score, as hpopt records it */
    }
    if (*ti >= 0) return 0;
    double v[HP_MAX_PARAMS];
    if (st->n == 0 && opt->defaults) {
        for (int j = 0; j < d; j++) v[j] = hp_snap(&st->cfg.space.p[j], opt->defaults[j]);
    } else {
        double *used = malloc((size_t)(st->n + 1) * (size_t)d * sizeof *used);
        double *obs = malloc((size_t)(st->n + 1) * (size_t)d * sizeof *obs);
        double *pend = malloc((size_t)(st->n + 1) * (size_t)d * sizeof *pend);
        double *y = malloc((size_t)(st->n + 1) * sizeof *y);
        if (!used || !obs || !pend || !y) {
            free(used), free(obs), free(pend), free(y);
            return ote_err(OTE_ENOMEM, "hpo: out of memory");
        }
        int no = 0, np = 0;
        for (int i = 0; i < st->n; i++) {
            memcpy(used + (size_t)i * d, st->t[i].values, (size_t)d * sizeof *used);
            if (st->t[i].status == HPO_STOP && st->t[i].has_score) {
                memcpy(obs + (size_t)no * d, st->t[i].values, (size_t)d * sizeof *obs);
                y[no++] = good(st, st->t[i].score);
            } else if (st->t[i].status == HPO_RUNNING) { /* only in a parallel search */
                memcpy(pend + (size_t)np++ * d, st->t[i].values, (size_t)d * sizeof *pend);
            }
        }
        int p = smbo_propose_pending(sm, used, st->n, obs, y, no, pend, np, v);
        free(used), free(obs), free(pend), free(y);
        if (p < 0) return p;
        if (p == SMBO_EXHAUSTED) { /* every grid point has been run: stop generating trials */
            say(opt, "HPO search space exhausted after %d trials.\n", st->n);
            return 1;
        }
    }
    hpo_trial_rec *t = hpo_store_state_add(st);
    if (!t) return ote_err(OTE_ENOMEM, "hpo: out of memory");
    memcpy(t->values, v, (size_t)d * sizeof *v);
    if (st->cfg.algo == HPO_ALGO_ASHA) t->bracket = t->id % st->cfg.num_brackets;
    *ti = t->id;
    return 0;
}

/* ---- parallel trials: rank 0's side (see hpo.h) ---- */

struct hpo_par {
    hpo_state *st;
    const hpo_options *o;
    smbo *sm;
    int num_trials, num_init;
    double t0, spent_before;
    int *busy;               /* (workers + 1) trial index each worker rank runs, -1 idle; [0] unused */
    int no_more;             /* next_trial found nothing: no new orders */
    hpo_result *res;
};

static cJSON *par_values_json(const hp_space *sp, const double *v) {
    cJSON *o = cJSON_CreateObject();
    for (int j = 0; j < sp->n; j++) cJSON_AddNumberToObject(o, sp->p[j].name, v[j]);
    return o;
}

static int par_send_json(const hpo_link *l, int dest, cJSON *j) {
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!text) return ote_err(OTE_ENOMEM, "hpo: out of memory for a message");
    int s = l->send(l->ctx, dest, text, strlen(text));
    free(text);
    return s;
}

/* Hands the next trial (if any) to worker rank w. */
static int par_dispatch(hpo_par *p, int w) {
    hpo_state *st = p->st;
    const hpo_options *o = p->o;
    int ti;
    int k = next_trial(st, p->sm, o, p->num_trials, p->t0, p->spent_before, &ti);
    if (k != 0) {
        if (k == 1) p->no_more = 1;
        return k < 0 ? k : 0;
    }
    hpo_trial_rec *t = &st->t[ti];
    hpo_store_trial_clear(t);
    t->status = HPO_RUNNING;
    t->rank = w;
    CHECK(hpo_store_trial_save(o->work_dir, st, t));
    CHECK(hpo_store_save(o->work_dir, st));
    hpo_trial tr;
    trial_of(st, t, o->seed, &tr);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "trial");
    cJSON_AddNumberToObject(j, "id", t->id);
    cJSON_AddNumberToObject(j, "bracket", t->bracket);
    cJSON_AddItemToObject(j, "values", par_values_json(&st->cfg.space, t->values));
    cJSON_AddNumberToObject(j, "max_epochs", tr.max_epochs);
    cJSON_AddNumberToObject(j, "subset_ratio", tr.subset_ratio);
    cJSON_AddNumberToObject(j, "image_resize", tr.image_resize);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)tr.seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "num_init", p->num_init);
    double left = 0;
    if (o->budget_seconds > 0) {
        left = p->t0 - p->spent_before + o->budget_seconds - now_of(o);
        if (left < 1e-3) left = 1e-3;
    }
    cJSON_AddNumberToObject(j, "deadline_in", left);
    cJSON *c = cJSON_AddObjectToObject(j, "cfg");
    cJSON_AddNumberToObject(c, "mode_max", st->cfg.mode_max);
    cJSON_AddNumberToObject(c, "algo", st->cfg.algo);
    cJSON_AddNumberToObject(c, "early_stop", st->cfg.early_stop);
    cJSON_AddNumberToObject(c, "max_iterations", st->cfg.max_iterations);
    cJSON_AddNumberToObject(c, "reduction_factor", st->cfg.reduction_factor);
    cJSON_AddNumberToObject(c, "min_iterations", st->cfg.min_iterations);
    cJSON_AddNumberToObject(c, "num_brackets", st->cfg.num_brackets);
    cJSON *others = cJSON_AddArrayToObject(j, "others"); /* what median stop and ASHA compare with */
    for (int i = 0; i < st->n; i++) {
        const hpo_trial_rec *q = &st->t[i];
        if (q->status != HPO_STOP) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "id", q->id);
        cJSON_AddNumberToObject(e, "bracket", q->bracket);
        cJSON *sc = cJSON_AddArrayToObject(e, "scores");
        for (int k2 = 0; k2 < q->n; k2++) cJSON_AddItemToArray(sc, cJSON_CreateNumber(q->scores[k2]));
        cJSON_AddItemToArray(others, e);
    }
    if (o->order_extra) {
        cJSON *x = cJSON_Parse(o->order_extra);
        if (x) cJSON_AddItemToObject(j, "extra", x);
    }
    char d[2048];
    hpo_format_dict(&st->cfg.space, t->values, d, sizeof d);
    say(o, "HPO trial %d: %s (rank %d)\n", t->id, d, w);
    CHECK(par_send_json(o->link, w, j));
    p->busy[w] = ti;
    return 0;
}

static int par_fill(hpo_par *p) {
    for (int w = 1; w <= p->o->link->workers && !p->no_more; w++)
        if (p->busy[w] < 0) CHECK(par_dispatch(p, w));
    return 0;
}

static const char *jstr(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnumv(const cJSON *j, const char *k, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* Records one message from worker rank src. */
static int par_record(hpo_par *p, int src, const char *text) {
    hpo_state *st = p->st;
    const hpo_options *o = p->o;
    cJSON *j = cJSON_Parse(text);
    if (!j) return ote_err(OTE_EIO, "hpo: rank %d sent a message that is not JSON: '%.80s'", src, text);
    const char *type = jstr(j, "type");
    if (!strcmp(type, "error")) {
        say(o, "HPO: rank %d failed: %s\n", src, jstr(j, "message"));
        int s = ote_err(OTE_EIO, "hpo: rank %d: %s", src, jstr(j, "message"));
        cJSON_Delete(j);
        return s;
    }
    int ti = (int)jnumv(j, "id", -1);
    if (strcmp(type, "result") || src < 1 || src > o->link->workers || ti < 0 || ti >= st->n || p->busy[src] != ti) {
        cJSON_Delete(j);
        return ote_err(OTE_EIO, "hpo: unexpected message from rank %d: '%.80s'", src, text);
    }
    p->busy[src] = -1;
    int rc = (int)jnumv(j, "rc", 0), failed = (int)jnumv(j, "failed", 0);
    hpo_trial_rec *t = &st->t[ti];
    hpo_store_trial_clear(t);
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "scores");
    const cJSON *se = cJSON_GetObjectItemCaseSensitive(j, "seconds");
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(j, "images");
    int n = cJSON_GetArraySize(sc), s = 0;
    for (int i = 0; i < n && s == 0; i++) {
        const cJSON *v = cJSON_GetArrayItem(sc, i), *e = cJSON_GetArrayItem(se, i), *m = cJSON_GetArrayItem(im, i);
        s = hpo_store_trial_push(t, cJSON_IsNumber(v) ? v->valuedouble : (double)NAN, cJSON_IsNumber(e) ? e->valuedouble : 0,
                           cJSON_IsNumber(m) ? (long)m->valuedouble : 0);
    }
    snprintf(t->stop_reason, sizeof t->stop_reason, "%s", jstr(j, "reason"));
    char reason[sizeof t->stop_reason];
    snprintf(reason, sizeof reason, "%s", t->stop_reason);
    cJSON_Delete(j);
    if (s < 0) return s;
    if (rc == OTE_ECANCEL) { /* stays RUNNING on disk: rerun on resume */
        say(o, "HPO interrupted during trial %d on rank %d; run again to resume.\n", t->id, src);
        return ote_err(OTE_ECANCEL, "hpo: trial %d on rank %d was interrupted", t->id, src);
    }
    trial_outcome(st, t, rc, failed, reason);
    if (t->status == HPO_FAILED) say(o, "HPO trial %d failed on rank %d: %s\n", t->id, src, t->stop_reason);
    else say(o, "HPO trial %d done on rank %d: %s %.4f after %d epochs\n", t->id, src, st->cfg.metric, t->score, t->n);
    CHECK(hpo_store_trial_save(o->work_dir, st, t));
    CHECK(hpo_store_save(o->work_dir, st));
    if (o->on_record) o->on_record(o->on_record_ctx, st);
    p->res->trials_run++;
    return 0;
}

/* Records every waiting result (block: wait for at least one) and refills the free workers. */
static int par_service(hpo_par *p, int block) {
    const hpo_link *l = p->o->link;
    for (;;) {
        int src = -1;
        char *text = NULL;
        int r = l->recv(l->ctx, block, &src, &text);
        if (r < 0) return r;
        if (r == 0) return 0;
        int s = par_record(p, src, text);
        free(text);
        if (s < 0) return s;
        CHECK(par_fill(p));
        block = 0;
    }
}

static int par_loop(hpo_state *st, const hpo_options *o, smbo *sm, hpo_train_fn train, void *ctx, int num_trials,
                    int num_init, double t0, double spent_before, hpo_result *res) {
    int w = o->link->workers;
    hpo_par p = {st, o, sm, num_trials, num_init, t0, spent_before, malloc((size_t)(w + 1) * sizeof(int)), 0, res};
    if (!p.busy) return ote_err(OTE_ENOMEM, "hpo: out of memory");
    for (int i = 0; i <= w; i++) p.busy[i] = -1;
    say(o, "HPO: %d trials at a time (rank 0 and %d worker rank%s)\n", w + 1, w, w > 1 ? "s" : "");
    int s = 0;
    for (;;) {
        if ((s = par_fill(&p)) < 0) break;
        if (!p.no_more) { /* a trial of rank 0's own */
            int ti, k = next_trial(st, sm, o, num_trials, t0, spent_before, &ti);
            if (k < 0) {
                s = k;
                break;
            }
            if (k == 0) {
                if ((s = run_trial(st, ti, o, train, ctx, num_init, t0, spent_before, &p)) < 0) break;
                res->trials_run++;
                if ((s = par_service(&p, 0)) < 0) break;
                continue;
            }
            p.no_more = 1;
        }
        int busy = 0;
        for (int i = 1; i <= w; i++) busy |= p.busy[i] >= 0;
        if (!busy) break;
        if ((s = par_service(&p, 1)) < 0) break;
    }
    free(p.busy);
    return s;
}

/* ---- parallel trials: a worker rank's side ---- */

static int serve_send(const hpo_link *l, cJSON *j) { return par_send_json(l, 0, j); }

static int serve_error(const hpo_link *l, const char *msg) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "error");
    cJSON_AddStringToObject(j, "message", msg);
    return serve_send(l, j);
}

/* Runs one order; 0 after the result was sent, OTE_E* for an order it cannot run. */
static int serve_trial(const hpo_link *l, const hpo_config *cfg, const cJSON *j, hpo_train_fn train, void *ctx,
                       FILE *out) {
    if (!cfg) return ote_err(OTE_EINVAL, "this rank could not load its hpo_config.yaml");
    hpo_state st;
    memset(&st, 0, sizeof st);
    st.cfg = *cfg;
    st.best_id = -1;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "cfg");
    st.cfg.mode_max = (int)jnumv(c, "mode_max", cfg->mode_max);
    st.cfg.algo = (hpo_algo)(int)jnumv(c, "algo", cfg->algo);
    st.cfg.early_stop = (hpo_early_stop)(int)jnumv(c, "early_stop", cfg->early_stop);
    st.cfg.max_iterations = (int)jnumv(c, "max_iterations", 1);
    st.cfg.reduction_factor = (int)jnumv(c, "reduction_factor", 2);
    st.cfg.min_iterations = (int)jnumv(c, "min_iterations", 1);
    st.cfg.num_brackets = (int)jnumv(c, "num_brackets", 1);
    st.cfg.subset_ratio = jnumv(j, "subset_ratio", 1);
    st.cfg.image_resize = jnumv(j, "image_resize", 1);
    int s = 0;
    const cJSON *others = cJSON_GetObjectItemCaseSensitive(j, "others"), *e;
    cJSON_ArrayForEach(e, others) {
        hpo_trial_rec *q = hpo_store_state_add(&st);
        if (!q) {
            s = ote_err(OTE_ENOMEM, "hpo: out of memory");
            break;
        }
        q->id = (int)jnumv(e, "id", -1);
        q->bracket = (int)jnumv(e, "bracket", -1);
        q->status = HPO_STOP;
        const cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(e, "scores")) {
            if (s == 0) s = hpo_store_trial_push(q, cJSON_IsNumber(v) ? v->valuedouble : (double)NAN, 0, 0);
        }
    }
    hpo_trial_rec *t = s == 0 ? hpo_store_state_add(&st) : NULL;
    if (s == 0 && !t) s = ote_err(OTE_ENOMEM, "hpo: out of memory");
    int ti = st.n - 1;
    if (s == 0) {
        t->id = (int)jnumv(j, "id", -1);
        t->bracket = (int)jnumv(j, "bracket", -1);
        t->status = HPO_RUNNING;
        const cJSON *vals = cJSON_GetObjectItemCaseSensitive(j, "values");
        for (int k = 0; k < st.cfg.space.n && s == 0; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(vals, st.cfg.space.p[k].name);
            if (!cJSON_IsNumber(v)) s = ote_err(OTE_EINVAL, "order for trial %d has no value for %s", t->id,
                                                st.cfg.space.p[k].name);
            else t->values[k] = v->valuedouble;
        }
    }
    if (s < 0) {
        hpo_store_state_free(&st);
        return s;
    }
    hpo_options lo;
    memset(&lo, 0, sizeof lo);
    lo.budget_seconds = jnumv(j, "deadline_in", 0);
    hpo_trial tr;
    trial_of(&st, t, 0, &tr);
    tr.seed = strtoull(jstr(j, "seed"), NULL, 10);
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, "extra");
    char *extra = x ? cJSON_PrintUnformatted(x) : NULL;
    tr.extra = extra;
    double now = mono_now();
    hpo_reporter rep = {&st, ti, &lo, (int)jnumv(j, "num_init", HPO_DEFAULT_NUM_INIT), now, 0, now, 0, 0, NULL};
    if (out) {
        char d[2048];
        hpo_format_dict(&st.cfg.space, t->values, d, sizeof d);
        fprintf(out, "HPO trial %d starts here: %s\n", t->id, d);
        fflush(out);
    }
    int rc = train(ctx, &tr, &rep);
    free(extra);
    t = &st.t[ti];
    char reason[sizeof t->stop_reason + 64];
    snprintf(reason, sizeof reason, "%s", rc < 0 ? (*ote_errmsg() ? ote_errmsg() : ote_strstatus(rc)) : t->stop_reason);
    if (rep.io_error < 0) rc = rep.io_error;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "type", "result");
    cJSON_AddNumberToObject(r, "id", t->id);
    cJSON_AddNumberToObject(r, "rc", rc < 0 ? rc : 0);
    cJSON_AddNumberToObject(r, "failed", rep.failed);
    cJSON_AddStringToObject(r, "reason", reason);
    cJSON *sc = cJSON_AddArrayToObject(r, "scores"), *se = cJSON_AddArrayToObject(r, "seconds"),
          *im = cJSON_AddArrayToObject(r, "images");
    for (int k = 0; k < t->n; k++) {
        cJSON_AddItemToArray(sc, cJSON_CreateNumber(t->scores[k]));
        cJSON_AddItemToArray(se, cJSON_CreateNumber(t->seconds[k]));
        cJSON_AddItemToArray(im, cJSON_CreateNumber((double)t->images[k]));
    }
    hpo_store_state_free(&st);
    return serve_send(l, r);
}

int hpo_serve(const hpo_link *l, const hpo_config *cfg, hpo_train_fn train, void *ctx, FILE *out, char **payload) {
    if (payload) *payload = NULL;
    for (;;) {
        int src = -1;
        char *text = NULL;
        int r = l->recv(l->ctx, 1, &src, &text);
        if (r < 0) return r;
        if (r == 0) continue;
        cJSON *j = cJSON_Parse(text);
        free(text);
        const char *type = j ? jstr(j, "type") : "";
        if (!strcmp(type, "stop")) {
            const char *pl = jstr(j, "payload");
            if (payload && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "payload"))) *payload = strdup(pl);
            cJSON_Delete(j);
            return 0;
        }
        int s = !strcmp(type, "trial") ? serve_trial(l, cfg, j, train, ctx, out)
                                       : ote_err(OTE_EINVAL, "unexpected message from rank 0");
        cJSON_Delete(j);
        if (s < 0) {
            char msg[1100];
            snprintf(msg, sizeof msg, "%s", ote_errmsg());
            CHECK(serve_error(l, msg)); /* rank 0 prints it and ends the job; wait for its stop */
        }
    }
}

int hpo_par_stop(const hpo_link *l, const char *payload) {
    int s = 0;
    for (int w = 1; l && w <= l->workers; w++) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "type", "stop");
        if (payload) cJSON_AddStringToObject(j, "payload", payload);
        int k = par_send_json(l, w, j);
        if (k < 0 && s == 0) s = k;
    }
    return s;
}

static void fill_defaults(hpo_config *c) {
    if (c->max_iterations <= 0) c->max_iterations = HPO_DEFAULT_MAX_ITERATIONS;
    if (c->subset_ratio <= 0) c->subset_ratio = 1.0;
    if (c->image_resize <= 0) c->image_resize = 1.0;
    if (c->algo == HPO_ALGO_ASHA) {
        if (c->reduction_factor < 2) c->reduction_factor = 2;
        if (c->min_iterations < 1) c->min_iterations = 1;
        if (c->min_iterations > c->max_iterations) c->min_iterations = c->max_iterations;
        if (c->num_brackets < 1) c->num_brackets = 1;
        while (c->num_brackets > 1 && asha_rungs(c, c->num_brackets - 1) < 1) c->num_brackets--;
    }
}

void hpo_config_fill_defaults(hpo_config *c) { fill_defaults(c); }

/* What the steps of hpo_run share. */
typedef struct hpo_run_ctx {
    hpo_state st;
    const hpo_options *opt;
    hpo_train_fn train;
    void *ctx;
    hpo_result *res;
    int num_trials, num_init;
    double t0;           /* now_of() at the start of this run */
    double spent_before; /* trial seconds on record, per trial slot: a resumed search's budget used */
    int resume, reuse;   /* the search on record is continued / its outcome taken as it is */
} hpo_run_ctx;

/* Resume (or reuse) the search on record rather than rerun it? The --hpo-resume choice, else the
 * prompt (spec §4.8) or its default without a terminal. 1 yes, 0 no, OTE_ECANCEL. */
static int run_wants_old(const hpo_options *opt, int complete) {
    int yes = 1;
    say(opt, "Previous HPO results are found in %s.\n", opt->work_dir);
    const char *what_yes = complete ? "Reusing previously found hyper-parameters" : "Resuming HPO";
    if (opt->resume == HPO_RESUME_NO) {
        yes = 0;
        say(opt, "Rerunning HPO from scratch (--hpo-resume no).\n");
    } else if (opt->resume == HPO_RESUME_YES) {
        say(opt, "%s (--hpo-resume yes).\n", what_yes);
    } else if (opt->interactive) {
        yes = ask(opt, complete ? "Do you want to reuse previously found hyper-parameters?" : "Do you want to resume HPO?");
    } else {
        say(opt, "%s (stdin is not a terminal; use --hpo-resume no to rerun from scratch).\n", what_yes);
    }
    return yes;
}

/* The work dir's status file: its trials into st when the search is resumed or reused, else the
 * work dir cleared for a new search (also when the configuration changed). */
static int run_open_store(hpo_run_ctx *r) {
    const char *dir = r->opt->work_dir;
    void *old = NULL;
    int s = hpo_store_read(dir, &old);
    if (s < 0) return s;
    if (s == 0) {
        char what[64] = "";
        if (hpo_store_same_config(old, &r->st, what, sizeof what)) {
            say(r->opt, "HPO configuration changed ('%s' differs from %s/hpopt_status.json): rerunning HPO from scratch.\n",
                what, dir);
            r->res->rerun_changed = 1;
        } else {
            int complete = hpo_store_complete(old), yes = run_wants_old(r->opt, complete);
            if (yes < 0) {
                hpo_store_json_free(old);
                return yes;
            }
            if (yes) {
                if (complete) r->reuse = 1;
                else r->resume = 1;
            }
        }
        if (r->resume || r->reuse) s = hpo_store_trials(dir, old, &r->st);
        hpo_store_json_free(old);
        if (s < 0) return s;
    }
    if (!r->resume && !r->reuse) CHECK(hpo_store_clear(dir));
    return 0;
}

/* A finished trial's file. When it was moved aside (OTE_ESTATE) the status file goes too, so that
 * the message's "run again to start a new search" is what happens. */
static int run_load_trial(const char *dir, hpo_trial_rec *t) {
    int s = hpo_store_trial_load(dir, t);
    if (s == OTE_ESTATE) {
        char msg[1024], sp[4200], dst[4200];
        snprintf(msg, sizeof msg, "%s", ote_errmsg());
        snprintf(sp, sizeof sp, "%s/hpopt_status.json", dir);
        if (hpo_store_move_aside(sp, dst, sizeof dst) == 0)
            s = ote_err(OTE_ESTATE, "%s (hpopt_status.json moved aside to %s as well)", msg, dst);
    }
    return s;
}

/* The trials on record: finished ones read back (their time counts against the budget);
 * interrupted or never started ones, when resuming, rerun with the same values. */
static int run_load_recorded(hpo_run_ctx *r) {
    const char *dir = r->opt->work_dir;
    for (int i = 0; i < r->st.n; i++) {
        hpo_trial_rec *t = &r->st.t[i];
        if (t->status == HPO_STOP || t->status == HPO_FAILED) {
            CHECK(run_load_trial(dir, t));
            for (int k = 0; k < t->n; k++) r->spent_before += t->seconds[k] / par_workers(r->opt);
        } else if (r->resume) {
            hpo_store_trial_clear(t);
            t->status = HPO_READY;
            char p[4200];
            snprintf(p, sizeof p, "%s/hpopt_trial_%d.json", dir, t->id);
            unlink(p);
        }
    }
    return 0;
}

/* A complete search on record, taken as it is. */
static void run_reuse(hpo_run_ctx *r) {
    hpo_state *st = &r->st;
    st->best_id = find_best(st);
    if (r->opt->on_record) r->opt->on_record(r->opt->on_record_ctx, st);
    r->res->reused = 1;
    hpo_print_table(r->opt->out, st);
    fill_result(st, r->res);
    r->res->seconds = now_of(r->opt) - r->t0;
}

/* The trials: in parallel over the link's workers, else one after the other. On an error the
 * result still counts the trials on record. */
static int run_search(hpo_run_ctx *r) {
    hpo_state *st = &r->st;
    const hpo_options *opt = r->opt;
    smbo sm;
    CHECK(smbo_init(&sm, &st->cfg.space, st->cfg.algo == HPO_ALGO_ASHA ? INT_MAX : r->num_init, opt->seed));
    int s = 0;
    if (opt->link && opt->link->workers > 0) {
        s = par_loop(st, opt, &sm, r->train, r->ctx, r->num_trials, r->num_init, r->t0, r->spent_before, r->res);
    } else {
        while (s == 0) {
            int ti = -1, k = next_trial(st, &sm, opt, r->num_trials, r->t0, r->spent_before, &ti);
            if (k != 0) {
                if (k < 0) s = k;
                break;
            }
            s = run_trial(st, ti, opt, r->train, r->ctx, r->num_init, r->t0, r->spent_before, NULL);
            if (s == 0) r->res->trials_run++;
        }
    }
    smbo_free(&sm);
    if (s < 0) fill_result(st, r->res);
    return s;
}

/* The best trial, the status file with it, the figures and OTE's table. */
static int run_finish(hpo_run_ctx *r) {
    hpo_state *st = &r->st;
    const hpo_options *opt = r->opt;
    st->best_id = find_best(st);
    if (st->best_id < 0) {
        hpo_store_save(opt->work_dir, st);
        return ote_err(OTE_ESTATE, "hpo: no trial produced a score (%d trials, all failed)", st->n);
    }
    int s = hpo_store_save(opt->work_dir, st);
    if (s == 0 && opt->on_record) opt->on_record(opt->on_record_ctx, st);
    if (s == 0) hpo_print_table(opt->out, st);
    fill_result(st, r->res);
    r->res->seconds = now_of(opt) - r->t0;
    return s;
}

int hpo_run(const hpo_config *cfg, const hpo_options *opt, hpo_train_fn train, void *ctx, hpo_result *res) {
    memset(res, 0, sizeof *res);
    res->best_id = -1;
    if (!opt->work_dir || !*opt->work_dir) return ote_err(OTE_EINVAL, "hpo: no work directory");
    if (cfg->space.n < 1) return ote_err(OTE_EINVAL, "hpo: empty search space");
    CHECK(mkdir_p(opt->work_dir));
    hpo_run_ctx r;
    memset(&r, 0, sizeof r);
    r.opt = opt, r.train = train, r.ctx = ctx, r.res = res;
    r.t0 = now_of(opt);
    r.st.cfg = *cfg;
    fill_defaults(&r.st.cfg);
    r.st.full_dataset_size = opt->full_dataset_size;
    r.st.best_id = -1;
    r.num_trials = opt->num_trials > 0 ? opt->num_trials : cfg->num_trials > 0 ? cfg->num_trials : HPO_DEFAULT_NUM_TRIALS;
    r.num_init = cfg->num_init_trials > 0 ? cfg->num_init_trials : HPO_DEFAULT_NUM_INIT;
    if (r.num_init > r.num_trials) r.num_init = r.num_trials;

    int s = run_open_store(&r);
    if (s == 0 && (r.resume || r.reuse)) s = run_load_recorded(&r);
    if (s == 0 && r.reuse) {
        run_reuse(&r);
    } else if (s == 0) {
        res->resumed = r.resume;
        s = hpo_store_save(opt->work_dir, &r.st);
        if (s == 0) s = run_search(&r);
        if (s == 0) s = run_finish(&r);
    }
    hpo_store_state_free(&r.st);
    return s;
}

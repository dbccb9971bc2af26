/* test_hpo_parallel.c - the parallel search's protocol (hpo.h: hpo_link, hpo_serve, hpo_par_stop)
 * without MPI: a worker thread serves orders over an in-process link (two mutex-guarded queues)
 * while hpo_run on the main thread drives and runs trials itself. Checks: both "ranks" ran trials,
 * every trial recorded once with its rank, no duplicate proposal, the best; a failed trial on the
 * worker is recorded as failed with its message and the search goes on; a worker that cannot run
 * orders makes hpo_run fail with the worker's message instead of hanging; the stop's payload. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/ote.h"
#include "hpo/hpo.h"
#include "tests/expect.h"

/* ---- an in-process link: queue[0] holds messages to rank 0, queue[1] to the worker ---- */

typedef struct msg {
    char *text;
    struct msg *next;
} msg;

typedef struct fake_net {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    msg *head[2], *tail[2];
} fake_net;

typedef struct fake_end {
    fake_net *net;
    int me; /* 0 = rank 0, 1 = the worker */
} fake_end;

static int fake_send(void *ctx, int dest, const char *text, size_t len) {
    fake_end *e = ctx;
    msg *m = malloc(sizeof *m);
    m->text = malloc(len + 1);
    memcpy(m->text, text, len);
    m->text[len] = 0;
    m->next = NULL;
    int q = dest == 0 ? 0 : 1;
    pthread_mutex_lock(&e->net->mu);
    if (e->net->tail[q]) e->net->tail[q]->next = m;
    else e->net->head[q] = m;
    e->net->tail[q] = m;
    pthread_cond_broadcast(&e->net->cv);
    pthread_mutex_unlock(&e->net->mu);
    return 0;
}

static int fake_recv(void *ctx, int block, int *src, char **text) {
    fake_end *e = ctx;
    int q = e->me;
    pthread_mutex_lock(&e->net->mu);
    while (block && !e->net->head[q]) pthread_cond_wait(&e->net->cv, &e->net->mu);
    msg *m = e->net->head[q];
    if (m) {
        e->net->head[q] = m->next;
        if (!m->next) e->net->tail[q] = NULL;
    }
    pthread_mutex_unlock(&e->net->mu);
    if (!m) return 0;
    *src = q == 0 ? 1 : 0;
    *text = m->text;
    free(m);
    return 1;
}

/* ---- objective: a smooth function of lr and batch size, 20 ms per epoch ---- */

typedef struct obj {
    int fail_id; /* this trial fails (on whichever rank runs it) */
} obj;

static double smooth(const hpo_trial *t) {
    double lr = hpo_trial_value(t, "learning_parameters.learning_rate", 0);
    double bs = hpo_trial_value(t, "learning_parameters.batch_size", 0);
    return 1 - pow((lr - 0.006) / 0.01, 2) - pow((bs - 6) / 4, 2);
}

static int train(void *ctx, const hpo_trial *t, hpo_reporter *r) {
    obj *o = ctx;
    if (t->id == o->fail_id) return ote_err(OTE_ENAN, "loss became NaN at step 3");
    for (int e = 1; e <= t->max_epochs; e++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        int s = hpo_report(r, e, smooth(t) * (1 - pow(0.5, e)), 0.02, 8L * e);
        if (s < 0) return s;
        if (s == HPO_STOP_TRIAL) break;
    }
    return 0;
}

typedef struct worker {
    pthread_t th;
    hpo_link link;
    const hpo_config *cfg;
    obj *o;
    int rc;
    char *payload;
} worker;

static void *worker_main(void *p) {
    worker *w = p;
    w->rc = hpo_serve(&w->link, w->cfg, train, w->o, NULL, &w->payload);
    return NULL;
}

static const char *CFG = "metric: mAP\nsearch_algorithm: smbo\nmax_iterations: 3\nnum_trials: 8\nhp_space:\n"
                         "  learning_parameters.learning_rate:\n    param_type: quniform\n"
                         "    range: [0.001, 0.01, 0.001]\n"
                         "  learning_parameters.batch_size:\n    param_type: qloguniform\n    range: [4, 8, 2]\n";

/* Runs one search with a worker thread; the worker gets wcfg (NULL: it cannot run orders). */
static int run(const char *dir, const hpo_config *cfg, const hpo_config *wcfg, obj *o, hpo_result *res, char **log,
               worker *w) {
    static fake_net net;
    memset(&net, 0, sizeof net);
    pthread_mutex_init(&net.mu, NULL);
    pthread_cond_init(&net.cv, NULL);
    static fake_end e0, e1;
    e0 = (fake_end){&net, 0};
    e1 = (fake_end){&net, 1};
    hpo_link l0 = {1, fake_send, fake_recv, &e0};
    memset(w, 0, sizeof *w);
    w->link = (hpo_link){0, fake_send, fake_recv, &e1};
    w->cfg = wcfg;
    w->o = o;
    pthread_create(&w->th, NULL, worker_main, w);
    size_t n = 0;
    FILE *out = open_memstream(log, &n);
    hpo_options opt;
    memset(&opt, 0, sizeof opt);
    opt.work_dir = dir;
    opt.resume = HPO_RESUME_NO;
    opt.out = out;
    opt.seed = 7;
    opt.link = &l0;
    double defaults[2] = {0.008, 8};
    opt.defaults = defaults;
    int s = hpo_run(cfg, &opt, train, o, res);
    fclose(out);
    hpo_par_stop(&l0, s == 0 ? "done" : "failed");
    pthread_join(w->th, NULL);
    return s;
}

static cJSON *load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

static void case_parallel(void) {
    char dir[] = "/tmp/ote_hpo_par_XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    hpo_config cfg;
    REQUIRE_OK(hpo_config_parse(&cfg, CFG, "hpo_config.yaml"));
    obj o = {-1};
    hpo_result res;
    char *log = NULL;
    worker w;
    int s = run(dir, &cfg, &cfg, &o, &res, &log, &w);
    EXPECT(s == 0 && res.trials_run == 8 && res.trials_total == 8 && res.best_id >= 0,
           "8 trials run, a best one (rc %d, %d run)", s, res.trials_run);
    EXPECT(w.rc == 0 && w.payload && !strcmp(w.payload, "done"), "worker stopped with the payload ('%s')",
           w.payload ? w.payload : "(none)");
    EXPECT(log && strstr(log, "HPO: 2 trials at a time (rank 0 and 1 worker rank)"), "announced 2 at a time");
    char path[256];
    snprintf(path, sizeof path, "%s/hpopt_status.json", dir);
    cJSON *st = load(path);
    REQUIRE(st, "status file readable");
    const cJSON *cl = cJSON_GetObjectItem(st, "config_list"), *e;
    int n = 0, ranks[2] = {0, 0}, all_stop = 1, dup = 0, best = -1;
    double lrs[16], bss[16], best_score = -HUGE_VAL;
    cJSON_ArrayForEach(e, cl) {
        const cJSON *c = cJSON_GetObjectItem(e, "config");
        lrs[n] = cJSON_GetObjectItem(c, "learning_parameters.learning_rate")->valuedouble;
        bss[n] = cJSON_GetObjectItem(c, "learning_parameters.batch_size")->valuedouble;
        for (int k = 0; k < n; k++) dup |= lrs[k] == lrs[n] && bss[k] == bss[n];
        all_stop &= cJSON_GetObjectItem(e, "status")->valueint == 2;
        double sc = cJSON_GetObjectItem(e, "score")->valuedouble;
        if (sc > best_score) best_score = sc, best = n;
        snprintf(path, sizeof path, "%s/hpopt_trial_%d.json", dir, n);
        cJSON *t = load(path);
        const cJSON *rk = t ? cJSON_GetObjectItem(t, "rank") : NULL;
        if (cJSON_IsNumber(rk) && rk->valueint >= 0 && rk->valueint < 2) ranks[rk->valueint]++;
        cJSON_Delete(t);
        n++;
    }
    EXPECT(n == 8 && all_stop && !dup, "8 finished trials, no duplicate configuration (constant liar + used)");
    EXPECT(ranks[0] > 0 && ranks[1] > 0 && ranks[0] + ranks[1] == 8, "both ranks ran trials (rank 0: %d, rank 1: %d)",
           ranks[0], ranks[1]);
    EXPECT(cJSON_GetObjectItem(st, "best_config_id")->valueint == best, "best_config_id is the best score (%d)", best);
    cJSON_Delete(st);
    free(log);
    free(w.payload);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
}

static void case_failed_trial(void) {
    char dir[] = "/tmp/ote_hpo_par_XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    hpo_config cfg;
    REQUIRE_OK(hpo_config_parse(&cfg, CFG, "hpo_config.yaml"));
    obj o = {0}; /* trial 0 (the defaults) goes to the worker first */
    hpo_result res;
    char *log = NULL;
    worker w;
    int s = run(dir, &cfg, &cfg, &o, &res, &log, &w);
    EXPECT(s == 0 && res.trials_total == 8 && res.trials_scored == 7, "the search goes on: 8 trials, 7 scored (rc %d)",
           s);
    EXPECT(log && strstr(log, "HPO trial 0 failed on rank 1: loss became NaN at step 3"),
           "the worker's failure is recorded with its message");
    char path[256];
    snprintf(path, sizeof path, "%s/hpopt_trial_0.json", dir);
    cJSON *t = load(path);
    EXPECT(t && cJSON_GetObjectItem(t, "status")->valueint == 7 &&
               strstr(cJSON_GetObjectItem(t, "stop_reason")->valuestring, "NaN"),
           "trial 0: status failed (7), stop_reason names the error");
    cJSON_Delete(t);
    free(log);
    free(w.payload);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
}

static void case_worker_error(void) {
    char dir[] = "/tmp/ote_hpo_par_XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    hpo_config cfg;
    REQUIRE_OK(hpo_config_parse(&cfg, CFG, "hpo_config.yaml"));
    obj o = {-1};
    hpo_result res;
    char *log = NULL;
    worker w;
    int s = run(dir, &cfg, NULL, &o, &res, &log, &w);
    EXPECT(s == OTE_EIO && strstr(ote_errmsg(), "rank 1: this rank could not load its hpo_config.yaml"),
           "a worker that cannot run orders fails the search with its message, no hang (rc %d: %s)", s, ote_errmsg());
    EXPECT(log && strstr(log, "HPO: rank 1 failed: "), "rank 0 printed the worker's failure");
    EXPECT(w.rc == 0 && w.payload && !strcmp(w.payload, "failed"), "the worker got the stop");
    free(log);
    free(w.payload);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
}

int main(void) {
    EXPECT_RUN(case_parallel);
    EXPECT_RUN(case_failed_trial);
    EXPECT_RUN(case_worker_error);
    return expect_finish();
}

/* test_hpo_driver.c - the HPO driver with synthetic objectives: status/trial file fields, the OTE
 * table format, resume after an interruption, reuse, the prompt, a changed hp_space, a failed
 * trial, a corrupt status file, median stop, ASHA rungs and the wall-clock budget (fake clock).
 * Expected stop epochs for median stop / ASHA are worked out by hand in the comments. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/ote.h"
#include "hpo/hpo.h"
#include "tests/expect.h"


typedef struct obj {
    int by_id;             /* 1: every epoch reports id_score[id] */
    double id_score[32];
    int cancel_at, fail_id, nan_id;
    int calls[64];
    double *clock, epoch_sec;
} obj;

static double smooth(const hpo_trial *t) {
    double lr = hpo_trial_value(t, "learning_parameters.learning_rate", 0);
    double bs = hpo_trial_value(t, "learning_parameters.batch_size", 0);
    return 1 - pow((lr - 0.006) / 0.01, 2) - pow((bs - 6) / 4, 2);
}

static int train(void *ctx, const hpo_trial *t, hpo_reporter *r) {
    obj *o = ctx;
    o->calls[t->id]++;
    if (t->id == o->fail_id) return ote_err(OTE_ENAN, "loss became NaN at step 3");
    for (int e = 1; e <= t->max_epochs; e++) {
        double f = o->by_id ? o->id_score[t->id] : smooth(t) * (1 - pow(0.5, e));
        if (t->id == o->nan_id && e == 2) f = NAN;
        if (o->clock) *o->clock += o->epoch_sec;
        int s = hpo_report(r, e, f, o->epoch_sec, 100L * e);
        if (s < 0) return s;
        if (t->id == o->cancel_at) return OTE_ECANCEL;
        if (s == HPO_STOP_TRIAL) break;
    }
    return 0;
}

static void obj_init(obj *o) {
    memset(o, 0, sizeof *o);
    o->cancel_at = o->fail_id = o->nan_id = -1;
}

static cJSON *load_json(const char *dir, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

static const cJSON *get(const cJSON *j, const char *k) { return cJSON_GetObjectItemCaseSensitive(j, k); }
static const cJSON *trial_entry(const cJSON *st, int i) { return cJSON_GetArrayItem(get(st, "config_list"), i); }

static const char *cfg_text =
    "metric: mAP\nsearch_algorithm: smbo\nearly_stop: None\nhp_space:\n"
    "  learning_parameters.learning_rate:\n    param_type: quniform\n    range: [0.001, 0.01, 0.001]\n"
    "  learning_parameters.batch_size:\n    param_type: qloguniform\n    range: [4, 8, 2]\n";

static void base_opts(hpo_options *o, const char *dir, FILE *out) {
    memset(o, 0, sizeof *o);
    o->work_dir = dir;
    o->resume = HPO_RESUME_YES;
    o->out = out;
    o->num_trials = 6;
    o->full_dataset_size = 200;
    o->seed = 11;
}

static double fake_clock(void *ctx) { return *(double *)ctx; }

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    if (d) closedir(d);
    return n;
}

/* Reads dir/trials.csv into lines (at most 16, newline stripped); returns the count, -1 if absent. */
static int read_csv(const char *dir, char lines[16][512]) {
    char p[512];
    snprintf(p, sizeof p, "%s/trials.csv", dir);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    int n = 0;
    while (n < 16 && fgets(lines[n], 512, f)) {
        lines[n][strcspn(lines[n], "\n")] = 0;
        n++;
    }
    fclose(f);
    return n;
}

/* trials.csv agrees with hpopt_status.json and the trial files: id, values, status, score,
 * epochs = reports, seconds = their sum, best flag. */
static int csv_matches(const char *dir, const cJSON *st, char *why, size_t wn) {
    char lines[16][512];
    int n = read_csv(dir, lines), rows = cJSON_GetArraySize(get(st, "config_list"));
    if (n != rows + 1) return snprintf(why, wn, "%d lines for %d trials", n, rows), 0;
    if (strcmp(lines[0], "trial_id,learning_parameters.learning_rate,learning_parameters.batch_size,status,score,"
                         "epochs,seconds,best,stop_reason"))
        return snprintf(why, wn, "header '%s'", lines[0]), 0;
    const cJSON *bid = get(st, "best_config_id");
    for (int i = 0; i < rows; i++) {
        const cJSON *e = trial_entry(st, i), *c = get(e, "config"), *scj = get(e, "score");
        char name[64];
        snprintf(name, sizeof name, "hpopt_trial_%d.json", i);
        cJSON *t = load_json(dir, name);
        int ep = t ? cJSON_GetArraySize(get(t, "scores")) : 0;
        double secs = 0;
        for (int k = 0; t && k < ep; k++) secs += cJSON_GetArrayItem(get(t, "seconds"), k)->valuedouble;
        cJSON_Delete(t);
        int id = -1, e_n = -1, best = -1;
        double lr = -1, bs = -1, sec = -1, score = NAN;
        char status[32] = "", scs[40] = "";
        int got = sscanf(lines[i + 1], "%d,%lf,%lf,%31[^,],%39[^,],%d,%lf,%d", &id, &lr, &bs, status, scs, &e_n, &sec, &best);
        if (got < 8) { /* an empty score field: sscanf stops there */
            scs[0] = 0;
            got = sscanf(lines[i + 1], "%d,%lf,%lf,%31[^,],,%d,%lf,%d", &id, &lr, &bs, status, &e_n, &sec, &best) + 1;
        } else {
            score = atof(scs);
        }
        int ok = got == 8 && id == (int)get(e, "trial_id")->valuedouble &&
                 lr == get(c, "learning_parameters.learning_rate")->valuedouble &&
                 bs == get(c, "learning_parameters.batch_size")->valuedouble &&
                 !strcmp(status, hpo_store_status_name((int)get(e, "status")->valuedouble)) &&
                 (cJSON_IsNull(scj) ? scs[0] == 0 : fabs(score - scj->valuedouble) <= 1e-9 * fmax(1, fabs(score))) &&
                 e_n == ep && fabs(sec - secs) < 1e-3 && best == (bid && (int)bid->valuedouble == id);
        if (!ok) return snprintf(why, wn, "row %d '%s'", i, lines[i + 1]), 0;
    }
    return 1;
}

int main(void) {
    char dir[] = "/tmp/ote_hpo_drv_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    hpo_config cfg;
    if (hpo_config_parse(&cfg, cfg_text, "hpo_config.yaml") < 0) {
        printf("FAIL config: %s\n", ote_errmsg());
        return 1;
    }
    cfg.max_iterations = 3;
    double defaults[2] = {0.004, 8};
    hpo_options opt;
    hpo_result res;
    obj o;

    /* 1. fresh run, files and table */
    char *tbl = NULL;
    size_t tbl_len = 0;
    FILE *out = open_memstream(&tbl, &tbl_len);
    base_opts(&opt, dir, out);
    opt.defaults = defaults;
    obj_init(&o);
    int s = hpo_run(&cfg, &opt, train, &o, &res);
    fclose(out);
    EXPECT(s == 0 && res.trials_run == 6 && res.best_id >= 0, "fresh run: 6 trials, a best (%s)", s ? ote_errmsg() : "ok");
    cJSON *st = load_json(dir, "hpopt_status.json");
    const char *keys[] = {"search_algorithm", "search_space", "metric", "subset_ratio", "image_resize", "early_stop",
                          "max_iterations", "full_dataset_size", "config_list", "num_gen_config", "best_config_id"};
    int has = st != NULL;
    for (int i = 0; has && i < 11; i++) has = get(st, keys[i]) != NULL;
    EXPECT(has, "hpopt_status.json has every OTE key");
    EXPECT(st && !strcmp(get(st, "early_stop")->valuestring, "None") &&
                get(st, "full_dataset_size")->valuedouble == 200 && get(st, "max_iterations")->valuedouble == 3 &&
                cJSON_GetArraySize(get(st, "config_list")) == 6 && get(st, "num_gen_config")->valuedouble == 6,
            "status values: early_stop \"None\", sizes, 6 configs");
    const cJSON *rng0 = get(get(get(st, "search_space"), "learning_parameters.batch_size"), "range");
    EXPECT(cJSON_GetArraySize(rng0) == 4 && cJSON_GetArrayItem(rng0, 3)->valuedouble == 2,
            "search_space range stored with base 2 appended");
    const cJSON *c0 = get(trial_entry(st, 0), "config");
    EXPECT(get(c0, "learning_parameters.learning_rate")->valuedouble == 0.004 &&
                get(c0, "learning_parameters.batch_size")->valuedouble == 8 &&
                !strcmp(c0->child->string, "learning_parameters.batch_size"),
            "trial 0 = template defaults; config keys sorted");
    int best = -1;
    double bsc = -1;
    int all_stop = 1;
    for (int i = 0; i < 6; i++) {
        const cJSON *e = trial_entry(st, i);
        all_stop &= get(e, "status")->valuedouble == HPO_STOP;
        if (get(e, "score")->valuedouble > bsc) bsc = get(e, "score")->valuedouble, best = i;
    }
    EXPECT(all_stop && get(st, "best_config_id")->valuedouble == best, "all trials STOP(2); best_config_id = argmax");
    cJSON *t0 = load_json(dir, "hpopt_trial_0.json");
    const cJSON *sc = get(t0, "scores"), *md = get(t0, "median");
    EXPECT(t0 && get(t0, "status")->valuedouble == 2 && cJSON_GetArraySize(sc) == 3 &&
                cJSON_GetArraySize(get(t0, "seconds")) == 3 && cJSON_GetArrayItem(get(t0, "images"), 2)->valuedouble == 300,
            "trial file: status, 3 scores, seconds, images");
    double m1 = (cJSON_GetArrayItem(sc, 0)->valuedouble + cJSON_GetArrayItem(sc, 1)->valuedouble) / 2;
    EXPECT(t0 && fabs(cJSON_GetArrayItem(md, 1)->valuedouble - m1) < 1e-15, "median[1] = running mean of 2 scores");
    /* score = best epoch: epochs rise (1 - 0.5^e) for positive f, so score = last */
    EXPECT(fabs(get(trial_entry(st, 0), "score")->valuedouble - cJSON_GetArrayItem(sc, 2)->valuedouble) < 1e-15,
            "trial score = best epoch score");
    /* table: header verbatim from the OTE docs */
    const char *hdr = "|  #  | learning_parameters.learning_rate  | learning_parameters.batch_size  |        score        |\n";
    const char *row1 = "|   1 |                              0.004 |                               8 |";
    EXPECT(tbl && strstr(tbl, hdr) != NULL, "table header verbatim");
    EXPECT(tbl && strstr(tbl, row1) != NULL, "row 1 widths verbatim (defaults 0.004 / 8)");
    char *bl = tbl ? strstr(tbl, "Best Hyper-parameters\n{'learning_parameters.batch_size': ") : NULL;
    char expect_dict[256];
    char *lr_txt = cJSON_PrintUnformatted(get(get(trial_entry(st, best), "config"), "learning_parameters.learning_rate"));
    snprintf(expect_dict, sizeof expect_dict, "{'learning_parameters.batch_size': %.0f, 'learning_parameters.learning_rate': %s}",
             get(get(trial_entry(st, best), "config"), "learning_parameters.batch_size")->valuedouble, lr_txt);
    free(lr_txt);
    EXPECT(bl && strstr(bl, expect_dict), "Best Hyper-parameters + dict %s", expect_dict);
    int dup = 0;
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < i; j++) {
            const cJSON *a = get(trial_entry(st, i), "config"), *b = get(trial_entry(st, j), "config");
            dup |= cJSON_Compare(a, b, 1);
        }
    EXPECT(!dup, "no configuration proposed twice");
    char why[600] = "";
    EXPECT(csv_matches(dir, st, why, sizeof why), "trials.csv: header, 6 rows matching the JSON records %s", why);
    cJSON_Delete(st);
    cJSON_Delete(t0);
    free(tbl);

    /* 2. reuse: finished run, same config -> no trial runs */
    obj_init(&o);
    base_opts(&opt, dir, NULL);
    s = hpo_run(&cfg, &opt, train, &o, &res);
    int calls = 0;
    for (int i = 0; i < 64; i++) calls += o.calls[i];
    EXPECT(s == 0 && res.reused && res.trials_run == 0 && calls == 0 && res.best_id == best,
            "finished run reused: no trial, same best");

    /* 3. interactive prompt: one bad answer, then 'n' -> rerun from scratch */
    tbl = NULL;
    out = open_memstream(&tbl, &tbl_len);
    FILE *in = fmemopen("x\nn\n", 4, "r");
    base_opts(&opt, dir, out);
    opt.resume = HPO_RESUME_ASK;
    opt.interactive = 1;
    opt.in = in;
    obj_init(&o);
    s = hpo_run(&cfg, &opt, train, &o, &res);
    fclose(out);
    fclose(in);
    EXPECT(s == 0 && !res.reused && res.trials_run == 6, "prompt answered n: rerun from scratch");
    EXPECT(tbl && strstr(tbl, "Previous HPO results are found in ") &&
                strstr(tbl, "Do you want to reuse previously found hyper-parameters? [\033[1mY\033[0m/n]: ") &&
                strstr(tbl, "You should type 'y' or 'n'. Nothing means 'y'.\n"),
            "OTE prompt strings");
    free(tbl);
    tbl = NULL;
    out = open_memstream(&tbl, &tbl_len);
    in = fmemopen("a\nb\nc\nd\ne\n", 10, "r");
    opt.out = out;
    opt.in = in;
    s = hpo_run(&cfg, &opt, train, &o, &res);
    fclose(out);
    fclose(in);
    EXPECT(s == OTE_ECANCEL && tbl && strstr(tbl, "Your inputs are invalid. The whole program is terminating...\n"),
            "5 invalid answers terminate");
    free(tbl);

    /* 4. interruption during trial 3 (callback aborts after one epoch), then resume */
    char dir2[] = "/tmp/ote_hpo_drv2_XXXXXX";
    if (!mkdtemp(dir2)) return 1;
    obj_init(&o);
    o.cancel_at = 3;
    base_opts(&opt, dir2, NULL);
    opt.defaults = defaults;
    s = hpo_run(&cfg, &opt, train, &o, &res);
    st = load_json(dir2, "hpopt_status.json");
    EXPECT(s == OTE_ECANCEL && st && cJSON_GetArraySize(get(st, "config_list")) == 4 &&
                get(trial_entry(st, 3), "status")->valuedouble == HPO_RUNNING && !get(st, "best_config_id"),
            "interrupted: trial 3 left RUNNING, no best_config_id");
    cJSON *before = st;
    obj_init(&o);
    tbl = NULL;
    out = open_memstream(&tbl, &tbl_len);
    base_opts(&opt, dir2, out);
    opt.resume = HPO_RESUME_ASK; /* not interactive: resumes and says so */
    opt.defaults = defaults;
    s = hpo_run(&cfg, &opt, train, &o, &res);
    fclose(out);
    st = load_json(dir2, "hpopt_status.json");
    int kept = 1;
    for (int i = 0; i < 3; i++) kept &= cJSON_Compare(trial_entry(st, i), trial_entry(before, i), 1) && o.calls[i] == 0;
    EXPECT(s == 0 && res.resumed && kept, "resume keeps finished trials 0-2 untouched and does not rerun them");
    EXPECT(o.calls[3] == 1 && cJSON_Compare(get(trial_entry(st, 3), "config"), get(trial_entry(before, 3), "config"), 1) &&
                get(trial_entry(st, 3), "status")->valuedouble == HPO_STOP,
            "interrupted trial 3 rerun with the same values");
    EXPECT(cJSON_GetArraySize(get(st, "config_list")) == 6 && get(st, "best_config_id") && res.trials_run == 3,
            "resumed search completes 6 trials (ran 3)");
    EXPECT(tbl && strstr(tbl, "Resuming HPO (stdin is not a terminal"), "non-interactive ask says it resumes");
    free(tbl);
    cJSON_Delete(before);
    cJSON_Delete(st);

    /* 5. changed hp_space reruns without asking */
    hpo_config cfg2 = cfg;
    cfg2.space.p[0].hi = 0.02;
    obj_init(&o);
    tbl = NULL;
    out = open_memstream(&tbl, &tbl_len);
    base_opts(&opt, dir2, out);
    opt.resume = HPO_RESUME_ASK;
    opt.interactive = 1;
    opt.in = fmemopen("n\n", 2, "r"); /* must not be read */
    s = hpo_run(&cfg2, &opt, train, &o, &res);
    fclose(out);
    EXPECT(s == 0 && res.rerun_changed && res.trials_run == 6 && tbl && strstr(tbl, "'search_space' differs") &&
                !strstr(tbl, "Do you want"),
            "changed hp_space: rerun from scratch without asking");
    fclose(opt.in);
    free(tbl);

    /* 6. failed trials: trial 2 returns an error, trial 4 reports NaN; the search goes on */
    char dir3[] = "/tmp/ote_hpo_drv3_XXXXXX";
    if (!mkdtemp(dir3)) return 1;
    obj_init(&o);
    o.fail_id = 2;
    o.nan_id = 4;
    base_opts(&opt, dir3, NULL);
    s = hpo_run(&cfg, &opt, train, &o, &res);
    st = load_json(dir3, "hpopt_status.json");
    cJSON *t2 = load_json(dir3, "hpopt_trial_2.json");
    EXPECT(s == 0 && st && get(trial_entry(st, 2), "status")->valuedouble == HPO_FAILED &&
                cJSON_IsNull(get(trial_entry(st, 2), "score")) &&
                get(trial_entry(st, 4), "status")->valuedouble == HPO_FAILED &&
                get(trial_entry(st, 5), "status")->valuedouble == HPO_STOP && cJSON_GetArraySize(get(st, "config_list")) == 6,
            "failed trials recorded as FAILED(7), score null, search continued");
    EXPECT(t2 && strstr(get(t2, "stop_reason")->valuestring, "loss became NaN"), "failure message in the trial file");
    why[0] = 0;
    EXPECT(st && csv_matches(dir3, st, why, sizeof why), "trials.csv with failed trials (empty score) matches %s", why);
    char lines[16][512] = {{0}};
    EXPECT(read_csv(dir3, lines) == 7 && strstr(lines[3], ",failed,,") && strstr(lines[3], "loss became NaN"),
           "trials.csv: trial 2 failed, empty score, its message: '%s'", lines[3]);
    cJSON_Delete(st);
    cJSON_Delete(t2);

    /* 7. corrupt status file: clear error, moved aside, never overwritten */
    char p[600];
    snprintf(p, sizeof p, "%s/hpopt_status.json", dir3);
    FILE *f = fopen(p, "w");
    fputs("{\"search_algorithm\": \"smbo\", \"config_list\": [", f);
    fclose(f);
    obj_init(&o);
    base_opts(&opt, dir3, NULL);
    s = hpo_run(&cfg, &opt, train, &o, &res);
    EXPECT(s == OTE_ESTATE && strstr(ote_errmsg(), "corrupt") && strstr(ote_errmsg(), "moved aside") &&
                access(p, F_OK) != 0 && count_files(dir3, "hpopt_status.json.corrupt-") == 1 && o.calls[0] == 0,
            "corrupt status -> error \"%s\", file moved aside, no trial ran", ote_errmsg());
    f = fopen(p, "w");
    fputs("{\"search_algorithm\": \"smbo\"}\n", f); /* valid JSON, missing keys */
    fclose(f);
    s = hpo_run(&cfg, &opt, train, &o, &res);
    EXPECT(s == OTE_ESTATE && count_files(dir3, "hpopt_status.json.corrupt-") == 2,
            "structurally invalid status also moved aside (%s)", ote_errmsg());

    /* 8. median stop. num_init 2, 5 epochs, constant per-trial scores:
     * t0 0.8, t1 0.6 (initial, never stopped, run 5 epochs); t2 0.5: median of {0.8, 0.6} = 0.7 > 0.5
     * -> stop after epoch 1; t3 0.9 > 0.7 runs 5; t4 0.75: others {0.8, 0.6, 0.9} (t2 has 1 score:
     * counts at k=0) -> k=0: {0.8,0.6,0.5,0.9} median 0.7 < 0.75 go on; k=1: {0.8,0.6,0.9} median 0.8
     * > 0.75 -> stop after epoch 2. */
    char dir4[] = "/tmp/ote_hpo_drv4_XXXXXX";
    if (!mkdtemp(dir4)) return 1;
    hpo_config cm = cfg;
    cm.early_stop = HPO_ES_MEDIAN;
    cm.num_init_trials = 2;
    cm.max_iterations = 5;
    obj_init(&o);
    o.by_id = 1;
    double ms[5] = {0.8, 0.6, 0.5, 0.9, 0.75};
    memcpy(o.id_score, ms, sizeof ms);
    base_opts(&opt, dir4, NULL);
    opt.num_trials = 5;
    s = hpo_run(&cm, &opt, train, &o, &res);
    int want[5] = {5, 5, 1, 5, 2}, okm = s == 0;
    for (int i = 0; i < 5; i++) {
        char n[64];
        snprintf(n, sizeof n, "hpopt_trial_%d.json", i);
        cJSON *t = load_json(dir4, n);
        int got = t ? cJSON_GetArraySize(get(t, "scores")) : -1;
        if (got != want[i]) {
            okm = 0;
            printf("  trial %d ran %d epochs, expected %d\n", i, got, want[i]);
        }
        if (i == 2 && t && strcmp(get(t, "stop_reason")->valuestring, "median_stop")) okm = 0;
        cJSON_Delete(t);
    }
    EXPECT(okm, "median stop: epochs run 5,5,1,5,2 as worked out by hand");

    /* 9. ASHA: max 8, min 1, rf 2, 1 bracket -> rungs 1,2,4,8. Scores t0 .5, t1 .2, t2 .9, t3 .6, t4 .55.
     * t1 at rung 1: {.5,.2} 50th pct .35 > .2 -> stop at 1. t3 rung 1: {.2,.5,.6,.9} -> .55, go;
     * rung 2: {.5,.6,.9} -> .6, not > .6, go; rung 4 same; runs 8. t4 rung 1: {.2,.5,.55,.6,.9} -> .55
     * go; rung 2: {.5,.55,.6,.9} -> .575 > .55 -> stop at 2. Expected epochs 8,1,8,8,2. */
    char dir5[] = "/tmp/ote_hpo_drv5_XXXXXX";
    if (!mkdtemp(dir5)) return 1;
    hpo_config ca = cfg;
    ca.algo = HPO_ALGO_ASHA;
    ca.max_iterations = 8;
    ca.min_iterations = 1;
    ca.reduction_factor = 2;
    ca.num_brackets = 1;
    obj_init(&o);
    o.by_id = 1;
    double as[5] = {0.5, 0.2, 0.9, 0.6, 0.55};
    memcpy(o.id_score, as, sizeof as);
    base_opts(&opt, dir5, NULL);
    opt.num_trials = 5;
    s = hpo_run(&ca, &opt, train, &o, &res);
    int wa[5] = {8, 1, 8, 8, 2}, oka = s == 0;
    for (int i = 0; i < 5; i++) {
        char n[64];
        snprintf(n, sizeof n, "hpopt_trial_%d.json", i);
        cJSON *t = load_json(dir5, n);
        int got = t ? cJSON_GetArraySize(get(t, "scores")) : -1;
        if (got != wa[i]) {
            oka = 0;
            printf("  trial %d ran %d epochs, expected %d\n", i, got, wa[i]);
        }
        cJSON_Delete(t);
    }
    EXPECT(oka, "ASHA: epochs run 8,1,8,8,2 as worked out by hand");
    st = load_json(dir5, "hpopt_status.json");
    EXPECT(st && !strcmp(get(st, "search_algorithm")->valuestring, "asha") && get(st, "reduction_factor") &&
                !get(st, "early_stop") && get(trial_entry(st, 1), "bracket") &&
                get(st, "best_config_id")->valuedouble == 2,
            "ASHA status: reduction_factor, bracket, no early_stop, best = trial 2");
    cJSON_Delete(st);

    /* 10. budget with a fake clock: 10 s per epoch, 4 epochs per trial, budget 95 s.
     * t0 epochs end at 10..40, t1 at 50..80 (both stop at max_iterations), t2 starts (80 + 10 <= 95),
     * after its epoch 1 at 90 s one more epoch would end at 100 > 95 -> stopped ("budget"); no t3. */
    char dir6[] = "/tmp/ote_hpo_drv6_XXXXXX";
    if (!mkdtemp(dir6)) return 1;
    double clk = 0;
    hpo_config cb = cfg;
    cb.max_iterations = 4;
    obj_init(&o);
    o.clock = &clk;
    o.epoch_sec = 10;
    base_opts(&opt, dir6, NULL);
    opt.num_trials = 10;
    opt.budget_seconds = 95;
    opt.clock = fake_clock;
    opt.clock_ctx = &clk;
    s = hpo_run(&cb, &opt, train, &o, &res);
    st = load_json(dir6, "hpopt_status.json");
    cJSON *tb = load_json(dir6, "hpopt_trial_2.json");
    EXPECT(s == 0 && st && cJSON_GetArraySize(get(st, "config_list")) == 3 && tb &&
                cJSON_GetArraySize(get(tb, "scores")) == 1 && !strcmp(get(tb, "stop_reason")->valuestring, "budget") &&
                get(trial_entry(st, 2), "status")->valuedouble == HPO_STOP && get(st, "best_config_id") && clk == 90,
            "budget: 3 trials, the third stopped after 1 epoch at 90 s (clock %.0f)", clk);
    cJSON_Delete(st);
    cJSON_Delete(tb);

    /* 11. determinism: the same seed gives the same 8 configurations (GP phase included) */
    char dir7[] = "/tmp/ote_hpo_drv7_XXXXXX", dir8[] = "/tmp/ote_hpo_drv8_XXXXXX";
    if (!mkdtemp(dir7) || !mkdtemp(dir8)) return 1;
    hpo_config cd = cfg;
    cd.space.p[0].hi = 0.1; /* a larger grid so 8 trials are not limited by the grid */
    obj_init(&o);
    base_opts(&opt, dir7, NULL);
    opt.num_trials = 8;
    int s7 = hpo_run(&cd, &opt, train, &o, &res);
    opt.work_dir = dir8;
    int s8 = hpo_run(&cd, &opt, train, &o, &res);
    cJSON *j7 = load_json(dir7, "hpopt_status.json"), *j8 = load_json(dir8, "hpopt_status.json");
    EXPECT(s7 == 0 && s8 == 0 && j7 && j8 && cJSON_GetArraySize(get(j7, "config_list")) == 8 &&
                cJSON_Compare(get(j7, "config_list"), get(j8, "config_list"), 1),
            "same seed -> identical trials and scores");
    cJSON_Delete(j7);
    cJSON_Delete(j8);

    /* 12. the result says whether the trials saw any difference (train_hpo refuses to pick "the
     * best" of trials that all scored the same, e.g. all 0) */
    char dir9[] = "/tmp/ote_hpo_drv9_XXXXXX";
    if (!mkdtemp(dir9)) return 1;
    obj_init(&o);
    o.by_id = 1; /* id_score all 0 */
    base_opts(&opt, dir9, NULL);
    opt.num_trials = 4;
    opt.resume = HPO_RESUME_NO;
    s = hpo_run(&cfg, &opt, train, &o, &res);
    EXPECT(s == 0 && res.trials_scored == 4 && res.score_min == 0 && res.score_max == 0,
           "all trials score 0: 4 scored, min = max = 0 (got %d, %g, %g)", res.trials_scored, res.score_min, res.score_max);
    o.id_score[2] = 0.25;
    s = hpo_run(&cfg, &opt, train, &o, &res);
    EXPECT(s == 0 && res.trials_scored == 4 && res.score_min == 0 && res.score_max == 0.25 && res.best_id == 2,
           "one trial differs: min 0, max 0.25, best trial 2 (got %g, %g, %d)", res.score_min, res.score_max, res.best_id);

    /* 13. issue 13 item 17: a score of 1e309 (inf once parsed) in a finished search's status is a
     * corrupt file, never reused as "mAP inf" */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "sed -i '0,/\"score\":[^,}]*/s//\"score\": 1e309/' %s/hpopt_status.json", dir9);
    EXPECT(system(cmd) == 0, "status file edited: %s", cmd);
    opt.resume = HPO_RESUME_YES;
    obj_init(&o);
    s = hpo_run(&cfg, &opt, train, &o, &res);
    EXPECT(s == OTE_ESTATE && strstr(ote_errmsg(), "not finite") && count_files(dir9, "hpopt_status.json.corrupt-") == 1,
           "score 1e309 -> corrupt status, moved aside (%d: %s)", s, ote_errmsg());

    /* 13b. issue 13 item 9: a corrupt trial file says "run again to start a new search" - and the
     * next run does start a new search (it used to reuse the old one silently) */
    snprintf(p, sizeof p, "%s/hpopt_trial_1.json", dir9);
    opt.resume = HPO_RESUME_NO;
    obj_init(&o);
    s = hpo_run(&cfg, &opt, train, &o, &res);
    f = fopen(p, "w");
    if (f) fputs("{\"status\": 2, \"scores\": [", f), fclose(f);
    opt.resume = HPO_RESUME_YES;
    s = hpo_run(&cfg, &opt, train, &o, &res);
    EXPECT(s == OTE_ESTATE && strstr(ote_errmsg(), "run again to start a new search"), "corrupt trial file: %s",
           ote_errmsg());
    obj_init(&o);
    s = hpo_run(&cfg, &opt, train, &o, &res);
    EXPECT(s == 0 && !res.reused && !res.resumed && res.trials_run == 4 && o.calls[0] == 1,
           "the next run starts a new search (reused %d, resumed %d, %d trials run)", res.reused, res.resumed,
           res.trials_run);

    /* 14. issue 13 item 11: hpopt_status.json that is a directory: a clear error, nothing renamed */
    char dir10[] = "/tmp/ote_hpo_drv10_XXXXXX";
    if (!mkdtemp(dir10)) return 1;
    snprintf(p, sizeof p, "%s/hpopt_status.json", dir10);
    EXPECT(mkdir(p, 0700) == 0, "mkdir %s", p);
    obj_init(&o);
    base_opts(&opt, dir10, NULL);
    s = hpo_run(&cfg, &opt, train, &o, &res);
    EXPECT(s == OTE_EIO && strstr(ote_errmsg(), "hpopt_status.json: is a directory") && access(p, F_OK) == 0 &&
               count_files(dir10, "hpopt_status.json.corrupt-") == 0 && o.calls[0] == 0,
           "status path is a directory -> EIO naming it, not moved aside, no trial ran (%s)", ote_errmsg());

    snprintf(cmd, sizeof cmd, "rm -rf %s %s %s %s %s %s %s %s %s %s", dir, dir2, dir3, dir4, dir5, dir6, dir7, dir8, dir9,
             dir10);
    if (system(cmd) != 0) printf("note: could not remove temp dirs\n");
    return expect_finish();
}

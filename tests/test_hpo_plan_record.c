/* test_hpo_plan_record.c - hpo_plan_record_load (the planned values of an earlier search are adopted
 * only when everything else matches) and hpo_reporter_deadline (the budget's end seen from inside
 * a trial, with a fake clock and seconds carried over from kept trials). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/ote.h"
#include "hpo/hpo.h"
#include "hpo/plan_record.h"
#include "tests/expect.h"


static const char *cfg_text =
    "metric: mAP\nsearch_algorithm: smbo\nearly_stop: None\nhp_space:\n"
    "  learning_parameters.learning_rate:\n    param_type: quniform\n    range: [0.001, 0.01, 0.001]\n"
    "  learning_parameters.batch_size:\n    param_type: qloguniform\n    range: [4, 8, 2]\n";

typedef struct obj {
    double clock;        /* fake seconds */
    double epoch_sec;
    double deadline[8];  /* hpo_reporter_deadline seen by each trial */
    int stop_after;      /* trials after which the objective cancels (interruption) */
} obj;

static double fake_clock(void *c) { return ((obj *)c)->clock; }

static int train(void *ctx, const hpo_trial *t, hpo_reporter *r) {
    obj *o = ctx;
    if (t->id < 8) o->deadline[t->id] = hpo_reporter_deadline(r);
    if (t->id == o->stop_after) return OTE_ECANCEL;
    for (int e = 1; e <= t->max_epochs; e++) {
        o->clock += o->epoch_sec;
        int s = hpo_report(r, e, 0.1 * e + 0.01 * t->id, o->epoch_sec, 10L * e);
        if (s < 0) return s;
        if (s == HPO_STOP_TRIAL) break;
    }
    return 0;
}

static int count_corrupt(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, "hpopt_status.json.corrupt-", 26)) n++;
    if (d) closedir(d);
    return n;
}

int main(void) {
    char tmpl[] = "/tmp/test_hpo_plan_record_XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) return 1;
    hpo_config base;
    if (hpo_config_parse(&base, cfg_text, "hpo_config.yaml") < 0) {
        printf("FAIL parse: %s\n", ote_errmsg());
        return 1;
    }
    hpo_config out;

    /* no record */
    int s = hpo_plan_record_load(dir, &base, 100, &out);
    EXPECT(s == 0 && out.subset_ratio == 0 && out.max_iterations == 0, "absent status: no record (%d)", s);

    /* a planned search: 3 trials x 2 epochs, subset 0.35, resize 0.45; interrupted in trial 2 */
    hpo_config planned = base;
    planned.num_trials = 3;
    planned.max_iterations = 2;
    planned.subset_ratio = 0.35;
    planned.image_resize = 0.45;
    obj o;
    memset(&o, 0, sizeof o);
    o.epoch_sec = 5;
    o.stop_after = 2;
    hpo_options opt;
    memset(&opt, 0, sizeof opt);
    opt.work_dir = dir;
    opt.resume = HPO_RESUME_YES;
    opt.full_dataset_size = 100;
    opt.budget_seconds = 1000;
    opt.seed = 1;
    opt.clock = fake_clock;
    opt.clock_ctx = &o;
    hpo_result res;
    s = hpo_run(&planned, &opt, train, &o, &res);
    EXPECT(s == OTE_ECANCEL, "first run interrupted in trial 2 (%d)", s);
    /* the clock starts at 0: trial 0 sees 0 + 1000; trial 1 the same (kept trials count only on resume) */
    EXPECT(o.deadline[0] == 1000 && o.deadline[1] == 1000, "deadline in the first run: %g %g (expected 1000)",
            o.deadline[0], o.deadline[1]);

    /* the record is adopted by a config that leaves the planned values open */
    s = hpo_plan_record_load(dir, &base, 100, &out);
    EXPECT(s == 1 && out.subset_ratio == 0.35 && out.image_resize == 0.45 && out.max_iterations == 2,
            "recorded plan adopted: %d subset %g resize %g iters %d", s, out.subset_ratio, out.image_resize,
            out.max_iterations);
    EXPECT(out.num_trials == 0, "num_trials stays open (not recorded): %d", out.num_trials);

    /* other dataset size, other hp_space, a fixed value that differs: no record */
    s = hpo_plan_record_load(dir, &base, 101, &out);
    EXPECT(s == 0 && out.subset_ratio == 0, "another full_dataset_size: not adopted (%d)", s);
    hpo_config other = base;
    other.space.p[0].hi = 0.02;
    s = hpo_plan_record_load(dir, &other, 100, &out);
    EXPECT(s == 0, "another hp_space range: not adopted (%d)", s);
    other = base;
    other.subset_ratio = 0.5;
    s = hpo_plan_record_load(dir, &other, 100, &out);
    EXPECT(s == 0 && out.subset_ratio == 0.5, "a fixed subset_ratio that differs: not adopted (%d)", s);
    other = base;
    other.max_iterations = 2; /* fixed and equal to the record: still adopted */
    s = hpo_plan_record_load(dir, &other, 100, &out);
    EXPECT(s == 1 && out.subset_ratio == 0.35 && out.max_iterations == 2, "a fixed value equal to the record: adopted (%d)", s);

    /* resume with the adopted plan: kept trials' seconds (2 trials x 2 epochs x 5 s) move the deadline */
    s = hpo_plan_record_load(dir, &base, 100, &out);
    out.num_trials = 3;
    o.stop_after = -1;
    o.clock = 500;
    memset(o.deadline, 0, sizeof o.deadline);
    s = hpo_run(&out, &opt, train, &o, &res);
    EXPECT(s == 0 && res.resumed && res.trials_run == 1, "resume with the recorded plan: %d resumed %d run %d", s,
            res.resumed, res.trials_run);
    EXPECT(fabs(o.deadline[2] - (500 - 20 + 1000)) < 1e-9,
            "deadline on resume = start - kept seconds + budget: %g (expected 1480)",
            o.deadline[2]);

    /* unlimited budget: 0 */
    hpo_config fresh = out;
    fresh.space.p[0].hi = 0.009; /* a changed space reruns from scratch */
    opt.budget_seconds = 0;
    memset(o.deadline, 0, sizeof o.deadline);
    o.deadline[0] = -1;
    s = hpo_run(&fresh, &opt, train, &o, &res);
    EXPECT(s == 0 && res.rerun_changed && o.deadline[0] == 0, "unlimited budget: deadline 0 (%g)", o.deadline[0]);

    /* corrupt status: OTE_ESTATE, moved aside, not overwritten */
    char p[600];
    snprintf(p, sizeof p, "%s/hpopt_status.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"search_algorithm\": \"smbo\", trunc", f);
    fclose(f);
    s = hpo_plan_record_load(dir, &base, 100, &out);
    EXPECT(s == OTE_ESTATE && strstr(ote_errmsg(), "moved aside") != NULL, "corrupt status: OTE_ESTATE (%d: %s)", s,
            ote_errmsg());
    EXPECT(access(p, F_OK) != 0 && count_corrupt(dir) == 1, "corrupt status moved aside (%d copies)", count_corrupt(dir));

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    return expect_finish();
}

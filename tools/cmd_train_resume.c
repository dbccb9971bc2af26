/* cmd_train_resume.c - --resume-from and an earlier run's OUT/last.pth (see cmd_train_resume.h). */
#include "tools/cmd_train_resume.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/ote.h"

/* "3 of 5 epochs done" */
static void train_resume_progress(const resume_state *rs, char *buf, size_t n) {
    snprintf(buf, n, "%d of %d epochs done", rs->epochs_done, rs->epochs);
}

/* Reads the state file (and keeps rs). Returns 0, or the exit code after printing the error. */
static int train_resume_read(train_resume_plan *pl, const char *path) {
    pth_ckpt c;
    pth_init(&c);
    int s = resume_read(path, &c, &pl->rs);
    pth_free(&c);
    if (s < 0) {
        fprintf(stderr, "ote train: --resume-from: %s\n", ote_errmsg());
        return s == OTE_EIO ? 1 : 2;
    }
    return 0;
}

/* The settings check: 0 if they match; else the message is in ote_errmsg() and the status < 0. */
static int train_resume_matches(const train_resume_plan *pl, const config_template *cfg, const coco_dataset *train,
                                const coco_dataset *val) {
    pth_ckpt c;
    pth_init(&c);
    resume_state rs;
    int s = resume_read(pl->state_path, &c, &rs);
    if (s >= 0) s = resume_check(&c, pl->state_path, cfg, train, val, 1.0, 0);
    pth_free(&c);
    return s;
}

static int train_resume_nothing_to_do(const train_resume_plan *pl) {
    printf("nothing to do: the training in %s has finished (%d of %d epochs, stop: %s); best epoch %d, val mAP@0.5 "
           "%.4f, in %s\n",
           pl->state_path, pl->rs.epochs_done, pl->rs.epochs, resume_stop_name(pl->rs.stop), pl->rs.best_epoch,
           pl->rs.best_epoch ? pl->rs.best_map : 0.0, pl->weights_path);
    return 0;
}

int train_resume_before(train_resume_plan *pl, const char *resume_from, const char *weights_path, int hpo, int hpo_no,
                        const config_template *cfg, const coco_dataset *train, const coco_dataset *val, int *stop) {
    memset(pl, 0, sizeof *pl);
    *stop = 1;
    pl->resume_from = resume_from;
    pl->weights_path = weights_path;
    if (resume_state_path(weights_path, pl->state_path, sizeof pl->state_path) < 0) {
        fprintf(stderr, "ote train: %s\n", ote_errmsg());
        return 2;
    }
    struct stat a, b;
    int have_state = stat(pl->state_path, &b) == 0;
    if (resume_from) {
        if (stat(resume_from, &a) != 0 || !S_ISREG(a.st_mode) || access(resume_from, R_OK) != 0) {
            fprintf(stderr, "ote train: --resume-from: cannot read %s\n", resume_from);
            return 1;
        }
        if (!have_state || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
            fprintf(stderr, "ote train: --resume-from %s is not the training state of --save-model-to (%s): a training "
                            "resumes into its own folder\n", resume_from, pl->state_path);
            return 2;
        }
        int rc = train_resume_read(pl, pl->state_path);
        if (rc) return rc;
        pl->candidate = 1;
        if (hpo) { /* the settings are known after the search */
            *stop = 0;
            return 0;
        }
        if (train_resume_matches(pl, cfg, train, val) < 0) {
            fprintf(stderr, "ote train: --resume-from %s\n", ote_errmsg());
            return 2;
        }
        if (pl->rs.finished) return train_resume_nothing_to_do(pl);
        pl->use = 1;
        *stop = 0;
        return 0;
    }
    if (!have_state) {
        *stop = 0;
        return 0;
    }
    pth_ckpt c;
    pth_init(&c);
    int s = resume_read(pl->state_path, &c, &pl->rs);
    pth_free(&c);
    if (s < 0) {
        fprintf(stderr, "ote train: %s (remove it to start a new training in this folder)\n", ote_errmsg());
        return 1;
    }
    char prog[64];
    train_resume_progress(&pl->rs, prog, sizeof prog);
    if (pl->rs.finished) {
        printf("note: %s is a finished training (%s): starting a new one, which replaces its files\n", pl->state_path,
               prog);
    } else if (!hpo) {
        fprintf(stderr, "ote train: %s holds an interrupted training (%s): continue it with --resume-from %s, or "
                        "remove that file (or use another --save-model-to) to start over\n",
                pl->state_path, prog, pl->state_path);
        return 2;
    } else if (hpo_no) {
        printf("note: %s holds an interrupted training (%s); --hpo-resume no: the final training starts over\n",
               pl->state_path, prog);
    } else {
        pl->candidate = 1; /* resumed after the search if the settings still match */
    }
    *stop = 0;
    return 0;
}

int train_resume_after_hpo(train_resume_plan *pl, const config_template *cfg, const coco_dataset *train,
                           const coco_dataset *val, int *stop) {
    *stop = 0;
    if (!pl->candidate) return 0;
    int s = train_resume_matches(pl, cfg, train, val);
    if (pl->resume_from) {
        *stop = 1;
        if (s < 0) {
            fprintf(stderr, "ote train: --resume-from %s\n", ote_errmsg());
            return 2;
        }
        if (pl->rs.finished) return train_resume_nothing_to_do(pl);
        *stop = 0;
        pl->use = 1;
        return 0;
    }
    if (s < 0) {
        printf("note: the final training starts over: %s\n", ote_errmsg());
        return 0;
    }
    printf("the final training continues the interrupted one in %s\n", pl->state_path);
    pl->use = 1;
    return 0;
}

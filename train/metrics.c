/* metrics.c - metrics.csv and the training figures (see metrics.h).
 *
 * Owns: the CSV stream (line-buffered by fflush after each row), the iteration buffer (allocated
 * once at metrics_open for the planned iterations), the epoch rows and the best epoch's PR curves
 * (recomputed with eval_voc_pr from the epoch's detections when it improves). Invariant: the
 * CSV on disk holds a header and every finished epoch's row, whatever happens afterwards.
 */
#include "train/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"
#include "train/plots.h"
#include "train/weights.h"

/* Iterations recorded at most (20 bytes each): more than any planned training. */
#define METRICS_MAX_ITERS 50000000L

struct metrics_run {
    FILE *csv, *log;
    char csv_path[4200], curves_path[4200], pr_path[4200];
    const coco_dataset *val;
    metrics_iter *it;        /* (cap_it) */
    long n_it, cap_it;
    metrics_epoch *ep;       /* (cap_ep) */
    int n_ep, cap_ep;
    double sum_total, sum_cls, sum_box, sum_ctr, last_lr; /* since the last row */
    long n_sum;
    eval_pr_curves pr;       /* of the best epoch */
    eval_voc_result pr_voc;
    int pr_epoch, have_pr;
    int warned_curves, warned_pr, warned_csv;
};

int metrics_side_path(const char *weights_path, const char *name, char *buf, size_t n) {
    return weights_side_path(weights_path, name, buf, n);
}

static void metrics_warn(metrics_run *m, int *once, const char *what) {
    if (m->log && !*once) {
        fprintf(m->log, "warning: %s: %s (training goes on)\n", what, ote_errmsg());
        fflush(m->log);
    }
    *once = 1;
}

static void metrics_write_row(FILE *f, const metrics_epoch *r) {
    fprintf(f, "%d,%ld,%.8g,%.6f,%.6f,%.6f,%.6f,%.2f,%.6f,%.6f,%.6f,%.3f,%.3f,%d\n", r->epoch, r->iters, r->lr, r->loss,
            r->loss_cls, r->loss_box, r->loss_ctr, r->images_per_s, r->voc_map50, r->coco_ap, r->coco_ap50,
            r->epoch_seconds, r->wall_seconds, r->best);
}

/* A resumed training (resume_epochs finished): the rows of those epochs from the existing CSV (a row
 * written after the last state save - a kill between the two - is dropped, the epoch runs again),
 * and the iteration buffer filled with each epoch's means so that the curves span the whole run. */
static void metrics_reload(metrics_run *m, int resume_epochs) {
    FILE *f = fopen(m->csv_path, "r");
    if (!f) return;
    char line[1024];
    long prev_iters = 0;
    while (fgets(line, sizeof line, f)) {
        metrics_epoch r;
        memset(&r, 0, sizeof r);
        if (sscanf(line, "%d,%ld,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%d", &r.epoch, &r.iters, &r.lr, &r.loss,
                   &r.loss_cls, &r.loss_box, &r.loss_ctr, &r.images_per_s, &r.voc_map50, &r.coco_ap, &r.coco_ap50,
                   &r.epoch_seconds, &r.wall_seconds, &r.best) != 14)
            continue; /* the header, or a torn line */
        if (r.epoch != m->n_ep + 1 || r.epoch > resume_epochs || m->n_ep >= m->cap_ep) break;
        m->ep[m->n_ep++] = r;
        for (long i = prev_iters; i < r.iters && m->n_it < m->cap_it; i++)
            m->it[m->n_it++] = (metrics_iter){(float)r.lr, (float)r.loss, (float)r.loss_cls, (float)r.loss_box,
                                              (float)r.loss_ctr};
        prev_iters = r.iters;
    }
    fclose(f);
}

metrics_run *metrics_open(const char *weights_path, long total_iters, int epochs, const coco_dataset *val, FILE *log,
                          int resume_epochs) {
    metrics_run *m = calloc(1, sizeof *m);
    if (!m) {
        if (log) fprintf(log, "warning: metrics: out of memory; no metrics.csv (training goes on)\n");
        return NULL;
    }
    m->log = log;
    m->val = val;
    if (metrics_side_path(weights_path, "metrics.csv", m->csv_path, sizeof m->csv_path) < 0 ||
        metrics_side_path(weights_path, "curves.png", m->curves_path, sizeof m->curves_path) < 0 ||
        metrics_side_path(weights_path, "pr_curves.png", m->pr_path, sizeof m->pr_path) < 0) {
        metrics_warn(m, &m->warned_csv, "metrics");
        free(m);
        return NULL;
    }
    m->cap_it = total_iters > 0 ? (total_iters < METRICS_MAX_ITERS ? total_iters : METRICS_MAX_ITERS) : 0;
    m->cap_ep = epochs > 0 ? epochs : 1;
    m->it = m->cap_it ? malloc((size_t)m->cap_it * sizeof *m->it) : NULL;
    m->ep = malloc((size_t)m->cap_ep * sizeof *m->ep);
    if ((m->cap_it && !m->it) || !m->ep) {
        ote_err(OTE_ENOMEM, "out of memory for %ld iterations", m->cap_it);
        metrics_warn(m, &m->warned_csv, "metrics");
        metrics_close(m);
        return NULL;
    }
    if (resume_epochs > 0) metrics_reload(m, resume_epochs);
    m->csv = fopen(m->csv_path, "w");
    if (!m->csv) {
        ote_err(OTE_EIO, "%s: cannot write (%s)", m->csv_path, strerror(errno));
        metrics_warn(m, &m->warned_csv, "metrics");
    } else {
        fprintf(m->csv, "epoch,iterations,lr,loss,loss_cls,loss_bbox,loss_centerness,train_images_per_s,"
                        "val_voc_map50,val_coco_ap,val_coco_ap50,epoch_seconds,wall_seconds,best\n");
        for (int i = 0; i < m->n_ep; i++) metrics_write_row(m->csv, &m->ep[i]);
        fflush(m->csv);
    }
    return m;
}

void metrics_iter_add(metrics_run *m, double lr, double total, double cls, double box, double ctr) {
    if (!m) return;
    if (m->n_it < m->cap_it) m->it[m->n_it++] = (metrics_iter){(float)lr, (float)total, (float)cls, (float)box, (float)ctr};
    m->sum_total += total, m->sum_cls += cls, m->sum_box += box, m->sum_ctr += ctr;
    m->n_sum++;
    m->last_lr = lr;
}

static void metrics_draw(metrics_run *m, int pr_too) {
    if (plots_training_curves(m->curves_path, m->it, m->n_it, m->ep, m->n_ep) < 0)
        metrics_warn(m, &m->warned_curves, "curves.png");
    if (pr_too && m->have_pr) {
        const char *names[256];
        int nc = m->val && m->val->n_cats < 256 ? m->val->n_cats : 0;
        for (int k = 0; k < nc; k++) names[k] = m->val->cats[k].name;
        if (plots_pr_curves(m->pr_path, &m->pr, &m->pr_voc, nc ? names : NULL, m->pr_epoch) < 0)
            metrics_warn(m, &m->warned_pr, "pr_curves.png");
    }
}

void metrics_epoch_end(metrics_run *m, const metrics_epoch *row, const eval_det *dets, int n_dets) {
    if (!m) return;
    metrics_epoch r = *row;
    double n = m->n_sum > 0 ? (double)m->n_sum : (double)NAN;
    r.lr = m->last_lr;
    r.loss = m->sum_total / n, r.loss_cls = m->sum_cls / n, r.loss_box = m->sum_box / n, r.loss_ctr = m->sum_ctr / n;
    m->sum_total = m->sum_cls = m->sum_box = m->sum_ctr = 0;
    m->n_sum = 0;
    if (m->n_ep < m->cap_ep) m->ep[m->n_ep++] = r;
    if (m->csv) {
        metrics_write_row(m->csv, &r);
        if (fflush(m->csv) != 0 || ferror(m->csv)) {
            ote_err(OTE_EIO, "%s: write failed (%s)", m->csv_path, strerror(errno));
            metrics_warn(m, &m->warned_csv, "metrics");
        }
    }
    int pr_new = 0;
    if (r.best && m->val) {
        eval_pr_curves pc;
        eval_voc_result v;
        if (eval_voc_pr(m->val, dets, n_dets, 0.5, EVAL_CROWD_ABSENT, &v, &pc) == 0) {
            if (m->have_pr) {
                eval_pr_curves_free(&m->pr);
                eval_voc_result_free(&m->pr_voc);
            }
            m->pr = pc;
            m->pr_voc = v;
            m->pr_epoch = r.epoch;
            m->have_pr = pr_new = 1;
        } else {
            metrics_warn(m, &m->warned_pr, "pr_curves.png");
        }
    }
    metrics_draw(m, pr_new);
}

void metrics_finish(metrics_run *m) {
    if (!m) return;
    metrics_draw(m, 0);
}

void metrics_close(metrics_run *m) {
    if (!m) return;
    if (m->csv) fclose(m->csv);
    if (m->have_pr) {
        eval_pr_curves_free(&m->pr);
        eval_voc_result_free(&m->pr_voc);
    }
    free(m->it);
    free(m->ep);
    free(m);
}

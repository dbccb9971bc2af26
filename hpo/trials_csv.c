/* trials_csv.c - hpo/trials.csv: one row per trial of the search, for people and spreadsheets,
 * written beside OTE's JSON records every time hpopt_status.json is (hpo_store_save), so the
 * two never disagree. See store.h for the columns.
 *
 * Owns nothing beyond one call. The file goes through atomic_write (io/atomic.h: temp + rename),
 * so a reader never sees half a table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"
#include "io/atomic.h"
#include "hpo/hp.h"
#include "hpo/store.h"

/* Appends s as one CSV field (RFC 4180: quoted when it holds a comma, quote or line break). */
static size_t csv_field(char *buf, size_t at, size_t cap, const char *s) {
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    if (quote && at < cap) buf[at++] = '"';
    for (; *s && at + 2 < cap; s++) {
        if (*s == '"') buf[at++] = '"';
        buf[at++] = *s == '\n' || *s == '\r' ? ' ' : *s;
    }
    if (quote && at < cap) buf[at++] = '"';
    return at;
}

int hpo_trials_csv_save(const char *dir, const hpo_state *st) {
    const hp_space *sp = &st->cfg.space;
    size_t cap = 512 + (size_t)sp->n * (HP_NAME_MAX + 4) + (size_t)st->n * (256 + (size_t)sp->n * 40 + 2 * 160);
    char *buf = malloc(cap);
    if (!buf) return ote_err(OTE_ENOMEM, "hpo: out of memory writing %s/trials.csv", dir);
    size_t at = (size_t)snprintf(buf, cap, "trial_id");
    for (int k = 0; k < sp->n; k++) {
        buf[at++] = ',';
        at = csv_field(buf, at, cap, sp->p[k].name);
    }
    at += (size_t)snprintf(buf + at, cap - at, ",status,score,epochs,seconds,best,stop_reason\n");
    for (int i = 0; i < st->n; i++) {
        const hpo_trial_rec *t = &st->t[i];
        double secs = 0;
        for (int e = 0; e < t->n; e++) secs += t->seconds[e];
        at += (size_t)snprintf(buf + at, cap - at, "%d", t->id);
        for (int k = 0; k < sp->n; k++) {
            char v[64];
            hp_format_value(&sp->p[k], t->values[k], v, sizeof v);
            at += (size_t)snprintf(buf + at, cap - at, ",%s", v);
        }
        char score[40] = "";
        if (t->has_score) snprintf(score, sizeof score, "%.10g", t->score);
        at += (size_t)snprintf(buf + at, cap - at, ",%s,%s,%d,%.3f,%d,", hpo_store_status_name(t->status), score, t->n, secs,
                               st->best_id == t->id);
        at = csv_field(buf, at, cap, t->stop_reason);
        at += (size_t)snprintf(buf + at, cap - at, "\n");
        if (at >= cap) break; /* cannot happen with the sizes above; never write past the buffer */
    }
    if (at >= cap) {
        free(buf);
        return ote_err(OTE_EINVAL, "hpo: %s/trials.csv: table larger than its buffer", dir);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/trials.csv", dir);
    int s = atomic_write(path, buf, at, 0644);
    free(buf);
    return s;
}

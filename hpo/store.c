/* store.c - hpopt_status.json / hpopt_trial_<id>.json writing (atomic), loading (validated) and
 * comparison of configurations for resume. See store.h for the layout. */
#include "hpo/store.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/ote.h"
#include "io/atomic.h"

const char *hpo_store_status_name(int status) {
    switch (status) {
    case HPO_READY: return "ready";
    case HPO_RUNNING: return "running";
    case HPO_STOP: return "stop";
    case HPO_CUDAOOM: return "cudaoom";
    case HPO_NORESULT: return "noresult";
    case HPO_PARTIALRESULT: return "partialresult";
    case HPO_COMPLETERESULT: return "completeresult";
    case HPO_FAILED: return "failed";
    default: return "unknown";
    }
}

void hpo_store_trial_clear(hpo_trial_rec *t) {
    free(t->scores);
    free(t->median);
    free(t->seconds);
    free(t->images);
    t->scores = t->median = t->seconds = NULL;
    t->images = NULL;
    t->n = t->cap = 0;
    t->has_score = 0;
    t->score = 0;
    t->stop_reason[0] = 0;
}

void hpo_store_state_free(hpo_state *st) {
    for (int i = 0; i < st->n; i++) hpo_store_trial_clear(&st->t[i]);
    free(st->t);
    st->t = NULL;
    st->n = st->cap = 0;
}

hpo_trial_rec *hpo_store_state_add(hpo_state *st) {
    if (st->n == st->cap) {
        int cap = st->cap ? 2 * st->cap : 16;
        hpo_trial_rec *nt = realloc(st->t, (size_t)cap * sizeof *nt);
        if (!nt) return NULL;
        st->t = nt;
        st->cap = cap;
    }
    hpo_trial_rec *t = &st->t[st->n];
    memset(t, 0, sizeof *t);
    t->id = st->n++;
    t->bracket = -1;
    t->rank = -1;
    t->status = HPO_READY;
    return t;
}

int hpo_store_trial_push(hpo_trial_rec *t, double score, double seconds, long images) {
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 8;
        double *a = realloc(t->scores, (size_t)cap * sizeof *a);
        if (a) t->scores = a;
        double *b = realloc(t->median, (size_t)cap * sizeof *b);
        if (b) t->median = b;
        double *c = realloc(t->seconds, (size_t)cap * sizeof *c);
        if (c) t->seconds = c;
        long *d = realloc(t->images, (size_t)cap * sizeof *d);
        if (d) t->images = d;
        if (!a || !b || !c || !d) return ote_err(OTE_ENOMEM, "hpo: out of memory recording trial %d", t->id);
        t->cap = cap;
    }
    double prev = t->n ? t->median[t->n - 1] * t->n : 0;
    t->scores[t->n] = score;
    t->median[t->n] = (prev + score) / (t->n + 1); /* hpopt's "median" is the running mean */
    t->seconds[t->n] = seconds;
    t->images[t->n] = images;
    t->n++;
    return 0;
}

/* cJSON prints with tabs; hpopt writes indent=4. Tabs inside strings are escaped, so every raw
 * tab is layout: leading ones are indentation, the one after a key's colon becomes a space. */
static int save_json(const char *path, cJSON *j) {
    char *s = cJSON_Print(j);
    if (!s) return ote_err(OTE_ENOMEM, "%s: cannot serialise JSON", path);
    size_t tabs = 0, len = strlen(s);
    for (size_t i = 0; i < len; i++) tabs += s[i] == '\t';
    char *o = malloc(len + 3 * tabs + 2);
    if (!o) {
        free(s);
        return ote_err(OTE_ENOMEM, "%s: out of memory", path);
    }
    size_t k = 0;
    int line_start = 1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\t' && line_start) {
            memcpy(o + k, "    ", 4);
            k += 4;
        } else if (s[i] == '\t') {
            o[k++] = ' '; /* cJSON puts a tab after "key":, Python a space */
        } else {
            o[k++] = s[i];
            line_start = s[i] == '\n';
        }
    }
    o[k++] = '\n';
    int st = atomic_write(path, o, k, 0644);
    free(o);
    free(s);
    return st;
}

/* Numbers as Python's json writes them: the shortest repr that round-trips (cJSON's own printer
 * stops at 15 digits when they are "close enough", which would change values on reload).
 * Integral values print as integers. With raw = 0 a plain cJSON number (for comparisons). */
static cJSON *jnum_r(double v, int raw) {
    if (!raw || (v == floor(v) && fabs(v) < 1e15)) return cJSON_CreateNumber(v);
    char b[64];
    hp_format_double(v, b, sizeof b);
    return cJSON_CreateRaw(b);
}
static cJSON *jnum(double v) { return jnum_r(v, 1); }

static cJSON *num_or_null(int has, double v) {
    return has && isfinite(v) ? jnum(v) : cJSON_CreateNull();
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The configuration part of the status file (everything compared on resume). */
static cJSON *config_json(const hpo_state *st, int raw) {
    const hpo_config *c = &st->cfg;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "search_algorithm", hpo_config_algo_name(c->algo));
    cJSON *sp = cJSON_AddObjectToObject(j, "search_space");
    for (int i = 0; i < c->space.n; i++) {
        const hp_param *p = &c->space.p[i];
        cJSON *e = cJSON_AddObjectToObject(sp, p->name);
        cJSON_AddStringToObject(e, "type", hp_type_name(p->type));
        double r[HP_MAX_CHOICES + 4];
        int nr = hp_param_range(p, r);
        cJSON *ra = cJSON_AddArrayToObject(e, "range");
        for (int k = 0; k < nr; k++) cJSON_AddItemToArray(ra, jnum_r(r[k], raw));
    }
    cJSON_AddStringToObject(j, "metric", c->metric);
    cJSON_AddStringToObject(j, "mode", c->mode_max ? "max" : "min");
    cJSON_AddItemToObject(j, "subset_ratio", jnum_r(c->subset_ratio, raw));
    cJSON_AddItemToObject(j, "image_resize", jnum_r(c->image_resize, raw));
    if (c->algo == HPO_ALGO_SMBO) {
        cJSON_AddStringToObject(j, "early_stop", hpo_config_early_stop_name(c->early_stop));
        cJSON_AddNumberToObject(j, "max_iterations", c->max_iterations);
    } else {
        cJSON_AddNumberToObject(j, "max_iterations", c->max_iterations);
        cJSON_AddNumberToObject(j, "min_iterations", c->min_iterations);
        cJSON_AddNumberToObject(j, "reduction_factor", c->reduction_factor);
        cJSON_AddNumberToObject(j, "num_brackets", c->num_brackets);
    }
    cJSON_AddNumberToObject(j, "full_dataset_size", (double)st->full_dataset_size);
    return j;
}

int hpo_store_save(const char *dir, const hpo_state *st) {
    cJSON *j = config_json(st, 1);
    cJSON *cl = cJSON_AddArrayToObject(j, "config_list");
    const hp_space *sp = &st->cfg.space;
    int order[HP_MAX_PARAMS];
    const char *names[HP_MAX_PARAMS];
    for (int i = 0; i < sp->n; i++) names[i] = sp->p[i].name;
    qsort(names, (size_t)sp->n, sizeof *names, name_cmp); /* bayes_opt keeps keys sorted */
    for (int i = 0; i < sp->n; i++)
        for (int k = 0; k < sp->n; k++)
            if (names[i] == sp->p[k].name) order[i] = k;
    for (int i = 0; i < st->n; i++) {
        const hpo_trial_rec *t = &st->t[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "trial_id", t->id);
        cJSON *cfg = cJSON_AddObjectToObject(e, "config");
        for (int k = 0; k < sp->n; k++) cJSON_AddItemToObject(cfg, sp->p[order[k]].name, jnum(t->values[order[k]]));
        cJSON_AddNumberToObject(e, "status", t->status);
        cJSON_AddItemToObject(e, "score", num_or_null(t->has_score, t->score));
        if (st->cfg.algo == HPO_ALGO_ASHA) cJSON_AddNumberToObject(e, "bracket", t->bracket);
        cJSON_AddItemToArray(cl, e);
    }
    cJSON_AddNumberToObject(j, "num_gen_config", st->n);
    if (st->best_id >= 0) cJSON_AddNumberToObject(j, "best_config_id", st->best_id);
    char path[4096];
    snprintf(path, sizeof path, "%s/hpopt_status.json", dir);
    int s = save_json(path, j);
    cJSON_Delete(j);
    if (s == 0) s = hpo_trials_csv_save(dir, st); /* the same records as a table (issue 14) */
    return s;
}

int hpo_store_trial_save(const char *dir, const hpo_state *st, const hpo_trial_rec *t) {
    (void)st;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "status", t->status);
    cJSON *a = cJSON_AddArrayToObject(j, "scores");
    for (int i = 0; i < t->n; i++) cJSON_AddItemToArray(a, num_or_null(1, t->scores[i]));
    a = cJSON_AddArrayToObject(j, "median");
    for (int i = 0; i < t->n; i++) cJSON_AddItemToArray(a, num_or_null(1, t->median[i]));
    a = cJSON_AddArrayToObject(j, "seconds");
    for (int i = 0; i < t->n; i++) cJSON_AddItemToArray(a, jnum(t->seconds[i]));
    a = cJSON_AddArrayToObject(j, "images");
    for (int i = 0; i < t->n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)t->images[i]));
    cJSON_AddStringToObject(j, "stop_reason", t->stop_reason);
    int early = 0;
    if (t->n > 5) { /* hpopt: > 5 scores and the last 5 steps were all non-increasing */
        early = 1;
        for (int i = t->n - 5; i < t->n; i++)
            if (t->scores[i] > t->scores[i - 1]) early = 0;
    }
    if (early) cJSON_AddNumberToObject(j, "early_stopped", 1);
    if (t->rank >= 0) cJSON_AddNumberToObject(j, "rank", t->rank);
    char path[4096];
    snprintf(path, sizeof path, "%s/hpopt_trial_%d.json", dir, t->id);
    int s = save_json(path, j);
    cJSON_Delete(j);
    return s;
}

int hpo_store_move_aside(const char *path, char *out, size_t out_size) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
    char dst[4200];
    snprintf(dst, sizeof dst, "%s.corrupt-%s", path, ts);
    for (int k = 1; access(dst, F_OK) == 0 && k < 100; k++) snprintf(dst, sizeof dst, "%s.corrupt-%s-%d", path, ts, k);
    if (rename(path, dst) != 0) return ote_err(OTE_EIO, "%s: cannot move aside: %s", path, strerror(errno));
    if (out) snprintf(out, out_size, "%s", dst);
    return 0;
}

static char *read_all(const char *path, int *absent) {
    *absent = 0;
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) { /* never "not valid JSON" + moved aside */
        errno = S_ISDIR(sb.st_mode) ? EISDIR : EINVAL;
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        *absent = errno == ENOENT;
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0) break;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

static int corrupt(const char *path, const char *why) {
    char dst[4200] = "";
    int s = hpo_store_move_aside(path, dst, sizeof dst);
    if (s < 0)
        return ote_err(OTE_ESTATE, "%s: corrupt (%s) and could not be moved aside; remove it to start over", path, why);
    return ote_err(OTE_ESTATE, "%s: corrupt (%s); moved aside to %s; run again to start a new search", path, why, dst);
}

static int is_int_num(const cJSON *n) {
    return cJSON_IsNumber(n) && n->valuedouble == floor(n->valuedouble) && fabs(n->valuedouble) < 1e9;
}

/* Structural validation of a status file; returns NULL if fine, else the reason. */
static const char *validate_status(const cJSON *j) {
    if (!cJSON_IsObject(j)) return "not a JSON object";
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "search_algorithm"))) return "search_algorithm missing";
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "search_space"))) return "search_space missing";
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "metric"))) return "metric missing";
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "subset_ratio"))) return "subset_ratio missing";
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "full_dataset_size"))) return "full_dataset_size missing";
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(j, "config_list");
    if (!cJSON_IsArray(cl)) return "config_list missing";
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cl) {
        if (!cJSON_IsObject(e)) return "config_list entry is not an object";
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "trial_id");
        if (!is_int_num(id) || id->valuedouble != i) return "config_list trial_id out of sequence";
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "config"), *v;
        if (!cJSON_IsObject(c)) return "config_list entry without config";
        cJSON_ArrayForEach(v, c) if (!cJSON_IsNumber(v)) return "config value is not a number";
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "status");
        if (!is_int_num(s) || s->valuedouble < HPO_UNKNOWN || s->valuedouble > HPO_FAILED) return "bad trial status";
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(e, "score");
        if (!sc || !(cJSON_IsNumber(sc) || cJSON_IsNull(sc))) return "score is neither a number nor null";
        if (cJSON_IsNumber(sc) && !isfinite(sc->valuedouble)) return "score is not finite (e.g. 1e309)";
        cJSON_ArrayForEach(v, c) if (!isfinite(v->valuedouble)) return "config value is not finite";
        i++;
    }
    const cJSON *ng = cJSON_GetObjectItemCaseSensitive(j, "num_gen_config");
    if (!is_int_num(ng)) return "num_gen_config missing";
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "best_config_id");
    if (b && !(is_int_num(b) && b->valuedouble >= -1 && b->valuedouble < i)) return "best_config_id out of range";
    return NULL;
}

int hpo_store_read(const char *dir, void **old) {
    *old = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/hpopt_status.json", dir);
    int absent;
    char *text = read_all(path, &absent);
    if (!text) {
        if (absent) return 1;
        if (errno == EISDIR || errno == EINVAL)
            return ote_err(OTE_EIO, "%s: %s, not a status file: move it away to start a search", path,
                           errno == EISDIR ? "is a directory" : "is not a regular file");
        return ote_err(OTE_EIO, "%s: cannot read: %s", path, strerror(errno));
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) return corrupt(path, "not valid JSON");
    const char *why = validate_status(j);
    if (why) {
        cJSON_Delete(j);
        return corrupt(path, why);
    }
    *old = j;
    return 0;
}

void hpo_store_json_free(void *j) { cJSON_Delete(j); }

int hpo_store_same_config(const void *old, const hpo_state *cur, char *what, size_t what_size) {
    cJSON *now = config_json(cur, 0);
    const cJSON *o = old;
    int differs = 0;
    const cJSON *item;
    /* every configuration key of the current run must be present and equal; old-only keys count too */
    cJSON_ArrayForEach(item, now) {
        const cJSON *ov = cJSON_GetObjectItemCaseSensitive(o, item->string);
        if (!ov || !cJSON_Compare(item, ov, 1)) {
            snprintf(what, what_size, "%s", item->string);
            differs = 1;
            break;
        }
    }
    cJSON_Delete(now);
    return differs;
}

int hpo_store_complete(const void *old) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive((const cJSON *)old, "best_config_id");
    return b && cJSON_IsNumber(b);
}

int hpo_store_trials(const char *dir, const void *old, hpo_state *cur) {
    char path[4096];
    snprintf(path, sizeof path, "%s/hpopt_status.json", dir);
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive((const cJSON *)old, "config_list"), *e;
    const hp_space *sp = &cur->cfg.space;
    cJSON_ArrayForEach(e, cl) {
        hpo_trial_rec *t = hpo_store_state_add(cur);
        if (!t) return ote_err(OTE_ENOMEM, "hpo: out of memory");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "config");
        for (int k = 0; k < sp->n; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, sp->p[k].name);
            if (!cJSON_IsNumber(v)) return corrupt(path, "a trial config lacks a search-space parameter");
            t->values[k] = v->valuedouble;
        }
        t->status = (int)cJSON_GetObjectItemCaseSensitive(e, "status")->valuedouble;
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(e, "score");
        t->has_score = cJSON_IsNumber(sc);
        t->score = t->has_score ? sc->valuedouble : 0;
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(e, "bracket");
        t->bracket = is_int_num(b) ? (int)b->valuedouble : -1;
    }
    return 0;
}

int hpo_store_trial_load(const char *dir, hpo_trial_rec *t) {
    char path[4096];
    snprintf(path, sizeof path, "%s/hpopt_trial_%d.json", dir, t->id);
    int absent;
    char *text = read_all(path, &absent);
    if (!text) return absent ? 1 : ote_err(OTE_EIO, "%s: cannot read: %s", path, strerror(errno));
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) return corrupt(path, "not valid JSON");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "scores");
    const cJSON *se = cJSON_GetObjectItemCaseSensitive(j, "seconds");
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(j, "images");
    if (!cJSON_IsArray(sc)) {
        cJSON_Delete(j);
        return corrupt(path, "scores missing");
    }
    int n = cJSON_GetArraySize(sc);
    double keep_score = t->score;
    int keep_has = t->has_score;
    hpo_store_trial_clear(t);
    t->score = keep_score;
    t->has_score = keep_has;
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(sc, i);
        const cJSON *s = cJSON_IsArray(se) ? cJSON_GetArrayItem(se, i) : NULL;
        const cJSON *m = cJSON_IsArray(im) ? cJSON_GetArrayItem(im, i) : NULL;
        int st = hpo_store_trial_push(t, cJSON_IsNumber(v) ? v->valuedouble : (double)NAN, cJSON_IsNumber(s) ? s->valuedouble : 0,
                                cJSON_IsNumber(m) ? (long)m->valuedouble : 0);
        if (st < 0) {
            cJSON_Delete(j);
            return st;
        }
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "stop_reason");
    if (cJSON_IsString(r)) snprintf(t->stop_reason, sizeof t->stop_reason, "%s", r->valuestring);
    const cJSON *rk = cJSON_GetObjectItemCaseSensitive(j, "rank");
    if (cJSON_IsNumber(rk)) t->rank = rk->valueint;
    cJSON_Delete(j);
    return 0;
}

int hpo_store_clear(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : ote_err(OTE_EIO, "%s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    int s = 0;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        int id;
        char tail[8];
        int is_trial = sscanf(n, "hpopt_trial_%d.jso%1[n]%1s", &id, tail, tail + 2) == 2;
        if (!strcmp(n, "hpopt_status.json") || is_trial) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", dir, n);
            if (unlink(p) != 0) s = ote_err(OTE_EIO, "%s: cannot remove: %s", p, strerror(errno));
        }
    }
    closedir(d);
    return s;
}

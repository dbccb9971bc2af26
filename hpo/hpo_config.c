/* hpo_config.c - hpo_config.yaml -> hpo_config (see hpo_config.h for keys and defaults). */
#include "hpo/hpo_config.h"

#include <stdio.h>
#include <string.h>

#include "engine/ote.h"

const char *hpo_config_algo_name(hpo_algo a) { return a == HPO_ALGO_ASHA ? "asha" : "smbo"; }
const char *hpo_config_early_stop_name(hpo_early_stop e) { return e == HPO_ES_MEDIAN ? "median_stop" : "None"; }

static int get_pos_int(const yd_doc *d, const yd_node *m, const char *key, int *out, int min) {
    const yd_node *n = yd_map_get(m, key);
    if (!n) return 0;
    long v;
    CHECK(yd_get_long(d, n, key, &v));
    if (v < min || v > 1000000)
        return yd_err(d, n->line, OTE_EINVAL, "%s: expected an integer >= %d, got %ld", key, min, v);
    *out = (int)v;
    return 0;
}

static int get_ratio(const yd_doc *d, const yd_node *m, const char *key, double *out) {
    const yd_node *n = yd_map_get(m, key);
    if (!n) return 0;
    double v;
    CHECK(yd_get_double(d, n, key, &v));
    if (!(v > 0 && v <= 1)) return yd_err(d, n->line, OTE_EINVAL, "%s: expected a ratio in (0, 1], got %s", key, n->str);
    *out = v;
    return 0;
}

static int from_doc(hpo_config *c, const yd_doc *d) {
    static const char *const keys[] = {"metric", "mode", "search_algorithm", "early_stop", "hp_space",
                                       "max_iterations", "subset_ratio", "image_resize", "num_init_trials",
                                       "num_trials", "min_iterations", "reduction_factor", "num_brackets", NULL};
    if (!d->root) return ote_err(OTE_EINVAL, "%s: empty file (expected a map with hp_space)", d->file);
    CHECK(yd_check_keys(d, d->root, "hpo_config", keys));
    const yd_node *n;
    const char *s;
    snprintf(c->metric, sizeof c->metric, "mAP");
    if ((n = yd_map_get(d->root, "metric"))) {
        CHECK(yd_get_str(d, n, "metric", &s));
        if (!*s || strlen(s) >= sizeof c->metric) return yd_err(d, n->line, OTE_EINVAL, "metric: bad name '%s'", s);
        snprintf(c->metric, sizeof c->metric, "%s", s);
    }
    c->mode_max = 1;
    if ((n = yd_map_get(d->root, "mode"))) {
        CHECK(yd_get_str(d, n, "mode", &s));
        if (!strcmp(s, "max")) c->mode_max = 1;
        else if (!strcmp(s, "min")) c->mode_max = 0;
        else return yd_err(d, n->line, OTE_EINVAL, "mode: expected max or min, got '%s'", s);
    }
    c->algo = HPO_ALGO_SMBO;
    if ((n = yd_map_get(d->root, "search_algorithm"))) {
        CHECK(yd_get_str(d, n, "search_algorithm", &s));
        if (!strcmp(s, "smbo")) c->algo = HPO_ALGO_SMBO;
        else if (!strcmp(s, "asha")) c->algo = HPO_ALGO_ASHA;
        else return yd_err(d, n->line, OTE_EINVAL, "search_algorithm: expected smbo or asha, got '%s'", s);
    }
    c->early_stop = HPO_ES_NONE;
    if ((n = yd_map_get(d->root, "early_stop"))) {
        CHECK(yd_get_str(d, n, "early_stop", &s));
        if (!strcmp(s, "None") || !strcmp(s, "none") || !strcmp(s, "null") || !strcmp(s, "~") || !*s)
            c->early_stop = HPO_ES_NONE;
        else if (!strcmp(s, "median_stop")) c->early_stop = HPO_ES_MEDIAN;
        else return yd_err(d, n->line, OTE_EINVAL, "early_stop: expected None or median_stop, got '%s'", s);
    }
    n = yd_map_get(d->root, "hp_space");
    if (!n) return yd_err(d, d->root->line, OTE_EINVAL, "hp_space: missing (the parameters to search)");
    CHECK(hp_space_parse(&c->space, d, n));
    CHECK(get_pos_int(d, d->root, "max_iterations", &c->max_iterations, 1));
    CHECK(get_ratio(d, d->root, "subset_ratio", &c->subset_ratio));
    CHECK(get_ratio(d, d->root, "image_resize", &c->image_resize));
    CHECK(get_pos_int(d, d->root, "num_init_trials", &c->num_init_trials, 1));
    CHECK(get_pos_int(d, d->root, "num_trials", &c->num_trials, 1));
    CHECK(get_pos_int(d, d->root, "min_iterations", &c->min_iterations, 1));
    CHECK(get_pos_int(d, d->root, "reduction_factor", &c->reduction_factor, 2));
    CHECK(get_pos_int(d, d->root, "num_brackets", &c->num_brackets, 1));
    if (c->max_iterations && c->min_iterations > c->max_iterations) {
        n = yd_map_get(d->root, "min_iterations");
        return yd_err(d, n->line, OTE_EINVAL, "min_iterations: %d is above max_iterations %d", c->min_iterations,
                      c->max_iterations);
    }
    return 0;
}

static int finish(hpo_config *c, yd_doc *d, int s) {
    if (s == 0) snprintf(c->file, sizeof c->file, "%s", d->file);
    yd_free(d);
    return s;
}

int hpo_config_load(hpo_config *c, const char *path) {
    memset(c, 0, sizeof *c);
    yd_doc d;
    CHECK(yd_load_file(&d, path));
    return finish(c, &d, from_doc(c, &d));
}

int hpo_config_parse(hpo_config *c, const char *text, const char *name) {
    memset(c, 0, sizeof *c);
    yd_doc d;
    CHECK(yd_load_string(&d, text, name));
    return finish(c, &d, from_doc(c, &d));
}

int hpo_config_check_names(const hpo_config *c, const char *const *known) {
    for (int i = 0; i < c->space.n; i++) {
        int ok = 0;
        for (int k = 0; known[k] && !ok; k++) ok = !strcmp(known[k], c->space.p[i].name);
        if (ok) continue;
        char list[1024];
        size_t len = 0;
        list[0] = 0;
        for (int k = 0; known[k] && len + 2 < sizeof list; k++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", k ? ", " : "", known[k]);
        return ote_err(OTE_EINVAL, "%s:%d: hp_space: unknown hyper-parameter '%s' (known: %s)", c->file,
                       c->space.p[i].line, c->space.p[i].name, list);
    }
    return 0;
}

/* hp.c - search-space parsing, [0,1] encoding, quantisation and Python-style printing.
 * See hp.h for the types and the rounding rules (hpopt v0.1.0 behaviour, spec §4.4).
 */
#include "hpo/hp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

static const char *const type_names[] = {"uniform", "quniform", "loguniform", "qloguniform", "choice"};

const char *hp_type_name(hp_type t) {
    return (unsigned)t < 5 ? type_names[t] : "?";
}

int hp_type_parse(const char *s) {
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, type_names[i])) return i;
    return -1;
}

static int is_log(const hp_param *p) { return p->type == HP_LOGUNIFORM || p->type == HP_QLOGUNIFORM; }
static int is_q(const hp_param *p) { return p->type == HP_QUNIFORM || p->type == HP_QLOGUNIFORM; }

/* Decimal places needed to write q exactly (0.001 -> 3, 2 -> 0, 0.25 -> 2); at most 15. */
static int decimals_of(double q) {
    double s = 1;
    for (int d = 0; d < 15; d++, s *= 10) {
        double v = q * s;
        if (fabs(v - rint(v)) <= 1e-9 * fmax(1.0, fabs(v))) return d;
    }
    return 15;
}

int hp_param_make(hp_param *p, const char *name, hp_type type, const double *range, int nrange,
                  int range_is_int, const char *where) {
    memset(p, 0, sizeof *p);
    if (strlen(name) >= HP_NAME_MAX) return ote_err(OTE_EINVAL, "%s: parameter name too long", where);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->type = type;
    p->base = 2;
    if (type == HP_CHOICE) {
        if (nrange < 1 || nrange > HP_MAX_CHOICES)
            return ote_err(OTE_EINVAL, "%s: range: choice needs 1..%d values, got %d", where, HP_MAX_CHOICES, nrange);
        p->nchoice = nrange;
        memcpy(p->choice, range, (size_t)nrange * sizeof *range);
        p->is_int = range_is_int;
        return 0;
    }
    int need = is_q(p) ? 3 : 2; /* values before the optional base */
    if (nrange != need && nrange != need + 1)
        return ote_err(OTE_EINVAL, "%s: range: %s expects [lo, hi%s[, base]], got %d values", where,
                       hp_type_name(type), is_q(p) ? ", q" : "", nrange);
    p->lo = range[0];
    p->hi = range[1];
    if (is_q(p)) p->q = range[2];
    if (nrange == need + 1) p->base = range[need];
    if (p->lo > p->hi)
        return ote_err(OTE_EINVAL, "%s: range: lower bound %g is above upper bound %g", where, p->lo, p->hi);
    if (is_log(p) && p->lo <= 0)
        return ote_err(OTE_EINVAL, "%s: range: log range must be positive, got lower bound %g", where, p->lo);
    if (!(p->base > 0) || p->base == 1)
        return ote_err(OTE_EINVAL, "%s: range: log base must be positive and not 1, got %g", where, p->base);
    if (is_q(p)) {
        if (!(p->q > 0)) return ote_err(OTE_EINVAL, "%s: range: quantum must be positive, got %g", where, p->q);
        if (p->q > p->hi - p->lo)
            return ote_err(OTE_EINVAL, "%s: range: quantum %g is larger than the range [%g, %g]", where, p->q, p->lo,
                           p->hi);
        if (ceil(p->lo / p->q - 1e-9) > floor(p->hi / p->q + 1e-9))
            return ote_err(OTE_EINVAL, "%s: range: no multiple of %g lies in [%g, %g]", where, p->q, p->lo, p->hi);
        p->decimals = decimals_of(p->q);
        p->is_int = range_is_int && p->decimals == 0;
    }
    return 0;
}

int hp_param_range(const hp_param *p, double *out) {
    if (p->type == HP_CHOICE) {
        memcpy(out, p->choice, (size_t)p->nchoice * sizeof *out);
        return p->nchoice;
    }
    int n = 0;
    out[n++] = p->lo;
    out[n++] = p->hi;
    if (is_q(p)) out[n++] = p->q;
    out[n++] = p->base;
    return n;
}

int hp_space_parse(hp_space *sp, const yd_doc *d, const yd_node *m) {
    memset(sp, 0, sizeof *sp);
    CHECK(yd_expect(d, m, "hp_space", YD_MAP));
    if (m->n == 0) return yd_err(d, m->line, OTE_EINVAL, "hp_space: no parameters");
    if (m->n > HP_MAX_PARAMS) return yd_err(d, m->line, OTE_EINVAL, "hp_space: more than %d parameters", HP_MAX_PARAMS);
    static const char *const keys[] = {"param_type", "range", NULL};
    for (int i = 0; i < m->n; i++) {
        const char *name = m->keys[i];
        const yd_node *e = m->items[i];
        char key[HP_NAME_MAX + 64];
        snprintf(key, sizeof key, "hp_space: %s", name);
        CHECK(yd_check_keys(d, e, key, keys));
        const yd_node *tn = yd_map_get(e, "param_type");
        const yd_node *rn = yd_map_get(e, "range");
        if (!tn) return yd_err(d, e->line, OTE_EINVAL, "%s: missing param_type", name);
        if (!rn) return yd_err(d, e->line, OTE_EINVAL, "%s: missing range", name);
        snprintf(key, sizeof key, "%s: param_type", name);
        const char *ts;
        CHECK(yd_get_str(d, tn, key, &ts));
        int t = hp_type_parse(ts);
        if (t < 0)
            return yd_err(d, tn->line, OTE_EINVAL,
                          "%s: unknown type '%s' (expected uniform, quniform, loguniform, qloguniform or choice)", key,
                          ts);
        snprintf(key, sizeof key, "%s: range", name);
        CHECK(yd_expect(d, rn, key, YD_SEQ));
        if (rn->n > HP_MAX_CHOICES) return yd_err(d, rn->line, OTE_EINVAL, "%s: more than %d values", key, HP_MAX_CHOICES);
        double r[HP_MAX_CHOICES];
        int all_int = 1;
        for (int j = 0; j < rn->n; j++) {
            CHECK(yd_get_double(d, rn->items[j], key, &r[j]));
            /* the base (last item of a full log/uniform range) does not decide integer-ness */
            int is_base = t != HP_CHOICE && j == ((t == HP_QUNIFORM || t == HP_QLOGUNIFORM) ? 3 : 2);
            if (!is_base && !yd_is_integer(rn->items[j])) all_int = 0;
        }
        char where[HP_NAME_MAX + 64];
        snprintf(where, sizeof where, "%s:%d: %s", d->file, rn->line, name);
        CHECK(hp_param_make(&sp->p[sp->n], name, (hp_type)t, r, rn->n, all_int, where));
        sp->p[sp->n].line = m->key_lines[i];
        sp->n++;
    }
    return 0;
}

static double clamp01(double u) { return u < 0 ? 0 : u > 1 ? 1 : (u != u ? 0.5 : u); }

static int nearest_choice(const hp_param *p, double v) {
    int best = 0;
    for (int i = 1; i < p->nchoice; i++)
        if (fabs(p->choice[i] - v) < fabs(p->choice[best] - v)) best = i;
    return best;
}

double hp_encode(const hp_param *p, double v) {
    if (p->type == HP_CHOICE) return (nearest_choice(p, v) + 0.5) / p->nchoice;
    if (p->hi == p->lo) return 0.5;
    if (is_log(p)) {
        if (!(v > 0)) return 0;
        return clamp01((log(v) - log(p->lo)) / (log(p->hi) - log(p->lo)));
    }
    return clamp01((v - p->lo) / (p->hi - p->lo));
}

/* k * q written with q's decimals and read back: the double nearest to the short decimal. */
static double clean_multiple(const hp_param *p, double k) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", p->decimals, k * p->q);
    return strtod(buf, NULL);
}

double hp_snap(const hp_param *p, double v) {
    if (p->type == HP_CHOICE) return p->choice[nearest_choice(p, v)];
    if (v != v) v = p->lo;
    if (v < p->lo) v = p->lo;
    if (v > p->hi) v = p->hi;
    if (!is_q(p)) return v;
    double k = rint(v / p->q); /* Python round(): half to even */
    double kmin = ceil(p->lo / p->q - 1e-9), kmax = floor(p->hi / p->q + 1e-9);
    if (k < kmin) k = kmin;
    if (k > kmax) k = kmax;
    return clean_multiple(p, k);
}

double hp_decode(const hp_param *p, double u) {
    u = clamp01(u);
    if (p->type == HP_CHOICE) {
        int i = (int)floor(u * p->nchoice);
        if (i >= p->nchoice) i = p->nchoice - 1;
        return p->choice[i];
    }
    double x;
    if (is_log(p))
        x = exp(log(p->lo) + u * (log(p->hi) - log(p->lo)));
    else
        x = p->lo + u * (p->hi - p->lo);
    return hp_snap(p, x);
}

void hp_space_encode(const hp_space *sp, const double *values, double *u) {
    for (int i = 0; i < sp->n; i++) u[i] = hp_encode(&sp->p[i], values[i]);
}

void hp_space_decode(const hp_space *sp, const double *u, double *values) {
    for (int i = 0; i < sp->n; i++) values[i] = hp_decode(&sp->p[i], u[i]);
}

int hp_format_double(double v, char *buf, size_t size) {
    if (v != v) return snprintf(buf, size, "nan");
    if (isinf(v)) return snprintf(buf, size, v > 0 ? "inf" : "-inf");
    if (v == 0) return snprintf(buf, size, signbit(v) ? "-0.0" : "0.0");
    char e[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    /* e = "[-]d[.ddd]e[+-]XX": split into digits and exponent */
    char digits[24];
    int nd = 0, neg = 0;
    const char *s = e;
    if (*s == '-') neg = 1, s++;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int ex = atoi(s + 1);
    char out[64];
    int n = 0;
    if (neg) out[n++] = '-';
    if (ex >= -4 && ex < 16) {
        if (ex >= 0) {
            for (int i = 0; i <= ex; i++) out[n++] = i < nd ? digits[i] : '0';
            out[n++] = '.';
            if (nd > ex + 1)
                for (int i = ex + 1; i < nd; i++) out[n++] = digits[i];
            else
                out[n++] = '0';
        } else {
            out[n++] = '0';
            out[n++] = '.';
            for (int i = 0; i < -ex - 1; i++) out[n++] = '0';
            for (int i = 0; i < nd; i++) out[n++] = digits[i];
        }
        out[n] = 0;
    } else {
        out[n++] = digits[0];
        if (nd > 1) {
            out[n++] = '.';
            for (int i = 1; i < nd; i++) out[n++] = digits[i];
        }
        snprintf(out + n, sizeof out - (size_t)n, "e%c%02d", ex < 0 ? '-' : '+', abs(ex));
    }
    return snprintf(buf, size, "%s", out);
}

int hp_format_value(const hp_param *p, double v, char *buf, size_t size) {
    if (p->is_int && fabs(v) < 1e15 && v == rint(v)) return snprintf(buf, size, "%.0f", v);
    return hp_format_double(v, buf, size);
}

int hp_space_same(const hp_space *sp, const double *a, const double *b) {
    for (int i = 0; i < sp->n; i++) {
        const hp_param *p = &sp->p[i];
        if (p->type == HP_CHOICE || is_q(p)) {
            if (hp_snap(p, a[i]) != hp_snap(p, b[i])) return 0;
        } else if (fabs(a[i] - b[i]) > 1e-9 * fmax(fabs(a[i]), fabs(b[i]))) {
            return 0;
        }
    }
    return 1;
}

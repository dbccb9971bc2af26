/* hp.h - the HPO search space: OTE/hpopt parameter types, their [0,1] encoding for the
 * surrogate, decoding with quantisation, clean printing and duplicate detection.
 *
 * Types and range lists (hpopt v0.1.0, spec-ote-hpo.md §4.4):
 *   uniform      [lo, hi]               x
 *   quniform     [lo, hi, q]            round(x / q) * q
 *   loguniform   [lo, hi, base]         base^x, x uniform in [log lo, log hi]
 *   qloguniform  [lo, hi, q, base]      round(base^x / q) * q
 *   choice       [v0, v1, ...]          one of the values (numbers only here)
 * A log base of 2 is appended to every non-choice range that lacks one, as hpopt does, and the
 * range is stored that way in hpopt_status.json. The base does not change the [0,1] encoding
 * (log_b is a rescaled ln) and is kept only for file compatibility.
 *
 * `round` is Python's round-half-to-even (rint in the default rounding mode), so batch sizes stay
 * integers exactly as in hpopt. A quantised value is stored as the double nearest to its shortest
 * decimal (k*q rounded to q's decimal places), so 9 * 0.001 is 0.009, not 0.009000000000000001.
 * Quantised values are also clamped onto the grid inside [lo, hi] (hpopt can return one step
 * outside when lo is not a multiple of q; we do not).
 *
 * Encoding: u = (x - lo) / (hi - lo), in log space for log types; choice index i -> (i + 0.5) / n.
 * Ownership: hp_space owns its parameter array.
 */
#ifndef OTE_HPO_HP_H
#define OTE_HPO_HP_H

#include <stddef.h>

#include "io/yd.h"

#define HP_MAX_PARAMS 16
#define HP_MAX_CHOICES 64
#define HP_NAME_MAX 128

typedef enum hp_type { HP_UNIFORM = 0, HP_QUNIFORM, HP_LOGUNIFORM, HP_QLOGUNIFORM, HP_CHOICE } hp_type;

typedef struct hp_param {
    char name[HP_NAME_MAX];
    hp_type type;
    double lo, hi;   /* bounds (choice: unused) */
    double q;        /* quantum (q types), else 0 */
    double base;     /* log base as stored (default 2) */
    int is_int;      /* values print as integers (q types with an integer quantum and bounds; choice of ints) */
    int decimals;    /* decimal places of the quantum (q types) */
    int nchoice;
    double choice[HP_MAX_CHOICES];
    int line;        /* line in the config file (0 if built in code) */
} hp_param;

typedef struct hp_space {
    int n;
    hp_param p[HP_MAX_PARAMS];
} hp_space;

const char *hp_type_name(hp_type t);
/* Parses a type name; -1 if unknown. */
int hp_type_parse(const char *s);

/* Builds a parameter from a type and a range list (as in the YAML file), validating it.
 * `where` prefixes error messages (e.g. "hpo_config.yaml:7: lr"). 0 or OTE_EINVAL. */
int hp_param_make(hp_param *p, const char *name, hp_type type, const double *range, int nrange,
                  int range_is_int, const char *where);

/* Parses the `hp_space` map of a config (name -> {param_type, range}) into sp. Errors name the
 * file and line: unknown key, bad type, lo > hi, quantum larger than the range, log range
 * touching 0 or negative. */
int hp_space_parse(hp_space *sp, const yd_doc *d, const yd_node *hp_space_map);

/* The stored range list (with the base appended); returns its length (<= HP_MAX_CHOICES). */
int hp_param_range(const hp_param *p, double *out);

/* Value (real units, already on the grid) -> [0, 1]. Values outside the range are clamped. */
double hp_encode(const hp_param *p, double value);
/* [0, 1] -> value in real units, quantised for q types / snapped to a choice. */
double hp_decode(const hp_param *p, double u);
/* Puts an arbitrary real value on the parameter's grid (quantise / nearest choice / clamp). */
double hp_snap(const hp_param *p, double value);

void hp_space_encode(const hp_space *sp, const double *values, double *u);
void hp_space_decode(const hp_space *sp, const double *u, double *values);

/* Shortest decimal that round-trips, Python repr style ("0.009", "1e-05", "8" for integer
 * parameters, "0.5" / "3.0" for floats). Returns the length written (buf >= 32 bytes). */
int hp_format_value(const hp_param *p, double value, char *buf, size_t size);
/* Python repr of a float (shortest round-trip, "1.0", "1e-05", "inf", "nan"). */
int hp_format_double(double v, char *buf, size_t size);

/* Two configurations are the same point on the quantised grid (continuous parameters: equal to
 * a relative 1e-9, like hpopt's isclose). */
int hp_space_same(const hp_space *sp, const double *a, const double *b);

#endif

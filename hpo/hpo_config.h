/* hpo_config.h - hpo_config.yaml (OTE's keys) parsed into a typed struct with defaults.
 *
 * Keys: metric (default "mAP"), mode (max|min, default max), search_algorithm (smbo|asha,
 * default smbo), early_stop ("None"|median_stop, default "None"; PyYAML reads None as the string
 * "None" and OTE stores it that way), hp_space (required), and the optional max_iterations,
 * subset_ratio, image_resize, num_init_trials, num_trials, min_iterations, reduction_factor,
 * num_brackets. Optional numbers are 0 when absent ("let the planner choose"). An unknown key, a
 * wrong type or a bad value is an error naming file and line.
 *
 * image_resize is a ratio of the training input size in (0, 1] (the OTE tutorial's meaning;
 * hpopt stored [w, h] pixels but OTE never resized).
 * Ownership: plain value struct, nothing to free.
 */
#ifndef OTE_HPO_CONFIG_H
#define OTE_HPO_CONFIG_H

#include "hpo/hp.h"

typedef enum hpo_algo { HPO_ALGO_SMBO = 0, HPO_ALGO_ASHA = 1 } hpo_algo;
typedef enum hpo_early_stop { HPO_ES_NONE = 0, HPO_ES_MEDIAN = 1 } hpo_early_stop;

typedef struct hpo_config {
    char file[512];         /* path it was read from (for messages) */
    char metric[64];
    int mode_max;           /* 1: maximise the score (default), 0: minimise */
    hpo_algo algo;
    hpo_early_stop early_stop;
    hp_space space;
    int max_iterations;     /* epochs per trial; 0 = planner decides */
    double subset_ratio;    /* 0 = planner decides */
    double image_resize;    /* 0 = planner decides */
    int num_init_trials;    /* 0 = default (5, clipped to num_trials) */
    int num_trials;         /* 0 = planner decides */
    int min_iterations;     /* ASHA; 0 = default 1 */
    int reduction_factor;   /* ASHA; 0 = default 2 */
    int num_brackets;       /* ASHA; 0 = default 1 */
} hpo_config;

/* Reads and validates a file / a text (name used in messages). 0 or OTE_EIO/OTE_EPARSE/OTE_EINVAL. */
int hpo_config_load(hpo_config *c, const char *path);
int hpo_config_parse(hpo_config *c, const char *text, const char *name);

/* Every hp_space name must be one of `known` (NULL-terminated, e.g. the template's dotted
 * hyper-parameter names); otherwise OTE_EINVAL "<file>:<line>: hp_space: unknown hyper-parameter
 * '<name>' (known: a, b, ...)". */
int hpo_config_check_names(const hpo_config *c, const char *const *known);

const char *hpo_config_algo_name(hpo_algo a);          /* "smbo" / "asha" */
const char *hpo_config_early_stop_name(hpo_early_stop e); /* "None" / "median_stop" */

#endif

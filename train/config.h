/* config.h - a model template (template.yaml) as typed settings: OTE's hyper-parameters with their
 * type, default, min and max, the `model:` settings, and `params --group.key V` overrides.
 *
 * The template is read once through io/yd.h (the only YAML reader); no other code sees a
 * string key. Hyper-parameters keep OTE's dotted names (`learning_parameters.batch_size`) so that
 * `params` and hpo_config.yaml names work as in OTE. Errors name the file, the line, the key and
 * the value, e.g.
 *     template.yaml:27: learning_parameters.batch_size: value '0' is below min_value 1
 * and return OTE_EINVAL (a usage error: bad template or bad override) or OTE_EIO (missing file).
 *
 * Ownership: a config_template is a plain value (fixed-size arrays, no heap), so it can be copied
 * (HPO trials copy it and override a few entries). Invariants after config_load: every required
 * hyper-parameter exists with a value inside [min, max]; the typed fields mirror the table and are
 * refreshed by every successful config_set().
 */
#ifndef OTE_CONFIG_H
#define OTE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_HP 24
#define CONFIG_KEY_LEN 96
#define CONFIG_PATH_LEN 1024

typedef enum config_type { CONFIG_INTEGER = 0, CONFIG_FLOAT = 1, CONFIG_BOOLEAN = 2 } config_type;

/* OTE's affects_outcome_of: only TRAINING / INFERENCE entries are `params` keys (OTE v0.2.0). */
typedef enum config_affects { CONFIG_AFFECTS_NONE = 0, CONFIG_AFFECTS_TRAINING = 1, CONFIG_AFFECTS_INFERENCE = 2 } config_affects;

typedef struct config_hparam {
    char key[CONFIG_KEY_LEN]; /* "group.name" */
    config_type type;
    double value;          /* current value (integers and booleans exactly representable) */
    double def, min, max;  /* booleans: min 0, max 1 */
    int has_min, has_max;
    config_affects affects;
    int line;              /* template line of the entry (for messages) */
} config_hparam;

typedef struct config_template {
    char path[CONFIG_PATH_LEN]; /* template.yaml as given */
    char dir[CONFIG_PATH_LEN];  /* its directory ("." if none): hpo_config.yaml sits there */
    char model_template_id[CONFIG_KEY_LEN];
    config_hparam hp[CONFIG_MAX_HP];
    int n_hp;
    int model_line;          /* line of `model:` (messages) */
    /* model: settings (ote-c) */
    int input_w, input_h;    /* test-time input size; multiples of 32 */
    int backbone;            /* 0 = mobilenetv2_w1 (pytorchcv, OTE), 1 = torchvision */
    int tf_padding;
    char pretrained_backbone[CONFIG_PATH_LEN]; /* "" = none; relative paths are relative to dir */
    uint64_t seed;
    /* typed mirror of the hyper-parameters the trainer reads */
    int batch_size;
    double learning_rate;
    int warmup_iters;
    int num_iters;           /* epochs before OTE's adaptive repeat */
    int num_workers;
    double confidence_threshold;
    int result_based_confidence_threshold;
} config_template;

/* Reads and checks a template. OTE_EIO if it cannot be read, OTE_EINVAL/OTE_EPARSE otherwise. */
int config_load(config_template *t, const char *path);

/* One override, as after `params`: key "group.name" or "model.name", value as text.
 * Checks the type (INTEGER: decimal integer; FLOAT: number; BOOLEAN: true/false/1/0, as OTE's
 * parser) and [min_value, max_value]. `model.input_size` takes WxH (multiples of 32, 64..4096). */
int config_set(config_template *t, const char *key, const char *value);

/* Parses the words after `params`: `--group.key V` or `--group.key=V`, repeated. */
int config_apply_params(config_template *t, int argc, char *const *argv);

/* The entry for a dotted key, NULL if none. */
const config_hparam *config_find(const config_template *t, const char *key);
/* model.pretrained_backbone resolved against the template's folder (absolute paths unchanged)
 * into buf; 0 when the template trains from scratch ("" / none), else the length (OTE_EINVAL if
 * it does not fit). */
int config_pretrained_path(const config_template *t, char *buf, size_t n);

/* Formats an entry's value as text (integers without a decimal point, floats with %.17g trimmed to
 * the shortest round-trip form, booleans true/false). */
void config_format_value(const config_hparam *h, char *buf, int n);

#endif

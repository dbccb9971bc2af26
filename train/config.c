/* config.c - template.yaml -> config_template, and `params` overrides (see config.h).
 *
 * Reads the YAML tree through io/yd.h; checks every key against the lists below so a typo
 * in a template is an error naming its line instead of a silently ignored setting. Owns nothing
 * after return (the yd_doc is freed before config_load returns).
 */
#include "train/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data/loader.h"
#include "engine/ote.h"
#include "io/yd.h"

static const char *const config_top_keys[] = {
    "model_template_id", "name", "task_type", "task_family", "instantiation", "summary", "application",
    "framework", "entrypoints", "capabilities", "max_nodes", "training_targets", "gigaflops", "size",
    "model", "hyper_parameters", NULL};
static const char *const config_model_keys[] = {"input_size", "backbone", "tf_padding", "pretrained_backbone",
                                             "seed", NULL};
/* The keys OTE's configuration.yaml entries carry (UI fields are accepted and ignored). */
static const char *const config_entry_keys[] = {
    "type", "default_value", "min_value", "max_value", "affects_outcome_of", "header", "description",
    "editable", "visible_in_ui", "warning", "auto_hpo_state", "ui_rules", "value", NULL};

/* Hyper-parameters the trainer needs; a template without them is rejected. */
static const char *const config_required[] = {
    "learning_parameters.batch_size", "learning_parameters.learning_rate",
    "learning_parameters.learning_rate_warmup_iters", "learning_parameters.num_iters",
    "postprocessing.confidence_threshold", NULL};

const config_hparam *config_find(const config_template *t, const char *key) {
    for (int i = 0; i < t->n_hp; i++)
        if (!strcmp(t->hp[i].key, key)) return &t->hp[i];
    return NULL;
}

static double config_value_or(const config_template *t, const char *key, double dflt) {
    const config_hparam *h = config_find(t, key);
    return h ? h->value : dflt;
}

/* Refreshes the typed mirror from the table. */
static void config_sync(config_template *t) {
    t->batch_size = (int)config_value_or(t, "learning_parameters.batch_size", 8);
    t->learning_rate = config_value_or(t, "learning_parameters.learning_rate", 0.008);
    t->warmup_iters = (int)config_value_or(t, "learning_parameters.learning_rate_warmup_iters", 200);
    t->num_iters = (int)config_value_or(t, "learning_parameters.num_iters", 300);
    t->num_workers = (int)config_value_or(t, "learning_parameters.num_workers", 2);
    t->confidence_threshold = config_value_or(t, "postprocessing.confidence_threshold", 0.35);
    t->result_based_confidence_threshold =
        (int)config_value_or(t, "postprocessing.result_based_confidence_threshold", 1) != 0;
}

void config_format_value(const config_hparam *h, char *buf, int n) {
    if (h->type == CONFIG_BOOLEAN) {
        snprintf(buf, (size_t)n, "%s", h->value != 0 ? "true" : "false");
    } else if (h->type == CONFIG_INTEGER) {
        snprintf(buf, (size_t)n, "%.0f", h->value);
    } else {
        /* Shortest text that reads back to the same double. */
        for (int p = 1; p <= 17; p++) {
            snprintf(buf, (size_t)n, "%.*g", p, h->value);
            if (strtod(buf, NULL) == h->value) return;
        }
    }
}

/* Parses text as a value of type `type`. 0 or -1 (caller reports). */
static int config_parse_text(config_type type, const char *s, double *out) {
    if (!s || !*s) return -1;
    if (type == CONFIG_BOOLEAN) {
        if (!strcasecmp(s, "true") || !strcmp(s, "1")) *out = 1;
        else if (!strcasecmp(s, "false") || !strcmp(s, "0")) *out = 0;
        else return -1;
        return 0;
    }
    char *end;
    errno = 0;
    if (type == CONFIG_INTEGER) {
        long long v = strtoll(s, &end, 10);
        if (*end || errno || end == s || llabs(v) > (1LL << 53)) return -1;
        *out = (double)v;
        return 0;
    }
    double v = strtod(s, &end);
    if (*end || end == s || !isfinite(v) || isspace((unsigned char)s[0])) return -1;
    *out = v;
    return 0;
}

static const char *config_type_name(config_type t) {
    return t == CONFIG_INTEGER ? "an integer" : t == CONFIG_FLOAT ? "a number" : "a boolean (true/false/1/0)";
}

/* Range check of v for entry h; the message names file, line, key and value text. */
static int config_check_range(const config_template *t, const config_hparam *h, double v, const char *text) {
    if (h->has_min && v < h->min) {
        config_hparam tmp = *h;
        tmp.value = h->min;
        char b[64];
        config_format_value(&tmp, b, sizeof b);
        return ote_err(OTE_EINVAL, "%s:%d: %s: value '%s' is below min_value %s", t->path, h->line, h->key, text, b);
    }
    if (h->has_max && v > h->max) {
        config_hparam tmp = *h;
        tmp.value = h->max;
        char b[64];
        config_format_value(&tmp, b, sizeof b);
        return ote_err(OTE_EINVAL, "%s:%d: %s: value '%s' is above max_value %s", t->path, h->line, h->key, text, b);
    }
    if (!strcmp(h->key, "learning_parameters.batch_size") && v > LOADER_MAX_BATCH)
        return ote_err(OTE_EINVAL, "%s:%d: %s: value '%s' is above ote-c's limit of %d images per batch", t->path, h->line,
                       h->key, text, LOADER_MAX_BATCH);
    return 0;
}

/* Reads one YAML scalar of the entry's type into *out (errors via yamldoc, naming the line). */
static int config_yaml_value(const yd_doc *d, const yd_node *n, const char *key, config_type type, double *out) {
    if (type == CONFIG_BOOLEAN) {
        int b;
        CHECK(yd_get_bool(d, n, key, &b));
        *out = b;
    } else if (type == CONFIG_INTEGER) {
        long v;
        CHECK(yd_get_long(d, n, key, &v));
        *out = (double)v;
    } else {
        CHECK(yd_get_double(d, n, key, out));
    }
    return 0;
}

static int config_load_entry(config_template *t, const yd_doc *d, const char *group, const char *name, int line,
                          const yd_node *e) {
    char key[CONFIG_KEY_LEN + 32];
    snprintf(key, sizeof key, "%s.%s", group, name);
    if (strlen(key) >= CONFIG_KEY_LEN) return yd_err(d, line, OTE_EINVAL, "%s: key too long", key);
    if (t->n_hp >= CONFIG_MAX_HP)
        return yd_err(d, line, OTE_EINVAL, "%s: too many hyper-parameters (at most %d)", key, CONFIG_MAX_HP);
    CHECK(yd_expect(d, e, key, YD_MAP));
    CHECK(yd_check_keys(d, e, key, config_entry_keys));
    config_hparam *h = &t->hp[t->n_hp];
    memset(h, 0, sizeof *h);
    snprintf(h->key, sizeof h->key, "%s", key);
    h->line = line;
    const char *s;
    char where[CONFIG_KEY_LEN + 32];
    const yd_node *n = yd_map_get(e, "type");
    snprintf(where, sizeof where, "%s: type", key);
    if (!n) return yd_err(d, e->line, OTE_EINVAL, "%s: missing 'type'", key);
    CHECK(yd_get_str(d, n, where, &s));
    if (!strcmp(s, "INTEGER")) h->type = CONFIG_INTEGER;
    else if (!strcmp(s, "FLOAT")) h->type = CONFIG_FLOAT;
    else if (!strcmp(s, "BOOLEAN")) h->type = CONFIG_BOOLEAN;
    else
        return yd_err(d, n->line, OTE_EINVAL, "%s: unsupported type '%s' (expected INTEGER, FLOAT or BOOLEAN)",
                      where, s);
    h->affects = CONFIG_AFFECTS_NONE;
    if ((n = yd_map_get(e, "affects_outcome_of"))) {
        snprintf(where, sizeof where, "%s: affects_outcome_of", key);
        CHECK(yd_get_str(d, n, where, &s));
        if (!strcmp(s, "TRAINING")) h->affects = CONFIG_AFFECTS_TRAINING;
        else if (!strcmp(s, "INFERENCE")) h->affects = CONFIG_AFFECTS_INFERENCE;
        else if (!strcmp(s, "NONE")) h->affects = CONFIG_AFFECTS_NONE;
        else
            return yd_err(d, n->line, OTE_EINVAL, "%s: expected TRAINING, INFERENCE or NONE, got '%s'", where, s);
    }
    if (h->type == CONFIG_BOOLEAN) {
        h->has_min = h->has_max = 1;
        h->min = 0;
        h->max = 1;
    }
    if (h->type != CONFIG_BOOLEAN) {
        if ((n = yd_map_get(e, "min_value"))) {
            snprintf(where, sizeof where, "%s: min_value", key);
            CHECK(config_yaml_value(d, n, where, h->type, &h->min));
            h->has_min = 1;
        }
        if ((n = yd_map_get(e, "max_value"))) {
            snprintf(where, sizeof where, "%s: max_value", key);
            CHECK(config_yaml_value(d, n, where, h->type, &h->max));
            h->has_max = 1;
        }
        if (h->has_min && h->has_max && h->min > h->max)
            return yd_err(d, e->line, OTE_EINVAL, "%s: min_value is above max_value", key);
    }
    n = yd_map_get(e, "default_value");
    if (!n) return yd_err(d, e->line, OTE_EINVAL, "%s: missing 'default_value'", key);
    snprintf(where, sizeof where, "%s: default_value", key);
    CHECK(config_yaml_value(d, n, where, h->type, &h->def));
    h->value = h->def;
    /* OTE's `value` field, when present, is the current value. */
    if ((n = yd_map_get(e, "value"))) {
        snprintf(where, sizeof where, "%s: value", key);
        CHECK(config_yaml_value(d, n, where, h->type, &h->value));
    }
    char text[64];
    config_format_value(h, text, sizeof text);
    CHECK(config_check_range(t, h, h->value, text));
    t->n_hp++;
    return 0;
}

/* "WxH" -> w, h: positive multiples of 32 in 64..4096 (the network's stride-32 grid). */
static int config_parse_size(const char *s, int *w, int *h) {
    int a, b, used = 0;
    if (!s || sscanf(s, "%dx%d%n", &a, &b, &used) != 2 || s[used] != '\0') return -1;
    if (a < 64 || b < 64 || a > 4096 || b > 4096 || a % 32 || b % 32) return -1;
    *w = a;
    *h = b;
    return 0;
}

static const char config_size_rule[] = "expected WxH with W and H multiples of 32 in 64..4096, e.g. 992x736";

static int config_load_model(config_template *t, const yd_doc *d, const yd_node *m) {
    CHECK(yd_expect(d, m, "model", YD_MAP));
    CHECK(yd_check_keys(d, m, "model", config_model_keys));
    const yd_node *n;
    const char *s;
    if ((n = yd_map_get(m, "input_size"))) {
        CHECK(yd_get_str(d, n, "model.input_size", &s));
        if (config_parse_size(s, &t->input_w, &t->input_h) < 0)
            return yd_err(d, n->line, OTE_EINVAL, "model.input_size: %s, got '%s'", config_size_rule, s);
    }
    if ((n = yd_map_get(m, "backbone"))) {
        CHECK(yd_get_str(d, n, "model.backbone", &s));
        if (!strcmp(s, "mobilenetv2_w1")) t->backbone = 0;
        else if (!strcmp(s, "torchvision")) t->backbone = 1;
        else
            return yd_err(d, n->line, OTE_EINVAL, "model.backbone: expected mobilenetv2_w1 or torchvision, got '%s'",
                          s);
    }
    if ((n = yd_map_get(m, "tf_padding"))) CHECK(yd_get_bool(d, n, "model.tf_padding", &t->tf_padding));
    if ((n = yd_map_get(m, "pretrained_backbone"))) {
        CHECK(yd_get_str(d, n, "model.pretrained_backbone", &s));
        if (strlen(s) >= sizeof t->pretrained_backbone)
            return yd_err(d, n->line, OTE_EINVAL, "model.pretrained_backbone: path too long");
        snprintf(t->pretrained_backbone, sizeof t->pretrained_backbone, "%s", strcmp(s, "none") ? s : "");
    }
    if ((n = yd_map_get(m, "seed"))) {
        long v;
        CHECK(yd_get_long(d, n, "model.seed", &v));
        if (v < 0) return yd_err(d, n->line, OTE_EINVAL, "model.seed: expected a non-negative integer, got '%s'", n->str);
        t->seed = (uint64_t)v;
    }
    return 0;
}

static int config_load_doc(config_template *t, const yd_doc *d) {
    const yd_node *root = d->root;
    if (!root) return ote_err(OTE_EINVAL, "%s: empty template", t->path);
    CHECK(yd_expect(d, root, "template", YD_MAP));
    CHECK(yd_check_keys(d, root, "template", config_top_keys));
    const yd_node *n;
    if ((n = yd_map_get(root, "model_template_id"))) {
        const char *s;
        CHECK(yd_get_str(d, n, "model_template_id", &s));
        snprintf(t->model_template_id, sizeof t->model_template_id, "%s", s);
    }
    if ((n = yd_map_get(root, "model"))) {
        t->model_line = n->line;
        CHECK(config_load_model(t, d, n));
    }
    const yd_node *hp = yd_map_get(root, "hyper_parameters");
    if (!hp) return ote_err(OTE_EINVAL, "%s: missing 'hyper_parameters'", t->path);
    CHECK(yd_expect(d, hp, "hyper_parameters", YD_MAP));
    for (int g = 0; g < hp->n; g++) {
        const yd_node *grp = hp->items[g];
        char where[CONFIG_KEY_LEN + 32];
        snprintf(where, sizeof where, "hyper_parameters: %s", hp->keys[g]);
        CHECK(yd_expect(d, grp, where, YD_MAP));
        for (int k = 0; k < grp->n; k++)
            CHECK(config_load_entry(t, d, hp->keys[g], grp->keys[k], grp->key_lines[k], grp->items[k]));
    }
    for (int i = 0; config_required[i]; i++)
        if (!config_find(t, config_required[i]))
            return yd_err(d, hp->line, OTE_EINVAL, "hyper_parameters: missing required entry %s", config_required[i]);
    const struct {
        const char *key;
        config_type type;
    } types[] = {{"learning_parameters.batch_size", CONFIG_INTEGER},
                 {"learning_parameters.learning_rate", CONFIG_FLOAT},
                 {"learning_parameters.learning_rate_warmup_iters", CONFIG_INTEGER},
                 {"learning_parameters.num_iters", CONFIG_INTEGER},
                 {"learning_parameters.num_workers", CONFIG_INTEGER},
                 {"postprocessing.confidence_threshold", CONFIG_FLOAT},
                 {"postprocessing.result_based_confidence_threshold", CONFIG_BOOLEAN}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const config_hparam *h = config_find(t, types[i].key);
        if (h && h->type != types[i].type)
            return yd_err(d, h->line, OTE_EINVAL, "%s: expected type %s", h->key,
                          types[i].type == CONFIG_INTEGER ? "INTEGER" : types[i].type == CONFIG_FLOAT ? "FLOAT" : "BOOLEAN");
    }
    const config_hparam *bs = config_find(t, "learning_parameters.batch_size");
    if (bs->value < 1) return yd_err(d, bs->line, OTE_EINVAL, "%s: must be at least 1", bs->key);
    return 0;
}

int config_load(config_template *t, const char *path) {
    memset(t, 0, sizeof *t);
    if (strlen(path) >= sizeof t->path) return ote_err(OTE_EINVAL, "template path too long: %s", path);
    snprintf(t->path, sizeof t->path, "%s", path);
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(t->dir, sizeof t->dir, ".");
    else if (slash == path) snprintf(t->dir, sizeof t->dir, "/");
    else snprintf(t->dir, sizeof t->dir, "%.*s", (int)(slash - path), path);
    /* ote-c defaults for the model: section (the template may override each). */
    t->input_w = 992;
    t->input_h = 736;
    t->backbone = 0;
    t->tf_padding = 0;
    t->seed = 42; /* OTE's random seed */
    yd_doc d;
    int s = yd_load_file(&d, path);
    if (s < 0) return s;
    s = config_load_doc(t, &d);
    yd_free(&d);
    if (s < 0) return s;
    config_sync(t);
    return 0;
}

static int config_set_model(config_template *t, const char *name, const char *value) {
    if (!strcmp(name, "input_size")) {
        if (config_parse_size(value, &t->input_w, &t->input_h) < 0)
            return ote_err(OTE_EINVAL, "%s:%d: model.input_size: %s, got '%s'", t->path, t->model_line, config_size_rule,
                           value);
        return 0;
    }
    if (!strcmp(name, "seed")) {
        double v;
        if (config_parse_text(CONFIG_INTEGER, value, &v) < 0 || v < 0)
            return ote_err(OTE_EINVAL, "%s:%d: model.seed: expected a non-negative integer, got '%s'", t->path,
                           t->model_line, value);
        t->seed = (uint64_t)v;
        return 0;
    }
    if (!strcmp(name, "tf_padding")) {
        double v;
        if (config_parse_text(CONFIG_BOOLEAN, value, &v) < 0)
            return ote_err(OTE_EINVAL, "%s:%d: model.tf_padding: expected true/false/1/0, got '%s'", t->path,
                           t->model_line, value);
        t->tf_padding = v != 0;
        return 0;
    }
    if (!strcmp(name, "backbone")) {
        if (!strcmp(value, "mobilenetv2_w1")) t->backbone = 0;
        else if (!strcmp(value, "torchvision")) t->backbone = 1;
        else
            return ote_err(OTE_EINVAL, "%s:%d: model.backbone: expected mobilenetv2_w1 or torchvision, got '%s'",
                           t->path, t->model_line, value);
        return 0;
    }
    if (!strcmp(name, "pretrained_backbone")) {
        if (strlen(value) >= sizeof t->pretrained_backbone)
            return ote_err(OTE_EINVAL, "model.pretrained_backbone: path too long");
        snprintf(t->pretrained_backbone, sizeof t->pretrained_backbone, "%s", strcmp(value, "none") ? value : "");
        return 0;
    }
    return ote_err(OTE_EINVAL,
                   "params: unknown key 'model.%s' = '%s' (%s: model keys: input_size, backbone, tf_padding, "
                   "pretrained_backbone, seed)",
                   name, value, t->path);
}

int config_set(config_template *t, const char *key, const char *value) {
    if (!strncmp(key, "model.", 6)) return config_set_model(t, key + 6, value);
    config_hparam *h = NULL;
    for (int i = 0; i < t->n_hp; i++)
        if (!strcmp(t->hp[i].key, key)) h = &t->hp[i];
    if (!h || h->affects == CONFIG_AFFECTS_NONE) {
        /* OTE exposes only entries that affect training or inference as `params`. */
        char known[1024] = "";
        size_t len = 0;
        for (int i = 0; i < t->n_hp && len < sizeof known - 1; i++)
            if (t->hp[i].affects != CONFIG_AFFECTS_NONE)
                len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", t->hp[i].key);
        if (h)
            return ote_err(OTE_EINVAL, "%s:%d: params: '%s' = '%s' is not a params key (affects_outcome_of NONE)",
                           t->path, h->line, key, value);
        return ote_err(OTE_EINVAL, "params: unknown key '%s' = '%s' (%s: known: %s, model.input_size, model.seed)",
                       key, value, t->path, known);
    }
    double v;
    if (config_parse_text(h->type, value, &v) < 0)
        return ote_err(OTE_EINVAL, "%s:%d: %s: expected %s, got '%s'", t->path, h->line, h->key, config_type_name(h->type),
                       value);
    CHECK(config_check_range(t, h, v, value));
    h->value = v;
    config_sync(t);
    return 0;
}

int config_apply_params(config_template *t, int argc, char *const *argv) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            return ote_err(OTE_EINVAL, "params: expected --group.key VALUE, got '%s'", a);
        char key[CONFIG_KEY_LEN];
        const char *eq = strchr(a + 2, '=');
        const char *value;
        size_t klen = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (klen >= sizeof key) return ote_err(OTE_EINVAL, "params: key too long: '%s'", a);
        memcpy(key, a + 2, klen);
        key[klen] = '\0';
        if (eq) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc) return ote_err(OTE_EINVAL, "params: --%s needs a value", key);
            value = argv[++i];
        }
        CHECK(config_set(t, key, value));
    }
    return 0;
}

int config_pretrained_path(const config_template *t, char *buf, size_t n) {
    if (!t->pretrained_backbone[0]) return 0;
    int w = t->pretrained_backbone[0] == '/' ? snprintf(buf, n, "%s", t->pretrained_backbone)
                                             : snprintf(buf, n, "%s/%s", t->dir, t->pretrained_backbone);
    if (w < 0 || (size_t)w >= n) return ote_err(OTE_EINVAL, "model.pretrained_backbone: path too long");
    return w;
}

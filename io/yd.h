/* yd.h - YAML documents (prefix yd_), the config module: a YAML file parsed once (libyaml) into
 * a small tree of maps, sequences and scalars that remembers the line of every node, plus lookup
 * helpers and typed getters whose errors name the file, the line and the key:
 *
 *     hpo_config.yaml:7: learning_parameters.learning_rate: range: expected a number, got 'abc'
 *
 * This is the only file in the project that includes <yaml.h>. It knows nothing about what the
 * keys mean (hpo_config.yaml, model templates, ...): callers check the keys they expect.
 *
 * Ownership: a yd_doc owns every node, key and string below it; yd_free() releases all of it.
 * Invariants: map keys are scalars (kept as strings, in file order, duplicates rejected at load);
 * anchors/aliases are rejected (no config we read needs them); lines are 1-based.
 */
#ifndef OTE_IO_YD_H
#define OTE_IO_YD_H

typedef enum yd_kind { YD_SCALAR = 0, YD_MAP = 1, YD_SEQ = 2 } yd_kind;

typedef struct yd_node {
    yd_kind kind;
    int line;              /* 1-based line where the node starts */
    char *str;             /* YD_SCALAR: the text as written (unquoted), never NULL */
    int quoted;            /* YD_SCALAR: written in quotes (so it is a string, never a number) */
    int n;                 /* YD_MAP / YD_SEQ: number of children */
    char **keys;           /* YD_MAP: n keys */
    int *key_lines;        /* YD_MAP: line of each key */
    struct yd_node **items; /* n children (map values or sequence items) */
} yd_node;

typedef struct yd_doc {
    char *file;    /* name used in messages (the path given to yd_load_file) */
    yd_node *root; /* NULL for an empty document */
} yd_doc;

/* Parses a file / an in-memory text (name is used in messages). 0 or OTE_EIO / OTE_EPARSE. */
int yd_load_file(yd_doc *d, const char *path);
int yd_load_string(yd_doc *d, const char *text, const char *name);
void yd_free(yd_doc *d);

/* Child of a map by key (NULL if absent or if m is not a map). */
const yd_node *yd_map_get(const yd_node *m, const char *key);
/* Index of a key in a map, -1 if absent. */
int yd_map_index(const yd_node *m, const char *key);

/* Kind name for messages: "a map", "a list", "a scalar". */
const char *yd_kind_name(yd_kind k);

/* Typed getters. `key` is the key path used in the message (free text, e.g. "hp_space: x: range").
 * They return 0 or OTE_EINVAL with "<file>:<line>: <key>: expected ..., got '<text>'". */
int yd_expect(const yd_doc *d, const yd_node *n, const char *key, yd_kind kind);
int yd_get_double(const yd_doc *d, const yd_node *n, const char *key, double *out);
int yd_get_long(const yd_doc *d, const yd_node *n, const char *key, long *out);
int yd_get_bool(const yd_doc *d, const yd_node *n, const char *key, int *out);
int yd_get_str(const yd_doc *d, const yd_node *n, const char *key, const char **out);
/* Is this scalar an unquoted YAML number (int or float)? */
int yd_is_number(const yd_node *n);
/* Is this scalar an unquoted integer (no '.', no exponent)? */
int yd_is_integer(const yd_node *n);

/* Every key of map m must be in the NULL-terminated list `allowed`; otherwise OTE_EINVAL with
 * "<file>:<line>: <where>: unknown key '<k>' (expected one of: a, b, ...)". */
int yd_check_keys(const yd_doc *d, const yd_node *m, const char *where, const char *const *allowed);

/* Formats an error at a node: "<file>:<line>: <msg>" and returns code. */
int yd_err(const yd_doc *d, int line, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif

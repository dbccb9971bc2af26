/* yd.c - YAML documents (prefix yd_): YAML -> yd_node tree with line numbers, built from
 * libyaml's event stream.
 *
 * Only the first document of a stream is read. Anchors and aliases are rejected so a node has
 * exactly one owner. Numbers are recognised the way PyYAML's resolver does for the forms configs
 * use (123, -1.5, 1e-3, .5, 1.0e+2); "None"/"null"/"~" stay strings for callers to interpret
 * (OTE's `early_stop: None` is the string "None").
 */
#include "io/yd.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "engine/ote.h"

int yd_err(const yd_doc *d, int line, int code, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ote_err(code, "%s:%d: %s", d && d->file ? d->file : "<yaml>", line, msg);
}

static void node_free(yd_node *n) {
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        node_free(n->items[i]);
        if (n->keys) free(n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->key_lines);
    free(n->str);
    free(n);
}

void yd_free(yd_doc *d) {
    if (!d) return;
    node_free(d->root);
    free(d->file);
    d->root = NULL;
    d->file = NULL;
}

static yd_node *node_new(yd_kind k, int line) {
    yd_node *n = calloc(1, sizeof *n);
    if (n) {
        n->kind = k;
        n->line = line;
    }
    return n;
}

static int node_push(yd_node *p, char *key, int key_line, yd_node *child) {
    char **nk = NULL;
    int *nl = NULL;
    yd_node **ni = realloc(p->items, (size_t)(p->n + 1) * sizeof *ni);
    if (!ni) return OTE_ENOMEM;
    p->items = ni;
    if (p->kind == YD_MAP) {
        nk = realloc(p->keys, (size_t)(p->n + 1) * sizeof *nk);
        if (!nk) return OTE_ENOMEM;
        p->keys = nk;
        nl = realloc(p->key_lines, (size_t)(p->n + 1) * sizeof *nl);
        if (!nl) return OTE_ENOMEM;
        p->key_lines = nl;
        p->keys[p->n] = key;
        p->key_lines[p->n] = key_line;
    }
    p->items[p->n++] = child;
    return 0;
}

/* Parses one node whose first event is `ev` (already taken from the parser). */
static int parse_node(yd_doc *d, yaml_parser_t *ps, yaml_event_t *ev, yd_node **out, int depth) {
    int line = (int)ev->start_mark.line + 1;
    *out = NULL;
    if (depth > 64) return yd_err(d, line, OTE_EPARSE, "nesting deeper than 64 levels");
    switch (ev->type) {
    case YAML_ALIAS_EVENT: return yd_err(d, line, OTE_EPARSE, "aliases are not supported");
    case YAML_SCALAR_EVENT: {
        if (ev->data.scalar.anchor) return yd_err(d, line, OTE_EPARSE, "anchors are not supported");
        yd_node *n = node_new(YD_SCALAR, line);
        if (!n) return OTE_ENOMEM;
        n->str = malloc(ev->data.scalar.length + 1);
        if (!n->str) {
            free(n);
            return OTE_ENOMEM;
        }
        memcpy(n->str, ev->data.scalar.value, ev->data.scalar.length);
        n->str[ev->data.scalar.length] = 0;
        n->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        *out = n;
        return 0;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        if ((is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor))
            return yd_err(d, line, OTE_EPARSE, "anchors are not supported");
        yd_node *n = node_new(is_map ? YD_MAP : YD_SEQ, line);
        if (!n) return OTE_ENOMEM;
        for (;;) {
            yaml_event_t e;
            if (!yaml_parser_parse(ps, &e)) {
                int s = yd_err(d, (int)ps->problem_mark.line + 1, OTE_EPARSE, "%s",
                               ps->problem ? ps->problem : "syntax error");
                node_free(n);
                return s;
            }
            if (e.type == YAML_MAPPING_END_EVENT || e.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&e);
                break;
            }
            char *key = NULL;
            int key_line = (int)e.start_mark.line + 1;
            if (is_map) {
                if (e.type != YAML_SCALAR_EVENT) {
                    yaml_event_delete(&e);
                    node_free(n);
                    return yd_err(d, key_line, OTE_EPARSE, "map keys must be plain scalars");
                }
                key = strndup((const char *)e.data.scalar.value, e.data.scalar.length);
                yaml_event_delete(&e);
                if (!key) {
                    node_free(n);
                    return OTE_ENOMEM;
                }
                if (yd_map_index(n, key) >= 0) {
                    int s = yd_err(d, key_line, OTE_EPARSE, "duplicate key '%s'", key);
                    free(key);
                    node_free(n);
                    return s;
                }
                if (!yaml_parser_parse(ps, &e)) {
                    int s = yd_err(d, (int)ps->problem_mark.line + 1, OTE_EPARSE, "%s",
                                   ps->problem ? ps->problem : "syntax error");
                    free(key);
                    node_free(n);
                    return s;
                }
            }
            yd_node *child = NULL;
            int s = parse_node(d, ps, &e, &child, depth + 1);
            yaml_event_delete(&e);
            if (s == 0) s = node_push(n, key, key_line, child);
            if (s < 0) {
                free(key);
                node_free(child);
                node_free(n);
                return s;
            }
        }
        *out = n;
        return 0;
    }
    default: return yd_err(d, line, OTE_EPARSE, "unexpected YAML event");
    }
}

static int load(yd_doc *d, const unsigned char *text, size_t len, const char *name) {
    memset(d, 0, sizeof *d);
    d->file = strdup(name ? name : "<yaml>");
    if (!d->file) return OTE_ENOMEM;
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps)) return ote_err(OTE_ENOMEM, "%s: cannot create YAML parser", d->file);
    yaml_parser_set_input_string(&ps, text, len);
    int s = 0, done = 0;
    while (!done && s == 0) {
        yaml_event_t e;
        if (!yaml_parser_parse(&ps, &e)) {
            s = yd_err(d, (int)ps.problem_mark.line + 1, OTE_EPARSE, "%s",
                       ps.problem ? ps.problem : "syntax error");
            break;
        }
        switch (e.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT: break;
        case YAML_DOCUMENT_END_EVENT:
        case YAML_STREAM_END_EVENT: done = 1; break;
        default:
            if (d->root) {
                s = yd_err(d, (int)e.start_mark.line + 1, OTE_EPARSE, "more than one root node");
            } else {
                s = parse_node(d, &ps, &e, &d->root, 0);
            }
        }
        yaml_event_delete(&e);
    }
    yaml_parser_delete(&ps);
    if (s < 0) {
        char *f = d->file;
        d->file = NULL;
        node_free(d->root);
        d->root = NULL;
        free(f);
    }
    return s;
}

int yd_load_string(yd_doc *d, const char *text, const char *name) {
    return load(d, (const unsigned char *)text, strlen(text), name);
}

int yd_load_file(yd_doc *d, const char *path) {
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "rb");
    if (!f) return ote_err(OTE_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return OTE_ENOMEM;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (len < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) free(buf);
        buf = nb;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return ote_err(OTE_EIO, "%s: read error", path);
    }
    int s = load(d, (const unsigned char *)buf, len, path);
    free(buf);
    return s;
}

int yd_map_index(const yd_node *m, const char *key) {
    if (!m || m->kind != YD_MAP) return -1;
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->keys[i], key)) return i;
    return -1;
}

const yd_node *yd_map_get(const yd_node *m, const char *key) {
    int i = yd_map_index(m, key);
    return i < 0 ? NULL : m->items[i];
}

const char *yd_kind_name(yd_kind k) {
    return k == YD_MAP ? "a map" : k == YD_SEQ ? "a list" : "a scalar";
}

static const char *shown(const yd_node *n) {
    return n->kind == YD_SCALAR ? n->str : n->kind == YD_MAP ? "<map>" : "<list>";
}

int yd_expect(const yd_doc *d, const yd_node *n, const char *key, yd_kind kind) {
    if (!n) return ote_err(OTE_EINVAL, "%s: %s: missing", d->file, key);
    if (n->kind != kind)
        return yd_err(d, n->line, OTE_EINVAL, "%s: expected %s, got '%s'", key, yd_kind_name(kind), shown(n));
    return 0;
}

/* YAML 1.1 / PyYAML-style number syntax: [-+]? digits [. digits] [e[-+]digits], or .5 forms. */
static int number_syntax(const char *s, int *is_int) {
    const char *p = s;
    int digits = 0, dot = 0, ex = 0;
    if (*p == '+' || *p == '-') p++;
    while (isdigit((unsigned char)*p)) p++, digits++;
    if (*p == '.') {
        dot = 1;
        p++;
        while (isdigit((unsigned char)*p)) p++, digits++;
    }
    if (!digits) return 0;
    if (*p == 'e' || *p == 'E') {
        ex = 1;
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return 0;
        while (isdigit((unsigned char)*p)) p++;
    }
    if (*p) return 0;
    *is_int = !dot && !ex;
    return 1;
}

int yd_is_number(const yd_node *n) {
    int i;
    return n && n->kind == YD_SCALAR && !n->quoted && number_syntax(n->str, &i);
}

int yd_is_integer(const yd_node *n) {
    int i = 0;
    return n && n->kind == YD_SCALAR && !n->quoted && number_syntax(n->str, &i) && i;
}

int yd_get_double(const yd_doc *d, const yd_node *n, const char *key, double *out) {
    if (!n) return ote_err(OTE_EINVAL, "%s: %s: missing", d->file, key);
    if (!yd_is_number(n))
        return yd_err(d, n->line, OTE_EINVAL, "%s: expected a number, got '%s'", key, shown(n));
    errno = 0;
    double v = strtod(n->str, NULL);
    if (errno == ERANGE || !isfinite(v))
        return yd_err(d, n->line, OTE_EINVAL, "%s: number out of range: '%s'", key, n->str);
    *out = v;
    return 0;
}

int yd_get_long(const yd_doc *d, const yd_node *n, const char *key, long *out) {
    if (!n) return ote_err(OTE_EINVAL, "%s: %s: missing", d->file, key);
    if (!yd_is_integer(n))
        return yd_err(d, n->line, OTE_EINVAL, "%s: expected an integer, got '%s'", key, shown(n));
    errno = 0;
    long v = strtol(n->str, NULL, 10);
    if (errno == ERANGE) return yd_err(d, n->line, OTE_EINVAL, "%s: integer out of range: '%s'", key, n->str);
    *out = v;
    return 0;
}

int yd_get_bool(const yd_doc *d, const yd_node *n, const char *key, int *out) {
    if (!n) return ote_err(OTE_EINVAL, "%s: %s: missing", d->file, key);
    if (n->kind == YD_SCALAR && !n->quoted) {
        static const char *const t[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On", NULL};
        static const char *const f[] = {"false", "False", "FALSE", "no", "No", "off", "Off", NULL};
        for (int i = 0; t[i]; i++)
            if (!strcmp(n->str, t[i])) return *out = 1, 0;
        for (int i = 0; f[i]; i++)
            if (!strcmp(n->str, f[i])) return *out = 0, 0;
    }
    return yd_err(d, n->line, OTE_EINVAL, "%s: expected true or false, got '%s'", key, shown(n));
}

int yd_get_str(const yd_doc *d, const yd_node *n, const char *key, const char **out) {
    CHECK(yd_expect(d, n, key, YD_SCALAR));
    *out = n->str;
    return 0;
}

int yd_check_keys(const yd_doc *d, const yd_node *m, const char *where, const char *const *allowed) {
    CHECK(yd_expect(d, m, where, YD_MAP));
    for (int i = 0; i < m->n; i++) {
        int ok = 0;
        for (int j = 0; allowed[j] && !ok; j++) ok = !strcmp(m->keys[i], allowed[j]);
        if (!ok) {
            char list[512];
            size_t len = 0;
            list[0] = 0;
            for (int j = 0; allowed[j] && len + 2 < sizeof list; j++)
                len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", j ? ", " : "", allowed[j]);
            return yd_err(d, m->key_lines[i], OTE_EINVAL, "%s: unknown key '%s' (expected one of: %s)",
                          where, m->keys[i], list);
        }
    }
    return 0;
}

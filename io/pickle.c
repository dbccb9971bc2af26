/* pickle.c - the pickle writer and interpreter (see pickle.h).
 *
 * Owns: the writer's buffer; the VM's stack, marks, memo and object pool (chunks of VM_CHUNK
 * objects, so a pickle of n opcodes costs O(n) small allocations at most and one walk to free).
 * Invariants: m->pos <= m->n before every read (vm_need checks the bytes an opcode takes); stack
 * items above the last mark are the only ones an opcode may pop.
 */
#include "io/pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ote.h"

/* ---------------------------------------------------------------- writer */

void pickle_writer_init(pickle_writer *w) {
    memset(w, 0, sizeof *w);
    for (int i = 0; i < PICKLE_MEMO_SLOTS; i++) w->memo[i] = -1;
}

void pickle_writer_free(pickle_writer *w) { bytes_free(&w->b); }

void pickle_op(pickle_writer *w, unsigned op) { bytes_u8(&w->b, op); }

void pickle_proto(pickle_writer *w, unsigned version) {
    pickle_op(w, PICKLE_OP_PROTO);
    bytes_u8(&w->b, version);
}

static void pickle_memo_put(pickle_writer *w, int slot) {
    if (slot < 0 || slot >= PICKLE_MEMO_SLOTS) return;
    w->memo[slot] = (int)w->next_memo;
    pickle_op(w, PICKLE_OP_BINPUT);
    bytes_u8(&w->b, w->next_memo++); /* < 256: at most PICKLE_MEMO_SLOTS memoised objects */
}
static int pickle_memo_get(pickle_writer *w, int slot) {
    if (slot < 0 || slot >= PICKLE_MEMO_SLOTS || w->memo[slot] < 0) return 0;
    pickle_op(w, PICKLE_OP_BINGET);
    bytes_u8(&w->b, (unsigned)w->memo[slot]);
    return 1;
}
void pickle_str_n(pickle_writer *w, const char *s, size_t n) {
    pickle_op(w, PICKLE_OP_BINUNICODE);
    bytes_u32le(&w->b, (uint32_t)n);
    bytes_put(&w->b, s, n);
}
void pickle_str(pickle_writer *w, const char *s) { pickle_str_n(w, s, strlen(s)); }
void pickle_str_memo(pickle_writer *w, int slot, const char *s) {
    if (pickle_memo_get(w, slot)) return;
    pickle_str(w, s);
    pickle_memo_put(w, slot);
}
void pickle_global(pickle_writer *w, int slot, const char *mod, const char *name) {
    if (pickle_memo_get(w, slot)) return;
    pickle_op(w, PICKLE_OP_GLOBAL);
    bytes_str(&w->b, mod);
    bytes_u8(&w->b, '\n');
    bytes_str(&w->b, name);
    bytes_u8(&w->b, '\n');
    pickle_memo_put(w, slot);
}
void pickle_int(pickle_writer *w, int64_t v) {
    if (v >= 0 && v < 256) {
        pickle_op(w, PICKLE_OP_BININT1);
        bytes_u8(&w->b, (unsigned)v);
    } else if (v >= 0 && v < 65536) {
        pickle_op(w, PICKLE_OP_BININT2);
        bytes_u16le(&w->b, (unsigned)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        pickle_op(w, PICKLE_OP_BININT);
        bytes_u32le(&w->b, (uint32_t)(int32_t)v);
    } else {
        /* LONG1: minimal little-endian two's complement. */
        uint8_t by[8];
        uint64_t u = (uint64_t)v;
        for (int i = 0; i < 8; i++) by[i] = (uint8_t)(u >> (8 * i));
        int n = 8;
        while (n > 1 && ((by[n - 1] == 0 && !(by[n - 2] & 0x80)) || (by[n - 1] == 0xff && (by[n - 2] & 0x80)))) n--;
        pickle_op(w, PICKLE_OP_LONG1);
        bytes_u8(&w->b, (unsigned)n);
        bytes_put(&w->b, by, (size_t)n);
    }
}
void pickle_float(pickle_writer *w, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    pickle_op(w, PICKLE_OP_BINFLOAT);
    for (int i = 7; i >= 0; i--) bytes_u8(&w->b, (unsigned)(u >> (8 * i)) & 0xffu); /* big-endian */
}
void pickle_int_tuple(pickle_writer *w, const int64_t *v, int n) {
    if (n == 0) {
        pickle_op(w, PICKLE_OP_EMPTY_TUPLE);
        return;
    }
    if (n > 3) pickle_op(w, PICKLE_OP_MARK);
    for (int i = 0; i < n; i++) pickle_int(w, v[i]);
    pickle_op(w, n == 1 ? PICKLE_OP_TUPLE1 : n == 2 ? PICKLE_OP_TUPLE2 : n == 3 ? PICKLE_OP_TUPLE3 : PICKLE_OP_TUPLE);
}

/* ---------------------------------------------------------------- interpreter */

const char *pickle_kind_name(int k) {
    static const char *const names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple", "list",
                                        "dict", "class/function", "object"};
    return k >= 0 && k <= PICKLE_OBJECT ? names[k] : "?";
}

#define VM_CHUNK 1024
typedef struct pickle_chunk {
    struct pickle_chunk *next;
    size_t used;
    pickle_obj o[VM_CHUNK];
} pickle_chunk;

void pickle_vm_free(pickle_vm *m) {
    for (pickle_chunk *c = m->chunks; c;) {
        for (size_t i = 0; i < c->used; i++) {
            int k = c->o[i].kind;
            if (k == PICKLE_TUPLE || k == PICKLE_LIST || k == PICKLE_DICT) free(c->o[i].u.seq.v);
        }
        pickle_chunk *nx = c->next;
        free(c);
        c = nx;
    }
    free(m->stack);
    free(m->marks);
    free(m->memo);
}

int pickle_oom(pickle_vm *m) { return ote_err(OTE_ENOMEM, "%s: out of memory unpickling", m->what); }
int pickle_bad(pickle_vm *m, const char *why) {
    return ote_err(OTE_EPARSE, "%s: %s (opcode 0x%02x at offset %zu)", m->what, why, m->p[m->op_pos], m->op_pos);
}

pickle_obj *pickle_new(pickle_vm *m, int kind) {
    if (!m->chunks || m->chunks->used == VM_CHUNK) {
        pickle_chunk *c = malloc(sizeof *c);
        if (!c) return NULL;
        c->next = m->chunks;
        c->used = 0;
        m->chunks = c;
    }
    pickle_obj *o = &m->chunks->o[m->chunks->used++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    return o;
}

static int seq_push(pickle_obj *s, pickle_obj *x) {
    if (s->u.seq.n == s->u.seq.cap) {
        size_t nc = s->u.seq.cap ? 2 * s->u.seq.cap : 4;
        pickle_obj **nv = realloc(s->u.seq.v, nc * sizeof *nv);
        if (!nv) return -1;
        s->u.seq.v = nv;
        s->u.seq.cap = nc;
    }
    s->u.seq.v[s->u.seq.n++] = x;
    return 0;
}

static size_t vm_base(const pickle_vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static int vm_push(pickle_vm *m, pickle_obj *o) {
    if (!o) return pickle_oom(m);
    if (m->sp == m->scap) {
        size_t nc = m->scap ? 2 * m->scap : 64;
        pickle_obj **ns = realloc(m->stack, nc * sizeof *ns);
        if (!ns) return pickle_oom(m);
        m->stack = ns;
        m->scap = nc;
    }
    m->stack[m->sp++] = o;
    return OTE_OK;
}

static int vm_pop(pickle_vm *m, pickle_obj **o) {
    if (m->sp <= vm_base(m)) return pickle_bad(m, "stack underflow");
    *o = m->stack[--m->sp];
    return OTE_OK;
}

/* Pops the items above the last MARK: they are stack[*start .. old sp). */
static int vm_pop_mark(pickle_vm *m, size_t *start, size_t *count) {
    if (!m->nmarks) return pickle_bad(m, "no MARK on the stack");
    *start = m->marks[--m->nmarks];
    *count = m->sp - *start;
    m->sp = *start;
    return OTE_OK;
}

static int vm_need(pickle_vm *m, size_t k) {
    if (m->n - m->pos < k) return ote_err(OTE_EPARSE, "%s truncated (opcode 0x%02x at offset %zu needs %zu more bytes)",
                                          m->what, m->p[m->op_pos], m->op_pos, k);
    return OTE_OK;
}

static int vm_memo_set(pickle_vm *m, uint64_t idx) {
    if (m->sp <= vm_base(m)) return pickle_bad(m, "memo store with an empty stack");
    /* torch numbers memo entries 0, 1, 2, ...; any index is < the number of opcodes, hence < n */
    if (idx > m->n) return pickle_bad(m, "memo index out of range");
    if (idx >= m->memo_cap) {
        size_t nc = m->memo_cap ? m->memo_cap : 64;
        while (nc <= idx) nc *= 2;
        pickle_obj **nm = realloc(m->memo, nc * sizeof *nm);
        if (!nm) return pickle_oom(m);
        memset(nm + m->memo_cap, 0, (nc - m->memo_cap) * sizeof *nm);
        m->memo = nm;
        m->memo_cap = nc;
    }
    if (!m->memo[idx]) m->memo_count++;
    m->memo[idx] = m->stack[m->sp - 1];
    return OTE_OK;
}

static int vm_memo_get(pickle_vm *m, uint64_t idx) {
    if (idx >= m->memo_cap || !m->memo[idx]) return pickle_bad(m, "memo key not defined");
    return vm_push(m, m->memo[idx]);
}

int pickle_str_is(const pickle_obj *o, const char *s) {
    return o && (o->kind == PICKLE_STR || o->kind == PICKLE_BYTES) && o->u.str.n == strlen(s) && !memcmp(o->u.str.p, s, o->u.str.n);
}
int pickle_glob_is(const pickle_obj *o, const char *mod, const char *name) {
    return o && o->kind == PICKLE_GLOBAL && o->u.glob.ml == strlen(mod) && !memcmp(o->u.glob.m, mod, o->u.glob.ml) &&
           o->u.glob.nl == strlen(name) && !memcmp(o->u.glob.nm, name, o->u.glob.nl);
}

/* Reads a '\n'-terminated line (text opcodes); *len excludes the newline. */
static int vm_line(pickle_vm *m, const char **s, size_t *len) {
    const uint8_t *nl = m->pos < m->n ? memchr(m->p + m->pos, '\n', m->n - m->pos) : NULL;
    if (!nl) return ote_err(OTE_EPARSE, "%s truncated (unterminated line at offset %zu)", m->what, m->pos);
    *s = (const char *)m->p + m->pos;
    *len = (size_t)(nl - (m->p + m->pos));
    m->pos += *len + 1;
    return OTE_OK;
}

static int vm_dec(pickle_vm *m, uint64_t *v) {
    const char *s;
    size_t l;
    CHECK(vm_line(m, &s, &l));
    uint64_t r = 0;
    if (l == 0 || l > 18) return pickle_bad(m, "bad decimal memo key");
    for (size_t i = 0; i < l; i++) {
        if (s[i] < '0' || s[i] > '9') return pickle_bad(m, "bad decimal memo key");
        r = r * 10 + (uint64_t)(s[i] - '0');
    }
    *v = r;
    return OTE_OK;
}

static int vm_push_int(pickle_vm *m, int64_t v) {
    pickle_obj *o = pickle_new(m, PICKLE_INT);
    if (o) o->u.i = v;
    return vm_push(m, o);
}

static int vm_push_str(pickle_vm *m, int kind, size_t len) {
    CHECK(vm_need(m, len));
    pickle_obj *o = pickle_new(m, kind);
    if (o) {
        o->u.str.p = (const char *)m->p + m->pos;
        o->u.str.n = len;
    }
    m->pos += len;
    return vm_push(m, o);
}

static int vm_long(pickle_vm *m, size_t nb) {
    CHECK(vm_need(m, nb));
    if (nb > 8) return pickle_bad(m, "integer wider than 64 bits");
    uint64_t u = 0;
    for (size_t i = 0; i < nb; i++) u |= (uint64_t)m->p[m->pos + i] << (8 * i);
    if (nb > 0 && nb < 8 && (m->p[m->pos + nb - 1] & 0x80)) u |= ~0ull << (8 * nb); /* sign-extend */
    m->pos += nb;
    int64_t v;
    memcpy(&v, &u, 8);
    return vm_push_int(m, v);
}

/* REDUCE / NEWOBJ: the hook first; then dict(pairs) / OrderedDict(pairs) build a dict, anything
 * else an opaque object (it fails later only where a dict or a hook's object is needed). */
static int vm_call(pickle_vm *m, pickle_obj *fn, pickle_obj *args, pickle_obj **out) {
    *out = NULL;
    if (m->hooks.call) {
        int r = m->hooks.call(m->hooks.ctx, m, fn, args, out);
        if (r < 0) return r;
        if (r > 0) return *out ? OTE_OK : pickle_oom(m);
    }
    size_t na = args->kind == PICKLE_TUPLE ? args->u.seq.n : 0;
    pickle_obj **a = args->kind == PICKLE_TUPLE ? args->u.seq.v : NULL;
    if (pickle_glob_is(fn, "collections", "OrderedDict") || pickle_glob_is(fn, "builtins", "dict")) {
        pickle_obj *d = pickle_new(m, PICKLE_DICT);
        if (!d) return pickle_oom(m);
        if (na == 1 && (a[0]->kind == PICKLE_LIST || a[0]->kind == PICKLE_TUPLE)) {
            for (size_t i = 0; i < a[0]->u.seq.n; i++) {
                pickle_obj *kv = a[0]->u.seq.v[i];
                if ((kv->kind == PICKLE_TUPLE || kv->kind == PICKLE_LIST) && kv->u.seq.n == 2)
                    if (seq_push(d, kv->u.seq.v[0]) || seq_push(d, kv->u.seq.v[1])) return pickle_oom(m);
            }
        }
        *out = d;
        return OTE_OK;
    }
    pickle_obj *o = pickle_new(m, PICKLE_OBJECT);
    if (!o) return pickle_oom(m);
    o->u.obj.cls = fn;
    *out = o;
    return OTE_OK;
}

static int vm_persid(pickle_vm *m, pickle_obj *pid) {
    if (!m->hooks.persistent_load) return pickle_bad(m, "a persistent id, but no persistent_load");
    pickle_obj *o = NULL;
    CHECK(m->hooks.persistent_load(m->hooks.ctx, m, pid, &o));
    return vm_push(m, o);
}

static int vm_run(pickle_vm *m, pickle_obj **result) {
    while (m->pos < m->n) {
        m->op_pos = m->pos;
        unsigned op = m->p[m->pos++];
        pickle_obj *a = NULL, *b = NULL, *o = NULL;
        size_t start = 0, cnt = 0;
        switch (op) {
        case PICKLE_OP_PROTO:
            CHECK(vm_need(m, 1));
            if (m->p[m->pos] > 5) return pickle_bad(m, "unsupported pickle protocol");
            m->pos++;
            break;
        case PICKLE_OP_FRAME: CHECK(vm_need(m, 8)); m->pos += 8; break;
        case PICKLE_OP_STOP:
            CHECK(vm_pop(m, result));
            return OTE_OK;
        case PICKLE_OP_MARK:
            if (m->nmarks == m->mcap) {
                size_t nc = m->mcap ? 2 * m->mcap : 16;
                size_t *nm = realloc(m->marks, nc * sizeof *nm);
                if (!nm) return pickle_oom(m);
                m->marks = nm;
                m->mcap = nc;
            }
            m->marks[m->nmarks++] = m->sp;
            break;
        case PICKLE_OP_POP:
            if (m->sp > vm_base(m)) m->sp--;
            else if (m->nmarks) m->nmarks--; /* CPython: POP on an empty frame drops the mark */
            else return pickle_bad(m, "stack underflow");
            break;
        case PICKLE_OP_POP_MARK: CHECK(vm_pop_mark(m, &start, &cnt)); break;
        case PICKLE_OP_DUP:
            if (m->sp <= vm_base(m)) return pickle_bad(m, "stack underflow");
            CHECK(vm_push(m, m->stack[m->sp - 1]));
            break;
        case PICKLE_OP_NONE: CHECK(vm_push(m, pickle_new(m, PICKLE_NONE))); break;
        case PICKLE_OP_NEWTRUE:
        case PICKLE_OP_NEWFALSE:
            o = pickle_new(m, PICKLE_BOOL);
            if (o) o->u.i = op == PICKLE_OP_NEWTRUE;
            CHECK(vm_push(m, o));
            break;
        case PICKLE_OP_BININT:
            CHECK(vm_need(m, 4));
            CHECK(vm_push_int(m, (int64_t)(int32_t)bytes_rd32le(m->p + m->pos)));
            m->pos += 4;
            break;
        case PICKLE_OP_BININT1:
            CHECK(vm_need(m, 1));
            CHECK(vm_push_int(m, m->p[m->pos]));
            m->pos += 1;
            break;
        case PICKLE_OP_BININT2:
            CHECK(vm_need(m, 2));
            CHECK(vm_push_int(m, bytes_rd16le(m->p + m->pos)));
            m->pos += 2;
            break;
        case PICKLE_OP_LONG1:
            CHECK(vm_need(m, 1));
            m->pos += 1;
            CHECK(vm_long(m, m->p[m->pos - 1]));
            break;
        case PICKLE_OP_LONG4:
            CHECK(vm_need(m, 4));
            m->pos += 4;
            CHECK(vm_long(m, bytes_rd32le(m->p + m->pos - 4)));
            break;
        case PICKLE_OP_BINFLOAT: {
            CHECK(vm_need(m, 8));
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = (u << 8) | m->p[m->pos + (size_t)i];
            m->pos += 8;
            o = pickle_new(m, PICKLE_FLOAT);
            if (o) memcpy(&o->u.f, &u, 8);
            CHECK(vm_push(m, o));
            break;
        }
        case PICKLE_OP_BINUNICODE:
        case PICKLE_OP_BINSTRING:
        case PICKLE_OP_BINBYTES:
            CHECK(vm_need(m, 4));
            m->pos += 4;
            CHECK(vm_push_str(m, op == PICKLE_OP_BINBYTES ? PICKLE_BYTES : PICKLE_STR, bytes_rd32le(m->p + m->pos - 4)));
            break;
        case PICKLE_OP_SHORT_BINUNICODE:
        case PICKLE_OP_SHORT_BINSTRING:
        case PICKLE_OP_SHORT_BINBYTES:
            CHECK(vm_need(m, 1));
            m->pos += 1;
            CHECK(vm_push_str(m, op == PICKLE_OP_SHORT_BINBYTES ? PICKLE_BYTES : PICKLE_STR, m->p[m->pos - 1]));
            break;
        case PICKLE_OP_BINUNICODE8:
        case PICKLE_OP_BINBYTES8: {
            CHECK(vm_need(m, 8));
            uint64_t l = bytes_rd64le(m->p + m->pos);
            m->pos += 8;
            if (l > m->n) return pickle_bad(m, "string length past end of data");
            CHECK(vm_push_str(m, op == PICKLE_OP_BINBYTES8 ? PICKLE_BYTES : PICKLE_STR, (size_t)l));
            break;
        }
        case PICKLE_OP_EMPTY_DICT: CHECK(vm_push(m, pickle_new(m, PICKLE_DICT))); break;
        case PICKLE_OP_EMPTY_LIST:
        case PICKLE_OP_EMPTY_SET: CHECK(vm_push(m, pickle_new(m, PICKLE_LIST))); break; /* a set is kept as a list */
        case PICKLE_OP_EMPTY_TUPLE: CHECK(vm_push(m, pickle_new(m, PICKLE_TUPLE))); break;
        case PICKLE_OP_TUPLE:
        case PICKLE_OP_LIST:
        case PICKLE_OP_DICT:
        case PICKLE_OP_FROZENSET:
            CHECK(vm_pop_mark(m, &start, &cnt));
            if (op == PICKLE_OP_DICT && cnt % 2) return pickle_bad(m, "odd number of items for a dict");
            o = pickle_new(m, op == PICKLE_OP_LIST ? PICKLE_LIST : op == PICKLE_OP_DICT ? PICKLE_DICT : PICKLE_TUPLE);
            if (!o) return pickle_oom(m);
            for (size_t i = 0; i < cnt; i++)
                if (seq_push(o, m->stack[start + i])) return pickle_oom(m);
            CHECK(vm_push(m, o));
            break;
        case PICKLE_OP_TUPLE1:
        case PICKLE_OP_TUPLE2:
        case PICKLE_OP_TUPLE3: {
            size_t k = op - PICKLE_OP_TUPLE1 + 1;
            if (m->sp - vm_base(m) < k) return pickle_bad(m, "stack underflow");
            o = pickle_new(m, PICKLE_TUPLE);
            if (!o) return pickle_oom(m);
            for (size_t i = 0; i < k; i++)
                if (seq_push(o, m->stack[m->sp - k + i])) return pickle_oom(m);
            m->sp -= k;
            CHECK(vm_push(m, o));
            break;
        }
        case PICKLE_OP_APPEND:
        case PICKLE_OP_SETITEM: {
            size_t k = op == PICKLE_OP_APPEND ? 1 : 2;
            if (m->sp - vm_base(m) < k + 1) return pickle_bad(m, "stack underflow");
            pickle_obj *tgt = m->stack[m->sp - k - 1];
            int want = op == PICKLE_OP_APPEND ? PICKLE_LIST : PICKLE_DICT;
            if (tgt->kind != want && tgt->kind != PICKLE_OBJECT)
                return pickle_bad(m, op == PICKLE_OP_APPEND ? "APPEND to a non-list" : "SETITEM on a non-dict");
            if (tgt->kind == want)
                for (size_t i = 0; i < k; i++)
                    if (seq_push(tgt, m->stack[m->sp - k + i])) return pickle_oom(m);
            m->sp -= k;
            break;
        }
        case PICKLE_OP_APPENDS:
        case PICKLE_OP_SETITEMS:
        case PICKLE_OP_ADDITEMS: {
            CHECK(vm_pop_mark(m, &start, &cnt));
            if (m->sp <= vm_base(m)) return pickle_bad(m, "stack underflow");
            pickle_obj *tgt = m->stack[m->sp - 1];
            int want = op == PICKLE_OP_SETITEMS ? PICKLE_DICT : PICKLE_LIST;
            if (op == PICKLE_OP_SETITEMS && cnt % 2) return pickle_bad(m, "odd number of items for SETITEMS");
            if (tgt->kind != want && tgt->kind != PICKLE_OBJECT)
                return pickle_bad(m, op == PICKLE_OP_SETITEMS ? "SETITEMS on a non-dict" : "APPENDS to a non-list");
            if (tgt->kind == want)
                for (size_t i = 0; i < cnt; i++)
                    if (seq_push(tgt, m->stack[start + i])) return pickle_oom(m);
            break;
        }
        case PICKLE_OP_BINPUT:
            CHECK(vm_need(m, 1));
            m->pos += 1;
            CHECK(vm_memo_set(m, m->p[m->pos - 1]));
            break;
        case PICKLE_OP_LONG_BINPUT:
            CHECK(vm_need(m, 4));
            m->pos += 4;
            CHECK(vm_memo_set(m, bytes_rd32le(m->p + m->pos - 4)));
            break;
        case PICKLE_OP_MEMOIZE: CHECK(vm_memo_set(m, m->memo_count)); break;
        case PICKLE_OP_PUT: {
            uint64_t k;
            CHECK(vm_dec(m, &k));
            CHECK(vm_memo_set(m, k));
            break;
        }
        case PICKLE_OP_BINGET:
            CHECK(vm_need(m, 1));
            m->pos += 1;
            CHECK(vm_memo_get(m, m->p[m->pos - 1]));
            break;
        case PICKLE_OP_LONG_BINGET:
            CHECK(vm_need(m, 4));
            m->pos += 4;
            CHECK(vm_memo_get(m, bytes_rd32le(m->p + m->pos - 4)));
            break;
        case PICKLE_OP_GET: {
            uint64_t k;
            CHECK(vm_dec(m, &k));
            CHECK(vm_memo_get(m, k));
            break;
        }
        case PICKLE_OP_GLOBAL: {
            const char *s1, *s2;
            size_t l1, l2;
            CHECK(vm_line(m, &s1, &l1));
            CHECK(vm_line(m, &s2, &l2));
            o = pickle_new(m, PICKLE_GLOBAL);
            if (o) {
                o->u.glob.m = s1;
                o->u.glob.ml = l1;
                o->u.glob.nm = s2;
                o->u.glob.nl = l2;
            }
            CHECK(vm_push(m, o));
            break;
        }
        case PICKLE_OP_STACK_GLOBAL:
            CHECK(vm_pop(m, &b));
            CHECK(vm_pop(m, &a));
            if (a->kind != PICKLE_STR || b->kind != PICKLE_STR) return pickle_bad(m, "STACK_GLOBAL needs two strings");
            o = pickle_new(m, PICKLE_GLOBAL);
            if (o) {
                o->u.glob.m = a->u.str.p;
                o->u.glob.ml = a->u.str.n;
                o->u.glob.nm = b->u.str.p;
                o->u.glob.nl = b->u.str.n;
            }
            CHECK(vm_push(m, o));
            break;
        case PICKLE_OP_REDUCE:
        case PICKLE_OP_NEWOBJ:
            CHECK(vm_pop(m, &b)); /* args */
            CHECK(vm_pop(m, &a)); /* callable / class */
            if (b->kind != PICKLE_TUPLE) return pickle_bad(m, "call arguments are not a tuple");
            CHECK(vm_call(m, a, b, &o));
            CHECK(vm_push(m, o));
            break;
        case PICKLE_OP_NEWOBJ_EX:
            CHECK(vm_pop(m, &o)); /* kwargs, ignored */
            CHECK(vm_pop(m, &b));
            CHECK(vm_pop(m, &a));
            if (b->kind != PICKLE_TUPLE) return pickle_bad(m, "call arguments are not a tuple");
            CHECK(vm_call(m, a, b, &o));
            CHECK(vm_push(m, o));
            break;
        case PICKLE_OP_BUILD:
            /* __setstate__: an OrderedDict's _metadata, a Parameter's state ... nothing we use. */
            CHECK(vm_pop(m, &b));
            if (m->sp <= vm_base(m)) return pickle_bad(m, "stack underflow");
            break;
        case PICKLE_OP_BINPERSID:
            CHECK(vm_pop(m, &a));
            CHECK(vm_persid(m, a));
            break;
        default: {
            char why[64];
            snprintf(why, sizeof why, "unsupported pickle opcode 0x%02x ('%c')", op, op >= 32 && op < 127 ? (int)op : '?');
            return pickle_bad(m, why);
        }
        }
    }
    return ote_err(OTE_EPARSE, "%s truncated (no STOP opcode)", m->what);
}


void pickle_vm_init(pickle_vm *m, const char *what, const pickle_hooks *hooks) {
    memset(m, 0, sizeof *m);
    m->what = what ? what : "pickle";
    if (hooks) m->hooks = *hooks;
}

int pickle_run(pickle_vm *m, const void *p, size_t n, pickle_obj **result) {
    *result = NULL;
    m->p = p;
    m->n = n;
    m->pos = m->op_pos = 0;
    return vm_run(m, result);
}

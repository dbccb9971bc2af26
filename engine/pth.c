/* pth.c - PyTorch checkpoint I/O (zip + pickle, as torch.save writes); see pth.h for the format.
 *
 * Owns: the pth_ckpt containers, a zip writer/reader for stored entries, a protocol-2 pickle
 * emitter and a small pickle VM. Invariants: every read of the input is bounds-checked against
 * the buffer (hostile files give an error, never a crash); the VM's object pool is freed in one
 * walk; data are written/read as little-endian (we refuse to run on a big-endian host rather
 * than silently produce wrong files).
 */
#include "engine/pth.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/status.h"

/* ---------------------------------------------------------------- small helpers */

static int host_is_le(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as zip requires. The table is built per
 * call into caller storage (256 entries, negligible) so there is no mutable global. */
static void crc_table(uint32_t t[256]) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
    }
}
static uint32_t crc_update(const uint32_t t[256], uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = t[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

/* Growable byte buffer; an allocation failure is sticky and checked once at the end. */
typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} bbuf;

static void bb_put(bbuf *b, const void *d, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->n) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc - b->n < n) {
            if (nc > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            nc *= 2;
        }
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void bb_u8(bbuf *b, unsigned v) {
    uint8_t x = (uint8_t)v;
    bb_put(b, &x, 1);
}
static void bb_u16(bbuf *b, unsigned v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    bb_put(b, x, 2);
}
static void bb_u32(bbuf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bb_put(b, x, 4);
}
static void bb_str(bbuf *b, const char *s) { bb_put(b, s, strlen(s)); }

static char *dup_n(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (!r) return NULL;
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

/* ---------------------------------------------------------------- the checkpoint container */

void pth_init(pth_ckpt *c) {
    memset(c, 0, sizeof *c);
    c->layout = PTH_LAYOUT_OTE;
    c->confidence_threshold = 0.35; /* OTE's default postprocessing.confidence_threshold */
    c->has_confidence_threshold = 1;
    c->version = 1; /* OTE writes 'VERSION': 1 */
    c->has_version = 1;
}

void pth_free(pth_ckpt *c) {
    for (size_t i = 0; i < c->n_tensors; i++) {
        free(c->tensors[i].name);
        free(c->tensors[i].data);
    }
    free(c->tensors);
    for (size_t i = 0; i < c->n_aux; i++) {
        free(c->aux[i].name);
        free(c->aux[i].data);
    }
    free(c->aux);
    for (size_t i = 0; i < c->n_config; i++) {
        free(c->config[i].key);
        free(c->config[i].value);
    }
    free(c->config);
    pth_init(c);
}

const char *pth_layout_name(pth_layout l) {
    switch (l) {
    case PTH_LAYOUT_OTE: return "ote";
    case PTH_LAYOUT_STATE_DICT: return "state_dict";
    case PTH_LAYOUT_BARE: return "bare";
    }
    return "?";
}

/* Appends a tensor with an allocated (uninitialised) buffer; no duplicate check (callers do it). */
static pth_tensor *ck_push(pth_ckpt *c, const char *name, size_t nlen, pth_dtype dt, int ndim,
                           const int64_t *shape, size_t numel) {
    if (c->n_tensors == c->cap_tensors) {
        size_t nc = c->cap_tensors ? 2 * c->cap_tensors : 64;
        pth_tensor *nt = realloc(c->tensors, nc * sizeof *nt);
        if (!nt) return NULL;
        c->tensors = nt;
        c->cap_tensors = nc;
    }
    pth_tensor *t = &c->tensors[c->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = dup_n(name, nlen);
    if (!t->name) return NULL;
    if (numel) {
        t->data = malloc(numel * (dt == PTH_F32 ? sizeof(float) : sizeof(int64_t))); /* numel checked by caller */
        if (!t->data) {
            free(t->name);
            return NULL;
        }
    }
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->numel = numel;
    snprintf(t->src_type, sizeof t->src_type, "%s", dt == PTH_F32 ? "FloatStorage" : "LongStorage");
    c->n_tensors++;
    return t;
}

static int add_tensor(pth_ckpt *c, const char *name, int ndim, const int64_t *shape, const void *data,
                      pth_dtype dt) {
    if (!name || !*name) return ote_err(OTE_EINVAL, "pth: tensor name is empty");
    if (ndim < 0 || ndim > PTH_MAX_DIMS)
        return ote_err(OTE_EINVAL, "pth: tensor '%s': ndim %d outside [0, %d]", name, ndim, PTH_MAX_DIMS);
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return ote_err(OTE_EINVAL, "pth: tensor '%s': negative dim %" PRId64, name, shape[d]);
        if (shape[d] > 0 && numel > (SIZE_MAX / 16) / (uint64_t)shape[d])
            return ote_err(OTE_EINVAL, "pth: tensor '%s': too many elements", name);
        numel *= (size_t)shape[d];
    }
    if (numel && !data) return ote_err(OTE_EINVAL, "pth: tensor '%s': no data", name);
    if (pth_find(c, name)) return ote_err(OTE_EINVAL, "pth: duplicate tensor name '%s'", name);
    pth_tensor *t = ck_push(c, name, strlen(name), dt, ndim, shape, numel);
    if (!t) return ote_err(OTE_ENOMEM, "pth: out of memory adding tensor '%s'", name);
    if (numel) memcpy(t->data, data, numel * (dt == PTH_F32 ? sizeof(float) : sizeof(int64_t)));
    return OTE_OK;
}

int pth_add_f32(pth_ckpt *c, const char *name, int ndim, const int64_t *shape, const float *data) {
    return add_tensor(c, name, ndim, shape, data, PTH_F32);
}
int pth_add_i64(pth_ckpt *c, const char *name, int ndim, const int64_t *shape, const int64_t *data) {
    return add_tensor(c, name, ndim, shape, data, PTH_I64);
}

/* Exchanges the tensor and aux lists, so that the tensor code serves the 'optimizer' dict too. */
static void swap_aux(pth_ckpt *c) {
    pth_tensor *t = c->tensors;
    size_t n = c->n_tensors, cap = c->cap_tensors;
    c->tensors = c->aux, c->n_tensors = c->n_aux, c->cap_tensors = c->cap_aux;
    c->aux = t, c->n_aux = n, c->cap_aux = cap;
}

int pth_add_aux_f32(pth_ckpt *c, const char *name, int ndim, const int64_t *shape, const float *data) {
    swap_aux(c);
    int rc = add_tensor(c, name, ndim, shape, data, PTH_F32);
    swap_aux(c);
    return rc;
}

const pth_tensor *pth_find_aux(const pth_ckpt *c, const char *name) {
    for (size_t i = 0; i < c->n_aux; i++)
        if (!strcmp(c->aux[i].name, name)) return &c->aux[i];
    return NULL;
}

const pth_tensor *pth_find(const pth_ckpt *c, const char *name) {
    for (size_t i = 0; i < c->n_tensors; i++)
        if (!strcmp(c->tensors[i].name, name)) return &c->tensors[i];
    return NULL;
}

const char *pth_config_get(const pth_ckpt *c, const char *key) {
    for (size_t i = 0; i < c->n_config; i++)
        if (!strcmp(c->config[i].key, key)) return c->config[i].value;
    return NULL;
}

/* Appends or replaces without validation (the loader's path: keys come from a real file). */
static int cfg_put(pth_ckpt *c, const char *key, size_t klen, const char *val, size_t vlen) {
    for (size_t i = 0; i < c->n_config; i++) {
        if (strlen(c->config[i].key) == klen && !memcmp(c->config[i].key, key, klen)) {
            char *nv = dup_n(val, vlen);
            if (!nv) return OTE_ENOMEM;
            free(c->config[i].value);
            c->config[i].value = nv;
            return OTE_OK;
        }
    }
    if (c->n_config == c->cap_config) {
        size_t nc = c->cap_config ? 2 * c->cap_config : 16;
        pth_kv *n = realloc(c->config, nc * sizeof *n);
        if (!n) return OTE_ENOMEM;
        c->config = n;
        c->cap_config = nc;
    }
    char *k = dup_n(key, klen), *v = dup_n(val, vlen);
    if (!k || !v) {
        free(k);
        free(v);
        return OTE_ENOMEM;
    }
    c->config[c->n_config].key = k;
    c->config[c->n_config].value = v;
    c->n_config++;
    return OTE_OK;
}

int pth_config_set(pth_ckpt *c, const char *key, const char *value) {
    size_t kl = key ? strlen(key) : 0;
    if (!kl || key[0] == '.' || key[kl - 1] == '.' || strstr(key, ".."))
        return ote_err(OTE_EINVAL, "pth: config key '%s' is empty or has an empty component", key ? key : "");
    if (!value) return ote_err(OTE_EINVAL, "pth: config key '%s': NULL value", key);
    for (size_t i = 0; i < c->n_config; i++) {
        const char *e = c->config[i].key;
        size_t el = strlen(e);
        /* "a" and "a.b" cannot coexist: on disk "a" would be both a string and a dict. */
        if ((el < kl && !memcmp(e, key, el) && key[el] == '.') || (kl < el && !memcmp(e, key, kl) && e[kl] == '.'))
            return ote_err(OTE_EINVAL, "pth: config key '%s' conflicts with existing key '%s'", key, e);
    }
    if (cfg_put(c, key, kl, value, strlen(value)) < 0)
        return ote_err(OTE_ENOMEM, "pth: out of memory setting config key '%s'", key);
    return OTE_OK;
}

/* ---------------------------------------------------------------- pickle emitter (protocol 2) */

/* Opcodes (names as in CPython's pickletools). */
enum {
    OP_MARK = '(', OP_STOP = '.', OP_POP = '0', OP_POP_MARK = '1', OP_DUP = '2', OP_FLOAT = 'F',
    OP_BININT = 'J', OP_BININT1 = 'K', OP_BININT2 = 'M', OP_NONE = 'N', OP_PERSID = 'P',
    OP_BINPERSID = 'Q', OP_REDUCE = 'R', OP_BINSTRING = 'T', OP_SHORT_BINSTRING = 'U',
    OP_BINUNICODE = 'X', OP_APPEND = 'a', OP_BUILD = 'b', OP_GLOBAL = 'c', OP_DICT = 'd',
    OP_EMPTY_DICT = '}', OP_APPENDS = 'e', OP_GET = 'g', OP_BINGET = 'h', OP_LONG_BINGET = 'j',
    OP_LIST = 'l', OP_EMPTY_LIST = ']', OP_PUT = 'p', OP_BINPUT = 'q', OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's', OP_TUPLE = 't', OP_EMPTY_TUPLE = ')', OP_SETITEMS = 'u', OP_BINFLOAT = 'G',
    OP_BINBYTES = 'B', OP_SHORT_BINBYTES = 'C',
    OP_PROTO = 0x80, OP_NEWOBJ = 0x81, OP_TUPLE1 = 0x85, OP_TUPLE2 = 0x86, OP_TUPLE3 = 0x87,
    OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_LONG1 = 0x8a, OP_LONG4 = 0x8b,
    OP_SHORT_BINUNICODE = 0x8c, OP_BINUNICODE8 = 0x8d, OP_BINBYTES8 = 0x8e, OP_EMPTY_SET = 0x8f,
    OP_ADDITEMS = 0x90, OP_FROZENSET = 0x91, OP_NEWOBJ_EX = 0x92, OP_STACK_GLOBAL = 0x93,
    OP_MEMOIZE = 0x94, OP_FRAME = 0x95,
};

/* Memo slots for the objects every tensor repeats, written once and fetched with BINGET like
 * torch's own pickler does (keeps data.pkl small). */
enum { MS_ODICT, MS_REBUILD, MS_STORAGE, MS_CPU, MS_FLOAT, MS_LONG, MS_COUNT };

typedef struct pkw {
    bbuf b;
    int memo[MS_COUNT];
    uint32_t next_memo;
} pkw;

static void pk_op(pkw *w, unsigned op) { bb_u8(&w->b, op); }
static void pk_memo_put(pkw *w, int slot) {
    w->memo[slot] = (int)w->next_memo;
    pk_op(w, OP_BINPUT);
    bb_u8(&w->b, w->next_memo++); /* < 256: there are only MS_COUNT memoised objects */
}
static int pk_memo_get(pkw *w, int slot) {
    if (w->memo[slot] < 0) return 0;
    pk_op(w, OP_BINGET);
    bb_u8(&w->b, (unsigned)w->memo[slot]);
    return 1;
}
static void pk_str_n(pkw *w, const char *s, size_t n) {
    pk_op(w, OP_BINUNICODE);
    bb_u32(&w->b, (uint32_t)n);
    bb_put(&w->b, s, n);
}
static void pk_str(pkw *w, const char *s) { pk_str_n(w, s, strlen(s)); }
static void pk_str_memo(pkw *w, int slot, const char *s) {
    if (pk_memo_get(w, slot)) return;
    pk_str(w, s);
    pk_memo_put(w, slot);
}
static void pk_global(pkw *w, int slot, const char *mod, const char *name) {
    if (pk_memo_get(w, slot)) return;
    pk_op(w, OP_GLOBAL);
    bb_str(&w->b, mod);
    bb_u8(&w->b, '\n');
    bb_str(&w->b, name);
    bb_u8(&w->b, '\n');
    pk_memo_put(w, slot);
}
static void pk_int(pkw *w, int64_t v) {
    if (v >= 0 && v < 256) {
        pk_op(w, OP_BININT1);
        bb_u8(&w->b, (unsigned)v);
    } else if (v >= 0 && v < 65536) {
        pk_op(w, OP_BININT2);
        bb_u16(&w->b, (unsigned)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        pk_op(w, OP_BININT);
        bb_u32(&w->b, (uint32_t)(int32_t)v);
    } else {
        /* LONG1: minimal little-endian two's complement. */
        uint8_t by[8];
        uint64_t u = (uint64_t)v;
        for (int i = 0; i < 8; i++) by[i] = (uint8_t)(u >> (8 * i));
        int n = 8;
        while (n > 1 && ((by[n - 1] == 0 && !(by[n - 2] & 0x80)) || (by[n - 1] == 0xff && (by[n - 2] & 0x80)))) n--;
        pk_op(w, OP_LONG1);
        bb_u8(&w->b, (unsigned)n);
        bb_put(&w->b, by, (size_t)n);
    }
}
static void pk_float(pkw *w, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    pk_op(w, OP_BINFLOAT);
    for (int i = 7; i >= 0; i--) bb_u8(&w->b, (unsigned)(u >> (8 * i)) & 0xffu); /* big-endian */
}
static void pk_int_tuple(pkw *w, const int64_t *v, int n) {
    if (n == 0) {
        pk_op(w, OP_EMPTY_TUPLE);
        return;
    }
    if (n > 3) pk_op(w, OP_MARK);
    for (int i = 0; i < n; i++) pk_int(w, v[i]);
    pk_op(w, n == 1 ? OP_TUPLE1 : n == 2 ? OP_TUPLE2 : n == 3 ? OP_TUPLE3 : OP_TUPLE);
}
static void pk_ordered_dict(pkw *w) {
    pk_global(w, MS_ODICT, "collections", "OrderedDict");
    pk_op(w, OP_EMPTY_TUPLE);
    pk_op(w, OP_REDUCE);
}

/* torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks): what torch.save emits for a plain CPU tensor; the storage is the persistent
 * id ('storage', torch.<T>Storage, key, 'cpu', numel) resolved to record data/<key>. */
static void pk_tensor(pkw *w, const pth_tensor *t, size_t key) {
    char ks[32];
    snprintf(ks, sizeof ks, "%zu", key);
    pk_global(w, MS_REBUILD, "torch._utils", "_rebuild_tensor_v2");
    pk_op(w, OP_MARK);
    pk_op(w, OP_MARK);
    pk_str_memo(w, MS_STORAGE, "storage");
    if (t->dtype == PTH_F32)
        pk_global(w, MS_FLOAT, "torch", "FloatStorage");
    else
        pk_global(w, MS_LONG, "torch", "LongStorage");
    pk_str(w, ks);
    pk_str_memo(w, MS_CPU, "cpu");
    pk_int(w, (int64_t)t->numel);
    pk_op(w, OP_TUPLE);
    pk_op(w, OP_BINPERSID);
    pk_int(w, 0);
    pk_int_tuple(w, t->shape, t->ndim);
    int64_t stride[PTH_MAX_DIMS];
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        stride[d] = s;
        s *= t->shape[d] > 0 ? t->shape[d] : 1; /* torch uses max(size, 1) for contiguous strides */
    }
    pk_int_tuple(w, stride, t->ndim);
    pk_op(w, OP_NEWFALSE);
    pk_ordered_dict(w);
    pk_op(w, OP_TUPLE);
    pk_op(w, OP_REDUCE);
}

/* An OrderedDict of n tensors whose storages are records key0, key0 + 1, ... */
static void pk_tensor_dict(pkw *w, const pth_tensor *ts, size_t n, size_t key0) {
    pk_ordered_dict(w);
    if (!n) return;
    pk_op(w, OP_MARK);
    for (size_t i = 0; i < n; i++) {
        pk_str(w, ts[i].name);
        pk_tensor(w, &ts[i], key0 + i);
    }
    pk_op(w, OP_SETITEMS);
}

static void pk_state_dict(pkw *w, const pth_ckpt *c) { pk_tensor_dict(w, c->tensors, c->n_tensors, 0); }

/* Emits the dict of config keys starting with prefix[0..plen) ("" or "a.b."), nesting on dots;
 * each sub-dict is emitted at the first key that reaches it, so file order follows insertion. */
static void pk_config(pkw *w, const pth_ckpt *c, const char *prefix, size_t plen, int depth) {
    pk_op(w, OP_EMPTY_DICT);
    int any = 0;
    for (size_t i = 0; i < c->n_config; i++) {
        const char *k = c->config[i].key;
        if (strncmp(k, prefix, plen) != 0 || strlen(k) <= plen) continue;
        const char *rest = k + plen;
        const char *dot = strchr(rest, '.');
        if (!any) pk_op(w, OP_MARK);
        any = 1;
        if (!dot || depth >= 64) {
            pk_str(w, rest);
            pk_str(w, c->config[i].value);
            continue;
        }
        size_t sub = (size_t)(dot - k) + 1; /* length of "prefix comp." */
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            if (!strncmp(c->config[j].key, k, sub)) seen = 1;
        if (seen) continue;
        pk_str_n(w, rest, (size_t)(dot - rest));
        pk_config(w, c, k, sub, depth + 1);
    }
    if (any) pk_op(w, OP_SETITEMS);
}

static int pk_checkpoint(pkw *w, const pth_ckpt *c) {
    for (int i = 0; i < MS_COUNT; i++) w->memo[i] = -1;
    pk_op(w, OP_PROTO);
    bb_u8(&w->b, 2);
    switch (c->layout) {
    case PTH_LAYOUT_OTE:
        pk_op(w, OP_EMPTY_DICT);
        pk_op(w, OP_MARK);
        pk_str(w, "model");
        pk_state_dict(w, c);
        pk_str(w, "config");
        pk_config(w, c, "", 0, 0);
        pk_str(w, "confidence_threshold");
        pk_float(w, c->confidence_threshold);
        pk_str(w, "VERSION");
        pk_int(w, c->version);
        if (c->n_aux) { /* the training state's tensors; storages numbered after the model's */
            pk_str(w, "optimizer");
            pk_tensor_dict(w, c->aux, c->n_aux, c->n_tensors);
        }
        pk_op(w, OP_SETITEMS);
        break;
    case PTH_LAYOUT_STATE_DICT:
        pk_op(w, OP_EMPTY_DICT);
        pk_str(w, "state_dict");
        pk_state_dict(w, c);
        pk_op(w, OP_SETITEM);
        break;
    case PTH_LAYOUT_BARE: pk_state_dict(w, c); break;
    default: return ote_err(OTE_EINVAL, "pth: unknown layout %d", (int)c->layout);
    }
    pk_op(w, OP_STOP);
    return w->b.oom ? ote_err(OTE_ENOMEM, "pth: out of memory building data.pkl") : OTE_OK;
}

/* ---------------------------------------------------------------- zip writer (stored entries) */

#define ZIP_ALIGN 64 /* torch aligns every record's data to 64 bytes (extra field "FB" + 'Z' pad) */
#define ZIP_DOS_DATE 0x0021 /* 1980-01-01: fixed so the same weights give the same bytes */

typedef struct zcent {
    char name[48];
    uint32_t crc, size, offset;
} zcent;

typedef struct zw {
    FILE *f;
    uint64_t pos;
    int err;
    uint32_t tab[256];
    zcent *cent;
    size_t n;
} zw;

static void zw_bytes(zw *z, const void *p, size_t n) {
    if (z->err || n == 0) return;
    if (fwrite(p, 1, n, z->f) != n) z->err = errno ? errno : EIO;
    z->pos += n;
}

/* One stored record: local header (+ alignment pad), then the data; remembered for the central
 * directory. Sizes/offsets must fit 32 bits (we never write ZIP64; checked by the caller). */
static void zw_record(zw *z, const char *name, const void *data, size_t size) {
    size_t nl = strlen(name);
    uint64_t hdr_end = z->pos + 30 + nl;
    size_t extra = 0;
    if (hdr_end % ZIP_ALIGN) extra = 4 + (size_t)((ZIP_ALIGN - (hdr_end + 4) % ZIP_ALIGN) % ZIP_ALIGN);
    uint32_t crc = crc_update(z->tab, 0, data, size);
    zcent *e = &z->cent[z->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->crc = crc;
    e->size = (uint32_t)size;
    e->offset = (uint32_t)z->pos;
    bbuf h = {0};
    bb_u32(&h, 0x04034b50u);
    bb_u16(&h, 20); /* version needed: 2.0 */
    bb_u16(&h, 0);  /* flags */
    bb_u16(&h, 0);  /* method: stored */
    bb_u16(&h, 0);  /* time */
    bb_u16(&h, ZIP_DOS_DATE);
    bb_u32(&h, crc);
    bb_u32(&h, (uint32_t)size);
    bb_u32(&h, (uint32_t)size);
    bb_u16(&h, (unsigned)nl);
    bb_u16(&h, (unsigned)extra);
    bb_str(&h, name);
    if (extra) {
        bb_u16(&h, 0x4246); /* "FB", the id torch uses for its padding field */
        bb_u16(&h, (unsigned)(extra - 4));
        for (size_t i = 4; i < extra; i++) bb_u8(&h, 'Z');
    }
    if (h.oom) z->err = ENOMEM;
    else zw_bytes(z, h.p, h.n);
    free(h.p);
    zw_bytes(z, data, size);
}

static void zw_finish(zw *z) {
    uint64_t cd_off = z->pos;
    bbuf h = {0};
    for (size_t i = 0; i < z->n; i++) {
        const zcent *e = &z->cent[i];
        bb_u32(&h, 0x02014b50u);
        bb_u16(&h, 20); /* made by */
        bb_u16(&h, 20); /* needed */
        bb_u16(&h, 0);
        bb_u16(&h, 0);
        bb_u16(&h, 0);
        bb_u16(&h, ZIP_DOS_DATE);
        bb_u32(&h, e->crc);
        bb_u32(&h, e->size);
        bb_u32(&h, e->size);
        bb_u16(&h, (unsigned)strlen(e->name));
        bb_u16(&h, 0); /* extra */
        bb_u16(&h, 0); /* comment */
        bb_u16(&h, 0); /* disk */
        bb_u16(&h, 0); /* internal attributes */
        bb_u32(&h, 0); /* external attributes */
        bb_u32(&h, e->offset);
        bb_str(&h, e->name);
    }
    uint64_t cd_size = h.n;
    bb_u32(&h, 0x06054b50u);
    bb_u16(&h, 0);
    bb_u16(&h, 0);
    bb_u16(&h, (unsigned)z->n);
    bb_u16(&h, (unsigned)z->n);
    bb_u32(&h, (uint32_t)cd_size);
    bb_u32(&h, (uint32_t)cd_off);
    bb_u16(&h, 0);
    if (h.oom) z->err = ENOMEM;
    else zw_bytes(z, h.p, h.n);
    free(h.p);
}

/* Test hook (tests/test_train_resume.sh): OTE_TEST_SAVE_PAUSE_MS=N sleeps N ms between the
 * complete temporary file and its rename, so that a test can kill -9 a process during a save. */
static void pth_test_pause(void) {
    const char *e = getenv("OTE_TEST_SAVE_PAUSE_MS");
    long ms = e ? strtol(e, NULL, 10) : 0;
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static size_t dtype_size(pth_dtype d) { return d == PTH_F32 ? sizeof(float) : sizeof(int64_t); }

int pth_save(const char *path, const pth_ckpt *c) {
    if (!host_is_le()) return ote_err(OTE_EINVAL, "pth: %s: big-endian hosts are not supported", path);
    /* Total size check up front: without ZIP64 every offset must fit 32 bits. */
    uint64_t total = 4096;
    size_t n_all = c->n_tensors + (c->layout == PTH_LAYOUT_OTE ? c->n_aux : 0);
    for (size_t i = 0; i < n_all; i++) {
        const pth_tensor *t = i < c->n_tensors ? &c->tensors[i] : &c->aux[i - c->n_tensors];
        if (t->dtype != PTH_F32 && t->dtype != PTH_I64)
            return ote_err(OTE_EINVAL, "pth: %s: tensor '%s' has unknown dtype %d", path, t->name, (int)t->dtype);
        total += (uint64_t)t->numel * dtype_size(t->dtype) + 2 * ZIP_ALIGN + 200 + 2 * strlen(t->name);
    }
    if (total >= 0xFFFFFFFFull || n_all + 3 >= 0xFFFF)
        return ote_err(OTE_EINVAL, "pth: %s: checkpoint too large (%" PRIu64 " bytes, %zu tensors): ZIP64 output is not implemented",
                       path, total, n_all);

    pkw w = {0};
    int rc = pk_checkpoint(&w, c);
    if (rc < 0) {
        free(w.b.p);
        return ote_err_context(rc, "pth: %s", path);
    }
    if (w.b.n + total >= 0xFFFFFFFFull) {
        free(w.b.p);
        return ote_err(OTE_EINVAL, "pth: %s: checkpoint too large for a zip without ZIP64", path);
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    zw z = {0};
    z.cent = calloc(n_all + 3, sizeof *z.cent);
    if (!tmp || !z.cent) {
        free(tmp);
        free(z.cent);
        free(w.b.p);
        return ote_err(OTE_ENOMEM, "pth: %s: out of memory", path);
    }
    snprintf(tmp, plen + 32, "%s.tmp-%ld", path, (long)getpid());
    crc_table(z.tab);
    z.f = fopen(tmp, "wb");
    if (!z.f) {
        rc = ote_err(OTE_EIO, "pth: %s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    /* "archive" is the record prefix torch.save uses for file objects; readers take whatever
     * prefix data.pkl has. */
    zw_record(&z, "archive/data.pkl", w.b.p, w.b.n);
    for (size_t i = 0; i < n_all; i++) {
        char name[48];
        snprintf(name, sizeof name, "archive/data/%zu", i);
        const pth_tensor *t = i < c->n_tensors ? &c->tensors[i] : &c->aux[i - c->n_tensors];
        zw_record(&z, name, t->data, t->numel * dtype_size(t->dtype));
    }
    zw_record(&z, "archive/version", "3\n", 2); /* torch's serialisation format version 3 */
    zw_record(&z, "archive/byteorder", "little", 6); /* torch >= 2.1 reads it; older ignore it */
    zw_finish(&z);
    if (!z.err && fflush(z.f) != 0) z.err = errno;
    if (!z.err && fsync(fileno(z.f)) != 0) z.err = errno;
    if (fclose(z.f) != 0 && !z.err) z.err = errno;
    z.f = NULL;
    if (z.err) {
        rc = ote_err(OTE_EIO, "pth: %s: write failed: %s", tmp, strerror(z.err));
        unlink(tmp);
        goto done;
    }
    pth_test_pause();
    if (rename(tmp, path) != 0) {
        rc = ote_err(OTE_EIO, "pth: %s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    /* Make the rename itself durable. */
    {
        char *dir = dup_n(path, plen);
        if (dir) {
            char *slash = strrchr(dir, '/');
            const char *d = ".";
            if (slash) {
                if (slash == dir) slash[1] = 0;
                else *slash = 0;
                d = dir;
            }
            int fd = open(d, O_RDONLY);
            if (fd >= 0) {
                (void)fsync(fd);
                close(fd);
            }
            free(dir);
        }
    }
    rc = OTE_OK;
done:
    free(tmp);
    free(z.cent);
    free(w.b.p);
    return rc;
}

/* ---------------------------------------------------------------- zip reader */

typedef struct zent {
    const uint8_t *name;
    size_t nlen;
    const uint8_t *data;
    uint64_t size;
    uint32_t crc;
    int crc_ok; /* 1 once verified */
} zent;

typedef struct zr {
    const char *what;
    const uint8_t *buf;
    size_t len;
    zent *e;
    size_t n;
    uint32_t tab[256];
} zr;

static int zent_cmp(const void *a, const void *b) {
    const zent *x = a, *y = b;
    size_t m = x->nlen < y->nlen ? x->nlen : y->nlen;
    int r = memcmp(x->name, y->name, m);
    if (r) return r;
    return x->nlen < y->nlen ? -1 : x->nlen > y->nlen;
}

static int zr_open(zr *z) {
    const uint8_t *b = z->buf;
    size_t len = z->len;
    if (len == 0) return ote_err(OTE_EPARSE, "pth: %s: empty file", z->what);
    if (len >= 2 && b[0] == 0x80 && b[1] <= 5)
        return ote_err(OTE_EPARSE, "pth: %s: a bare pickle, i.e. the legacy torch < 1.6 format: not supported (re-save it with torch >= 1.6)", z->what);
    if (len < 4 || rd32(b) != 0x04034b50u)
        return ote_err(OTE_EPARSE, "pth: %s: not a zip archive (torch >= 1.6 checkpoint expected)", z->what);
    if (len < 22) return ote_err(OTE_EPARSE, "pth: %s: truncated (%zu bytes, no end-of-central-directory record)", z->what, len);
    size_t eocd = SIZE_MAX;
    size_t lo = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t p = len - 22 + 1; p-- > lo;) {
        if (rd32(b + p) == 0x06054b50u && (size_t)rd16(b + p + 20) <= len - p - 22) {
            eocd = p;
            break;
        }
    }
    if (eocd == SIZE_MAX) return ote_err(OTE_EPARSE, "pth: %s: truncated or not a zip (no end-of-central-directory record)", z->what);
    uint64_t n = rd16(b + eocd + 10), cd_size = rd32(b + eocd + 12), cd_off = rd32(b + eocd + 16);
    /* torch (miniz) always adds the ZIP64 end record + locator just before the classic one. */
    if (eocd >= 20 && rd32(b + eocd - 20) == 0x07064b50u) {
        uint64_t z64 = rd64(b + eocd - 20 + 8);
        if (z64 > len || len - z64 < 56 || rd32(b + z64) != 0x06064b50u)
            return ote_err(OTE_EPARSE, "pth: %s: bad ZIP64 end record offset %" PRIu64, z->what, z64);
        n = rd64(b + z64 + 32);
        cd_size = rd64(b + z64 + 40);
        cd_off = rd64(b + z64 + 48);
    }
    if (cd_off > len || cd_size > len - cd_off)
        return ote_err(OTE_EPARSE, "pth: %s: truncated: central directory (offset %" PRIu64 ", %" PRIu64 " bytes) past end of file (%zu bytes)",
                       z->what, cd_off, cd_size, len);
    if (n > cd_size / 46) return ote_err(OTE_EPARSE, "pth: %s: central directory claims %" PRIu64 " entries in %" PRIu64 " bytes", z->what, n, cd_size);
    z->e = calloc(n ? n : 1, sizeof *z->e);
    if (!z->e) return ote_err(OTE_ENOMEM, "pth: %s: out of memory", z->what);
    const uint8_t *p = b + cd_off, *end = b + cd_off + cd_size;
    for (uint64_t i = 0; i < n; i++) {
        if (end - p < 46 || rd32(p) != 0x02014b50u)
            return ote_err(OTE_EPARSE, "pth: %s: corrupt central directory entry %" PRIu64, z->what, i);
        unsigned flags = rd16(p + 8), method = rd16(p + 10), nl = rd16(p + 28), xl = rd16(p + 30), cl = rd16(p + 32);
        uint64_t csize = rd32(p + 20), usize = rd32(p + 24), lho = rd32(p + 42);
        if ((size_t)(end - p) - 46 < (size_t)nl + xl + cl)
            return ote_err(OTE_EPARSE, "pth: %s: corrupt central directory entry %" PRIu64 " (name/extra past its end)", z->what, i);
        zent *e = &z->e[i];
        e->name = p + 46;
        e->nlen = nl;
        /* ZIP64 extended information: 8-byte values for the fields that are 0xFFFFFFFF. */
        const uint8_t *x = p + 46 + nl, *xe = x + xl;
        while (xe - x >= 4) {
            unsigned id = rd16(x), sz = rd16(x + 2);
            if ((size_t)(xe - x) - 4 < sz) break;
            if (id == 1) {
                const uint8_t *q = x + 4, *qe = q + sz;
                if (usize == 0xFFFFFFFFu && qe - q >= 8) usize = rd64(q), q += 8;
                if (csize == 0xFFFFFFFFu && qe - q >= 8) csize = rd64(q), q += 8;
                if (lho == 0xFFFFFFFFu && qe - q >= 8) lho = rd64(q), q += 8;
            }
            x += 4 + sz;
        }
        if (flags & 1) return ote_err(OTE_EPARSE, "pth: %s: entry '%.*s' is encrypted", z->what, (int)nl, (const char *)e->name);
        if (method != 0)
            return ote_err(OTE_EPARSE, "pth: %s: entry '%.*s' is compressed (method %u); only stored entries are supported (torch.save never compresses)",
                           z->what, (int)nl, (const char *)e->name, method);
        if (csize != usize)
            return ote_err(OTE_EPARSE, "pth: %s: entry '%.*s': stored size %" PRIu64 " != size %" PRIu64, z->what, (int)nl,
                           (const char *)e->name, csize, usize);
        if (lho > len || len - lho < 30 || rd32(b + lho) != 0x04034b50u)
            return ote_err(OTE_EPARSE, "pth: %s: entry '%.*s': bad local header offset %" PRIu64, z->what, (int)nl, (const char *)e->name, lho);
        uint64_t data = lho + 30 + (uint64_t)rd16(b + lho + 26) + rd16(b + lho + 28);
        if (data > len || usize > len - data)
            return ote_err(OTE_EPARSE, "pth: %s: truncated: entry '%.*s' (%" PRIu64 " bytes at offset %" PRIu64 ") past end of file (%zu bytes)",
                           z->what, (int)nl, (const char *)e->name, usize, data, len);
        e->data = b + data;
        e->size = usize;
        e->crc = rd32(p + 16);
        p += 46 + nl + xl + cl;
    }
    z->n = (size_t)n;
    qsort(z->e, z->n, sizeof *z->e, zent_cmp);
    crc_table(z->tab);
    return OTE_OK;
}

/* Finds "<prefix>/<suffix>" (binary search over sorted names); CRC-checked on first use. */
static int zr_get(zr *z, const char *prefix, size_t plen, const char *suffix, size_t slen, zent **out) {
    char stack_name[256];
    size_t nl = plen + 1 + slen;
    char *name = nl <= sizeof stack_name ? stack_name : malloc(nl);
    if (!name) return ote_err(OTE_ENOMEM, "pth: %s: out of memory", z->what);
    memcpy(name, prefix, plen);
    name[plen] = '/';
    memcpy(name + plen + 1, suffix, slen);
    zent key = {.name = (const uint8_t *)name, .nlen = nl};
    zent *e = z->n ? bsearch(&key, z->e, z->n, sizeof *z->e, zent_cmp) : NULL;
    if (name != stack_name) free(name);
    *out = e;
    if (!e) return 0;
    if (!e->crc_ok) {
        if (crc_update(z->tab, 0, e->data, (size_t)e->size) != e->crc)
            return ote_err(OTE_EPARSE, "pth: %s: record '%.*s' is corrupt (CRC-32 mismatch)", z->what, (int)e->nlen, (const char *)e->name);
        e->crc_ok = 1;
    }
    return 1;
}

/* ---------------------------------------------------------------- pickle VM */

typedef enum po_kind {
    PO_NONE, PO_BOOL, PO_INT, PO_FLOAT, PO_STR, PO_BYTES, PO_TUPLE, PO_LIST, PO_DICT, PO_GLOBAL,
    PO_STORAGE, PO_TENSOR, PO_OBJECT,
} po_kind;

static const char *po_kind_name(int k) {
    static const char *const names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple", "list",
                                        "dict", "class/function", "storage", "tensor", "object"};
    return k >= 0 && k <= PO_OBJECT ? names[k] : "?";
}

typedef struct pobj pobj;
struct pobj {
    int kind;
    union {
        int64_t i;                                              /* BOOL, INT */
        double f;                                               /* FLOAT */
        struct { const char *p; size_t n; } str;                /* STR, BYTES (into the pickle) */
        struct { pobj **v; size_t n, cap; } seq;                /* TUPLE, LIST, DICT (k,v,k,v..) */
        struct { const char *m, *nm; size_t ml, nl; } glob;     /* GLOBAL module.name */
        struct { const pobj *type, *key; int64_t numel; } st;   /* STORAGE (persistent id) */
        struct { const pobj *args; } ten;                       /* TENSOR: _rebuild_tensor args */
        struct { const pobj *cls; } obj;                        /* OBJECT: what built it */
    } u;
};

#define VM_CHUNK 1024
typedef struct vm_chunk {
    struct vm_chunk *next;
    size_t used;
    pobj o[VM_CHUNK];
} vm_chunk;

typedef struct vm {
    const char *what;
    const uint8_t *p;
    size_t n, pos, op_pos;
    pobj **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    pobj **memo;
    size_t memo_cap, memo_count;
    vm_chunk *chunks;
} vm;

static void vm_free(vm *m) {
    for (vm_chunk *c = m->chunks; c;) {
        for (size_t i = 0; i < c->used; i++) {
            int k = c->o[i].kind;
            if (k == PO_TUPLE || k == PO_LIST || k == PO_DICT) free(c->o[i].u.seq.v);
        }
        vm_chunk *nx = c->next;
        free(c);
        c = nx;
    }
    free(m->stack);
    free(m->marks);
    free(m->memo);
}

static int vm_oom(vm *m) { return ote_err(OTE_ENOMEM, "pth: %s: out of memory unpickling data.pkl", m->what); }
static int vm_bad(vm *m, const char *why) {
    return ote_err(OTE_EPARSE, "pth: %s: data.pkl: %s (opcode 0x%02x at offset %zu)", m->what, why, m->p[m->op_pos], m->op_pos);
}

static pobj *vm_new(vm *m, int kind) {
    if (!m->chunks || m->chunks->used == VM_CHUNK) {
        vm_chunk *c = malloc(sizeof *c);
        if (!c) return NULL;
        c->next = m->chunks;
        c->used = 0;
        m->chunks = c;
    }
    pobj *o = &m->chunks->o[m->chunks->used++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    return o;
}

static int seq_push(pobj *s, pobj *x) {
    if (s->u.seq.n == s->u.seq.cap) {
        size_t nc = s->u.seq.cap ? 2 * s->u.seq.cap : 4;
        pobj **nv = realloc(s->u.seq.v, nc * sizeof *nv);
        if (!nv) return -1;
        s->u.seq.v = nv;
        s->u.seq.cap = nc;
    }
    s->u.seq.v[s->u.seq.n++] = x;
    return 0;
}

static size_t vm_base(const vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static int vm_push(vm *m, pobj *o) {
    if (!o) return vm_oom(m);
    if (m->sp == m->scap) {
        size_t nc = m->scap ? 2 * m->scap : 64;
        pobj **ns = realloc(m->stack, nc * sizeof *ns);
        if (!ns) return vm_oom(m);
        m->stack = ns;
        m->scap = nc;
    }
    m->stack[m->sp++] = o;
    return OTE_OK;
}

static int vm_pop(vm *m, pobj **o) {
    if (m->sp <= vm_base(m)) return vm_bad(m, "stack underflow");
    *o = m->stack[--m->sp];
    return OTE_OK;
}

/* Pops the items above the last MARK: they are stack[*start .. old sp). */
static int vm_pop_mark(vm *m, size_t *start, size_t *count) {
    if (!m->nmarks) return vm_bad(m, "no MARK on the stack");
    *start = m->marks[--m->nmarks];
    *count = m->sp - *start;
    m->sp = *start;
    return OTE_OK;
}

static int vm_need(vm *m, size_t k) {
    if (m->n - m->pos < k) return ote_err(OTE_EPARSE, "pth: %s: data.pkl truncated (opcode 0x%02x at offset %zu needs %zu more bytes)",
                                          m->what, m->p[m->op_pos], m->op_pos, k);
    return OTE_OK;
}

static int vm_memo_set(vm *m, uint64_t idx) {
    if (m->sp <= vm_base(m)) return vm_bad(m, "memo store with an empty stack");
    /* torch numbers memo entries 0, 1, 2, ...; any index is < the number of opcodes, hence < n */
    if (idx > m->n) return vm_bad(m, "memo index out of range");
    if (idx >= m->memo_cap) {
        size_t nc = m->memo_cap ? m->memo_cap : 64;
        while (nc <= idx) nc *= 2;
        pobj **nm = realloc(m->memo, nc * sizeof *nm);
        if (!nm) return vm_oom(m);
        memset(nm + m->memo_cap, 0, (nc - m->memo_cap) * sizeof *nm);
        m->memo = nm;
        m->memo_cap = nc;
    }
    if (!m->memo[idx]) m->memo_count++;
    m->memo[idx] = m->stack[m->sp - 1];
    return OTE_OK;
}

static int vm_memo_get(vm *m, uint64_t idx) {
    if (idx >= m->memo_cap || !m->memo[idx]) return vm_bad(m, "memo key not defined");
    return vm_push(m, m->memo[idx]);
}

static int str_is(const pobj *o, const char *s) {
    return o && (o->kind == PO_STR || o->kind == PO_BYTES) && o->u.str.n == strlen(s) && !memcmp(o->u.str.p, s, o->u.str.n);
}
static int glob_is(const pobj *o, const char *mod, const char *name) {
    return o && o->kind == PO_GLOBAL && o->u.glob.ml == strlen(mod) && !memcmp(o->u.glob.m, mod, o->u.glob.ml) &&
           o->u.glob.nl == strlen(name) && !memcmp(o->u.glob.nm, name, o->u.glob.nl);
}

/* Reads a '\n'-terminated line (text opcodes); *len excludes the newline. */
static int vm_line(vm *m, const char **s, size_t *len) {
    const uint8_t *nl = m->pos < m->n ? memchr(m->p + m->pos, '\n', m->n - m->pos) : NULL;
    if (!nl) return ote_err(OTE_EPARSE, "pth: %s: data.pkl truncated (unterminated line at offset %zu)", m->what, m->pos);
    *s = (const char *)m->p + m->pos;
    *len = (size_t)(nl - (m->p + m->pos));
    m->pos += *len + 1;
    return OTE_OK;
}

static int vm_dec(vm *m, uint64_t *v) {
    const char *s;
    size_t l;
    CHECK(vm_line(m, &s, &l));
    uint64_t r = 0;
    if (l == 0 || l > 18) return vm_bad(m, "bad decimal memo key");
    for (size_t i = 0; i < l; i++) {
        if (s[i] < '0' || s[i] > '9') return vm_bad(m, "bad decimal memo key");
        r = r * 10 + (uint64_t)(s[i] - '0');
    }
    *v = r;
    return OTE_OK;
}

static int vm_push_int(vm *m, int64_t v) {
    pobj *o = vm_new(m, PO_INT);
    if (o) o->u.i = v;
    return vm_push(m, o);
}

static int vm_push_str(vm *m, int kind, size_t len) {
    CHECK(vm_need(m, len));
    pobj *o = vm_new(m, kind);
    if (o) {
        o->u.str.p = (const char *)m->p + m->pos;
        o->u.str.n = len;
    }
    m->pos += len;
    return vm_push(m, o);
}

static int vm_long(vm *m, size_t nb) {
    CHECK(vm_need(m, nb));
    if (nb > 8) return vm_bad(m, "integer wider than 64 bits");
    uint64_t u = 0;
    for (size_t i = 0; i < nb; i++) u |= (uint64_t)m->p[m->pos + i] << (8 * i);
    if (nb > 0 && nb < 8 && (m->p[m->pos + nb - 1] & 0x80)) u |= ~0ull << (8 * nb); /* sign-extend */
    m->pos += nb;
    int64_t v;
    memcpy(&v, &u, 8);
    return vm_push_int(m, v);
}

/* REDUCE / NEWOBJ: we only give meaning to the few callables torch's checkpoints use; anything
 * else becomes an opaque object (fails later only if it is where a tensor/dict is needed). */
static pobj *vm_call(vm *m, pobj *fn, pobj *args) {
    size_t na = args->kind == PO_TUPLE ? args->u.seq.n : 0;
    pobj **a = args->kind == PO_TUPLE ? args->u.seq.v : NULL;
    if (glob_is(fn, "collections", "OrderedDict") || glob_is(fn, "builtins", "dict")) {
        pobj *d = vm_new(m, PO_DICT);
        if (d && na == 1 && (a[0]->kind == PO_LIST || a[0]->kind == PO_TUPLE)) {
            for (size_t i = 0; i < a[0]->u.seq.n; i++) {
                pobj *kv = a[0]->u.seq.v[i];
                if ((kv->kind == PO_TUPLE || kv->kind == PO_LIST) && kv->u.seq.n == 2)
                    if (seq_push(d, kv->u.seq.v[0]) || seq_push(d, kv->u.seq.v[1])) return NULL;
            }
        }
        return d;
    }
    if ((glob_is(fn, "torch._utils", "_rebuild_tensor_v2") && (na == 6 || na == 7)) ||
        (glob_is(fn, "torch._utils", "_rebuild_tensor") && na == 4)) {
        pobj *t = vm_new(m, PO_TENSOR);
        if (t) t->u.ten.args = args;
        return t;
    }
    if ((glob_is(fn, "torch._utils", "_rebuild_parameter") || glob_is(fn, "torch._utils", "_rebuild_parameter_with_state") ||
         glob_is(fn, "torch.nn.parameter", "Parameter")) && na >= 1 && a[0]->kind == PO_TENSOR)
        return a[0];
    pobj *o = vm_new(m, PO_OBJECT);
    if (o) o->u.obj.cls = fn;
    return o;
}

static int vm_persid(vm *m, pobj *pid) {
    /* ('storage', torch.<T>Storage, key, location, numel) */
    if (pid->kind != PO_TUPLE || pid->u.seq.n < 5 || !str_is(pid->u.seq.v[0], "storage"))
        return vm_bad(m, "persistent id is not ('storage', type, key, location, numel)");
    pobj **v = pid->u.seq.v;
    if (v[1]->kind != PO_GLOBAL || v[2]->kind != PO_STR || v[4]->kind != PO_INT || v[4]->u.i < 0)
        return vm_bad(m, "persistent id has wrong field types (want class, str key, int numel)");
    pobj *s = vm_new(m, PO_STORAGE);
    if (s) {
        s->u.st.type = v[1];
        s->u.st.key = v[2];
        s->u.st.numel = v[4]->u.i;
    }
    return vm_push(m, s);
}

static int vm_run(vm *m, pobj **result) {
    *result = NULL;
    while (m->pos < m->n) {
        m->op_pos = m->pos;
        unsigned op = m->p[m->pos++];
        pobj *a = NULL, *b = NULL, *o = NULL;
        size_t start = 0, cnt = 0;
        switch (op) {
        case OP_PROTO:
            CHECK(vm_need(m, 1));
            if (m->p[m->pos] > 5) return vm_bad(m, "unsupported pickle protocol");
            m->pos++;
            break;
        case OP_FRAME: CHECK(vm_need(m, 8)); m->pos += 8; break;
        case OP_STOP:
            CHECK(vm_pop(m, result));
            return OTE_OK;
        case OP_MARK:
            if (m->nmarks == m->mcap) {
                size_t nc = m->mcap ? 2 * m->mcap : 16;
                size_t *nm = realloc(m->marks, nc * sizeof *nm);
                if (!nm) return vm_oom(m);
                m->marks = nm;
                m->mcap = nc;
            }
            m->marks[m->nmarks++] = m->sp;
            break;
        case OP_POP:
            if (m->sp > vm_base(m)) m->sp--;
            else if (m->nmarks) m->nmarks--; /* CPython: POP on an empty frame drops the mark */
            else return vm_bad(m, "stack underflow");
            break;
        case OP_POP_MARK: CHECK(vm_pop_mark(m, &start, &cnt)); break;
        case OP_DUP:
            if (m->sp <= vm_base(m)) return vm_bad(m, "stack underflow");
            CHECK(vm_push(m, m->stack[m->sp - 1]));
            break;
        case OP_NONE: CHECK(vm_push(m, vm_new(m, PO_NONE))); break;
        case OP_NEWTRUE:
        case OP_NEWFALSE:
            o = vm_new(m, PO_BOOL);
            if (o) o->u.i = op == OP_NEWTRUE;
            CHECK(vm_push(m, o));
            break;
        case OP_BININT:
            CHECK(vm_need(m, 4));
            CHECK(vm_push_int(m, (int64_t)(int32_t)rd32(m->p + m->pos)));
            m->pos += 4;
            break;
        case OP_BININT1:
            CHECK(vm_need(m, 1));
            CHECK(vm_push_int(m, m->p[m->pos]));
            m->pos += 1;
            break;
        case OP_BININT2:
            CHECK(vm_need(m, 2));
            CHECK(vm_push_int(m, rd16(m->p + m->pos)));
            m->pos += 2;
            break;
        case OP_LONG1:
            CHECK(vm_need(m, 1));
            m->pos += 1;
            CHECK(vm_long(m, m->p[m->pos - 1]));
            break;
        case OP_LONG4:
            CHECK(vm_need(m, 4));
            m->pos += 4;
            CHECK(vm_long(m, rd32(m->p + m->pos - 4)));
            break;
        case OP_BINFLOAT: {
            CHECK(vm_need(m, 8));
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = (u << 8) | m->p[m->pos + (size_t)i];
            m->pos += 8;
            o = vm_new(m, PO_FLOAT);
            if (o) memcpy(&o->u.f, &u, 8);
            CHECK(vm_push(m, o));
            break;
        }
        case OP_BINUNICODE:
        case OP_BINSTRING:
        case OP_BINBYTES:
            CHECK(vm_need(m, 4));
            m->pos += 4;
            CHECK(vm_push_str(m, op == OP_BINBYTES ? PO_BYTES : PO_STR, rd32(m->p + m->pos - 4)));
            break;
        case OP_SHORT_BINUNICODE:
        case OP_SHORT_BINSTRING:
        case OP_SHORT_BINBYTES:
            CHECK(vm_need(m, 1));
            m->pos += 1;
            CHECK(vm_push_str(m, op == OP_SHORT_BINBYTES ? PO_BYTES : PO_STR, m->p[m->pos - 1]));
            break;
        case OP_BINUNICODE8:
        case OP_BINBYTES8: {
            CHECK(vm_need(m, 8));
            uint64_t l = rd64(m->p + m->pos);
            m->pos += 8;
            if (l > m->n) return vm_bad(m, "string length past end of data");
            CHECK(vm_push_str(m, op == OP_BINBYTES8 ? PO_BYTES : PO_STR, (size_t)l));
            break;
        }
        case OP_EMPTY_DICT: CHECK(vm_push(m, vm_new(m, PO_DICT))); break;
        case OP_EMPTY_LIST:
        case OP_EMPTY_SET: CHECK(vm_push(m, vm_new(m, PO_LIST))); break; /* a set is kept as a list */
        case OP_EMPTY_TUPLE: CHECK(vm_push(m, vm_new(m, PO_TUPLE))); break;
        case OP_TUPLE:
        case OP_LIST:
        case OP_DICT:
        case OP_FROZENSET:
            CHECK(vm_pop_mark(m, &start, &cnt));
            if (op == OP_DICT && cnt % 2) return vm_bad(m, "odd number of items for a dict");
            o = vm_new(m, op == OP_LIST ? PO_LIST : op == OP_DICT ? PO_DICT : PO_TUPLE);
            if (!o) return vm_oom(m);
            for (size_t i = 0; i < cnt; i++)
                if (seq_push(o, m->stack[start + i])) return vm_oom(m);
            CHECK(vm_push(m, o));
            break;
        case OP_TUPLE1:
        case OP_TUPLE2:
        case OP_TUPLE3: {
            size_t k = op - OP_TUPLE1 + 1;
            if (m->sp - vm_base(m) < k) return vm_bad(m, "stack underflow");
            o = vm_new(m, PO_TUPLE);
            if (!o) return vm_oom(m);
            for (size_t i = 0; i < k; i++)
                if (seq_push(o, m->stack[m->sp - k + i])) return vm_oom(m);
            m->sp -= k;
            CHECK(vm_push(m, o));
            break;
        }
        case OP_APPEND:
        case OP_SETITEM: {
            size_t k = op == OP_APPEND ? 1 : 2;
            if (m->sp - vm_base(m) < k + 1) return vm_bad(m, "stack underflow");
            pobj *tgt = m->stack[m->sp - k - 1];
            int want = op == OP_APPEND ? PO_LIST : PO_DICT;
            if (tgt->kind != want && tgt->kind != PO_OBJECT)
                return vm_bad(m, op == OP_APPEND ? "APPEND to a non-list" : "SETITEM on a non-dict");
            if (tgt->kind == want)
                for (size_t i = 0; i < k; i++)
                    if (seq_push(tgt, m->stack[m->sp - k + i])) return vm_oom(m);
            m->sp -= k;
            break;
        }
        case OP_APPENDS:
        case OP_SETITEMS:
        case OP_ADDITEMS: {
            CHECK(vm_pop_mark(m, &start, &cnt));
            if (m->sp <= vm_base(m)) return vm_bad(m, "stack underflow");
            pobj *tgt = m->stack[m->sp - 1];
            int want = op == OP_SETITEMS ? PO_DICT : PO_LIST;
            if (op == OP_SETITEMS && cnt % 2) return vm_bad(m, "odd number of items for SETITEMS");
            if (tgt->kind != want && tgt->kind != PO_OBJECT)
                return vm_bad(m, op == OP_SETITEMS ? "SETITEMS on a non-dict" : "APPENDS to a non-list");
            if (tgt->kind == want)
                for (size_t i = 0; i < cnt; i++)
                    if (seq_push(tgt, m->stack[start + i])) return vm_oom(m);
            break;
        }
        case OP_BINPUT:
            CHECK(vm_need(m, 1));
            m->pos += 1;
            CHECK(vm_memo_set(m, m->p[m->pos - 1]));
            break;
        case OP_LONG_BINPUT:
            CHECK(vm_need(m, 4));
            m->pos += 4;
            CHECK(vm_memo_set(m, rd32(m->p + m->pos - 4)));
            break;
        case OP_MEMOIZE: CHECK(vm_memo_set(m, m->memo_count)); break;
        case OP_PUT: {
            uint64_t k;
            CHECK(vm_dec(m, &k));
            CHECK(vm_memo_set(m, k));
            break;
        }
        case OP_BINGET:
            CHECK(vm_need(m, 1));
            m->pos += 1;
            CHECK(vm_memo_get(m, m->p[m->pos - 1]));
            break;
        case OP_LONG_BINGET:
            CHECK(vm_need(m, 4));
            m->pos += 4;
            CHECK(vm_memo_get(m, rd32(m->p + m->pos - 4)));
            break;
        case OP_GET: {
            uint64_t k;
            CHECK(vm_dec(m, &k));
            CHECK(vm_memo_get(m, k));
            break;
        }
        case OP_GLOBAL: {
            const char *s1, *s2;
            size_t l1, l2;
            CHECK(vm_line(m, &s1, &l1));
            CHECK(vm_line(m, &s2, &l2));
            o = vm_new(m, PO_GLOBAL);
            if (o) {
                o->u.glob.m = s1;
                o->u.glob.ml = l1;
                o->u.glob.nm = s2;
                o->u.glob.nl = l2;
            }
            CHECK(vm_push(m, o));
            break;
        }
        case OP_STACK_GLOBAL:
            CHECK(vm_pop(m, &b));
            CHECK(vm_pop(m, &a));
            if (a->kind != PO_STR || b->kind != PO_STR) return vm_bad(m, "STACK_GLOBAL needs two strings");
            o = vm_new(m, PO_GLOBAL);
            if (o) {
                o->u.glob.m = a->u.str.p;
                o->u.glob.ml = a->u.str.n;
                o->u.glob.nm = b->u.str.p;
                o->u.glob.nl = b->u.str.n;
            }
            CHECK(vm_push(m, o));
            break;
        case OP_REDUCE:
        case OP_NEWOBJ:
            CHECK(vm_pop(m, &b)); /* args */
            CHECK(vm_pop(m, &a)); /* callable / class */
            if (b->kind != PO_TUPLE) return vm_bad(m, "call arguments are not a tuple");
            o = vm_call(m, a, b);
            if (!o) return vm_oom(m);
            CHECK(vm_push(m, o));
            break;
        case OP_NEWOBJ_EX:
            CHECK(vm_pop(m, &o)); /* kwargs, ignored */
            CHECK(vm_pop(m, &b));
            CHECK(vm_pop(m, &a));
            if (b->kind != PO_TUPLE) return vm_bad(m, "call arguments are not a tuple");
            o = vm_call(m, a, b);
            if (!o) return vm_oom(m);
            CHECK(vm_push(m, o));
            break;
        case OP_BUILD:
            /* __setstate__: an OrderedDict's _metadata, a Parameter's state ... nothing we use. */
            CHECK(vm_pop(m, &b));
            if (m->sp <= vm_base(m)) return vm_bad(m, "stack underflow");
            break;
        case OP_BINPERSID:
            CHECK(vm_pop(m, &a));
            CHECK(vm_persid(m, a));
            break;
        default: {
            char why[64];
            snprintf(why, sizeof why, "unsupported pickle opcode 0x%02x ('%c')", op, op >= 32 && op < 127 ? (int)op : '?');
            return vm_bad(m, why);
        }
        }
    }
    return ote_err(OTE_EPARSE, "pth: %s: data.pkl truncated (no STOP opcode)", m->what);
}

/* ---------------------------------------------------------------- from pickle objects to pth_ckpt */

typedef enum src_kind { SK_F32, SK_F64, SK_F16, SK_BF16, SK_I64, SK_I32, SK_I16, SK_I8, SK_U8, SK_BOOL } src_kind;

static const struct {
    const char *name;
    src_kind k;
    size_t size;
} storage_types[] = {
    {"FloatStorage", SK_F32, 4}, {"DoubleStorage", SK_F64, 8}, {"HalfStorage", SK_F16, 2},
    {"BFloat16Storage", SK_BF16, 2}, {"LongStorage", SK_I64, 8}, {"IntStorage", SK_I32, 4},
    {"ShortStorage", SK_I16, 2}, {"CharStorage", SK_I8, 1}, {"ByteStorage", SK_U8, 1},
    {"BoolStorage", SK_BOOL, 1}, {"UntypedStorage", SK_U8, 1},
};

static float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (e == 0) {
        float f = ldexpf((float)mant, -24); /* zero or subnormal: exact in f32 */
        return sign ? -f : f;
    }
    if (e == 31) bits = sign | 0x7f800000u | (mant << 13);
    else bits = sign | ((e + 112) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float f64_to_f32(double d) {
    /* Out-of-range double->float conversion is undefined in C; round like IEEE would. */
    if (isfinite(d) && fabs(d) > FLT_MAX) {
        float r = fabs(d) >= 0x1.ffffffp+127 ? INFINITY : FLT_MAX;
        return d < 0 ? -r : r;
    }
    return (float)d;
}

/* Converts n elements of kind k at src (any alignment) into dst (float* or int64_t*). */
static void convert(src_kind k, const uint8_t *src, size_t n, void *dst) {
    float *df = dst;
    int64_t *di = dst;
    switch (k) {
    case SK_F32: memcpy(dst, src, n * sizeof(float)); break;
    case SK_I64: memcpy(dst, src, n * sizeof(int64_t)); break;
    case SK_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            df[i] = f64_to_f32(d);
        }
        break;
    case SK_F16:
        for (size_t i = 0; i < n; i++) df[i] = half_to_f32(rd16(src + 2 * i));
        break;
    case SK_BF16:
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)rd16(src + 2 * i) << 16;
            memcpy(&df[i], &bits, 4);
        }
        break;
    case SK_I32:
        for (size_t i = 0; i < n; i++) di[i] = (int32_t)rd32(src + 4 * i);
        break;
    case SK_I16:
        for (size_t i = 0; i < n; i++) di[i] = (int16_t)rd16(src + 2 * i);
        break;
    case SK_I8:
        for (size_t i = 0; i < n; i++) di[i] = (int8_t)src[i];
        break;
    case SK_U8:
    case SK_BOOL:
        for (size_t i = 0; i < n; i++) di[i] = src[i];
        break;
    }
}

typedef struct ld {
    const char *what;
    zr *z;
    const char *prefix; /* archive name ("archive", "weights", ...) */
    size_t plen;
    pth_ckpt *c;
    size_t budget; /* config nodes still allowed: shared sub-objects could otherwise blow up */
} ld;

static int ld_tensor(ld *L, const pobj *key, const pobj *val) {
    const char *nm = key->u.str.p;
    int nl = (int)(key->u.str.n > 200 ? 200 : key->u.str.n);
    if (val->kind != PO_TENSOR)
        return ote_err(OTE_EPARSE, "pth: %s: state dict entry '%.*s' is a %s, not a tensor", L->what, nl, nm, po_kind_name(val->kind));
    const pobj *args = val->u.ten.args;
    pobj *const *a = args->u.seq.v;
    const pobj *st = a[0], *off = a[1], *size = a[2], *stride = a[3];
    if (st->kind != PO_STORAGE) return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': first argument is not a storage", L->what, nl, nm);
    if (off->kind != PO_INT || off->u.i < 0)
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': storage offset is not a non-negative int", L->what, nl, nm);
    if (size->kind != PO_TUPLE || stride->kind != PO_TUPLE || size->u.seq.n != stride->u.seq.n)
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': size/stride are not tuples of equal length", L->what, nl, nm);
    size_t nd = size->u.seq.n;
    if (nd > PTH_MAX_DIMS)
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': %zu dims (at most %d supported)", L->what, nl, nm, nd, PTH_MAX_DIMS);
    int64_t shape[PTH_MAX_DIMS], strd[PTH_MAX_DIMS];
    uint64_t numel = 1;
    for (size_t d = 0; d < nd; d++) {
        const pobj *s = size->u.seq.v[d], *t = stride->u.seq.v[d];
        if (s->kind != PO_INT || t->kind != PO_INT || s->u.i < 0 || t->u.i < 0)
            return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': size/stride entry %zu is not a non-negative int", L->what, nl, nm, d);
        shape[d] = s->u.i;
        strd[d] = t->u.i;
        if (shape[d] && numel > ((uint64_t)1 << 40) / (uint64_t)shape[d])
            return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': too many elements", L->what, nl, nm);
        numel *= (uint64_t)shape[d];
    }
    /* Contiguous in torch's sense: size-1 dims may carry any stride; empty tensors always are. */
    if (numel > 0) {
        int64_t expect = 1;
        for (size_t d = nd; d-- > 0;) {
            if (shape[d] != 1 && strd[d] != expect)
                return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': non-contiguous stride %" PRId64 " for dim %zu (expected %" PRId64 "); save it with .contiguous()",
                               L->what, nl, nm, strd[d], d, expect);
            expect *= shape[d];
        }
    }
    const pobj *ty = st->u.st.type;
    int ti = -1;
    if (ty->u.glob.ml == 5 && !memcmp(ty->u.glob.m, "torch", 5))
        for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0]; i++)
            if (ty->u.glob.nl == strlen(storage_types[i].name) && !memcmp(ty->u.glob.nm, storage_types[i].name, ty->u.glob.nl)) ti = (int)i;
    if (ti < 0)
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': unsupported storage type %.*s.%.*s", L->what, nl, nm, (int)ty->u.glob.ml,
                       ty->u.glob.m, (int)ty->u.glob.nl, ty->u.glob.nm);
    src_kind sk = storage_types[ti].k;
    size_t es = storage_types[ti].size;
    uint64_t snumel = (uint64_t)st->u.st.numel;
    const pobj *key2 = st->u.st.key;
    zent *rec = NULL;
    char sub[128];
    int kl = (int)(key2->u.str.n > 100 ? 100 : key2->u.str.n);
    snprintf(sub, sizeof sub, "data/%.*s", kl, key2->u.str.p);
    int found = key2->u.str.n <= 100 ? zr_get(L->z, L->prefix, L->plen, sub, strlen(sub), &rec) : 0;
    CHECK(found);
    if (!found)
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': record '%.*s/data/%.*s' is missing", L->what, nl, nm, (int)L->plen, L->prefix, kl,
                       key2->u.str.p);
    if (snumel > ((uint64_t)1 << 40) || rec->size != snumel * es)
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': record data/%.*s has %" PRIu64 " bytes, storage needs %" PRIu64 " x %zu",
                       L->what, nl, nm, kl, key2->u.str.p, rec->size, snumel, es);
    uint64_t o = (uint64_t)off->u.i;
    if (numel > 0 && (o > snumel || numel > snumel - o))
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': offset %" PRIu64 " + %" PRIu64 " elements exceed its storage (%" PRIu64 ")",
                       L->what, nl, nm, o, numel, snumel);
    if (memchr(nm, 0, key->u.str.n)) return ote_err(OTE_EPARSE, "pth: %s: a tensor name contains a NUL byte", L->what);
    pth_dtype dt = (sk == SK_F32 || sk == SK_F64 || sk == SK_F16 || sk == SK_BF16) ? PTH_F32 : PTH_I64;
    pth_tensor *t = ck_push(L->c, nm, key->u.str.n, dt, (int)nd, shape, (size_t)numel);
    if (!t) return ote_err(OTE_ENOMEM, "pth: %s: out of memory", L->what);
    snprintf(t->src_type, sizeof t->src_type, "%s", storage_types[ti].name);
    if (numel) convert(sk, rec->data + o * es, (size_t)numel, t->data);
    return OTE_OK;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int ld_state_dict(ld *L, const pobj *sd) {
    for (size_t i = 0; i + 1 < sd->u.seq.n; i += 2) {
        const pobj *k = sd->u.seq.v[i];
        if (k->kind != PO_STR) return ote_err(OTE_EPARSE, "pth: %s: state dict key #%zu is a %s, not a str", L->what, i / 2, po_kind_name(k->kind));
        CHECK(ld_tensor(L, k, sd->u.seq.v[i + 1]));
    }
    /* Unique names (a hostile pickle can repeat keys; torch would keep the last one). */
    size_t n = L->c->n_tensors;
    if (n < 2) return OTE_OK;
    const char **names = malloc(n * sizeof *names);
    if (!names) return ote_err(OTE_ENOMEM, "pth: %s: out of memory", L->what);
    for (size_t i = 0; i < n; i++) names[i] = L->c->tensors[i].name;
    qsort(names, n, sizeof *names, name_cmp);
    int rc = OTE_OK;
    for (size_t i = 1; i < n && rc == OTE_OK; i++)
        if (!strcmp(names[i - 1], names[i])) rc = ote_err(OTE_EPARSE, "pth: %s: duplicate tensor name '%.200s'", L->what, names[i]);
    free(names);
    return rc;
}

/* Python-like text of a scalar/list config value; returns 0 if the value has no text form. */
static int repr_val(bbuf *b, const pobj *v, int quote, int depth, size_t *budget) {
    char tmp[64];
    if (*budget == 0) return 0;
    (*budget)--;
    switch (v->kind) {
    case PO_NONE: bb_str(b, "None"); return 1;
    case PO_BOOL: bb_str(b, v->u.i ? "True" : "False"); return 1;
    case PO_INT: snprintf(tmp, sizeof tmp, "%" PRId64, v->u.i); bb_str(b, tmp); return 1;
    case PO_FLOAT:
        if (isnan(v->u.f)) snprintf(tmp, sizeof tmp, "nan");
        else if (isinf(v->u.f)) snprintf(tmp, sizeof tmp, v->u.f < 0 ? "-inf" : "inf");
        else {
            for (int prec = 1; prec <= 17; prec++) { /* shortest text that reads back exactly */
                snprintf(tmp, sizeof tmp, "%.*g", prec, v->u.f);
                if (strtod(tmp, NULL) == v->u.f) break;
            }
            if (!strpbrk(tmp, ".e")) strcat(tmp, ".0"); /* Python's repr: 1.0, not 1 */
        }
        bb_str(b, tmp);
        return 1;
    case PO_STR:
        if (quote) bb_u8(b, '\'');
        bb_put(b, v->u.str.p, v->u.str.n);
        if (quote) bb_u8(b, '\'');
        return 1;
    case PO_LIST:
    case PO_TUPLE:
        if (depth > 16) return 0;
        bb_u8(b, v->kind == PO_LIST ? '[' : '(');
        for (size_t i = 0; i < v->u.seq.n; i++) {
            if (i) bb_str(b, ", ");
            if (!repr_val(b, v->u.seq.v[i], 1, depth + 1, budget)) return 0;
        }
        if (v->kind == PO_TUPLE && v->u.seq.n == 1) bb_u8(b, ',');
        bb_u8(b, v->kind == PO_LIST ? ']' : ')');
        return 1;
    default: return 0;
    }
}

static int ld_config(ld *L, const pobj *d, const char *prefix, size_t plen, int depth) {
    if (depth > 32) return OTE_OK; /* deeper nesting (or a cycle through the memo) is skipped */
    for (size_t i = 0; i + 1 < d->u.seq.n; i += 2) {
        const pobj *k = d->u.seq.v[i], *v = d->u.seq.v[i + 1];
        if (L->budget == 0 || L->c->n_config >= 65536)
            return ote_err(OTE_EPARSE, "pth: %s: config is too large (more than 65536 entries or 1M values)", L->what);
        L->budget--;
        if (k->kind != PO_STR || memchr(k->u.str.p, 0, k->u.str.n)) continue; /* non-str keys are skipped */
        bbuf key = {0};
        bb_put(&key, prefix, plen);
        if (plen) bb_u8(&key, '.');
        bb_put(&key, k->u.str.p, k->u.str.n);
        int rc = OTE_OK;
        if (v->kind == PO_DICT) {
            if (!key.oom) rc = ld_config(L, v, (const char *)key.p, key.n, depth + 1);
        } else {
            bbuf val = {0};
            if (repr_val(&val, v, 0, 0, &L->budget)) {
                if (val.oom || key.oom || memchr(val.p ? (const void *)val.p : "", 0, val.n)) {
                    if (val.oom || key.oom) rc = ote_err(OTE_ENOMEM, "pth: %s: out of memory", L->what);
                } else if (cfg_put(L->c, (const char *)key.p, key.n, val.p ? (const char *)val.p : "", val.n) < 0) {
                    rc = ote_err(OTE_ENOMEM, "pth: %s: out of memory", L->what);
                }
            }
            free(val.p);
        }
        if (key.oom && rc == OTE_OK) rc = ote_err(OTE_ENOMEM, "pth: %s: out of memory", L->what);
        free(key.p);
        CHECK(rc);
    }
    return OTE_OK;
}

static const pobj *dict_get(const pobj *d, const char *key) {
    const pobj *r = NULL;
    for (size_t i = 0; i + 1 < d->u.seq.n; i += 2)
        if (str_is(d->u.seq.v[i], key) && d->u.seq.v[i]->kind == PO_STR) r = d->u.seq.v[i + 1]; /* last one wins, as in Python */
    return r;
}

/* ote-c's training state: an 'optimizer' dict of str -> tensor into c->aux; anything else there
 * (mmcv's optimizer.state_dict(), None) is not ours and is skipped. */
static int ld_aux(ld *L, const pobj *opt) {
    if (!opt || opt->kind != PO_DICT || !opt->u.seq.n) return OTE_OK;
    for (size_t i = 0; i + 1 < opt->u.seq.n; i += 2)
        if (opt->u.seq.v[i]->kind != PO_STR || opt->u.seq.v[i + 1]->kind != PO_TENSOR) return OTE_OK;
    swap_aux(L->c);
    int rc = ld_state_dict(L, opt);
    swap_aux(L->c);
    return rc;
}

static int ld_root(ld *L, const pobj *root) {
    pth_ckpt *c = L->c;
    if (root->kind != PO_DICT)
        return ote_err(OTE_EPARSE, "pth: %s: top-level object is a %s, not a dict", L->what, po_kind_name(root->kind));
    const pobj *model = dict_get(root, "model"), *sd = dict_get(root, "state_dict");
    c->has_confidence_threshold = 0;
    c->has_version = 0;
    if (model && model->kind == PO_DICT) {
        c->layout = PTH_LAYOUT_OTE;
        CHECK(ld_state_dict(L, model));
        const pobj *cfg = dict_get(root, "config"), *ct = dict_get(root, "confidence_threshold"), *ver = dict_get(root, "VERSION");
        if (cfg && cfg->kind == PO_DICT) CHECK(ld_config(L, cfg, "", 0, 0));
        if (ct) {
            if (ct->kind != PO_FLOAT && ct->kind != PO_INT)
                return ote_err(OTE_EPARSE, "pth: %s: confidence_threshold is a %s, expected a float", L->what, po_kind_name(ct->kind));
            c->confidence_threshold = ct->kind == PO_FLOAT ? ct->u.f : (double)ct->u.i;
            c->has_confidence_threshold = 1;
        }
        if (ver) {
            if (ver->kind != PO_INT) return ote_err(OTE_EPARSE, "pth: %s: VERSION is a %s, expected an int", L->what, po_kind_name(ver->kind));
            c->version = ver->u.i;
            c->has_version = 1;
        }
        return ld_aux(L, dict_get(root, "optimizer"));
    }
    if (sd && sd->kind == PO_DICT) {
        c->layout = PTH_LAYOUT_STATE_DICT;
        return ld_state_dict(L, sd);
    }
    for (size_t i = 0; i + 1 < root->u.seq.n; i += 2) {
        const pobj *k = root->u.seq.v[i], *v = root->u.seq.v[i + 1];
        if (v->kind != PO_TENSOR)
            return ote_err(OTE_EPARSE, "pth: %s: no 'model' or 'state_dict' dict at top level, and entry '%.*s' is a %s, so it is not a bare state dict either",
                           L->what, k->kind == PO_STR ? (int)(k->u.str.n > 200 ? 200 : k->u.str.n) : 1,
                           k->kind == PO_STR ? k->u.str.p : "?", po_kind_name(v->kind));
    }
    c->layout = PTH_LAYOUT_BARE;
    return ld_state_dict(L, root);
}

int pth_load_mem(const void *buf, size_t len, const char *what, pth_ckpt *c) {
    if (!what) what = "<memory>";
    if (!host_is_le()) return ote_err(OTE_EINVAL, "pth: %s: big-endian hosts are not supported", what);
    if (c->n_tensors || c->n_config) return ote_err(OTE_EINVAL, "pth: %s: pth_load needs an empty checkpoint", what);
    pth_init(c);
    zr z = {.what = what, .buf = buf, .len = len};
    vm m = {.what = what};
    int rc = zr_open(&z);
    if (rc < 0) goto out;
    /* The archive name is the directory holding data.pkl (torch uses the file's stem). */
    const zent *pk = NULL;
    for (size_t i = 0; i < z.n; i++) {
        const zent *e = &z.e[i];
        if (e->nlen > 9 && !memcmp(e->name + e->nlen - 9, "/data.pkl", 9) && !memchr(e->name, '/', e->nlen - 9)) {
            pk = e;
            break;
        }
    }
    if (!pk) {
        rc = ote_err(OTE_EPARSE, "pth: %s: no '<archive>/data.pkl' record: not a torch.save checkpoint", what);
        goto out;
    }
    ld L = {.what = what, .z = &z, .prefix = (const char *)pk->name, .plen = pk->nlen - 9, .c = c, .budget = 1u << 20};
    zent *e = NULL;
    rc = zr_get(&z, L.prefix, L.plen, "version", 7, &e);
    if (rc < 0) goto out;
    if (!rc) {
        rc = ote_err(OTE_EPARSE, "pth: %s: record '%.*s/version' is missing", what, (int)L.plen, L.prefix);
        goto out;
    }
    if (e->size < 1 || e->size > 8 || e->data[0] < '1' || e->data[0] > '9') {
        rc = ote_err(OTE_EPARSE, "pth: %s: unreadable format version record", what);
        goto out;
    }
    rc = zr_get(&z, L.prefix, L.plen, "byteorder", 9, &e);
    if (rc < 0) goto out;
    if (rc && !(e->size == 6 && !memcmp(e->data, "little", 6))) {
        rc = ote_err(OTE_EPARSE, "pth: %s: byteorder record is '%.*s'; only little-endian checkpoints are supported", what,
                     (int)(e->size > 16 ? 16 : e->size), (const char *)e->data);
        goto out;
    }
    rc = zr_get(&z, L.prefix, L.plen, "data.pkl", 8, &e);
    if (rc < 0) goto out;
    m.p = e->data;
    m.n = (size_t)e->size;
    pobj *root = NULL;
    rc = vm_run(&m, &root);
    if (rc < 0) goto out;
    rc = ld_root(&L, root);
out:
    vm_free(&m);
    free(z.e);
    if (rc < 0) {
        pth_free(c);
        /* Names in messages come from the file: keep the message one printable line. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ote_errmsg());
        for (char *q = msg; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f) *q = '?';
        ote_err(rc, "%s", msg);
    }
    return rc < 0 ? rc : OTE_OK;
}

int pth_load(const char *path, pth_ckpt *c) {
    FILE *f = fopen(path, "rb");
    if (!f) return ote_err(OTE_EIO, "pth: %s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return ote_err(OTE_EIO, "pth: %s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(f);
        return ote_err(OTE_ENOMEM, "pth: %s: out of memory reading %zu bytes", path, len);
    }
    size_t got = fread(buf, 1, len, f);
    int rerr = ferror(f);
    fclose(f);
    if (got != len || rerr) {
        free(buf);
        return ote_err(OTE_EIO, "pth: %s: read failed", path);
    }
    int rc = pth_load_mem(buf, len, path, c);
    free(buf);
    return rc;
}

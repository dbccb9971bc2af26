/* pth.c - PyTorch checkpoints (zip + pickle, as torch.save writes); see pth.h for the format.
 *
 * Owns: the pth_ckpt containers; what torch's objects look like in a pickle (the tensor rebuild
 * calls and storage persistent ids, written by pk_* and recognised by the pth_on_* hooks of the
 * pickle VM); the loader from pickle objects to a pth_ckpt. The zip container is io/zip.c, the
 * pickle opcodes io/pickle.c, the temporary-file dance io/atomic.c. Invariants: data are written
 * and read as little-endian (we refuse to run on a big-endian host rather than silently produce
 * wrong files); every tensor read is checked against its record's size.
 */
#include "io/pth.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/ote.h"
#include "io/bytes.h"
#include "io/pickle.h"
#include "io/zip.h"

#define PTH_ALIGN 64 /* torch aligns every record's data to 64 bytes (extra field "FB" + 'Z' pad) */

/* The pickle VM objects torch's checkpoints add (pickle.h: hook kinds use u.ext). */
enum {
    PTH_PO_STORAGE = PICKLE_USER, /* persistent id: ext.ref[0] the storage class, ext.ref[1] the key, ext.i numel */
    PTH_PO_TENSOR,                /* _rebuild_tensor(_v2) call: ext.ref[0] its argument tuple */
};

static const char *pth_kind_name(int k) {
    return k == PTH_PO_STORAGE ? "storage" : k == PTH_PO_TENSOR ? "tensor" : pickle_kind_name(k);
}

/* ---------------------------------------------------------------- small helpers */

static int host_is_le(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

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

/* ---------------------------------------------------------------- torch objects in a pickle (protocol 2) */

/* Memo slots for the objects every tensor repeats, written once and fetched with BINGET like
 * torch's own pickler does (keeps data.pkl small). */
enum { MS_ODICT, MS_REBUILD, MS_STORAGE, MS_CPU, MS_FLOAT, MS_LONG };

static void pk_ordered_dict(pickle_writer *w) {
    pickle_global(w, MS_ODICT, "collections", "OrderedDict");
    pickle_op(w, PICKLE_OP_EMPTY_TUPLE);
    pickle_op(w, PICKLE_OP_REDUCE);
}

/* torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks): what torch.save emits for a plain CPU tensor; the storage is the persistent
 * id ('storage', torch.<T>Storage, key, 'cpu', numel) resolved to record data/<key>. */
static void pk_tensor(pickle_writer *w, const pth_tensor *t, size_t key) {
    char ks[32];
    snprintf(ks, sizeof ks, "%zu", key);
    pickle_global(w, MS_REBUILD, "torch._utils", "_rebuild_tensor_v2");
    pickle_op(w, PICKLE_OP_MARK);
    pickle_op(w, PICKLE_OP_MARK);
    pickle_str_memo(w, MS_STORAGE, "storage");
    if (t->dtype == PTH_F32)
        pickle_global(w, MS_FLOAT, "torch", "FloatStorage");
    else
        pickle_global(w, MS_LONG, "torch", "LongStorage");
    pickle_str(w, ks);
    pickle_str_memo(w, MS_CPU, "cpu");
    pickle_int(w, (int64_t)t->numel);
    pickle_op(w, PICKLE_OP_TUPLE);
    pickle_op(w, PICKLE_OP_BINPERSID);
    pickle_int(w, 0);
    pickle_int_tuple(w, t->shape, t->ndim);
    int64_t stride[PTH_MAX_DIMS];
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        stride[d] = s;
        s *= t->shape[d] > 0 ? t->shape[d] : 1; /* torch uses max(size, 1) for contiguous strides */
    }
    pickle_int_tuple(w, stride, t->ndim);
    pickle_op(w, PICKLE_OP_NEWFALSE);
    pk_ordered_dict(w);
    pickle_op(w, PICKLE_OP_TUPLE);
    pickle_op(w, PICKLE_OP_REDUCE);
}

/* An OrderedDict of n tensors whose storages are records key0, key0 + 1, ... */
static void pk_tensor_dict(pickle_writer *w, const pth_tensor *ts, size_t n, size_t key0) {
    pk_ordered_dict(w);
    if (!n) return;
    pickle_op(w, PICKLE_OP_MARK);
    for (size_t i = 0; i < n; i++) {
        pickle_str(w, ts[i].name);
        pk_tensor(w, &ts[i], key0 + i);
    }
    pickle_op(w, PICKLE_OP_SETITEMS);
}

static void pk_state_dict(pickle_writer *w, const pth_ckpt *c) { pk_tensor_dict(w, c->tensors, c->n_tensors, 0); }

/* Emits the dict of config keys starting with prefix[0..plen) ("" or "a.b."), nesting on dots;
 * each sub-dict is emitted at the first key that reaches it, so file order follows insertion. */
static void pk_config(pickle_writer *w, const pth_ckpt *c, const char *prefix, size_t plen, int depth) {
    pickle_op(w, PICKLE_OP_EMPTY_DICT);
    int any = 0;
    for (size_t i = 0; i < c->n_config; i++) {
        const char *k = c->config[i].key;
        if (strncmp(k, prefix, plen) != 0 || strlen(k) <= plen) continue;
        const char *rest = k + plen;
        const char *dot = strchr(rest, '.');
        if (!any) pickle_op(w, PICKLE_OP_MARK);
        any = 1;
        if (!dot || depth >= 64) {
            pickle_str(w, rest);
            pickle_str(w, c->config[i].value);
            continue;
        }
        size_t sub = (size_t)(dot - k) + 1; /* length of "prefix comp." */
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            if (!strncmp(c->config[j].key, k, sub)) seen = 1;
        if (seen) continue;
        pickle_str_n(w, rest, (size_t)(dot - rest));
        pk_config(w, c, k, sub, depth + 1);
    }
    if (any) pickle_op(w, PICKLE_OP_SETITEMS);
}

static int pk_checkpoint(pickle_writer *w, const pth_ckpt *c) {
    pickle_proto(w, 2);
    switch (c->layout) {
    case PTH_LAYOUT_OTE:
        pickle_op(w, PICKLE_OP_EMPTY_DICT);
        pickle_op(w, PICKLE_OP_MARK);
        pickle_str(w, "model");
        pk_state_dict(w, c);
        pickle_str(w, "config");
        pk_config(w, c, "", 0, 0);
        pickle_str(w, "confidence_threshold");
        pickle_float(w, c->confidence_threshold);
        pickle_str(w, "VERSION");
        pickle_int(w, c->version);
        if (c->n_aux) { /* the training state's tensors; storages numbered after the model's */
            pickle_str(w, "optimizer");
            pk_tensor_dict(w, c->aux, c->n_aux, c->n_tensors);
        }
        pickle_op(w, PICKLE_OP_SETITEMS);
        break;
    case PTH_LAYOUT_STATE_DICT:
        pickle_op(w, PICKLE_OP_EMPTY_DICT);
        pickle_str(w, "state_dict");
        pk_state_dict(w, c);
        pickle_op(w, PICKLE_OP_SETITEM);
        break;
    case PTH_LAYOUT_BARE: pk_state_dict(w, c); break;
    default: return ote_err(OTE_EINVAL, "pth: unknown layout %d", (int)c->layout);
    }
    pickle_op(w, PICKLE_OP_STOP);
    return w->b.oom ? ote_err(OTE_ENOMEM, "pth: out of memory building data.pkl") : OTE_OK;
}

/* ---------------------------------------------------------------- saving */

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

static const pth_tensor *pth_record_tensor(const pth_ckpt *c, size_t i) {
    return i < c->n_tensors ? &c->tensors[i] : &c->aux[i - c->n_tensors];
}

/* data.pkl into w, after checking the checkpoint fits a zip without ZIP64; *n_all: the tensors
 * that get a record (the aux ones only in the OTE layout). */
static int pth_build(const char *path, const pth_ckpt *c, pickle_writer *w, size_t *n_all) {
    /* Total size check up front: without ZIP64 every offset must fit 32 bits. */
    uint64_t total = 4096;
    *n_all = c->n_tensors + (c->layout == PTH_LAYOUT_OTE ? c->n_aux : 0);
    for (size_t i = 0; i < *n_all; i++) {
        const pth_tensor *t = pth_record_tensor(c, i);
        if (t->dtype != PTH_F32 && t->dtype != PTH_I64)
            return ote_err(OTE_EINVAL, "pth: %s: tensor '%s' has unknown dtype %d", path, t->name, (int)t->dtype);
        total += (uint64_t)t->numel * dtype_size(t->dtype) + 2 * PTH_ALIGN + 200 + 2 * strlen(t->name);
    }
    if (total >= 0xFFFFFFFFull || *n_all + 3 >= 0xFFFF)
        return ote_err(OTE_EINVAL, "pth: %s: checkpoint too large (%" PRIu64 " bytes, %zu tensors): ZIP64 output is not implemented",
                       path, total, *n_all);
    pickle_writer_init(w);
    int rc = pk_checkpoint(w, c);
    if (rc < 0) {
        pickle_writer_free(w);
        return ote_err_context(rc, "pth: %s", path);
    }
    if (w->b.n + total >= 0xFFFFFFFFull) {
        pickle_writer_free(w);
        return ote_err(OTE_EINVAL, "pth: %s: checkpoint too large for a zip without ZIP64", path);
    }
    return OTE_OK;
}

/* The archive's records into f; 0 or an errno. "archive" is the record prefix torch.save uses for
 * file objects; readers take whatever prefix data.pkl has. */
static int pth_write_zip(FILE *f, const pth_ckpt *c, size_t n_all, const pickle_writer *w) {
    zip_writer z;
    zip_writer_init(&z, f, PTH_ALIGN);
    zip_add(&z, "archive/data.pkl", w->b.p, w->b.n);
    for (size_t i = 0; i < n_all; i++) {
        char name[48];
        snprintf(name, sizeof name, "archive/data/%zu", i);
        const pth_tensor *t = pth_record_tensor(c, i);
        zip_add(&z, name, t->data, t->numel * dtype_size(t->dtype));
    }
    zip_add(&z, "archive/version", "3\n", 2);        /* torch's serialisation format version 3 */
    zip_add(&z, "archive/byteorder", "little", 6);   /* torch >= 2.1 reads it; older ignore it */
    int e = zip_finish(&z);
    zip_writer_free(&z);
    return e;
}

int pth_stage(atomic_file *a, const char *path, const pth_ckpt *c) {
    memset(a, 0, sizeof *a);
    if (!host_is_le()) return ote_err(OTE_EINVAL, "pth: %s: big-endian hosts are not supported", path);
    pickle_writer w;
    size_t n_all;
    CHECK(pth_build(path, c, &w, &n_all));
    int rc = atomic_open(a, path, 0666);
    if (rc < 0) {
        pickle_writer_free(&w);
        return ote_err_context(rc, "pth");
    }
    int e = pth_write_zip(a->f, c, n_all, &w);
    pickle_writer_free(&w);
    if (e) {
        rc = ote_err(e == ENOMEM ? OTE_ENOMEM : OTE_EIO, "pth: %s: write failed: %s", path, strerror(e));
        atomic_abort(a);
        return rc;
    }
    rc = atomic_stage(a);
    if (rc < 0) return ote_err_context(rc, "pth");
    pth_test_pause();
    return OTE_OK;
}

int pth_save(const char *path, const pth_ckpt *c) {
    atomic_file a;
    CHECK(pth_stage(&a, path, c));
    int rc = atomic_publish(&a);
    return rc < 0 ? ote_err_context(rc, "pth") : OTE_OK;
}

/* ---------------------------------------------------------------- loading */

/* Pickle VM hooks. REDUCE: torch._utils._rebuild_tensor(_v2) makes a tensor; the parameter
 * wrappers return the tensor they wrap; everything else is left to the VM (dicts, opaque
 * objects: fails later only if it is where a tensor/dict is needed). */
static int pth_on_call(void *ctx, pickle_vm *m, const pickle_obj *fn, pickle_obj *args, pickle_obj **out) {
    (void)ctx;
    size_t na = args->kind == PICKLE_TUPLE ? args->u.seq.n : 0;
    pickle_obj **a = args->kind == PICKLE_TUPLE ? args->u.seq.v : NULL;
    if ((pickle_glob_is(fn, "torch._utils", "_rebuild_tensor_v2") && (na == 6 || na == 7)) ||
        (pickle_glob_is(fn, "torch._utils", "_rebuild_tensor") && na == 4)) {
        pickle_obj *t = pickle_new(m, PTH_PO_TENSOR);
        if (t) t->u.ext.ref[0] = args;
        *out = t;
        return 1;
    }
    if ((pickle_glob_is(fn, "torch._utils", "_rebuild_parameter") || pickle_glob_is(fn, "torch._utils", "_rebuild_parameter_with_state") ||
         pickle_glob_is(fn, "torch.nn.parameter", "Parameter")) && na >= 1 && a[0]->kind == PTH_PO_TENSOR) {
        *out = a[0];
        return 1;
    }
    return 0;
}

/* BINPERSID: ('storage', torch.<T>Storage, key, location, numel). */
static int pth_on_persid(void *ctx, pickle_vm *m, pickle_obj *pid, pickle_obj **out) {
    (void)ctx;
    if (pid->kind != PICKLE_TUPLE || pid->u.seq.n < 5 || !pickle_str_is(pid->u.seq.v[0], "storage"))
        return pickle_bad(m, "persistent id is not ('storage', type, key, location, numel)");
    pickle_obj **v = pid->u.seq.v;
    if (v[1]->kind != PICKLE_GLOBAL || v[2]->kind != PICKLE_STR || v[4]->kind != PICKLE_INT || v[4]->u.i < 0)
        return pickle_bad(m, "persistent id has wrong field types (want class, str key, int numel)");
    pickle_obj *s = pickle_new(m, PTH_PO_STORAGE);
    if (s) {
        s->u.ext.ref[0] = v[1];
        s->u.ext.ref[1] = v[2];
        s->u.ext.i = v[4]->u.i;
    }
    *out = s;
    return OTE_OK;
}

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
    if (isfinite(d) && fabs(d) > (double)FLT_MAX) {
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
        for (size_t i = 0; i < n; i++) df[i] = half_to_f32(bytes_rd16le(src + 2 * i));
        break;
    case SK_BF16:
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)bytes_rd16le(src + 2 * i) << 16;
            memcpy(&df[i], &bits, 4);
        }
        break;
    case SK_I32:
        for (size_t i = 0; i < n; i++) di[i] = (int32_t)bytes_rd32le(src + 4 * i);
        break;
    case SK_I16:
        for (size_t i = 0; i < n; i++) di[i] = (int16_t)bytes_rd16le(src + 2 * i);
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
    zip_reader *z;
    const char *prefix; /* archive name ("archive", "weights", ...) */
    size_t plen;
    pth_ckpt *c;
    size_t budget; /* config nodes still allowed: shared sub-objects could otherwise blow up */
} ld;

/* Record "<prefix>/<suffix>" of the archive: 1 (*out set), 0 if absent, or an error. */
static int ld_record(ld *L, const char *suffix, zip_entry **out) {
    char stack_name[256];
    size_t slen = strlen(suffix), nl = L->plen + 1 + slen;
    char *name = nl <= sizeof stack_name ? stack_name : malloc(nl);
    if (!name) return ote_err(OTE_ENOMEM, "pth: %s: out of memory", L->what);
    memcpy(name, L->prefix, L->plen);
    name[L->plen] = '/';
    memcpy(name + L->plen + 1, suffix, slen);
    int rc = zip_find(L->z, name, nl, out);
    if (name != stack_name) free(name);
    return rc;
}

static int ld_tensor(ld *L, const pickle_obj *key, const pickle_obj *val) {
    const char *nm = key->u.str.p;
    int nl = (int)(key->u.str.n > 200 ? 200 : key->u.str.n);
    if (val->kind != PTH_PO_TENSOR)
        return ote_err(OTE_EPARSE, "pth: %s: state dict entry '%.*s' is a %s, not a tensor", L->what, nl, nm, pth_kind_name(val->kind));
    const pickle_obj *args = val->u.ext.ref[0];
    pickle_obj *const *a = args->u.seq.v;
    const pickle_obj *st = a[0], *off = a[1], *size = a[2], *stride = a[3];
    if (st->kind != PTH_PO_STORAGE) return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': first argument is not a storage", L->what, nl, nm);
    if (off->kind != PICKLE_INT || off->u.i < 0)
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': storage offset is not a non-negative int", L->what, nl, nm);
    if (size->kind != PICKLE_TUPLE || stride->kind != PICKLE_TUPLE || size->u.seq.n != stride->u.seq.n)
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': size/stride are not tuples of equal length", L->what, nl, nm);
    size_t nd = size->u.seq.n;
    if (nd > PTH_MAX_DIMS)
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': %zu dims (at most %d supported)", L->what, nl, nm, nd, PTH_MAX_DIMS);
    int64_t shape[PTH_MAX_DIMS], strd[PTH_MAX_DIMS];
    uint64_t numel = 1;
    for (size_t d = 0; d < nd; d++) {
        const pickle_obj *s = size->u.seq.v[d], *t = stride->u.seq.v[d];
        if (s->kind != PICKLE_INT || t->kind != PICKLE_INT || s->u.i < 0 || t->u.i < 0)
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
    const pickle_obj *ty = st->u.ext.ref[0];
    int ti = -1;
    if (ty->u.glob.ml == 5 && !memcmp(ty->u.glob.m, "torch", 5))
        for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0]; i++)
            if (ty->u.glob.nl == strlen(storage_types[i].name) && !memcmp(ty->u.glob.nm, storage_types[i].name, ty->u.glob.nl)) ti = (int)i;
    if (ti < 0)
        return ote_err(OTE_EPARSE, "pth: %s: tensor '%.*s': unsupported storage type %.*s.%.*s", L->what, nl, nm, (int)ty->u.glob.ml,
                       ty->u.glob.m, (int)ty->u.glob.nl, ty->u.glob.nm);
    src_kind sk = storage_types[ti].k;
    size_t es = storage_types[ti].size;
    uint64_t snumel = (uint64_t)st->u.ext.i;
    const pickle_obj *key2 = st->u.ext.ref[1];
    zip_entry *rec = NULL;
    char sub[128];
    int kl = (int)(key2->u.str.n > 100 ? 100 : key2->u.str.n);
    snprintf(sub, sizeof sub, "data/%.*s", kl, key2->u.str.p);
    int found = key2->u.str.n <= 100 ? ld_record(L, sub, &rec) : 0;
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

static int ld_state_dict(ld *L, const pickle_obj *sd) {
    for (size_t i = 0; i + 1 < sd->u.seq.n; i += 2) {
        const pickle_obj *k = sd->u.seq.v[i];
        if (k->kind != PICKLE_STR) return ote_err(OTE_EPARSE, "pth: %s: state dict key #%zu is a %s, not a str", L->what, i / 2, pth_kind_name(k->kind));
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
static int repr_val(bytes_buf *b, const pickle_obj *v, int quote, int depth, size_t *budget) {
    char tmp[64];
    if (*budget == 0) return 0;
    (*budget)--;
    switch (v->kind) {
    case PICKLE_NONE: bytes_str(b, "None"); return 1;
    case PICKLE_BOOL: bytes_str(b, v->u.i ? "True" : "False"); return 1;
    case PICKLE_INT: snprintf(tmp, sizeof tmp, "%" PRId64, v->u.i); bytes_str(b, tmp); return 1;
    case PICKLE_FLOAT:
        if (isnan(v->u.f)) snprintf(tmp, sizeof tmp, "nan");
        else if (isinf(v->u.f)) snprintf(tmp, sizeof tmp, v->u.f < 0 ? "-inf" : "inf");
        else {
            for (int prec = 1; prec <= 17; prec++) { /* shortest text that reads back exactly */
                snprintf(tmp, sizeof tmp, "%.*g", prec, v->u.f);
                if (strtod(tmp, NULL) == v->u.f) break;
            }
            if (!strpbrk(tmp, ".e")) strcat(tmp, ".0"); /* Python's repr: 1.0, not 1 */
        }
        bytes_str(b, tmp);
        return 1;
    case PICKLE_STR:
        if (quote) bytes_u8(b, '\'');
        bytes_put(b, v->u.str.p, v->u.str.n);
        if (quote) bytes_u8(b, '\'');
        return 1;
    case PICKLE_LIST:
    case PICKLE_TUPLE:
        if (depth > 16) return 0;
        bytes_u8(b, v->kind == PICKLE_LIST ? '[' : '(');
        for (size_t i = 0; i < v->u.seq.n; i++) {
            if (i) bytes_str(b, ", ");
            if (!repr_val(b, v->u.seq.v[i], 1, depth + 1, budget)) return 0;
        }
        if (v->kind == PICKLE_TUPLE && v->u.seq.n == 1) bytes_u8(b, ',');
        bytes_u8(b, v->kind == PICKLE_LIST ? ']' : ')');
        return 1;
    default: return 0;
    }
}

static int ld_config(ld *L, const pickle_obj *d, const char *prefix, size_t plen, int depth) {
    if (depth > 32) return OTE_OK; /* deeper nesting (or a cycle through the memo) is skipped */
    for (size_t i = 0; i + 1 < d->u.seq.n; i += 2) {
        const pickle_obj *k = d->u.seq.v[i], *v = d->u.seq.v[i + 1];
        if (L->budget == 0 || L->c->n_config >= 65536)
            return ote_err(OTE_EPARSE, "pth: %s: config is too large (more than 65536 entries or 1M values)", L->what);
        L->budget--;
        if (k->kind != PICKLE_STR || memchr(k->u.str.p, 0, k->u.str.n)) continue; /* non-str keys are skipped */
        bytes_buf key = {0};
        bytes_put(&key, prefix, plen);
        if (plen) bytes_u8(&key, '.');
        bytes_put(&key, k->u.str.p, k->u.str.n);
        int rc = OTE_OK;
        if (v->kind == PICKLE_DICT) {
            if (!key.oom) rc = ld_config(L, v, (const char *)key.p, key.n, depth + 1);
        } else {
            bytes_buf val = {0};
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

static const pickle_obj *dict_get(const pickle_obj *d, const char *key) {
    const pickle_obj *r = NULL;
    for (size_t i = 0; i + 1 < d->u.seq.n; i += 2)
        if (pickle_str_is(d->u.seq.v[i], key) && d->u.seq.v[i]->kind == PICKLE_STR) r = d->u.seq.v[i + 1]; /* last one wins, as in Python */
    return r;
}

/* ote-c's training state: an 'optimizer' dict of str -> tensor into c->aux; anything else there
 * (mmcv's optimizer.state_dict(), None) is not ours and is skipped. */
static int ld_aux(ld *L, const pickle_obj *opt) {
    if (!opt || opt->kind != PICKLE_DICT || !opt->u.seq.n) return OTE_OK;
    for (size_t i = 0; i + 1 < opt->u.seq.n; i += 2)
        if (opt->u.seq.v[i]->kind != PICKLE_STR || opt->u.seq.v[i + 1]->kind != PTH_PO_TENSOR) return OTE_OK;
    swap_aux(L->c);
    int rc = ld_state_dict(L, opt);
    swap_aux(L->c);
    return rc;
}

static int ld_root(ld *L, const pickle_obj *root) {
    pth_ckpt *c = L->c;
    if (root->kind != PICKLE_DICT)
        return ote_err(OTE_EPARSE, "pth: %s: top-level object is a %s, not a dict", L->what, pth_kind_name(root->kind));
    const pickle_obj *model = dict_get(root, "model"), *sd = dict_get(root, "state_dict");
    c->has_confidence_threshold = 0;
    c->has_version = 0;
    if (model && model->kind == PICKLE_DICT) {
        c->layout = PTH_LAYOUT_OTE;
        CHECK(ld_state_dict(L, model));
        const pickle_obj *cfg = dict_get(root, "config"), *ct = dict_get(root, "confidence_threshold"), *ver = dict_get(root, "VERSION");
        if (cfg && cfg->kind == PICKLE_DICT) CHECK(ld_config(L, cfg, "", 0, 0));
        if (ct) {
            if (ct->kind != PICKLE_FLOAT && ct->kind != PICKLE_INT)
                return ote_err(OTE_EPARSE, "pth: %s: confidence_threshold is a %s, expected a float", L->what, pth_kind_name(ct->kind));
            c->confidence_threshold = ct->kind == PICKLE_FLOAT ? ct->u.f : (double)ct->u.i;
            c->has_confidence_threshold = 1;
        }
        if (ver) {
            if (ver->kind != PICKLE_INT) return ote_err(OTE_EPARSE, "pth: %s: VERSION is a %s, expected an int", L->what, pth_kind_name(ver->kind));
            c->version = ver->u.i;
            c->has_version = 1;
        }
        return ld_aux(L, dict_get(root, "optimizer"));
    }
    if (sd && sd->kind == PICKLE_DICT) {
        c->layout = PTH_LAYOUT_STATE_DICT;
        return ld_state_dict(L, sd);
    }
    for (size_t i = 0; i + 1 < root->u.seq.n; i += 2) {
        const pickle_obj *k = root->u.seq.v[i], *v = root->u.seq.v[i + 1];
        if (v->kind != PTH_PO_TENSOR)
            return ote_err(OTE_EPARSE, "pth: %s: no 'model' or 'state_dict' dict at top level, and entry '%.*s' is a %s, so it is not a bare state dict either",
                           L->what, k->kind == PICKLE_STR ? (int)(k->u.str.n > 200 ? 200 : k->u.str.n) : 1,
                           k->kind == PICKLE_STR ? k->u.str.p : "?", pth_kind_name(v->kind));
    }
    c->layout = PTH_LAYOUT_BARE;
    return ld_state_dict(L, root);
}

/* Empty input, the legacy format and non-zip files, told apart with torch-specific hints. */
static int pth_check_magic(const uint8_t *b, size_t len, const char *what) {
    if (len == 0) return ote_err(OTE_EPARSE, "pth: %s: empty file", what);
    if (len >= 2 && b[0] == 0x80 && b[1] <= 5)
        return ote_err(OTE_EPARSE, "pth: %s: a bare pickle, i.e. the legacy torch < 1.6 format: not supported (re-save it with torch >= 1.6)", what);
    if (len < 4 || bytes_rd32le(b) != 0x04034b50u)
        return ote_err(OTE_EPARSE, "pth: %s: not a zip archive (torch >= 1.6 checkpoint expected)", what);
    return OTE_OK;
}

/* The archive name is the directory holding data.pkl (torch uses the file's stem). */
static int ld_find_archive(ld *L) {
    const zip_reader *z = L->z;
    for (size_t i = 0; i < z->n; i++) {
        const zip_entry *e = &z->e[i];
        if (e->nlen > 9 && !memcmp(e->name + e->nlen - 9, "/data.pkl", 9) && !memchr(e->name, '/', e->nlen - 9)) {
            L->prefix = (const char *)e->name;
            L->plen = e->nlen - 9;
            return OTE_OK;
        }
    }
    return ote_err(OTE_EPARSE, "pth: %s: no '<archive>/data.pkl' record: not a torch.save checkpoint", L->what);
}

/* The 'version' record (required) and 'byteorder' (optional, must say little). */
static int ld_check_records(ld *L) {
    zip_entry *e = NULL;
    int rc = ld_record(L, "version", &e);
    CHECK(rc);
    if (!rc) return ote_err(OTE_EPARSE, "pth: %s: record '%.*s/version' is missing", L->what, (int)L->plen, L->prefix);
    if (e->size < 1 || e->size > 8 || e->data[0] < '1' || e->data[0] > '9')
        return ote_err(OTE_EPARSE, "pth: %s: unreadable format version record", L->what);
    rc = ld_record(L, "byteorder", &e);
    CHECK(rc);
    if (rc && !(e->size == 6 && !memcmp(e->data, "little", 6)))
        return ote_err(OTE_EPARSE, "pth: %s: byteorder record is '%.*s'; only little-endian checkpoints are supported", L->what,
                       (int)(e->size > 16 ? 16 : e->size), (const char *)e->data);
    return OTE_OK;
}

/* Runs data.pkl (hooks give torch's objects their meaning) and reads the checkpoint out of it. */
static int ld_unpickle(ld *L, const char *pkl_label) {
    zip_entry *e = NULL;
    int rc = ld_record(L, "data.pkl", &e);
    CHECK(rc);
    if (!rc) return ote_err(OTE_EPARSE, "pth: %s: record '%.*s/data.pkl' is missing", L->what, (int)L->plen, L->prefix);
    pickle_hooks h = {.ctx = NULL, .call = pth_on_call, .persistent_load = pth_on_persid};
    pickle_vm m;
    pickle_vm_init(&m, pkl_label, &h);
    pickle_obj *root = NULL;
    rc = pickle_run(&m, e->data, (size_t)e->size, &root);
    if (rc >= 0) rc = ld_root(L, root);
    pickle_vm_free(&m);
    return rc;
}

static int pth_load_archive(const void *buf, size_t len, const char *what, pth_ckpt *c) {
    CHECK(pth_check_magic(buf, len, what));
    /* labels for the zip and pickle messages: "pth: <what>" and "pth: <what>: data.pkl" */
    size_t wl = strlen(what) + 32;
    char *zl = malloc(wl), *pl = malloc(wl);
    if (!zl || !pl) {
        free(zl), free(pl);
        return ote_err(OTE_ENOMEM, "pth: %s: out of memory", what);
    }
    snprintf(zl, wl, "pth: %s", what);
    snprintf(pl, wl, "pth: %s: data.pkl", what);
    zip_reader z;
    int rc = zip_open(&z, buf, len, zl);
    if (rc >= 0) {
        ld L = {.what = what, .z = &z, .c = c, .budget = 1u << 20};
        rc = ld_find_archive(&L);
        if (rc >= 0) rc = ld_check_records(&L);
        if (rc >= 0) rc = ld_unpickle(&L, pl);
        zip_close(&z);
    }
    free(zl);
    free(pl);
    return rc;
}

int pth_load_mem(const void *buf, size_t len, const char *what, pth_ckpt *c) {
    if (!what) what = "<memory>";
    if (!host_is_le()) return ote_err(OTE_EINVAL, "pth: %s: big-endian hosts are not supported", what);
    if (c->n_tensors || c->n_config) return ote_err(OTE_EINVAL, "pth: %s: pth_load needs an empty checkpoint", what);
    pth_init(c);
    int rc = pth_load_archive(buf, len, what, c);
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

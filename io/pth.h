/* pth.h - PyTorch checkpoint I/O: write and read `.pth` files in the zip + pickle container that
 * torch.save (torch >= 1.6) writes, so `torch.load` opens our weights and we open theirs.
 *
 * Responsibility: the in-memory checkpoint (named tensors + metadata) and its (de)serialisation,
 * on top of io/zip.h (the container), io/pickle.h (the opcodes) and io/atomic.h (the write).
 * The file layout follows PyTorch's format (facts checked against torch 1.13 output):
 *   <archive>/data.pkl    pickle (we write protocol 2) of the top-level object; tensors appear as
 *                         torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
 *                         requires_grad, backward_hooks) with the storage as a persistent id
 *                         ('storage', torch.FloatStorage, '<key>', 'cpu', numel)
 *   <archive>/data/<key>  raw little-endian storage bytes, 64-byte aligned in the file
 *   <archive>/version     "3\n"
 *   <archive>/byteorder   (torch >= 2.1, optional) "little"; "big" is rejected
 * Entries are stored (no compression), as torch.save writes them.
 *
 * Top-level layouts (pth_layout): our/OTE dict {'model': state_dict, 'config': {...},
 * 'confidence_threshold': float, 'VERSION': int}; mmcv's {'state_dict': ..., 'meta': ...};
 * or a bare state dict (every value a tensor).
 *
 * Training state (OTE layout only): a second list of tensors, `aux`, is written as the top-level
 * key 'optimizer', a dict of name -> tensor (ote-c's last.pth: the SGD momentum buffer of each
 * parameter under the parameter's name, train/resume.h), and read back from an 'optimizer' dict
 * whose values are all tensors; any other 'optimizer' value (mmcv's optimizer.state_dict()) is
 * skipped. The state dict readers (weights_match) never see aux tensors.
 *
 * Ownership: a pth_ckpt owns all its strings and tensor buffers (copied in by pth_add_*), freed
 * by pth_free. Invariants: tensor names are unique; data holds numel elements of dtype, row-major
 * contiguous; config keys are dotted paths ("a.b.c" = nested dicts on disk), values strings.
 *
 * Reading (pth_load): non-tensor config values are converted to strings (ints as decimal, floats
 * as the shortest round-trip decimal, True/False/None, lists/tuples as a Python-like "[1, 'a']");
 * nested dicts are flattened to dotted keys; tensors and other objects inside config are skipped.
 * Floating storages (f64, f16, bf16) are converted to f32, integer and bool storages to i64;
 * complex and quantised storages are an error. Tensors must be contiguous (torch's sense: strides
 * of size-1 dims are ignored). Other top-level keys (mmcv 'meta', 'optimizer', ...) are ignored.
 * Unknown classes in the pickle become opaque objects, so they only fail where a tensor or a
 * dict is needed. The legacy (non-zip, torch < 1.6) format is NOT supported: a clear error.
 * Every failure returns a negative OTE_E* code with a one-line ote_err() message naming the file.
 *
 * Writing (pth_save): pickle protocol 2 using only opcodes torch 1.13's weights_only unpickler
 * knows, except BINFLOAT for confidence_threshold (that unpickler lacks it, so in torch 1.13
 * `torch.load(f, weights_only=True)` refuses the OTE layout exactly as it refuses the same dict
 * written by torch.save; the bare and state_dict layouts load with weights_only=True). The OTE
 * layout always writes confidence_threshold and VERSION (the has_* flags only report what a
 * load found); config values are written as str, nested on the dots of their keys. ZIP64 is not
 * written (error if the archive would exceed 4 GiB; our models are tens of MB); the file goes to
 * "<path>.tmp-<pid>", is fsync'ed, renamed over <path>, and the directory is fsync'ed (io/atomic.h).
 * Test hook: the environment variable OTE_TEST_SAVE_PAUSE_MS=N makes pth_save / pth_stage sleep N ms between
 * the complete temporary file and the rename (tests kill -9 a training during a save).
 */
#ifndef OTE_IO_PTH_H
#define OTE_IO_PTH_H

#include <stddef.h>
#include <stdint.h>

#include "io/atomic.h"

#define PTH_MAX_DIMS 8

typedef enum pth_dtype {
    PTH_F32 = 0,
    PTH_I64 = 1,
} pth_dtype;

typedef enum pth_layout {
    PTH_LAYOUT_OTE = 0,        /* {'model': sd, 'config': {...}, 'confidence_threshold', 'VERSION'} */
    PTH_LAYOUT_STATE_DICT = 1, /* {'state_dict': sd, ...} as mmcv saves */
    PTH_LAYOUT_BARE = 2,       /* the state dict itself */
} pth_layout;

typedef struct pth_tensor {
    char *name;                    /* mmdetection parameter name, e.g. "backbone.features.0.conv.weight" */
    pth_dtype dtype;               /* PTH_F32 or PTH_I64 */
    char src_type[24];             /* storage class on disk ("FloatStorage", "HalfStorage", ...) */
    int ndim;                      /* 0 for a scalar tensor */
    int64_t shape[PTH_MAX_DIMS];   /* row-major, contiguous */
    size_t numel;                  /* product of shape (1 for ndim 0; may be 0) */
    void *data;                    /* float[numel] or int64_t[numel], owned (NULL if numel 0) */
} pth_tensor;

typedef struct pth_kv {
    char *key;   /* dotted path, e.g. "learning_parameters.batch_size" */
    char *value;
} pth_kv;

typedef struct pth_ckpt {
    pth_layout layout;             /* what pth_save writes / what pth_load found */
    pth_tensor *tensors;           /* in state-dict order */
    size_t n_tensors, cap_tensors;
    pth_tensor *aux;               /* 'optimizer' dict (OTE layout), in insertion order; names unique */
    size_t n_aux, cap_aux;
    pth_kv *config;                /* in insertion (file) order */
    size_t n_config, cap_config;
    double confidence_threshold;   /* OTE layout only */
    int has_confidence_threshold;  /* on load: 1 if the key was present */
    int64_t version;               /* OTE 'VERSION' (1) */
    int has_version;
} pth_ckpt;

/* Empty checkpoint: layout OTE, VERSION 1, confidence_threshold 0.35 (OTE's default), both
 * marked present so a trainer-written file always carries them. */
void pth_init(pth_ckpt *c);
void pth_free(pth_ckpt *c);

/* Append a tensor (data copied; may be NULL only if numel is 0). Rejects duplicate or empty
 * names, ndim outside [0, PTH_MAX_DIMS], negative dims. */
int pth_add_f32(pth_ckpt *c, const char *name, int ndim, const int64_t *shape, const float *data);
int pth_add_i64(pth_ckpt *c, const char *name, int ndim, const int64_t *shape, const int64_t *data);
/* Set (or replace) a config entry. A key may not be both a leaf and a prefix of another key
 * ("a" and "a.b"), nor have empty components. */
int pth_config_set(pth_ckpt *c, const char *key, const char *value);

/* Appends an aux tensor (the 'optimizer' dict; same rules as pth_add_f32, names unique among aux). */
int pth_add_aux_f32(pth_ckpt *c, const char *name, int ndim, const int64_t *shape, const float *data);

const pth_tensor *pth_find(const pth_ckpt *c, const char *name);
const pth_tensor *pth_find_aux(const pth_ckpt *c, const char *name);
const char *pth_config_get(const pth_ckpt *c, const char *key);
const char *pth_layout_name(pth_layout l);

/* Writes c to path atomically (io/atomic.h: temp file + fsync + rename + directory fsync). */
int pth_save(const char *path, const pth_ckpt *c);
/* The first half of pth_save: the complete, fsync'ed temporary of path in *a (after the test
 * pause), not yet renamed; the caller ends it with atomic_publish or atomic_abort. For callers
 * that publish several files together (train/weights.c: weights + labels). */
int pth_stage(atomic_file *a, const char *path, const pth_ckpt *c);
/* Reads path into c (which must be pth_init'ed and empty; on error c is left empty). */
int pth_load(const char *path, pth_ckpt *c);
/* Same, from a buffer in memory; `what` names the source in error messages. */
int pth_load_mem(const void *buf, size_t len, const char *what, pth_ckpt *c);

#endif

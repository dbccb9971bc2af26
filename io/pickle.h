/* pickle.h - Python's pickle format: a writer of protocol-2 opcodes and an interpreter (a small
 * pickle VM) for protocols 0-5, with the extension points Python's own Unpickler has: what a call
 * (REDUCE / NEWOBJ) builds and what a persistent id stands for are decided by the caller's hooks
 * (io/pth.c gives torch's tensors and storages their meaning this way).
 *
 * Writer: opcodes go into a bytes_buf; objects that repeat (a class, a string) can be memoised in
 * one of PICKLE_MEMO_SLOTS caller-numbered slots: written once, then fetched with BINGET, as
 * CPython's pickler does. Allocation failure is sticky (w->b.oom), checked once at the end.
 *
 * Interpreter: every read is bounds-checked (a hostile pickle gives OTE_EPARSE naming the opcode
 * and its offset, never a crash); objects live in a pool owned by the VM and freed in one walk by
 * pickle_vm_free, so they may be shared (the memo) and cycles are harmless. Strings point into the
 * pickle bytes, which must outlive the VM. A call to collections.OrderedDict or builtins.dict
 * builds a dict; any other call a hook does not claim becomes an opaque PICKLE_OBJECT (it fails
 * only where the caller needs something else). BUILD (__setstate__) is accepted and ignored.
 * A set is kept as a list. Messages start with the caller's label `what`.
 */
#ifndef OTE_IO_PICKLE_H
#define OTE_IO_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "io/bytes.h"

/* Opcodes (names as in CPython's pickletools). */
enum {
    PICKLE_OP_MARK = '(', PICKLE_OP_STOP = '.', PICKLE_OP_POP = '0', PICKLE_OP_POP_MARK = '1', PICKLE_OP_DUP = '2',
    PICKLE_OP_FLOAT = 'F', PICKLE_OP_BININT = 'J', PICKLE_OP_BININT1 = 'K', PICKLE_OP_BININT2 = 'M',
    PICKLE_OP_NONE = 'N', PICKLE_OP_PERSID = 'P', PICKLE_OP_BINPERSID = 'Q', PICKLE_OP_REDUCE = 'R',
    PICKLE_OP_BINSTRING = 'T', PICKLE_OP_SHORT_BINSTRING = 'U', PICKLE_OP_BINUNICODE = 'X', PICKLE_OP_APPEND = 'a',
    PICKLE_OP_BUILD = 'b', PICKLE_OP_GLOBAL = 'c', PICKLE_OP_DICT = 'd', PICKLE_OP_EMPTY_DICT = '}',
    PICKLE_OP_APPENDS = 'e', PICKLE_OP_GET = 'g', PICKLE_OP_BINGET = 'h', PICKLE_OP_LONG_BINGET = 'j',
    PICKLE_OP_LIST = 'l', PICKLE_OP_EMPTY_LIST = ']', PICKLE_OP_PUT = 'p', PICKLE_OP_BINPUT = 'q',
    PICKLE_OP_LONG_BINPUT = 'r', PICKLE_OP_SETITEM = 's', PICKLE_OP_TUPLE = 't', PICKLE_OP_EMPTY_TUPLE = ')',
    PICKLE_OP_SETITEMS = 'u', PICKLE_OP_BINFLOAT = 'G', PICKLE_OP_BINBYTES = 'B', PICKLE_OP_SHORT_BINBYTES = 'C',
    PICKLE_OP_PROTO = 0x80, PICKLE_OP_NEWOBJ = 0x81, PICKLE_OP_TUPLE1 = 0x85, PICKLE_OP_TUPLE2 = 0x86,
    PICKLE_OP_TUPLE3 = 0x87, PICKLE_OP_NEWTRUE = 0x88, PICKLE_OP_NEWFALSE = 0x89, PICKLE_OP_LONG1 = 0x8a,
    PICKLE_OP_LONG4 = 0x8b, PICKLE_OP_SHORT_BINUNICODE = 0x8c, PICKLE_OP_BINUNICODE8 = 0x8d,
    PICKLE_OP_BINBYTES8 = 0x8e, PICKLE_OP_EMPTY_SET = 0x8f, PICKLE_OP_ADDITEMS = 0x90, PICKLE_OP_FROZENSET = 0x91,
    PICKLE_OP_NEWOBJ_EX = 0x92, PICKLE_OP_STACK_GLOBAL = 0x93, PICKLE_OP_MEMOIZE = 0x94, PICKLE_OP_FRAME = 0x95,
};

/* ---------------------------------------------------------------- writer */

#define PICKLE_MEMO_SLOTS 16

typedef struct pickle_writer {
    bytes_buf b;                    /* the pickle so far */
    int memo[PICKLE_MEMO_SLOTS];    /* memo index per caller slot, -1 until written */
    uint32_t next_memo;
} pickle_writer;

/* Empty writer with every slot unwritten (no PROTO opcode yet: pickle_proto). */
void pickle_writer_init(pickle_writer *w);
void pickle_writer_free(pickle_writer *w);
void pickle_op(pickle_writer *w, unsigned op);
void pickle_proto(pickle_writer *w, unsigned version);
void pickle_str_n(pickle_writer *w, const char *s, size_t n); /* BINUNICODE */
void pickle_str(pickle_writer *w, const char *s);
/* Memoised in `slot` (0 .. PICKLE_MEMO_SLOTS-1); slot < 0: not memoised. */
void pickle_str_memo(pickle_writer *w, int slot, const char *s);
void pickle_global(pickle_writer *w, int slot, const char *module, const char *name);
void pickle_int(pickle_writer *w, int64_t v);      /* the shortest of BININT1/2, BININT, LONG1 */
void pickle_float(pickle_writer *w, double v);     /* BINFLOAT */
void pickle_int_tuple(pickle_writer *w, const int64_t *v, int n);

/* ---------------------------------------------------------------- interpreter */

typedef enum pickle_kind {
    PICKLE_NONE, PICKLE_BOOL, PICKLE_INT, PICKLE_FLOAT, PICKLE_STR, PICKLE_BYTES, PICKLE_TUPLE, PICKLE_LIST,
    PICKLE_DICT, PICKLE_GLOBAL, PICKLE_OBJECT,
    PICKLE_USER, /* first kind number free for the hooks' own objects (they use u.ext) */
} pickle_kind;

typedef struct pickle_obj pickle_obj;
struct pickle_obj {
    int kind;                                                   /* pickle_kind or >= PICKLE_USER */
    union {
        int64_t i;                                              /* BOOL, INT */
        double f;                                               /* FLOAT */
        struct { const char *p; size_t n; } str;                /* STR, BYTES (into the pickle) */
        struct { pickle_obj **v; size_t n, cap; } seq;          /* TUPLE, LIST, DICT (k,v,k,v..) */
        struct { const char *m, *nm; size_t ml, nl; } glob;     /* GLOBAL module.name */
        struct { const pickle_obj *cls; } obj;                  /* OBJECT: what built it */
        struct { const pickle_obj *ref[2]; int64_t i; } ext;    /* hook objects (not owned) */
    } u;
};

typedef struct pickle_vm pickle_vm;

typedef struct pickle_hooks {
    void *ctx;
    /* fn(*args) for REDUCE / NEWOBJ / NEWOBJ_EX: 1 with *out set (NULL = out of memory), 0 to
     * let the VM build it, or a negative status. May be NULL. */
    int (*call)(void *ctx, pickle_vm *m, const pickle_obj *fn, pickle_obj *args, pickle_obj **out);
    /* BINPERSID: what the persistent id pid stands for, into *out (NULL = out of memory); 0 or a
     * negative status. NULL: persistent ids are an error, as in Python without persistent_load. */
    int (*persistent_load)(void *ctx, pickle_vm *m, pickle_obj *pid, pickle_obj **out);
} pickle_hooks;

typedef struct pickle_chunk pickle_chunk;

struct pickle_vm {
    const char *what;               /* message prefix (not owned) */
    pickle_hooks hooks;
    const uint8_t *p;               /* the pickle (not owned) */
    size_t n, pos, op_pos;
    pickle_obj **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    pickle_obj **memo;
    size_t memo_cap, memo_count;
    pickle_chunk *chunks;           /* the object pool */
};

/* hooks may be NULL. */
void pickle_vm_init(pickle_vm *m, const char *what, const pickle_hooks *hooks);
/* Runs the n bytes at p up to STOP; *result is the object STOP pops (owned by the VM). */
int pickle_run(pickle_vm *m, const void *p, size_t n, pickle_obj **result);
void pickle_vm_free(pickle_vm *m);

/* For hooks: a new zeroed object of `kind` in the VM's pool (NULL when out of memory), and the
 * VM's errors: OTE_EPARSE "<what>: <why> (opcode 0x.. at offset N)" and OTE_ENOMEM. */
pickle_obj *pickle_new(pickle_vm *m, int kind);
int pickle_bad(pickle_vm *m, const char *why);
int pickle_oom(pickle_vm *m);

/* "None", "bool", "int", ..., "class/function", "object" (or "?" for hook kinds). */
const char *pickle_kind_name(int kind);
/* o is a str or bytes equal to s / a GLOBAL module.name. */
int pickle_str_is(const pickle_obj *o, const char *s);
int pickle_glob_is(const pickle_obj *o, const char *module, const char *name);

#endif

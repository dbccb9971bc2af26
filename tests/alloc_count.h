/* alloc_count.h - counts heap allocations made while a flag is set, split by caller: the test
 * program's own code (project code is linked statically into it) versus shared libraries (oneDNN,
 * libgomp, libc). Include it in exactly one translation unit of a test program: it interposes
 * malloc/calloc/realloc/free/posix_memalign/aligned_alloc/memalign and forwards to glibc's
 * __libc_* entry points. Under AddressSanitizer interposing conflicts with the sanitizer's own
 * allocator, so NA_INTERPOSE is 0 there and nothing is counted (tests must say so).
 *
 * Usage: atomic_store(&na_counting, 1); ...step...; atomic_store(&na_counting, 0); then read
 * na_ours (allocations from project code), na_lib (from libraries) and na_frees.
 */
#ifndef OTE_TEST_ALLOC_COUNT_H
#define OTE_TEST_ALLOC_COUNT_H

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define NA_INTERPOSE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NA_INTERPOSE 0
#else
#define NA_INTERPOSE 1
#endif
#else
#define NA_INTERPOSE 1
#endif

static atomic_int na_counting;
static atomic_long na_ours, na_lib, na_frees;

#if NA_INTERPOSE
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
extern const char __executable_start[];
extern const char etext[];
void *memalign(size_t, size_t); /* glibc's obsolete allocator (<malloc.h>), interposed below */

/* noinline on the interposers: if one were inlined into a caller in this file,
 * __builtin_return_address(0) would name the caller's caller. */
static void na_note(const void *ra) {
    if (!atomic_load_explicit(&na_counting, memory_order_relaxed)) return;
    const char *p = ra;
    if (p >= __executable_start && p < etext)
        atomic_fetch_add(&na_ours, 1);
    else
        atomic_fetch_add(&na_lib, 1);
}

__attribute__((noinline)) void *malloc(size_t n) {
    na_note(__builtin_return_address(0));
    return __libc_malloc(n);
}
__attribute__((noinline)) void *calloc(size_t a, size_t b) {
    na_note(__builtin_return_address(0));
    return __libc_calloc(a, b);
}
__attribute__((noinline)) void *realloc(void *p, size_t n) {
    na_note(__builtin_return_address(0));
    return __libc_realloc(p, n);
}
__attribute__((noinline)) void free(void *p) {
    if (p && atomic_load_explicit(&na_counting, memory_order_relaxed)) atomic_fetch_add(&na_frees, 1);
    __libc_free(p);
}
__attribute__((noinline)) int posix_memalign(void **out, size_t align, size_t n) {
    na_note(__builtin_return_address(0));
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
__attribute__((noinline)) void *aligned_alloc(size_t align, size_t n) {
    na_note(__builtin_return_address(0));
    return __libc_memalign(align, n);
}
__attribute__((noinline)) void *memalign(size_t align, size_t n) {
    na_note(__builtin_return_address(0));
    return __libc_memalign(align, n);
}
#endif

#endif

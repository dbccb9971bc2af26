/* rng.h - explicit-state random numbers (no hidden global state).
 *
 * xoshiro256** seeded through splitmix64: fast, good quality, and the whole state is a value the
 * caller owns, so every trial, augmentation worker and test is reproducible from its seed.
 */
#ifndef OTE_RNG_H
#define OTE_RNG_H

#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
} rng;

void rng_seed(rng *r, uint64_t seed);
uint64_t rng_u64(rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(rng *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t rng_below(rng *r, uint64_t n);
/* Standard normal (Box-Muller, no cached second value so the state stays the only state). */
double rng_normal(rng *r);
/* Fisher-Yates shuffle of an int array. */
void rng_shuffle_int(rng *r, int *a, int n);

#endif

/* detector_ref_weights.h - header-only C twin of the weight generator in
 * tests/reference/detector_ref.py, for parity tests against tests/reference/fixtures/detector_ref.fx.
 *
 * The fixture does not store the detector's weights (they would be ~10 MB); it stores, for every
 * state_dict tensor <name>, `gen.<name>` = [tid, lo, hi] and `wsum.<name>` = [sum, sum of squares].
 * drw_fill() regenerates the tensor bit for bit: element i (row-major in PyTorch's shape, conv
 * weights OIHW) is (float)(lo + (hi - lo) * u) with u = splitmix64(((uint64)tid << 40) ^ i) >> 11
 * scaled by 2^-53, computed in double and rounded once. num_batches_tracked buffers start at 0.
 */
#ifndef OTE_TEST_DETECTOR_REF_WEIGHTS_H
#define OTE_TEST_DETECTOR_REF_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t drw_splitmix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Fills dst[0..n) with the generated values of tensor `tid` (gen.<name>[0]) in [lo, hi). */
static inline void drw_fill(uint64_t tid, double lo, double hi, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t z = drw_splitmix((tid << 40) ^ (uint64_t)i);
        double u = (double)(z >> 11) * (1.0 / 9007199254740992.0);
        dst[i] = (float)(lo + (hi - lo) * u);
    }
}

#endif

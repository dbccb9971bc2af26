/* test_models_anchors.c - anchor grid sizes (spec §5, §3: 15213 anchors at 992x736), anchor
 * coordinates (hand-computed) and valid flags for an image smaller than the padded batch, plus
 * exact equality with the PyTorch reference's anchors and valid flags (tests/reference/detector_ref.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/anchors.h"
#include "tests/fixture.h"
#include "tests/expect.h"


int main(void) {
    anchor_grid g;
    EXPECT(anchors_grid_init(&g, 736, 992) == 0, "grid init 736x992");
    static const int eh[5] = {92, 46, 23, 12, 6}, ew[5] = {124, 62, 31, 16, 8};
    int sizes_ok = 1;
    for (int l = 0; l < 5; l++) sizes_ok &= g.h[l] == eh[l] && g.w[l] == ew[l] && g.stride[l] == (8 << l);
    EXPECT(sizes_ok, "level sizes 92x124 46x62 23x31 12x16 6x8, strides 8..128");
    EXPECT(g.total == 15213, "15213 anchors per image at 992x736 (got %d)", g.total);
    EXPECT(anchors_grid_init(&g, 0, 10) < 0, "zero size refused");

    /* Hand-computed anchors: level 0, (y=1, x=2): centre (16, 8), side 64. */
    anchor_grid s;
    anchors_grid_init(&s, 128, 160);
    float *a = malloc(sizeof(float) * 4 * s.total);
    anchors_fill(&s, a);
    const float *b = a + 4 * (1 * s.w[0] + 2);
    EXPECT(b[0] == -16 && b[1] == -24 && b[2] == 48 && b[3] == 40, "level0 (1,2) = [-16 -24 48 40] (got %g %g %g %g)",
           (double)b[0], (double)b[1], (double)b[2], (double)b[3]);
    b = a + 4 * s.start[4];
    EXPECT(b[0] == -512 && b[3] == 512, "level4 (0,0) = [-512 -512 512 512]");
    b = a + 4 * (s.start[3] + 1 * s.w[3] + 2);
    EXPECT(b[0] == 128 - 256 && b[1] == 64 - 256 && b[2] == 128 + 256, "level3 (1,2) centre (128, 64) side 512");

    /* Valid flags: image 96x128 in a 128x160 batch. Level 0: rows < 12, cols < 16 -> 192.
     * Level 3 (2x3): ceil(96/64) = 2 rows, ceil(128/64) = 2 cols -> 4. Level 4 (1x2): 1x1 -> 1. */
    unsigned char *v = malloc(s.total);
    anchors_valid(&s, 96, 128, v);
    int cnt[5] = {0};
    for (int l = 0; l < 5; l++)
        for (int i = s.start[l]; i < s.start[l + 1]; i++) cnt[l] += v[i];
    EXPECT(cnt[0] == 192 && cnt[1] == 48 && cnt[2] == 12 && cnt[3] == 4 && cnt[4] == 1,
           "valid counts for 96x128 in 128x160: %d %d %d %d %d (expect 192 48 12 4 1)", cnt[0], cnt[1], cnt[2], cnt[3], cnt[4]);
    EXPECT(v[11 * 20 + 15] == 1 && v[11 * 20 + 16] == 0 && v[12 * 20 + 0] == 0, "level0 edges (11,15) valid, (11,16) and (12,0) not");
    anchors_valid(&s, 128, 160, v);
    int all = 0;
    for (int i = 0; i < s.total; i++) all += v[i];
    EXPECT(all == s.total, "unpadded image: every anchor valid");

    /* PyTorch reference. */
    const char *sh = getenv("OTE_SHARED");
    (void)sh;
    fx_file f;
    if (fx_load(&f, "tests/reference/fixtures/detector_ref.fx") != 0) {
        printf("FAIL: fixture tests/reference/fixtures/detector_ref.fx\n");
        return 1;
    }
    int same = 1;
    for (int l = 0; l < 5; l++) {
        char name[32];
        snprintf(name, sizeof name, "anchors.%d", l);
        const fx_array *fa = fx_get(&f, name);
        same &= fa->numel == 4L * s.h[l] * s.w[l];
        for (long i = 0; same && i < fa->numel; i++) same &= a[4 * (long)s.start[l] + i] == (float)fa->v[i];
    }
    EXPECT(same, "anchors equal the reference's bit for bit (128x160)");
    const fx_array *fv = fx_get(&f, "valid"), *fs = fx_get(&f, "img_shape");
    int vsame = fv->dims[1] == s.total;
    for (int n = 0; vsame && n < fv->dims[0]; n++) {
        anchors_valid(&s, (int)fs->v[2 * n], (int)fs->v[2 * n + 1], v);
        for (int i = 0; i < s.total; i++) vsame &= v[i] == (unsigned char)fv->v[(long)n * s.total + i];
    }
    EXPECT(vsame, "valid flags equal the reference's for all %ld images", fv->dims[0]);
    fx_free(&f);
    free(a);
    free(v);
    return expect_finish();
}

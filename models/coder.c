/* coder.c - DeltaXYWH encode/decode and decode backward (see coder.h). Each expression follows
 * mmdet's bbox2delta/delta2bbox operation order in f32 so that results round like torch's. */
#include "models/coder.h"

#include <math.h>

static const float coder_std[4] = {0.1f, 0.1f, 0.2f, 0.2f};

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

void coder_encode(const float p[4], const float g[4], float d[4]) {
    float px = (p[0] + p[2]) * 0.5f, py = (p[1] + p[3]) * 0.5f;
    float pw = p[2] - p[0], ph = p[3] - p[1];
    float gx = (g[0] + g[2]) * 0.5f, gy = (g[1] + g[3]) * 0.5f;
    float gw = g[2] - g[0], gh = g[3] - g[1];
    d[0] = ((gx - px) / pw) / coder_std[0];
    d[1] = ((gy - py) / ph) / coder_std[1];
    d[2] = logf(gw / pw) / coder_std[2];
    d[3] = logf(gh / ph) / coder_std[3];
}

void coder_decode(const float p[4], const float d[4], float max_h, float max_w, float box[4]) {
    float dx = d[0] * coder_std[0], dy = d[1] * coder_std[1];
    float dw = clampf(d[2] * coder_std[2], -CODER_MAX_RATIO, CODER_MAX_RATIO);
    float dh = clampf(d[3] * coder_std[3], -CODER_MAX_RATIO, CODER_MAX_RATIO);
    float px = (p[0] + p[2]) * 0.5f, py = (p[1] + p[3]) * 0.5f;
    float pw = p[2] - p[0], ph = p[3] - p[1];
    float gw = pw * expf(dw), gh = ph * expf(dh);
    float gx = px + pw * dx, gy = py + ph * dy;
    box[0] = gx - gw * 0.5f;
    box[1] = gy - gh * 0.5f;
    box[2] = gx + gw * 0.5f;
    box[3] = gy + gh * 0.5f;
    if (max_h > 0 && max_w > 0) {
        box[0] = clampf(box[0], 0, max_w);
        box[2] = clampf(box[2], 0, max_w);
        box[1] = clampf(box[1], 0, max_h);
        box[3] = clampf(box[3], 0, max_h);
    }
}

void coder_decode_backward(const float p[4], const float d[4], const float g_box[4], float g_d[4]) {
    float pw = p[2] - p[0], ph = p[3] - p[1];
    float dw = d[2] * coder_std[2], dh = d[3] * coder_std[3];
    float gw = pw * expf(clampf(dw, -CODER_MAX_RATIO, CODER_MAX_RATIO));
    float gh = ph * expf(clampf(dh, -CODER_MAX_RATIO, CODER_MAX_RATIO));
    float g_gx = g_box[0] + g_box[2], g_gy = g_box[1] + g_box[3];
    float g_gw = (g_box[2] - g_box[0]) * 0.5f, g_gh = (g_box[3] - g_box[1]) * 0.5f;
    g_d[0] = coder_std[0] * pw * g_gx;
    g_d[1] = coder_std[1] * ph * g_gy;
    g_d[2] = (dw >= -CODER_MAX_RATIO && dw <= CODER_MAX_RATIO) ? coder_std[2] * gw * g_gw : 0.0f;
    g_d[3] = (dh >= -CODER_MAX_RATIO && dh <= CODER_MAX_RATIO) ? coder_std[3] * gh * g_gh : 0.0f;
}

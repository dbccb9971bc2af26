/* coder.h - DeltaXYWH box coder of mmdetection (means 0, stds 0.1/0.1/0.2/0.2), spec §7a and §11.
 *
 * Boxes are xyxy f32, deltas are the normalised (divided by stds) values the head predicts.
 * The arithmetic is f32 in torch's order, so results match mmdet to rounding of exp/log.
 * Decode clamps dw, dh to +-CODER_MAX_RATIO = |ln(16/1000)|; clipping to the image is for test
 * time only (max_h/max_w > 0), training passes 0 (mmdet max_shape None).
 */
#ifndef OTE_CODER_H
#define OTE_CODER_H

#define CODER_MAX_RATIO 4.135166556742356f

/* d = encode(anchor p, gt box g). */
void coder_encode(const float p[4], const float g[4], float d[4]);
/* box = decode(anchor p, deltas d); clipped to [0, max_w] x [0, max_h] when both are > 0. */
void coder_decode(const float p[4], const float d[4], float max_h, float max_w, float box[4]);
/* Backward of the unclipped decode: g_d = d box / d d applied to g_box (spec §11); the dw/dh
 * gradient is zero where the clamp was active (|dw*0.2| > R; torch's clamp passes at the bounds). */
void coder_decode_backward(const float p[4], const float d[4], const float g_box[4], float g_d[4]);

#endif

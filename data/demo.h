/* demo.h - the built-in synthetic detection set (`ote make-demo-data`, the README's main command).
 *
 * Three shape classes (rectangle, ellipse, triangle) drawn on cluttered backgrounds and written as
 * PNG files with COCO JSON annotations:
 *   DIR/train/train_NNNN.png, DIR/val/val_NNNN.png, DIR/annotations/{train,val}.json
 * Design (what makes it a fair but learnable demo): images of 224-320 x 176-256 pixels; 1-3 shapes
 * per image, 40-120 pixels a side, never overlapping; each shape's colour differs from the
 * background under it by at least DEMO_MIN_CONTRAST (sum of |dR|+|dG|+|dB|), so every object is
 * visible; backgrounds are two-colour gradients with stripes, per-pixel noise and distractors
 * (thin lines and small dots of random colours, which are not objects). Boxes are the exact pixel
 * extent of each shape. Training and validation images come from different seeds (disjoint).
 * Deterministic for a seed. Every file is written atomically (io/atomic.h).
 */
#ifndef OTE_DEMO_H
#define OTE_DEMO_H

#include <stdint.h>

#define DEMO_NCLASS 3
#define DEMO_MIN_CONTRAST 120

/* The class names in category-id order (ids 1..3). */
extern const char *const demo_class_names[DEMO_NCLASS];

typedef struct demo_stats {
    long images, boxes;
    long per_class[DEMO_NCLASS];
} demo_stats;

/* Writes DIR/{train,val}/ and DIR/annotations/ (creating the folders). Returns 0 or a negative
 * OTE_E* status with a message naming the path. `st` (may be NULL) receives the counts. */
int demo_write(const char *dir, int n_train, int n_val, uint64_t seed, demo_stats *st);

#endif

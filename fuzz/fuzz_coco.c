/* fuzz_coco.c - libFuzzer harness for the COCO annotation reader (data/coco.c): the bytes are an
 * annotation file, read as `ote train --train-ann-files` (coco_load, no image root) and as
 * `ote eval --detections` ground truth (coco_load_gt, file_name optional); a dataset that loads is
 * then used the way training uses it (warning summary, box counts, a seeded subset). */
#include "fuzz/fuzz_common.h"

#include "data/coco.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write(data, size, "annotations.json");
    for (int gt_only = 0; gt_only < 2; gt_only++) {
        coco_dataset d;
        int s = gt_only ? coco_load_gt(&d, path) : coco_load(&d, path, "");
        if (s == 0) {
            char buf[512];
            (void)coco_warning_summary(&d, buf, sizeof buf);
            (void)coco_max_boxes_per_image(&d, 1);
            coco_dataset sub;
            if (coco_subset(&sub, &d, d.n_images / 2 + 1, 7) == 0) coco_free(&sub);
        }
        coco_free(&d);
    }
    return 0;
}

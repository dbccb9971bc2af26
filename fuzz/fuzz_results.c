/* fuzz_results.c - libFuzzer harness for the COCO results reader (data/eval_results.c,
 * `ote eval --detections FILE`): the bytes are a results file scored against a fixed ground
 * truth (3 images, 3 categories, ids as pycocotools fixtures use them); a file that loads is
 * scored with VOC mAP and the COCO metric, as `ote eval` does. */
#include "fuzz/fuzz_common.h"

#include "data/eval.h"

static const char gt_json[] =
    "{\"images\": [{\"id\": 1, \"width\": 640, \"height\": 480}, {\"id\": 2, \"width\": 100, \"height\": 80},"
    " {\"id\": 7, \"width\": 32, \"height\": 32}],"
    " \"categories\": [{\"id\": 1, \"name\": \"a\"}, {\"id\": 2, \"name\": \"b\"}, {\"id\": 5, \"name\": \"c\"}],"
    " \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 50, 40], \"area\": 2000, \"iscrowd\": 0},"
    " {\"id\": 2, \"image_id\": 1, \"category_id\": 2, \"bbox\": [100, 50, 30, 30], \"area\": 900, \"iscrowd\": 1},"
    " {\"id\": 3, \"image_id\": 2, \"category_id\": 5, \"bbox\": [0, 0, 99, 79], \"area\": 7821, \"iscrowd\": 0}]}";

static coco_dataset gt;
static int gt_loaded;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!gt_loaded) {
        char gt_path[] = "/tmp/ote_fuzz_gt_XXXXXX";
        int fd = mkstemp(gt_path);
        if (fd < 0 || write(fd, gt_json, sizeof gt_json - 1) != (ssize_t)(sizeof gt_json - 1) || close(fd) != 0) abort();
        int s = coco_load_gt(&gt, gt_path);
        unlink(gt_path);
        if (s != 0) abort(); /* the fixed ground truth must load */
        gt_loaded = 1;
    }
    const char *path = fuzz_write(data, size, "results.json");
    eval_dets dets;
    eval_dets_init(&dets);
    if (eval_load_results(path, &gt, &dets) == 0) {
        eval_voc_result voc;
        if (eval_voc(&gt, dets.d, dets.n, 0.5, EVAL_CROWD_IGNORED, &voc) == 0) eval_voc_result_free(&voc);
        eval_coco_result coco;
        static const int max_dets[3] = {100, 300, 1000};
        if (eval_coco(&gt, dets.d, dets.n, max_dets, &coco) == 0) eval_coco_result_free(&coco);
    }
    eval_dets_free(&dets);
    return 0;
}

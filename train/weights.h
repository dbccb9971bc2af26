/* weights.h - the trained-model files of `ote train --save-model-to` / `--load-weights`.
 *
 * `weights.pth`: a real PyTorch checkpoint (io/pth.h) holding
 *     {'model': state_dict, 'config': {...}, 'confidence_threshold': float, 'VERSION': 1}
 * where state_dict has mmdetection's names in the detector's order (OIHW conv weights, BN running
 * statistics, num_batches_tracked as int64 scalars) and 'config' the template's hyper-parameters
 * as strings ("learning_parameters.batch_size": "8", nested dicts on disk) plus the model settings
 * (model.input_size "WxH", model.backbone, model.tf_padding, model.seed).
 *
 * `label_schema.json` (ote-c format, version 1), beside the weights:
 *     {"format": "ote-c label schema", "version": 1,
 *      "labels": [{"id": 0, "name": "car", "coco_category_id": 3}, ...]}
 * `id` is the contiguous class index the model's outputs use, `coco_category_id` the category id of
 * the training annotations (ascending-id order, as mmdetection's CocoDataset maps them).
 *
 * Loading accepts our files, torch.save'd dicts of that layout, mmcv's {'state_dict': ...} and a
 * bare state_dict. Every checkpoint tensor must match a detector parameter by name and shape, and
 * every detector parameter must be present; otherwise an error names the offending keys (never
 * silently skipped). The single exception is OTE's: a different class count re-initialises only
 * bbox_head.atss_cls (weight and bias) and is reported through weights_load_info. A backbone file
 * (weights_load_backbone) goes through the same name and shape check but may leave parameters out;
 * it may also be a TFLite MobileNetV2 (train/import_backbone.h), imported in memory exactly as
 * `ote import-backbone --input-range unit` would write it (a few ms: no cached file is needed).
 *
 * Every file goes to a temporary name and is renamed into place. Owns nothing between calls.
 */
#ifndef OTE_WEIGHTS_H
#define OTE_WEIGHTS_H

#include <stddef.h>

#include "data/coco.h"
#include "io/pth.h"
#include "models/det.h"
#include "train/config.h"

/* --save-model-to P -> the weights path (P if it ends in .pth, else P/weights.pth) and its
 * label schema (weights_side_path). OTE_EINVAL if a path does not fit. */
int weights_paths(const char *save_to, char *weights, size_t wn, char *labels, size_t ln);
/* A side file of a weights file: DIR/weights.pth keeps OTE's layout (DIR/label_schema.json,
 * DIR/hpo); any other DIR/X.pth gets DIR/X.label_schema.json and DIR/X.hpo, so that two models
 * saved into one folder never share (and overwrite) each other's labels or search. */
int weights_side_path(const char *weights_path, const char *side, char *buf, size_t n);

/* Creates the output directory (and parents) and proves it writable by creating and removing a
 * probe file, before any training starts; refuses a weights path that is an existing directory.
 * OTE_EIO naming the path otherwise. made (n bytes) receives the first folder level it created
 * ("" if the folder existed), for weights_remove_made_dirs after a failed run. */
int weights_prepare_dir(const char *weights_path, char *made, size_t n);
/* Removes the folders weights_prepare_dir made, deepest first, as long as they are empty (a failed
 * run leaves no empty output folder; one holding hpo/ results stays). */
void weights_remove_made_dirs(const char *weights_path, const char *made);
/* Removes "<weights>.tmp-<pid>" and "<labels>.tmp-<pid>" files left beside the outputs by runs that
 * were killed during a save (only when that pid no longer runs). Returns how many were removed. */
int weights_clean_stale_temps(const char *weights_path, const char *labels_path);

/* A detector parameter as weights_match sees it (tests pass tables; the trainer the detector's). */
typedef struct weights_match_result {
    int *src;           /* (n_params) index into ckpt->tensors per parameter, -1 for re-initialised */
    int reinit_cls;     /* 1: class counts differ, atss_cls left to re-initialise */
    int ckpt_classes;   /* classes of the checkpoint's atss_cls (0 if absent) */
} weights_match_result;

/* Matches checkpoint tensors to parameters by name and shape (a 0-d tensor and a 1-element 1-d
 * tensor are the same shape). On mismatch: OTE_EINVAL with "<what>: unknown keys: a, b; missing
 * keys: c; mis-shaped keys: d (checkpoint [..] vs model [..])" (at most a few of each, then
 * "+N more"). src must hold n_params ints. */
int weights_match(const det_param_info *const *params, int n_params, const pth_ckpt *c, const char *what,
                  weights_match_result *out);

/* The same check for a backbone initialisation file (`ote import-backbone`, the template's
 * model.pretrained_backbone): every tensor must name a parameter of the same shape, as above, but
 * parameters the file does not list keep their initialisation (no "missing keys"), the ImageNet
 * classifier (backbone.output.*, backbone.features.final_block.*) is skipped, and there is no
 * class-count exception. */
int weights_match_backbone(const det_param_info *const *params, int n_params, const pth_ckpt *c, const char *what,
                           weights_match_result *out);

/* The checkpoint of a detector's current parameters with the template's settings. */
int weights_build(detector *d, const config_template *t, double confidence_threshold, pth_ckpt *out);
/* weights_build + pth_save (atomic). */
int weights_save(detector *d, const config_template *t, double confidence_threshold, const char *path);
/* weights.pth and label_schema.json as one publication: both are written in full to temporary
 * names first, then renamed into place (labels first), so a failed write (disk full) leaves the
 * previous pair untouched - never new weights beside old labels. labels_path NULL: weights only. */
int weights_save_pair(detector *d, const config_template *t, double confidence_threshold, const char *weights_path,
                      const char *labels_path, const coco_dataset *ds);

typedef struct weights_load_info {
    pth_layout layout;
    int reinit_cls;      /* the classification conv was re-initialised (class count changed) */
    int ckpt_classes;
    int n_loaded;        /* parameters set from the checkpoint */
    int from_tflite;     /* weights_load_backbone: the file was a TFLite model imported in memory */
    int bn_folded;       /* the backbone's BNs are identity + bias (import.bn=identity_plus_bias):
                          * the caller re-estimates them (det_calibrate_bn) before training */
    int tf_same;         /* the backbone was trained with TF SAME padding (import.padding=tf_same) */
    int torchvision;     /* ... and is the torchvision variant (import.variant=torchvision) */
    int minus1_input;    /* ... and takes x / 127.5 - 1 (import.input=rgb_minus1_to_1), not x / 255 */
} weights_load_info;

/* Loads a checkpoint file into c (pth_init'ed by the caller) - a thin pth_load with the path named. */
int weights_read(const char *path, pth_ckpt *c);
/* Applies a loaded checkpoint to the detector (all or nothing: matched before anything is set). */
int weights_apply(detector *d, const pth_ckpt *c, const char *what, weights_load_info *info);
/* Applies a backbone file's tensors (weights_match_backbone; all or nothing). info may be NULL. */
int weights_apply_backbone(detector *d, const pth_ckpt *c, const char *what, weights_load_info *info);
/* A backbone file into c (pth_init'ed by the caller): a TFLite MobileNetV2 (recognised by its
 * "TFL3" identifier, imported with the input range folded to x/255) or any checkpoint weights_read
 * takes. *from_tflite (may be NULL) says which. */
int weights_read_backbone(const char *path, pth_ckpt *c, int *from_tflite);
/* weights_read_backbone + weights_apply_backbone; info also reports the import.* settings. */
int weights_load_backbone(detector *d, const char *path, weights_load_info *info);

/* Applies the model settings stored in a checkpoint's config (model.input_size, model.backbone,
 * model.tf_padding, postprocessing.confidence_threshold) to t; absent keys leave t unchanged. */
int weights_config_to_template(const pth_ckpt *c, config_template *t);

#endif

/* trainer.h - the training loop: the only place where data, model and optimiser meet (DESIGN §1).
 *
 * trainer_run() trains a MobileNetV2-ATSS detector on a coco_dataset and validates it every epoch,
 * following OTE (spec-detector.md §9, spec-ote-hpo.md §2.2/§3):
 *   - epochs = num_iters after OTE's adaptive repeat (one epoch = `repeat` shuffled passes);
 *   - training sizes: the spec's 5 sizes scaled to the input size, MinIoU crop, flip, batch padding;
 *   - lr: linear warm-up (warmup_iters, ratio 1/3) over ReduceLROnPlateau; early stopping;
 *   - SGD momentum 0.9, weight decay 1e-4 on every parameter; BN in training mode;
 *   - validation VOC mAP@0.5 (mmdet eval_map) + COCO stats every epoch at the input size (batch 1);
 *   - the best-mAP weights kept (in memory, and written atomically to save_path when it improves)
 *     with their confidence threshold (data/eval_threshold.c's best F-measure, if the template
 *     asks for result_based_confidence_threshold);
 *   - model.pretrained_backbone (unless --load-weights) through weights_load_backbone's name and
 *     shape check.
 * The loop (trainer.c) reads setup / epoch / end of epoch: trainer_setup_* once, then per epoch
 * trainer_train_epoch (trainer_step per batch: pack, forward, backward, SGD) and trainer_end_epoch
 * (validate, keep the best, save, lr schedule, early stopping, callback, deadline).
 * It is re-entrant and keeps no global state, so HPO can call it in-process for each trial with a
 * training subset, a reduced input size, a wall-clock deadline and a per-epoch callback.
 *
 * Ownership: the datasets belong to the caller and must outlive the call. The result owns its
 * eval_report (trainer_result_free).
 */
#ifndef OTE_TRAINER_H
#define OTE_TRAINER_H

#include <stdint.h>
#include <stdio.h>

#include "data/coco.h"
#include "data/eval.h"
#include "data/loader.h"
#include "io/pth.h"
#include "models/det.h"
#include "train/config.h"

/* One epoch's report (for HPO and logs). */
typedef struct trainer_epoch_report {
    int epoch;          /* 1-based */
    int epochs;         /* planned epochs */
    double map;         /* validation VOC mAP@0.5 */
    double seconds;     /* wall time since the start of training (includes validation) */
    long images;        /* training images processed so far */
    long iters;         /* iterations done so far */
    double lr;          /* regular lr at the end of the epoch */
} trainer_epoch_report;

/* Return nonzero to stop training after this epoch (HPO pruning). */
typedef int (*trainer_epoch_fn)(void *ctx, const trainer_epoch_report *r);

typedef struct trainer_opts {
    config_template cfg;          /* hyper-parameters and model settings (params already applied) */
    const char *init_weights;  /* --load-weights: checkpoint to start from, NULL = fresh init */
    const char *save_path;     /* weights.pth written when the val mAP improves; NULL = not saved */
    const char *labels_path;   /* label_schema.json written with the first save; NULL = not written */
    double subset_ratio;       /* (0, 1]: train on a seeded subset of the training images (HPO) */
    int max_epochs;            /* > 0: override the epochs from the adaptive repeat (HPO trials) */
    double deadline;           /* > 0: CLOCK_MONOTONIC seconds after which training stops
                                * (checked every iteration; the epoch in flight is validated) */
    const char *state_path;    /* training state (OUT/last.pth, train/resume.h) written after every
                                * validated epoch; NULL = none */
    const char *resume_from;   /* continue the training saved in this state file (settings checked,
                                * init_weights and the pretrained backbone unused); NULL = fresh */
    int nthreads;              /* OpenMP threads for oneDNN; 0 = default */
    int log_every;             /* progress line every this many iterations; 0 = 10 */
    FILE *log;                 /* progress / summary lines; NULL = silent */
    trainer_epoch_fn on_epoch;
    void *on_epoch_ctx;
    int write_metrics;         /* 1 (with save_path): metrics.csv, curves.png, pr_curves.png beside the
                                * weights (train/metrics.h); never fails the training */
    int data_parallel;         /* 1: every rank of the MPI job (dist/dist.h) runs trainer_run with the
                                * same options and data and they train one model together (below);
                                * 0: this process trains alone and never calls a collective (also
                                * inside an MPI job: single-rank HPO trials). Ignored when
                                * dist_size() is 1. */
} trainer_opts;

/* Data-parallel training (data_parallel = 1, dist_size() = N > 1), as PyTorch DDP without SyncBN:
 *   - every rank shuffles with the same seed, so the global batch sequence is the single-process
 *     one (cfg.batch_size images per iteration); rank r's loader decodes only its share of each
 *     batch (data/loader.h shards: batch_size / N, the first batch_size % N ranks one more; an
 *     error if batch_size < N). The iteration count, lr schedule, adaptive repeat and early
 *     stopping are the single-process ones.
 *   - the loss normalisers (positives, centerness sum) are summed over the ranks before the losses
 *     are divided (mmdetection's reduce_mean), the loss parts are summed for the log, and the
 *     gradient block is summed with one allreduce after the backward; every rank then takes the
 *     same SGD step. BatchNorm batch statistics stay per rank (DDP without SyncBN: the only
 *     difference to one process with the whole batch); the running statistics are averaged over
 *     the ranks before each validation, so validation, weights.pth and last.pth use the average.
 *   - rank 0 validates, prints, calls on_epoch and writes every file; the other ranks run with log,
 *     save_path, labels_path, state_path and write_metrics off and receive rank 0's end-of-epoch
 *     decisions (mAP, best epoch, lr schedule, early stopping, stop) by broadcast. A deadline reached
 *     on any rank stops all of them after the same iteration.
 *   - the initial weights (init_weights, pretrained backbone, resume_from: every rank reads the same
 *     file) are made identical by broadcasting rank 0's parameters and optimiser state; a
 *     BN-calibrating first step (BN-folded backbone) is followed by another such broadcast.
 *   - a non-finite loss on any rank is OTE_ENAN on every rank (the summed loss); any other error
 *     returns on the failing rank only while the others wait in a collective: the caller must end
 *     the job then (dist_abort; tools/cmd_train.c does). */

/* Why training ended. */
typedef enum trainer_stop {
    TRAINER_STOP_DONE = 0,      /* all epochs ran */
    TRAINER_STOP_EARLY = 1,     /* OTE's early-stopping hook */
    TRAINER_STOP_CALLBACK = 2,  /* on_epoch asked to stop */
    TRAINER_STOP_DEADLINE = 3,  /* wall-clock deadline */
} trainer_stop;

typedef struct trainer_result {
    double best_map;          /* -1 if no epoch finished */
    int best_epoch;           /* 1-based, 0 if none */
    int epochs_run, epochs_planned, repeat;
    long iters, images;
    double seconds;           /* whole run */
    double confidence_threshold; /* stored with the weights */
    trainer_stop stop;
    eval_report best;         /* VOC + COCO (maxDets 100,300,1000) of the best epoch */
    int has_best;
} trainer_result;

/* Default options from a template (everything else off). */
void trainer_opts_init(trainer_opts *o, const config_template *cfg);

/* 1 when this process prints and writes the files of a training with this trainer_opts.data_parallel:
 * always when it trains alone, only rank 0 under data-parallel training (above). trainer_run
 * follows it; a command line uses it for what it prints and writes around the training. */
int trainer_is_writer(int data_parallel);

/* Trains; returns 0 or a negative status (OTE_ENAN names the iteration; the best checkpoint
 * already written stays valid). val may be NULL (no validation: nothing is saved). */
int trainer_run(const trainer_opts *o, const coco_dataset *train, const coco_dataset *val, trainer_result *res);
void trainer_result_free(trainer_result *r);

/* Evaluates a checkpoint on a dataset at cfg's input size: loads weights (class count must match
 * the dataset), predicts with batch 1 and scores VOC mAP@0.5 + COCO stats (maxDets 100,300,1000).
 * keep (may be NULL, eval_dets_init'ed) receives the detections in dataset order. */
/* A weights path ending in ".onnx" is an exported model (train/export.h), run through OpenCV dnn
 * (train/onnx_model.h) with the same loader, post-processing and scoring; its input size and
 * class count are fixed by the file and must agree with cfg and ds. */
int trainer_evaluate(const config_template *cfg, const char *weights_path, const coco_dataset *ds, int nthreads,
                     eval_report *out, eval_dets *keep);
/* 1 if path names an exported ONNX model (ends in ".onnx"). */
int trainer_is_onnx_path(const char *path);
/* The model settings a trained file fixes, into cfg: for a checkpoint (read into c, which the caller
 * pth_init'ed and frees) its stored model settings and confidence threshold; for an exported
 * model.onnx (c untouched) its input size and confidence threshold. */
int trainer_model_settings(const char *path, config_template *cfg, pth_ckpt *c);

/* The detector settings of a template (backbone variant, TF padding, seed) for n_classes. */
void trainer_det_cfg(const config_template *cfg, int n_classes, det_cfg *dc);

/* A loaded detector for predicting several image sets in turn (`ote predict`, the training
 * samples; train/predict.c): weights from an already read checkpoint c (`what` names it in
 * messages), n_classes must match its atss_cls. trainer_predictor_run predicts every image of ds at
 * cfg's input size with batch 1 exactly as trainer_evaluate does and appends the detections (image
 * = index into ds); the inference plan is built once and kept across calls. */
typedef struct trainer_predictor trainer_predictor;
int trainer_predictor_open(trainer_predictor **out, const config_template *cfg, const pth_ckpt *c, const char *what,
                           int n_classes, int nthreads);
/* trainer_predictor_open of a file: a checkpoint (weights_read), or an exported model.onnx run by
 * OpenCV dnn (its class count must be n_classes, its input size cfg's). */
int trainer_predictor_open_file(trainer_predictor **out, const config_template *cfg, const char *path, int n_classes,
                                int nthreads);
int trainer_predictor_run(trainer_predictor *p, const coco_dataset *ds, eval_dets *out);
void trainer_predictor_close(trainer_predictor *p);

/* The loaders exactly as trainer_run configures them (cmd dump-batches streams the same batches):
 * training - the template's batch size, workers and seed, the 5 training sizes scaled to the
 * input size (written to sizes), MinIoU crop and flip; validation - batch 1 at the input size. */
int trainer_train_loader_config(const config_template *cfg, loader_config *lc, aug_size sizes[5]);
void trainer_val_loader_config(const config_template *cfg, loader_config *lc);

/* Both training and validation must list the same class names in the same order. */
int trainer_check_classes(const coco_dataset *train, const coco_dataset *val);

/* Step timing for the HPO budget (train/train_hpo.c): real iterations at cfg's input size and
 * batch size, with a fresh detector; nothing is saved. */
typedef struct trainer_timing {
    double step_seconds;      /* one training iteration (forward + backward + SGD) on one batch */
    int step_images;          /* images in that batch: min(batch_size, training images) */
    double plan_seconds;      /* first iteration minus a timed one: building one training plan */
    double predict_seconds;   /* one validation image (batch 1, cfg's input size), plan built */
    double predict_plan_seconds; /* first prediction pass minus a timed one: the inference plan */
    double switch_seconds;    /* extra cost of one train -> validate -> train cycle (a training step
                               * after predictions, predictions after a training step, e.g. BN
                               * refolding) beyond the steady times: paid once per epoch */
    double seconds;           /* wall time of the whole calibration */
} trainer_timing;

/* One warm-up iteration (builds the plan) then `steps` timed iterations, all on the same batch
 * (the template input size: the middle of the multi-size set), `preds` validation images
 * predicted twice (warm-up, timed), then one more iteration and one more prediction pass (the
 * switch cost). Returns 0 or a negative status (OTE_ENAN included). */
int trainer_time_steps(const config_template *cfg, const coco_dataset *train, const coco_dataset *val, int steps,
                       int preds, int nthreads, trainer_timing *out);

#endif

/* resume.h - the training state of `ote train` (OUT/last.pth) and resuming from it (issue 14 §1).
 *
 * After every finished epoch (validated, best kept, lr schedule and early stopping updated) the
 * trainer writes the state file atomically (io/pth.h: temp file + fsync + rename), so a
 * training killed at any moment loses at most the epoch in progress. The file is a real PyTorch
 * checkpoint in weights.pth's OTE layout plus one top-level key:
 *     {'model': state_dict (the weights at the end of the epoch, not the best ones),
 *      'config': {<weights.pth's hyper-parameters and model.*>, 'resume': {...}},
 *      'confidence_threshold': float (the best epoch's), 'VERSION': 1,
 *      'optimizer': {<parameter name>: SGD momentum buffer, same shape as the parameter}}
 * so `ote eval --load-weights OUT/last.pth` and torch.load both open it, and
 * ckpt['optimizer'][name] is what torch.optim.SGD keeps as state['momentum_buffer'].
 * config['resume'] holds strings (as all of config):
 *     format "ote-c training state", version 1;
 *     epochs_done, epochs, repeat, batches, iter, images, seconds, train_seconds;
 *     finished true|false and stop (running|done|early|callback|deadline);
 *     plateau.{lr,best,bad,last_iter}, early.{best,wait,last_iter} (train/schedule.h);
 *     best.{map,epoch,confidence_threshold};
 *     sgd.{steps,momentum,weight_decay};
 *     rng.{seed,next_pass,scheme}: the data order and augmentation are counter-based
 *       (data/aug.h aug_rng(seed, pass, image, stream)), so the seed and the next loader pass
 *       are the whole random state; nothing else in a training step draws random numbers;
 *     threads: OpenMP threads of the run (bit-identical results need the same count);
 *     data.{train,val}.{images,boxes,fingerprint}: FNV-1a 64 of the categories, image file names
 *       and sizes and every box (not the folder: moved data still resumes);
 *     subset_ratio, max_epochs: the trainer options that shape the run (HPO trials).
 * Numbers are written with %.17g (doubles read back exactly) and %ld.
 *
 * A resume is refused (OTE_EINVAL, one line naming the first difference and both values) when a
 * hyper-parameter, a model.* setting, the training or validation data, or the epoch plan differs
 * from the state's. Owns nothing between calls.
 */
#ifndef OTE_RESUME_H
#define OTE_RESUME_H

#include <stddef.h>
#include <stdint.h>

#include "data/coco.h"
#include "io/pth.h"
#include "models/det.h"
#include "train/config.h"
#include "train/schedule.h"

#define RESUME_FORMAT "ote-c training state"
#define RESUME_VERSION 1

typedef struct resume_state {
    int epochs_done;          /* finished (validated) epochs */
    int epochs, repeat, batches;
    long iter, images;        /* done so far */
    double seconds;           /* wall time of the run so far (all sessions, without the downtime) */
    double train_seconds;     /* of which training iterations */
    int finished;             /* 1: the training ended (all epochs, early stopping, ...) */
    int stop;                 /* trainer_stop when finished, else -1 ("running") */
    schedule_plateau plateau;
    schedule_early_stop early;
    double best_map;          /* -1 if no best yet */
    int best_epoch;           /* 1-based, 0 if none */
    double best_threshold;    /* confidence threshold saved with the best weights */
    long sgd_steps;
    uint64_t seed;
    long next_pass;           /* loader pass (loader_start_epoch argument) the next epoch starts with */
    int threads;
    double subset_ratio;
    int max_epochs;
} resume_state;

/* The state file of a weights file: OUT/weights.pth -> OUT/last.pth, DIR/X.pth -> DIR/X.last.pth
 * (weights_side_path). OTE_EINVAL if it does not fit. */
int resume_state_path(const char *weights_path, char *buf, size_t n);

/* FNV-1a 64 of a dataset's categories, images (file names, sizes) and boxes. */
uint64_t resume_data_fingerprint(const coco_dataset *ds);

/* Writes the state file atomically: d's weights and momentum buffers, cfg's settings, rs, and the
 * fingerprints of the training (as trained on) and validation data. */
int resume_save(const char *path, detector *d, const config_template *cfg, const resume_state *rs,
                const coco_dataset *train, const coco_dataset *val);

/* Reads a state file into c (pth_init'ed, empty) and its resume entries into rs. OTE_EINVAL naming
 * the file and key if it is not a training state of this format (e.g. a plain weights.pth). */
int resume_read(const char *path, pth_ckpt *c, resume_state *rs);

/* The settings check: OTE_EINVAL with "<what> differs: <then> in the interrupted training, <now>
 * now" for the first of: a hyper-parameter (cfg->hp, by key), model.input_size / backbone /
 * tf_padding / seed, the training data, the validation data (val may be NULL: not compared),
 * subset_ratio, max_epochs. path names the file in the message. */
int resume_check(const pth_ckpt *c, const char *path, const config_template *cfg, const coco_dataset *train,
                 const coco_dataset *val, double subset_ratio, int max_epochs);

/* Loads the state's weights (weights_apply: names and shapes checked, same class count required),
 * every trained parameter's momentum buffer and the SGD step count into d. */
int resume_apply(detector *d, const pth_ckpt *c, const char *path, const resume_state *rs);

/* "done", "early", ... for rs->stop (as written in resume.stop). */
const char *resume_stop_name(int stop);

#endif

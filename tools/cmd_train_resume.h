/* cmd_train_resume.h - `ote train`'s decisions about an earlier run's training state (issue 14):
 * --resume-from, and what happens when OUT already holds OUT/last.pth.
 *
 *   --resume-from S      S must be the state file of --save-model-to (OUT/last.pth, DIR/X.last.pth
 *                        for OUT = DIR/X.pth: a training resumes into its own folder); its settings
 *                        (hyper-parameters, model.*, both datasets) must be the current ones, else
 *                        exit 2 with one line naming the first difference. A finished training:
 *                        "nothing to do" and exit 0, files untouched. With --enable-hpo the check
 *                        runs after the search (resumed or reused: --hpo-resume defaults to yes).
 *   no --resume-from,    an interrupted (unfinished) training in OUT: exit 2 with one line saying
 *   OUT/last.pth exists  how to continue (--resume-from) or start over (remove it or use another
 *                        --save-model-to) - a fresh start would replace the best weights of hours
 *                        of training at its first epoch, and the same command run again after a
 *                        crash almost always means "continue". A finished training: a new one
 *                        starts (as before this option existed), with a note. With --enable-hpo
 *                        (--hpo-resume not no): the final training resumes when the search's
 *                        result matches the interrupted training's settings, else starts fresh
 *                        with a note (a new search gave other values).
 * Every message is one line; stdout for notes, stderr for refusals.
 */
#ifndef OTE_CMD_TRAIN_RESUME_H
#define OTE_CMD_TRAIN_RESUME_H

#include "data/coco.h"
#include "train/config.h"
#include "train/resume.h"

typedef struct train_resume_plan {
    char state_path[4096];   /* where this run writes its state (OUT/last.pth) */
    const char *weights_path;
    const char *resume_from; /* --resume-from, NULL if not given */
    int candidate;           /* a state to check after HPO (explicit, or unfinished with --enable-hpo) */
    int use;                 /* resume from state_path */
    resume_state rs;
} train_resume_plan;

/* Before HPO and training (data loaded, nothing written yet). Returns 0 to go on, else *stop = 1
 * and the return value is the exit code (0: nothing to do). hpo_no: --hpo-resume no. */
int train_resume_before(train_resume_plan *pl, const char *resume_from, const char *weights_path, int hpo, int hpo_no,
                        const config_template *cfg, const coco_dataset *train, const coco_dataset *val, int *stop);

/* After HPO (cfg holds the final training's settings): same convention. */
int train_resume_after_hpo(train_resume_plan *pl, const config_template *cfg, const coco_dataset *train,
                           const coco_dataset *val, int *stop);

#endif

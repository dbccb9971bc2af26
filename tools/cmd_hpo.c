/* cmd_hpo.c - `ote hpo`: the HPO optimiser on any objective given as a shell command.
 *
 * For each trial the command runs once through `/bin/sh -c` with the trial's values appended as
 * `--<name> <value>` arguments (each shell-quoted); its stdout is captured and the last non-empty
 * line must be a number (the score); a non-number, a non-zero exit status or a death by signal
 * makes the trial FAILED and the search goes on (except SIGINT/SIGTERM on the command, which
 * interrupt the search like Ctrl-C: the trial stays RUNNING and is rerun on resume). The command's
 * stderr passes through. mode: max|min in the config decides the direction. The work directory
 * receives the same hpopt_status.json / hpopt_trial_<id>.json as `ote train --enable-hpo`.
 *
 * Under `mpirun -np N` (issue 18) rank 0 runs the search and keeps the files and every rank runs
 * trials: each worker rank runs the command of the trials rank 0 hands it (in its own process
 * group, exactly as alone) and sends the score back (hpo/hpo.h, train/hpo_dist.h).
 *
 * Exit codes: 0 done (also when the resume prompt gets 5 invalid answers, as OTE), 1 runtime
 * error, 2 usage error.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dist/dist.h"
#include "engine/ote.h"
#include "hpo/hpo.h"
#include "train/hpo_dist.h"
#include "tools/commands.h"

static void cmd_hpo_usage(FILE *f) {
    fprintf(f,
            "usage: ote hpo --hpo-config FILE.yaml --objective-cmd 'CMD' --work-dir DIR\n"
            "               [--num-trials N] [--hpo-resume ask|yes|no] [--seed S] [--budget-seconds T]\n"
            "               [--trial-timeout T]\n\n"
            "Optimise the hyper-parameters of hpo_config.yaml's hp_space for any objective: CMD runs once\n"
            "per trial (via /bin/sh -c) with '--<name> <value>' appended for every parameter; the last line\n"
            "of its stdout is the score (maximised, or minimised with 'mode: min'). A non-number or a\n"
            "non-zero exit status is a failed trial. Status and trial files go to DIR; an unfinished\n"
            "search there is resumed, a finished one reused (--hpo-resume ask asks when stdin is a\n"
            "terminal; no reruns from scratch). The OTE result table is printed at the end.\n\n"
            "options:\n"
            "  --hpo-config FILE     hpo_config.yaml (metric, mode, search_algorithm, early_stop, hp_space, ...)\n"
            "  --objective-cmd CMD   shell command printing the score on its last stdout line\n"
            "  --work-dir DIR        where hpopt_status.json and hpopt_trial_<id>.json are written\n"
            "  --num-trials N        number of trials (default: num_trials of the config, else 10)\n"
            "  --hpo-resume MODE     ask (default) | yes | no\n"
            "  --seed S              seed of the optimiser (default 1)\n"
            "  --budget-seconds T    wall-clock budget of the search (default: none); a trial still running\n"
            "                        when it ends is killed (with its process group) and recorded as failed\n"
            "  --trial-timeout T     kill a trial's command after T seconds (default: none)\n");
}

typedef struct cmd_hpo_ctx {
    const char *cmd;
    double trial_timeout; /* --trial-timeout, 0 = none */
} cmd_hpo_ctx;

/* Appends s to the buffer in single quotes ('\'' for embedded quotes). */
static int append_quoted(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t need = *len + 4 * strlen(s) + 4;
    if (need > *cap) {
        size_t nc = need * 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    char *p = *buf + *len;
    *p++ = ' ';
    *p++ = '\'';
    for (; *s; s++) {
        if (*s == '\'') {
            memcpy(p, "'\\''", 4);
            p += 4;
        } else {
            *p++ = *s;
        }
    }
    *p++ = '\'';
    *p = 0;
    *len = (size_t)(p - *buf);
    return 0;
}

static double wall(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The running objective's process group: Ctrl-C / SIGTERM to ote reach it (it is not in the
 * terminal's foreground group any more), then ote ends as it would without the handler. */
static volatile sig_atomic_t cmd_hpo_child;

static void cmd_hpo_forward(int sig) {
    if (cmd_hpo_child > 0) kill(-(pid_t)cmd_hpo_child, sig);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Runs `line` through /bin/sh -c in its own process group with stdout on a pipe, keeping the last
 * non-empty output line in last (n bytes). A deadline (> 0, CLOCK_MONOTONIC seconds) kills the
 * whole group (SIGTERM, then SIGKILL after 2 s): *timed_out = 1. Returns the wait status or -1. */
static int cmd_hpo_spawn(const char *line, double deadline, char *last, size_t n, int *timed_out) {
    *timed_out = 0;
    last[0] = '\0';
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]), close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        dup2(fd[1], 1);
        close(fd[0]), close(fd[1]);
        execl("/bin/sh", "sh", "-c", line, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: no race with the child's own call */
    cmd_hpo_child = pid;
    void (*old_int)(int) = signal(SIGINT, cmd_hpo_forward), (*old_term)(int) = signal(SIGTERM, cmd_hpo_forward);
    close(fd[1]);
    char buf[4096], cur[4096];
    size_t cl = 0;
    double kill_at = 0;
    for (;;) {
        int ms = -1;
        if (deadline > 0) {
            double left = (kill_at > 0 ? kill_at : deadline) - wall();
            ms = left <= 0 ? 0 : (int)(left * 1000) + 1;
        }
        struct pollfd pf = {fd[0], POLLIN, 0};
        int pr = poll(&pf, 1, ms);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) { /* deadline */
            if (kill_at == 0) {
                *timed_out = 1;
                kill(-pid, SIGTERM);
                kill_at = wall() + 2;
            } else {
                kill(-pid, SIGKILL);
                break;
            }
            continue;
        }
        ssize_t r = read(fd[0], buf, sizeof buf);
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == '\n' || buf[i] == '\r') {
                cur[cl] = '\0';
                char *s = cur;
                while (*s == ' ' || *s == '\t') s++;
                size_t k = strlen(s);
                while (k && (s[k - 1] == ' ' || s[k - 1] == '\t')) s[--k] = '\0';
                if (*s) snprintf(last, n, "%s", s);
                cl = 0;
            } else if (cl + 1 < sizeof cur) {
                cur[cl++] = buf[i];
            }
        }
    }
    if (cl) { /* a last line without newline */
        cur[cl] = '\0';
        char *s = cur;
        while (*s == ' ' || *s == '\t') s++;
        if (*s) snprintf(last, n, "%s", s);
    }
    close(fd[0]);
    int st, w;
    while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
    }
    if (*timed_out) kill(-pid, SIGKILL); /* anything of the group still alive */
    cmd_hpo_child = 0;
    signal(SIGINT, old_int);
    signal(SIGTERM, old_term);
    return w < 0 ? -1 : st;
}

static int run_objective(void *vctx, const hpo_trial *t, hpo_reporter *r) {
    cmd_hpo_ctx *c = vctx;
    size_t cap = strlen(c->cmd) + 256, len = strlen(c->cmd);
    char *line = malloc(cap);
    if (!line) return ote_err(OTE_ENOMEM, "hpo: out of memory");
    memcpy(line, c->cmd, len + 1);
    for (int i = 0; i < t->space->n; i++) {
        char opt[HP_NAME_MAX + 4], val[64];
        snprintf(opt, sizeof opt, "--%s", t->space->p[i].name);
        hp_format_value(&t->space->p[i], t->values[i], val, sizeof val);
        if (append_quoted(&line, &len, &cap, opt) < 0 || append_quoted(&line, &len, &cap, val) < 0) {
            free(line);
            return ote_err(OTE_ENOMEM, "hpo: out of memory");
        }
    }
    fflush(stdout);
    double t0 = wall();
    /* the budget's end and the per-trial timeout, whichever comes first */
    double deadline = hpo_reporter_deadline(r);
    if (c->trial_timeout > 0 && (deadline <= 0 || t0 + c->trial_timeout < deadline)) deadline = t0 + c->trial_timeout;
    char last[4096];
    int timed_out;
    int st = cmd_hpo_spawn(line, deadline, last, sizeof last, &timed_out);
    free(line);
    double secs = wall() - t0;
    if (st == -1) return ote_err(OTE_EIO, "objective command: cannot run /bin/sh: %s", strerror(errno));
    if (timed_out)
        return ote_err(OTE_EIO, "objective command killed after %.0f s (%s)", secs,
                       c->trial_timeout > 0 && t0 + c->trial_timeout <= deadline + 1e-9 ? "--trial-timeout"
                                                                                      : "the --budget-seconds budget ended");
    if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        if (sig == SIGINT || sig == SIGTERM) return ote_err(OTE_ECANCEL, "objective command interrupted by signal %d", sig);
        return ote_err(OTE_EIO, "objective command killed by signal %d", sig);
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
        return ote_err(OTE_EIO, "objective command exited with status %d", WEXITSTATUS(st));
    char *end = NULL;
    errno = 0;
    double score = strtod(last, &end);
    if (!*last || !end || *end || errno == ERANGE || !isfinite(score))
        return ote_err(OTE_EPARSE, "objective command: last output line is not a number: '%.60s'", last);
    int s = hpo_report(r, 1, score, secs, 0);
    return s < 0 ? s : 0;
}

static int cmd_hpo_usage_err(const char *fmt, const char *arg) {
    fprintf(stderr, "ote hpo: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see 'ote hpo --help')\n");
    return 2;
}

int cmd_hpo(int argc, char **argv) {
    const char *cfg_path = NULL, *objective = NULL, *work = NULL, *resume = "ask";
    long num_trials = 0, seed = 1;
    double budget = 0, trial_timeout = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cmd_hpo_usage(stdout);
            return 0;
        }
        static const char *const opts[] = {"--hpo-config", "--objective-cmd", "--work-dir", "--num-trials",
                                           "--hpo-resume", "--seed", "--budget-seconds", "--trial-timeout", NULL};
        const char *val = NULL;
        int k = -1;
        for (int j = 0; opts[j] && k < 0; j++) {
            size_t n = strlen(opts[j]);
            if (!strncmp(a, opts[j], n) && (a[n] == 0 || a[n] == '=')) {
                k = j;
                if (a[n] == '=') val = a + n + 1;
            }
        }
        if (k < 0) return cmd_hpo_usage_err("unknown option '%s'", a);
        if (!val) {
            if (i + 1 >= argc) return cmd_hpo_usage_err("option '%s' needs a value", a);
            val = argv[++i];
        }
        char *end = NULL;
        switch (k) {
        case 0: cfg_path = val; break;
        case 1: objective = val; break;
        case 2: work = val; break;
        case 3:
            num_trials = strtol(val, &end, 10);
            if (!*val || *end || num_trials < 1 || num_trials > 100000)
                return cmd_hpo_usage_err("--num-trials: expected a positive integer, got '%s'", val);
            break;
        case 4:
            if (strcmp(val, "ask") && strcmp(val, "yes") && strcmp(val, "no"))
                return cmd_hpo_usage_err("--hpo-resume: expected ask, yes or no, got '%s'", val);
            resume = val;
            break;
        case 5:
            seed = strtol(val, &end, 10);
            if (!*val || *end || seed < 0) return cmd_hpo_usage_err("--seed: expected a non-negative integer, got '%s'", val);
            break;
        case 6:
            budget = strtod(val, &end);
            if (!*val || *end || !(budget > 0)) return cmd_hpo_usage_err("--budget-seconds: expected a positive number, got '%s'", val);
            break;
        case 7:
            trial_timeout = strtod(val, &end);
            if (!*val || *end || !(trial_timeout > 0))
                return cmd_hpo_usage_err("--trial-timeout: expected a positive number of seconds, got '%s'", val);
            break;
        }
    }
    if (!cfg_path) return cmd_hpo_usage_err("%s", "missing --hpo-config FILE.yaml");
    if (!objective) return cmd_hpo_usage_err("%s", "missing --objective-cmd 'CMD'");
    if (!work) return cmd_hpo_usage_err("%s", "missing --work-dir DIR");

    hpo_config cfg;
    int s = hpo_config_load(&cfg, cfg_path);
    cmd_hpo_ctx c = {objective, trial_timeout};
    hpo_link link;
    hpo_dist_link(&link);
    if (dist_size() > 1 && dist_rank() != 0) { /* a worker: rank 0 reports a bad config and stops us */
        char *payload = NULL;
        int k = hpo_serve(&link, s < 0 ? NULL : &cfg, run_objective, &c, NULL, &payload);
        if (k < 0) {
            fprintf(stderr, "ote hpo: rank %d: %s\n", dist_rank(), ote_errmsg());
            dist_abort(1);
        }
        int rc = payload ? atoi(payload) : 1;
        free(payload);
        return rc;
    }
    if (s < 0) {
        fprintf(stderr, "ote hpo: %s\n", ote_errmsg());
        if (dist_size() > 1) hpo_par_stop(&link, s == OTE_EINVAL ? "2" : "1");
        return s == OTE_EINVAL ? 2 : 1;
    }
    hpo_options opt;
    memset(&opt, 0, sizeof opt);
    opt.work_dir = work;
    opt.resume = !strcmp(resume, "yes") ? HPO_RESUME_YES : !strcmp(resume, "no") ? HPO_RESUME_NO : HPO_RESUME_ASK;
    opt.interactive = isatty(0);
    opt.in = stdin;
    opt.out = stdout;
    opt.num_trials = (int)num_trials;
    opt.budget_seconds = budget;
    opt.seed = (uint64_t)seed;
    if (link.workers > 0) opt.link = &link;
    hpo_result res;
    s = hpo_run(&cfg, &opt, run_objective, &c, &res);
    int rc = 0;
    if (s == OTE_ECANCEL && strstr(ote_errmsg(), "no valid answer")) rc = 0; /* OTE exits 0 here */
    else if (s < 0) {
        fprintf(stderr, "ote hpo: %s\n", ote_errmsg());
        rc = 1;
        if (link.workers > 0) { /* workers may be inside a trial: end the job */
            fflush(stdout);
            dist_abort(1);
        }
    }
    if (link.workers > 0 && hpo_par_stop(&link, rc ? "1" : "0") < 0) {
        fprintf(stderr, "ote hpo: telling the other ranks: %s\n", ote_errmsg());
        dist_abort(1);
    }
    return rc;
}

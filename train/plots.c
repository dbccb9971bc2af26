/* plots.c - PNG figures with PLplot (see plots.h).
 *
 * Owns, per call: one PLplot stream (created with plmkstrm, ended with plend1), the temporary
 * PNG "<path>.tmp-<pid>" (io/atomic.h: reserved for PLplot to write by name, then fsync'ed and
 * renamed over path at the end, removed on failure) and the plotting
 * arrays. The only mutable statics are the two thread-local slots PLplot's handlers need, as its
 * handler signatures carry no context: the jump buffer of the figure being drawn and the last
 * message. Colours: cmap0 = white background, black ink, light grey grid, then the "tab10"
 * palette; cmap1 = viridis for scores.
 */
#include "train/plots.h"

#include <errno.h>
#include <math.h>
#include <plplot.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/rng.h"
#include "engine/ote.h"
#include "io/atomic.h"
#include "hpo/gp.h"
#include "hpo/hp.h"

enum { PC_BG = 0, PC_INK = 1, PC_GRID = 2, PC_FIRST = 3, PC_N = 10, PC_FAINT = PC_FIRST + PC_N };

static const unsigned char plots_tab10[PC_N][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
};

/* Marker glyphs (text, so the cairo driver draws them with the font, antialiased). */
#define PLOTS_DOT "#[0x25cf]"   /* black circle */
#define PLOTS_RING "#[0x25cb]"  /* white circle: a ring around a point */
#define PLOTS_CROSS "#[0x2715]" /* multiplication x: failed trials */

#if defined(__SANITIZE_ADDRESS__)
/* ASan builds: fontconfig (loaded by PLplot's cairo/pango driver) keeps its font caches for the
 * life of the process and never frees them; those are not our leaks. Only binaries that draw
 * figures link this object. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
#endif

static _Thread_local jmp_buf *plots_jmp;
static _Thread_local char plots_msg[256];

/* PLplot's exit handler: plexit() would exit the process after it; we jump back instead. */
static int plots_on_exit(PLCHAR_VECTOR msg) {
    snprintf(plots_msg, sizeof plots_msg, "%s", msg ? msg : "fatal error");
    if (plots_jmp) longjmp(*plots_jmp, 1);
    return 1;
}

/* plabort(): a recoverable error (bad call); remembered, the figure is then reported as failed. */
static void plots_on_abort(PLCHAR_VECTOR msg) {
    if (!plots_msg[0]) snprintf(plots_msg, sizeof plots_msg, "%s", msg ? msg : "error");
}

typedef struct plots_page {
    char path[4096];
    atomic_file out;         /* out.tmp: the file PLplot writes */
    PLINT prev;
    PLINT errcode;           /* plsError: plabort reports here instead of on stderr */
    char errmsg[1024];
} plots_page;

/* Before setjmp: the temporary file must be creatable (PLplot would prompt for another name). */
static int plots_prepare(plots_page *pg, const char *path) {
    if (snprintf(pg->path, sizeof pg->path, "%s", path) >= (int)sizeof pg->path)
        return ote_err(OTE_EINVAL, "plot: path too long: %s", path);
    if (atomic_reserve(&pg->out, path, 0666) < 0) return ote_err_context(OTE_EIO, "cannot write the figure");
    plgstrm(&pg->prev);
    plots_msg[0] = 0;
    return 0;
}

/* Numeric labels of linear axes: the shortest %g form ("0.008", "250"), so that small values never
 * need PLplot's separate "(x10^-3)" exponent label, which falls outside narrow margins. */
static void plots_label(PLINT axis, PLFLT value, char *label, PLINT length, PLPointer data) {
    (void)axis, (void)data;
    if (fabs(value) < 1e-12) value = 0;
    snprintf(label, (size_t)length, "%.4g", value);
}

/* After setjmp: a new stream drawing a w x h PNG with our colour maps. */
static void plots_begin(plots_page *pg, int w, int h) {
    PLINT strm;
    plsexit(plots_on_exit);
    plsabort(plots_on_abort);
    plmkstrm(&strm);
    plsError(&pg->errcode, pg->errmsg);
    plsdev("pngcairo");
    plsfnam(pg->out.tmp);
    plspage(0, 0, w, h, 0, 0);
    PLINT r[PC_FAINT + PC_N], g[PC_FAINT + PC_N], b[PC_FAINT + PC_N];
    PLFLT a[PC_FAINT + PC_N];
    r[PC_BG] = g[PC_BG] = b[PC_BG] = 255;
    r[PC_INK] = g[PC_INK] = b[PC_INK] = 0;
    r[PC_GRID] = g[PC_GRID] = b[PC_GRID] = 215;
    for (int i = 0; i < PC_FAINT; i++) a[i] = 1.0;
    for (int i = 0; i < PC_N; i++) {
        r[PC_FIRST + i] = r[PC_FAINT + i] = plots_tab10[i][0];
        g[PC_FIRST + i] = g[PC_FAINT + i] = plots_tab10[i][1];
        b[PC_FIRST + i] = b[PC_FAINT + i] = plots_tab10[i][2];
        a[PC_FAINT + i] = 0.28;
    }
    plscmap0a(r, g, b, a, PC_FAINT + PC_N);
    /* viridis, 5 stops */
    PLFLT pos[5] = {0, 0.25, 0.5, 0.75, 1};
    PLFLT vr[5] = {0.267, 0.231, 0.128, 0.369, 0.993}, vg[5] = {0.005, 0.322, 0.567, 0.789, 0.906},
          vb[5] = {0.329, 0.546, 0.551, 0.383, 0.144};
    plscmap1n(256);
    plscmap1l(1, 5, pos, vr, vg, vb, NULL);
    plinit();
    plfontld(1);
    plslabelfunc(plots_label, NULL);
    pladv(0);
}

/* The end of a figure: writes the PNG, restores the caller's stream, renames into place. */
static int plots_finish(plots_page *pg) {
    plend1();
    plsstrm(pg->prev);
    plsexit(NULL);
    plsabort(NULL);
    plots_jmp = NULL;
    if (plots_msg[0]) {
        atomic_abort(&pg->out);
        return ote_err(OTE_EIO, "%s: PLplot: %s", pg->path, plots_msg);
    }
    if (atomic_commit(&pg->out) < 0) return ote_err_context(OTE_EIO, "cannot write the figure");
    return 0;
}

/* After a jump out of PLplot's exit handler: the stream is abandoned (PLplot may be inside any
 * call), the caller's stream restored and the temporary file removed. */
static int plots_recover(plots_page *pg) {
    plsstrm(pg->prev);
    plsexit(NULL);
    plsabort(NULL);
    plots_jmp = NULL;
    atomic_abort(&pg->out);
    return ote_err(OTE_EIO, "%s: PLplot: %s", pg->path, plots_msg[0] ? plots_msg : "fatal error");
}

/* Draws one figure: draw(ctx) runs between plinit and plend1 on a stream of its own. The jump
 * target lives here, in a frame that modifies nothing after setjmp, so no local is clobbered;
 * draw functions keep their data in ctx (allocated and freed by the caller). */
static int plots_run(const char *path, int w, int h, void (*draw)(void *), void *ctx) {
    plots_page pg;
    CHECK(plots_prepare(&pg, path));
    jmp_buf jb;
    if (setjmp(jb)) return plots_recover(&pg);
    plots_jmp = &jb;
    plots_begin(&pg, w, h);
    draw(ctx);
    return plots_finish(&pg);
}

/* Character height: PLplot's default size times s, scaled down to suit the figure sizes used here
 * (cairo's default is large for a 1000-pixel page). */
static void plots_ch(double s) { plschr(0, 0.72 * s); }

/* '#' is PLplot's escape character: class and parameter names are shown literally. */
static void plots_text(char *dst, size_t n, const char *src) {
    size_t k = 0;
    for (; src && *src && k + 3 < n; src++) {
        if (*src == '#') dst[k++] = '#';
        dst[k++] = *src;
    }
    dst[k] = 0;
}

/* A framed panel: light grid, black box with numeric labels, axis labels and title. Linear axes
 * get plots_label's numbers ('o'). */
static void plots_frame(double x0, double x1, double y0, double y1, const char *xopt, const char *yopt,
                        const char *xlabel, const char *ylabel, const char *title) {
    plots_ch(1.0);
    plwind(x0, x1, y0, y1);
    char gx[16], gy[16];
    snprintf(gx, sizeof gx, "g%s", strchr(xopt, 'l') ? "l" : "");
    snprintf(gy, sizeof gy, "g%s", strchr(yopt, 'l') ? "l" : "");
    plcol0(PC_GRID);
    plwidth(1);
    pllsty(1);
    plbox(gx, 0, 0, gy, 0, 0);
    plcol0(PC_INK);
    plwidth(1.2);
    char xo[24], yo[24];
    snprintf(xo, sizeof xo, "%s%s", xopt, strchr(xopt, 'l') ? "" : "o");
    snprintf(yo, sizeof yo, "%s%s", yopt, strchr(yopt, 'l') ? "" : "o");
    plbox(xo, 0, 0, yo, 0, 0);
    plots_ch(1.1);
    plmtex("b", 3.0, 0.5, 0.5, xlabel);
    plmtex("l", 5.0, 0.5, 0.5, ylabel);
    plots_ch(1.15);
    plmtex("t", 1.2, 0.5, 0.5, title);
    plots_ch(1.0);
}

/* A legend of n entries; kind[i] 0 = line, 1 = symbol, 2 = both, 3 = dashed line; glyph[i] (NULL: dots). */
static void plots_legend(int n, const char *const *text, const int *color, const int *kind, const double *width,
                         const char *const *glyph, PLINT position) {
    PLINT opt[16], tc[16], lc[16], ls[16], sc[16], sn[16];
    PLFLT lw[16], ss[16];
    const char *sym[16];
    if (n > 16) n = 16;
    for (int i = 0; i < n; i++) {
        opt[i] = kind[i] == 1 ? PL_LEGEND_SYMBOL : kind[i] == 2 ? PL_LEGEND_LINE | PL_LEGEND_SYMBOL : PL_LEGEND_LINE;
        tc[i] = PC_INK;
        lc[i] = sc[i] = color[i];
        ls[i] = kind[i] == 3 ? 2 : 1; /* 3: dashed line */
        lw[i] = width ? width[i] : 2.5;
        ss[i] = 0.8;
        sn[i] = 1;
        sym[i] = glyph && glyph[i] ? glyph[i] : PLOTS_DOT;
    }
    PLFLT w, h;
    plots_ch(0.95);
    if (!(position & PL_POSITION_OUTSIDE)) position |= PL_POSITION_INSIDE;
    int out = (position & PL_POSITION_OUTSIDE) != 0;
    pllegend(&w, &h, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX, position, out ? 0.02 : 0.015, out ? 0 : 0.02, 0.05,
             PC_BG, PC_GRID, 1, 0, 0, n, opt, 0.8, 0.68, 2.0, 0.0, tc, text, NULL, NULL, NULL, NULL, lc, ls, lw, sc, ss,
             sn, sym);
    plots_ch(1.0);
}

static void plots_line(int n, const double *x, const double *y, int color, double width, int style) {
    if (n < 1) return;
    plcol0(color);
    plwidth(width);
    pllsty(style);
    if (n == 1) {
        plstring(1, x, y, PLOTS_DOT);
    } else {
        plline(n, x, y);
    }
    pllsty(1);
}

/* Range of finite values, padded; a degenerate range gets a width. */
static void plots_range(const double *v, long n, double *lo, double *hi, double pad) {
    double a = HUGE_VAL, b = -HUGE_VAL;
    for (long i = 0; i < n; i++)
        if (isfinite(v[i])) a = fmin(a, v[i]), b = fmax(b, v[i]);
    if (!(a <= b)) a = 0, b = 1;
    if (b - a < 1e-12 * fmax(1, fabs(a))) a -= 0.05 * fmax(1, fabs(a)), b += 0.05 * fmax(1, fabs(b));
    double d = (b - a) * pad;
    *lo = a - d;
    *hi = b + d;
}

/* ---- curves.png ---- */

/* Centered moving average of width 2h+1 (shorter at the ends). */
static void plots_smooth(const double *y, long n, long h, double *out) {
    double s = 0;
    long lo = 0, hi = -1;
    for (long i = 0; i < n; i++) {
        long a = i - h < 0 ? 0 : i - h, b = i + h >= n ? n - 1 : i + h;
        while (hi < b) s += y[++hi];
        while (lo < a) s -= y[lo++];
        out[i] = s / (double)(b - a + 1);
    }
}

typedef struct plots_training_curves_ctx {
    const metrics_iter *it;
    long n;
    const metrics_epoch *ep;
    int n_ep;
    size_t ce;
    double *x, *y, *sm, *lr, *ex, *ey;
} plots_training_curves_ctx;

static void plots_draw_training_curves(void *vctx) {
    const plots_training_curves_ctx *ctx = vctx;
    const metrics_iter *it = ctx->it;
    const metrics_epoch *ep = ctx->ep;
    long n = ctx->n;
    int n_ep = ctx->n_ep;
    size_t ce = ctx->ce;
    double *x = ctx->x, *y = ctx->y, *sm = ctx->sm, *lr = ctx->lr, *ex = ctx->ex, *ey = ctx->ey;

    /* panel 1: loss parts */
    double lo = 0, hi = 1;
    for (long i = 0; i < n; i++) x[i] = (double)(i + 1), y[i] = it[i].total;
    if (n) plots_range(y, n, &lo, &hi, 0.05);
    if (lo > 0) lo = 0;
    double xmax = n > 1 ? (double)n : 2;
    plvpor(0.085, 0.765, 0.59, 0.95);
    char title[160];
    if (n / 80 > 0)
        snprintf(title, sizeof title, "Training losses over %ld iterations (moving average of %ld)", n, 2 * (n / 80) + 1);
    else
        snprintf(title, sizeof title, "Training losses over %ld iterations", n);
    plots_frame(1, xmax, lo, hi, "bcnst", "bcnstv", "iteration", "loss", title);
    for (int e = 0; e + 1 < n_ep; e++) { /* epoch boundaries */
        double bx[2] = {(double)ep[e].iters, (double)ep[e].iters}, by[2] = {lo, hi};
        plots_line(2, bx, by, PC_FIRST + 7, 1.0, 2);
    }
    long h = n / 80;
    const char *names[4] = {"loss (total)", "loss_cls", "loss_bbox", "loss_centerness"};
    const int colors[4] = {PC_INK, PC_FIRST + 0, PC_FIRST + 1, PC_FIRST + 2};
    for (int part = 0; part < 4; part++) {
        for (long i = 0; i < n; i++)
            y[i] = part == 0 ? it[i].total : part == 1 ? it[i].cls : part == 2 ? it[i].box : it[i].ctr;
        if (h > 0) {
            /* faint raw line in the part's colour (total: grey) */
            plots_line((int)n, x, y, part == 0 ? PC_FAINT + 7 : PC_FAINT + part - 1, 1.0, 1);
            plots_smooth(y, n, h, sm);
            plots_line((int)n, x, sm, colors[part], 2.6, 1);
        } else {
            plots_line((int)n, x, y, colors[part], 2.2, 1);
        }
    }
    const char *lt[6] = {names[0], names[1], names[2], names[3]};
    int lc[6] = {colors[0], colors[1], colors[2], colors[3]}, lk[6] = {0, 0, 0, 0}, nlg = 4;
    double lw[6] = {2.6, 2.6, 2.6, 2.6};
    if (h > 0) lt[nlg] = "each iteration", lc[nlg] = PC_FAINT + 7, lk[nlg] = 0, lw[nlg++] = 1.0;
    if (n_ep > 1) lt[nlg] = "end of an epoch", lc[nlg] = PC_FIRST + 7, lk[nlg] = 3, lw[nlg++] = 1.0;
    plots_legend(nlg, lt, lc, lk, lw, NULL, PL_POSITION_RIGHT | PL_POSITION_OUTSIDE);

    /* panel 2: learning rate (log10 when it spans more than a factor 20, e.g. plateau drops) */
    double llo = 0, lhi = 1, lmin = HUGE_VAL, lmax = 0;
    for (long i = 0; i < n; i++)
        if (it[i].lr > 0) lmin = fmin(lmin, it[i].lr), lmax = fmax(lmax, it[i].lr);
    int lr_log = lmax > 0 && lmax / lmin > 20;
    for (long i = 0; i < n; i++) lr[i] = lr_log ? (it[i].lr > 0 ? log10(it[i].lr) : (double)NAN) : (double)it[i].lr;
    if (n) plots_range(lr, n, &llo, &lhi, 0.08);
    if (!lr_log && llo < 0) llo = 0;
    plvpor(0.085, 0.765, 0.36, 0.49);
    plots_frame(1, xmax, llo, lhi, "bcnst", lr_log ? "bcnstvl" : "bcnstv", "iteration", "lr",
                "Learning rate (warm-up, ReduceLROnPlateau)");
    plots_line((int)n, x, lr, PC_FIRST + 3, 2.2, 1);

    /* panel 3: validation metrics per epoch */
    double ymax = 0;
    for (int e = 0; e < n_ep; e++) {
        ex[e] = ep[e].epoch;
        ey[e] = ep[e].voc_map50;
        ey[ce + (size_t)e] = ep[e].coco_ap > 0 ? ep[e].coco_ap : 0;
        ey[2 * ce + (size_t)e] = ep[e].coco_ap50 > 0 ? ep[e].coco_ap50 : 0;
        for (int k = 0; k < 3; k++) ymax = fmax(ymax, ey[(size_t)k * ce + (size_t)e]);
    }
    ymax = fmin(1.0, fmax(0.1, ymax * 1.15 + 0.02)); /* scores in [0, 1]; at least 0-0.1 */
    int last = n_ep > 0 ? ep[n_ep - 1].epoch : 1;
    plvpor(0.085, 0.765, 0.08, 0.25);
    plots_frame(0.5, last + 0.5, 0, ymax, "bcnst", "bcnstv", "epoch", "score", "Validation");
    const char *vn[4] = {"VOC mAP@0.5", "COCO AP@[.5:.95]", "COCO AP@.5", "best epoch"};
    const int vc[4] = {PC_FIRST + 0, PC_FIRST + 1, PC_FIRST + 2, PC_FIRST + 3};
    for (int k = 0; k < 3; k++) {
        plots_line(n_ep, ex, ey + (size_t)k * ce, vc[k], 2.2, 1);
        plcol0(vc[k]);
        plots_ch(0.9);
        plstring(n_ep, ex, ey + (size_t)k * ce, PLOTS_DOT);
        plots_ch(1.0);
    }
    int best = -1;
    for (int e = 0; e < n_ep; e++)
        if (ep[e].best) best = e;
    if (best >= 0) {
        double bx = ex[best], by = ey[best];
        plcol0(PC_FIRST + 3);
        plots_ch(2.0);
        plstring(1, &bx, &by, PLOTS_RING); /* open circle around the best epoch's mAP */
        plots_ch(1.0);
    }
    const int vk[4] = {2, 2, 2, 1};
    const char *vg[4] = {NULL, NULL, NULL, PLOTS_RING};
    plots_legend(best >= 0 ? 4 : 3, vn, vc, vk, NULL, vg, PL_POSITION_RIGHT | PL_POSITION_OUTSIDE);
}

int plots_training_curves(const char *path, const metrics_iter *it, long n_it, const metrics_epoch *ep, int n_ep) {
    long n = n_it > 0 ? n_it : 0;
    size_t cnt = (size_t)(n > 0 ? n : 1), ce = (size_t)(n_ep > 0 ? n_ep : 1);
    double *x = malloc(cnt * sizeof *x), *y = malloc(cnt * sizeof *y), *sm = malloc(cnt * sizeof *sm);
    double *lr = malloc(cnt * sizeof *lr), *ex = malloc(ce * sizeof *ex), *ey = malloc(3 * ce * sizeof *ey);
    if (!x || !y || !sm || !lr || !ex || !ey) {
        free(x), free(y), free(sm), free(lr), free(ex), free(ey);
        return ote_err(OTE_ENOMEM, "%s: out of memory", path);
    }
    plots_training_curves_ctx ctx = {it, n, ep, n_ep, ce, x, y, sm, lr, ex, ey};
    int s = plots_run(path, PLOTS_CURVES_W, PLOTS_CURVES_H, plots_draw_training_curves, &ctx);
    free(x), free(y), free(sm), free(lr), free(ex), free(ey);
    return s;
}

/* ---- pr_curves.png ---- */

typedef struct plots_pr_curves_ctx {
    const eval_pr_curves *c;
    const eval_voc_result *voc;
    const char *const *names;
    int epoch;
    double *x, *y, *env;
    char (*lab)[96];
} plots_pr_curves_ctx;

static void plots_draw_pr_curves(void *vctx) {
    const plots_pr_curves_ctx *ctx = vctx;
    const eval_pr_curves *c = ctx->c;
    const eval_voc_result *voc = ctx->voc;
    const char *const *names = ctx->names;
    int epoch = ctx->epoch;
    double *x = ctx->x, *y = ctx->y, *env = ctx->env;
    char(*lab)[96] = ctx->lab;
    plvpor(0.085, 0.62, 0.1, 0.9);
    char title[160];
    snprintf(title, sizeof title, "Precision-recall of the best model (epoch %d), VOC mAP@0.5 %.4f", epoch,
             (double)voc->map);
    plots_frame(0, 1, 0, 1.02, "bcnst", "bcnstv", "recall", "precision", title);
    const char *lt[16];
    int lc[16], lk[16], nl = 0, shown = 0;
    for (int k = 0; k < c->n_classes && k < voc->n_classes; k++) {
        if (voc->cls[k].num_gts == 0) continue;
        const eval_pr_curve *pc = &c->cls[k];
        int color = PC_FIRST + shown % PC_N;
        shown++;
        /* the envelope eval_voc integrates: max precision at any recall >= r */
        int n = pc->n;
        env[n] = 0;
        for (int i = n - 1; i >= 0; i--) env[i] = fmax(pc->precision[i], env[i + 1]);
        int q = 0;
        double r = 0;
        for (int i = 0; i < n; i++) {
            if (pc->recall[i] == r && q) continue; /* same recall: the envelope is flat there */
            x[q] = r, y[q++] = env[i];
            x[q] = pc->recall[i], y[q++] = env[i];
            r = pc->recall[i];
        }
        x[q] = r, y[q++] = 0; /* nothing beyond the last recall */
        if (n > 0) plots_line(q, x, y, color, 2.4, 1);
        if (nl < 15) {
            char nm[64];
            plots_text(nm, sizeof nm, names && names[k] ? names[k] : "?");
            snprintf(lab[nl], sizeof lab[nl], "%s: AP %.3f (%d gts)", nm, (double)voc->cls[k].ap, voc->cls[k].num_gts);
            lt[nl] = lab[nl];
            lc[nl] = color;
            lk[nl] = 0;
            nl++;
        }
    }
    if (shown > nl) {
        snprintf(lab[nl], sizeof lab[nl], "(+%d more classes)", shown - nl);
        lt[nl] = lab[nl];
        lc[nl] = PC_BG;
        lk[nl] = 0;
        nl++;
    }
    if (nl) plots_legend(nl, lt, lc, lk, NULL, NULL, PL_POSITION_RIGHT | PL_POSITION_OUTSIDE);
    else {
        plcol0(PC_INK);
        plptex(0.5, 0.5, 1, 0, 0.5, "no class with ground-truth boxes");
    }
}

int plots_pr_curves(const char *path, const eval_pr_curves *c, const eval_voc_result *voc, const char *const *names,
                    int epoch) {
    int maxn = 0;
    for (int k = 0; k < c->n_classes; k++)
        if (c->cls[k].n > maxn) maxn = c->cls[k].n;
    size_t m = 2 * (size_t)maxn + 4;
    double *x = malloc(m * sizeof *x), *y = malloc(m * sizeof *y), *env = malloc(((size_t)maxn + 2) * sizeof *env);
    char(*lab)[96] = calloc(16, sizeof *lab);
    if (!x || !y || !env || !lab) {
        free(x), free(y), free(env), free(lab);
        return ote_err(OTE_ENOMEM, "%s: out of memory", path);
    }
    plots_pr_curves_ctx ctx = {c, voc, names, epoch, x, y, env, lab};
    int s = plots_run(path, PLOTS_PR_W, PLOTS_PR_H, plots_draw_pr_curves, &ctx);
    free(x), free(y), free(env), free(lab);
    return s;
}

/* ---- hpo/history.png ---- */

static double plots_good(const hpo_state *st, double v) { return st->cfg.mode_max ? v : -v; }

typedef struct plots_hpo_history_ctx {
    const hpo_state *st;
    double *sx, *sy, *bx, *by, *fx, *fy;
} plots_hpo_history_ctx;

static void plots_draw_hpo_history(void *vctx) {
    const plots_hpo_history_ctx *ctx = vctx;
    const hpo_state *st = ctx->st;
    double *sx = ctx->sx, *sy = ctx->sy, *bx = ctx->bx, *by = ctx->by, *fx = ctx->fx, *fy = ctx->fy;
    int ns = 0, nb = 0, nf = 0, best = -1;
    double cur = 0;
    for (int i = 0; i < st->n; i++) {
        const hpo_trial_rec *t = &st->t[i];
        if (t->has_score && isfinite(t->score)) {
            sx[ns] = t->id, sy[ns++] = t->score;
            if (best < 0 || plots_good(st, t->score) > plots_good(st, cur)) cur = t->score, best = t->id;
        } else if (t->status == HPO_FAILED) {
            fx[nf++] = t->id;
        }
        if (best >= 0) { /* the best-so-far step line */
            if (nb) bx[nb] = t->id, by[nb] = by[nb - 1], nb++;
            bx[nb] = t->id, by[nb++] = cur;
        }
    }
    if (nb) bx[nb] = (st->n > 5 ? st->n : 5) - 0.5, by[nb] = by[nb - 1], nb++;
    double lo = 0, hi = 1;
    if (ns) plots_range(sy, ns, &lo, &hi, 0.12);
    double smin = HUGE_VAL;
    for (int i = 0; i < ns; i++) smin = fmin(smin, sy[i]);
    if (ns && smin >= 0 && lo < 0) lo = -0.05 * hi; /* non-negative scores: no negative axis */
    for (int i = 0; i < nf; i++) fy[i] = lo + 0.04 * (hi - lo);
    plvpor(0.09, 0.97, 0.12, 0.9);
    char title[200], ylab[96], metric[48];
    plots_text(metric, sizeof metric, st->cfg.metric[0] ? st->cfg.metric : "score");
    if (best >= 0)
        snprintf(title, sizeof title, "HPO history: %d trials, best trial %d (%s %.4f)", st->n, best, metric, cur);
    else
        snprintf(title, sizeof title, "HPO history: %d trials, none scored yet", st->n);
    snprintf(ylab, sizeof ylab, "%s (best epoch of the trial)", metric);
    plots_frame(-0.5, (st->n > 5 ? st->n : 5) - 0.5, lo, hi, "bcnst", "bcnstv", "trial", ylab, title);
    plots_line(nb, bx, by, PC_FIRST + 1, 2.5, 1);
    plcol0(PC_FIRST + 0);
    plots_ch(1.3);
    plstring(ns, sx, sy, PLOTS_DOT);
    plcol0(PC_FIRST + 3);
    plstring(nf, fx, fy, PLOTS_CROSS); /* x */
    if (best >= 0) {
        double px = best, py = cur;
        plcol0(PC_FIRST + 3);
        plots_ch(2.2);
        plstring(1, &px, &py, PLOTS_RING);
    }
    plots_ch(1.0);
    const char *lt[4] = {"trial score", "best so far"}, *lg[4] = {PLOTS_DOT, NULL};
    int lc[4] = {PC_FIRST + 0, PC_FIRST + 1}, lk[4] = {1, 0}, nl = 2;
    if (best >= 0) lt[nl] = "best trial", lg[nl] = PLOTS_RING, lc[nl] = PC_FIRST + 3, lk[nl++] = 1;
    if (nf) lt[nl] = "failed trial", lg[nl] = PLOTS_CROSS, lc[nl] = PC_FIRST + 3, lk[nl++] = 1;
    plots_legend(nl, lt, lc, lk, NULL, lg, PL_POSITION_BOTTOM | PL_POSITION_RIGHT);
}

int plots_hpo_history(const char *path, const hpo_state *st) {
    size_t n = (size_t)(st->n > 0 ? st->n : 1);
    double *sx = malloc(n * sizeof *sx), *sy = malloc(n * sizeof *sy), *bx = malloc(2 * n * sizeof *bx),
           *by = malloc(2 * n * sizeof *by), *fx = malloc(n * sizeof *fx), *fy = malloc(n * sizeof *fy);
    if (!sx || !sy || !bx || !by || !fx || !fy) {
        free(sx), free(sy), free(bx), free(by), free(fx), free(fy);
        return ote_err(OTE_ENOMEM, "%s: out of memory", path);
    }
    plots_hpo_history_ctx ctx = {st, sx, sy, bx, by, fx, fy};
    int s = plots_run(path, PLOTS_HISTORY_W, PLOTS_HISTORY_H, plots_draw_hpo_history, &ctx);
    free(sx), free(sy), free(bx), free(by), free(fx), free(fy);
    return s;
}

/* ---- hpo/space.png ---- */

/* A parameter's plot coordinate for a value: log10 for log types, else the value; choices by index. */
static int plots_is_log(const hp_param *p) { return p->type == HP_LOGUNIFORM || p->type == HP_QLOGUNIFORM; }
/* A log axis (labelled in decades) for continuous log parameters; integer ones (a batch size
 * 2..16 has no decade to label) get a linear axis in their own units. */
static int plots_log_axis(const hp_param *p) { return plots_is_log(p) && !p->is_int; }

static double plots_coord(const hp_param *p, double v) {
    if (p->type == HP_CHOICE) return hp_encode(p, v);
    return plots_log_axis(p) ? log10(v) : v;
}

/* The encoded [0,1] position (hp_encode without snapping) of an axis coordinate. */
static double plots_unit(const hp_param *p, double c) {
    if (p->type == HP_CHOICE) return c;
    if (p->hi == p->lo) return 0.5;
    double v = plots_log_axis(p) ? pow(10, c) : c;
    if (plots_is_log(p)) return v > 0 ? (log(v) - log(p->lo)) / (log(p->hi) - log(p->lo)) : 0;
    return (v - p->lo) / (p->hi - p->lo);
}

static void plots_axis_span(const hp_param *p, double *a, double *b) {
    if (p->type == HP_CHOICE) {
        *a = 0, *b = 1;
    } else {
        *a = plots_coord(p, p->lo);
        *b = plots_coord(p, p->hi);
    }
    if (*b <= *a) *a -= 0.5, *b += 0.5;
    double pad = 0.03 * (*b - *a);
    *a -= pad, *b += pad;
}

static const char *plots_axis_opt(const hp_param *p, int y) {
    return plots_log_axis(p) ? (y ? "bcnstlv" : "bcnstl") : (y ? "bcnstv" : "bcnst");
}

/* A score's colour-map position. */
static double plots_frac(double v, double lo, double hi) {
    double f = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

enum { PLOTS_GRID = 60 };

typedef struct plots_hpo_space_ctx {
    const hpo_state *st;
    const hp_param *P, *Q;   /* x and y parameters (Q NULL: one parameter, score on y) */
    int d, m, best, ax, ay, ng, have_gp;
    double x0, x1, y0, y1, slo, shi;
    const double *y, *px, *py, *var;
    double *mu, **rows, *gx, *band_x, *band_y;
    const int *id;
} plots_hpo_space_ctx;

/* The figure's title for the shown metric. */
static void plots_space_title(const plots_hpo_space_ctx *ctx, const char *metric, char *title, size_t n) {
    const int d = ctx->d, m = ctx->m, have_gp = ctx->have_gp;
    if (d > 2) {
        char rest[64];
        snprintf(rest, sizeof rest, "%d other parameters at the best trial's values", d - 2);
        snprintf(title, n, "HPO search space: %s by trial%s; %s", metric, have_gp ? ", GP mean behind" : "", rest);
    } else {
        snprintf(title, n, "HPO search space: %s of %d scored trials%s", metric, m,
                 have_gp ? (ctx->Q ? " over the GP's mean" : ", GP mean #[0x00b1]2 sd")
                         : " (the GP mean needs 3 scored trials)");
    }
}

/* The GP mean as shades behind the 2-D map; widens the colour scale [*slo, *shi] to the mean's range. */
static void plots_space_shades(const plots_hpo_space_ctx *ctx, double *slo, double *shi) {
    const double *mu = ctx->mu;
    double **rows = ctx->rows;
    const size_t G = PLOTS_GRID;
    double mlo = mu[0], mhi = mu[0];
    for (int k = 1; k < ctx->ng; k++) mlo = fmin(mlo, mu[k]), mhi = fmax(mhi, mu[k]);
    *slo = fmin(*slo, mlo), *shi = fmax(*shi, mhi);
    if (*shi - *slo < 1e-12) *shi = *slo + 1e-6;
    for (size_t i = 0; i < G; i++) rows[i] = ctx->mu + i * G;
    PLFLT lev[21];
    for (int k = 0; k <= 20; k++) lev[k] = *slo + (*shi - *slo) * k / 20.0;
    plshades((PLFLT_MATRIX)rows, (PLINT)G, (PLINT)G, NULL, ctx->x0, ctx->x1, ctx->y0, ctx->y1, lev, 21, 0, 0, 0,
             plfill, 1, NULL, NULL);
}

/* The 2-D map's trials in their score's colour with their ids, the best one ringed, the failed
 * ones crossed; returns the number of failed trials. */
static int plots_space_trials(const plots_hpo_space_ctx *ctx, double slo, double shi) {
    const hpo_state *st = ctx->st;
    const double *px = ctx->px, *py = ctx->py;
    const double x0 = ctx->x0, x1 = ctx->x1, y0 = ctx->y0, y1 = ctx->y1;
    for (int i = 0; i < ctx->m; i++) { /* black rim, then the score's colour */
        plcol0(PC_INK);
        plots_ch(1.9);
        plstring(1, px + i, py + i, PLOTS_DOT);
        plcol1(plots_frac(ctx->y[i], slo, shi));
        plots_ch(1.45);
        plstring(1, px + i, py + i, PLOTS_DOT);
        char lab[16];
        snprintf(lab, sizeof lab, "%d", ctx->id[i]);
        plcol0(PC_INK);
        plots_ch(0.8);
        plptex(px[i] + 0.018 * (x1 - x0), py[i] + 0.02 * (y1 - y0), 1, 0, 0, lab);
    }
    if (ctx->best >= 0) {
        plcol0(PC_FIRST + 3);
        plots_ch(2.8);
        plstring(1, px + ctx->best, py + ctx->best, PLOTS_RING);
    }
    plots_ch(1.0);
    int nf = 0;
    for (int i = 0; i < st->n; i++) {
        const hpo_trial_rec *t = &st->t[i];
        if (t->status != HPO_FAILED) continue;
        double fx = plots_coord(ctx->P, t->values[ctx->ax]), fy = plots_coord(ctx->Q, t->values[ctx->ay]);
        plcol0(PC_FIRST + 3);
        plots_ch(1.4);
        plstring(1, &fx, &fy, PLOTS_CROSS);
        nf++;
    }
    plots_ch(1.0);
    return nf;
}

/* The colour bar of the scale [slo, shi] right of the 2-D map. */
static void plots_space_colorbar(const char *metric, double slo, double shi) {
    /* shades (64 levels) rather than PL_COLORBAR_GRADIENT: PLplot 5.15's cairo driver leaks the
     * cairo pattern of every gradient */
    enum { NV = 64 };
    PLINT lopt[1] = {PL_COLORBAR_LABEL_RIGHT}, subt[1] = {0}, nv[1] = {NV};
    const char *labels[1] = {metric};
    const char *axopt[1] = {"bcvtmo"}; /* o: plots_label's numbers, no exponent label */
    PLFLT ticks[1] = {0}, vals[NV];
    for (int k = 0; k < NV; k++) vals[k] = slo + (shi - slo) * k / (NV - 1.0);
    const PLFLT *vrow[1] = {vals};
    PLFLT cw, chh;
    plcol0(PC_INK);
    plots_ch(0.95);
    plcolorbar(&cw, &chh, PL_COLORBAR_SHADE | PL_COLORBAR_BOUNDING_BOX, PL_POSITION_RIGHT | PL_POSITION_OUTSIDE,
               0.03, 0, 0.04, 0.8, PC_BG, PC_INK, 1, 0, 0, 0, 0, 1, lopt, labels, 1, axopt, ticks, subt, nv,
               (PLFLT_MATRIX)vrow);
    plots_ch(1.0);
}

/* The 2-D map's legend, in the corner with the fewest trials (nf failed trials: a third entry). */
static void plots_space_legend(const plots_hpo_space_ctx *ctx, int nf) {
    const char *lt[3] = {"trial (colour: score, label: id)", "best trial", "failed trial"};
    const char *lg[3] = {PLOTS_DOT, PLOTS_RING, PLOTS_CROSS};
    int lc[3] = {PC_FIRST + 7, PC_FIRST + 3, PC_FIRST + 3}, lk[3] = {1, 1, 1};
    int cnt[4] = {0, 0, 0, 0};
    for (int i = 0; i < ctx->m; i++) {
        double fx = (ctx->px[i] - ctx->x0) / (ctx->x1 - ctx->x0), fy = (ctx->py[i] - ctx->y0) / (ctx->y1 - ctx->y0);
        cnt[0] += fx < 0.5 && fy > 0.75, cnt[1] += fx >= 0.5 && fy > 0.75;
        cnt[2] += fx < 0.5 && fy < 0.25, cnt[3] += fx >= 0.5 && fy < 0.25;
    }
    int cb = 0;
    for (int k = 1; k < 4; k++)
        if (cnt[k] < cnt[cb]) cb = k;
    const PLINT corner[4] = {PL_POSITION_TOP | PL_POSITION_LEFT, PL_POSITION_TOP | PL_POSITION_RIGHT,
                             PL_POSITION_BOTTOM | PL_POSITION_LEFT, PL_POSITION_BOTTOM | PL_POSITION_RIGHT};
    plots_legend(nf ? 3 : 2, lt, lc, lk, NULL, lg, corner[cb]);
}

/* Two parameters: the trials on the (P, Q) plane over the GP mean's shades, with a colour bar. */
static void plots_space_map(const plots_hpo_space_ctx *ctx, const char *xl, const char *metric, const char *title) {
    char yl[96];
    double slo = ctx->slo, shi = ctx->shi;
    plots_text(yl, sizeof yl, ctx->Q->name);
    plvpor(0.12, 0.84, 0.1, 0.9);
    plwind(ctx->x0, ctx->x1, ctx->y0, ctx->y1);
    if (ctx->have_gp) plots_space_shades(ctx, &slo, &shi);
    plots_frame(ctx->x0, ctx->x1, ctx->y0, ctx->y1, plots_axis_opt(ctx->P, 0), plots_axis_opt(ctx->Q, 1), xl, yl,
                title);
    int nf = plots_space_trials(ctx, slo, shi);
    /* the colour bar */
    plots_space_colorbar(metric, slo, shi);
    plots_space_legend(ctx, nf);
}

/* One parameter: the trials' scores over it, with the GP mean and its +-2 sd band. */
static void plots_space_curve(const plots_hpo_space_ctx *ctx, const char *xl, const char *metric,
                              const char *title) {
    const int ng = ctx->ng;
    const double *mu = ctx->mu, *var = ctx->var, *gx = ctx->gx;
    double *band_x = ctx->band_x, *band_y = ctx->band_y;
    double lo = ctx->slo, hi = ctx->shi;
    for (int k = 0; k < ng; k++) { /* the band's polygon: upper edge left to right, lower back */
        double sd = sqrt(var[k]);
        band_x[k] = band_x[2 * ng - 1 - k] = gx[k];
        band_y[k] = mu[k] + 2 * sd;
        band_y[2 * ng - 1 - k] = mu[k] - 2 * sd;
        lo = fmin(lo, mu[k] - 2 * sd), hi = fmax(hi, mu[k] + 2 * sd);
    }
    double pad = 0.08 * (hi - lo > 0 ? hi - lo : 1);
    plvpor(0.1, 0.96, 0.1, 0.9);
    plots_frame(ctx->x0, ctx->x1, lo - pad, hi + pad, plots_axis_opt(ctx->P, 0), "bcnstv", xl, metric, title);
    if (ng) {
        plcol0(PC_FAINT + 0);
        plfill(2 * ng, band_x, band_y);
        plots_line(ng, gx, mu, PC_FIRST + 0, 2.4, 1);
    }
    plcol0(PC_INK);
    plots_ch(1.4);
    plstring(ctx->m, ctx->px, ctx->py, PLOTS_DOT);
    plots_ch(1.0);
    const char *lt[3] = {"trial", "GP mean", "GP mean #[0x00b1]2 sd"};
    int lc[3] = {PC_INK, PC_FIRST + 0, PC_FAINT + 0}, lk[3] = {1, 0, 0};
    double lw[3] = {1, 2.4, 10};
    plots_legend(ng ? 3 : 1, lt, lc, lk, lw, NULL, PL_POSITION_BOTTOM | PL_POSITION_RIGHT);
}

static void plots_draw_hpo_space(void *vctx) {
    const plots_hpo_space_ctx *ctx = vctx;
    const hpo_state *st = ctx->st;
    char xl[96], title[200], metric[48];
    plots_text(xl, sizeof xl, ctx->P->name);
    plots_text(metric, sizeof metric, st->cfg.metric[0] ? st->cfg.metric : "score");
    plots_space_title(ctx, metric, title, sizeof title);
    if (ctx->Q) plots_space_map(ctx, xl, metric, title);
    else plots_space_curve(ctx, xl, metric, title);
}

int plots_hpo_space(const char *path, const hpo_state *st) {
    const hp_space *sp = &st->cfg.space;
    int d = sp->n;
    if (d < 1) return ote_err(OTE_EINVAL, "%s: empty search space", path);
    size_t n = (size_t)(st->n > 0 ? st->n : 1), G = PLOTS_GRID;
    double *u = malloc(n * (size_t)d * sizeof *u), *y = malloc(n * sizeof *y), *px = malloc(n * sizeof *px),
           *py = malloc(n * sizeof *py), *xs = malloc(G * G * (size_t)d * sizeof *xs), *mu = malloc(G * G * sizeof *mu),
           *var = malloc(G * G * sizeof *var), **rows = malloc(G * sizeof *rows), *gx = malloc(G * sizeof *gx),
           *band_x = malloc(2 * G * sizeof *band_x), *band_y = malloc(2 * G * sizeof *band_y);
    int *id = malloc(n * sizeof *id);
    gp g;
    int have_gp_mem = gp_init(&g, d) == 0;
    if (!u || !y || !px || !py || !xs || !mu || !var || !rows || !gx || !band_x || !band_y || !id || !have_gp_mem) {
        free(u), free(y), free(px), free(py), free(xs), free(mu), free(var), free(rows), free(gx), free(band_x);
        free(band_y), free(id);
        if (have_gp_mem) gp_free(&g);
        return ote_err(OTE_ENOMEM, "%s: out of memory", path);
    }
    /* the scored trials, encoded as the GP sees them */
    int m = 0, best = -1;
    for (int i = 0; i < st->n; i++) {
        const hpo_trial_rec *t = &st->t[i];
        if (!t->has_score || !isfinite(t->score)) continue;
        hp_space_encode(sp, t->values, u + (size_t)m * d);
        y[m] = t->score;
        id[m] = t->id;
        if (best < 0 || plots_good(st, t->score) > plots_good(st, y[best])) best = m;
        m++;
    }
    /* a GP on the scores (>= 3 trials): the mean is the map's background */
    int have_gp = 0;
    if (m >= 3 && gp_set_data(&g, u, y, m) == 0) {
        rng r;
        rng_seed(&r, 20240514u);
        double ls[GP_MAX_DIM];
        for (int j = 0; j < d; j++) ls[j] = log(0.3);
        gp_set_hyper(&g, ls, 0.0, log(1e-2));
        have_gp = gp_fit(&g, &r, 3, 200) == 0;
    }
    /* the two parameters shown */
    int ax = 0, ay = d > 1 ? 1 : -1;
    if (d == 2 && strstr(sp->p[1].name, "learning_rate") && !strstr(sp->p[0].name, "learning_rate")) ax = 1, ay = 0;
    if (d > 2 && have_gp) { /* the two shortest length scales matter most */
        int a = 0, b = 1;
        if (g.log_ls[b] < g.log_ls[a]) a = 1, b = 0;
        for (int j = 2; j < d; j++) {
            if (g.log_ls[j] < g.log_ls[a]) b = a, a = j;
            else if (g.log_ls[j] < g.log_ls[b]) b = j;
        }
        ax = a, ay = b;
    }
    double base[HP_MAX_PARAMS];
    for (int j = 0; j < d; j++) base[j] = best >= 0 ? u[(size_t)best * d + j] : 0.5;
    const hp_param *P = &sp->p[ax], *Q = ay >= 0 ? &sp->p[ay] : NULL;
    double x0, x1, y0 = 0, y1 = 1;
    plots_axis_span(P, &x0, &x1);
    if (Q) plots_axis_span(Q, &y0, &y1);
    int ng = have_gp ? (Q ? (int)(G * G) : (int)G) : 0;
    for (int k = 0; k < ng; k++) {
        int i = Q ? k / (int)G : k, j = Q ? k % (int)G : 0;
        double *row = xs + (size_t)k * d;
        memcpy(row, base, (size_t)d * sizeof *row);
        double cx = x0 + (x1 - x0) * i / (double)(G - 1);
        row[ax] = fmin(1, fmax(0, plots_unit(P, cx)));
        if (Q) row[ay] = fmin(1, fmax(0, plots_unit(Q, y0 + (y1 - y0) * j / (double)(G - 1))));
        if (!Q) gx[i] = cx;
    }
    if (ng) gp_predict(&g, xs, ng, mu, var);
    for (int k = 0; k < ng; k++) {
        mu[k] = g.ymean + g.ystd * mu[k];
        var[k] = var[k] > 0 ? g.ystd * g.ystd * var[k] : 0;
    }
    double slo = 0, shi = 1; /* the colour scale: the scores' range */
    if (m) {
        slo = shi = y[0];
        for (int i = 1; i < m; i++) slo = fmin(slo, y[i]), shi = fmax(shi, y[i]);
        if (shi - slo < 1e-9 * fmax(1, fabs(slo))) /* one score: a narrow scale around it, >= 0 if it is */
            slo = slo >= 0 && slo < 0.005 ? 0 : slo - 0.005, shi = slo + 0.01;
    }
    for (int i = 0; i < m; i++) {
        const hpo_trial_rec *t = &st->t[id[i]];
        px[i] = plots_coord(P, t->values[ax]);
        py[i] = Q ? plots_coord(Q, t->values[ay]) : t->score;
    }

    plots_hpo_space_ctx ctx = {st, P, Q, d, m, best, ax, ay, ng, have_gp, x0, x1, y0, y1, slo, shi,
                               y, px, py, var, mu, rows, gx, band_x, band_y, id};
    int s = plots_run(path, PLOTS_SPACE_W, PLOTS_SPACE_H, plots_draw_hpo_space, &ctx);
    free(u), free(y), free(px), free(py), free(xs), free(mu), free(var), free(rows), free(gx), free(band_x);
    free(band_y), free(id);
    gp_free(&g);
    return s;
}

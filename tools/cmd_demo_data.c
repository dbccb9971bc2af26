/* cmd_demo_data.c - `ote make-demo-data DIR`: the CLI of data/demo.h (the built-in synthetic
 * three-shape COCO set the README's main command trains on). Parses arguments, prints counts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/demo.h"
#include "engine/ote.h"
#include "tools/commands.h"

static void demo_usage(FILE *f) {
    fprintf(f, "usage: ote make-demo-data DIR [--train N] [--val N] [--seed S]\n\n"
               "Writes a small synthetic COCO-format detection set to DIR/{train,val}/*.png and\n"
               "DIR/annotations/{train,val}.json: 3 shape classes (rectangle, ellipse, triangle),\n"
               "1-3 shapes of 40-120 px per 224-320 x 176-256 image, on gradient backgrounds with\n"
               "stripes, noise and distractor lines/dots. Train and val come from different seeds.\n"
               "Defaults: --train 128 --val 32 --seed 7.\n");
}

int cmd_make_demo_data(int argc, char **argv) {
    const char *dir = NULL;
    long n_train = 128, n_val = 32, seed = 7;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            demo_usage(stdout);
            return 0;
        }
        long *dst = !strcmp(a, "--train") ? &n_train : !strcmp(a, "--val") ? &n_val : !strcmp(a, "--seed") ? &seed : NULL;
        if (dst) {
            char *end = NULL;
            if (i + 1 >= argc || (*dst = strtol(argv[i + 1], &end, 10), *end) || *dst < 0 || *dst > 100000) {
                fprintf(stderr, "ote make-demo-data: %s needs a non-negative integer\n", a);
                return 2;
            }
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "ote make-demo-data: unknown option '%s'\n", a);
            return 2;
        } else if (!dir) {
            dir = a;
        } else {
            fprintf(stderr, "ote make-demo-data: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!dir) {
        demo_usage(stderr);
        return 2;
    }
    demo_stats st;
    if (demo_write(dir, (int)n_train, (int)n_val, (uint64_t)seed, &st) < 0) {
        fprintf(stderr, "ote make-demo-data: %s\n", ote_errmsg());
        return 1;
    }
    printf("demo data: %ld train + %ld val images, %ld boxes (%ld %s, %ld %s, %ld %s) in %s\n", n_train, n_val,
           st.boxes, st.per_class[0], demo_class_names[0], st.per_class[1], demo_class_names[1], st.per_class[2],
           demo_class_names[2], dir);
    return 0;
}

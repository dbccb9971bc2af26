/* ote.c - the `ote` command-line entry point: dispatches to sub-commands.
 *
 * Exit codes: 0 success, 1 runtime error, 2 usage error (unknown command/option, bad value).
 * Every error is one line on stderr: "ote <command>: <message>".
 */
#include <stdio.h>
#include <string.h>

#include "dist/dist.h"
#include "engine/eng.h"
#include "engine/ote.h"
#include "tools/commands.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"version", cmd_version, "print versions, the CPU ISA oneDNN dispatches and the thread count"},
    {"make-demo-data", cmd_make_demo_data, "write a small synthetic COCO-format detection set"},
    {"train", cmd_train, "train the detector of a template on COCO data (OTE's `ote train`)"},
    {"eval", cmd_eval, "score detections against COCO ground truth: VOC mAP@0.5 and COCO AP/AR"},
    {"export", cmd_export, "write a trained checkpoint as an ONNX model (OpenCV dnn / OpenVINO / onnxruntime)"},
    {"predict", cmd_predict, "run a trained model on images: draw its boxes, write COCO detections"},
    {"dump-batches", cmd_dump_batches, "(benchmark helper) stream the trainer's exact batches for the PyTorch learning check"},
    {"pth-dump", cmd_pth_dump, "(debug) print, re-save or generate a PyTorch .pth checkpoint"},
    {"hpo", cmd_hpo, "hyper-parameter search for any objective command (SMBO/ASHA, OTE status files)"},
    {"import-backbone", cmd_import_backbone, "import ImageNet MobileNetV2 weights from a TFLite file as a backbone .pth"},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: ote <command> [options]\n"
            "       ote --version | --help\n\n"
            "A self-contained MobileNetV2-ATSS object-detection trainer with built-in HPO.\n\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-18s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nRun 'ote <command> --help' for the options of a command.\n");
}

int main(int argc, char **argv) {
    eng_omp_policy(argv); /* engine/eng.h: may re-execute with GOMP_SPINCOUNT set */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) return cmd_version(1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            /* under mpirun every rank runs the command (dist/dist.h); alone, MPI is never started */
            if (dist_init(&argc, &argv) < 0) {
                fprintf(stderr, "ote: %s\n", ote_errmsg());
                return 1;
            }
            int rc = commands[i].fn(argc - 1, argv + 1);
            dist_finalize();
            return rc;
        }
    fprintf(stderr, "ote: unknown command '%s' (see 'ote --help')\n", argv[1]);
    return 2;
}

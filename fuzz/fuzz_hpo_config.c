/* fuzz_hpo_config.c - libFuzzer harness for the hpo_config.yaml reader (hpo/hpo_config.c over
 * io/yd.c, read by `ote train --enable-hpo` and `ote hpo`): the bytes are an
 * hpo_config.yaml, read from a file as the CLI does; one that loads has its search space checked
 * against the template's hyper-parameter names, as train_hpo does. */
#include "fuzz/fuzz_common.h"

#include "hpo/hpo_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write(data, size, "hpo_config.yaml");
    static hpo_config c; /* large fixed arrays: keep it off the fuzzer's stack */
    if (hpo_config_load(&c, path) != 0) return 0;
    static const char *const known[] = {"learning_parameters.learning_rate", "learning_parameters.batch_size",
                                        "learning_parameters.num_iters", NULL};
    (void)hpo_config_check_names(&c, known);
    (void)hpo_config_algo_name(c.algo);
    (void)hpo_config_early_stop_name(c.early_stop);
    return 0;
}

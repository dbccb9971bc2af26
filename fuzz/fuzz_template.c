/* fuzz_template.c - libFuzzer harness for the model template reader (train/config.c over
 * io/yd.c, `ote train TEMPLATE`): the bytes are a template.yaml; one that loads gets the
 * overrides a user types after `params` (a value for every hyper-parameter at its min, max and a
 * bad text, and an input size), each checked as `ote train ... params` checks it. */
#include "fuzz/fuzz_common.h"

#include "train/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write(data, size, "template.yaml");
    static config_template t; /* ~3 kB of fixed arrays: keep it off the fuzzer's stack */
    if (config_load(&t, path) != 0) return 0;
    char pre[CONFIG_PATH_LEN];
    (void)config_pretrained_path(&t, pre, sizeof pre);
    int n = t.n_hp;
    for (int i = 0; i < n; i++) {
        char key[CONFIG_KEY_LEN], buf[64];
        memcpy(key, t.hp[i].key, sizeof key);
        config_format_value(&t.hp[i], buf, sizeof buf);
        (void)config_set(&t, key, buf);
        snprintf(buf, sizeof buf, "%.17g", t.hp[i].min);
        (void)config_set(&t, key, buf);
        snprintf(buf, sizeof buf, "%.17g", t.hp[i].max);
        (void)config_set(&t, key, buf);
        (void)config_set(&t, key, "1e400");
    }
    (void)config_set(&t, "model.input_size", "320x320");
    return 0;
}

/* fuzz_pth.c - libFuzzer harness for the checkpoint reader (io/pth.c: zip reader io/zip.c, pickle
 * interpreter io/pickle.c, checkpoint mapping; `--load-weights`, `ote eval --load-weights`): the bytes are a
 * .pth file, read from a file with pth_load; a checkpoint that loads has every tensor and config
 * entry looked up as the weight loader does. */
#include "fuzz/fuzz_common.h"

#include "io/pth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write(data, size, "weights.pth");
    pth_ckpt c;
    pth_init(&c);
    if (pth_load(path, &c) == 0) {
        double sum = 0;
        for (size_t i = 0; i < c.n_tensors; i++) {
            const pth_tensor *t = pth_find(&c, c.tensors[i].name);
            if (!t || strcmp(t->name, c.tensors[i].name)) abort(); /* a loaded name must be found */
            if (t->numel > 0 && t->dtype == PTH_F32) sum += (double)(((const float *)t->data)[0] + ((const float *)t->data)[t->numel - 1]);
            if (t->numel > 0 && t->dtype == PTH_I64) sum += (double)((const int64_t *)t->data)[t->numel - 1];
        }
        for (size_t i = 0; i < c.n_config; i++) (void)pth_config_get(&c, c.config[i].key);
        (void)pth_layout_name(c.layout);
        (void)sum;
    }
    pth_free(&c);
    return 0;
}

/* fuzz_tflite.c - libFuzzer harness for the TFLite FlatBuffer reader (io/tfl.c, the
 * pretrained backbone and `ote import-backbone`): the bytes are a .tflite file, read from a file
 * with tfl_load; a model that loads has its operators named and every tensor of up to 64k elements
 * dequantised (its data pointer and size are what the reader promised: ASan checks the reads). */
#include "fuzz/fuzz_common.h"

#include "io/tfl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write(data, size, "model.tflite");
    tfl_model m;
    if (tfl_load(&m, path) != 0) return 0;
    char name[64];
    for (int i = 0; i < m.n_ops; i++) (void)tfl_op_name(m.ops[i].opcode, name, sizeof name);
    static float out[1 << 16];
    for (int t = 0; t < m.n_tensors; t++) {
        (void)tfl_type_name(m.tensors[t].type);
        size_t bytes;
        int64_t numel = tfl_tensor_numel(&m.tensors[t]);
        if (!tfl_tensor_data(&m, t, &bytes) || numel <= 0 || numel > (1 << 16)) continue;
        (void)tfl_dequantize(&m, t, out, numel);
    }
    for (int i = 0; i < m.n_ops; i++) { /* conv biases: int32 data scaled by input x weight scales */
        const tfl_op *o = &m.ops[i];
        if ((o->opcode != TFL_OP_CONV_2D && o->opcode != TFL_OP_DEPTHWISE_CONV_2D) || o->n_in < 3) continue;
        if (o->inputs[0] < 0 || o->inputs[1] < 0 || o->inputs[2] < 0) continue;
        int64_t numel = tfl_tensor_numel(&m.tensors[o->inputs[2]]);
        if (numel > 0 && numel <= (1 << 16)) (void)tfl_dequantize_bias(&m, o->inputs[2], o->inputs[0], o->inputs[1], out, numel);
    }
    (void)tfl_count_ops(&m, TFL_OP_CONV_2D);
    tfl_free(&m);
    return 0;
}

/* tfl.h - TFLite model files (prefix tfl_): a bounds-checked reader for TensorFlow Lite models
 * (FlatBuffer, identifier "TFL3") and dequantisation of their constant tensors.
 *
 * tfl_parse() walks the FlatBuffer once and copies everything a weight importer needs into plain
 * C structs: the first subgraph's tensors (name, shape, type, buffer, quantisation), operators
 * (resolved builtin code, inputs, outputs, the options of convolution/pooling/add/FC operators),
 * the subgraph inputs/outputs and the model buffers. Buffer data is not copied: tfl_buffer points
 * into the model's own copy of the file bytes.
 *
 * Ownership: tfl_model owns the file bytes and every array it points to; tfl_free() releases
 * them all (it is safe on a zeroed or partially parsed model).
 *
 * Invariants after a successful parse: every offset, vector length and string length has been
 * validated against the file size, every tensor's buffer index is < n_buffers, every operator's
 * tensor indices are -1 (optional input) or < n_tensors, and every non-empty buffer used by a
 * tensor holds exactly numel * element-size bytes. A malformed or truncated file gives
 * OTE_EPARSE with a one-line message naming the file and the offending field; it never reads out
 * of bounds. Bytes the FlatBuffer does not reference are ignored: files with metadata carry a zip
 * of associated files (e.g. the label list) appended after the FlatBuffer.
 *
 * Only what the MobileNetV2 importer needs is decoded: subgraph 0, builtin codes, and the options
 * of CONV_2D, DEPTHWISE_CONV_2D, AVERAGE/MAX_POOL_2D, ADD and FULLY_CONNECTED. Sparsity,
 * signature defs, metadata and custom options are skipped.
 */
#ifndef OTE_IO_TFL_H
#define OTE_IO_TFL_H

#include <stddef.h>
#include <stdint.h>

#define TFL_MAX_DIMS 8

/* TensorType values from the TFLite schema. */
enum {
    TFL_FLOAT32 = 0,
    TFL_FLOAT16 = 1,
    TFL_INT32 = 2,
    TFL_UINT8 = 3,
    TFL_INT64 = 4,
    TFL_STRING = 5,
    TFL_BOOL = 6,
    TFL_INT16 = 7,
    TFL_COMPLEX64 = 8,
    TFL_INT8 = 9,
};

/* The BuiltinOperator codes we name (others are kept as numbers). */
enum {
    TFL_OP_ADD = 0,
    TFL_OP_AVERAGE_POOL_2D = 1,
    TFL_OP_CONCATENATION = 2,
    TFL_OP_CONV_2D = 3,
    TFL_OP_DEPTHWISE_CONV_2D = 4,
    TFL_OP_DEQUANTIZE = 6,
    TFL_OP_FULLY_CONNECTED = 9,
    TFL_OP_LOGISTIC = 14,
    TFL_OP_MAX_POOL_2D = 17,
    TFL_OP_MUL = 18,
    TFL_OP_RELU = 19,
    TFL_OP_RELU6 = 21,
    TFL_OP_RESHAPE = 22,
    TFL_OP_SOFTMAX = 25,
    TFL_OP_MEAN = 40,
    TFL_OP_SQUEEZE = 43,
    TFL_OP_QUANTIZE = 114,
    TFL_OP_CUSTOM = 32,
};

/* Padding and ActivationFunctionType values from the schema. */
enum { TFL_PAD_SAME = 0, TFL_PAD_VALID = 1 };
enum { TFL_ACT_NONE = 0, TFL_ACT_RELU = 1, TFL_ACT_RELU_N1_TO_1 = 2, TFL_ACT_RELU6 = 3, TFL_ACT_TANH = 4 };

typedef struct tfl_tensor {
    char *name;                 /* NUL-terminated copy ("" if absent) */
    int ndim;
    int shape[TFL_MAX_DIMS];    /* as stored: conv weights [O, KH, KW, I], depthwise [1, KH, KW, C] */
    int type;                   /* TFL_FLOAT32, TFL_INT8, ... */
    uint32_t buffer;            /* index into tfl_model.buffers (0 = the empty sentinel buffer) */
    int n_scale;                /* 0: not quantised; 1: per tensor; >1: per channel along quant_dim */
    float *scale;               /* (n_scale) */
    int n_zero_point;           /* 0 (treated as all zeros), 1 or n_scale */
    int64_t *zero_point;        /* (n_zero_point) */
    int quant_dim;              /* quantized_dimension (0 if absent) */
} tfl_tensor;

typedef struct tfl_buffer {
    const uint8_t *data;        /* points into tfl_model.file; NULL if empty */
    size_t size;                /* bytes */
} tfl_buffer;

typedef struct tfl_op {
    int opcode;                 /* resolved builtin code (TFL_OP_*) */
    int n_in, n_out;
    int *inputs, *outputs;      /* tensor indices; -1 marks an omitted optional input */
    int options_type;           /* BuiltinOptions union tag (0 = none) */
    /* Options, filled for CONV_2D, DEPTHWISE_CONV_2D, AVERAGE/MAX_POOL_2D, ADD, FULLY_CONNECTED;
     * schema defaults otherwise (stride 1, dilation 1, depth multiplier 0, SAME, no activation). */
    int padding;                /* TFL_PAD_* */
    int stride_w, stride_h;
    int dilation_w, dilation_h;
    int depth_multiplier;
    int filter_w, filter_h;     /* pooling only */
    int activation;             /* TFL_ACT_* (fused) */
} tfl_op;

typedef struct tfl_model {
    uint8_t *file;              /* the whole file (owned unless parsed with tfl_parse_view) */
    size_t size;
    int owns_file;              /* 1: tfl_free releases `file` */
    uint32_t version;           /* schema version (3 for current files) */
    char *description;          /* ("" if absent) */
    int n_opcodes;
    int *opcodes;               /* resolved builtin code per operator_codes entry */
    int n_buffers;
    tfl_buffer *buffers;
    int n_subgraphs;            /* only subgraph 0 is parsed */
    int n_tensors;
    tfl_tensor *tensors;
    int n_ops;
    tfl_op *ops;                /* in execution order, as stored */
    int n_inputs, n_outputs;
    int *inputs, *outputs;      /* subgraph 0 inputs / outputs (tensor indices) */
    char path[256];             /* for error messages */
} tfl_model;

/* Reads and parses a .tflite file. On failure the model is freed and zeroed. */
int tfl_load(tfl_model *m, const char *path);
/* Parses `size` bytes (copied); `label` names the source in error messages. */
int tfl_parse(tfl_model *m, const void *bytes, size_t size, const char *label);
/* Same without copying: the model borrows `bytes`, which must outlive it (for memory-mapped
 * files and for tests that parse thousands of corrupted variants). */
int tfl_parse_view(tfl_model *m, const void *bytes, size_t size, const char *label);
void tfl_free(tfl_model *m);

/* "CONV_2D", "ADD", ... or "OP_<n>" for codes we do not name; `buf` holds the fallback. */
const char *tfl_op_name(int opcode, char *buf, size_t n);
const char *tfl_type_name(int type);
/* Bytes per element of a tensor type, 0 for types without a fixed size (string). */
int tfl_type_size(int type);
int64_t tfl_tensor_numel(const tfl_tensor *t);
int tfl_count_ops(const tfl_model *m, int opcode);

/* The raw constant data of tensor `t` (NULL, 0 for a tensor without data). */
const uint8_t *tfl_tensor_data(const tfl_model *m, int t, size_t *bytes);

/* Dequantises a constant tensor into `out` (n floats, n must equal numel):
 *   FLOAT32: copied; INT8/UINT8/INT16/INT32: w = scale[c] * (q - zero_point[c]) with c the index
 *   along quant_dim when there are several scales. A quantised type without scales, or a tensor
 *   without data, is OTE_EPARSE. */
int tfl_dequantize(const tfl_model *m, int t, float *out, int64_t n);

/* Dequantises an INT32 bias of a quantised conv/FC: b = q * input_scale * weight_scale[c], where
 * c runs over the bias entries (= output channels) and the weight has 1 or n scales. A FLOAT32
 * bias is copied. The bias tensor's own scale is not used (TFLite stores the same product). */
int tfl_dequantize_bias(const tfl_model *m, int bias, int input, int weight, float *out, int64_t n);

#endif

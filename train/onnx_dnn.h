/* onnx_dnn.h - an ONNX model run by OpenCV's dnn module, behind a plain C API (the dnn shim).
 *
 * train/onnx_dnn.cpp is the only user of opencv2/dnn; no OpenCV type crosses this header. It
 * lives in train/ beside the ONNX writer (train/export.c) rather than in data/ (image.cpp, the
 * imgcodecs shim): it runs a model, not a file format of the data pipeline, and its one caller is
 * the exported-model backend (train/onnx_model.h), which ties it to models/postprocess.
 * Every C++ exception is caught inside and becomes a negative OTE_E* status naming the file.
 *
 * Ownership: an onnx_dnn owns the cv::dnn::Net and the output blobs of the last forward; the
 * pointers onnx_dnn_forward returns stay valid until the next forward or onnx_dnn_free.
 */
#ifndef OTE_ONNX_DNN_H
#define OTE_ONNX_DNN_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct onnx_dnn onnx_dnn;

/* Reads path with cv::dnn::readNetFromONNX (backend OpenCV, target CPU) and remembers the names
 * of the n_outputs graph outputs to fetch. OTE_EIO if the file is missing, OTE_EPARSE if OpenCV's
 * importer refuses it (its message is quoted). */
int onnx_dnn_load(onnx_dnn **out, const char *path, const char *const *output_names, int n_outputs);
/* Runs image (1, 3, h, w) plain NCHW f32 with the process's OpenCV threads (nthreads is unused:
 * the count is set once, before any loader runs, by image_io_opencv_threads - changing it while a
 * loader thread is inside cv::parallel_for_ deadlocks OpenCV's TBB backend); outs[i] receives output
 * i (plain NCHW f32) and shapes[i] its 4 dimensions (fewer dims are padded with leading 1s). */
int onnx_dnn_forward(onnx_dnn *n, const float *image, int h, int w, int nthreads, const float **outs,
                     int (*shapes)[4]);
void onnx_dnn_free(onnx_dnn *n);

#ifdef __cplusplus
}
#endif

#endif

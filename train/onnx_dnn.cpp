// onnx_dnn.cpp - the OpenCV dnn shim behind onnx_dnn.h (see there).
//
// Owns the net and the last forward's outputs. No exception crosses into C: every entry point
// catches everything and turns it into an OTE_E* status naming the model file.
#include "train/onnx_dnn.h"

#include <cstdio>
#include <exception>
#include <string>
#include <sys/stat.h>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

extern "C" {
#include "engine/ote.h"
}

struct onnx_dnn {
    cv::dnn::Net net;
    std::string path;
    std::vector<std::string> names;
    std::vector<cv::Mat> outs;
};

extern "C" int onnx_dnn_load(onnx_dnn **out, const char *path, const char *const *output_names, int n_outputs) {
    *out = nullptr;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return ote_err(OTE_EIO, "%s: no such model file", path);
    onnx_dnn *n = nullptr;
    try {
        n = new onnx_dnn;
        n->path = path;
        for (int i = 0; i < n_outputs; i++) n->names.emplace_back(output_names[i]);
        n->net = cv::dnn::readNetFromONNX(path);
        if (n->net.empty()) {
            delete n;
            return ote_err(OTE_EPARSE, "%s: OpenCV dnn read an empty network", path);
        }
        n->net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
        n->net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
        *out = n;
        return OTE_OK;
    } catch (const std::bad_alloc &) {
        delete n;
        return ote_err(OTE_ENOMEM, "%s: out of memory reading the model", path);
    } catch (const std::exception &ex) {
        delete n;
        std::string m = ex.what();
        for (char &c : m)
            if (c == '\n') c = ' ';
        return ote_err(OTE_EPARSE, "%s: OpenCV dnn cannot import it: %s", path, m.c_str());
    }
}

extern "C" int onnx_dnn_forward(onnx_dnn *n, const float *image, int h, int w, int nthreads, const float **outs,
                                int (*shapes)[4]) {
    try {
        int dims[4] = {1, 3, h, w};
        cv::Mat blob(4, dims, CV_32F, const_cast<float *>(image));
        n->net.setInput(blob);
        (void)nthreads; /* the thread count is set once per process (image_io_opencv_threads) */
        n->outs.clear();
        n->net.forward(n->outs, n->names);
        if (n->outs.size() != n->names.size())
            return ote_err(OTE_EPARSE, "%s: OpenCV dnn returned %zu outputs, expected %zu", n->path.c_str(),
                           n->outs.size(), n->names.size());
        for (size_t i = 0; i < n->outs.size(); i++) {
            cv::Mat &m = n->outs[i];
            if (m.type() != CV_32F || !m.isContinuous() || m.dims > 4)
                return ote_err(OTE_EPARSE, "%s: output %s is not a continuous f32 blob of at most 4 dims",
                               n->path.c_str(), n->names[i].c_str());
            int pad = 4 - m.dims;
            for (int k = 0; k < 4; k++) shapes[i][k] = k < pad ? 1 : m.size[k - pad];
            outs[i] = m.ptr<float>();
        }
        return OTE_OK;
    } catch (const std::bad_alloc &) {
        return ote_err(OTE_ENOMEM, "%s: out of memory in the forward pass", n->path.c_str());
    } catch (const std::exception &ex) {
        std::string m = ex.what();
        for (char &c : m)
            if (c == '\n') c = ' ';
        return ote_err(OTE_EPARSE, "%s: OpenCV dnn forward failed: %s", n->path.c_str(), m.c_str());
    }
}

extern "C" void onnx_dnn_free(onnx_dnn *n) { delete n; }

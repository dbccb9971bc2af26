// image.cpp - the OpenCV shim behind image.h (the only C++ file, the only OpenCV user).
//
// Owns nothing between calls except the buffers inside the caller's image_u8. Every entry point
// catches all C++ exceptions and turns them into an OTE_E* status naming the file, so no exception
// ever crosses into C. OpenCV's own threading is set once per process (std::call_once): one thread,
// because the loader parallelises with its own pthreads (onednn-notes.md section 2.6), unless
// image_io_opencv_threads chose first. It is never changed afterwards: with Debian's TBB backend,
// cv::setNumThreads while another thread is inside cv::parallel_for_ (a loader's resize) deadlocks.
#include "data/image.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <sys/stat.h>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

extern "C" {
#include "engine/ote.h"
#include "io/atomic.h"
}

namespace {

std::once_flag cv_threads_once;

void image_io_init_once() {
    std::call_once(cv_threads_once, [] { cv::setNumThreads(1); });
}

int image_io_reserve(uint8_t **buf, size_t *cap, size_t need, const char *name) {
    if (need <= *cap) return OTE_OK;
    void *p = std::realloc(*buf, need);
    if (!p) return ote_err(OTE_ENOMEM, "image_io: %s: cannot allocate %zu bytes", name, need);
    *buf = static_cast<uint8_t *>(p);
    *cap = need;
    return OTE_OK;
}

/* A JPEG must end with EOI (FF D9; trailing zero padding allowed), a PNG with its IEND chunk. */
bool image_io_truncated(const uint8_t *b, size_t n) {
    if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8) {
        size_t e = n;
        while (e > 2 && b[e - 1] == 0) e--;
        return !(e >= 4 && b[e - 2] == 0xFF && b[e - 1] == 0xD9);
    }
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (n >= 8 && !std::memcmp(b, png, 8)) return n < 20 || std::memcmp(b + n - 8, "IEND", 4) != 0;
    return false;
}

int image_io_decode(const uint8_t *bytes, size_t n, const char *name, image_u8 *img) {
    if (n == 0) return ote_err(OTE_EPARSE, "image_io: %s: empty file", name);
    img->truncated = image_io_truncated(bytes, n);
    cv::Mat raw(1, static_cast<int>(n), CV_8UC1, const_cast<uint8_t *>(bytes));
    cv::Mat bgr = cv::imdecode(raw, cv::IMREAD_COLOR);
    if (bgr.empty() || bgr.cols <= 0 || bgr.rows <= 0)
        return ote_err(OTE_EPARSE, "image_io: %s: cannot decode image (corrupt or unsupported format, %zu bytes)",
                       name, n);
    if (bgr.type() != CV_8UC3)
        return ote_err(OTE_EPARSE, "image_io: %s: decoder returned unexpected pixel type %d", name, bgr.type());
    size_t need = static_cast<size_t>(bgr.cols) * static_cast<size_t>(bgr.rows) * 3;
    CHECK(image_io_reserve(&img->data, &img->cap, need, name));
    cv::Mat rgb(bgr.rows, bgr.cols, CV_8UC3, img->data);
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    if (rgb.data != img->data) return ote_err(OTE_EPARSE, "image_io: %s: colour conversion reallocated", name);
    img->w = bgr.cols;
    img->h = bgr.rows;
    return OTE_OK;
}

template <typename T>
int image_io_resize(const T *src, int sw, int sh, size_t ss, int c, T *dst, int dw, int dh, size_t ds, int depth) {
    if (!src || !dst || sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || c < 1 || c > 4 ||
        ss < static_cast<size_t>(sw) * c || ds < static_cast<size_t>(dw) * c)
        return ote_err(OTE_EINVAL, "image_io: resize: bad arguments %dx%dx%d (stride %zu) -> %dx%d (stride %zu)", sw,
                       sh, c, ss, dw, dh, ds);
    cv::Mat s(sh, sw, CV_MAKETYPE(depth, c), const_cast<T *>(src), ss * sizeof(T));
    cv::Mat d(dh, dw, CV_MAKETYPE(depth, c), dst, ds * sizeof(T));
    cv::resize(s, d, cv::Size(dw, dh), 0, 0, cv::INTER_LINEAR);
    if (d.data != reinterpret_cast<uchar *>(dst))
        return ote_err(OTE_EINVAL, "image_io: resize: destination was reallocated");
    return OTE_OK;
}

}  // namespace

extern "C" void image_io_opencv_threads(int n) {
    std::call_once(cv_threads_once, [n] { cv::setNumThreads(n > 0 ? n : -1); });
}

extern "C" int image_decode_rgb(const void *bytes, size_t n, const char *name, image_u8 *img) {
    try {
        image_io_init_once();
        return image_io_decode(static_cast<const uint8_t *>(bytes), n, name ? name : "(memory)", img);
    } catch (const std::exception &e) {
        return ote_err(OTE_EPARSE, "image_io: %s: %s", name ? name : "(memory)", e.what());
    } catch (...) {
        return ote_err(OTE_EPARSE, "image_io: %s: unknown decoder failure", name ? name : "(memory)");
    }
}

extern "C" int image_read_rgb(const char *path, image_u8 *img) {
    try {
        image_io_init_once();
        FILE *f = std::fopen(path, "rb");
        if (!f) return ote_err(OTE_EIO, "image_io: %s: cannot open image: %s", path, std::strerror(errno));
        struct stat sb;
        if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
            std::fclose(f);
            return ote_err(OTE_EIO, "image_io: %s: not a regular file", path);
        }
        long len = static_cast<long>(sb.st_size);
        int st = image_io_reserve(&img->file_buf, &img->file_cap, static_cast<size_t>(len) + 1, path);
        if (st < 0) {
            std::fclose(f);
            return st;
        }
        size_t got = std::fread(img->file_buf, 1, static_cast<size_t>(len), f);
        std::fclose(f);
        if (got != static_cast<size_t>(len))
            return ote_err(OTE_EIO, "image_io: %s: short read (%zu of %ld bytes)", path, got, len);
        return image_io_decode(img->file_buf, got, path, img);
    } catch (const std::exception &e) {
        return ote_err(OTE_EPARSE, "image_io: %s: %s", path, e.what());
    } catch (...) {
        return ote_err(OTE_EPARSE, "image_io: %s: unknown decoder failure", path);
    }
}

extern "C" void image_u8_free(image_u8 *img) {
    if (!img) return;
    std::free(img->data);
    std::free(img->file_buf);
    std::memset(img, 0, sizeof *img);
}

extern "C" int image_resize_u8(const uint8_t *src, int sw, int sh, size_t src_stride, int channels, uint8_t *dst,
                               int dw, int dh, size_t dst_stride) {
    try {
        image_io_init_once();
        return image_io_resize(src, sw, sh, src_stride, channels, dst, dw, dh, dst_stride, CV_8U);
    } catch (const std::exception &e) {
        return ote_err(OTE_EINVAL, "image_io: resize u8 %dx%d -> %dx%d: %s", sw, sh, dw, dh, e.what());
    } catch (...) {
        return ote_err(OTE_EINVAL, "image_io: resize u8: unknown failure");
    }
}

extern "C" int image_resize_f32(const float *src, int sw, int sh, size_t src_stride, int channels, float *dst,
                                int dw, int dh, size_t dst_stride) {
    try {
        image_io_init_once();
        return image_io_resize(src, sw, sh, src_stride, channels, dst, dw, dh, dst_stride, CV_32F);
    } catch (const std::exception &e) {
        return ote_err(OTE_EINVAL, "image_io: resize f32 %dx%d -> %dx%d: %s", sw, sh, dw, dh, e.what());
    } catch (...) {
        return ote_err(OTE_EINVAL, "image_io: resize f32: unknown failure");
    }
}

extern "C" int image_write_rgb(const char *path, const uint8_t *rgb, int w, int h) {
    try {
        image_io_init_once();
        if (!rgb || w <= 0 || h <= 0) return ote_err(OTE_EINVAL, "image_io: %s: bad image %dx%d", path, w, h);
        const char *slash = std::strrchr(path, '/'), *dot = std::strrchr(path, '.');
        if (!dot || (slash && dot < slash))
            return ote_err(OTE_EINVAL, "image_io: %s: no file extension to choose the image format by", path);
        cv::Mat src(h, w, CV_8UC3, const_cast<uint8_t *>(rgb));
        cv::Mat bgr;
        cv::cvtColor(src, bgr, cv::COLOR_RGB2BGR);
        std::vector<uchar> bytes;
        if (!cv::imencode(dot, bgr, bytes)) return ote_err(OTE_EIO, "image_io: %s: cannot encode image", path);
        return atomic_write(path, bytes.data(), bytes.size(), 0666);
    } catch (const std::exception &e) {
        return ote_err(OTE_EIO, "image_io: %s: %s", path, e.what());
    } catch (...) {
        return ote_err(OTE_EIO, "image_io: %s: unknown encoder failure", path);
    }
}

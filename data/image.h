/* image.h - image decoding and bilinear resizing behind a plain C API (the OpenCV shim).
 *
 * data/image.cpp is the only C++ file and the only OpenCV user in the project; no OpenCV type
 * crosses this header. Every C++ exception is caught inside and becomes a negative OTE_E* status
 * whose message names the file. OpenCV is limited to one thread (cv::setNumThreads(1), once), so
 * prefetch threads never oversubscribe the cores the OpenMP compute pool uses.
 * Pixel layout everywhere: interleaved HWC, RGB channel order, row stride in elements.
 */
#ifndef OTE_IMAGE_H
#define OTE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A decoded 8-bit RGB image plus reusable scratch; buffers grow only, so reading many images of
 * similar size into the same struct stops allocating (apart from OpenCV's decoder internals). */
typedef struct image_u8 {
    uint8_t *data;      /* (h, w, 3) RGB, row stride 3*w bytes */
    int w, h;
    size_t cap;         /* bytes allocated at data */
    uint8_t *file_buf;  /* scratch: the compressed file bytes */
    size_t file_cap;
    int truncated;      /* the last decode: a JPEG without its end marker or a PNG without IEND (the
                         * decoder filled the missing part; callers warn) */
} image_u8;

/* Reads a JPEG/PNG/BMP (anything OpenCV's imgcodecs decodes) as 8-bit RGB, the way cv2.imread
 * with IMREAD_COLOR does (EXIF orientation applied, grey or alpha converted to 3 channels).
 * OTE_EIO: missing/unreadable file; OTE_EPARSE: empty, corrupt or unsupported image data. */
int image_read_rgb(const char *path, image_u8 *img);
/* OpenCV's thread count for the whole process (n <= 0: OpenCV's default), set once, before any
 * image is read: call it before the first loader starts (the OpenCV dnn backend does, so that
 * its forward is parallel). Without it OpenCV runs one thread; the first setting is final. */
void image_io_opencv_threads(int n);
/* Same, from bytes in memory; `name` is only used in messages. */
int image_decode_rgb(const void *bytes, size_t n, const char *name, image_u8 *img);
void image_u8_free(image_u8 *img);

/* Bilinear resize exactly as cv2.resize(..., interpolation=INTER_LINEAR) (what mmcv.imresize
 * calls): half-pixel centres, src = (dst + 0.5) * in/out - 0.5, edge-clamped; 8-bit uses OpenCV's
 * fixed-point arithmetic. `channels` 1..4, strides in elements (bytes for u8, floats for f32), so a
 * crop can be resized straight from its parent image. OTE_EINVAL on bad sizes. */
int image_resize_u8(const uint8_t *src, int sw, int sh, size_t src_stride, int channels, uint8_t *dst, int dw,
                    int dh, size_t dst_stride);
int image_resize_f32(const float *src, int sw, int sh, size_t src_stride, int channels, float *dst, int dw,
                     int dh, size_t dst_stride);

/* Writes 8-bit RGB as PNG, JPEG, BMP ... chosen by the path's extension (OpenCV's imencode), the
 * file written atomically (io/atomic.h: temporary beside it, fsync, rename; mode 0666 - umask). */
int image_write_rgb(const char *path, const uint8_t *rgb, int w, int h);

#ifdef __cplusplus
}
#endif

#endif

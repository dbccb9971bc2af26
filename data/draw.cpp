// draw.cpp - the OpenCV imgproc drawing behind draw.h (boxes, tags, legend).
//
// Owns nothing: draws into the caller's RGB pixels through a cv::Mat header (colours are given
// in RGB order, which is the Mat's channel order here). Every entry point catches all C++
// exceptions and returns OTE_EINVAL, so no exception crosses into C. Sizes derive from the
// image's shorter side so a 200-pixel demo image and a 1080p photo both look right.
#include "data/draw.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <numeric>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

extern "C" {
#include "engine/ote.h"
}

namespace {

// Bright, mutually distinct colours without greens (green is the ground truth's).
const uint8_t draw_palette[][3] = {
    {255, 56, 56},   // red
    {0, 160, 255},   // sky blue
    {255, 178, 29},  // amber
    {203, 56, 255},  // violet
    {255, 112, 31},  // orange
    {72, 84, 255},   // blue
    {255, 55, 199},  // magenta
    {0, 212, 230},   // cyan
    {255, 149, 200}, // pink
    {160, 100, 60},  // brown
    {240, 240, 60},  // yellow
    {150, 150, 255}, // lavender
};
const int draw_n_palette = sizeof draw_palette / sizeof draw_palette[0];
const uint8_t draw_gt[3] = {40, 235, 40};

struct draw_style {
    int line;      // box line width (px)
    double scale;  // Hershey simplex font scale
    int text;      // text stroke width
    int pad;       // tag padding (px)
};

draw_style draw_style_for(int w, int h) {
    int m = std::min(w, h);
    draw_style s;
    s.line = draw_line_width(w, h);
    // 0.4 is the smallest scale whose letters stay legible (about 9 px capitals); it reaches 1.0
    // at a 1000-pixel side.
    s.scale = std::min(1.0, std::max(0.4, m / 1000.0));
    s.text = s.scale < 0.7 ? 1 : 2;
    s.pad = std::max(2, (int)std::lround(3 * s.scale));
    return s;
}

cv::Scalar draw_scalar(const uint8_t c[3]) { return cv::Scalar(c[0], c[1], c[2]); }

// Black on light colours, white on dark ones (Rec. 601 luma).
cv::Scalar draw_text_colour(const uint8_t c[3]) {
    double y = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    return y > 140 ? cv::Scalar(0, 0, 0) : cv::Scalar(255, 255, 255);
}

// A filled tag of colour c holding text, with its top-left corner at (x, y), moved inside the image.
void draw_tag(cv::Mat &m, const std::string &text, int x, int y, const uint8_t c[3], const draw_style &s) {
    int base = 0;
    cv::Size ts = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, s.scale, s.text, &base);
    int tw = ts.width + 2 * s.pad, th = ts.height + base + 2 * s.pad;
    x = std::max(0, std::min(x, m.cols - tw));
    y = std::max(0, std::min(y, m.rows - th));
    cv::rectangle(m, cv::Rect(x, y, tw, th), draw_scalar(c), cv::FILLED);
    cv::putText(m, text, cv::Point(x + s.pad, y + s.pad + ts.height), cv::FONT_HERSHEY_SIMPLEX, s.scale,
                draw_text_colour(c), s.text, cv::LINE_AA);
}

// A rectangular ring of width t whose outer corners are (x1, y1) and (x2, y2), inclusive; OpenCV
// clips it to the image. (cv::rectangle's thick lines spread by a rounding-dependent amount, so the
// four bands are drawn as filled rectangles for exact pixels.)
void draw_ring(cv::Mat &m, int x1, int y1, int x2, int y2, int t, const cv::Scalar &c) {
    if (x2 - x1 + 1 <= 2 * t || y2 - y1 + 1 <= 2 * t) {
        cv::rectangle(m, cv::Point(x1, y1), cv::Point(x2, y2), c, cv::FILLED);
        return;
    }
    cv::rectangle(m, cv::Point(x1, y1), cv::Point(x2, y1 + t - 1), c, cv::FILLED);
    cv::rectangle(m, cv::Point(x1, y2 - t + 1), cv::Point(x2, y2), c, cv::FILLED);
    cv::rectangle(m, cv::Point(x1, y1), cv::Point(x1 + t - 1, y2), c, cv::FILLED);
    cv::rectangle(m, cv::Point(x2 - t + 1, y1), cv::Point(x2, y2), c, cv::FILLED);
}

int draw_tag_height(const draw_style &s) {
    int base = 0;
    cv::Size ts = cv::getTextSize("Ag", cv::FONT_HERSHEY_SIMPLEX, s.scale, s.text, &base);
    return ts.height + base + 2 * s.pad;
}

std::string draw_label_text(const draw_box &b, const char *const *names, int n_names) {
    char buf[160];
    if (b.label >= 0 && b.label < n_names && names && names[b.label])
        std::snprintf(buf, sizeof buf, "%s", names[b.label]);
    else
        std::snprintf(buf, sizeof buf, "class %d", b.label);
    std::string t(buf);
    if (b.score >= 0) {
        std::snprintf(buf, sizeof buf, " %.2f", (double)b.score);
        t += buf;
    }
    return t;
}

// A box in pixel terms: the inclusive span of pixels it covers, clipped to the image; false for a
// box to skip (a non-finite coordinate, nothing inside the image).
bool draw_pixel_box(const draw_box &b, int w, int h, int px[4]) {
    if (!std::isfinite(b.x1) || !std::isfinite(b.y1) || !std::isfinite(b.x2) || !std::isfinite(b.y2)) return false;
    if (b.x2 <= 0 || b.y2 <= 0 || b.x1 >= w || b.y1 >= h) return false;
    // Pixel (x, y) covers [x, x+1); a box [x1, x2) spans pixels x1 .. x2-1.
    auto clamp = [](float v, int hi) { return (int)std::lround(std::max(0.f, std::min(v, (float)hi))); };
    px[0] = clamp(b.x1, w), px[1] = clamp(b.y1, h), px[2] = clamp(b.x2, w) - 1, px[3] = clamp(b.y2, h) - 1;
    return px[2] >= px[0] && px[3] >= px[1];
}

struct draw_set {
    const draw_box *boxes;
    int n;
    draw_kind kind;
};

void draw_colour_of(const draw_box &b, draw_kind kind, uint8_t c[3]) {
    if (kind == DRAW_GROUND_TRUTH) draw_gt_colour(c);
    else draw_class_colour(b.label, c);
}

// Predictions in ascending score order (the most confident ends on top), ground truth as given.
std::vector<int> draw_order(const draw_set &set) {
    std::vector<int> order(set.n > 0 ? set.n : 0);
    std::iota(order.begin(), order.end(), 0);
    if (set.kind == DRAW_PREDICTION)
        std::stable_sort(order.begin(), order.end(),
                         [&](int a, int b) { return set.boxes[a].score < set.boxes[b].score; });
    return order;
}

int draw_set_line(const draw_style &s, draw_kind kind) { return kind == DRAW_GROUND_TRUTH ? std::max(1, s.line - 1) : s.line; }

int draw_lines(cv::Mat &m, const draw_set &set, const draw_style &s) {
    int line = draw_set_line(s, set.kind), drawn = 0;
    for (int i : draw_order(set)) {
        int p[4];
        if (!draw_pixel_box(set.boxes[i], m.cols, m.rows, p)) continue;
        uint8_t c[3];
        draw_colour_of(set.boxes[i], set.kind, c);
        // The line is centred on the box edge; the dark rim (one pixel each side) keeps it
        // visible on a background of its own colour.
        int a = line / 2, ox1 = p[0] - a, oy1 = p[1] - a, ox2 = p[2] + (line - 1 - a), oy2 = p[3] + (line - 1 - a);
        draw_ring(m, ox1 - 1, oy1 - 1, ox2 + 1, oy2 + 1, line + 2, cv::Scalar(20, 20, 20));
        draw_ring(m, ox1, oy1, ox2, oy2, line, draw_scalar(c));
        drawn++;
    }
    return drawn;
}

void draw_tags(cv::Mat &m, const draw_set &set, const draw_style &s, const char *const *names, int n_names) {
    const int line = draw_set_line(s, set.kind), half = line / 2 + 1, tag_h = draw_tag_height(s);
    for (int i : draw_order(set)) {
        int p[4];
        if (!draw_pixel_box(set.boxes[i], m.cols, m.rows, p)) continue;
        uint8_t c[3];
        draw_colour_of(set.boxes[i], set.kind, c);
        std::string t = draw_label_text(set.boxes[i], names, n_names);
        int ty;
        if (set.kind == DRAW_PREDICTION) {
            // above the top edge; inside the box when there is no room above
            ty = p[1] - half - tag_h;
            if (ty < 0) ty = p[1] + half;
        } else {
            // below the bottom edge; inside the box when there is no room below
            ty = p[3] + half + 1;
            if (ty + tag_h > m.rows) ty = p[3] - half - tag_h;
        }
        draw_tag(m, t, p[0] - half, ty, c, s);
    }
}

// Every line before any tag, so no box line ever crosses a label.
int draw_sets(uint8_t *img, int w, int h, const draw_set *sets, int n_sets, const char *const *names, int n_names) {
    cv::Mat m(h, w, CV_8UC3, img);
    draw_style s = draw_style_for(w, h);
    int drawn = 0;
    for (int k = 0; k < n_sets; k++) drawn += draw_lines(m, sets[k], s);
    for (int k = 0; k < n_sets; k++) draw_tags(m, sets[k], s, names, n_names);
    return drawn;
}

// Legend tags laid out left to right from (pad, y0 + pad), wrapping at the image width; returns
// the height used. draw = false only measures.
int draw_legend_layout(cv::Mat *m, int w, int y0, const draw_style &s, const char *const *texts,
                       const uint8_t (*colours)[3], int n) {
    int x = s.pad, y = y0 + s.pad, th = draw_tag_height(s), base = 0;
    for (int i = 0; i < n; i++) {
        cv::Size ts = cv::getTextSize(texts[i], cv::FONT_HERSHEY_SIMPLEX, s.scale, s.text, &base);
        int tw = ts.width + 2 * s.pad;
        if (x > s.pad && x + tw > w - s.pad) {
            x = s.pad;
            y += th + s.pad;
        }
        if (m) draw_tag(*m, texts[i], x, y, colours[i], s);
        x += tw + 2 * s.pad;
    }
    return y + th + s.pad - y0;
}

}  // namespace

extern "C" void draw_class_colour(int label, uint8_t rgb[3]) {
    if (label >= 0 && label < draw_n_palette) {
        for (int k = 0; k < 3; k++) rgb[k] = draw_palette[label][k];
        return;
    }
    // Golden-angle hues over [0, 360) minus the greens (75..165 degrees), full saturation, value 1.
    double u = std::fmod((label < 0 ? -label : label) * 0.618033988749895, 1.0);
    double hue = u * 270.0;
    if (hue >= 75.0) hue += 90.0;
    double hp = hue / 60.0, x = 1 - std::fabs(std::fmod(hp, 2.0) - 1);
    double r = 0, g = 0, b = 0;
    if (hp < 1) r = 1, g = x;
    else if (hp < 2) r = x, g = 1;
    else if (hp < 3) g = 1, b = x;
    else if (hp < 4) g = x, b = 1;
    else if (hp < 5) r = x, b = 1;
    else r = 1, b = x;
    rgb[0] = (uint8_t)std::lround(255 * r);
    rgb[1] = (uint8_t)std::lround(255 * g);
    rgb[2] = (uint8_t)std::lround(255 * b);
}

extern "C" void draw_gt_colour(uint8_t rgb[3]) {
    for (int k = 0; k < 3; k++) rgb[k] = draw_gt[k];
}

extern "C" int draw_line_width(int w, int h) {
    int m = std::min(w, h);
    return std::max(2, (int)std::lround(m / 400.0));
}

extern "C" int draw_boxes(uint8_t *img, int w, int h, const draw_box *boxes, int n, const char *const *names,
                          int n_names, draw_kind kind) {
    return kind == DRAW_GROUND_TRUTH ? draw_detections(img, w, h, boxes, n, NULL, 0, names, n_names)
                                     : draw_detections(img, w, h, NULL, 0, boxes, n, names, n_names);
}

extern "C" int draw_detections(uint8_t *img, int w, int h, const draw_box *gt, int n_gt, const draw_box *pred,
                               int n_pred, const char *const *names, int n_names) {
    if (!img || w <= 0 || h <= 0 || n_gt < 0 || n_pred < 0 || (n_gt > 0 && !gt) || (n_pred > 0 && !pred))
        return ote_err(OTE_EINVAL, "draw: bad image %dx%d or box lists (%d, %d)", w, h, n_gt, n_pred);
    try {
        const draw_set sets[2] = {{gt, n_gt, DRAW_GROUND_TRUTH}, {pred, n_pred, DRAW_PREDICTION}};
        return draw_sets(img, w, h, sets, 2, names, n_names);
    } catch (const std::exception &e) {
        return ote_err(OTE_EINVAL, "draw: %dx%d image: %s", w, h, e.what());
    } catch (...) {
        return ote_err(OTE_EINVAL, "draw: %dx%d image: unknown failure", w, h);
    }
}

extern "C" int draw_legend_height(int w, int h, const char *const *texts, int n) {
    if (w <= 0 || h <= 0 || n < 0 || (n > 0 && !texts)) return ote_err(OTE_EINVAL, "draw: bad legend for %dx%d", w, h);
    try {
        std::vector<uint8_t> dummy(3 * (size_t)(n > 0 ? n : 1));
        return draw_legend_layout(nullptr, w, 0, draw_style_for(w, h), texts, (const uint8_t(*)[3])dummy.data(), n);
    } catch (...) {
        return ote_err(OTE_EINVAL, "draw: legend: measuring failed");
    }
}

extern "C" int draw_legend(uint8_t *img, int w, int h, int y0, int style_h, const char *const *texts,
                           const uint8_t (*colours)[3], int n) {
    if (!img || w <= 0 || h <= 0 || y0 < 0 || y0 >= h || style_h <= 0 || n < 0 || (n > 0 && (!texts || !colours)))
        return ote_err(OTE_EINVAL, "draw: bad image %dx%d or legend (%d at row %d)", w, h, n, y0);
    try {
        cv::Mat m(h, w, CV_8UC3, img);
        cv::rectangle(m, cv::Point(0, y0), cv::Point(w - 1, h - 1), cv::Scalar(40, 40, 40), cv::FILLED);
        draw_legend_layout(&m, w, y0, draw_style_for(w, style_h), texts, colours, n);
        return 0;
    } catch (const std::exception &e) {
        return ote_err(OTE_EINVAL, "draw: legend: %s", e.what());
    } catch (...) {
        return ote_err(OTE_EINVAL, "draw: legend: unknown failure");
    }
}

// plot.cpp: the raster canvas and the chart types of plot.h.
//
// Anti-aliasing is by coverage: exact pixel area for rectangles (so text quads and bars have
// soft fractional edges), distance to the segment for strokes, 4 sub-scanlines with exact
// horizontal spans for polygons. Strokes and text are first gathered into a coverage Mask
// and blended once, so overlapping pieces of one shape do not darken each other.
//
// Each chart is laid out from the outside in: margins, title, axis labels, tick labels and
// legend take their measured room, the data area is what remains.
#include "engine/io/plot.h"

#include <algorithm>
#include <cstring>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace vt {

// ---- colours ---------------------------------------------------------------------------

Rgb palette_color(int i) {
    static const Rgb okabe_ito[8] = {{0, 114, 178}, {213, 94, 0},   {0, 158, 115},  {204, 121, 167},
                                     {230, 159, 0}, {86, 180, 233}, {240, 228, 66}, {0, 0, 0}};
    return okabe_ito[((i % 8) + 8) % 8];
}

Rgb colormap_viridis(float t) {
    static const Rgb anchors[11] = {{68, 1, 84},    {72, 36, 117},  {65, 68, 135},  {53, 95, 141},
                                    {42, 120, 142}, {33, 145, 140}, {34, 168, 132}, {68, 191, 112},
                                    {122, 209, 81}, {189, 223, 38}, {253, 231, 37}};
    if (!std::isfinite(t)) return RGB_MISSING;
    t = std::min(1.f, std::max(0.f, t)) * 10;
    int i = std::min((int)t, 9);
    float f = t - i;
    auto mix = [&](uint8_t a, uint8_t b) { return (uint8_t)std::lround(a + (b - a) * f); };
    return {mix(anchors[i].r, anchors[i + 1].r), mix(anchors[i].g, anchors[i + 1].g),
            mix(anchors[i].b, anchors[i + 1].b)};
}

// ---- canvas ----------------------------------------------------------------------------

namespace {

int clampi(float v, int lo, int hi) {  // also safe for huge or NaN v
    if (!(v > lo)) return lo;
    if (!(v < hi)) return hi;
    return (int)v;
}

void blend(Canvas& c, int x, int y, Rgb col, float a) {
    if (a <= 0 || x < c.clip_x0 || x >= c.clip_x1 || y < c.clip_y0 || y >= c.clip_y1) return;
    uint8_t* p = &c.img.rgb[((size_t)y * c.img.W + x) * 3];
    if (a >= 1) {
        p[0] = col.r, p[1] = col.g, p[2] = col.b;
        return;
    }
    p[0] = (uint8_t)std::lround(p[0] + (col.r - p[0]) * a);
    p[1] = (uint8_t)std::lround(p[1] + (col.g - p[1]) * a);
    p[2] = (uint8_t)std::lround(p[2] + (col.b - p[2]) * a);
}

// Coverage over a window of the canvas (inside its clip), blended in one go.
struct Mask {
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // window [x0, x1) x [y0, y1)
    std::vector<float> a;                // (y1 - y0, x1 - x0) coverage; sums are clamped to 1
    float& at(int x, int y) { return a[(size_t)(y - y0) * (x1 - x0) + (x - x0)]; }
};

Mask mask_new(const Canvas& c, float bx0, float by0, float bx1, float by1) {
    Mask m;
    m.x0 = clampi(std::floor(bx0), c.clip_x0, c.clip_x1), m.x1 = clampi(std::ceil(bx1), c.clip_x0, c.clip_x1);
    m.y0 = clampi(std::floor(by0), c.clip_y0, c.clip_y1), m.y1 = clampi(std::ceil(by1), c.clip_y0, c.clip_y1);
    m.x1 = std::max(m.x1, m.x0), m.y1 = std::max(m.y1, m.y0);
    m.a.assign((size_t)(m.x1 - m.x0) * (m.y1 - m.y0), 0.f);
    return m;
}

void mask_blend(Canvas& c, Mask& m, Rgb col, float alpha) {
    for (int y = m.y0; y < m.y1; y++)
        for (int x = m.x0; x < m.x1; x++) blend(c, x, y, col, std::min(1.f, m.at(x, y)) * alpha);
}

// Pixel-area coverage of the rectangle, max-combined.
void mask_rect(Mask& m, float x0, float y0, float x1, float y1) {
    int ix0 = clampi(std::floor(x0), m.x0, m.x1), ix1 = clampi(std::ceil(x1), m.x0, m.x1);
    int iy0 = clampi(std::floor(y0), m.y0, m.y1), iy1 = clampi(std::ceil(y1), m.y0, m.y1);
    for (int y = iy0; y < iy1; y++) {
        float cy = std::min<float>(y + 1, y1) - std::max<float>(y, y0);
        for (int x = ix0; x < ix1; x++) {
            float cx = std::min<float>(x + 1, x1) - std::max<float>(x, x0);
            m.at(x, y) = std::max(m.at(x, y), cx * cy);
        }
    }
}

// Coverage of a round-capped segment of half-width hw from the distance to its axis.
void mask_segment(Mask& m, float ax, float ay, float bx, float by, float hw) {
    int ix0 = clampi(std::floor(std::min(ax, bx) - hw - 1), m.x0, m.x1);
    int ix1 = clampi(std::ceil(std::max(ax, bx) + hw + 1), m.x0, m.x1);
    int iy0 = clampi(std::floor(std::min(ay, by) - hw - 1), m.y0, m.y1);
    int iy1 = clampi(std::ceil(std::max(ay, by) + hw + 1), m.y0, m.y1);
    float dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    for (int y = iy0; y < iy1; y++)
        for (int x = ix0; x < ix1; x++) {
            float px = x + 0.5f - ax, py = y + 0.5f - ay;
            float t = len2 > 0 ? std::min(1.f, std::max(0.f, (px * dx + py * dy) / len2)) : 0.f;
            float d = std::hypot(px - t * dx, py - t * dy);
            float cov = std::min(1.f, std::max(0.f, hw + 0.5f - d));
            if (cov > 0) m.at(x, y) = std::max(m.at(x, y), cov);
        }
}

bool finite_pt(const Point& p) { return std::isfinite(p.x) && std::isfinite(p.y); }

}  // namespace

Canvas canvas_new(int W, int H, Rgb background) {
    CHECK(W > 0 && H > 0 && W <= IMAGE_MAX_SIDE && H <= IMAGE_MAX_SIDE, "canvas_new: size %dx%d (expected 1..%d)", W,
          H, IMAGE_MAX_SIDE);
    Canvas c;
    c.img.W = W, c.img.H = H;
    c.img.rgb.resize((size_t)W * H * 3);
    for (size_t i = 0; i < (size_t)W * H; i++)
        c.img.rgb[i * 3] = background.r, c.img.rgb[i * 3 + 1] = background.g, c.img.rgb[i * 3 + 2] = background.b;
    c.clip_x1 = W, c.clip_y1 = H;
    return c;
}

void canvas_set_clip(Canvas& c, int x0, int y0, int x1, int y1) {
    c.clip_x0 = std::min(std::max(x0, 0), c.img.W), c.clip_x1 = std::min(std::max(x1, c.clip_x0), c.img.W);
    c.clip_y0 = std::min(std::max(y0, 0), c.img.H), c.clip_y1 = std::min(std::max(y1, c.clip_y0), c.img.H);
}

void canvas_fill_rect(Canvas& c, float x0, float y0, float x1, float y1, Rgb color, float alpha) {
    if (!(std::isfinite(x0) && std::isfinite(y0) && std::isfinite(x1) && std::isfinite(y1))) return;
    if (x0 > x1) std::swap(x0, x1);
    if (y0 > y1) std::swap(y0, y1);
    int ix0 = clampi(std::floor(x0), c.clip_x0, c.clip_x1), ix1 = clampi(std::ceil(x1), c.clip_x0, c.clip_x1);
    int iy0 = clampi(std::floor(y0), c.clip_y0, c.clip_y1), iy1 = clampi(std::ceil(y1), c.clip_y0, c.clip_y1);
    for (int y = iy0; y < iy1; y++) {
        float cy = std::min<float>(y + 1, y1) - std::max<float>(y, y0);
        for (int x = ix0; x < ix1; x++) {
            float cx = std::min<float>(x + 1, x1) - std::max<float>(x, x0);
            blend(c, x, y, color, cx * cy * alpha);
        }
    }
}

void canvas_stroke_rect(Canvas& c, float x0, float y0, float x1, float y1, float width, Rgb color) {
    if (x0 > x1) std::swap(x0, x1);
    if (y0 > y1) std::swap(y0, y1);
    float w = std::min({width, (x1 - x0) / 2, (y1 - y0) / 2});
    canvas_fill_rect(c, x0, y0, x1, y0 + w, color);
    canvas_fill_rect(c, x0, y1 - w, x1, y1, color);
    canvas_fill_rect(c, x0, y0 + w, x0 + w, y1 - w, color);
    canvas_fill_rect(c, x1 - w, y0 + w, x1, y1 - w, color);
}

void canvas_line(Canvas& c, float x0, float y0, float x1, float y1, const Stroke& s) {
    canvas_polyline(c, {{x0, y0}, {x1, y1}}, s);
}

void canvas_polyline(Canvas& c, const std::vector<Point>& pts, const Stroke& s) {
    float hw = std::max(0.f, s.width) / 2;
    float bx0 = INFINITY, by0 = INFINITY, bx1 = -INFINITY, by1 = -INFINITY;
    for (const Point& p : pts)
        if (finite_pt(p)) bx0 = std::min(bx0, p.x), by0 = std::min(by0, p.y), bx1 = std::max(bx1, p.x), by1 = std::max(by1, p.y);
    if (bx0 > bx1) return;
    Mask m = mask_new(c, bx0 - hw - 1, by0 - hw - 1, bx1 + hw + 1, by1 + hw + 1);
    float on = s.dash, off = s.dash * 0.7f, phase = 0;  // phase: distance into the current on+off period
    for (size_t i = 0; i < pts.size(); i++) {
        if (!finite_pt(pts[i])) continue;
        bool prev = i > 0 && finite_pt(pts[i - 1]), next = i + 1 < pts.size() && finite_pt(pts[i + 1]);
        if (!prev && !next) mask_segment(m, pts[i].x, pts[i].y, pts[i].x, pts[i].y, std::max(hw, 1.5f));  // lone point
        if (!next) continue;
        Point a = pts[i], b = pts[i + 1];
        float len = std::hypot(b.x - a.x, b.y - a.y);
        if (on <= 0 || len == 0) {
            mask_segment(m, a.x, a.y, b.x, b.y, hw);
            continue;
        }
        for (float t = 0; t < len;) {  // walk the dash pattern along the segment
            bool drawing = phase < on;
            float step = std::min(len - t, drawing ? on - phase : on + off - phase);
            if (drawing) {
                float u0 = t / len, u1 = (t + step) / len;
                mask_segment(m, a.x + (b.x - a.x) * u0, a.y + (b.y - a.y) * u0, a.x + (b.x - a.x) * u1,
                             a.y + (b.y - a.y) * u1, hw);
            }
            t += step, phase += step;
            if (phase >= on + off - 1e-4f) phase = 0;
        }
    }
    mask_blend(c, m, s.color, s.alpha);
}

void canvas_fill_polygon(Canvas& c, const std::vector<Point>& pts_in, Rgb color, float alpha) {
    std::vector<Point> pts;
    for (const Point& p : pts_in)
        if (finite_pt(p)) pts.push_back(p);
    if (pts.size() < 3) return;
    float bx0 = INFINITY, by0 = INFINITY, bx1 = -INFINITY, by1 = -INFINITY;
    for (const Point& p : pts) bx0 = std::min(bx0, p.x), by0 = std::min(by0, p.y), bx1 = std::max(bx1, p.x), by1 = std::max(by1, p.y);
    Mask m = mask_new(c, bx0, by0, bx1, by1);
    const int S = 4;  // sub-scanlines per pixel row
    std::vector<std::pair<float, int>> xs;  // crossings: x, winding direction
    for (int y = m.y0; y < m.y1; y++)
        for (int s = 0; s < S; s++) {
            float sy = y + (s + 0.5f) / S;
            xs.clear();
            for (size_t i = 0; i < pts.size(); i++) {
                const Point& p = pts[i];
                const Point& q = pts[(i + 1) % pts.size()];
                if ((p.y <= sy) != (q.y <= sy)) xs.push_back({p.x + (sy - p.y) * (q.x - p.x) / (q.y - p.y), q.y > p.y ? 1 : -1});
            }
            std::sort(xs.begin(), xs.end());
            int wind = 0;
            for (size_t k = 0; k + 1 < xs.size(); k++) {
                wind += xs[k].second;
                if (wind == 0) continue;
                float xa = std::max<float>(xs[k].first, m.x0), xb = std::min<float>(xs[k + 1].first, m.x1);
                for (int x = clampi(std::floor(xa), m.x0, m.x1); x < xb && x < m.x1; x++)
                    m.at(x, y) += (std::min<float>(x + 1, xb) - std::max<float>(x, xa)) / S;
            }
        }
    mask_blend(c, m, color, alpha);
}

void canvas_circle(Canvas& c, float cx, float cy, float r, Rgb color, float alpha) {
    Mask m = mask_new(c, cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1);
    mask_segment(m, cx, cy, cx, cy, r);
    mask_blend(c, m, color, alpha);
}

// ---- text ------------------------------------------------------------------------------

namespace {

constexpr float FONT_CAP = 7, FONT_DESC = 9, FONT_PITCH = 11;  // font units: capital height,
                                                               // descender depth, line pitch

// Printable ASCII only: stb_easy_font indexes its tables with (char - 32) unchecked.
std::string text_ascii(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        unsigned char ch = s[i], next = i + 1 < s.size() ? s[i + 1] : 0;
        if (ch == '\n' || (ch >= 32 && ch < 127)) {
            out += (char)ch;
        } else if (ch == 0xc2 && next == 0xb1) {
            out += "+/-", i++;
        } else if ((ch == 0xc2 && next == 0xb5) || (ch == 0xce && next == 0xbc)) {
            out += "u", i++;
        } else if (ch < 0x80 || ch >= 0xc0) {  // a control byte, or the lead byte of a UTF-8 sequence
            out += '?';
        }  // continuation bytes are dropped
    }
    return out;
}

std::vector<std::string> text_lines(const std::string& s) {
    std::vector<std::string> lines(1);
    for (char ch : text_ascii(s)) {
        if (ch == '\n') lines.emplace_back();
        else lines.back() += ch;
    }
    return lines;
}

// The quads of one line of glyphs, in font units from its top left: 16 floats each, of
// which (0, 1) and (8, 9) are opposite corners.
int line_quads(std::vector<float>& vb, std::string line) {
    vb.assign(line.size() * 256 + 64, 0.f);  // 16 bytes a vertex, 4 a quad, < 16 quads a glyph
    return stb_easy_font_print(0, 0, line.data(), nullptr, vb.data(), (int)(vb.size() * sizeof(float)));
}

float line_units(const std::string& line) {  // ink width in font units
    std::vector<float> vb;
    float w = 0;
    for (int q = 0, n = line_quads(vb, line); q < n; q++) w = std::max({w, vb[(size_t)q * 16], vb[(size_t)q * 16 + 8]});
    return w;
}

}  // namespace

float text_width(const std::string& text, float scale) {
    float w = 0;
    for (const std::string& l : text_lines(text)) w = std::max(w, line_units(l));
    return w * scale;
}

float text_height(const std::string& text, float scale) {
    return (FONT_PITCH * (text_lines(text).size() - 1) + FONT_DESC) * scale;
}

void canvas_text(Canvas& c, float x, float y, const std::string& text, const TextStyle& st) {
    std::vector<std::string> lines = text_lines(text);
    float s = st.scale, bw = 0;  // bw: block width in units
    for (const std::string& l : lines) bw = std::max(bw, line_units(l));
    if (bw == 0 || !std::isfinite(x) || !std::isfinite(y)) return;
    float n = (float)lines.size();
    // Offsets of the anchor into the block: along the text (start, middle, end of the widest
    // line) and across it (top, middle of the capitals, bottom of the descenders), in px.
    auto along = [&](int k) { return k == 0 ? 0.f : k == 1 ? bw * s / 2 : bw * s; };
    auto across = [&](int k) {
        return k == 0 ? 0.f : k == 1 ? (FONT_PITCH * (n - 1) + FONT_CAP) * s / 2 : (FONT_PITCH * (n - 1) + FONT_DESC) * s;
    };
    int h = st.halign == HAlign::Left ? 0 : st.halign == HAlign::Center ? 1 : 2;
    int v = st.valign == VAlign::Top ? 0 : st.valign == VAlign::Middle ? 1 : 2;
    int along_k = st.vertical ? 2 - v : h;  // turned text starts at the bottom
    // Screen position of font-unit point (u along, w across) of the block.
    float ox, oy;
    if (!st.vertical) ox = x - along(h), oy = y - across(v);
    else ox = x - across(h), oy = y + along(2 - v);  // oy: where the text starts
    auto to_screen = [&](float u, float w, float& sx, float& sy) {
        if (!st.vertical) sx = ox + u * s, sy = oy + w * s;
        else sx = ox + w * s, sy = oy - u * s;
    };
    float blk = (FONT_PITCH * (n - 1) + FONT_DESC) * s;
    Mask m = st.vertical ? mask_new(c, ox - 2, oy - bw * s - 2, ox + blk + 2, oy + 2)
                         : mask_new(c, ox - 2, oy - 2, ox + bw * s + 2, oy + blk + 2);
    std::vector<float> vb;
    for (size_t i = 0; i < lines.size(); i++) {
        if (lines[i].empty()) continue;
        int nq = line_quads(vb, lines[i]);
        float shift = (bw - line_units(lines[i])) * (along_k == 0 ? 0.f : along_k == 1 ? 0.5f : 1.f);
        for (int q = 0; q < nq; q++) {
            const float* v0 = &vb[(size_t)q * 16];  // vertices 0 and 2 are opposite corners
            const float* v2 = &vb[(size_t)q * 16 + 8];
            float ax, ay, bx, by;
            to_screen(v0[0] + shift, v0[1] + FONT_PITCH * i, ax, ay);
            to_screen(v2[0] + shift, v2[1] + FONT_PITCH * i, bx, by);
            mask_rect(m, std::min(ax, bx), std::min(ay, by), std::max(ax, bx), std::max(ay, by));
        }
    }
    mask_blend(c, m, st.color, 1);
}

// ---- axes ------------------------------------------------------------------------------

std::vector<double> plot_nice_ticks(double lo, double hi, int target) {
    std::vector<double> v;
    if (!(std::isfinite(lo) && std::isfinite(hi)) || hi <= lo) return v;
    double raw = (hi - lo) / std::max(1, target), mag = std::pow(10.0, std::floor(std::log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
    for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) v.push_back(k * step == 0 ? 0.0 : k * step);
    return v;
}

float plot_x_px(const PlotAxes& a, double x) {
    return (float)(a.left + (x - a.xmin) / (a.xmax - a.xmin) * (a.right - a.left));
}

float plot_y_px(const PlotAxes& a, double y) {
    return (float)(a.bottom - (y - a.ymin) / (a.ymax - a.ymin) * (a.bottom - a.top));
}

namespace {

constexpr Rgb GRID_GREY{232, 232, 232}, SPAN_FILL{233, 236, 242}, AXIS_GREY{80, 80, 80}, SOFT_INK{85, 85, 85};
constexpr float FS_TITLE = 2.5f, FS_LABEL = 2, FS_TICK = 2, FS_SMALL = 1.75f;
constexpr int MARGIN = 16, TICK_LEN = 5, TICK_GAP = 5;

struct Ticks {
    std::vector<double> v;
    int decimals = 0;
};

Ticks ticks_make(double lo, double hi, int target) {
    Ticks t;
    t.v = plot_nice_ticks(lo, hi, target);
    if (t.v.size() >= 2) t.decimals = std::max(0, (int)-std::floor(std::log10(t.v[1] - t.v[0]) + 1e-9));
    return t;
}

std::string number_label(double v, int decimals) {
    if (std::fabs(v) >= 1e6 || decimals > 6) return strfmt("%.3g", v);
    std::string s = strfmt("%.*f", decimals, v);
    if (s.find_first_not_of("-0.") == std::string::npos && s[0] == '-') s.erase(0, 1);  // "-0.0"
    return s;
}

float ticks_width(const Ticks& t, float fs) {
    float w = 0;
    for (double v : t.v) w = std::max(w, text_width(number_label(v, t.decimals), fs));
    return w;
}

struct Range {
    double lo = INFINITY, hi = -INFINITY;
    void add(double v) {
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    }
};

// The axis limits: the data range padded by `pad` of its size, user limits where finite.
void range_limits(double& lo, double& hi, Range r, double pad, float user_lo, float user_hi, const char* what,
                  const std::string& path) {
    if (r.lo > r.hi) r.lo = 0, r.hi = 1;
    if (r.hi - r.lo <= 1e-12 * std::max(1.0, std::fabs(r.hi))) {
        double d = r.lo == 0 ? 1 : std::fabs(r.lo) * 0.1;
        r.lo -= d, r.hi += d, pad = 0;
    }
    double d = (r.hi - r.lo) * pad;
    lo = std::isfinite(user_lo) ? user_lo : r.lo - d;
    hi = std::isfinite(user_hi) ? user_hi : r.hi + d;
    if (!(lo < hi))
        fail("plot '%s': %s axis from %g to %g is empty (set %smin below %smax, or NaN to fit the data)", path.c_str(),
             what, lo, hi, what, what);
}

void axes_grid(Canvas& c, const PlotAxes& a, const Ticks& yt) {
    for (double v : yt.v) {
        float y = std::round(plot_y_px(a, v)) + 0.5f;
        if (y > a.top && y < a.bottom) canvas_line(c, a.left, y, a.right, y, {1, GRID_GREY});
    }
}

// Left and bottom spines, y ticks with labels, and x ticks with labels when xt is given.
void axes_frame(Canvas& c, const PlotAxes& a, const Ticks* xt, const Ticks& yt, float fs) {
    canvas_set_clip(c, 0, 0, c.img.W, c.img.H);
    canvas_fill_rect(c, a.left - 1, a.top, a.left, a.bottom + 1, AXIS_GREY);
    canvas_fill_rect(c, a.left - 1, a.bottom, a.right, a.bottom + 1, AXIS_GREY);
    for (double v : yt.v) {
        float y = std::round(plot_y_px(a, v)) + 0.5f;
        canvas_fill_rect(c, a.left - 1 - TICK_LEN, y - 0.5f, a.left - 1, y + 0.5f, AXIS_GREY);
        canvas_text(c, a.left - 1 - TICK_LEN - TICK_GAP, y, number_label(v, yt.decimals),
                    {fs, RGB_INK, HAlign::Right, VAlign::Middle});
    }
    if (!xt) return;
    for (double v : xt->v) {
        float x = std::round(plot_x_px(a, v)) - 0.5f;
        canvas_fill_rect(c, x - 0.5f, a.bottom + 1, x + 0.5f, a.bottom + 1 + TICK_LEN, AXIS_GREY);
        canvas_text(c, x, a.bottom + 1 + TICK_LEN + TICK_GAP, number_label(v, xt->decimals),
                    {fs, RGB_INK, HAlign::Center, VAlign::Top});
    }
}

// Title, x label and y label around the data area.
void axes_labels(Canvas& c, const PlotAxes& a, const std::string& title, const std::string& xlabel,
                 const std::string& ylabel) {
    float cx = (a.left + a.right) / 2.f;
    if (!title.empty()) canvas_text(c, cx, MARGIN, title, {FS_TITLE, RGB_INK, HAlign::Center, VAlign::Top});
    if (!xlabel.empty())
        canvas_text(c, cx, c.img.H - MARGIN, xlabel, {FS_LABEL, RGB_INK, HAlign::Center, VAlign::Bottom});
    if (!ylabel.empty())
        canvas_text(c, MARGIN, (a.top + a.bottom) / 2.f, ylabel, {FS_LABEL, RGB_INK, HAlign::Left, VAlign::Middle, true});
}

float title_room(const std::string& title) { return title.empty() ? 0 : text_height(title, FS_TITLE) + 14; }

// ---- legend ----------------------------------------------------------------------------

struct LegendEntry {
    std::string label;
    Rgb color;
    bool box = false;   // a filled square (bars) instead of a line
    bool band = false;  // a shaded band behind the line
    float dash = 0;
};

constexpr float LEG_PAD = 8, LEG_SWATCH = 28, LEG_ROW = 22;

float legend_w(const std::vector<LegendEntry>& e) {
    float w = 0;
    for (const LegendEntry& x : e) w = std::max(w, text_width(x.label, FS_LABEL));
    return e.empty() ? 0 : 2 * LEG_PAD + LEG_SWATCH + 8 + w;
}

float legend_h(const std::vector<LegendEntry>& e) {
    return e.empty() ? 0 : 2 * LEG_PAD + (e.size() - 1) * LEG_ROW + FONT_DESC * FS_LABEL;
}

void legend_draw(Canvas& c, const std::vector<LegendEntry>& e, float x, float y) {
    canvas_fill_rect(c, x, y, x + legend_w(e), y + legend_h(e), RGB_WHITE, 0.9f);
    canvas_stroke_rect(c, x, y, x + legend_w(e), y + legend_h(e), 1, {210, 210, 210});
    for (size_t i = 0; i < e.size(); i++) {
        float ty = y + LEG_PAD + i * LEG_ROW, my = ty + FONT_CAP * FS_LABEL / 2, sx = x + LEG_PAD;
        if (e[i].box) {
            canvas_fill_rect(c, sx + 7, my - 7, sx + 21, my + 7, e[i].color);
        } else {
            if (e[i].band) canvas_fill_rect(c, sx, my - 6, sx + LEG_SWATCH, my + 6, e[i].color, 0.2f);
            canvas_line(c, sx + 2, my, sx + LEG_SWATCH - 2, my, {2.5f, e[i].color, 1, e[i].dash});
        }
        canvas_text(c, sx + LEG_SWATCH + 8, my, e[i].label, {FS_LABEL, RGB_INK, HAlign::Left, VAlign::Middle});
    }
}

// Places the legend inside the data area, in the corner (top right, top left, bottom right,
// bottom left) where the fewest pixels changed since `base` (the data drawn after it).
// False when every corner covers more than 0.5% changed pixels, unless `force`d.
bool legend_inside(Canvas& c, const Image& base, const PlotAxes& a, const std::vector<LegendEntry>& e, bool force) {
    float w = legend_w(e), h = legend_h(e), inset = 8;
    if (w + 2 * inset > a.right - a.left || h + 2 * inset > a.bottom - a.top) {
        if (force) legend_draw(c, e, a.left + inset, a.top + inset);
        return force;
    }
    const float xs[4] = {a.right - inset - w, a.left + inset, a.right - inset - w, a.left + inset};
    const float ys[4] = {a.top + inset, a.top + inset, a.bottom - inset - h, a.bottom - inset - h};
    int best = -1;
    double best_frac = 2;
    for (int k = 0; k < 4; k++) {
        int64_t changed = 0, total = 0;
        for (int y = (int)ys[k]; y < (int)(ys[k] + h); y++)
            for (int x = (int)xs[k]; x < (int)(xs[k] + w); x++, total++)
                changed += memcmp(&c.img.rgb[((size_t)y * c.img.W + x) * 3], &base.rgb[((size_t)y * c.img.W + x) * 3], 3) != 0;
        double frac = (double)changed / std::max<int64_t>(1, total);
        if (frac < best_frac - 1e-9) best = k, best_frac = frac;
    }
    if (best_frac > 0.005 && !force) return false;
    legend_draw(c, e, xs[best], ys[best]);
    return true;
}

// A legend right of the data leaves it at least half the width it had; else it goes inside.
bool legend_room_right(int W, int left, const std::vector<LegendEntry>& e) {
    return !e.empty() && W - MARGIN - legend_w(e) - 16 - left >= (W - MARGIN - left) / 2;
}

void check_size(const std::string& path, const char* what, int W, int H) {
    if (W < 200 || H < 150 || W > IMAGE_MAX_SIDE || H > IMAGE_MAX_SIDE)
        fail("%s '%s': figure size %dx%d (expected width 200..%d, height 150..%d)", what, path.c_str(), W, H,
             IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
}

std::string series_name(const std::string& label, size_t i) {
    return label.empty() ? strfmt("series %zu", i) : strfmt("series %zu ('%s')", i, label.c_str());
}

// ---- line drawing shared by plot_lines and plot_grid_lines -----------------------------

void series_check(const std::string& path, const char* what, const LineSeries& s, size_t i) {
    std::string name = series_name(s.label, i);
    if (s.x.empty()) fail("%s '%s': %s has no points (x is empty)", what, path.c_str(), name.c_str());
    if (s.y.size() != s.x.size())
        fail("%s '%s': %s has %zu x values and %zu y values (expected equal)", what, path.c_str(), name.c_str(),
             s.x.size(), s.y.size());
    if (!s.y_err.empty() && s.y_err.size() != s.y.size())
        fail("%s '%s': %s has %zu y_err values for %zu points (expected %zu, or none)", what, path.c_str(),
             name.c_str(), s.y_err.size(), s.y.size(), s.y.size());
}

void series_ranges(const LineSeries& s, Range& rx, Range& ry) {
    for (size_t j = 0; j < s.x.size(); j++) {
        if (!std::isfinite(s.x[j]) || !std::isfinite(s.y[j])) continue;
        rx.add(s.x[j]), ry.add(s.y[j]);
        if (!s.y_err.empty() && std::isfinite(s.y_err[j])) ry.add(s.y[j] - s.y_err[j]), ry.add(s.y[j] + s.y_err[j]);
    }
}

Rgb series_color(int color, size_t i) { return palette_color(color >= 0 ? color : (int)i); }

void series_bands(Canvas& c, const PlotAxes& a, const LineSeries& s, Rgb col) {
    if (s.y_err.empty()) return;
    std::vector<Point> up, down;
    auto flush = [&] {
        if (up.size() >= 2) {
            up.insert(up.end(), down.rbegin(), down.rend());
            canvas_fill_polygon(c, up, col, 0.2f);
        }
        up.clear(), down.clear();
    };
    for (size_t j = 0; j < s.x.size(); j++) {
        if (!(std::isfinite(s.x[j]) && std::isfinite(s.y[j]) && std::isfinite(s.y_err[j]))) {
            flush();
            continue;
        }
        float x = plot_x_px(a, s.x[j]);
        up.push_back({x, plot_y_px(a, s.y[j] + s.y_err[j])});
        down.push_back({x, plot_y_px(a, s.y[j] - s.y_err[j])});
    }
    flush();
}

void series_line(Canvas& c, const PlotAxes& a, const LineSeries& s, Rgb col, float width_scale) {
    std::vector<Point> pts;
    for (size_t j = 0; j < s.x.size(); j++)
        pts.push_back(std::isfinite(s.x[j]) && std::isfinite(s.y[j]) ? Point{plot_x_px(a, s.x[j]), plot_y_px(a, s.y[j])}
                                                                     : Point{NAN, NAN});
    canvas_polyline(c, pts, {s.width * width_scale, col, 1, s.dash});
    if (s.markers)
        for (const Point& p : pts)
            if (finite_pt(p)) canvas_circle(c, p.x, p.y, s.width * width_scale * 1.2f, col);
}

void spans_draw(Canvas& c, const PlotAxes& a, const std::vector<XSpan>& spans, bool labels, float fs) {
    for (const XSpan& sp : spans) {
        float x0 = plot_x_px(a, sp.x0), x1 = plot_x_px(a, sp.x1);
        if (!labels) canvas_fill_rect(c, x0, a.top, x1, a.bottom, SPAN_FILL);
        else if (!sp.label.empty())  // above the data area, where no data can hide it
            canvas_text(c, std::max<float>(std::min(x0, x1), a.left) + 2, a.top - 4, sp.label,
                        {fs, SOFT_INK, HAlign::Left, VAlign::Bottom});
    }
}

void hlines_draw(Canvas& c, const PlotAxes& a, const std::vector<RefLine>& refs) {
    for (const RefLine& r : refs) {
        float y = std::round(plot_y_px(a, r.y)) + 0.5f;
        canvas_line(c, a.left, y, a.right, y, {1.5f, r.color, 1, 6});
        bool above = y - a.top > text_height(r.label, FS_SMALL) + 6;  // else below the line
        if (!r.label.empty())
            canvas_text(c, a.right - 6, above ? y - 5 : y + 6, r.label,
                        {FS_SMALL, r.color, HAlign::Right, above ? VAlign::Bottom : VAlign::Top});
    }
}

}  // namespace

// ---- plot_lines ------------------------------------------------------------------------

namespace {

Canvas lines_render(const std::string& path, const LinePlot& p, bool outside, PlotAxes& a, bool& legend_ok) {
    Range rx, ry;
    for (const LineSeries& s : p.series) series_ranges(s, rx, ry);
    for (const RefLine& r : p.hlines) ry.add(r.y);
    range_limits(a.xmin, a.xmax, rx, 0, p.xmin, p.xmax, "x", path);
    range_limits(a.ymin, a.ymax, ry, 0.05, p.ymin, p.ymax, "y", path);

    std::vector<LegendEntry> legend;
    for (size_t i = 0; i < p.series.size(); i++)
        if (!p.series[i].label.empty())
            legend.push_back({p.series[i].label, series_color(p.series[i].color, i), false, !p.series[i].y_err.empty(),
                              p.series[i].dash});
    if (p.legend == Legend::None) legend.clear();

    float tick_h = text_height("0", FS_TICK);
    a.top = MARGIN + title_room(p.title) + 8;
    for (const XSpan& sp : p.xspans)
        if (!sp.label.empty()) a.top = MARGIN + title_room(p.title) + text_height(sp.label, FS_SMALL) + 8;
    a.bottom = p.height - MARGIN - (p.xlabel.empty() ? 0 : text_height(p.xlabel, FS_LABEL) + 10) - tick_h - TICK_LEN - TICK_GAP - 1;
    Ticks yt = ticks_make(a.ymin, a.ymax, std::max(2, std::min(8, (a.bottom - a.top) / 60)));
    a.left = MARGIN + (p.ylabel.empty() ? 0 : text_height(p.ylabel, FS_LABEL) + 10) + ticks_width(yt, FS_TICK) + TICK_LEN + TICK_GAP + 1;
    bool forced = outside;  // a legend with no room outside goes inside, over the data
    outside = outside && legend_room_right(p.width, a.left, legend);
    a.right = p.width - MARGIN - (outside ? legend_w(legend) + 16 : 0);
    Ticks xt;
    for (int target = std::max(2, std::min(10, (a.right - a.left) / 90)); target >= 2; target--) {
        xt = ticks_make(a.xmin, a.xmax, target);
        if ((ticks_width(xt, FS_TICK) + 24) * xt.v.size() < a.right - a.left) break;
    }
    if (!xt.v.empty())  // the last tick label stays 8 px inside the figure
        a.right = std::min(a.right, p.width - 8 - (int)(text_width(number_label(xt.v.back(), xt.decimals), FS_TICK) / 2));
    if (a.right - a.left < 40 || a.bottom - a.top < 40)
        fail("plot_lines '%s': no room left for the data in %dx%d px (enlarge width/height or shorten the labels)",
             path.c_str(), p.width, p.height);

    Canvas c = canvas_new(p.width, p.height);
    canvas_set_clip(c, a.left, a.top, a.right, a.bottom);
    spans_draw(c, a, p.xspans, false, FS_SMALL);
    axes_grid(c, a, yt);
    Image base = c.img;
    for (size_t i = 0; i < p.series.size(); i++) series_bands(c, a, p.series[i], series_color(p.series[i].color, i));
    hlines_draw(c, a, p.hlines);
    for (size_t i = 0; i < p.series.size(); i++) series_line(c, a, p.series[i], series_color(p.series[i].color, i), 1);
    axes_frame(c, a, &xt, yt, FS_TICK);
    spans_draw(c, a, p.xspans, true, FS_SMALL);
    axes_labels(c, a, p.title, p.xlabel, p.ylabel);
    legend_ok = true;
    if (legend.empty()) return c;
    if (outside) legend_draw(c, legend, p.width - MARGIN - legend_w(legend), a.top);
    else legend_ok = legend_inside(c, base, a, legend, forced);
    return c;
}

}  // namespace

PlotAxes plot_lines(const std::string& path, const LinePlot& p) {
    check_size(path, "plot_lines", p.width, p.height);
    if (p.series.empty()) fail("plot_lines '%s': no series to draw (LinePlot.series is empty)", path.c_str());
    bool any = false;
    for (size_t i = 0; i < p.series.size(); i++) {
        series_check(path, "plot_lines", p.series[i], i);
        for (size_t j = 0; j < p.series[i].x.size(); j++) any |= std::isfinite(p.series[i].x[j]) && std::isfinite(p.series[i].y[j]);
    }
    if (!any) fail("plot_lines '%s': every point of every series is NaN or infinite (nothing to draw)", path.c_str());
    PlotAxes a;
    bool legend_ok = false;
    Canvas c = lines_render(path, p, p.legend == Legend::Right, a, legend_ok);
    if (!legend_ok) c = lines_render(path, p, true, a, legend_ok);
    image_write_png(path, c.img);
    return a;
}

// ---- plot_bars -------------------------------------------------------------------------

namespace {

// Greedy wrap to max_w px, breaking before a space or after '_', '-', '/', '+'.
std::string wrap_label(const std::string& s, float max_w, float fs) {
    std::vector<std::string> pieces(1);  // each but the first may start with its space
    for (char ch : s) {
        if (ch == ' ' && !pieces.back().empty()) pieces.emplace_back();
        pieces.back() += ch;
        if (strchr("_-/+", ch)) pieces.emplace_back();
    }
    std::string out, line;
    for (const std::string& w : pieces) {
        if (!line.empty() && text_width(line + w, fs) > max_w) {
            out += (out.empty() ? "" : "\n") + line;
            line = w.substr(w.find_first_not_of(' ') == std::string::npos ? w.size() : w.find_first_not_of(' '));
        } else {
            line += w;
        }
    }
    return out + (out.empty() ? "" : "\n") + line;
}

std::string truncate_label(const std::string& s, float max_w, float fs) {
    if (text_width(s, fs) <= max_w) return s;
    std::string t = s;
    while (t.size() > 1 && text_width(t + "..", fs) > max_w) t.pop_back();
    return t + "..";
}

// At most max_lines lines of at most max_w px each, ".." marking what was cut.
std::string fit_lines(const std::string& wrapped, size_t max_lines, float max_w, float fs) {
    std::vector<std::string> lines = text_lines(wrapped);
    std::string out;
    for (size_t i = 0; i < std::min(max_lines, lines.size()); i++) {
        bool cut = i + 1 == max_lines && lines.size() > max_lines;
        out += (i ? "\n" : "") + truncate_label(lines[i] + (cut ? ".." : ""), max_w, fs);
    }
    return out;
}

// Category labels under bars of `slot` px: wrapped into up to 3 lines at the tick size or
// else the small size; failing that, turned vertical and wrapped to `max_len` px.
float group_labels(std::vector<std::string>& out, bool& vertical, float& fs, const std::vector<std::string>& groups,
                   float slot, float max_len) {
    for (float f : {FS_TICK, FS_SMALL}) {
        bool ok = true;
        float h = 0;
        out.clear();
        for (const std::string& g : groups) {
            out.push_back(wrap_label(g, slot - 8, f));
            ok &= text_width(out.back(), f) <= slot - 4 && text_lines(out.back()).size() <= 3;
            h = std::max(h, text_height(out.back(), f));
        }
        if (ok) return vertical = false, fs = f, h;
    }
    vertical = true, fs = FS_TICK, out.clear();
    size_t max_lines = std::max(1, (int)(slot / (FONT_PITCH * fs)));
    float h = 0;
    for (const std::string& g : groups) {
        out.push_back(fit_lines(wrap_label(g, max_len, fs), max_lines, max_len, fs));
        h = std::max(h, text_width(out.back(), fs));
    }
    return h;
}

}  // namespace

PlotAxes plot_bars(const std::string& path, const BarPlot& p) {
    check_size(path, "plot_bars", p.width, p.height);
    const char* P = path.c_str();
    if (p.groups.empty()) fail("plot_bars '%s': no groups (BarPlot.groups is empty)", P);
    if (p.series.empty()) fail("plot_bars '%s': no series to draw (BarPlot.series is empty)", P);
    size_t G = p.groups.size(), S = p.series.size();
    Range ry;
    ry.add(0);
    for (size_t i = 0; i < S; i++) {
        const BarSeries& s = p.series[i];
        std::string name = series_name(s.label, i);
        if (s.value.size() != G)
            fail("plot_bars '%s': %s has %zu values for %zu groups (expected one per group)", P, name.c_str(),
                 s.value.size(), G);
        if (!s.err.empty() && s.err.size() != G)
            fail("plot_bars '%s': %s has %zu err values for %zu groups (expected %zu, or none)", P, name.c_str(),
                 s.err.size(), G, G);
        for (size_t g = 0; g < G; g++) {
            ry.add(s.value[g]);
            if (!s.err.empty() && std::isfinite(s.err[g])) ry.add(s.value[g] + s.err[g]), ry.add(s.value[g] - s.err[g]);
        }
    }
    for (const RefLine& r : p.hlines) ry.add(r.y);
    PlotAxes a;
    a.xmin = -0.5, a.xmax = G - 0.5;
    double pad_hi = (ry.hi - ry.lo) * (p.value_labels ? 0.12 : 0.05), pad_lo = ry.lo < 0 ? (ry.hi - ry.lo) * 0.05 : 0;
    range_limits(a.ymin, a.ymax, ry, 0, p.ymin, p.ymax, "y", path);
    if (!std::isfinite(p.ymax)) a.ymax += pad_hi;
    if (!std::isfinite(p.ymin)) a.ymin -= pad_lo;

    std::vector<LegendEntry> legend;
    for (size_t i = 0; i < S; i++)
        if (!p.series[i].label.empty()) legend.push_back({p.series[i].label, series_color(p.series[i].color, i), true});
    if (p.legend == Legend::None) legend.clear();

    Ticks yt = ticks_make(a.ymin, a.ymax, std::max(2, std::min(8, (p.height - (int)title_room(p.title) - 110) / 60)));
    a.left = MARGIN + (p.ylabel.empty() ? 0 : text_height(p.ylabel, FS_LABEL) + 10) + ticks_width(yt, FS_TICK) + TICK_LEN + TICK_GAP + 1;
    a.top = MARGIN + title_room(p.title) + 8;
    float xlabel_room = p.xlabel.empty() ? 0 : text_height(p.xlabel, FS_LABEL) + 10;
    bool legend_ok = false;
    Canvas c;
    for (int attempt = p.legend == Legend::Right; attempt < 2 && !legend_ok; attempt++) {
        bool outside = attempt == 1 && legend_room_right(p.width, a.left, legend);
        a.right = p.width - MARGIN - (outside ? legend_w(legend) + 16 : 0);
        // Group labels: as they are, wrapped to the group's width, or turned vertical.
        float slot = (float)(a.right - a.left) / G;
        std::vector<std::string> labels;
        bool vertical = false;
        float lab_fs = FS_TICK, label_h = group_labels(labels, vertical, lab_fs, p.groups, slot, p.height * 0.3f);
        a.bottom = p.height - MARGIN - xlabel_room - label_h - TICK_GAP - 3;
        if (a.right - a.left < 40 || a.bottom - a.top < 40)
            fail("plot_bars '%s': no room left for the bars in %dx%d px (enlarge width/height or shorten the labels)",
                 P, p.width, p.height);

        c = canvas_new(p.width, p.height);
        canvas_set_clip(c, a.left, a.top, a.right, a.bottom);
        axes_grid(c, a, yt);
        Image base = c.img;
        float bar_w = 0.8f / S, y0 = plot_y_px(a, 0);
        for (size_t g = 0; g < G; g++)
            for (size_t i = 0; i < S; i++) {
                const BarSeries& s = p.series[i];
                float xa = plot_x_px(a, g - 0.4 + i * bar_w), xb = plot_x_px(a, g - 0.4 + (i + 1) * bar_w), xm = (xa + xb) / 2;
                float gap = xb - xa > 8 ? 1 : 0;
                float v = s.value[g], e = s.err.empty() ? NAN : s.err[g];
                if (!std::isfinite(v)) {
                    bool turn = text_width("n/a", FS_SMALL) > xb - xa;
                    canvas_text(c, xm, y0 - 4, "n/a",
                                {FS_SMALL, SOFT_INK, HAlign::Center, VAlign::Bottom, turn});
                    continue;
                }
                canvas_fill_rect(c, xa + gap, plot_y_px(a, v), xb - gap, y0, series_color(s.color, i));
                float top = std::min(plot_y_px(a, v), y0), low = std::max(plot_y_px(a, v), y0);  // bar ends
                if (std::isfinite(e) && e > 0) {
                    float ya = plot_y_px(a, v - e), yb = plot_y_px(a, v + e), cap = std::min(10.f, (xb - xa) * 0.4f);
                    canvas_line(c, xm, ya, xm, yb, {1.5f, RGB_INK});
                    canvas_line(c, xm - cap / 2, ya, xm + cap / 2, ya, {1.5f, RGB_INK});
                    canvas_line(c, xm - cap / 2, yb, xm + cap / 2, yb, {1.5f, RGB_INK});
                    top = std::min(top, yb), low = std::max(low, ya);
                }
                if (p.value_labels) {
                    std::string txt = number_label(v, yt.decimals + 1);
                    bool turn = text_width(txt, FS_SMALL) > xb - xa + 2;
                    if (v >= 0) canvas_text(c, xm, top - 4, txt, {FS_SMALL, SOFT_INK, HAlign::Center, VAlign::Bottom, turn});
                    else canvas_text(c, xm, low + 4, txt, {FS_SMALL, SOFT_INK, HAlign::Center, VAlign::Top, turn});
                }
            }
        hlines_draw(c, a, p.hlines);
        canvas_set_clip(c, 0, 0, p.width, p.height);
        if (a.ymin < 0) canvas_fill_rect(c, a.left, std::round(y0), a.right, std::round(y0) + 1, AXIS_GREY);
        axes_frame(c, a, nullptr, yt, FS_TICK);
        for (size_t g = 0; g < G; g++) {
            float x = plot_x_px(a, g), y = a.bottom + TICK_GAP + 2;
            canvas_text(c, x, y, labels[g], {lab_fs, RGB_INK, HAlign::Center, VAlign::Top, vertical});
        }
        axes_labels(c, a, p.title, p.xlabel, p.ylabel);
        legend_ok = legend.empty();
        if (legend.empty()) break;
        if (outside) legend_draw(c, legend, p.width - MARGIN - legend_w(legend), a.top), legend_ok = true;
        else legend_ok = legend_inside(c, base, a, legend, attempt == 1);
    }
    image_write_png(path, c.img);
    return a;
}

// ---- heatmaps --------------------------------------------------------------------------

namespace {

float luminance(Rgb c) { return 0.2126f * c.r + 0.7152f * c.g + 0.0722f * c.b; }

}  // namespace

std::vector<PlotAxes> plot_heatmap_panels(const std::string& path, const std::vector<Heatmap>& panels,
                                          const HeatmapStyle& st) {
    const char* P = path.c_str();
    if (panels.empty()) fail("plot_heatmap '%s': no panels to draw", P);
    Range rv;
    int total_cols = 0, max_rows = 0;
    bool any_nan = false;
    for (size_t k = 0; k < panels.size(); k++) {
        const Heatmap& h = panels[k];
        if (h.rows <= 0 || h.cols <= 0)
            fail("plot_heatmap '%s': panel %zu is %d x %d (expected rows, cols >= 1)", P, k, h.rows, h.cols);
        if (h.values.size() != (size_t)h.rows * h.cols)
            fail("plot_heatmap '%s': panel %zu has %zu values for %d x %d cells (expected rows*cols, row-major)", P, k,
                 h.values.size(), h.rows, h.cols);
        if (!h.row_labels.empty() && h.row_labels.size() != (size_t)h.rows)
            fail("plot_heatmap '%s': panel %zu has %zu row labels for %d rows", P, k, h.row_labels.size(), h.rows);
        if (!h.col_labels.empty() && h.col_labels.size() != (size_t)h.cols)
            fail("plot_heatmap '%s': panel %zu has %zu column labels for %d columns", P, k, h.col_labels.size(), h.cols);
        for (float v : h.values) rv.add(v), any_nan |= !std::isfinite(v);
        total_cols += h.cols, max_rows = std::max(max_rows, h.rows);
    }
    double vmin = std::isfinite(st.vmin) ? st.vmin : rv.lo <= rv.hi ? rv.lo : 0;
    double vmax = std::isfinite(st.vmax) ? st.vmax : rv.lo <= rv.hi ? rv.hi : 1;
    if (vmin == vmax && !std::isfinite(st.vmin) && !std::isfinite(st.vmax)) vmin -= 0.5, vmax += 0.5;
    if (!(vmin < vmax)) fail("plot_heatmap '%s': colour scale from %g to %g is empty (expected vmin < vmax)", P, vmin, vmax);

    // Cell size, then per-panel room for row labels (where they differ from the previous
    // panel's), column labels (turned when wider than a cell) and titles.
    float vlab_w = 0;
    if (st.value_labels)
        vlab_w = std::max(text_width(number_label(vmin, st.value_decimals), FS_SMALL),
                          text_width(number_label(vmax, st.value_decimals), FS_SMALL)) + 8;
    int cw = st.cell_w > 0 ? st.cell_w : std::max((int)vlab_w, std::min(56, std::max(22, 720 / total_cols)));
    int ch = st.cell_h > 0 ? st.cell_h : std::max(st.value_labels ? 22 : 20, std::min(40, cw));
    std::vector<float> row_w(panels.size(), 0.f);
    float col_h = 0, ptitle_h = 0;
    for (size_t k = 0; k < panels.size(); k++) {
        const Heatmap& h = panels[k];
        if (k == 0 || h.row_labels != panels[k - 1].row_labels)
            for (const std::string& l : h.row_labels) row_w[k] = std::max(row_w[k], text_width(l, FS_TICK) + 8);
        if (!h.title.empty()) ptitle_h = text_height(h.title, FS_LABEL) + 8;
    }
    bool turn_cols = false;
    for (const Heatmap& h : panels)
        for (const std::string& l : h.col_labels) turn_cols |= text_width(l, FS_TICK) > cw - 3;
    for (const Heatmap& h : panels)
        for (const std::string& l : h.col_labels)
            col_h = std::max(col_h, turn_cols ? text_width(l, FS_TICK) : text_height(l, FS_TICK));
    if (col_h > 0) col_h += 6;

    float left0 = MARGIN + (st.ylabel.empty() ? 0 : text_height(st.ylabel, FS_LABEL) + 10);
    float top = MARGIN + title_room(st.title) + ptitle_h;
    float x = left0;
    std::vector<PlotAxes> axes(panels.size());
    for (size_t k = 0; k < panels.size(); k++) {
        x += row_w[k] + (k > 0 ? 16 : 0);
        PlotAxes& a = axes[k];
        a.left = (int)x, a.top = (int)top, a.right = a.left + panels[k].cols * cw, a.bottom = a.top + panels[k].rows * ch;
        a.xmin = 0, a.xmax = panels[k].cols, a.ymin = panels[k].rows, a.ymax = 0;
        x = a.right;
    }
    int grid_bottom = (int)top + max_rows * ch;
    // Colour bar right of the last panel: ticks inside [vmin, vmax], min and max always.
    float cb_left = x + 24, cb_w = 18, cb_top = top, cb_bottom = grid_bottom;
    int cb_dec = ticks_make(vmin, vmax, 10).decimals + 1;  // one decimal finer than a fine tick
    std::vector<std::pair<double, std::string>> cb_ticks = {{vmin, number_label(vmin, cb_dec)}, {vmax, number_label(vmax, cb_dec)}};
    for (double v : plot_nice_ticks(vmin, vmax, std::max(2, (int)(cb_bottom - cb_top) / 50))) {
        float span = cb_bottom - cb_top, d0 = (float)((v - vmin) / (vmax - vmin)) * span;
        if (std::min(d0, span - d0) >= text_height("0", FS_TICK) + 4) cb_ticks.push_back({v, number_label(v, cb_dec)});
    }
    float cb_lab_w = 0;
    for (auto& t : cb_ticks) cb_lab_w = std::max(cb_lab_w, text_width(t.second, FS_TICK));
    float W = cb_left + cb_w + TICK_LEN + TICK_GAP + cb_lab_w +
              (st.colorbar_label.empty() ? 0 : 10 + text_height(st.colorbar_label, FS_LABEL)) + MARGIN;
    float H = grid_bottom + col_h + (st.xlabel.empty() ? 0 : text_height(st.xlabel, FS_LABEL) + 12) + MARGIN;
    if (any_nan) H = std::max(H, cb_bottom + 12 + 14 + MARGIN);
    W = std::max(W, MARGIN * 2 + text_width(st.title, FS_TITLE));
    H = std::max({H, text_width(st.ylabel, FS_LABEL) + 2 * MARGIN, text_width(st.colorbar_label, FS_LABEL) + 2 * MARGIN});
    if (W > IMAGE_MAX_SIDE || H > IMAGE_MAX_SIDE)
        fail("plot_heatmap '%s': the figure would be %.0fx%.0f px (limit %d; set smaller cell_w/cell_h)", P, W, H,
             IMAGE_MAX_SIDE);

    Canvas c = canvas_new((int)std::ceil(W), (int)std::ceil(H));
    for (size_t k = 0; k < panels.size(); k++) {
        const Heatmap& h = panels[k];
        const PlotAxes& a = axes[k];
        for (int r = 0; r < h.rows; r++)
            for (int q = 0; q < h.cols; q++) {
                float v = h.values[(size_t)r * h.cols + q];
                Rgb col = colormap_viridis((float)((v - vmin) / (vmax - vmin)));
                float x0 = a.left + q * cw, y0 = a.top + r * ch;
                canvas_fill_rect(c, x0, y0, x0 + cw, y0 + ch, col);
                if (st.value_labels && std::isfinite(v))
                    canvas_text(c, x0 + cw / 2.f, y0 + ch / 2.f, number_label(v, st.value_decimals),
                                {FS_SMALL, luminance(col) > 140 ? RGB_INK : RGB_WHITE, HAlign::Center, VAlign::Middle});
            }
        // Best cells: the largest finite value of each row or column, outlined black on white.
        if (st.best != HeatmapBest::None) {
            bool per_row = st.best == HeatmapBest::PerRow;
            for (int i = 0; i < (per_row ? h.rows : h.cols); i++) {
                int br = -1, bq = -1;
                float bv = -INFINITY;
                for (int j = 0; j < (per_row ? h.cols : h.rows); j++) {
                    int r = per_row ? i : j, q = per_row ? j : i;
                    float v = h.values[(size_t)r * h.cols + q];
                    if (std::isfinite(v) && v > bv) bv = v, br = r, bq = q;
                }
                if (br < 0) continue;
                float x0 = a.left + bq * cw, y0 = a.top + br * ch;
                canvas_stroke_rect(c, x0, y0, x0 + cw, y0 + ch, 3, RGB_INK);
                canvas_stroke_rect(c, x0 + 3, y0 + 3, x0 + cw - 3, y0 + ch - 3, 1, RGB_WHITE);
            }
        }
        if (row_w[k] > 0)
            for (int r = 0; r < h.rows; r++)
                canvas_text(c, a.left - 6, a.top + (r + 0.5f) * ch, h.row_labels[r], {FS_TICK, RGB_INK, HAlign::Right, VAlign::Middle});
        for (int q = 0; q < (int)h.col_labels.size(); q++) {
            float cx = a.left + (q + 0.5f) * cw;
            if (turn_cols) canvas_text(c, cx, a.bottom + 6, h.col_labels[q], {FS_TICK, RGB_INK, HAlign::Center, VAlign::Top, true});
            else canvas_text(c, cx, a.bottom + 6, h.col_labels[q], {FS_TICK, RGB_INK, HAlign::Center, VAlign::Top});
        }
        if (!h.title.empty())
            canvas_text(c, (a.left + a.right) / 2.f, a.top - 8, h.title, {FS_LABEL, RGB_INK, HAlign::Center, VAlign::Bottom});
    }
    // Colour bar, NaN swatch, labels.
    for (float y = cb_top; y < cb_bottom; y++)
        canvas_fill_rect(c, cb_left, y, cb_left + cb_w, y + 1,
                         colormap_viridis((float)((cb_bottom - y - 0.5f) / (cb_bottom - cb_top))));
    canvas_stroke_rect(c, cb_left, cb_top, cb_left + cb_w, cb_bottom, 1, AXIS_GREY);
    for (auto& t : cb_ticks) {
        float y = cb_bottom - (float)((t.first - vmin) / (vmax - vmin)) * (cb_bottom - cb_top);
        canvas_fill_rect(c, cb_left + cb_w, y - 0.5f, cb_left + cb_w + TICK_LEN, y + 0.5f, AXIS_GREY);
        canvas_text(c, cb_left + cb_w + TICK_LEN + TICK_GAP, y, t.second, {FS_TICK, RGB_INK, HAlign::Left, VAlign::Middle});
    }
    // Vertical labels centred on the cells, moved in when longer than the figure allows.
    auto mid_y = [&](const std::string& l) {
        float half = text_width(l, FS_LABEL) / 2;
        return std::min(std::max((cb_top + cb_bottom) / 2, MARGIN + half), c.img.H - MARGIN - half);
    };
    if (!st.colorbar_label.empty())
        canvas_text(c, c.img.W - MARGIN, mid_y(st.colorbar_label), st.colorbar_label,
                    {FS_LABEL, RGB_INK, HAlign::Right, VAlign::Middle, true});
    if (any_nan) {
        canvas_fill_rect(c, cb_left, cb_bottom + 12, cb_left + cb_w, cb_bottom + 26, RGB_MISSING);
        canvas_text(c, cb_left + cb_w + TICK_LEN + TICK_GAP, cb_bottom + 19, "n/a", {FS_TICK, RGB_INK, HAlign::Left, VAlign::Middle});
    }
    float mid = (axes.front().left + axes.back().right) / 2.f;
    if (!st.title.empty())
        canvas_text(c, std::max(mid, MARGIN + text_width(st.title, FS_TITLE) / 2), MARGIN, st.title, {FS_TITLE, RGB_INK, HAlign::Center, VAlign::Top});
    if (!st.xlabel.empty())
        canvas_text(c, mid, c.img.H - MARGIN, st.xlabel, {FS_LABEL, RGB_INK, HAlign::Center, VAlign::Bottom});
    if (!st.ylabel.empty())
        canvas_text(c, MARGIN, mid_y(st.ylabel), st.ylabel, {FS_LABEL, RGB_INK, HAlign::Left, VAlign::Middle, true});
    image_write_png(path, c.img);
    return axes;
}

PlotAxes plot_heatmap(const std::string& path, const Heatmap& h, const HeatmapStyle& st) {
    return plot_heatmap_panels(path, {h}, st)[0];
}

// ---- plot_grid_lines -------------------------------------------------------------------

std::vector<PlotAxes> plot_grid_lines(const std::string& path, const GridPlot& p) {
    const char* P = path.c_str();
    if (p.panels.empty()) fail("plot_grid_lines '%s': no panels to draw (GridPlot.panels is empty)", P);
    if (p.cols < 1) fail("plot_grid_lines '%s': cols = %d (expected >= 1)", P, p.cols);
    if (p.panel_width < 60 || p.panel_height < 40)
        fail("plot_grid_lines '%s': panels of %dx%d px are too small (expected at least 60x40)", P, p.panel_width,
             p.panel_height);
    const float fs = FS_SMALL;  // tick labels in small panels
    size_t N = p.panels.size();
    int cols = std::min<int>(p.cols, (int)N), rows = (int)((N + cols - 1) / cols);
    std::vector<Range> rx(N), ry(N);
    Range ry_all;
    std::vector<LegendEntry> legend;
    for (size_t k = 0; k < N; k++) {
        const GridPanel& g = p.panels[k];
        for (size_t i = 0; i < g.series.size(); i++) {
            series_check(path, "plot_grid_lines", g.series[i], i);
            series_ranges(g.series[i], rx[k], ry[k]);
            if (i >= legend.size()) legend.resize(i + 1);
            if (legend[i].label.empty() && !g.series[i].label.empty())
                legend[i] = {g.series[i].label, series_color(g.series[i].color, i), false, !g.series[i].y_err.empty(),
                             g.series[i].dash};
        }
        ry_all.add(ry[k].lo), ry_all.add(ry[k].hi);
    }
    if (!(ry_all.lo <= ry_all.hi))
        fail("plot_grid_lines '%s': no panel has a finite point (all series empty of data or NaN)", P);
    legend.erase(std::remove_if(legend.begin(), legend.end(), [](const LegendEntry& e) { return e.label.empty(); }), legend.end());

    std::vector<PlotAxes> axes(N);
    std::vector<Ticks> xt(N), yt(N);
    float ytick_w = 0;
    for (size_t k = 0; k < N; k++) {
        range_limits(axes[k].xmin, axes[k].xmax, rx[k], 0, NAN, NAN, "x", path);
        range_limits(axes[k].ymin, axes[k].ymax, p.share_y ? ry_all : ry[k], 0.05, NAN, NAN, "y", path);
        xt[k] = ticks_make(axes[k].xmin, axes[k].xmax, std::max(2, p.panel_width / 70));
        yt[k] = ticks_make(axes[k].ymin, axes[k].ymax, std::max(2, p.panel_height / 45));
        ytick_w = std::max(ytick_w, ticks_width(yt[k], fs));
    }
    float ptitle_h = text_height("A", FS_LABEL) + 8;
    float cell_l = ytick_w + TICK_LEN + TICK_GAP + 4, cell_b = TICK_LEN + TICK_GAP + text_height("0", fs) + 14;
    float slot_w = cell_l + p.panel_width + 24, slot_h = ptitle_h + p.panel_height + cell_b;
    float left0 = MARGIN + (p.ylabel.empty() ? 0 : text_height(p.ylabel, FS_LABEL) + 10);
    // Shared legend in one row under the title (wrapping to more rows when wide).
    float leg_row_w = 0;
    for (const LegendEntry& e : legend) leg_row_w += LEG_SWATCH + 8 + text_width(e.label, FS_LABEL) + 24;
    float grid_w = cols * slot_w;
    int leg_rows = legend.empty() ? 0 : (int)std::ceil(leg_row_w / std::max(1.f, grid_w));
    float top0 = MARGIN + title_room(p.title) + leg_rows * LEG_ROW + (leg_rows ? 8 : 0);
    float W = left0 + grid_w + MARGIN, H = top0 + rows * slot_h + (p.xlabel.empty() ? 0 : text_height(p.xlabel, FS_LABEL) + 6) + MARGIN;
    W = std::max(W, 2 * MARGIN + text_width(p.title, FS_TITLE));
    if (W > IMAGE_MAX_SIDE || H > IMAGE_MAX_SIDE)
        fail("plot_grid_lines '%s': the figure would be %.0fx%.0f px (limit %d; use smaller panels)", P, W, H, IMAGE_MAX_SIDE);

    Canvas c = canvas_new((int)std::ceil(W), (int)std::ceil(H));
    for (size_t k = 0; k < N; k++) {
        PlotAxes& a = axes[k];
        int r = (int)k / cols, q = (int)k % cols;
        a.left = (int)(left0 + q * slot_w + cell_l), a.top = (int)(top0 + r * slot_h + ptitle_h);
        a.right = a.left + p.panel_width, a.bottom = a.top + p.panel_height;
        const GridPanel& g = p.panels[k];
        canvas_set_clip(c, a.left, a.top, a.right, a.bottom);
        spans_draw(c, a, p.xspans, false, FS_SMALL);
        axes_grid(c, a, yt[k]);
        for (size_t i = 0; i < g.series.size(); i++) series_bands(c, a, g.series[i], series_color(g.series[i].color, i));
        for (size_t i = 0; i < g.series.size(); i++) series_line(c, a, g.series[i], series_color(g.series[i].color, i), 0.8f);
        if (rx[k].lo > rx[k].hi)
            canvas_text(c, (a.left + a.right) / 2.f, (a.top + a.bottom) / 2.f, "no data", {FS_LABEL, SOFT_INK, HAlign::Center, VAlign::Middle});
        axes_frame(c, a, &xt[k], yt[k], fs);
        if (!g.title.empty())
            canvas_text(c, (a.left + a.right) / 2.f, a.top - 6, truncate_label(g.title, slot_w - 8, FS_LABEL),
                        {FS_LABEL, RGB_INK, HAlign::Center, VAlign::Bottom});
    }
    // Legend rows, centred.
    float ly = MARGIN + title_room(p.title);
    for (size_t i = 0; i < legend.size();) {
        size_t j = i;
        float w = 0;
        while (j < legend.size() && (j == i || w + LEG_SWATCH + 8 + text_width(legend[j].label, FS_LABEL) <= grid_w))
            w += LEG_SWATCH + 8 + text_width(legend[j].label, FS_LABEL) + 24, j++;
        float lx = left0 + (grid_w - (w - 24)) / 2, my = ly + FONT_CAP * FS_LABEL / 2;
        for (; i < j; i++) {
            if (legend[i].band) canvas_fill_rect(c, lx, my - 6, lx + LEG_SWATCH, my + 6, legend[i].color, 0.2f);
            canvas_line(c, lx + 2, my, lx + LEG_SWATCH - 2, my, {2.5f, legend[i].color, 1, legend[i].dash});
            canvas_text(c, lx + LEG_SWATCH + 8, my, legend[i].label, {FS_LABEL, RGB_INK, HAlign::Left, VAlign::Middle});
            lx += LEG_SWATCH + 8 + text_width(legend[i].label, FS_LABEL) + 24;
        }
        ly += LEG_ROW;
    }
    float cx = left0 + grid_w / 2;
    if (!p.title.empty()) canvas_text(c, cx, MARGIN, p.title, {FS_TITLE, RGB_INK, HAlign::Center, VAlign::Top});
    if (!p.xlabel.empty()) canvas_text(c, cx, c.img.H - MARGIN, p.xlabel, {FS_LABEL, RGB_INK, HAlign::Center, VAlign::Bottom});
    if (!p.ylabel.empty())
        canvas_text(c, MARGIN, top0 + rows * slot_h / 2, p.ylabel, {FS_LABEL, RGB_INK, HAlign::Left, VAlign::Middle, true});
    image_write_png(path, c.img);
    return axes;
}

}  // namespace vt

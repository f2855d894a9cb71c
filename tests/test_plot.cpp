// test_plot.cpp: the plotting module. Canvas primitives against hand-computed pixels; each
// chart written to PNG, read back (image_load) and checked where the data say colours must
// be, through the PlotAxes it returns: a line passes its pixel, a bar spans its height, a
// heatmap's largest cell is viridis' bright end; NaN gaps; refused inputs.
#include <unistd.h>

#include <cstdio>
#include <functional>

#include "engine/io/plot.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::error_of;
using vt_test::has;

namespace {

Rgb pixel(const Image& img, int x, int y) {
    if (x < 0 || y < 0 || x >= img.W || y >= img.H) FAIL("pixel (" << x << ", " << y << ") outside " << img.W << "x" << img.H);
    const uint8_t* p = &img.rgb[((size_t)y * img.W + x) * 3];
    return {p[0], p[1], p[2]};
}

bool same(Rgb a, Rgb b, int tol = 0) {
    return std::abs(a.r - b.r) <= tol && std::abs(a.g - b.g) <= tol && std::abs(a.b - b.b) <= tol;
}

// Some pixel within `radius` of (x, y) has colour `c` (up to tol per channel).
bool near_color(const Image& img, float x, float y, Rgb c, int radius, int tol = 0) {
    for (int dy = -radius; dy <= radius; dy++)
        for (int dx = -radius; dx <= radius; dx++) {
            int px = (int)std::floor(x) + dx, py = (int)std::floor(y) + dy;
            if (px >= 0 && py >= 0 && px < img.W && py < img.H && same(pixel(img, px, py), c, tol)) return true;
        }
    return false;
}

Rgb over_white(Rgb c, float a) {  // what blending c at alpha a over white gives
    auto f = [&](int v) { return (uint8_t)std::lround(255 + (v - 255) * a); };
    return {f(c.r), f(c.g), f(c.b)};
}

LineSeries series(const std::string& label, std::vector<float> x = {}, std::vector<float> y = {},
                  std::vector<float> y_err = {}) {
    LineSeries s;
    s.label = label, s.x = std::move(x), s.y = std::move(y), s.y_err = std::move(y_err);
    return s;
}

BarSeries bars(const std::string& label, std::vector<float> value, std::vector<float> err = {}) {
    BarSeries s;
    s.label = label, s.value = std::move(value), s.err = std::move(err);
    return s;
}

struct TempFiles {  // a temporary folder, emptied and removed at the end of the test
    std::string dir = vt_test::temp_dir();
    std::vector<std::string> files;
    std::string operator()(const std::string& name) {
        files.push_back(dir + "/" + name);
        return files.back();
    }
    ~TempFiles() {
        for (const std::string& f : files) std::remove(f.c_str());
        rmdir(dir.c_str());
    }
};

}  // namespace

TEST_CASE("plot: palette and viridis") {
    CHECK(same(colormap_viridis(0), {68, 1, 84}));
    CHECK(same(colormap_viridis(1), {253, 231, 37}));
    CHECK(same(colormap_viridis(-3), colormap_viridis(0)));
    CHECK(same(colormap_viridis(7), colormap_viridis(1)));
    CHECK(same(colormap_viridis(NAN), RGB_MISSING));
    float prev = -1;
    for (int i = 0; i <= 20; i++) {  // viridis brightens monotonically
        Rgb c = colormap_viridis(i / 20.f);
        float lum = 0.2126f * c.r + 0.7152f * c.g + 0.0722f * c.b;
        CHECK(lum > prev);
        prev = lum;
    }
    for (int i = 0; i < 8; i++)
        for (int j = i + 1; j < 8; j++) CHECK(!same(palette_color(i), palette_color(j)));
    CHECK(same(palette_color(8), palette_color(0)));
    CHECK(same(palette_color(-1), palette_color(7)));
}

TEST_CASE("plot: canvas primitives") {
    const Rgb red{200, 0, 0}, blue{0, 0, 200}, green{0, 150, 0};
    Canvas c = canvas_new(100, 80);
    CHECK(c.img.W == 100);
    CHECK(c.img.H == 80);
    CHECK(same(pixel(c.img, 50, 50), RGB_WHITE));

    canvas_fill_rect(c, 10, 10, 30, 20, red);
    CHECK(same(pixel(c.img, 10, 10), red));
    CHECK(same(pixel(c.img, 29, 19), red));
    CHECK(same(pixel(c.img, 30, 15), RGB_WHITE));
    CHECK(same(pixel(c.img, 9, 15), RGB_WHITE));
    canvas_fill_rect(c, 40.5f, 10, 50, 20, {0, 0, 0});  // half-covered column
    CHECK(same(pixel(c.img, 40, 15), {128, 128, 128}, 1));
    canvas_fill_rect(c, 60, 10, 70, 20, {0, 0, 0}, 0.25f);
    CHECK(same(pixel(c.img, 65, 15), over_white({0, 0, 0}, 0.25f)));

    canvas_line(c, 0, 40.5f, 100, 40.5f, {1, blue});  // through the centres of row 40
    CHECK(same(pixel(c.img, 50, 40), blue));
    CHECK(same(pixel(c.img, 50, 39), RGB_WHITE));
    CHECK(same(pixel(c.img, 50, 41), RGB_WHITE));
    canvas_line(c, 0, 60.5f, 100, 60.5f, {1, blue, 1, 10});  // dashed: 10 on, 7 off
    int on = 0;
    for (int x = 0; x < 100; x++) on += same(pixel(c.img, x, 60), blue);
    CHECK(on > 45);
    CHECK(on < 75);

    Canvas t = canvas_new(100, 80);
    canvas_fill_polygon(t, {{10, 10}, {40, 10}, {10, 70}}, green);
    CHECK(same(pixel(t.img, 15, 15), green));
    CHECK(same(pixel(t.img, 38, 60), RGB_WHITE));
    canvas_circle(t, 70, 20, 6, red);
    CHECK(same(pixel(t.img, 70, 20), red));
    CHECK(same(pixel(t.img, 70, 28), RGB_WHITE));
    // A NaN point breaks a polyline; a lone point between breaks is a dot.
    canvas_polyline(t, {{50, 60.5f}, {60, 60.5f}, {NAN, NAN}, {80, 60.5f}, {NAN, 0}, {95, 60.5f}, {98, 60.5f}}, {2, blue});
    CHECK(same(pixel(t.img, 55, 60), blue));
    CHECK(same(pixel(t.img, 70, 60), RGB_WHITE));
    CHECK(same(pixel(t.img, 80, 60), blue));
    CHECK(same(pixel(t.img, 88, 60), RGB_WHITE));

    // Clipping: nothing lands outside the clip rectangle.
    canvas_set_clip(t, 0, 0, 50, 80);
    canvas_fill_rect(t, 0, 75, 100, 80, red);
    CHECK(same(pixel(t.img, 49, 77), red));
    CHECK(same(pixel(t.img, 50, 77), RGB_WHITE));
}

TEST_CASE("plot: text boxes, alignment and vertical text") {
    auto ink_box = [](const Image& img, int& x0, int& y0, int& x1, int& y1) {
        x0 = y0 = 1 << 30, x1 = y1 = -1;
        for (int y = 0; y < img.H; y++)
            for (int x = 0; x < img.W; x++)
                if (!same(pixel(img, x, y), RGB_WHITE)) x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
    };
    int x0, y0, x1, y1;
    Canvas c = canvas_new(200, 120);
    canvas_text(c, 10, 20, "Hello 0.5", {2});
    ink_box(c.img, x0, y0, x1, y1);
    CHECK(x0 == 10);
    CHECK(y0 == 20);
    CHECK(x1 < 10 + text_width("Hello 0.5", 2));
    CHECK(x1 > 10 + text_width("Hello 0.5", 2) - 3);
    CHECK(y1 < 20 + text_height("Hello 0.5", 2));
    CHECK(text_height("a\nb", 2) > text_height("a", 2) * 2);

    Canvas r = canvas_new(200, 120);  // right/bottom aligned: the ink ends at the anchor
    canvas_text(r, 150, 100, "Right", {2, RGB_INK, HAlign::Right, VAlign::Bottom});
    ink_box(r.img, x0, y0, x1, y1);
    CHECK(x1 <= 150);
    CHECK(x1 >= 147);
    CHECK(y1 <= 100);

    Canvas v = canvas_new(200, 120);  // turned text: taller than wide, reads upwards
    canvas_text(v, 100, 60, "vertical", {2, RGB_INK, HAlign::Center, VAlign::Middle, true});
    ink_box(v.img, x0, y0, x1, y1);
    CHECK(y1 - y0 > 3 * (x1 - x0));
    CHECK(std::abs((y0 + y1) / 2.f - 60) < 3);
    CHECK(std::abs((x0 + x1) / 2.f - 100) < 4);

    // Non-ASCII: "±" becomes "+/-", other characters '?', never an out-of-range table read.
    CHECK(text_width("\xc2\xb1" "1", 2) == text_width("+/-1", 2));
    CHECK(text_width("\xe2\x86\x92", 2) == text_width("?", 2));
    Canvas n = canvas_new(60, 30);
    canvas_text(n, 2, 2, std::string("\x01\x7f\xff", 3), {2});
}

TEST_CASE("plot: nice ticks") {
    auto near_all = [](const std::vector<double>& a, const std::vector<double>& b) {
        if (a.size() != b.size()) return false;
        for (size_t i = 0; i < a.size(); i++)
            if (!vt_test::close(a[i], b[i], 1e-9, 0)) return false;
        return true;
    };
    CHECK(near_all(plot_nice_ticks(0, 1, 5), {0, 0.2, 0.4, 0.6, 0.8, 1.0}));
    CHECK(near_all(plot_nice_ticks(-50, 300, 7), {-50, 0, 50, 100, 150, 200, 250, 300}));
    CHECK(near_all(plot_nice_ticks(0.013, 0.087, 4), {0.02, 0.04, 0.06, 0.08}));
    CHECK(plot_nice_ticks(1, 1, 5).empty());
    CHECK(plot_nice_ticks(NAN, 1, 5).empty());
}

TEST_CASE("plot: lines with bands, spans, reference lines and a legend") {
    TempFiles tmp;
    LinePlot p;
    p.title = "Explained variance over time";
    p.xlabel = "time (ms)";
    p.ylabel = "explained variance";
    p.width = 640, p.height = 400;
    LineSeries up = series("V4"), down = series("IT");
    for (int i = 0; i <= 20; i++) {
        float x = i * 5;
        up.x.push_back(x), up.y.push_back(x / 100);
        down.x.push_back(x), down.y.push_back(0.8f - x / 200), down.y_err.push_back(0.05f);
    }
    p.series = {up, down};
    p.hlines = {{0.9f, "ceiling"}};
    p.xspans = {{20, 40, "stimulus on"}};
    std::string path = tmp("lines.png");
    PlotAxes a = plot_lines(path, p);
    Image img = image_load(path);
    CHECK(img.W == 640);
    CHECK(img.H == 400);
    CHECK(a.xmin == 0);
    CHECK(a.xmax == 100);
    CHECK(a.ymin < 0.0);
    CHECK(a.ymax > 0.9);
    CHECK(a.left > 40);  // room for the y label and ticks
    CHECK(a.right <= 640);
    // Both lines pass through their pixels (the legend found a corner away from them).
    for (float x : {5.f, 30.f, 90.f}) {
        CHECK(near_color(img, plot_x_px(a, x), plot_y_px(a, x / 100), palette_color(0), 1));
        CHECK(near_color(img, plot_x_px(a, x), plot_y_px(a, 0.8 - x / 200), palette_color(1), 1));
    }
    // Inside the band but off the line: the series colour at alpha 0.2 over white.
    CHECK(near_color(img, plot_x_px(a, 70), plot_y_px(a, 0.45 + 0.035), over_white(palette_color(1), 0.2f), 1, 3));
    // The span is shaded (bluish grey), the same height outside it is white.
    Rgb in = pixel(img, (int)plot_x_px(a, 25), (int)plot_y_px(a, 0.12));
    CHECK(!same(in, RGB_WHITE));
    CHECK(in.b > in.r);
    CHECK(same(pixel(img, (int)plot_x_px(a, 60), (int)plot_y_px(a, 0.12)), RGB_WHITE));
    // The dashed ceiling: grey on part of its row, not all of it.
    int row = (int)std::round(plot_y_px(a, 0.9)), grey = 0;
    for (int x = a.left; x < a.right; x++) grey += same(pixel(img, x, row), {90, 90, 90}, 10);
    CHECK(grey > (a.right - a.left) / 3);
    CHECK(grey < (a.right - a.left) * 9 / 10);
}

TEST_CASE("plot: NaN points are gaps in lines and bands") {
    TempFiles tmp;
    LinePlot p;
    p.legend = Legend::None;
    LineSeries s;
    for (int i = 0; i <= 10; i++) s.x.push_back(i), s.y.push_back(i), s.y_err.push_back(0.5f);
    s.y[5] = NAN;
    s.y[7] = NAN, s.y[9] = NAN;  // 8 is alone: a dot
    s.y_err[2] = NAN;            // the band breaks, the line does not
    p.series = {s};
    std::string path = tmp("nan.png");
    PlotAxes a = plot_lines(path, p);
    Image img = image_load(path);
    Rgb col = palette_color(0);
    CHECK(near_color(img, plot_x_px(a, 1.5), plot_y_px(a, 1.5), col, 1));
    CHECK(near_color(img, plot_x_px(a, 2), plot_y_px(a, 2), col, 1));
    CHECK(!near_color(img, plot_x_px(a, 5), plot_y_px(a, 5), col, 2, 30));
    CHECK(!near_color(img, plot_x_px(a, 4.6), plot_y_px(a, 4.6), col, 1, 30));
    CHECK(near_color(img, plot_x_px(a, 8), plot_y_px(a, 8), col, 1));
    CHECK(!near_color(img, plot_x_px(a, 7.5), plot_y_px(a, 7.5), col, 1, 30));
    // No band around x = 2 (its err is NaN), a band around x = 3.5.
    Rgb band = over_white(col, 0.2f);
    CHECK(!near_color(img, plot_x_px(a, 2), plot_y_px(a, 2.35), band, 1, 3));
    CHECK(near_color(img, plot_x_px(a, 3.5), plot_y_px(a, 3.85), band, 1, 3));

    LineSeries dead;
    dead.x = {0, 1}, dead.y = {NAN, NAN};
    p.series = {dead};
    std::string bad = tmp("dead.png");
    CHECK(has(error_of([&] { plot_lines(bad, p); }), "NaN"));
    CHECK(access(bad.c_str(), F_OK) != 0);
}

TEST_CASE("plot: grouped bars with error bars, n/a and a reference line") {
    TempFiles tmp;
    BarPlot p;
    p.title = "Neural fit";
    p.ylabel = "explained variance";
    p.width = 600, p.height = 400;
    p.groups = {"feedforward", "+ recurrence", "+ feedback"};
    p.series = {bars("V4", {0.5f, 0.25f, NAN}, {0.05f, 0.05f, 0.05f}), bars("IT", {0.4f, 0.6f, 0.3f})};
    p.hlines = {{0.7f, "IT ceiling"}};
    p.value_labels = true;
    std::string path = tmp("bars.png");
    PlotAxes a = plot_bars(path, p);
    Image img = image_load(path);
    CHECK(img.W == 600);
    CHECK(img.H == 400);
    CHECK(a.ymin == 0);
    CHECK(a.xmin == -0.5);
    CHECK(a.xmax == 2.5);
    // Bar i of group g spans x in [g - 0.4 + 0.4 i, g + 0.4 i]; read a column off its centre
    // (error bars run down the centre).
    auto spans = [&](int g, int i, float v, Rgb col) {
        int x = (int)plot_x_px(a, g - 0.4 + 0.4 * i + 0.1);
        int top = (int)std::ceil(plot_y_px(a, v)), base = (int)plot_y_px(a, 0);
        bool ok = true;
        for (int y = top + 1; y < base - 1; y++) ok &= same(pixel(img, x, y), col);
        for (int y = top - 8; y < top - 2; y++) ok &= !same(pixel(img, x, y), col);
        return ok;
    };
    CHECK(spans(1, 1, 0.6f, palette_color(1)));
    CHECK(spans(0, 0, 0.5f, palette_color(0)));
    CHECK(spans(2, 1, 0.3f, palette_color(1)));
    // The error bar of V4 / group 0 is dark at 0.5 + 0.05.
    CHECK(near_color(img, plot_x_px(a, -0.2), plot_y_px(a, 0.55), RGB_INK, 1, 40));
    // V4 has no bar in group 2.
    int x = (int)plot_x_px(a, 2 - 0.4 + 0.1);
    bool none = true;
    for (int y = (int)plot_y_px(a, 0.5); y < (int)plot_y_px(a, 0); y++) none &= !same(pixel(img, x, y), palette_color(0), 20);
    CHECK(none);

    // Long group names in a narrow figure still fit (wrapped or turned).
    BarPlot q = p;
    q.width = 320;
    q.groups = {"a very long configuration name", "reciprocal gated cell with feedback", "x"};
    std::string path2 = tmp("bars_long.png");
    PlotAxes b = plot_bars(path2, q);
    Image img2 = image_load(path2);
    CHECK(img2.W == 320);
    CHECK(b.bottom < img2.H - 40);
}

TEST_CASE("plot: heatmap colours, NaN cells and best-cell outlines") {
    TempFiles tmp;
    Heatmap h;
    h.title = "IT";
    h.rows = 3, h.cols = 4;
    h.values = {0.2f, 0.3f, 0.4f, NAN,  //
                0.5f, 0.6f, 0.9f, 0.1f,  //
                0.0f, 0.3f, 0.5f, 0.2f};
    h.row_labels = {"conv1", "conv2", "conv3"};
    h.col_labels = {"70", "90", "110", "130"};
    HeatmapStyle st;
    st.colorbar_label = "explained variance";
    std::string path = tmp("heat.png");
    PlotAxes a = plot_heatmap(path, h, st);
    Image img = image_load(path);
    CHECK(a.right <= img.W);
    CHECK(a.bottom <= img.H);
    auto cell = [&](const PlotAxes& ax, int r, int q) { return pixel(img, (int)plot_x_px(ax, q + 0.5), (int)plot_y_px(ax, r + 0.5)); };
    CHECK(same(cell(a, 1, 2), colormap_viridis(1)));  // the largest value: viridis' bright end
    CHECK(same(cell(a, 2, 0), colormap_viridis(0)));  // the smallest: its dark end
    CHECK(same(cell(a, 0, 0), colormap_viridis(0.2f / 0.9f), 1));
    CHECK(same(cell(a, 0, 3), RGB_MISSING));  // NaN: grey

    st.best = HeatmapBest::PerColumn;
    st.value_labels = true;
    std::string path2 = tmp("heat_best.png");
    a = plot_heatmap(path2, h, st);
    img = image_load(path2);
    // Column 2's best is row 1, column 0's is row 1 too; row 0 of column 0 is not outlined.
    CHECK(same(pixel(img, (int)plot_x_px(a, 2) + 1, (int)plot_y_px(a, 1) + 1), RGB_INK));
    CHECK(same(pixel(img, (int)plot_x_px(a, 0) + 1, (int)plot_y_px(a, 1) + 1), RGB_INK));
    CHECK(same(pixel(img, (int)plot_x_px(a, 0) + 1, (int)plot_y_px(a, 0) + 1), colormap_viridis(0.2f / 0.9f), 1));
}

TEST_CASE("plot: heatmap panels share one colour scale") {
    TempFiles tmp;
    Heatmap v4, it;
    v4.title = "V4", it.title = "IT";
    v4.rows = it.rows = 2, v4.cols = it.cols = 3;
    v4.values = {0, 0.2f, 1, 0.4f, 0.6f, 0.8f};
    it.values = {0, 0.1f, 0.5f, 0.2f, 0.3f, 0.4f};
    v4.row_labels = it.row_labels = {"layer 1", "layer 2"};
    HeatmapStyle st;
    st.title = "best layer per bin";
    std::string path = tmp("panels.png");
    std::vector<PlotAxes> ax = plot_heatmap_panels(path, {v4, it}, st);
    REQUIRE(ax.size() == 2);
    CHECK(ax[1].left > ax[0].right);
    CHECK(ax[0].top == ax[1].top);
    Image img = image_load(path);
    auto cell = [&](const PlotAxes& a, int r, int q) { return pixel(img, (int)plot_x_px(a, q + 0.5), (int)plot_y_px(a, r + 0.5)); };
    CHECK(same(cell(ax[0], 0, 2), colormap_viridis(1)));
    CHECK(same(cell(ax[1], 0, 2), colormap_viridis(0.5f), 1));  // IT's max is half the shared scale

    st.vmin = 0, st.vmax = 0.5f;  // fixed scale: values above vmax saturate
    std::string path2 = tmp("panels_fixed.png");
    ax = plot_heatmap_panels(path2, {v4, it}, st);
    img = image_load(path2);
    CHECK(same(cell(ax[0], 1, 1), colormap_viridis(1)));
    CHECK(same(cell(ax[1], 0, 2), colormap_viridis(1)));
}

TEST_CASE("plot: grid of small line plots") {
    TempFiles tmp;
    GridPlot p;
    p.title = "Example units";
    p.cols = 2;
    p.xlabel = "time (ms)";
    for (int k = 0; k < 5; k++) {
        GridPanel g;
        g.title = "unit " + std::to_string(k);
        LineSeries obs = series("observed"), pred = series("predicted");
        for (int t = 0; t <= 10; t++) {
            obs.x.push_back(t * 10), obs.y.push_back(k == 4 ? NAN : (float)t);
            pred.x.push_back(t * 10), pred.y.push_back(10.f - t);
        }
        g.series = {obs, pred};
        p.panels.push_back(g);
    }
    std::string path = tmp("grid.png");
    std::vector<PlotAxes> ax = plot_grid_lines(path, p);
    Image img = image_load(path);
    REQUIRE(ax.size() == 5);
    CHECK(ax[1].left > ax[0].right);
    CHECK(ax[2].top > ax[0].bottom);
    CHECK(ax[2].left == ax[0].left);
    CHECK(ax[1].right <= img.W);
    CHECK(ax[4].bottom <= img.H);
    CHECK(ax[0].right - ax[0].left == p.panel_width);
    for (int k : {0, 3})
        for (float t : {1.f, 3.f, 8.f}) {
            CHECK(near_color(img, plot_x_px(ax[k], t * 10), plot_y_px(ax[k], t), palette_color(0), 1));
            CHECK(near_color(img, plot_x_px(ax[k], t * 10), plot_y_px(ax[k], 10 - t), palette_color(1), 1));
        }
    CHECK(!near_color(img, plot_x_px(ax[4], 30), plot_y_px(ax[4], 3), palette_color(0), 2, 30));  // all NaN
    CHECK(near_color(img, plot_x_px(ax[4], 30), plot_y_px(ax[4], 7), palette_color(1), 1));
}

TEST_CASE("plot: bad input is refused with a clear message") {
    TempFiles tmp;
    std::string path = tmp("bad.png");
    LinePlot lp;
    CHECK(has(error_of([&] { plot_lines(path, lp); }), "LinePlot.series is empty"));
    CHECK(has(error_of([&] { plot_lines(path, lp); }), path));
    lp.series = {series("V4", {0, 1}, {0, 1, 2})};
    CHECK(has(error_of([&] { plot_lines(path, lp); }), "series 0 ('V4') has 2 x values and 3 y values"));
    lp.series = {series("V4", {0, 1}, {0, 1}, {0.1f})};
    CHECK(has(error_of([&] { plot_lines(path, lp); }), "1 y_err values for 2 points"));
    lp.series = {series("V4")};
    CHECK(has(error_of([&] { plot_lines(path, lp); }), "no points"));
    lp.series = {series("V4", {0, 1}, {0, 1})};
    lp.ymin = 1, lp.ymax = 0;
    CHECK(has(error_of([&] { plot_lines(path, lp); }), "y axis from 1 to 0 is empty"));
    lp.ymin = lp.ymax = NAN;
    lp.width = 50;
    CHECK(has(error_of([&] { plot_lines(path, lp); }), "figure size 50x500"));

    BarPlot bp;
    bp.series = {bars("V4", {0.5f})};
    CHECK(has(error_of([&] { plot_bars(path, bp); }), "BarPlot.groups is empty"));
    bp.groups = {"a", "b", "c"};
    CHECK(has(error_of([&] { plot_bars(path, bp); }), "series 0 ('V4') has 1 values for 3 groups"));
    bp.series = {};
    CHECK(has(error_of([&] { plot_bars(path, bp); }), "BarPlot.series is empty"));
    bp.series = {bars("V4", {1, 2, 3}, {1, 2})};
    CHECK(has(error_of([&] { plot_bars(path, bp); }), "2 err values for 3 groups"));

    Heatmap h;
    CHECK(has(error_of([&] { plot_heatmap(path, h); }), "panel 0 is 0 x 0"));
    h.rows = 2, h.cols = 2, h.values = {1, 2, 3};
    CHECK(has(error_of([&] { plot_heatmap(path, h); }), "3 values for 2 x 2 cells"));
    h.values = {1, 2, 3, 4}, h.row_labels = {"only one"};
    CHECK(has(error_of([&] { plot_heatmap(path, h); }), "1 row labels for 2 rows"));
    h.row_labels = {};
    HeatmapStyle st;
    st.vmin = 1, st.vmax = 1;
    CHECK(has(error_of([&] { plot_heatmap(path, h, st); }), "expected vmin < vmax"));
    CHECK(has(error_of([&] { plot_heatmap_panels(path, {}); }), "no panels"));

    GridPlot gp;
    CHECK(has(error_of([&] { plot_grid_lines(path, gp); }), "GridPlot.panels is empty"));
    gp.panels = {{"unit 1", {series("obs", {0, 1}, {NAN, NAN})}}};
    CHECK(has(error_of([&] { plot_grid_lines(path, gp); }), "no panel has a finite point"));
    CHECK(access(path.c_str(), F_OK) != 0);  // nothing written on failure
}

// plot.h: PNG figures for the neural-fitting tools, drawn without a plotting library.
//
// Two layers. A raster canvas: anti-aliased rectangles, lines, polylines and polygons with
// alpha, and text from stb_easy_font (libstb), horizontal or turned for y-axis labels. On top
// of it four chart types, each a config struct with named fields and one function that
// renders it, writes the PNG atomically (image_write_png) and returns where its axes landed:
//   plot_lines            series over x with shaded +-error bands, reference lines and
//                         shaded x spans ("explained variance over time, mean +- SEM")
//   plot_bars             grouped bars with error bars and dashed reference lines
//   plot_heatmap(_panels) matrices in viridis with one colour bar, best cells outlined
//   plot_grid_lines       a grid of small line plots sharing one legend
//
// Pixels: x grows rightwards, y downwards; pixel (x, y) covers [x, x+1) x [y, y+1), so a
// 1 px line through its centre runs at y + 0.5. Colours are 8-bit sRGB, blended in sRGB.
// NaN is a gap everywhere: a line or band breaks, a bar is left out ("n/a"), a heatmap cell
// is grey. Empty or mismatched inputs end in vt::fail naming the chart, the file and the
// field. Text is ASCII (stb_easy_font has nothing else): UTF-8 "±" prints as "+/-", "µ"/"μ"
// as "u", any other non-ASCII character as '?'.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "engine/io/image.h"

namespace vt {

// ---- colours ---------------------------------------------------------------------------

struct Rgb {
    uint8_t r = 0, g = 0, b = 0;
};

constexpr Rgb RGB_WHITE{255, 255, 255};
constexpr Rgb RGB_INK{34, 34, 34};          // text and axes
constexpr Rgb RGB_MISSING{200, 200, 200};   // NaN heatmap cells

Rgb palette_color(int i);                   // Okabe-Ito (colour-blind safe), cycling after 8:
                                            // blue, vermillion, green, purple, orange, sky, yellow, black
Rgb colormap_viridis(float t);              // t in [0, 1] (clamped) from 11 anchors of
                                            // matplotlib's viridis; NaN -> RGB_MISSING

// ---- canvas ----------------------------------------------------------------------------

struct Canvas {
    Image img;                              // (H, W, 3) the pixels
    int clip_x0 = 0, clip_y0 = 0;           // drawing only touches [clip_x0, clip_x1) x
    int clip_x1 = 0, clip_y1 = 0;           // [clip_y0, clip_y1); canvas_new sets the whole image
};

struct Point {
    float x = 0, y = 0;
};

struct Stroke {
    float width = 1.5f;                     // px, round caps
    Rgb color = RGB_INK;
    float alpha = 1;                        // 0 = invisible, 1 = opaque
    float dash = 0;                         // 0 = solid; else dashes this long in px, gaps 0.7x
};

enum class HAlign { Left, Center, Right };  // where (x, y) sits on the text's on-screen box
enum class VAlign { Top, Middle, Bottom };  // (Middle centres capitals; Bottom includes descenders)

struct TextStyle {
    float scale = 2;                        // px per font unit: capitals are 7 units tall, so 2
                                            // gives 14 px; 1-3 are sensible
    Rgb color = RGB_INK;
    HAlign halign = HAlign::Left;
    VAlign valign = VAlign::Top;
    bool vertical = false;                  // turned 90 degrees anticlockwise (reads upwards);
                                            // alignment still refers to the on-screen box
};

Canvas canvas_new(int W,                    // width in px, 1..IMAGE_MAX_SIDE
                  int H,                    // height in px, 1..IMAGE_MAX_SIDE
                  Rgb background = RGB_WHITE);
void canvas_set_clip(Canvas& c,             // limit drawing to [x0, x1) x [y0, y1), clamped to
                     int x0, int y0,        // the image; (0, 0, W, H) removes the limit
                     int x1, int y1);

void canvas_fill_rect(Canvas& c,            // fractional edges get partial coverage
                      float x0, float y0,   // one corner
                      float x1, float y1,   // the opposite corner
                      Rgb color,
                      float alpha = 1);
void canvas_stroke_rect(Canvas& c,          // an outline drawn inside [x0, x1) x [y0, y1)
                        float x0, float y0,
                        float x1, float y1,
                        float width,        // px
                        Rgb color);
void canvas_line(Canvas& c,                 // a segment; equal ends give a dot of diameter width
                 float x0, float y0,
                 float x1, float y1,
                 const Stroke& s);
void canvas_polyline(Canvas& c,             // joined segments blended once (no dark joints with
                     const std::vector<Point>& pts,  // alpha); a NaN point breaks the line and
                     const Stroke& s);               // a point alone between breaks is a dot
void canvas_fill_polygon(Canvas& c,         // non-zero winding, 4 sub-scanlines per row;
                         const std::vector<Point>& pts,  // NaN points are dropped
                         Rgb color,
                         float alpha = 1);
void canvas_circle(Canvas& c,               // a filled disc
                   float cx, float cy,      // centre
                   float r,                 // radius in px
                   Rgb color,
                   float alpha = 1);
void canvas_text(Canvas& c,                 // lines split at '\n' and aligned per halign
                 float x, float y,          // anchor, see TextStyle
                 const std::string& text,
                 const TextStyle& st);
float text_width(const std::string& text,   // px along the reading direction (widest line)
                 float scale);
float text_height(const std::string& text,  // px across it, descenders included
                  float scale);

// Round tick values (steps of 1, 2 or 5 times a power of ten) inside [lo, hi], about
// `target` of them.
std::vector<double> plot_nice_ticks(double lo, double hi, int target);

// ---- charts ----------------------------------------------------------------------------

// Where a chart's data landed, to map data onto pixels (callers adding marks; tests).
struct PlotAxes {
    int left = 0, top = 0;                  // the data area is [left, right) x [top, bottom)
    int right = 0, bottom = 0;
    double xmin = 0, xmax = 1;              // data x at left and right edges. plot_bars: group
                                            // g is centred on x = g; heatmaps: column c spans
                                            // [c, c+1)
    double ymin = 0, ymax = 1;              // data y at bottom and top edges. Heatmaps: ymin =
                                            // rows, ymax = 0, so row r spans [r, r+1) downwards
};
float plot_x_px(const PlotAxes& a, double x);  // pixel column of data x
float plot_y_px(const PlotAxes& a, double y);  // pixel row of data y

enum class Legend {
    Auto,                                   // inside, in the corner covering the least data;
                                            // outside on the right when every corner is busy
    Right,                                  // outside on the right
    None,
};

struct LineSeries {
    std::string label;                      // legend entry; "" keeps it out of the legend
    std::vector<float> x;                   // (n) NaN x or y breaks the line
    std::vector<float> y;                   // (n)
    std::vector<float> y_err;               // (n) or empty: band y +- y_err (alpha 0.2); NaN
                                            // breaks the band only
    int color = -1;                         // palette_color index; -1 = the series' position
    float width = 2.5f;                     // line width in px
    float dash = 0;                         // 0 = solid; else dash length in px
    bool markers = false;                   // a dot at each point
};

struct RefLine {                            // a dashed horizontal line, e.g. a noise ceiling
    float y = 0;
    std::string label;                      // written above its right end
    Rgb color{90, 90, 90};
};

struct XSpan {                              // a shaded x range, e.g. stimulus on 0-100 ms
    float x0 = 0, x1 = 0;
    std::string label;                      // written at its top left
};

struct LinePlot {
    std::string title, xlabel, ylabel;
    int width = 800, height = 500;          // px, at least 200 x 150
    std::vector<LineSeries> series;         // at least one, with at least one finite point
    std::vector<RefLine> hlines;
    std::vector<XSpan> xspans;
    float xmin = NAN, xmax = NAN;           // axis limits; NaN = fitted to the data (y with
    float ymin = NAN, ymax = NAN;           // 5% padding, reference lines included)
    Legend legend = Legend::Auto;
};

PlotAxes plot_lines(const std::string& path,  // PNG written here
                    const LinePlot& p);

struct BarSeries {
    std::string label;                      // legend entry
    std::vector<float> value;               // (G) one bar per group; NaN = no bar ("n/a")
    std::vector<float> err;                 // (G) or empty: error bar +- err; NaN = none
    int color = -1;                         // palette_color index; -1 = the series' position
};

struct BarPlot {
    std::string title, xlabel, ylabel;
    int width = 800, height = 500;          // px, at least 200 x 150
    std::vector<std::string> groups;        // (G) categories along x; long names wrap at
                                            // ' ', '_', '-', '/', '+' or turn vertical
    std::vector<BarSeries> series;          // S bars per group, side by side
    std::vector<RefLine> hlines;            // dashed reference lines
    bool value_labels = false;              // print each value above its bar
    float ymin = NAN, ymax = NAN;           // NaN = fitted (0 always included)
    Legend legend = Legend::Auto;
};

PlotAxes plot_bars(const std::string& path,  // PNG written here
                   const BarPlot& p);

struct Heatmap {                            // one panel
    std::string title;                      // above the panel
    int rows = 0, cols = 0;
    std::vector<float> values;              // (rows, cols) row-major; NaN = grey cell
    std::vector<std::string> row_labels;    // (rows) or empty
    std::vector<std::string> col_labels;    // (cols) or empty
};

enum class HeatmapBest { None, PerRow, PerColumn };  // which largest cells to outline

struct HeatmapStyle {
    std::string title, xlabel, ylabel;
    std::string colorbar_label;
    float vmin = NAN, vmax = NAN;           // colour scale shared by all panels; NaN = the
                                            // finite min / max over all panels
    HeatmapBest best = HeatmapBest::None;   // outline each row's or column's largest cell
    bool value_labels = false;              // print each value in its cell
    int value_decimals = 2;                 // for value_labels
    int cell_w = 0, cell_h = 0;             // px; 0 = chosen from the number of columns
};

PlotAxes plot_heatmap(const std::string& path,  // PNG written here
                      const Heatmap& h,
                      const HeatmapStyle& st = {});
std::vector<PlotAxes> plot_heatmap_panels(const std::string& path,  // panels side by side,
                                          const std::vector<Heatmap>& panels,  // one scale
                                          const HeatmapStyle& st = {});

struct GridPanel {
    std::string title;                      // above the panel
    std::vector<LineSeries> series;         // series i has the same colour in every panel;
                                            // all-NaN panels say "no data"
};

struct GridPlot {
    std::string title, xlabel, ylabel;      // for the whole grid
    int cols = 4;                           // panels per row
    int panel_width = 220;                  // data area of each panel, px
    int panel_height = 150;
    bool share_y = false;                   // one y range for every panel
    std::vector<XSpan> xspans;              // shaded in every panel
    std::vector<GridPanel> panels;          // row-major
};

std::vector<PlotAxes> plot_grid_lines(const std::string& path,  // PNG written here; the legend
                                      const GridPlot& p);       // takes series i's first label

}  // namespace vt

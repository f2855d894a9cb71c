// stimuli.cpp: the renderer of the virtual primate's stimuli (see stimuli.h).
//
// An object is a list of primitives (ellipses and polygons) in object coordinates, scaled
// so that its bounding box fits [-1, 1]^2, drawn in order (later on top) with a palette of
// four colours: main, secondary, dark, light. Coordinates: x to the right, y up.
#include "models/datasets/stimuli.h"

#include <algorithm>
#include <cmath>

#include "engine/tensor.h"

namespace vt {

uint64_t seed_mix(uint64_t a, uint64_t b) {  // splitmix64 of a pair
    uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float U(Rng& r, float a, float b) {
    return a + (b - a) * r.uniform();
}


namespace {

constexpr float PI = 3.14159265f;
const char* CATEGORIES[8] = {"animals", "boats", "cars", "chairs", "faces", "fruits", "planes", "tables"};
const char* OBJECT_STEM[8] = {"animal", "boat", "car", "chair", "face", "fruit", "plane", "table"};
const int LEVEL_CYCLE[10] = {3, 6, 0, 3, 6, 3, 6, 0, 3, 6};
constexpr float OBJECT_RADIUS = 0.6f;  // object half-extent at scale 1, in image half-widths


struct Rgb {
    float r = 0, g = 0, b = 0;
};
Rgb mix(Rgb a, Rgb b, float t) {
    return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}
Rgb scaled(Rgb a, float s) {
    return {a.r * s, a.g * s, a.b * s};
}
Rgb hsv(float h, float s, float v) {  // h in [0, 1)
    h = (h - std::floor(h)) * 6.f;
    int i = (int)h;
    float f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    switch (i % 6) {
        case 0:
            return {v, t, p};
        case 1:
            return {q, v, p};
        case 2:
            return {p, v, t};
        case 3:
            return {p, q, v};
        case 4:
            return {t, p, v};
        default:
            return {v, p, q};
    }
}

// ---- shapes ----------------------------------------------------------------------------

enum { MAIN, SECOND, DARK, LIGHT };

struct Prim {
    bool is_ellipse = true;
    float cx = 0, cy = 0, rx = 0, ry = 0, angle = 0;  // ellipse
    std::vector<float> xy;                            // polygon: x0, y0, x1, y1, ...
    int colour = MAIN;
};

struct Figure {
    std::vector<Prim> prims;
    Rgb palette[4];

    void ellipse(float cx, float cy, float rx, float ry, float angle, int col) {
        Prim p;
        p.cx = cx, p.cy = cy, p.rx = rx, p.ry = ry, p.angle = angle, p.colour = col;
        prims.push_back(p);
    }
    void circle(float cx, float cy, float r, int col) { ellipse(cx, cy, r, r, 0, col); }
    void poly(std::vector<float> xy, int col) {
        Prim p;
        p.is_ellipse = false, p.xy = std::move(xy), p.colour = col;
        prims.push_back(p);
    }
    // A w x h rectangle centred at (cx, cy), rotated by angle.
    void rect(float cx, float cy, float w, float h, float angle, int col) {
        float c = std::cos(angle), s = std::sin(angle), hw = w / 2, hh = h / 2;
        std::vector<float> xy;
        for (float sx : {-1.f, 1.f})
            for (float sy : {-1.f, 1.f}) {
                float x = sx * hw, y = (sx > 0 ? -sy : sy) * hh;  // corners in order around
                xy.push_back(cx + c * x - s * y), xy.push_back(cy + s * x + c * y);
            }
        poly(xy, col);
    }
    // A bar of width w from (x0, y0) to (x1, y1).
    void bar(float x0, float y0, float x1, float y1, float w, int col) {
        float len = std::hypot(x1 - x0, y1 - y0);
        rect((x0 + x1) / 2, (y0 + y1) / 2, len, w, std::atan2(y1 - y0, x1 - x0), col);
    }
    // A star-shaped blob: radius r * (1 + a2 cos(2t + p2) + a3 cos(3t + p3)) around (cx, cy).
    void blob(float cx, float cy, float rx, float ry, float a2, float a3, float p2, float p3, int col) {
        std::vector<float> xy;
        for (int k = 0; k < 48; k++) {
            float t = 2 * PI * k / 48, f = 1 + a2 * std::cos(2 * t + p2) + a3 * std::cos(3 * t + p3);
            xy.push_back(cx + rx * f * std::cos(t)), xy.push_back(cy + ry * f * std::sin(t));
        }
        poly(xy, col);
    }

    // Centres the bounding box and scales it to fit [-1, 1]^2.
    void normalise() {
        float x0 = 1e9f, x1 = -1e9f, y0 = 1e9f, y1 = -1e9f;
        for (const Prim& p : prims) {
            if (p.is_ellipse) {
                float c = std::cos(p.angle), s = std::sin(p.angle);
                float hx = std::hypot(p.rx * c, p.ry * s), hy = std::hypot(p.rx * s, p.ry * c);
                x0 = std::min(x0, p.cx - hx), x1 = std::max(x1, p.cx + hx);
                y0 = std::min(y0, p.cy - hy), y1 = std::max(y1, p.cy + hy);
            } else {
                for (size_t k = 0; k < p.xy.size(); k += 2) {
                    x0 = std::min(x0, p.xy[k]), x1 = std::max(x1, p.xy[k]);
                    y0 = std::min(y0, p.xy[k + 1]), y1 = std::max(y1, p.xy[k + 1]);
                }
            }
        }
        float mx = (x0 + x1) / 2, my = (y0 + y1) / 2, s = 2.f / std::max(x1 - x0, y1 - y0);
        for (Prim& p : prims) {
            p.cx = (p.cx - mx) * s, p.cy = (p.cy - my) * s, p.rx *= s, p.ry *= s;
            for (size_t k = 0; k < p.xy.size(); k += 2)
                p.xy[k] = (p.xy[k] - mx) * s, p.xy[k + 1] = (p.xy[k + 1] - my) * s;
        }
    }

    // The palette index of the topmost primitive at (x, y), or -1 outside the object.
    int colour_at(float x, float y) const {
        for (size_t i = prims.size(); i-- > 0;) {
            const Prim& p = prims[i];
            if (p.is_ellipse) {
                float dx = x - p.cx, dy = y - p.cy, c = std::cos(p.angle), s = std::sin(p.angle);
                float u = (dx * c + dy * s) / p.rx, v = (-dx * s + dy * c) / p.ry;
                if (u * u + v * v <= 1.f) return p.colour;
            } else {  // even-odd rule
                bool in = false;
                size_t n = p.xy.size() / 2;
                for (size_t a = 0, b = n - 1; a < n; b = a++) {
                    float xa = p.xy[2 * a], ya = p.xy[2 * a + 1], xb = p.xy[2 * b], yb = p.xy[2 * b + 1];
                    if ((ya > y) != (yb > y) && x < (xb - xa) * (y - ya) / (yb - ya) + xa) in = !in;
                }
                if (in) return p.colour;
            }
        }
        return -1;
    }
};

// Each builder draws object k (0..7) of its category with the object's generator r.

void build_animal(Figure& s, Rng& r, int k) {
    int type = k % 4;  // 0 dog-like, 1 long neck, 2 low and long-tailed, 3 bird
    s.palette[MAIN] = hsv(U(r, 0.02f, 0.13f), U(r, 0.3f, 0.75f), U(r, 0.35f, 0.85f));
    s.palette[SECOND] = hsv(U(r, 0.f, 1.f), U(r, 0.3f, 0.8f), U(r, 0.3f, 0.9f));
    if (type == 3) {
        float bl = U(r, 0.35f, 0.5f), bh = U(r, 0.2f, 0.3f), tilt = U(r, 0.1f, 0.4f);
        s.bar(-0.05f, -bh * 0.5f, -0.1f, -bh - 0.35f, 0.04f, DARK);
        s.bar(0.1f, -bh * 0.5f, 0.08f, -bh - 0.35f, 0.04f, DARK);
        s.poly({-bl * 0.8f, 0.05f, -bl - U(r, 0.25f, 0.45f), U(r, 0.1f, 0.35f), -bl - 0.3f, -0.1f}, SECOND);  // tail
        s.ellipse(0, 0, bl, bh, tilt, MAIN);
        float hr = U(r, 0.12f, 0.18f), hx = bl * 0.8f, hy = bh + 0.1f;
        s.circle(hx, hy, hr, MAIN);
        s.poly({hx + hr * 0.8f, hy + 0.04f, hx + hr * 0.8f, hy - 0.05f, hx + hr + U(r, 0.12f, 0.3f), hy - 0.02f},
               SECOND);
        s.circle(hx + hr * 0.3f, hy + hr * 0.3f, 0.035f, DARK);
        s.ellipse(-0.05f, 0.02f, bl * 0.6f, bh * 0.5f, tilt - 0.2f, SECOND);  // wing
        return;
    }
    float bl = U(r, 0.45f, 0.75f), bh = U(r, 0.18f, 0.3f);
    float leg_len = type == 2 ? U(r, 0.1f, 0.18f) : U(r, 0.25f, 0.55f), leg_w = U(r, 0.06f, 0.1f);
    for (float fx : {-0.7f, -0.45f, 0.45f, 0.7f}) {
        float x = fx * bl, y0 = -bh * 0.5f;
        s.bar(x, y0, x + U(r, -0.05f, 0.05f), y0 - leg_len, leg_w, fx == -0.45f || fx == 0.45f ? SECOND : MAIN);
    }
    if (type == 2)
        s.poly({-bl * 0.8f, bh * 0.5f, -bl * 0.8f, -bh * 0.5f, -bl - U(r, 0.5f, 0.8f), -0.05f}, MAIN);
    else
        s.bar(-bl * 0.9f, 0.1f, -bl - 0.3f, U(r, -0.3f, 0.4f), 0.06f, MAIN);
    s.ellipse(0, 0, bl, bh, 0, MAIN);
    if (k >= 4)  // spots
        for (int i = 0; i < 3; i++)
            s.ellipse(U(r, -0.6f, 0.6f) * bl, U(r, -0.3f, 0.4f) * bh, 0.08f, 0.06f, U(r, 0, PI), SECOND);
    float neck_len = type == 1 ? U(r, 0.5f, 0.8f) : type == 2 ? 0.05f : U(r, 0.1f, 0.25f);
    float neck_ang = type == 1 ? U(r, 1.1f, 1.4f) : U(r, 0.3f, 0.9f);
    float nx = bl * 0.75f, ny = bh * 0.3f, hx = nx + neck_len * std::cos(neck_ang),
          hy = ny + neck_len * std::sin(neck_ang);
    s.bar(nx, ny, hx, hy, U(r, 0.1f, 0.16f), MAIN);
    float hr = U(r, 0.1f, 0.17f);
    s.poly({hx - 0.03f, hy + hr * 0.5f, hx + 0.06f, hy + hr * 0.5f, hx + 0.01f, hy + hr * U(r, 1.4f, 2.f)},
           SECOND);  // ear
    s.ellipse(hx + 0.08f, hy, hr * U(r, 1.2f, 1.8f), hr, U(r, -0.4f, 0.1f), MAIN);
    s.circle(hx + 0.1f, hy + hr * 0.3f, 0.03f, DARK);
}

void build_boat(Figure& s, Rng& r, int k) {
    s.palette[MAIN] = hsv(U(r, 0.f, 1.f), U(r, 0.4f, 0.9f), U(r, 0.3f, 0.8f));
    s.palette[SECOND] = hsv(U(r, 0.f, 1.f), U(r, 0.5f, 0.9f), U(r, 0.6f, 0.95f));
    float L = U(r, 0.7f, 1.f), D = U(r, 0.12f, 0.25f), bow = U(r, 0.05f, 0.3f), stern = U(r, 0.f, 0.12f);
    if (k % 2 == 0) {  // sailing boat
        float xm = U(r, -0.2f, 0.2f), H = U(r, 0.7f, 1.2f);
        s.rect(xm, H / 2, 0.035f, H, 0, DARK);
        s.poly({xm - 0.03f, 0.08f, xm - 0.03f, H * 0.95f, xm - U(r, 0.4f, 0.7f), 0.08f}, LIGHT);
        if (k % 4 == 0) s.poly({xm + 0.03f, H * 0.85f, xm + 0.03f, 0.08f, xm + U(r, 0.3f, 0.5f), 0.08f}, SECOND);
    } else {  // motor boat or ship
        float cw = U(r, 0.5f, 0.9f) * L, ch = U(r, 0.15f, 0.3f), xc = U(r, -0.3f, 0.1f);
        if (k % 4 == 3) s.rect(xc - cw * 0.2f, ch + 0.15f, 0.12f, 0.3f, 0, SECOND);  // funnel
        s.rect(xc, ch / 2, cw, ch, 0, LIGHT);
        if (k % 4 == 1) s.rect(xc - cw * 0.1f, ch + 0.06f, cw * 0.5f, 0.12f, 0, LIGHT);
        for (int i = 0; i < 3; i++) s.rect(xc + (i - 1) * cw * 0.28f, ch * 0.55f, 0.07f, 0.05f, 0, DARK);
    }
    s.poly({-L, 0, L + bow, 0.06f, L * 0.8f, -D, -L + stern, -D}, MAIN);
    s.rect(0, -D * 0.3f, 2 * L * 0.95f, 0.03f, 0.01f, SECOND);  // stripe
}

void build_car(Figure& s, Rng& r, int k) {
    s.palette[MAIN] = hsv(U(r, 0.f, 1.f), U(r, 0.5f, 0.95f), U(r, 0.4f, 0.95f));
    s.palette[SECOND] = hsv(U(r, 0.f, 1.f), U(r, 0.3f, 0.8f), U(r, 0.5f, 0.9f));
    s.palette[LIGHT] = {0.7f, 0.82f, 0.92f};  // glass
    int type = k % 4;                         // sedan, compact, truck, van
    float L = U(r, 0.8f, 1.f), bh = U(r, 0.18f, 0.28f), wr = U(r, 0.12f, 0.18f);
    if (type == 3) bh = U(r, 0.45f, 0.6f);
    s.rect(0, 0, 2 * L, bh, 0, MAIN);
    s.ellipse(L, 0, 0.06f, bh * 0.45f, 0, SECOND);  // bumpers
    s.ellipse(-L, 0, 0.05f, bh * 0.45f, 0, SECOND);
    float top = bh / 2, ch = U(r, 0.15f, 0.28f);
    if (type == 0 || type == 1) {
        float back = type == 0 ? -L * U(r, 0.5f, 0.65f) : -L * 0.95f, front = L * U(r, 0.3f, 0.5f);
        s.poly({back, top, front, top, front - 0.25f, top + ch, back + 0.15f, top + ch}, MAIN);
        s.poly({back + 0.08f, top + 0.03f, front - 0.06f, top + 0.03f, front - 0.27f, top + ch - 0.04f, back + 0.19f,
                top + ch - 0.04f},
               LIGHT);
    } else if (type == 2) {
        s.rect(L * 0.55f, top + ch / 2, L * 0.7f, ch, 0, MAIN);
        s.rect(L * 0.62f, top + ch * 0.55f, L * 0.4f, ch * 0.6f, 0, LIGHT);
        s.rect(-L * 0.35f, top + ch * 0.7f, L * 1.25f, ch * 1.4f, 0, SECOND);  // cargo box
    } else {
        for (int i = 0; i < 4; i++) s.rect(-L * 0.7f + i * L * 0.45f, bh * 0.2f, L * 0.3f, bh * 0.3f, 0, LIGHT);
    }
    for (float fx : {-0.62f, 0.62f}) {
        s.circle(fx * L, -bh / 2, wr, DARK);
        s.circle(fx * L, -bh / 2, wr * 0.45f, SECOND);
    }
}

void build_chair(Figure& s, Rng& r, int k) {
    s.palette[MAIN] = hsv(U(r, 0.04f, 0.12f), U(r, 0.3f, 0.8f), U(r, 0.3f, 0.75f));  // wood
    if (k % 3 == 2) s.palette[MAIN] = hsv(U(r, 0.f, 1.f), U(r, 0.4f, 0.9f), U(r, 0.4f, 0.9f));
    s.palette[SECOND] = hsv(U(r, 0.f, 1.f), U(r, 0.4f, 0.9f), U(r, 0.5f, 0.95f));
    float sw = U(r, 0.45f, 0.7f), st = U(r, 0.07f, 0.12f), ll = U(r, 0.4f, 0.7f), lw = U(r, 0.05f, 0.09f);
    float splay = k % 4 == 1 ? U(r, 0.05f, 0.15f) : 0.f;
    s.bar(-sw / 2 + lw / 2, 0, -sw / 2 + lw / 2 - splay, -ll, lw, MAIN);
    s.bar(sw / 2 - lw / 2, 0, sw / 2 - lw / 2 + splay, -ll, lw, MAIN);
    if (k != 7) {  // object 7 is a stool
        float bh = U(r, 0.5f, 0.9f), tilt = U(r, -0.3f, 0.02f), bx = -sw / 2 + 0.04f;
        float tx = bx + bh * std::sin(-tilt), ty = st / 2 + bh * std::cos(tilt);
        if (k % 3 == 1) {  // frame back with slats
            s.bar(bx, st / 2, tx, ty, 0.06f, MAIN);
            s.bar(tx - 0.02f, ty, tx + 0.25f, ty + 0.02f, 0.07f, MAIN);
            for (int i = 1; i <= 2; i++)
                s.bar(bx + 0.05f * i + 0.04f, st / 2, tx + 0.06f * i + 0.04f, ty, 0.035f, MAIN);
        } else {
            s.bar(bx, st / 2, tx, ty, U(r, 0.07f, 0.14f), MAIN);
        }
        if (k % 4 == 2) {  // armrest
            s.bar(bx, 0.28f, sw / 2 - 0.05f, 0.28f, 0.05f, SECOND);
            s.bar(sw / 2 - 0.08f, 0.28f, sw / 2 - 0.08f, st / 2, 0.04f, MAIN);
        }
    }
    s.rect(0, 0, sw, st, 0, MAIN);
    if (k % 2 == 0) s.ellipse(0.02f, st / 2 + 0.02f, sw * 0.48f, 0.05f, 0, SECOND);  // cushion
}

void build_face(Figure& s, Rng& r, int k) {
    static const Rgb SKIN[6] = {{0.96f, 0.8f, 0.69f}, {0.9f, 0.7f, 0.55f}, {0.78f, 0.57f, 0.42f},
                                {0.62f, 0.43f, 0.3f}, {0.45f, 0.3f, 0.2f}, {0.35f, 0.22f, 0.15f}};
    s.palette[MAIN] = SKIN[(k * 5 + 1) % 6];
    s.palette[SECOND] = mix(s.palette[MAIN], Rgb{0.6f, 0.1f, 0.1f}, 0.45f);
    s.palette[DARK] = hsv(U(r, 0.02f, 0.12f), U(r, 0.3f, 0.9f), U(r, 0.05f, 0.5f));  // hair
    s.palette[LIGHT] = {0.95f, 0.95f, 0.93f};
    float rx = U(r, 0.5f, 0.65f), ry = U(r, 0.65f, 0.85f);
    int hair = k % 4;  // bald, short, long, hat
    if (hair == 1) s.ellipse(0, ry * 0.2f, rx * 1.1f, ry * 0.95f, 0, DARK);
    if (hair == 2) s.ellipse(0, -ry * 0.1f, rx * 1.25f, ry * 1.1f, 0, DARK);
    for (float sx : {-1.f, 1.f}) s.ellipse(sx * rx, 0, 0.1f, 0.16f, 0, MAIN);
    s.ellipse(0, 0, rx, ry, 0, MAIN);
    if (k == 6) s.ellipse(0, -ry * 0.6f, rx * 0.7f, ry * 0.4f, 0, DARK);  // beard
    float ex = U(r, 0.18f, 0.3f), ey = U(r, 0.05f, 0.2f), er = U(r, 0.07f, 0.11f);
    for (float sx : {-1.f, 1.f}) {
        s.ellipse(sx * ex, ey, er * 1.4f, er, 0, LIGHT);
        s.circle(sx * ex, ey, er * 0.55f, DARK);
        s.ellipse(sx * ex, ey + er * 1.8f, er * 1.5f, 0.025f, sx * 0.15f, DARK);  // brow
    }
    float nl = U(r, 0.12f, 0.25f);
    s.poly({0, ey - 0.05f, -0.07f, ey - 0.05f - nl, 0.07f, ey - 0.05f - nl}, SECOND);
    s.ellipse(0, -ry * 0.5f, U(r, 0.12f, 0.25f), U(r, 0.03f, 0.08f), 0, SECOND);
    if (hair == 3) {
        float hy = ry * 0.8f;
        s.rect(0, hy, rx * 2.6f, 0.08f, 0, SECOND);
        s.rect(0, hy + 0.22f, rx * 1.5f, 0.4f, 0, SECOND);
    }
}

void build_fruit(Figure& s, Rng& r, int k) {
    static const float HUE[8] = {0.0f, 0.07f, 0.2f, 0.15f, 0.16f, 0.98f, 0.8f, 0.33f};
    s.palette[MAIN] = hsv(HUE[k] + U(r, -0.02f, 0.02f), U(r, 0.6f, 0.95f), U(r, 0.6f, 0.95f));
    s.palette[SECOND] = hsv(U(r, 0.25f, 0.38f), U(r, 0.5f, 0.9f), U(r, 0.35f, 0.7f));  // leaf
    s.palette[DARK] = hsv(0.07f, 0.7f, 0.3f);                                          // stem, seeds
    s.palette[LIGHT] = {0.95f, 0.9f, 0.6f};
    switch (k) {
        case 0:  // apple
        case 1:  // orange
            s.blob(0, 0, U(r, 0.55f, 0.7f), U(r, 0.5f, 0.65f), U(r, 0.f, 0.08f), U(r, 0.f, 0.06f), U(r, 0, 6),
                   U(r, 0, 6), MAIN);
            break;
        case 2:  // pear
            s.circle(0, -0.2f, U(r, 0.4f, 0.5f), MAIN);
            s.circle(U(r, -0.05f, 0.05f), 0.25f, U(r, 0.22f, 0.3f), MAIN);
            break;
        case 3: {  // banana: a crescent
            std::vector<float> xy;
            float R = U(r, 0.7f, 0.9f), w = U(r, 0.18f, 0.28f), a0 = U(r, 0.3f, 0.6f), a1 = PI - U(r, 0.3f, 0.6f);
            for (int i = 0; i <= 16; i++) {
                float a = -(a0 + (a1 - a0) * i / 16);
                xy.push_back(R * std::cos(a)), xy.push_back(R * std::sin(a) + R * 0.6f);
            }
            for (int i = 16; i >= 0; i--) {
                float a = -(a0 + (a1 - a0) * i / 16), rr = R - w * std::sin(PI * i / 16);
                xy.push_back(rr * std::cos(a)), xy.push_back(rr * std::sin(a) + R * 0.6f);
            }
            s.poly(xy, MAIN);
            break;
        }
        case 4:  // lemon
            s.ellipse(0, 0, U(r, 0.55f, 0.7f), U(r, 0.4f, 0.5f), 0, MAIN);
            s.poly({0.5f, 0.12f, 0.5f, -0.12f, 0.8f, 0}, MAIN);
            s.poly({-0.5f, 0.12f, -0.5f, -0.12f, -0.8f, 0}, MAIN);
            break;
        case 5:  // strawberry
            s.poly({-0.55f, 0.3f, 0.55f, 0.3f, 0.35f, -0.3f, 0, -0.75f, -0.35f, -0.3f}, MAIN);
            s.circle(-0.28f, 0.3f, 0.28f, MAIN);
            s.circle(0.28f, 0.3f, 0.28f, MAIN);
            for (int i = 0; i < 8; i++) s.circle(U(r, -0.3f, 0.3f), U(r, -0.35f, 0.35f), 0.03f, LIGHT);
            break;
        case 6:  // grapes
            for (int row = 0; row < 4; row++)
                for (int i = 0; i <= 3 - row; i++)
                    s.circle((i - (3 - row) / 2.f) * 0.3f, 0.3f - row * 0.26f, 0.16f, MAIN);
            break;
        default:  // watermelon slice
            s.palette[MAIN] = {0.9f, 0.2f, 0.25f};
            std::vector<float> rind, flesh;
            for (int i = 0; i <= 24; i++) {
                float a = -PI * i / 24;
                rind.push_back(0.9f * std::cos(a)), rind.push_back(0.9f * std::sin(a));
                flesh.push_back(0.78f * std::cos(a)), flesh.push_back(0.78f * std::sin(a));
            }
            s.poly(rind, SECOND);
            s.poly(flesh, MAIN);
            for (int i = 0; i < 6; i++) s.ellipse(U(r, -0.45f, 0.45f), U(r, -0.5f, -0.15f), 0.03f, 0.05f, 0, DARK);
            return;
    }
    s.bar(0, 0.4f, U(r, -0.05f, 0.1f), 0.65f, 0.05f, DARK);                                   // stem
    if (k != 3) s.ellipse(0.15f, 0.58f, U(r, 0.12f, 0.2f), 0.06f, U(r, 0.2f, 0.6f), SECOND);  // leaf
}

void build_plane(Figure& s, Rng& r, int k) {
    s.palette[MAIN] = k % 3 == 0 ? hsv(U(r, 0.f, 1.f), U(r, 0.f, 0.15f), U(r, 0.75f, 0.95f))
                                 : hsv(U(r, 0.f, 1.f), U(r, 0.3f, 0.8f), U(r, 0.4f, 0.9f));
    s.palette[SECOND] = hsv(U(r, 0.f, 1.f), U(r, 0.5f, 0.9f), U(r, 0.5f, 0.9f));
    float fl = U(r, 0.85f, 1.f), fw = U(r, 0.07f, 0.13f);
    auto wing = [&](float x, float rc, float span, float sweep, float tc, int col) {
        for (float sy : {-1.f, 1.f})
            s.poly({x + rc / 2, 0, x + rc / 2 - sweep, sy * span, x + rc / 2 - sweep - tc, sy * span, x - rc / 2, 0},
                   col);
    };
    if (k == 5) {  // delta wing
        float span = U(r, 0.5f, 0.7f);
        s.poly({0.3f, 0, -fl * 0.8f, span, -fl * 0.8f, -span}, MAIN);
    } else {
        float span = U(r, 0.6f, 1.f), rc = U(r, 0.25f, 0.45f), wx = U(r, -0.1f, 0.2f);
        wing(wx, rc, span, U(r, 0.f, 0.5f), U(r, 0.08f, 0.2f), MAIN);
        if (k % 2 == 1)
            for (float sy : {-1.f, 1.f}) s.ellipse(wx, sy * span * 0.45f, 0.14f, 0.05f, 0, SECOND);  // engines
    }
    wing(-fl * 0.82f, U(r, 0.12f, 0.2f), U(r, 0.18f, 0.35f), U(r, 0.f, 0.15f), 0.08f, SECOND);  // tail
    s.ellipse(0, 0, fl, fw, 0, MAIN);
    s.ellipse(fl * 0.75f, 0, 0.08f, fw * 0.6f, 0, DARK);  // cockpit
}

void build_table(Figure& s, Rng& r, int k) {
    s.palette[MAIN] = k % 2 == 0 ? hsv(U(r, 0.05f, 0.11f), U(r, 0.4f, 0.8f), U(r, 0.3f, 0.7f))
                                 : hsv(U(r, 0.f, 1.f), U(r, 0.2f, 0.8f), U(r, 0.4f, 0.95f));
    s.palette[SECOND] = hsv(U(r, 0.f, 1.f), U(r, 0.3f, 0.8f), U(r, 0.3f, 0.8f));
    float tw = U(r, 0.75f, 1.f), tt = U(r, 0.06f, 0.12f), ll = U(r, 0.5f, 0.8f), lw = U(r, 0.05f, 0.1f);
    int type = k % 4;  // four legs, pedestal, trestle, drawer and shelf
    if (type == 0) {
        for (float fx : {-0.7f, 0.7f}) s.rect(fx * tw, -ll / 2, lw * 0.8f, ll, 0, SECOND);  // back legs
        for (float fx : {-0.92f, 0.92f}) s.rect(fx * tw, -ll / 2, lw, ll, 0, MAIN);
    } else if (type == 1) {
        s.rect(0, -ll / 2, lw * 2.f, ll, 0, MAIN);
        s.ellipse(0, -ll, tw * 0.45f, 0.07f, 0, MAIN);
    } else if (type == 2) {
        float sp = tw * U(r, 0.4f, 0.7f);
        for (float sx : {-1.f, 1.f}) {
            s.bar(sx * sp, 0, -sx * sp * 0.6f, -ll, lw, MAIN);
            s.bar(-sx * sp * 0.6f, 0, sx * sp, -ll, lw, MAIN);
        }
    } else {
        for (float fx : {-0.9f, 0.9f}) s.rect(fx * tw, -ll / 2, lw, ll, 0, MAIN);
        s.rect(0, -tt / 2 - 0.1f, tw * 1.6f, 0.2f, 0, SECOND);
        s.rect(0, -ll * 0.75f, tw * 1.8f, 0.05f, 0, MAIN);
    }
    if (k >= 4)
        s.ellipse(0, 0, tw, U(r, 0.12f, 0.2f), 0, MAIN);  // a round top seen from above
    else
        s.rect(0, 0, 2 * tw, tt, 0, MAIN);
}

// The 64 fixed shapes, built once.
const std::vector<Figure>& object_shapes() {
    static const std::vector<Figure> shapes = [] {
        std::vector<Figure> v(64);
        void (*build[8])(Figure&, Rng&, int) = {build_animal, build_boat,  build_car,   build_chair,
                                                build_face,   build_fruit, build_plane, build_table};
        for (int o = 0; o < 64; o++) {
            int cat = o % 8, k = o / 8;
            Figure& s = v[o];
            Rng r(seed_mix(0x0b1ec75eedull, (uint64_t)o));
            s.palette[DARK] = {0.12f, 0.11f, 0.1f};
            s.palette[LIGHT] = {0.92f, 0.92f, 0.9f};
            build[cat](s, r, k);
            s.normalise();
        }
        return v;
    }();
    return shapes;
}

// ---- backgrounds -----------------------------------------------------------------------

// Smooth value noise in [0, 1] over the unit square: octaves with 1/f amplitudes.
struct Noise {
    std::vector<std::vector<float>> grids;  // (g + 1)^2 per octave
    std::vector<int> sizes;
    float lo = 0, hi = 1;

    Noise(Rng& r, int octaves, int g0) {
        for (int o = 0, g = g0; o < octaves; o++, g *= 2) {
            std::vector<float> v((size_t)(g + 1) * (g + 1));
            for (float& x : v) x = r.uniform();
            grids.push_back(v), sizes.push_back(g);
        }
    }
    float raw(float x, float y) const {
        float sum = 0, amp = 1;
        for (size_t o = 0; o < grids.size(); o++, amp *= 0.5f) {
            int g = sizes[o];
            float fx = x * g, fy = y * g;
            int ix = std::min((int)fx, g - 1), iy = std::min((int)fy, g - 1);
            float tx = fx - ix, ty = fy - iy;
            tx = tx * tx * (3 - 2 * tx), ty = ty * ty * (3 - 2 * ty);  // smoothstep
            const float* v = grids[o].data();
            float a = v[iy * (g + 1) + ix], b = v[iy * (g + 1) + ix + 1];
            float c = v[(iy + 1) * (g + 1) + ix], d = v[(iy + 1) * (g + 1) + ix + 1];
            sum += amp * ((a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty);
        }
        return sum;
    }
};

// (S, S) background colours; one of three kinds, drawn by r.
std::vector<Rgb> render_background(Rng& r, int S) {
    int kind = (int)r.randint(3);  // noise, grating, horizon
    Rgb c1 = hsv(U(r, 0, 1), U(r, 0.1f, 0.6f), U(r, 0.2f, 0.9f)),
        c2 = hsv(U(r, 0, 1), U(r, 0.1f, 0.6f), U(r, 0.2f, 0.9f));
    Rgb sky = hsv(U(r, 0.5f, 0.7f), U(r, 0.1f, 0.5f), U(r, 0.6f, 0.95f));
    Noise n1(r, 5, 2), n2(r, 4, 4);
    float freq = U(r, 2, 7), ori = U(r, 0, PI), phase = U(r, 0, 2 * PI), horizon = U(r, -0.4f, 0.4f);
    std::vector<float> a((size_t)S * S), b((size_t)S * S);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float u = (x + 0.5f) / S, v = (y + 0.5f) / S;
            a[(size_t)y * S + x] = n1.raw(u, v), b[(size_t)y * S + x] = n2.raw(u, v);
        }
    auto normalise = [](std::vector<float>& f) {
        auto mm = std::minmax_element(f.begin(), f.end());
        float lo = *mm.first, span = std::max(*mm.second - lo, 1e-6f);
        for (float& x : f) x = (x - lo) / span;
    };
    normalise(a), normalise(b);
    std::vector<Rgb> out((size_t)S * S);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            size_t i = (size_t)y * S + x;
            float u = 2 * (x + 0.5f) / S - 1, v = 1 - 2 * (y + 0.5f) / S;  // image coords, y up
            float tex = 0.8f + 0.4f * (b[i] - 0.5f);
            Rgb c;
            if (kind == 0) {
                c = scaled(mix(c1, c2, a[i]), tex);
            } else if (kind == 1) {
                float g = 0.5f + 0.5f * std::sin(PI * freq * (u * std::cos(ori) + v * std::sin(ori)) + phase);
                c = scaled(mix(c1, c2, 0.6f * g + 0.4f * a[i]), tex);
            } else if (v > horizon + 0.2f * (b[i] - 0.5f)) {
                c = mix(sky, Rgb{0.95f, 0.95f, 0.97f}, 0.5f * (1 - v) * a[i]);
            } else {
                c = scaled(mix(c1, c2, a[i]), tex * (0.7f + 0.3f * (v + 1) / 2));
            }
            out[i] = c;
        }
    return out;
}

uint8_t to_u8(float v) {
    return (uint8_t)std::lround(std::min(std::max(v, 0.f), 1.f) * 255.f);
}

}  // namespace

std::vector<std::string> stimulus_categories() {
    return std::vector<std::string>(CATEGORIES, CATEGORIES + 8);
}

std::vector<Stimulus> stimuli_render(const StimulusConfig& cfg) {
    if (cfg.images < 1) fail("stimuli: --images must be >= 1, got %d", cfg.images);
    if (cfg.size < 8 || cfg.size > 1024) fail("stimuli: --size must be in [8, 1024] pixels, got %d", cfg.size);
    CHECK(cfg.supersample >= 1, "stimuli: supersample %d", cfg.supersample);
    const std::vector<Figure>& shapes = object_shapes();
    const int S = cfg.size, ss = cfg.supersample;
    std::vector<Stimulus> out(cfg.images);
    for (int i = 0; i < cfg.images; i++) {
        int o = i % 64, cat = o % 8, level = LEVEL_CYCLE[(i / 64) % 10];
        const Figure& shape = shapes[o];
        Stimulus& st = out[i];
        st.id = strfmt("img%04d", i);
        st.object = strfmt("%s%d", OBJECT_STEM[cat], o / 8 + 1);
        st.category = CATEGORIES[cat];
        st.variation = level;

        Rng r(seed_mix(cfg.seed, (uint64_t)i));
        float px = 0, py = 0, scale = 1, angle = 0;
        if (level > 0) {
            float shift = level == 3 ? 0.2f : 0.45f, smax = level == 3 ? 1.25f : 1.6f, rot = level == 3 ? 0.25f : 0.5f;
            px = U(r, -shift, shift), py = U(r, -shift, shift);
            scale = std::exp(U(r, -std::log(smax), std::log(smax)));
            angle = U(r, -rot, rot) * PI;
        }
        std::vector<Rgb> bg = render_background(r, S);
        float R = OBJECT_RADIUS * scale, ca = std::cos(angle), sa = std::sin(angle);
        float reach = R * 1.4143f + 2.f / S;  // bounding circle of the object's box, plus a pixel

        st.image.H = st.image.W = S;
        st.image.rgb.resize((size_t)S * S * 3);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                size_t pix = (size_t)y * S + x;
                float u = 2 * (x + 0.5f) / S - 1 - px, v = 1 - 2 * (y + 0.5f) / S - py;
                Rgb c = bg[pix];
                if (u * u + v * v <= reach * reach) {
                    Rgb acc;
                    for (int sy = 0; sy < ss; sy++)
                        for (int sx = 0; sx < ss; sx++) {
                            float su = 2 * (x + (sx + 0.5f) / ss) / S - 1 - px,
                                  sv = 1 - 2 * (y + (sy + 0.5f) / ss) / S - py;
                            float qx = (ca * su + sa * sv) / R, qy = (-sa * su + ca * sv) / R;  // object coords
                            int col = shape.colour_at(qx, qy);
                            Rgb s = bg[pix];
                            if (col >= 0) s = scaled(shape.palette[col], 0.85f + 0.15f * (0.4f * qx + 0.7f * qy));
                            acc.r += s.r, acc.g += s.g, acc.b += s.b;
                        }
                    c = scaled(acc, 1.f / (ss * ss));
                }
                st.image.rgb[pix * 3] = to_u8(c.r), st.image.rgb[pix * 3 + 1] = to_u8(c.g),
                                   st.image.rgb[pix * 3 + 2] = to_u8(c.b);
            }
    }
    return out;
}

Image stimuli_contact_sheet(const std::vector<Stimulus>& s, int cols) {
    CHECK(!s.empty() && cols >= 1, "contact sheet of %zu images in %d columns", s.size(), cols);
    const int H = s[0].image.H, W = s[0].image.W, gap = 2;
    const int rows = ((int)s.size() + cols - 1) / cols;
    Image sheet;
    sheet.H = rows * (H + gap) + gap, sheet.W = cols * (W + gap) + gap;
    sheet.rgb.assign((size_t)sheet.H * sheet.W * 3, 128);
    for (size_t i = 0; i < s.size(); i++) {
        int y0 = gap + (int)(i / cols) * (H + gap), x0 = gap + (int)(i % cols) * (W + gap);
        CHECK(s[i].image.H == H && s[i].image.W == W, "contact sheet: images of different sizes");
        for (int y = 0; y < H; y++)
            std::copy_n(&s[i].image.rgb[(size_t)y * W * 3], W * 3, &sheet.rgb[((size_t)(y0 + y) * sheet.W + x0) * 3]);
    }
    return sheet;
}

}  // namespace vt

// test_ops.cpp: every op against the gradient checker, conv2d against a direct convolution,
// and the tape's contracts (accumulation, frozen parameters, replay, inference).
#include <cmath>
#include <cstring>

#include "engine/gradcheck.h"
#include "engine/ops.h"
#include "engine/params.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fastmath.h"
#include "tests/testutil.h"

using namespace vt;

namespace {

Tensor randn(const Shape& s, uint64_t seed, float std = 1.f, bool grad = true) {
    Tensor t = tensor_empty(s, Device::CPU, grad);
    Rng r(seed);
    tensor_randn(t, r, std);
    return t;
}

// Values bounded away from zero (|x| in [0.2, 1.2]): no ReLU/ELU kink within eps.
Tensor away_from_zero(const Shape& s, uint64_t seed) {
    Tensor t = tensor_empty(s, Device::CPU, true);
    Rng r(seed);
    for (int64_t i = 0; i < t.numel(); i++) t.data()[i] = (r.uniform() < 0.5f ? -1.f : 1.f) * (0.2f + r.uniform());
    return t;
}

// Distinct values spaced >= 0.05 apart (a shuffled ramp): no max-pool ties within eps.
Tensor distinct(const Shape& s, uint64_t seed) {
    Tensor t = tensor_empty(s, Device::CPU, true);
    int64_t n = t.numel();
    std::vector<int64_t> perm((size_t)n);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    Rng r(seed);
    for (int64_t i = n - 1; i > 0; i--) std::swap(perm[i], perm[r.randint(i + 1)]);
    for (int64_t i = 0; i < n; i++) t.data()[i] = 0.05f * (float)(perm[i] - n / 2);
    return t;
}

const CpuConvPath kConvPaths[] = {CpuConvPath::Auto,      CpuConvPath::Im2col,   CpuConvPath::Winograd2,
                                  CpuConvPath::Winograd4, CpuConvPath::Implicit, CpuConvPath::FusedWinograd};

// The largest rounding error a path may make, normwise: in units of float32's epsilon (2^-23)
// times the scale max|a| * max over outputs of sum |b| over every tap of the output, padded
// ones included (the forward: max|x| max_o sum_{c,k} |w| + max|b|; dx: max|g| max_c
// sum_{o,k} |w|; dw: max|x| max_o sum_{n,p} |g|). Winograd (like Strassen) is stable normwise,
// not per element: an output whose taps all meet padding comes out as a cancellation of
// transformed values, not as an exact zero, and weights on padded taps enter the transforms.
// Measured over these cases with 20 seeds (the worst of forward, dx, dw; OpenBLAS's SkylakeX
// and Haswell kernels): im2col 0.6, F(2x2) 1.0, F(4x4) 7.3 (its transforms carry
// coefficients up to 8 and 1/24, Lavin & Gray 2016); the implicit GEMM (plain sums, in
// blocks of 256 terms) as im2col; F(2x2) on the implicit GEMM's micro-kernel as F(2x2), its
// weight gradient (forced: F(2x2) too) 1.0. Auto may pick any.
double max_rounding(CpuConvPath p) {
    const bool plain = p == CpuConvPath::Im2col || p == CpuConvPath::Implicit;
    const bool f2 = p == CpuConvPath::Winograd2 || p == CpuConvPath::FusedWinograd;
    return (plain ? 4 : f2 ? 8 : 32) * 1.1920929e-7;
}

double max_abs(const Tensor& t) {
    double m = 0;
    for (int64_t i = 0; i < t.numel(); i++) m = std::max(m, (double)std::fabs(t.data()[i]));
    return m;
}

// The largest sum of |t| over a slice of the first dimension (t[r, ...]), or with second_dim
// of the second (t[:, c, ...]).
double max_row_l1(const Tensor& t, bool second_dim = false) {
    const int64_t A = t.dim(0), B = t.dim(1), R = t.numel() / (A * B);
    std::vector<double> s((size_t)(second_dim ? B : A), 0.0);
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t r = 0; r < R; r++) s[(size_t)(second_dim ? b : a)] += std::fabs(t.data()[(a * B + b) * R + r]);
    return *std::max_element(s.begin(), s.end());
}

void expect_ok(const GradCheckResult& r) {
    INFO("worst: " << r.worst << "  max_err " << r.max_err << "  checked " << r.checked);
    CHECK(r.checked > 0);
    CHECK(r.ok);
}

// Direct 7-loop convolution in double, the independent reference for conv2d.
std::vector<double> conv_naive(const Tensor& x, const Tensor& w, const Tensor& b, int s, int p) {
    int N = (int)x.dim(0), C = (int)x.dim(1), H = (int)x.dim(2), W = (int)x.dim(3);
    int OC = (int)w.dim(0), KH = (int)w.dim(2), KW = (int)w.dim(3);
    int OH = (H + 2 * p - KH) / s + 1, OW = (W + 2 * p - KW) / s + 1;
    std::vector<double> y((size_t)N * OC * OH * OW);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = b.defined() ? b.data()[o] : 0.0;
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < KH; kh++)
                            for (int kw = 0; kw < KW; kw++) {
                                int ih = oh * s - p + kh, iw = ow * s - p + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += (double)x.data()[((n * C + c) * H + ih) * W + iw] *
                                       w.data()[((o * C + c) * KH + kh) * KW + kw];
                            }
                    y[(((size_t)n * OC + o) * OH + oh) * OW + ow] = acc;
                }
    return y;
}

}  // namespace

TEST_CASE("kernels: the CPU's fast exp, sigmoid and tanh match libm and carry a NaN through") {
    double worst_exp = 0, worst_act = 0;
    for (float x = -80.f; x <= 80.f; x += 0.0137f) {
        worst_exp = std::max(worst_exp, std::fabs(cpu::fast_exp(x) / std::exp((double)x) - 1));
        worst_act = std::max(worst_act, std::fabs(cpu::fast_sigmoid(x) - 1 / (1 + std::exp(-(double)x))));
        worst_act = std::max(worst_act, std::fabs(cpu::fast_tanh(x) - std::tanh((double)x)));
    }
    CHECK(worst_exp < 1e-6);  // fastmath.h: < 1e-7 relative, plus float32 rounding of the argument
    CHECK(worst_act < 1e-6);
    // a NaN (e.g. from a diverging fit) stays NaN, so the loss check sees it; no undefined
    // conversion on the way (make sanitize)
    const float nan = std::nanf("");
    CHECK(std::isnan(cpu::fast_exp(nan)));
    CHECK(std::isnan(cpu::fast_sigmoid(nan)));
    CHECK(std::isnan(cpu::fast_tanh(nan)));
    CHECK(cpu::fast_exp(-1e30f) < 2e-38f);  // clamped to e^-87.3
    CHECK(cpu::fast_sigmoid(-1e30f) < 1e-37f);
    CHECK(cpu::fast_sigmoid(1e30f) == 1.f);
}

// 3x3 stride-1 shapes for the Winograd tiles (F(2x2): 2x2 tiles, F(4x4): 4x4): maps of one
// pixel, smaller than a tile, odd sizes (partial tiles at the right and bottom edges), several
// tiles, no padding and padding 2, and a map and depth where the automatic rule picks F(4x4)
// (large enough for the transforms' OpenMP loops).
#define WINOGRAD_CASES                                                                                   \
    Case{2, 3, 1, 1, 2, 3, 1, 1}, Case{1, 2, 3, 5, 3, 3, 1, 0}, Case{2, 3, 9, 9, 4, 3, 1, 1},            \
        Case{1, 2, 13, 10, 3, 3, 1, 2}, Case{3, 2, 6, 7, 2, 3, 1, 1}, Case{1, 64, 32, 32, 16, 3, 1, 1}

// Stride-1 shapes for the implicit GEMM (kernels/cpu/igemm.cpp) beyond those: a 5x5 kernel on
// maps wide enough to be packed as row runs, with padding 2 and 4 (the input gradient's
// transposed convolution then pads by 2 and 0), a 7x7 kernel (49 taps: its weight gradient on
// im2col), padding 3 on a 3x3 kernel (not the implicit GEMM's: im2col), and a 4x4 map with
// many channels (gathers, several reduction blocks, rows split between threads).
#define IMPLICIT_CASES                                                                                   \
    Case{1, 3, 19, 21, 7, 5, 1, 2}, Case{2, 2, 18, 20, 3, 5, 1, 4}, Case{1, 2, 9, 8, 3, 7, 1, 3},        \
        Case{2, 3, 6, 5, 4, 3, 1, 3}, Case{2, 128, 4, 4, 64, 3, 1, 1}

// And for Winograd F(2x2) on the implicit GEMM's micro-kernel (igemm.cpp): more than one
// reduction block (300 channels > 256), output rows in more than one chunk (200 > 96, the
// last one partial), odd maps (a last tile half outside), and work enough for threads
// (2^22 flops, igemm.cpp threads_for): 256 tiles, split in blocks of NR between threads, and 16 tiles (one
// block) with 130 output rows, split in rows; for its weight gradient, 3 images (147 tiles)
// between 2 threads (the channels-last copies split by image, a last block of 19 tiles split
// unevenly).
#define FUSED_CASES                                                                                   \
    Case{1, 300, 3, 4, 7, 3, 1, 1}, Case{1, 8, 6, 7, 200, 3, 1, 1}, Case{2, 5, 17, 15, 6, 3, 1, 1},  \
        Case{1, 16, 32, 32, 36, 3, 1, 1}, Case{1, 64, 8, 8, 130, 3, 1, 1}, Case{3, 128, 13, 13, 20, 3, 1, 1}

TEST_CASE("ops: conv2d matches a direct convolution for kernel sizes, strides, paddings and CPU paths") {
    struct Case { int N, C, H, W, OC, K, s, p; };
    for (CpuConvPath path : kConvPaths)
    for (Case c : {Case{2, 3, 9, 7, 4, 3, 1, 1}, Case{1, 2, 11, 11, 3, 7, 2, 3}, Case{2, 4, 6, 5, 5, 1, 1, 0},
                   Case{1, 3, 8, 8, 2, 5, 3, 0}, Case{3, 2, 4, 4, 2, 1, 2, 0}, Case{1, 1, 5, 6, 1, 2, 1, 1},
                   // more than 64 output pixels: im2col's row copies (fewer: its tap table)
                   Case{2, 2, 12, 11, 3, 3, 1, 1}, Case{1, 2, 20, 18, 2, 3, 2, 1}, Case{1, 2, 19, 19, 2, 7, 2, 3},
                   WINOGRAD_CASES, IMPLICIT_CASES, FUSED_CASES}) {
        vt_test::ConvPathScope scope(path);
        CAPTURE((int)path); CAPTURE(c.C); CAPTURE(c.H); CAPTURE(c.W); CAPTURE(c.K); CAPTURE(c.s); CAPTURE(c.p);
        Tensor x = randn({c.N, c.C, c.H, c.W}, 1, 1.f, false), w = randn({c.OC, c.C, c.K, c.K}, 2, 0.5f, false);
        Tensor b = randn({c.OC}, 3, 1.f, false);
        Tensor y = conv2d(x, w, b, c.s, c.p);
        std::vector<double> ref = conv_naive(x, w, b, c.s, c.p);
        REQUIRE(y.numel() == (int64_t)ref.size());
        double worst = 0;
        for (size_t i = 0; i < ref.size(); i++) worst = std::max(worst, std::fabs(y.data()[i] - ref[i]));
        CHECK(worst < max_rounding(path) * (max_abs(x) * max_row_l1(w) + max_abs(b)));
        // and absolutely, as before the Winograd paths, where the sums are short (F(4x4): normwise only)
        if (c.C < 64 && path != CpuConvPath::Winograd4) CHECK(worst < 1e-4);
    }
}

TEST_CASE("ops: conv2d's automatic CPU path is the measured rule's") {
    // Auto's output is bit for bit the chosen path's (and not the others': their roundings differ)
    // (where the build's CPU has no AVX2, the implicit GEMM's and the fused Winograd's shapes go
    // by the rules after them: the OpenBLAS Winograd's or im2col). Output tiles: N x ceil(H / 2)^2.
    const bool avx = cpu::igemm_applies(conv_dims(1, 1, 3, 3, 1, 3, 3, 1, 1, 1, 1));
    const CpuConvPath implicit = avx ? CpuConvPath::Implicit : CpuConvPath::Im2col;
    auto fused = [&](CpuConvPath otherwise) { return avx ? CpuConvPath::FusedWinograd : otherwise; };
    struct Case { int N, C, H, OC; CpuConvPath want; };
    for (Case c : {Case{2, 64, 32, 3, fused(CpuConvPath::Winograd4)}, Case{2, 256, 16, 3, fused(CpuConvPath::Winograd2)},
                   Case{2, 32, 32, 3, fused(CpuConvPath::Im2col)}, Case{2, 128, 16, 3, fused(CpuConvPath::Im2col)},
                   // 64-255 tiles on maps of 4x4 and more: fused whatever the weight's size
                   Case{2, 128, 16, 257, fused(implicit)}, Case{4, 128, 8, 257, fused(implicit)},
                   Case{16, 128, 4, 257, fused(CpuConvPath::Im2col)}, Case{2, 200, 24, 200, fused(CpuConvPath::Im2col)},
                   // 64 tiles on 3x3 maps: fused while OC x C <= 32768
                   Case{16, 128, 3, 256, fused(CpuConvPath::Im2col)}, Case{16, 128, 3, 257, CpuConvPath::Im2col},
                   // fewer than 64 tiles: below the fused rule's
                   Case{2, 256, 8, 3, implicit}, Case{2, 32, 8, 512, implicit}, Case{2, 32, 8, 513, CpuConvPath::Im2col},
                   Case{3, 128, 8, 257, implicit}, Case{2, 256, 4, 3, CpuConvPath::Im2col},
                   Case{2, 64, 7, 3, CpuConvPath::Im2col}}) {
        CAPTURE(c.N); CAPTURE(c.C); CAPTURE(c.H); CAPTURE(c.OC);
        Tensor x = randn({c.N, c.C, c.H, c.H}, 41, 1.f, false), w = randn({c.OC, c.C, 3, 3}, 42, 0.5f, false);
        std::vector<std::vector<float>> out;
        for (CpuConvPath path : kConvPaths) {
            vt_test::ConvPathScope scope(path);
            Tensor y = conv2d(x, w, Tensor(), 1, 1);
            out.emplace_back(y.data(), y.data() + y.numel());
        }
        for (size_t i = 1; i < out.size(); i++)
            CHECK((out[0] == out[i]) == (kConvPaths[i] == c.want));
    }
}

TEST_CASE("ops: conv2d's automatic CPU path takes the fused path's weight gradient by the measured rule") {
    // Where the fused Winograd runs, Auto's weight gradient is bit for bit Winograd's (the path
    // forced) from 128 input channels on, else the implicit GEMM's. Batch 2.
    if (!cpu::igemm_applies(conv_dims(1, 1, 3, 3, 1, 3, 3, 1, 1, 1, 1))) return;  // no fused path here
    struct Case { int C, H, OC; bool winograd; };
    for (Case c : {Case{128, 16, 256, true}, Case{200, 24, 200, true}, Case{256, 16, 3, true},
                   Case{127, 16, 3, false}, Case{64, 32, 3, false}, Case{32, 32, 3, false}}) {
        CAPTURE(c.C); CAPTURE(c.H); CAPTURE(c.OC);
        std::vector<std::vector<float>> dw;
        for (CpuConvPath path : {CpuConvPath::Auto, CpuConvPath::FusedWinograd, CpuConvPath::Implicit}) {
            vt_test::ConvPathScope scope(path);
            Tensor x = randn({2, c.C, c.H, c.H}, 43, 1.f, false), w = randn({c.OC, c.C, 3, 3}, 44, 0.5f);
            Tape tape;
            TapeScope ts(tape);
            tape.backward(sum(conv2d(x, w, Tensor(), 1, 1)));
            dw.emplace_back(w.grad(), w.grad() + w.numel());
        }
        CHECK((dw[0] == dw[1]) == c.winograd);
        CHECK((dw[0] == dw[2]) == !c.winograd);
    }
}

TEST_CASE("ops: conv2d's fused Winograd reuses a weight's transform only while the weight is unchanged") {
    // igemm.cpp wino_u keeps the transformed weights of the last 32 weights it saw, by address.
    // Each result must be bit for bit that of a fresh copy of the weight (another address, so
    // transformed anew): after an in-place change of one element (the first, the last: the
    // optimiser's update), after the cache has cycled through more weights than it holds, and
    // for the input gradient (the flipped weight; a square weight, whose flipped transform has the
    // forward's shape, right after the forward).
    if (!cpu::igemm_applies(conv_dims(1, 1, 3, 3, 1, 3, 3, 1, 1, 1, 1))) return;  // no fused path here
    vt_test::ConvPathScope scope(CpuConvPath::FusedWinograd);
    const Tensor x = randn({2, 8, 9, 9}, 45, 1.f, false);
    auto fwd = [&](const Tensor& w) {
        Tensor y = conv2d(x, w, Tensor(), 1, 1);
        return std::vector<float>(y.data(), y.data() + y.numel());
    };
    auto dx = [&](const Tensor& w) {  // the input gradient of sum(y * r)
        Tensor xg = randn({2, 8, 9, 9}, 45, 1.f, true), r = randn({2, w.shape[0], 9, 9}, 46, 1.f, false);
        Tape tape;
        TapeScope ts(tape);
        tape.backward(sum(mul(conv2d(xg, w, Tensor(), 1, 1), r)));
        return std::vector<float>(xg.grad(), xg.grad() + xg.numel());
    };
    auto fresh = [](const Tensor& w) {  // the same values at another address
        return tensor_from(w.shape, std::vector<float>(w.data(), w.data() + w.numel()));
    };
    Tensor w = randn({6, 8, 3, 3}, 47, 0.5f, false);
    const std::vector<float> y0 = fwd(w), d0 = dx(w);
    CHECK(y0 == fwd(fresh(w)));
    CHECK(fwd(w) == y0);  // reused
    for (int64_t at : {(int64_t)0, w.numel() - 1}) {
        CAPTURE(at);
        w.data()[at] += 0.25f;
        const std::vector<float> y1 = fwd(w), d1 = dx(w);
        CHECK(y1 != y0);
        CHECK(d1 != d0);
        CHECK(y1 == fwd(fresh(w)));
        CHECK(d1 == dx(fresh(w)));
    }
    std::vector<Tensor> others;  // 40 more weights, each transformed, push w out of the cache
    for (int k = 0; k < 40; k++) others.push_back(randn({6, 8, 3, 3}, 100 + k, 0.5f, false)), fwd(others.back());
    const std::vector<float> y2 = fwd(w);
    CHECK(y2 == fwd(fresh(w)));
    CHECK(dx(w) == dx(fresh(w)));
    CHECK(fwd(others[39]) == fwd(fresh(others[39])));
    // a square weight: its flipped transform has the forward's shape, and is asked for right
    // after the forward; the input gradient is the forward convolution of r by the weight with
    // its channel axes swapped and its taps reversed, written out (no flip inside the kernel)
    const Tensor sq = randn({8, 8, 3, 3}, 48, 0.5f, false);
    std::vector<float> wf((size_t)sq.numel());
    for (int o = 0; o < 8; o++)
        for (int c = 0; c < 8; c++)
            for (int t = 0; t < 9; t++) wf[(size_t)(c * 8 + o) * 9 + t] = sq.data()[(o * 8 + c) * 9 + (8 - t)];
    const Tensor yt = conv2d(randn({2, 8, 9, 9}, 46, 1.f, false), tensor_from({8, 8, 3, 3}, wf), Tensor(), 1, 1);
    const std::vector<float> ys = fwd(sq), ds = dx(sq);
    CHECK(ys == fwd(fresh(sq)));
    CHECK(ds == std::vector<float>(yt.data(), yt.data() + yt.numel()));
}

TEST_CASE("ops: conv2d's input and weight gradients are the direct convolution's adjoints") {
    // sum(g * conv2d(x, w)) differentiated, against the direct sums in double: dx[n,c,ih,iw] =
    // sum g[n,o,oh,ow] w[o,c,kh,kw] over ih = oh*s - p + kh (col2im's edges: every padding and
    // stride, kernels wider than the padding), dw likewise with x
    // under each CPU path (Winograd's backward is its forward's exact adjoint)
    struct Case { int N, C, H, W, OC, K, s, p; };
    for (CpuConvPath path : kConvPaths)
    for (Case c : {Case{2, 3, 9, 7, 4, 3, 1, 1}, Case{1, 2, 11, 11, 3, 7, 2, 3}, Case{2, 4, 6, 5, 5, 1, 1, 0},
                   Case{1, 3, 8, 8, 2, 5, 3, 0}, Case{1, 2, 5, 6, 2, 3, 1, 2}, Case{1, 1, 5, 6, 1, 2, 1, 1},
                   Case{2, 2, 2, 2, 3, 3, 1, 1}, Case{1, 2, 7, 9, 2, 3, 2, 1},
                   // more than 64 output pixels: col2im's row loops (fewer: its tap table)
                   Case{2, 2, 12, 11, 3, 3, 1, 1}, Case{1, 2, 20, 18, 2, 3, 2, 1}, Case{1, 2, 19, 19, 2, 7, 2, 3},
                   WINOGRAD_CASES, IMPLICIT_CASES, FUSED_CASES}) {
        vt_test::ConvPathScope scope(path);
        CAPTURE((int)path); CAPTURE(c.C); CAPTURE(c.K); CAPTURE(c.s); CAPTURE(c.p); CAPTURE(c.H); CAPTURE(c.W);
        Tensor x = randn({c.N, c.C, c.H, c.W}, 31), w = randn({c.OC, c.C, c.K, c.K}, 32, 0.5f);
        const int OH = (c.H + 2 * c.p - c.K) / c.s + 1, OW = (c.W + 2 * c.p - c.K) / c.s + 1;
        Tensor g = randn({c.N, c.OC, OH, OW}, 33, 1.f, false);
        {
            Tape tape;
            TapeScope scope(tape);
            tape.backward(sum(mul(conv2d(x, w, Tensor(), c.s, c.p), g)));
        }
        std::vector<double> dx((size_t)x.numel(), 0.0), dw((size_t)w.numel(), 0.0);
        for (int n = 0; n < c.N; n++)
            for (int o = 0; o < c.OC; o++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++) {
                        const double gv = g.data()[((n * c.OC + o) * OH + oh) * OW + ow];
                        for (int ch = 0; ch < c.C; ch++)
                            for (int kh = 0; kh < c.K; kh++)
                                for (int kw = 0; kw < c.K; kw++) {
                                    const int ih = oh * c.s - c.p + kh, iw = ow * c.s - c.p + kw;
                                    if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                                    const int xi = ((n * c.C + ch) * c.H + ih) * c.W + iw,
                                              wi = ((o * c.C + ch) * c.K + kh) * c.K + kw;
                                    dx[(size_t)xi] += gv * w.data()[wi];
                                    dw[(size_t)wi] += gv * x.data()[xi];
                                }
                    }
        double worst_x = 0, worst_w = 0;
        for (size_t i = 0; i < dx.size(); i++) worst_x = std::max(worst_x, std::fabs(x.grad()[i] - dx[i]));
        for (size_t i = 0; i < dw.size(); i++) worst_w = std::max(worst_w, std::fabs(w.grad()[i] - dw[i]));
        CHECK(worst_x < max_rounding(path) * max_abs(g) * max_row_l1(w, true));
        CHECK(worst_w < max_rounding(path) * max_abs(x) * max_row_l1(g, true));
        if (c.C < 64 && path != CpuConvPath::Winograd4) {  // and absolutely, as before the Winograd paths
            CHECK(worst_x < 1e-4);
            CHECK(worst_w < 1e-4);
        }
    }
}

TEST_CASE("ops: gradient checks of conv2d (general, strided, pointwise) and linear") {
    Tensor x = randn({2, 3, 7, 6}, 4), w = randn({4, 3, 3, 3}, 5, 0.3f), b = randn({4}, 6);
    x.name = "x"; w.name = "w"; b.name = "b";
    expect_ok(grad_check([&] { return conv2d(x, w, b, 1, 1); }, {x, w, b}));
    expect_ok(grad_check([&] { return conv2d(x, w, b, 2, 0); }, {x, w, b}));
    Tensor w7 = randn({2, 3, 7, 7}, 7, 0.2f);
    expect_ok(grad_check([&] { return conv2d(x, w7, Tensor(), 2, 3); }, {x, w7}));
    Tensor w1 = randn({5, 3, 1, 1}, 8, 0.5f), b1 = randn({5}, 9);
    expect_ok(grad_check([&] { return conv2d(x, w1, b1, 1, 0); }, {x, w1, b1}));
    Tensor xl = randn({5, 7}, 10), wl = randn({3, 7}, 11), bl = randn({3}, 12);
    expect_ok(grad_check([&] { return linear(xl, wl, bl); }, {xl, wl, bl}));
    for (CpuConvPath path : {CpuConvPath::Winograd2, CpuConvPath::Winograd4, CpuConvPath::Implicit,
                             CpuConvPath::FusedWinograd}) {  // 3x3 stride 1, forced
        vt_test::ConvPathScope scope(path);
        CAPTURE((int)path);
        expect_ok(grad_check([&] { return conv2d(x, w, b, 1, 1); }, {x, w, b}));
        expect_ok(grad_check([&] { return conv2d(x, w, Tensor(), 1, 2); }, {x, w}));
    }
    {  // the implicit GEMM's other kernel sizes: 5x5 at padding 2 on runs of a row wide enough (> 16)
        vt_test::ConvPathScope scope(CpuConvPath::Implicit);
        Tensor xw = randn({1, 2, 5, 18}, 16), w5 = randn({3, 2, 5, 5}, 17, 0.3f);
        expect_ok(grad_check([&] { return conv2d(xw, w5, Tensor(), 1, 2); }, {xw, w5}));
    }
}

TEST_CASE("ops: gradient checks of activations, away from kinks") {
    Tensor x = away_from_zero({3, 4, 5}, 13);
    x.name = "x";
    expect_ok(grad_check([&] { return elu(x); }, {x}));
    expect_ok(grad_check([&] { return relu(x); }, {x}));
    expect_ok(grad_check([&] { return sigmoid(x); }, {x}));
    expect_ok(grad_check([&] { return vt::tanh(x); }, {x}));
}

TEST_CASE("ops: gradient checks of max-pool (with padding) and bilinear resize") {
    Tensor x = distinct({2, 3, 7, 8}, 14);
    expect_ok(grad_check([&] { return maxpool2d(x, 3, 2, 1); }, {x}));
    expect_ok(grad_check([&] { return maxpool2d(x, 2, 2, 0); }, {x}));
    Tensor r = randn({2, 2, 4, 5}, 15);
    expect_ok(grad_check([&] { return resize_bilinear(r, 7, 9); }, {r}));   // up
    expect_ok(grad_check([&] { return resize_bilinear(r, 3, 2); }, {r}));   // down
    expect_ok(grad_check([&] { return resize_bilinear(r, 1, 1); }, {r}));   // to a point
    Tensor pt = randn({2, 3, 1, 1}, 19);
    expect_ok(grad_check([&] { return resize_bilinear(pt, 4, 5); }, {pt}));  // from a point (conv5 -> conv2)
}

TEST_CASE("ops: bilinear resize values (align_corners), and its adjoint from a point is a sum") {
    Tensor x = tensor_from({1, 1, 2, 2}, {0, 1, 2, 3}, true);
    Tensor dy = tensor_from({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
    Tape tape;
    Tensor y;
    {
        TapeScope scope(tape);
        y = resize_bilinear(x, 3, 3);
        tape.backward(sum(mul(y, dy)));
    }
    const float want[9] = {0, 0.5f, 1, 1, 1.5f, 2, 2, 2.5f, 3};  // corners kept, centres averaged
    for (int i = 0; i < 9; i++) CHECK(y.data()[i] == want[i]);
    // d/dx[0] = sum of dy weighted by x[0]'s share: 1 + 2/2 + 4/2 + 5/4
    CHECK(x.grad()[0] == doctest::Approx(1 + 1 + 2 + 1.25));
    CHECK(x.grad()[3] == doctest::Approx(9 + 8 / 2.0 + 6 / 2.0 + 5 / 4.0));

    Tensor p = tensor_from({2, 1, 1, 1}, {0.5f, -2}, true);  // a 1x1 map is broadcast; its gradient sums
    Tensor g = tensor_from({2, 1, 2, 3}, {1, 2, 3, 4, 5, 6, -1, -1, -1, -1, -1, 1});
    Tape t2;
    Tensor up;
    {
        TapeScope scope(t2);
        up = resize_bilinear(p, 2, 3);
        t2.backward(sum(mul(up, g)));
    }
    for (int i = 0; i < 6; i++) CHECK(up.data()[i] == 0.5f);
    for (int i = 6; i < 12; i++) CHECK(up.data()[i] == -2.f);
    CHECK(p.grad()[0] == doctest::Approx(21));
    CHECK(p.grad()[1] == doctest::Approx(-4));
}

TEST_CASE("ops: conv2d_upsampled is conv2d of the resized map, forward and backward; gradient checks") {
    // (source h x w, resized H x W, kernel, stride, pad): a point (conv5 -> conv2 of hcnn5-s),
    // 2x2 (of hcnn5), a non-square source, conv1's 7x7/2 kernel, no padding, down-sampling
    struct Case {
        int h, w, H, W, K, S, P;
    };
    for (Case c : {Case{1, 1, 6, 5, 3, 1, 1}, Case{2, 2, 8, 8, 3, 1, 1}, Case{3, 2, 7, 9, 3, 1, 1},
                   Case{2, 3, 11, 10, 7, 2, 3}, Case{2, 2, 5, 6, 3, 1, 0}, Case{4, 5, 3, 2, 3, 1, 1}}) {
        INFO("source " << c.h << "x" << c.w << " -> " << c.H << "x" << c.W << ", kernel " << c.K << "/" << c.S << " pad " << c.P);
        const int N = 2, Cs = 3, OC = 4;
        Tensor s = randn({N, Cs, c.h, c.w}, 40), w = randn({OC, Cs, c.K, c.K}, 41, 0.3f);
        Tensor dy;
        Tensor y_ref, y;
        std::vector<float> ds_ref, dw_ref;
        for (int way = 0; way < 2; way++) {
            s.buf->ensure_grad();
            w.buf->ensure_grad();
            std::fill(s.grad(), s.grad() + s.numel(), 0.f);
            std::fill(w.grad(), w.grad() + w.numel(), 0.f);
            Tape tape;
            TapeScope scope(tape);
            Tensor out = way == 0 ? conv2d(resize_bilinear(s, c.H, c.W), w, Tensor(), c.S, c.P)
                                  : conv2d_upsampled(s, w, c.H, c.W, c.S, c.P);
            if (!dy.defined()) dy = randn(out.shape, 42, 1.f, false);
            tape.backward(sum(mul(out, dy)));
            if (way == 0) {
                y_ref = out;
                ds_ref.assign(s.grad(), s.grad() + s.numel());
                dw_ref.assign(w.grad(), w.grad() + w.numel());
            } else {
                y = out;
            }
        }
        REQUIRE(y.shape == y_ref.shape);
        auto close = [](const float* a, const float* b, int64_t n) {
            double m = 0, scale = 0;
            for (int64_t i = 0; i < n; i++) {
                m = std::max(m, (double)std::fabs(a[i] - b[i]));
                scale = std::max(scale, (double)std::fabs(b[i]));
            }
            return scale > 0 && m <= 1e-5 * std::max(1.0, scale);
        };
        CHECK(close(y.data(), y_ref.data(), y.numel()));
        CHECK(close(s.grad(), ds_ref.data(), s.numel()));
        CHECK(close(w.grad(), dw_ref.data(), w.numel()));
        expect_ok(grad_check([&] { return conv2d_upsampled(s, w, c.H, c.W, c.S, c.P); }, {s, w}));
    }
    Tensor s = randn({1, 3, 2, 2}, 43), w = randn({4, 2, 3, 3}, 44);
    CHECK_THROWS_WITH_AS(conv2d_upsampled(s, w, 8, 8, 1, 1), doctest::Contains("expects 2"), vt::Error);
    CHECK_THROWS_WITH_AS(conv2d_upsampled(s, randn({4, 3, 3, 3}, 45), 1, 1, 1, 0), doctest::Contains("larger than"),
                         vt::Error);
}

TEST_CASE("ops: gradient checks of elementwise, channel and reduction ops") {
    Tensor a = randn({2, 3, 4, 2}, 16), b = randn({2, 3, 4, 2}, 17), c = randn({2, 5, 4, 2}, 18);
    expect_ok(grad_check([&] { return add(a, b); }, {a, b}));
    expect_ok(grad_check([&] { return sub(a, b); }, {a, b}));
    expect_ok(grad_check([&] { return mul(a, b); }, {a, b}));
    expect_ok(grad_check([&] { return add_scalar(a, 0.7f); }, {a}));
    expect_ok(grad_check([&] { return mul_scalar(a, -1.3f); }, {a}));
    expect_ok(grad_check([&] { return concat_channels({a, c, b}); }, {a, b, c}));
    Tensor sc = randn({3}, 30);
    expect_ok(grad_check([&] { return scale_channels(a, sc); }, {a, sc}));
    expect_ok(grad_check([&] { return split_channels(c, {2, 3})[1]; }, {c}));
    expect_ok(grad_check([&] { return sum(mul(a, a)); }, {a}));
    expect_ok(grad_check([&] { return mean(a); }, {a}));
    expect_ok(grad_check([&] { return mse_loss(a, b); }, {a, b}));
    // a tensor used twice: both paths' gradients must add up
    expect_ok(grad_check([&] { return add(mul(a, b), a); }, {a, b}));
    expect_ok(grad_check([&] { return a.reshape({6, -1}); }, {a}));
    Tensor r = randn({5, 3}, 31);
    expect_ok(grad_check([&] { return center_rows(r); }, {r}));
    expect_ok(grad_check([&] { return mse_loss(center_rows(r), randn({5, 3}, 32)); }, {r}));
}

TEST_CASE("ops: grad_gate is the identity that passes its gradient on, or none while cut") {
    Tensor a = randn({2, 3, 4, 2}, 16), w = randn({2, 3, 4, 2}, 17);
    auto cut = std::make_shared<bool>(false);
    expect_ok(grad_check([&] { return mul(grad_gate(a, cut), a); }, {a}));  // open: d(a^2) = 2a
    Tape tape;
    Tensor x = tensor_empty(a.shape, Device::CPU, true), y;
    tensor_copy(x, a);
    {
        TapeScope scope(tape);
        y = grad_gate(x, cut);
    }
    for (int64_t i = 0; i < a.numel(); i++) REQUIRE(y.data()[i] == a.data()[i]);
    for (bool c : {false, true, false}) {  // switched between backwards of one recorded graph
        *cut = c;
        std::fill(x.grad(), x.grad() + x.numel(), 0.f);
        tape.backward(y, w);
        for (int64_t i = 0; i < a.numel(); i++) REQUIRE(x.grad()[i] == (c ? 0.f : w.data()[i]));
    }
    CHECK(vt_test::has(vt_test::error_of([&] { grad_gate(a, nullptr); }), "grad_gate"));
}

TEST_CASE("ops: center_rows removes each column's mean over the rows") {
    Tensor x = tensor_from({3, 2}, {1, 10, 2, 20, 6, 60});
    std::vector<float> y = center_rows(x).to_vector();
    const float want[6] = {-2, -20, -1, -10, 3, 30};
    for (int i = 0; i < 6; i++) CHECK(y[i] == doctest::Approx(want[i]));
}

TEST_CASE("ops: softmax cross-entropy value and gradient") {
    Tensor logits = randn({4, 5}, 19);
    Tensor labels = tensor_from({4}, {0, 4, 2, 2});
    expect_ok(grad_check([&] { return softmax_cross_entropy(logits, labels); }, {logits}));
    // value against a direct computation
    double ref = 0;
    for (int n = 0; n < 4; n++) {
        double z = 0;
        for (int k = 0; k < 5; k++) z += std::exp(logits.data()[n * 5 + k]);
        ref += -(logits.data()[n * 5 + (int)labels.data()[n]] - std::log(z));
    }
    CHECK(softmax_cross_entropy(logits, labels).data()[0] == doctest::Approx(ref / 4).epsilon(1e-5));
    CHECK_THROWS_WITH_AS(softmax_cross_entropy(logits, tensor_from({4}, {0, 5, 1, 1})),
                         doctest::Contains("not a class index"), vt::Error);
}

TEST_CASE("ops: dropout drops about p, rescales the rest, and passes gradient through the mask") {
    Tensor x = randn({4, 8, 8, 8}, 20);
    Tensor y = dropout(x, 0.25f, 99);
    int64_t zeros = 0;
    for (int64_t i = 0; i < x.numel(); i++) {
        if (y.data()[i] == 0.f) zeros++;
        else CHECK(y.data()[i] == doctest::Approx(x.data()[i] / 0.75f));
    }
    double frac = (double)zeros / x.numel();
    CHECK(frac > 0.22);
    CHECK(frac < 0.28);
    CHECK(dropout(x, 0.25f, 99, false).data() == x.data());  // identity when not training
    Tensor s = randn({3, 10}, 21);
    expect_ok(grad_check([&] { return dropout(s, 0.5f, 7); }, {s}));
}

TEST_CASE("tape: backward accumulates into leaves; zero_grad clears them") {
    Tensor a = randn({3, 4}, 22);
    Tensor g1, g2;
    for (int rep = 0; rep < 2; rep++) {
        Tape tape;
        TapeScope scope(tape);
        Tensor loss = sum(mul(a, a));
        tape.backward(loss);
    }
    for (int64_t i = 0; i < a.numel(); i++) CHECK(a.grad()[i] == doctest::Approx(4 * a.data()[i]));  // 2 * 2a
    grad_zero(a);
    for (int64_t i = 0; i < a.numel(); i++) CHECK(a.grad()[i] == 0.f);
}

TEST_CASE("tape: frozen parameters get no gradient but pass it to their inputs") {
    ParamArena p({{"w", {4, 3, 3, 3}}, {"b", {4}, Init::Zeros}}, 1);
    p.set_trainable("w", false);
    Tensor x = randn({1, 3, 5, 5}, 23);
    Tape tape;
    {
        TapeScope scope(tape);
        tape.backward(sum(conv2d(x, p["w"], p["b"], 1, 1)));
    }
    for (int64_t i = 0; i < p["w"].numel(); i++) CHECK(p["w"].grad()[i] == 0.f);
    CHECK(p["b"].grad()[0] == doctest::Approx(25.f));  // sum over 5x5 outputs
    double s = 0;
    for (int64_t i = 0; i < x.numel(); i++) s += std::fabs(x.grad()[i]);
    CHECK(s > 0);
}

TEST_CASE("tape: replaying forward on new input data equals a fresh graph") {
    ParamArena p({{"w", {4, 2, 3, 3}}, {"b", {4}, Init::Uniform, 0.5f}, {"fc", {3, 4 * 2 * 2}}}, 2);
    Tensor x = randn({2, 2, 8, 8}, 24, 1.f, false);
    auto build = [&](const Tensor& in) { return maxpool2d(elu(conv2d(in, p["w"], p["b"], 1, 1)), 3, 2, 1); };
    Tape tape;
    Tensor out;
    {
        TapeScope scope(tape);
        Tensor h = build(x);
        CHECK(h.shape == Shape{2, 4, 4, 4});
        out = sum(mul(h, h));
    }
    Tensor x2 = randn({2, 2, 8, 8}, 25, 1.f, false);
    tensor_copy(x, x2);
    tape.forward();
    p.zero_grad();
    tape.backward(out);
    std::vector<float> replay_grad(p.grad.data(), p.grad.data() + p.numel());
    float replay_loss = out.data()[0];

    p.zero_grad();
    Tape fresh;
    TapeScope scope(fresh);
    Tensor h2 = build(x2);
    Tensor out2 = sum(mul(h2, h2));
    fresh.backward(out2);
    CHECK(replay_loss == doctest::Approx(out2.data()[0]).epsilon(1e-6));
    for (int64_t i = 0; i < p.numel(); i++) CHECK(replay_grad[i] == doctest::Approx(p.grad.data()[i]).epsilon(1e-5));
}

TEST_CASE("tape: inference records nothing and allocates no gradients") {
    ParamArena p({{"w", {2, 2, 3, 3}}}, 3);
    Tensor x = randn({1, 2, 4, 4}, 26, 1.f, false);
    Tensor y = conv2d(x, p["w"], Tensor(), 1, 1);
    CHECK(!y.requires_grad());
    CHECK(y.grad() == nullptr);
    Tape tape;
    TapeScope scope(tape);
    Tensor z = conv2d(x, p["w"], Tensor(), 1, 1);
    CHECK(z.requires_grad());
    CHECK(tape.size() == 1);
    {
        NoGradScope ng;
        conv2d(x, p["w"], Tensor(), 1, 1);
    }
    CHECK(tape.size() == 1);
}

TEST_CASE("ops: shape errors say what was expected and what was found") {
    Tensor x = randn({1, 3, 5, 5}, 27, 1.f, false), w = randn({4, 2, 3, 3}, 28, 1.f, false);
    CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor()), doctest::Contains("has 3 channels but weight"), vt::Error);
    CHECK_THROWS_WITH_AS(add(x, randn({1, 3, 5, 4}, 1)), doctest::Contains("(1, 3, 5, 5) vs (1, 3, 5, 4)"), vt::Error);
    CHECK_THROWS_WITH_AS(linear(randn({2, 3}, 1), randn({4, 5}, 2), Tensor()), doctest::Contains("expects 5"),
                         vt::Error);
    CHECK_THROWS_AS(split_channels(x, {1, 1}), vt::Error);
    CHECK_THROWS_AS(maxpool2d(x, 7, 1, 0), vt::Error);
    CHECK_THROWS_WITH_AS(x.reshape({7, -1}), doctest::Contains("element counts differ"), vt::Error);
}

TEST_CASE("gradcheck: catches a wrong gradient") {
    // A hand-made op with a deliberately wrong backward (factor 1.5) must fail the checker.
    Tensor a = randn({4}, 29);
    auto bad = [&] {
        Tensor out = op_output(a.shape, {&a});
        return op_record(
            "bad", out, [=] { for (int i = 0; i < 4; i++) out.data()[i] = a.data()[i] * a.data()[i]; },
            [=] { for (int i = 0; i < 4; i++) a.grad()[i] += 3.f * a.data()[i] * out.grad()[i]; });
    };
    CHECK(!grad_check(bad, {a}).ok);
    // ... and one that overwrites instead of accumulating.
    auto overwrite = [&] {
        Tensor out = op_output(a.shape, {&a});
        return op_record(
            "overwrite", out, [=] { for (int i = 0; i < 4; i++) out.data()[i] = 2.f * a.data()[i]; },
            [=] { for (int i = 0; i < 4; i++) a.grad()[i] = 2.f * out.grad()[i]; });
    };
    CHECK(!grad_check(overwrite, {a}).ok);
}

TEST_CASE("gradcheck: the check along a direction catches errors in elements it does not sample") {
    // Wrong (factor 1.5) everywhere except the first and last elements, which are the only
    // ones the element-wise check samples with max_samples = 2.
    const int n = 400;
    Tensor a = randn({n}, 41);
    auto bad = [&] {
        Tensor out = op_output(a.shape, {&a});
        return op_record(
            "bad_inside", out, [=] { for (int i = 0; i < n; i++) out.data()[i] = a.data()[i] * a.data()[i]; },
            [=] {
                for (int i = 0; i < n; i++)
                    a.grad()[i] += (i == 0 || i == n - 1 ? 2.f : 3.f) * a.data()[i] * out.grad()[i];
            });
    };
    GradCheckOptions opt;
    opt.max_samples = 2;
    GradCheckResult res = grad_check(bad, {a}, opt);
    CHECK(!res.ok);
    CHECK(res.worst.find("along a direction") != std::string::npos);
    // the same op with a right backward passes
    auto good = [&] { return mul(a, a); };
    CHECK(grad_check(good, {a}, opt).ok);
}

TEST_CASE("gradcheck: frozen replays keep each ELU/ReLU element on its recorded branch") {
    Tensor x = tensor_from({4}, {-0.5f, -0.01f, 0.01f, 0.5f}, true);
    Tape tape;
    Tensor ye, yr;
    {
        TapeScope scope(tape);
        RecordChoices record;
        ye = elu(x);
        yr = relu(x);
    }
    for (int i = 0; i < 4; i++) x.data()[i] = -x.data()[i];  // every element crosses 0
    {
        FrozenChoices frozen;
        tape.forward();
        // recorded negative, now positive: still exp(x) - 1 and 0; recorded positive, now negative: still x
        CHECK(ye.data()[0] == doctest::Approx(std::expm1(0.5)).epsilon(1e-6));
        CHECK(ye.data()[1] == doctest::Approx(std::expm1(0.01)).epsilon(1e-6));
        CHECK(ye.data()[2] == doctest::Approx(-0.01).epsilon(1e-6));
        CHECK(ye.data()[3] == doctest::Approx(-0.5).epsilon(1e-6));
        CHECK(yr.data()[0] == 0.f);
        CHECK(yr.data()[3] == doctest::Approx(-0.5).epsilon(1e-6));
    }
    tape.forward();  // unfrozen: the usual functions again
    CHECK(ye.data()[0] == doctest::Approx(0.5).epsilon(1e-6));
    CHECK(ye.data()[3] == doctest::Approx(std::expm1(-0.5)).epsilon(1e-5));
    CHECK(yr.data()[3] == 0.f);
}

TEST_CASE("optim: SGD and Adam minimise a quadratic and skip frozen parameters") {
    for (int which = 0; which < 2; which++) {
        ParamArena p({{"x", {5}, Init::Const, 3.f}, {"frozen", {2}, Init::Const, 1.f}}, 4);
        p.set_trainable("frozen", false);
        SGD sgd;
        sgd.lr = 0.1f;
        sgd.momentum = 0.5f;
        Adam adam;
        adam.lr = 0.1f;
        for (int it = 0; it < 300; it++) {
            p.zero_grad();
            Tape tape;
            TapeScope scope(tape);
            tape.backward(add(sum(mul(p["x"], p["x"])), sum(p["frozen"])));
            which ? adam.step(p) : sgd.step(p);
        }
        for (int i = 0; i < 5; i++) CHECK(std::fabs(p["x"].data()[i]) < 1e-2);
        CHECK(p["frozen"].data()[0] == 1.f);
    }
}

TEST_CASE("optim: Adam's gradient clipping scales to the global norm of the trainable entries only") {
    // gradients x: (3, 4) -> norm 5; frozen: 100 (ignored by the norm and the step)
    auto arena = [] {
        ParamArena p({{"x", {2}, Init::Const, 1.f}, {"frozen", {1}, Init::Const, 1.f}}, 4);
        p.set_trainable("frozen", false);
        const float g[3] = {3.f, 4.f, 100.f};
        std::memcpy(p.grad.data(), g, sizeof g);
        return p;
    };
    ParamArena p = arena();
    CHECK(p.grad_norm() == doctest::Approx(5.0));
    SUBCASE("above the threshold: the gradient is scaled to it before the moments see it") {
        Adam adam;
        adam.lr = 0.1f, adam.clip_norm = 2.5f;
        adam.step(p);
        CHECK(adam.last_norm == doctest::Approx(5.0));
        CHECK(p.grad.data()[0] == doctest::Approx(1.5f));  // (3, 4) * 2.5 / 5
        CHECK(p.grad.data()[1] == doctest::Approx(2.f));
        CHECK(p.grad.data()[2] == 50.f);                   // scaled with the arena, never used
        CHECK(adam.m.data()[0] == doctest::Approx(0.1f * 1.5f));
        CHECK(adam.v.data()[1] == doctest::Approx(0.001f * 4.f));
        CHECK(p["frozen"].data()[0] == 1.f);
    }
    SUBCASE("at or below the threshold, or off: the step is plain Adam's") {
        for (float clip : {0.f, 5.f, 50.f}) {
            ParamArena q = arena(), r = arena();
            Adam a, b;
            a.lr = b.lr = 0.1f, a.clip_norm = clip;
            for (int it = 0; it < 3; it++) a.step(q), b.step(r);
            CHECK(q["x"].data()[0] == r["x"].data()[0]);
            CHECK(q["x"].data()[1] == r["x"].data()[1]);
            CHECK(std::isnan(a.last_norm) == (clip == 0.f));
        }
    }
}

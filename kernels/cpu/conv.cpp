// conv.cpp: dense algebra on OpenBLAS, convolution as im2col + one batched GEMM, and the choice
// of each convolution's path (winograd_tile: winograd.cpp; use_implicit, use_fused_winograd and
// use_wino_weight_grad: igemm.cpp).
//
// Layouts: inp (N, C, H, W), weight (OC, C*KH*KW), out (N, OC, OH*OW).
// cols (C*KH*KW, N*P): row (c, kh, kw), column n*P + oh*OW + ow, P = OH*OW. The whole batch
// goes through one GEMM, Y (OC, N*P) = W @ cols, which keeps the GEMM large even for late
// layers whose P is small (conv5 of hcnn5 has P = 16); Y is then transposed into NCHW.
// No GEMM is called from inside an OpenMP region (OpenBLAS threads itself).
#include <cblas.h>

#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/cpu.h"

namespace vt::cpu {

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc) {
    if (M == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
}

void bias_add_rows(float* out, const float* bias, int rows, int cols) {
#pragma omp parallel for if ((int64_t)rows * cols > PAR_MIN)
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) out[(int64_t)r * cols + c] += bias[c];
}

void sum_rows(float* dbias, const float* dout, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dbias[c] += dout[(int64_t)r * cols + c];
}

// ---- im2col / col2im -------------------------------------------------------------------

// Small maps (conv3-conv5: 8x8 down to 2x2 outputs) go through a table of each (tap, output
// pixel)'s input offset (-1 in the padding): row-by-row copies of 2-8 floats cost more in loop
// control than in data (3.9x faster at 2x2, 1.8x at 4x4, 1.2x at 8x8; slower from 16x16).
static constexpr int64_t TABLE_MAX_P = 64;

static std::vector<int> tap_table(const ConvDims& d) {
    const int P = d.OH * d.OW;
    std::vector<int> idx((size_t)d.KH * d.KW * P);
    for (int kh = 0; kh < d.KH; kh++)
        for (int kw = 0; kw < d.KW; kw++)
            for (int oh = 0; oh < d.OH; oh++)
                for (int ow = 0; ow < d.OW; ow++) {
                    const int ih = oh * d.SH - d.PH + kh, iw = ow * d.SW - d.PW + kw;
                    idx[(size_t)(kh * d.KW + kw) * P + oh * d.OW + ow] =
                        ih < 0 || ih >= d.H || iw < 0 || iw >= d.W ? -1 : ih * d.W + iw;
                }
    return idx;
}

static void im2col_table(float* cols, const float* inp, const ConvDims& d) {
    const int64_t P = (int64_t)d.OH * d.OW, NP = d.N * P, HW = (int64_t)d.H * d.W;
    const int KK = d.KH * d.KW;
    const std::vector<int> idx = tap_table(d);
#pragma omp parallel for if ((int64_t)d.C * KK * NP > PAR_MIN)
    for (int c = 0; c < d.C; c++)
        for (int k = 0; k < KK; k++) {
            float* row = cols + ((int64_t)c * KK + k) * NP;
            const int* ix = idx.data() + k * P;
            for (int n = 0; n < d.N; n++) {
                const float* x = inp + ((int64_t)n * d.C + c) * HW;
                float* dst = row + n * P;
                for (int64_t p = 0; p < P; p++) dst[p] = ix[p] >= 0 ? x[ix[p]] : 0.f;
            }
        }
}

static void col2im_table(float* dinp, const float* dcols, const ConvDims& d) {
    const int64_t P = (int64_t)d.OH * d.OW, NP = d.N * P, HW = (int64_t)d.H * d.W;
    const int KK = d.KH * d.KW;
    const std::vector<int> idx = tap_table(d);
#pragma omp parallel for collapse(2) if ((int64_t)d.C * KK * NP > PAR_MIN)
    for (int n = 0; n < d.N; n++)
        for (int c = 0; c < d.C; c++) {  // one thread per (n, c) plane: no races
            float* dx = dinp + ((int64_t)n * d.C + c) * HW;
            for (int k = 0; k < KK; k++) {
                const float* src = dcols + ((int64_t)c * KK + k) * NP + n * P;
                const int* ix = idx.data() + k * P;
                for (int64_t p = 0; p < P; p++)
                    if (ix[p] >= 0) dx[ix[p]] += src[p];
            }
        }
}

void im2col(float* cols, const float* inp, const ConvDims& d) {
    const int64_t P = (int64_t)d.OH * d.OW, NP = d.N * P;
    if (P <= TABLE_MAX_P) return im2col_table(cols, inp, d);
#pragma omp parallel for collapse(2) if ((int64_t)d.C * d.KH * d.KW * NP > PAR_MIN)
    for (int c = 0; c < d.C; c++) {
        for (int n = 0; n < d.N; n++) {
            const float* x = inp + ((int64_t)n * d.C + c) * d.H * d.W;
            for (int kh = 0; kh < d.KH; kh++) {
                for (int kw = 0; kw < d.KW; kw++) {
                    float* row = cols + ((int64_t)(c * d.KH + kh) * d.KW + kw) * NP + n * P;
                    // the valid columns [ow0, ow1): iw = ow*SW - PW + kw in [0, W)
                    int ow0 = 0, ow1 = d.OW;
                    while (ow0 < d.OW && ow0 * d.SW - d.PW + kw < 0) ow0++;
                    while (ow1 > ow0 && (ow1 - 1) * d.SW - d.PW + kw >= d.W) ow1--;
                    for (int oh = 0; oh < d.OH; oh++) {
                        float* dst = row + (int64_t)oh * d.OW;
                        int ih = oh * d.SH - d.PH + kh;
                        if (ih < 0 || ih >= d.H) {
                            std::memset(dst, 0, sizeof(float) * d.OW);
                            continue;
                        }
                        const float* src = x + (int64_t)ih * d.W;
                        for (int ow = 0; ow < ow0; ow++) dst[ow] = 0.f;
                        for (int ow = ow1; ow < d.OW; ow++) dst[ow] = 0.f;
                        if (d.SW == 1) {  // a plain loop: rows are short (OW = 2..64), a call costs more
                            const float* s1 = src - d.PW + kw;
                            for (int ow = ow0; ow < ow1; ow++) dst[ow] = s1[ow];
                        } else {
                            for (int ow = ow0; ow < ow1; ow++) dst[ow] = src[ow * d.SW - d.PW + kw];
                        }
                    }
                }
            }
        }
    }
}

// The adjoint of im2col, accumulated into dinp. One thread per (n, c) plane: no races.
void col2im(float* dinp, const float* dcols, const ConvDims& d) {
    const int64_t P = (int64_t)d.OH * d.OW, NP = d.N * P;
    if (P <= TABLE_MAX_P) return col2im_table(dinp, dcols, d);
#pragma omp parallel for collapse(2) if ((int64_t)d.C * d.KH * d.KW * NP > PAR_MIN)
    for (int n = 0; n < d.N; n++) {
        for (int c = 0; c < d.C; c++) {
            float* dx = dinp + ((int64_t)n * d.C + c) * d.H * d.W;
            for (int kh = 0; kh < d.KH; kh++) {
                for (int kw = 0; kw < d.KW; kw++) {
                    const float* row = dcols + ((int64_t)(c * d.KH + kh) * d.KW + kw) * NP + n * P;
                    // the valid columns [ow0, ow1), as in im2col
                    int ow0 = 0, ow1 = d.OW;
                    while (ow0 < d.OW && ow0 * d.SW - d.PW + kw < 0) ow0++;
                    while (ow1 > ow0 && (ow1 - 1) * d.SW - d.PW + kw >= d.W) ow1--;
                    for (int oh = 0; oh < d.OH; oh++) {
                        int ih = oh * d.SH - d.PH + kh;
                        if (ih < 0 || ih >= d.H) continue;
                        const float* src = row + (int64_t)oh * d.OW;
                        float* dst = dx + (int64_t)ih * d.W;
                        if (d.SW == 1) {  // a branch-free loop the compiler vectorises
                            float* d1 = dst - d.PW + kw;
                            for (int ow = ow0; ow < ow1; ow++) d1[ow] += src[ow];
                        } else {
                            for (int ow = ow0; ow < ow1; ow++) dst[ow * d.SW - d.PW + kw] += src[ow];
                        }
                    }
                }
            }
        }
    }
}

// (OC, N*P) <-> (N, OC, P)
static void cnp_to_ncp(float* out, const float* y, const float* bias, int N, int OC, int64_t P) {
#pragma omp parallel for collapse(2) if ((int64_t)N * OC * P > PAR_MIN)
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++) {
            const float* src = y + (int64_t)oc * N * P + n * P;
            float* dst = out + ((int64_t)n * OC + oc) * P;
            float b = bias ? bias[oc] : 0.f;
            for (int64_t p = 0; p < P; p++) dst[p] = src[p] + b;
        }
}

static void ncp_to_cnp(float* y, const float* dout, int N, int OC, int64_t P) {
#pragma omp parallel for collapse(2) if ((int64_t)N * OC * P > PAR_MIN)
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++)
            std::memcpy(y + (int64_t)oc * N * P + n * P, dout + ((int64_t)n * OC + oc) * P, sizeof(float) * P);
}

// ---- convolution -----------------------------------------------------------------------

static CpuConvPath conv_path = CpuConvPath::Auto;  // kernels.h cpu_set_conv_path, at the end

// The Winograd tile size m (2 or 4) where it applies and pays, else 0 (im2col). Measured with
// `bench --workload conv` (2 threads, AVX-512 CPU; docs/benchmarks.md, "Winograd on the CPU"):
// F(4x4) 1.27-1.62x (forward, backward) on maps of 32x32 = 1024 pixels and more from 64 input
// channels on; on 16x16 maps at 256 channels F(2x2) and F(4x4) both gain 1.1-1.3x, which one
// more depends on the batch (batch 8, W5's, favours F(2x2)); smaller maps or fewer channels
// lose (0.1-1.0x: the transforms' memory traffic and narrow GEMMs outweigh the multiplies saved).
static int winograd_tile(const ConvDims& d) {
    if (!winograd_applies(d)) return 0;
    if (conv_path != CpuConvPath::Auto)  // forced: this path where it is the one forced
        return conv_path == CpuConvPath::Winograd2 ? 2 : conv_path == CpuConvPath::Winograd4 ? 4 : 0;
    if (d.OH * d.OW >= 1024 && d.C >= 64) return 4;
    if (d.OH * d.OW >= 256 && d.C >= 256) return 2;
    return 0;
}

// Whether the convolution goes through the implicit GEMM (igemm.cpp), where Winograd does not:
// measured with `bench --workload conv` (2 threads, AVX-512 CPU, batch 16; docs/benchmarks.md,
// "The implicit GEMM on the CPU"), 1.1-1.5x (forward, backward) over im2col + OpenBLAS on maps
// of 8x8 = 64 pixels and more up to 512 output channels (hcnn5-s's conv2-conv3 and their cells; at 8x8 and
// 512 channels even); maps of 4x4 and less lose (0.6-1.1x), 1024 output channels too (0.9x).
static bool use_implicit(const ConvDims& d) {
    if (!igemm_applies(d)) return false;
    if (conv_path != CpuConvPath::Auto) return conv_path == CpuConvPath::Implicit;
    return d.OH * d.OW >= 64 && d.OC <= 512;
}

// The 2x2 blocks of outputs F(2x2, 3x3) computes, over the batch.
static int64_t tiles_2x2(const ConvDims& d) { return (int64_t)d.N * ((d.OH + 1) / 2) * ((d.OW + 1) / 2); }

// Whether the convolution goes through Winograd F(2x2) on the implicit GEMM's micro-kernel
// (igemm.cpp), which comes before the rules above. Measured with `bench --workload conv` (2
// threads, AVX-512 CPU, batch 4, 8, 16 and 64, the weights' transforms kept across calls as in
// training (igemm.cpp wino_u); docs/benchmarks.md, "Winograd on the implicit GEMM", "The fused
// rule with the transforms kept"), forward + backward against the best of the other paths:
// 1.0-2.1x wherever there are 256 output tiles (2x2 blocks of outputs, over the batch) or more;
// on 64-255 tiles 1.0-1.6x on maps of 4x4 and more whatever the weight's size (8x8 at batch 4
// and 8, 4x4 at 16), and on smaller maps while OC x C <= 32768 (128 -> 256 at 2x2, batch 64:
// 1.11x; 512 -> 1024 there 0.92x); on fewer than 64 tiles mostly slower (0.3-0.8x; 1.10x for
// 128 -> 128 at 4x4, batch 8).
static bool use_fused_winograd(const ConvDims& d) {
    if (!wino_fused_applies(d)) return false;
    if (conv_path != CpuConvPath::Auto) return conv_path == CpuConvPath::FusedWinograd;
    const int64_t tiles = tiles_2x2(d);
    return tiles >= 256 || (tiles >= 64 && ((int64_t)d.OH * d.OW >= 16 || (int64_t)d.OC * d.C <= 32768));
}

// Where the fused path runs, whether its weight gradient is Winograd's too (igemm.cpp) or the
// implicit GEMM's. Measured with a harness timing the two alone, alternated (2 threads, AVX-512
// CPU, batch 4 and 16, the shapes of `bench --workload conv`; docs/benchmarks.md, "Winograd's
// weight gradient"): from 128 input channels on Winograd's is 1.1-2.1x faster on most shapes
// (0.93-0.99x on a few), on 64 channels a toss-up (0.76-1.97x, median 1.06x: its transforms, per input and
// output channel, weigh more against fewer multiplies), on 32 0.5-0.9x.
static bool use_wino_weight_grad(const ConvDims& d) {
    if (conv_path != CpuConvPath::Auto) return true;  // forced: the whole path
    return d.C >= 128;
}

void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                    const ConvDims& d) {
    const int64_t P = (int64_t)d.OH * d.OW;
    const int CKK = d.C * d.KH * d.KW;
    if (d.is_pointwise()) {  // 1x1: out_n (OC, P) = W (OC, C) @ inp_n (C, P), no im2col
        for (int n = 0; n < d.N; n++)
            gemm(false, false, d.OC, (int)P, d.C, 1.f, weight, d.C, inp + (int64_t)n * d.C * P, (int)P, 0.f,
                 out + (int64_t)n * d.OC * P, (int)P);
        if (bias) {
#pragma omp parallel for collapse(2) if ((int64_t)d.N * d.OC * P > PAR_MIN)
            for (int n = 0; n < d.N; n++)
                for (int oc = 0; oc < d.OC; oc++) {
                    float* o = out + ((int64_t)n * d.OC + oc) * P;
                    for (int64_t p = 0; p < P; p++) o[p] += bias[oc];
                }
        }
        return;
    }
    if (use_fused_winograd(d)) return conv2d_wino_fused_forward(out, inp, weight, bias, d);
    if (int m = winograd_tile(d)) return conv2d_winograd_forward(out, inp, weight, bias, scratch, d, m);
    if (use_implicit(d)) return conv2d_igemm_forward(out, inp, weight, bias, d);
    float* y = scratch;                                    // (OC, N*P)
    float* cols = scratch + (int64_t)d.OC * d.N * P;       // (CKK, N*P)
    im2col(cols, inp, d);
    gemm(false, false, d.OC, (int)(d.N * P), CKK, 1.f, weight, CKK, cols, (int)(d.N * P), 0.f, y, (int)(d.N * P));
    cnp_to_ncp(out, y, bias, d.N, d.OC, P);
}

void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, float* scratch, const ConvDims& d) {
    const int64_t P = (int64_t)d.OH * d.OW;
    const int CKK = d.C * d.KH * d.KW;
    if (dbias) {
        for (int n = 0; n < d.N; n++)
            for (int oc = 0; oc < d.OC; oc++) {
                const float* g = dout + ((int64_t)n * d.OC + oc) * P;
                double s = 0;
                for (int64_t p = 0; p < P; p++) s += g[p];
                dbias[oc] += (float)s;
            }
    }
    if (d.is_pointwise()) {  // the input is its own im2col
        for (int n = 0; n < d.N; n++) {
            const float* g = dout + (int64_t)n * d.OC * P;
            if (dweight) gemm(false, true, d.OC, d.C, (int)P, 1.f, g, (int)P, inp + (int64_t)n * d.C * P, (int)P,
                              1.f, dweight, d.C);
            if (dinp) gemm(true, false, d.C, (int)P, d.OC, 1.f, weight, d.C, g, (int)P, 1.f,
                           dinp + (int64_t)n * d.C * P, (int)P);
        }
        return;
    }
    if (use_fused_winograd(d)) {
        if (dinp) conv2d_wino_fused_backward_input(dinp, dout, weight, d);
        if (dweight && use_wino_weight_grad(d)) conv2d_wino_fused_backward_weight(dweight, dout, inp, d);
        else if (dweight) conv2d_igemm_backward_weight(dweight, dout, inp, d);  // (3x3: 9 taps)
        return;
    }
    if (int m = winograd_tile(d)) return conv2d_winograd_backward(dinp, dweight, dout, inp, weight, scratch, d, m);
    const int NP = (int)(d.N * P);
    float* dy = scratch;                         // (OC, N*P)
    float* cols = scratch + (int64_t)d.OC * NP;  // (CKK, N*P): im2col, then reused for dcols
    if (use_implicit(d)) {  // the input gradient; the weight gradient where its kernel has <= 31 taps
        if (dinp) conv2d_igemm_backward_input(dinp, dout, weight, d);
        if (dweight && igemm_weight_grad_applies(d)) conv2d_igemm_backward_weight(dweight, dout, inp, d);
        if (igemm_weight_grad_applies(d)) return;
        dinp = nullptr;  // done; the weight gradient on im2col below
    }
    if (!dinp && !dweight) return;
    ncp_to_cnp(dy, dout, d.N, d.OC, P);
    if (dweight) {
        im2col(cols, inp, d);
        gemm(false, true, d.OC, CKK, NP, 1.f, dy, NP, cols, NP, 1.f, dweight, CKK);
    }
    if (dinp) {
        gemm(true, false, CKK, NP, d.OC, 1.f, weight, CKK, dy, NP, 0.f, cols, NP);
        col2im(dinp, cols, d);
    }
}

// ---- convolution of a bilinearly resized map (kernels.h, ConvUpDims) ---------------------------

// E (O, K, n): the weight of source pixel a under tap k at output o along one axis, i.e. the
// resize's weight of a at input position o*S - P + k (0 in the padding). The taps are the
// resize kernel's (spatial.cpp: align_corners, computed in float the same way).
static std::vector<float> up_axis(int n, int in, int O, int K, int S, int P) {
    std::vector<float> e((size_t)O * K * n, 0.f);
    for (int o = 0; o < O; o++)
        for (int k = 0; k < K; k++) {
            const int i = o * S - P + k;
            if (i < 0 || i >= in) continue;
            const float s = in > 1 ? (float)i * (n - 1) / (in - 1) : 0.f;
            int a0 = (int)std::floor(s);
            if (a0 > n - 1) a0 = n - 1;
            const int a1 = a0 + 1 < n ? a0 + 1 : n - 1;
            const float w1 = s - a0;
            float* row = e.data() + ((size_t)o * K + k) * n;
            row[a0] += 1 - w1;
            row[a1] += w1;
        }
    return e;
}

// Phi (KK*Q, OH*OW), row (kh, kw, a, b), column (oh, ow): a function of the shapes alone, built
// once per shape and kept (a model has a handful: one per feedback edge and step size).
static const std::vector<float>& up_taps(const ConvUpDims& d) {
    struct Entry {
        std::array<int, 8> key;
        std::vector<float> phi;
    };
    static thread_local std::vector<std::unique_ptr<Entry>> cache;
    const std::array<int, 8> key = {d.h, d.w, d.H, d.W, d.KH, d.KW, d.S, d.P};
    for (const auto& e : cache)
        if (e->key == key) return e->phi;
    if (cache.size() >= 16) cache.clear();
    auto e = std::make_unique<Entry>();
    e->key = key;
    const int Q = d.h * d.w, P = d.OH * d.OW;
    const std::vector<float> ey = up_axis(d.h, d.H, d.OH, d.KH, d.S, d.P), ex = up_axis(d.w, d.W, d.OW, d.KW, d.S, d.P);
    e->phi.assign((size_t)d.KH * d.KW * Q * P, 0.f);
    for (int kh = 0; kh < d.KH; kh++)
        for (int kw = 0; kw < d.KW; kw++)
            for (int a = 0; a < d.h; a++)
                for (int b = 0; b < d.w; b++) {
                    float* row = &e->phi[((((size_t)kh * d.KW + kw) * d.h + a) * d.w + b) * P];
                    for (int oh = 0; oh < d.OH; oh++) {
                        const float fy = ey[((size_t)oh * d.KH + kh) * d.h + a];
                        if (fy == 0.f) continue;
                        for (int ow = 0; ow < d.OW; ow++)
                            row[(size_t)oh * d.OW + ow] = fy * ex[((size_t)ow * d.KW + kw) * d.w + b];
                    }
                }
    cache.push_back(std::move(e));
    return cache.back()->phi;
}

// conv_up's temporaries, grow-only per thread (the op runs at every step of every iteration).
static float* up_scratch(int slot, size_t n) {
    static thread_local std::vector<float> bufs[4];
    if (bufs[slot].size() < n) bufs[slot].resize(n);
    return bufs[slot].data();
}

// Wp (OC*KK, Cs): the weight (OC, Cs, KK) with (c, k) swapped.
static const float* up_weight(const float* weight, const ConvUpDims& d) {
    const int KK = d.KH * d.KW;
    float* wp = up_scratch(0, (size_t)d.OC * KK * d.Cs);
    for (int oc = 0; oc < d.OC; oc++)
        for (int c = 0; c < d.Cs; c++)
            for (int k = 0; k < KK; k++) wp[((size_t)oc * KK + k) * d.Cs + c] = weight[((size_t)oc * d.Cs + c) * KK + k];
    return wp;
}

// St (Cs, N*Q): the source (N, Cs, Q) with (n, c) swapped.
static const float* up_source(const float* src, const ConvUpDims& d) {
    const int Q = d.h * d.w;
    float* st = up_scratch(1, (size_t)d.Cs * d.N * Q);
    for (int n = 0; n < d.N; n++)
        for (int c = 0; c < d.Cs; c++)
            std::memcpy(st + ((size_t)c * d.N + n) * Q, src + ((size_t)n * d.Cs + c) * Q, sizeof(float) * Q);
    return st;
}

// Between Up ((oc, k), (n, q)), the GEMM's layout, and U ((n, oc), (k, q)), Phi's partner:
// blocks of Q floats change places (to_u: Up -> U; else U -> Up).
static void up_swap(float* dst, const float* src, const ConvUpDims& d, bool to_u) {
    const int Q = d.h * d.w, KK = d.KH * d.KW;
    const size_t NQ = (size_t)d.N * Q, KQ = (size_t)KK * Q;
    for (int oc = 0; oc < d.OC; oc++)
        for (int k = 0; k < KK; k++)
            for (int n = 0; n < d.N; n++) {
                const size_t up = ((size_t)oc * KK + k) * NQ + (size_t)n * Q, u = ((size_t)n * d.OC + oc) * KQ + (size_t)k * Q;
                std::memcpy(dst + (to_u ? u : up), src + (to_u ? up : u), sizeof(float) * Q);
            }
}

void conv_up_forward(float* out, const float* src, const float* weight, const ConvUpDims& d) {
    const int Q = d.h * d.w, KK = d.KH * d.KW, KQ = KK * Q, NQ = d.N * Q, P = d.OH * d.OW;
    const std::vector<float>& phi = up_taps(d);
    float *up = up_scratch(2, (size_t)d.OC * KK * NQ), *u = up_scratch(3, (size_t)d.N * d.OC * KQ);
    gemm(false, false, d.OC * KK, NQ, d.Cs, 1.f, up_weight(weight, d), d.Cs, up_source(src, d), NQ, 0.f, up, NQ);
    up_swap(u, up, d, true);
    gemm(false, false, d.N * d.OC, P, KQ, 1.f, u, KQ, phi.data(), P, 0.f, out, P);
}

void conv_up_backward(float* dsrc, float* dweight, const float* dout, const float* src, const float* weight,
                      const ConvUpDims& d) {
    if (!dsrc && !dweight) return;
    const int Q = d.h * d.w, KK = d.KH * d.KW, KQ = KK * Q, NQ = d.N * Q, P = d.OH * d.OW;
    const std::vector<float>& phi = up_taps(d);
    float *dup = up_scratch(2, (size_t)d.OC * KK * NQ), *du = up_scratch(3, (size_t)d.N * d.OC * KQ);
    gemm(false, true, d.N * d.OC, KQ, P, 1.f, dout, P, phi.data(), P, 0.f, du, KQ);
    up_swap(dup, du, d, false);
    if (dweight) {  // dWp = dUp St^T, then back to (oc, c, k); dWp reuses U's slot
        float* dwp = up_scratch(3, (size_t)d.OC * KK * d.Cs);
        gemm(false, true, d.OC * KK, d.Cs, NQ, 1.f, dup, NQ, up_source(src, d), NQ, 0.f, dwp, d.Cs);
        for (int oc = 0; oc < d.OC; oc++)
            for (int c = 0; c < d.Cs; c++)
                for (int k = 0; k < KK; k++) dweight[((size_t)oc * d.Cs + c) * KK + k] += dwp[((size_t)oc * KK + k) * d.Cs + c];
    }
    if (dsrc) {  // dSt = Wp^T dUp, then back to (n, c, q); dSt reuses St's slot
        const float* wp = up_weight(weight, d);
        float* dst = up_scratch(1, (size_t)d.Cs * NQ);
        gemm(true, false, d.Cs, NQ, d.OC * KK, 1.f, wp, d.Cs, dup, NQ, 0.f, dst, NQ);
        for (int n = 0; n < d.N; n++)
            for (int c = 0; c < d.Cs; c++)
                for (int q = 0; q < Q; q++) dsrc[((size_t)n * d.Cs + c) * Q + q] += dst[((size_t)c * d.N + n) * Q + q];
    }
}

}  // namespace vt::cpu

namespace vt {
void cpu_set_conv_path(CpuConvPath p) { cpu::conv_path = p; }
CpuConvPath cpu_conv_path() { return cpu::conv_path; }
}  // namespace vt

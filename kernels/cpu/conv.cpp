// conv.cpp: dense algebra on OpenBLAS and convolution as im2col + one batched GEMM.
//
// Layouts: inp (N, C, H, W), weight (OC, C*KH*KW), out (N, OC, OH*OW).
// cols (C*KH*KW, N*P): row (c, kh, kw), column n*P + oh*OW + ow, P = OH*OW. The whole batch
// goes through one GEMM, Y (OC, N*P) = W @ cols, which keeps the GEMM large even for late
// layers whose P is small (conv5 of hcnn5 has P = 16); Y is then transposed into NCHW.
// No GEMM is called from inside an OpenMP region (OpenBLAS threads itself).
#include <cblas.h>

#include <cstring>

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

void im2col(float* cols, const float* inp, const ConvDims& d) {
    const int64_t P = (int64_t)d.OH * d.OW, NP = d.N * P;
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
    const int NP = (int)(d.N * P);
    float* dy = scratch;                         // (OC, N*P)
    float* cols = scratch + (int64_t)d.OC * NP;  // (CKK, N*P): im2col, then reused for dcols
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

}  // namespace vt::cpu

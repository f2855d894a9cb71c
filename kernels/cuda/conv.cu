// conv.cu: dense algebra on cuBLAS and convolution as im2col + one GEMM; twin of
// kernels/cpu/conv.cpp (same layouts, same scratch use), with the cuDNN path of cudnn.cu
// behind the same two entry points when CUDNN=1 and cuda_conv_path() says so.
//
// Row-major GEMM on column-major cuBLAS: a row-major (R, C) matrix with leading dimension
// ld is, to cuBLAS, its (C, R) transpose with the same ld. So C = op(A) op(B) (row-major)
// is computed as C^T = op(B)^T op(A)^T (column-major): swap the operands and M with N, keep
// each operand's transpose flag and leading dimension. No data moves.
//
// Layouts: inp (N, C, H, W), weight (OC, C*KH*KW), out (N, OC, OH*OW), P = OH*OW.
// cols (C*KH*KW, N*P): row (c, kh, kw), column n*P + oh*OW + ow. One GEMM over the whole
// batch, Y (OC, N*P) = W @ cols, then a transpose into NCHW. Gathers instead of scatters
// (col2im runs one thread per input element), so every kernel here is deterministic.
#include <cuda_bf16.h>

#include <algorithm>

#include "kernels/cuda/internal.cuh"

namespace vt::cuda {

// ---- dense algebra ---------------------------------------------------------------------------
// Every GEMM runs at cuda_precision(): fp32 is cublasSgemm in cuBLAS's default math (FP32
// products); tf32 the same call in CUBLAS_TF32_TENSOR_OP_MATH; bf16 rounds both operands to
// BF16 into a scratch and multiplies with cublasGemmEx, FP32 accumulation and output.

static cublasHandle_t cublas_at(Precision p) {  // the handle, its math mode set for p
    static bool set = false;
    static Precision applied = Precision::FP32;
    if (!set || applied != p) {
        const cublasMath_t mode = p == Precision::TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
        CUBLAS_CHECK(cublasSetMathMode(cublas(), mode));
        set = true, applied = p;
    }
    return cublas();
}

__global__ void to_bf16_kernel(__nv_bfloat16* out, const float* in, int64_t n) {
    CUDA_GRID_LOOP(i, n) out[i] = __float2bfloat16(in[i]);
}

// Grow-only device scratch for the BF16 operands. A grown block replaces the old one, which is
// kept (never freed: a captured CUDA Graph may still read it; growth doubles, so the blocks
// together stay under twice the last). Growing during a capture is an
// error the graph's owner falls back from (TapeGraph warms up uncaptured first, so the sizes
// are known by then).
static __nv_bfloat16* bf16_scratch(int64_t n) {
    static __nv_bfloat16* block = nullptr;
    static int64_t capacity = 0;
    if (n > capacity) {
        if (cuda_graph_capturing())
            fail("the bf16 GEMM scratch must grow (to %lld elements) during a CUDA Graph capture; run uncaptured",
                 (long long)n);
        const int64_t want = std::max(n, 2 * capacity);
        void* p = nullptr;
        cudaError_t e = cudaMalloc(&p, (size_t)want * sizeof(__nv_bfloat16));
        if (e == cudaErrorMemoryAllocation) {  // the caching allocator's free blocks back to the device, once
            cudaGetLastError();
            cuda_empty_cache();
            e = cudaMalloc(&p, (size_t)want * sizeof(__nv_bfloat16));
        }
        CUDA_CHECK(e);
        block = (__nv_bfloat16*)p, capacity = want;
    }
    return block;
}

// The elements a row-major operand spans: `count` matrices of rows x cols (leading dimension
// ld) a stride apart (stride 0: one matrix for all).
static int64_t span(int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t count) {
    return (rows - 1) * ld + cols + (stride ? (count - 1) * stride : 0);
}

// Both operands of a GEMM as BF16 copies in the scratch (A first; B 256-element aligned).
static void to_bf16(const float* A, int64_t nA, const float* B, int64_t nB, const __nv_bfloat16** a,
                    const __nv_bfloat16** b) {
    const int64_t offB = (nA + 255) / 256 * 256;
    __nv_bfloat16* s = bf16_scratch(offB + nB);
    to_bf16_kernel<<<grid_for(nA), BLOCK, 0, stream()>>>(s, A, nA);
    CUDA_LAUNCH_CHECK();
    to_bf16_kernel<<<grid_for(nB), BLOCK, 0, stream()>>>(s + offB, B, nB);
    CUDA_LAUNCH_CHECK();
    *a = s, *b = s + offB;
}

// gemm over `batch` matrices a stride apart (stride 0: the same matrix for every batch entry).
static void gemm_strided(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, int64_t sA,
                         const float* B, int ldb, int64_t sB, float beta, float* C, int ldc, int64_t sC, int batch) {
    if (M == 0 || N == 0 || batch == 0) return;
    const Precision prec = cuda_precision();
    const cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (prec != Precision::BF16) {
        if (batch == 1)
            CUBLAS_CHECK(cublasSgemm(cublas_at(prec), opB, opA, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
        else
            CUBLAS_CHECK(cublasSgemmStridedBatched(cublas_at(prec), opB, opA, N, M, K, &alpha, B, ldb, sB, A, lda, sA,
                                                   &beta, C, ldc, sC, batch));
        return;
    }
    if (K == 0) {  // nothing to round: C = beta C, as cuBLAS does for K = 0
        CUBLAS_CHECK(cublasSgemmStridedBatched(cublas_at(Precision::FP32), opB, opA, N, M, K, &alpha, B, ldb, sB, A,
                                               lda, sA, &beta, C, ldc, sC, batch));
        return;
    }
    const __nv_bfloat16 *a, *b;
    to_bf16(A, span(ta ? K : M, ta ? M : K, lda, sA, batch), B, span(tb ? N : K, tb ? K : N, ldb, sB, batch), &a, &b);
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas_at(prec), opB, opA, N, M, K, &alpha, b, CUDA_R_16BF, ldb, sB, a,
                                            CUDA_R_16BF, lda, sA, &beta, C, CUDA_R_32F, ldc, sC, batch,
                                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
    gemm_strided(ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

__global__ void bias_add_rows_kernel(float* out, const float* bias, int rows, int cols) {
    CUDA_GRID_LOOP(i, (int64_t)rows * cols) out[i] += bias[i % cols];
}

// One thread per column, rows in order (the CPU's order of additions).
__global__ void sum_rows_kernel(float* dbias, const float* dout, int rows, int cols) {
    CUDA_GRID_LOOP(c, cols) {
        float acc = dbias[c];
        for (int r = 0; r < rows; r++) acc += dout[(int64_t)r * cols + c];
        dbias[c] = acc;
    }
}

void bias_add_rows(float* out, const float* bias, int rows, int cols) {
    if ((int64_t)rows * cols <= 0) return;
    bias_add_rows_kernel<<<grid_for((int64_t)rows * cols), BLOCK, 0, stream()>>>(out, bias, rows, cols);
    CUDA_LAUNCH_CHECK();
}

void sum_rows(float* dbias, const float* dout, int rows, int cols) {
    if (rows <= 0 || cols <= 0) return;
    sum_rows_kernel<<<grid_for(cols), BLOCK, 0, stream()>>>(dbias, dout, rows, cols);
    CUDA_LAUNCH_CHECK();
}

// ---- im2col / col2im -------------------------------------------------------------------------

// One thread per element of cols (C*KH*KW, N*P): consecutive threads write consecutive columns.
__global__ void im2col_kernel(float* cols, const float* inp, ConvDims d) {
    const int64_t P = (int64_t)d.OH * d.OW, NP = d.N * P;
    CUDA_GRID_LOOP(i, (int64_t)d.C * d.KH * d.KW * NP) {
        int64_t row = i / NP, col = i % NP;
        int kw = (int)(row % d.KW), kh = (int)(row / d.KW % d.KH), c = (int)(row / ((int64_t)d.KW * d.KH));
        int n = (int)(col / P), p = (int)(col % P);
        int ih = p / d.OW * d.SH - d.PH + kh, iw = p % d.OW * d.SW - d.PW + kw;
        cols[i] = (ih >= 0 && ih < d.H && iw >= 0 && iw < d.W) ? inp[(((int64_t)n * d.C + c) * d.H + ih) * d.W + iw]
                                                                : 0.f;
    }
}

// The adjoint of im2col, accumulated: one thread per input element gathers the columns that
// read it, in (kh, kw) order as the CPU's scatter adds them.
__global__ void col2im_kernel(float* dinp, const float* dcols, ConvDims d) {
    const int64_t P = (int64_t)d.OH * d.OW, NP = d.N * P;
    CUDA_GRID_LOOP(i, (int64_t)d.N * d.C * d.H * d.W) {
        int iw = (int)(i % d.W), ih = (int)(i / d.W % d.H);
        int64_t nc = i / ((int64_t)d.H * d.W);
        int c = (int)(nc % d.C), n = (int)(nc / d.C);
        float acc = dinp[i];
        for (int kh = 0; kh < d.KH; kh++) {
            int th = ih + d.PH - kh;  // = oh * SH for the output row that reads (ih, kh)
            if (th < 0 || th % d.SH) continue;
            int oh = th / d.SH;
            if (oh >= d.OH) continue;
            for (int kw = 0; kw < d.KW; kw++) {
                int tw = iw + d.PW - kw;
                if (tw < 0 || tw % d.SW) continue;
                int ow = tw / d.SW;
                if (ow >= d.OW) continue;
                acc += dcols[((int64_t)(c * d.KH + kh) * d.KW + kw) * NP + n * P + (int64_t)oh * d.OW + ow];
            }
        }
        dinp[i] = acc;
    }
}

void im2col(float* cols, const float* inp, const ConvDims& d) {
    int64_t n = (int64_t)d.C * d.KH * d.KW * d.N * d.OH * d.OW;
    if (n <= 0) return;
    im2col_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(cols, inp, d);
    CUDA_LAUNCH_CHECK();
}

void col2im(float* dinp, const float* dcols, const ConvDims& d) {
    int64_t n = (int64_t)d.N * d.C * d.H * d.W;
    if (n <= 0) return;
    col2im_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dinp, dcols, d);
    CUDA_LAUNCH_CHECK();
}

// ---- (OC, N*P) <-> (N, OC, P) and the bias -----------------------------------------------------

// out (N, OC, P) = y (OC, N*P) transposed, + bias[oc] if bias
__global__ void cnp_to_ncp_kernel(float* out, const float* y, const float* bias, int N, int OC, int64_t P) {
    CUDA_GRID_LOOP(i, (int64_t)N * OC * P) {
        int64_t p = i % P, t = i / P;
        int oc = (int)(t % OC), n = (int)(t / OC);
        out[i] = y[(int64_t)oc * N * P + n * P + p] + (bias ? bias[oc] : 0.f);
    }
}

// y (OC, N*P) = dout (N, OC, P) transposed
__global__ void ncp_to_cnp_kernel(float* y, const float* dout, int N, int OC, int64_t P) {
    CUDA_GRID_LOOP(i, (int64_t)N * OC * P) {
        int64_t p = i % P, t = i / P;
        int n = (int)(t % N), oc = (int)(t / N);
        y[i] = dout[((int64_t)n * OC + oc) * P + p];
    }
}

__global__ void bias_add_planes_kernel(float* out, const float* bias, int OC, int64_t P, int64_t total) {
    CUDA_GRID_LOOP(i, total) out[i] += bias[i / P % OC];
}

// One block per output channel: dbias[oc] += sum over (n, p) of dout[n, oc, p], in double.
__global__ void bias_backward_planes_kernel(float* dbias, const float* dout, int N, int OC, int64_t P) {
    const int oc = blockIdx.x;
    double s = 0;
    for (int64_t j = threadIdx.x; j < N * P; j += blockDim.x) s += dout[((j / P) * OC + oc) * P + j % P];
    s = block_sum(s);
    if (threadIdx.x == 0) dbias[oc] += (float)s;
}

static void cnp_to_ncp(float* out, const float* y, const float* bias, int N, int OC, int64_t P) {
    cnp_to_ncp_kernel<<<grid_for((int64_t)N * OC * P), BLOCK, 0, stream()>>>(out, y, bias, N, OC, P);
    CUDA_LAUNCH_CHECK();
}

static void ncp_to_cnp(float* y, const float* dout, int N, int OC, int64_t P) {
    ncp_to_cnp_kernel<<<grid_for((int64_t)N * OC * P), BLOCK, 0, stream()>>>(y, dout, N, OC, P);
    CUDA_LAUNCH_CHECK();
}

void bias_add_planes(float* out, const float* bias, int N, int OC, int64_t P) {
    int64_t total = (int64_t)N * OC * P;
    if (total <= 0) return;
    bias_add_planes_kernel<<<grid_for(total), BLOCK, 0, stream()>>>(out, bias, OC, P, total);
    CUDA_LAUNCH_CHECK();
}

void bias_backward_planes(float* dbias, const float* dout, int N, int OC, int64_t P) {
    if (OC <= 0) return;
    bias_backward_planes_kernel<<<OC, BLOCK, 0, stream()>>>(dbias, dout, N, OC, P);
    CUDA_LAUNCH_CHECK();
}

// ---- convolution -----------------------------------------------------------------------------

void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                    const ConvDims& d) {
#ifdef VT_CUDNN
    if (cuda_conv_path() == ConvPath::Cudnn && cudnn_conv_applies(d))
        return cudnn_conv2d_forward(out, inp, weight, bias, scratch, d);
#endif
    const int64_t P = (int64_t)d.OH * d.OW;
    const int CKK = d.C * d.KH * d.KW, NP = (int)(d.N * P);
    if (d.is_pointwise()) {  // 1x1: out_n (OC, P) = W (OC, C) @ inp_n (C, P), batched, no im2col
        gemm_strided(false, false, d.OC, (int)P, d.C, 1.f, weight, d.C, 0, inp, (int)P, (int64_t)d.C * P, 0.f, out,
                     (int)P, (int64_t)d.OC * P, d.N);
        if (bias) bias_add_planes(out, bias, d.N, d.OC, P);
        return;
    }
    float* y = scratch;                          // (OC, N*P)
    float* cols = scratch + (int64_t)d.OC * NP;  // (CKK, N*P)
    im2col(cols, inp, d);
    gemm(false, false, d.OC, NP, CKK, 1.f, weight, CKK, cols, NP, 0.f, y, NP);
    cnp_to_ncp(out, y, bias, d.N, d.OC, P);
}

void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, float* scratch, const ConvDims& d) {
#ifdef VT_CUDNN
    if (cuda_conv_path() == ConvPath::Cudnn && cudnn_conv_applies(d))
        return cudnn_conv2d_backward(dinp, dweight, dbias, dout, inp, weight, scratch, d);
#endif
    const int64_t P = (int64_t)d.OH * d.OW;
    const int CKK = d.C * d.KH * d.KW, NP = (int)(d.N * P);
    if (dbias) bias_backward_planes(dbias, dout, d.N, d.OC, P);
    if (d.is_pointwise()) {  // the input is its own im2col
        if (dweight) {       // dW (OC, C) += dy (OC, N*P) @ x^T, both transposed into scratch
            float* dy = scratch;                           // (OC, N*P)
            float* xt = scratch + (int64_t)d.OC * NP;      // (C, N*P)
            ncp_to_cnp(dy, dout, d.N, d.OC, P);
            ncp_to_cnp(xt, inp, d.N, d.C, P);
            gemm(false, true, d.OC, d.C, NP, 1.f, dy, NP, xt, NP, 1.f, dweight, d.C);
        }
        if (dinp)  // dinp_n (C, P) += W^T (C, OC) @ dout_n (OC, P), batched
            gemm_strided(true, false, d.C, (int)P, d.OC, 1.f, weight, d.C, 0, dout, (int)P, (int64_t)d.OC * P, 1.f,
                         dinp, (int)P, (int64_t)d.C * P, d.N);
        return;
    }
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

}  // namespace vt::cuda

// internal.cuh: what the CUDA kernel files share (internal to kernels/cuda/): error checks,
// the stream and library handles, launch sizes, warp/block reductions, and the host
// launchers behind cuda_kernels() (device.cu gathers them into the KernelTable, as
// kernels/cpu/table.cpp does for the CPU twins in kernels/cpu/cpu.h).
//
// Every launcher checks its launch with CUDA_LAUNCH_CHECK(); VT_CUDA_SYNC=1 in the
// environment also synchronises after each launch, so an asynchronous fault is reported at
// the kernel that caused it.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/error.h"
#include "kernels/cuda/cuda.h"
#include "kernels/kernels.h"

// A failed call throws vt::Error naming file:line, the call and CUDA's own words.
#define CUDA_CHECK(call)                                                                            \
    do {                                                                                            \
        cudaError_t err_ = (call);                                                                  \
        if (err_ != cudaSuccess)                                                                    \
            ::vt::fail_check(__FILE__, __LINE__, #call, "CUDA error %s: %s", cudaGetErrorName(err_), \
                             cudaGetErrorString(err_));                                             \
    } while (0)

#define CUBLAS_CHECK(call)                                                                             \
    do {                                                                                               \
        cublasStatus_t st_ = (call);                                                                   \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                              \
            ::vt::fail_check(__FILE__, __LINE__, #call, "cuBLAS error %d: %s", (int)st_,                \
                             cublasGetStatusString(st_));                                              \
    } while (0)

#define CUDA_LAUNCH_CHECK() ::vt::cuda::launch_check(__FILE__, __LINE__)

// i runs over [0, n) in a grid-stride loop (any grid size covers any n).
#define CUDA_GRID_LOOP(i, n)                                                           \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);          \
         i += (int64_t)gridDim.x * blockDim.x)

namespace vt::cuda {

cudaStream_t stream();         // the backend's one stream
cublasHandle_t cublas();       // bound to stream()
void launch_check(const char* file, int line);

constexpr int BLOCK = 256;           // threads per block for elementwise kernels
constexpr int64_t MAX_GRID = 65536;  // grid-stride loops cover the rest
constexpr int REDUCE_BLOCKS = 1024;  // partial sums per two-pass reduction

inline unsigned grid_for(int64_t n, int block = BLOCK) {
    int64_t g = (n + block - 1) / block;
    return (unsigned)(g < 1 ? 1 : g > MAX_GRID ? MAX_GRID : g);
}

// REDUCE_BLOCKS doubles of device memory for the partial sums of reductions and losses
// (one stream: uses never overlap).
double* reduce_scratch();

// ---- warp and block reductions -------------------------------------------------------------

__device__ inline double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;  // every lane holds the sum
}

__device__ inline float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32); the result is valid in thread 0. Call it
// once per kernel (it owns a shared array).
__device__ inline double block_sum(double v) {
    __shared__ double warp_part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) warp_part[warp] = v;
    __syncthreads();
    v = threadIdx.x < (blockDim.x >> 5) ? warp_part[threadIdx.x] : 0.0;
    if (warp == 0) v = warp_sum(v);
    return v;
}

// ---- host launchers (twins of kernels/cpu/cpu.h) -------------------------------------------

// elementwise.cu
void fill(float* p, int64_t n, float v);
void axpy(float* y, const float* x, int64_t n, float a);
void add(float* out, const float* a, const float* b, int64_t n, float alpha, float beta);
void mul(float* out, const float* a, const float* b, int64_t n);
void mul_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);
void affine(float* out, const float* a, int64_t n, float scale, float shift);
void act_forward(Act act, float* out, const float* inp, int64_t n);
void act_backward(Act act, float* dinp, const float* dout, const float* out, int64_t n);
void sum(float* out, const float* inp, int64_t n, float scale);
void sum_backward(float* dinp, const float* dout, int64_t n, float scale);
void mse_forward(float* out, const float* a, const float* b, int64_t n);
void mse_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);
void xent_forward(float* out, float* probs, const float* logits, const float* labels, int N, int K);
void xent_backward(float* dlogits, const float* dout, const float* probs, const float* labels, int N, int K);
void sgd_update(float* p, const float* g, float* mom, int64_t n, float lr, float momentum, float wd);
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                 float eps, float wd, int step);

// conv.cu
void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc);
void bias_add_rows(float* out, const float* bias, int rows, int cols);
void sum_rows(float* dbias, const float* dout, int rows, int cols);
void im2col(float* cols, const float* inp, const ConvDims& d);
void col2im(float* dinp, const float* dcols, const ConvDims& d);  // accumulates
void bias_add_planes(float* out, const float* bias, int N, int OC, int64_t P);  // out[n, oc, :] += bias[oc]
void bias_backward_planes(float* dbias, const float* dout, int N, int OC, int64_t P);  // dbias[oc] += sum
void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                    const ConvDims& d);
void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, float* scratch, const ConvDims& d);

// cudnn.cu (CUDNN=1 builds; the same contract as conv2d_forward/backward)
bool cudnn_conv_applies(const ConvDims& d);
void cudnn_conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                          const ConvDims& d);
void cudnn_conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                           const float* weight, float* scratch, const ConvDims& d);

// cells.cu
void chan_scale_forward(float* out, const float* x, const float* a, int N, int C, int64_t P);
void chan_scale_backward(float* dx, float* da, const float* dout, const float* x, const float* a, int N, int C,
                         int64_t P);
void lstm_forward(float* c, float* h, const float* G, const float* c_prev, int N, int C, int64_t P);
void lstm_backward(float* dG, float* dc_prev, const float* dc, const float* dh, const float* G, const float* c_prev,
                   const float* c, int N, int C, int64_t P);
void gru_gates_forward(float* rh, const float* G1, const float* h_prev, int N, int C, int64_t P);
void gru_gates_backward(float* dG1, float* dh_prev, const float* drh, const float* G1, const float* h_prev, int N,
                        int C, int64_t P);
void gru_update_forward(float* h, const float* G1, const float* Gc, const float* h_prev, int N, int C, int64_t P);
void gru_update_backward(float* dG1, float* dGc, float* dh_prev, const float* dh, const float* G1, const float* Gc,
                         const float* h_prev, int N, int C, int64_t P);
void ugrnn_forward(float* h, const float* G, const float* h_prev, int N, int C, int64_t P);
void ugrnn_backward(float* dG, float* dh_prev, const float* dh, const float* G, const float* h_prev, int N, int C,
                    int64_t P);
void rgc_gates_forward(float* pc, float* ph, const float* A, const float* B, const float* Xc, const float* x,
                       const float* c_prev, const float* h_prev, int N, int C, int64_t P);
void rgc_gates_backward(float* dA, float* dB, float* dXc, float* dx, float* dc_prev, float* dh_prev, const float* dpc,
                        const float* dph, const float* A, const float* B, const float* Xc, const float* x,
                        const float* c_prev, const float* h_prev, int N, int C, int64_t P);

// spatial.cu
void maxpool_forward(float* out, int32_t* argmax, const float* inp, const PoolDims& d);
void maxpool_backward(float* dinp, const float* dout, const int32_t* argmax, const PoolDims& d);
void maxpool_gather(float* out, const int32_t* argmax, const float* inp, const PoolDims& d);
void chan_copy(float* dst, int DC, int dc0, const float* src, int SC, int sc0, int C, int N, int64_t HW,
               bool accumulate);
void resize_forward(float* out, const float* inp, int NC, int H, int W, int OH, int OW);
void resize_backward(float* dinp, const float* dout, int NC, int H, int W, int OH, int OW);

}  // namespace vt::cuda

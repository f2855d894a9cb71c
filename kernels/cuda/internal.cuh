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

// The kernels of the table, one per name of VT_KERNELS (kernels/kernels.h), with the table's
// signatures: elementwise.cu, conv.cu, spatial.cu, cells.cu.
VT_KERNELS(VT_DECLARE_KERNEL)

// conv.cu, outside the table
void im2col(float* cols, const float* inp, const ConvDims& d);
void col2im(float* dinp, const float* dcols, const ConvDims& d);  // accumulates
void bias_add_planes(float* out, const float* bias, int N, int OC, int64_t P);  // out[n, oc, :] += bias[oc]
void bias_backward_planes(float* dbias, const float* dout, int N, int OC, int64_t P);  // dbias[oc] += sum

// cudnn.cu (CUDNN=1 builds; the same contract as conv2d_forward/backward)
bool cudnn_conv_applies(const ConvDims& d);
void cudnn_conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                          const ConvDims& d);
void cudnn_conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                           const float* weight, float* scratch, const ConvDims& d);

}  // namespace vt::cuda

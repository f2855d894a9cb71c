// cpu.h: the CPU kernels behind cpu_kernels() (internal to kernels/cpu/).
// Each file implements one family; table.cpp gathers them into the KernelTable.
#pragma once
#include "kernels/kernels.h"

namespace vt::cpu {

// Loops are OpenMP-parallel above PAR_MIN elements of work: below it waking the pool's
// (passive, sleeping) threads costs more than the loop (a tiny3 gradient check spent 95% of
// its time in the kernel's futex calls before im2col and the transposes had this guard).
constexpr int64_t PAR_MIN = 1 << 15;

// The kernels of the table, one per name of VT_KERNELS (kernels/kernels.h), with the table's
// signatures: elementwise.cpp (memory, activations, reductions, losses, optimisers), conv.cpp
// (gemm, bias, convolution), spatial.cpp (pooling, channel copies, resizing), cells.cpp.
VT_KERNELS(VT_DECLARE_KERNEL)

// conv.cpp, outside the table
void im2col(float* cols, const float* inp, const ConvDims& d);
void col2im(float* dinp, const float* dcols, const ConvDims& d);  // accumulates

// winograd.cpp: F(m x m, 3x3), m = 2 or 4, for 3x3 stride-1 convolutions (winograd_applies),
// outside the table; conv2d_forward/backward call it where cpu_conv_path() and the shape say so.
bool winograd_applies(const ConvDims& d);
// scratch: d.scratch_size() floats (the table's convention), used where the transformed
// planes fit, else per-thread buffers.
void conv2d_winograd_forward(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                             const ConvDims& d, int m);
void conv2d_winograd_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                              float* scratch, const ConvDims& d, int m);  // accumulates; dbias is the caller's

// igemm.cpp: stride-1 convolutions (not 1x1) as an implicit GEMM, forward and the input
// gradient (accumulated), outside the table; false where the build's CPU has no AVX2+FMA.
bool igemm_applies(const ConvDims& d);
void conv2d_igemm_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvDims& d);
void conv2d_igemm_backward_input(float* dinp, const float* dout, const float* weight, const ConvDims& d);
// and the weight gradient (accumulated), for kernels of up to 31 taps
bool igemm_weight_grad_applies(const ConvDims& d);
void conv2d_igemm_backward_weight(float* dweight, const float* dout, const float* inp, const ConvDims& d);
// ... and F(2x2, 3x3) Winograd on the same micro-kernel (3x3, stride 1, padding <= 2): forward,
// the input gradient and the weight gradient (both accumulate).
bool wino_fused_applies(const ConvDims& d);
void conv2d_wino_fused_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvDims& d);
void conv2d_wino_fused_backward_input(float* dinp, const float* dout, const float* weight, const ConvDims& d);
void conv2d_wino_fused_backward_weight(float* dweight, const float* dout, const float* inp, const ConvDims& d);

}  // namespace vt::cpu

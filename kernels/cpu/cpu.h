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

}  // namespace vt::cpu

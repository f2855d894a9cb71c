// backend.h: the one dispatch point between the engine and the devices.
//
// Memory (allocate, fill, copy across devices) and the kernel table for a device. Models
// and ops call kernels_for(t.device()) and never #ifdef on CUDA; without a CUDA build, asking
// for the CUDA device fails with a clear message.
#pragma once
#include <cstdint>

#include "engine/tensor.h"
#include "kernels/kernels.h"

namespace vt {

const KernelTable& kernels_for(Device dev);
bool cuda_available();                   // built with CUDA=1 and a device is present

float* backend_cuda_alloc(int64_t n);    // via the caching allocator (CUDA builds)
void backend_cuda_free(float* p);

void backend_fill(Device dev, float* p, int64_t n, float v);
void backend_copy(Device dst_dev, float* dst, Device src_dev, const float* src, int64_t n);
void backend_copy_to_host(Device src_dev, float* dst, const float* src, int64_t n);
void backend_copy_from_host(Device dst_dev, float* dst, const float* src, int64_t n);

// Threads: OpenMP loops and OpenBLAS share the same cores but never run at once (no GEMM is
// called inside an OpenMP region), so both use `n` threads. 0 = all cores.
void backend_set_threads(int n);
int backend_threads();

}  // namespace vt

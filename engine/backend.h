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

// Process set-up, first thing in every main (tools and tests). Two settings are read only
// when their libraries load, so when one must change the program re-executes itself once:
//  - OMP_WAIT_POLICY=passive unless set: idle OpenMP threads sleep instead of spinning.
//    On a shared 2-core machine spinning threads steal the time slices of the threads
//    doing work (measured: small convolutions up to 10x slower).
//  - native_blas: if OPENBLAS_CORETYPE is unset and OpenBLAS could not identify the CPU,
//    it runs generic SSE3 kernels ("Prescott"), 5-8x slower than its AVX-512 ones on this
//    project's machines; then OPENBLAS_CORETYPE is set to the CPU's family (SkylakeX for
//    AVX-512, Haswell for AVX2). A user's own OPENBLAS_CORETYPE is always kept.
//  - drop_blas_overrides (bench): remove OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE first, to
//    measure OpenBLAS's native kernels.
struct RuntimeOptions {
    bool native_blas = true;
    bool drop_blas_overrides = false;
};
void runtime_init(char** argv, RuntimeOptions opt = {});
const char* blas_core_name();

}  // namespace vt

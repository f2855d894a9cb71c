// cuda.h: the host-side interface of the CUDA backend (built with `make CUDA=1`).
//
// Plain C++ (no CUDA headers), so the engine and the tests can include it. The engine
// reaches the backend through engine/backend.cpp only; the extra controls below (memory
// statistics, the convolution path, synchronisation) are for tools and tests.
//
// Execution model: one device (device 0), one non-blocking stream. Every kernel, cuBLAS
// and cuDNN call and every copy runs on that stream, in order, so a buffer freed on the
// host can be handed out again at once (the next user is queued behind the last one).
// Host<->device copies return once the data has arrived (they synchronise the stream).
#pragma once
#include <cstdint>

#include "kernels/kernels.h"  // Precision

namespace vt {

// ---- the hooks engine/backend.cpp calls ----------------------------------------------------
bool cuda_device_present();                     // a usable device; false (and silent) without one
int cuda_device_count();                        // visible devices; 0 (and silent) without any
void cuda_select_device(int ordinal);           // before any other CUDA work (data-parallel ranks)
float* cuda_cached_alloc(int64_t n);            // n floats from the caching allocator
void cuda_cached_free(float* p);                // back to its size class (no cudaFree)
void cuda_memcpy(float* dst, const float* src,  // n floats; kind 0 host->device,
                 int64_t n, int kind);          //   1 device->host, 2 device->device

// ---- pinned host memory (engine/backend.cpp's backend_host_alloc_pinned) -------------------------
float* cuda_host_alloc(int64_t n);              // n floats of page-locked host memory (cudaHostAlloc)
void cuda_host_free(float* p);                  // cudaFreeHost

// ---- CUDA Graphs (engine/autograd.h's TapeGraph, through engine/backend.cpp) ----------------------
// Between begin and end, the stream is captured (cudaStreamCaptureModeThreadLocal): kernels,
// cuBLAS/cuDNN calls and device->device copies are recorded into a graph instead of running.
// What a capture must not do fails at once with a message, before any CUDA call that would
// invalidate it: a host<->device copy or a synchronisation (cuda_memcpy kinds 0 and 1,
// cuda_synchronize), or a device allocation (cuda_cached_alloc; the graph would hold its
// address after the tensor is gone). A block freed during the capture is counted and fails
// cuda_graph_end. After an error, cuda_graph_abort() ends the capture and discards it.
struct CudaGraph;                               // an instantiated graph (cudaGraphExec_t)
void cuda_graph_begin();
CudaGraph* cuda_graph_end();                    // instantiates what was captured
void cuda_graph_abort();                        // no-op when not capturing
bool cuda_graph_capturing();                    // between begin and end/abort
void cuda_graph_launch(CudaGraph* g);           // on the stream, in order with everything else
void cuda_graph_destroy(CudaGraph* g);          // waits for the stream first; null is a no-op

// ---- controls --------------------------------------------------------------------------------
void cuda_synchronize();                        // wait for the stream; reports async errors
const char* cuda_device_name();                 // "NVIDIA H200" (the device must be present)

struct CudaMemStats {
    int64_t live_bytes;     // handed out and not yet freed
    int64_t cached_bytes;   // held in the free lists
    int64_t peak_bytes;     // max of live_bytes so far
    int64_t mallocs;        // cudaMalloc calls so far (flat in a steady training loop)
};
CudaMemStats cuda_mem_stats();
void cuda_empty_cache();                        // cudaFree every cached (free) block

// Convolution on the GPU: the project's im2col + cuBLAS path, or cuDNN (CUDNN=1 builds).
// The default comes from VT_CONV=im2col|cudnn (im2col when unset); the setter is for tests
// and the bench. Asking for cuDNN in a build without it fails with a message.
enum class ConvPath { Im2col, Cudnn };
void cuda_set_conv_path(ConvPath p);
ConvPath cuda_conv_path();
bool cuda_has_cudnn();                          // built with CUDNN=1

// The precision of every GEMM (im2col convolutions, linear layers) and cuDNN convolution:
// fp32 (the default), tf32 (tensor cores on TF32-rounded operands) or bf16 (operands rounded
// to BF16 on the fly; im2col path only). Storage and accumulation stay FP32. The default comes
// from VT_PRECISION=fp32|tf32|bf16 (fp32 when unset).
void cuda_set_precision(Precision p);
Precision cuda_precision();

}  // namespace vt

// backend.h: the one dispatch point between the engine and the devices.
//
// Memory (allocate, fill, copy across devices) and the kernel table for a device. Models
// and ops call kernels_for(t.device()) and never #ifdef on CUDA; without a CUDA build, asking
// for the CUDA device fails with a clear message.
#pragma once
#include <cstdint>
#include <string>

#include "engine/tensor.h"
#include "kernels/kernels.h"

namespace vt {

const KernelTable& kernels_for(Device dev);
bool cuda_available();                   // built with CUDA=1 and a device is present
int cuda_devices();                      // CUDA devices visible to this process (0 without CUDA=1)
void cuda_use_device(int ordinal);       // the device this process computes on (before any CUDA work)
const char* backend_device_name(Device dev);  // "cpu", or the GPU's name ("NVIDIA H200")

float* backend_cuda_alloc(int64_t n);    // via the caching allocator (CUDA builds)
void backend_cuda_free(float* p);

void backend_fill(Device dev, float* p, int64_t n, float v);
void backend_copy(Device dst_dev, float* dst, Device src_dev, const float* src, int64_t n);
void backend_copy_to_host(Device src_dev, float* dst, const float* src, int64_t n);
void backend_copy_from_host(Device dst_dev, float* dst, const float* src, int64_t n);

// Waits until the work queued on `dev` has finished (timing a GPU: synchronise before
// reading the clock). Nothing to wait for on the CPU, whose kernels return when done.
void backend_synchronize(Device dev);

// ---- GEMM precision (the tools' --precision) ----------------------------------------------
// fp32: exact FP32 products (the default; the CPU twin is the reference). tf32: tensor-core
// GEMMs and convolutions on operands rounded to TF32 (10-bit mantissa). bf16: each GEMM's
// operands rounded to BF16 (7-bit mantissa) on the fly (the im2col path). At every precision
// storage, accumulation, weights, optimiser state, cells and losses stay FP32. The CPU computes
// in FP32 only: tf32 or bf16 there fail with a message naming --precision. A process starts at
// VT_PRECISION (fp32 when unset); the tools set it from --precision (default fp32).
Precision precision_parse(const std::string& s);  // "fp32", "tf32", "bf16"; fails otherwise
const char* precision_name(Precision p);
void precision_check(Device dev, Precision p);  // fails on the CPU unless fp32; sets nothing
void backend_set_precision(Device dev, Precision p);
Precision backend_precision(Device dev);
constexpr const char* kPrecisionHelp =
    "GEMM and convolution precision with --device cuda: fp32 (exact), tf32 (tensor cores) or bf16 (BF16 "
    "operands, FP32 accumulation); the CPU computes in fp32";

// Sets a device's precision for the life of the object, then restores the previous one.
class PrecisionScope {
  public:
    PrecisionScope(Device dev, Precision p) : dev_(dev), prev_(backend_precision(dev)) {
        backend_set_precision(dev, p);
    }
    ~PrecisionScope() { backend_set_precision(dev_, prev_); }
    PrecisionScope(const PrecisionScope&) = delete;
    PrecisionScope& operator=(const PrecisionScope&) = delete;

  private:
    Device dev_;
    Precision prev_;
};

// ---- pinned host staging buffers ----------------------------------------------------------
// n floats of host memory for batches on their way to or from a device. In a CUDA build with
// a device it is page-locked (cudaHostAlloc): the copy engine reads and writes it directly,
// without the driver's bounce through its own pinned buffer, so uploads run at full PCIe /
// NVLink speed. Otherwise (a CPU build, no GPU) it is plain 64-byte aligned memory, so a tool
// can stage through it whatever the device. Free with backend_host_free_pinned, which knows
// which kind it was; backend_host_is_pinned says which. Copies stay synchronous
// (backend_copy_*): a staging buffer may be refilled as soon as the copy returns.
float* backend_host_alloc_pinned(int64_t n);
void backend_host_free_pinned(float* p);
bool backend_host_is_pinned(const float* p);

// A staging buffer that frees itself: PinnedBuffer buf(n); loader.next(buf.data(), ...);
// backend_copy_from_host(dev, x.data(), buf.data(), n).
class PinnedBuffer {
  public:
    PinnedBuffer() = default;
    explicit PinnedBuffer(int64_t n) : p_(backend_host_alloc_pinned(n)), n_(n) {}
    ~PinnedBuffer() { backend_host_free_pinned(p_); }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    PinnedBuffer(PinnedBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
    PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
        if (this != &o) {
            backend_host_free_pinned(p_);
            p_ = o.p_, n_ = o.n_;
            o.p_ = nullptr, o.n_ = 0;
        }
        return *this;
    }
    float* data() const { return p_; }
    int64_t size() const { return n_; }

  private:
    float* p_ = nullptr;
    int64_t n_ = 0;
};

// ---- device graphs (CUDA Graphs; engine/autograd.h's TapeGraph is the user) ---------------
// Between capture_begin and capture_end, work queued on the device is recorded, not run;
// capture_end returns it as a graph that graph_launch replays on the device's queue. What a
// capture must not do (host<->device copies, synchronisation, device allocation or free)
// fails with a message; then call capture_abort. CUDA only: on the CPU these fail.
struct DeviceGraph;
void backend_graph_capture_begin(Device dev);
DeviceGraph* backend_graph_capture_end(Device dev);
void backend_graph_capture_abort(Device dev);   // no-op when no capture is under way
void backend_graph_launch(DeviceGraph* g);
void backend_graph_destroy(DeviceGraph* g);     // null is a no-op; never throws

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

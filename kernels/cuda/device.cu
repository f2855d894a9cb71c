// device.cu: the CUDA backend's runtime: device detection, the stream and cuBLAS handle,
// the caching allocator, host/device copies, the convolution-path switch and the kernel
// table (see cuda.h for the execution model).
//
// Caching allocator: requests are rounded up to a size class (512 B steps up to 1 MiB, then
// 8 classes per power of two, so at most 12.5% is wasted) and freed blocks go to a free
// list per class. A training loop asks for the same sizes every iteration, so after the
// first one every request is served from a free list: no cudaMalloc (which synchronises the
// device) in steady state. Nothing is returned to the driver except on an out-of-memory
// retry or cuda_empty_cache(). The allocator and the handles are never destroyed: static
// destructors run after the CUDA runtime may have shut down, and the driver reclaims
// everything at exit.
//
// CUDA Graphs (cuda_graph_*): the stream is captured in thread-local mode; while it is, the
// allocator refuses to hand out blocks and counts the blocks given back, and host<->device
// copies and synchronisations fail with a message before touching CUDA (see cuda.h). cuBLAS
// works in a workspace of its own (cublasSetWorkspace), allocated once with the handle, so a
// captured GEMM never asks the driver for memory.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/internal.cuh"

namespace vt {

// ---- device detection ------------------------------------------------------------------------

int cuda_device_count() {
    static int count = [] {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);  // no driver or no device: an error, not a crash
        cudaGetLastError();                      // leave no error behind for later checks
        return e == cudaSuccess ? n : 0;
    }();
    return count;
}

bool cuda_device_present() { return cuda_device_count() > 0; }

static int g_device = 0;  // the device the context is made on (cuda_select_device)

void cuda_select_device(int ordinal) {
    cudaError_t e = cudaSetDevice(ordinal);
    if (e != cudaSuccess) fail("cannot use CUDA device %d: %s", ordinal, cudaGetErrorString(e));
    g_device = ordinal;
}

namespace cuda {

// ---- stream and library handles ------------------------------------------------------------

namespace {
struct Context {
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    void* cublas_workspace = nullptr;
};

// cuBLAS's recommended workspace on Hopper (32 MiB; 4 MiB suffices on older GPUs).
constexpr size_t CUBLAS_WORKSPACE_BYTES = (size_t)32 << 20;

Context& context() {
    static Context* ctx = [] {
        CHECK(cuda_device_present(), "the CUDA backend was used without a CUDA device");
        auto* c = new Context;
        CUDA_CHECK(cudaSetDevice(g_device));
        CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
        CUBLAS_CHECK(cublasCreate(&c->cublas));
        CUBLAS_CHECK(cublasSetStream(c->cublas, c->stream));
        // Plain FP32 GEMMs (no TF32): the CPU twin is the reference. cuBLAS's default already
        // is, unless NVIDIA_TF32_OVERRIDE says otherwise; say it explicitly.
        CUBLAS_CHECK(cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
        // After cublasSetStream, which resets the handle to cuBLAS's own workspace pool.
        CUDA_CHECK(cudaMalloc(&c->cublas_workspace, CUBLAS_WORKSPACE_BYTES));
        CUBLAS_CHECK(cublasSetWorkspace(c->cublas, c->cublas_workspace, CUBLAS_WORKSPACE_BYTES));
        return c;
    }();
    return *ctx;
}
}  // namespace

cudaStream_t stream() { return context().stream; }
cublasHandle_t cublas() { return context().cublas; }

// Graph capture state, shared with the allocator below.
static std::atomic<bool> g_capturing{false};
static std::atomic<int64_t> g_capture_frees{0};

static void refuse_in_capture(const char* what) {
    if (g_capturing.load())
        fail("%s during a CUDA Graph capture: a captured iteration must run on the device alone (no host<->device "
             "copies, synchronisations or allocations); this op cannot be captured, run it uncaptured", what);
}

void launch_check(const char* file, int line) {
    static const bool sync_each = [] {
        const char* s = std::getenv("VT_CUDA_SYNC");
        return s && std::strcmp(s, "0") != 0;
    }();
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && sync_each && !g_capturing.load()) e = cudaStreamSynchronize(stream());
    if (e != cudaSuccess)
        fail_check(file, line, "kernel launch", "CUDA error %s: %s", cudaGetErrorName(e), cudaGetErrorString(e));
}

// ---- caching allocator -----------------------------------------------------------------------

namespace {
struct Allocator {
    std::mutex mu;
    std::unordered_map<size_t, std::vector<void*>> free_lists;  // size class -> free blocks
    std::unordered_map<void*, size_t> live;                     // block -> its size class
    CudaMemStats stats{0, 0, 0, 0};

    static size_t size_class(size_t bytes) {
        if (bytes == 0) bytes = 1;
        size_t step = 512;
        if (bytes > ((size_t)1 << 20)) {
            int msb = 63 - __builtin_clzll((unsigned long long)bytes);
            step = (size_t)1 << (msb - 3);
        }
        return (bytes + step - 1) / step * step;
    }

    // Gives every cached block back to the driver (mu held).
    void release_cached() {
        for (auto& kv : free_lists)
            for (void* p : kv.second) CUDA_CHECK(cudaFree(p));
        free_lists.clear();
        stats.cached_bytes = 0;
    }

    void* alloc(size_t bytes) {
        // A block handed out during a capture would be baked into the graph, and freed (and
        // handed to someone else) when its tensor goes: refuse, whether or not it is cached.
        if (g_capturing.load()) refuse_in_capture(strfmt("a device allocation of %zu bytes", bytes).c_str());
        std::lock_guard<std::mutex> lock(mu);
        size_t cls = size_class(bytes);
        void* p = nullptr;
        auto it = free_lists.find(cls);
        if (it != free_lists.end() && !it->second.empty()) {
            p = it->second.back();
            it->second.pop_back();
            stats.cached_bytes -= (int64_t)cls;
        } else {
            cudaError_t e = cudaMalloc(&p, cls);
            if (e == cudaErrorMemoryAllocation) {  // give the cache back and try once more
                cudaGetLastError();
                release_cached();
                e = cudaMalloc(&p, cls);
            }
            if (e != cudaSuccess) {
                cudaGetLastError();
                size_t free_b = 0, total_b = 0;
                cudaMemGetInfo(&free_b, &total_b);
                cudaGetLastError();
                fail("CUDA out of memory: asked for %.1f MiB with %.1f MiB in use by tensors; the device has "
                     "%.1f MiB free of %.1f MiB (%s); use a smaller batch or fewer time steps",
                     cls / 1048576.0, stats.live_bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0,
                     cudaGetErrorString(e));
            }
            stats.mallocs++;
        }
        live[p] = cls;
        stats.live_bytes += (int64_t)cls;
        if (stats.live_bytes > stats.peak_bytes) stats.peak_bytes = stats.live_bytes;
        return p;
    }

    void free(void* p) {
        std::lock_guard<std::mutex> lock(mu);
        auto it = live.find(p);
        if (it == live.end()) {  // a programming error; called from destructors, so no throw
            std::fprintf(stderr, "cuda_cached_free: %p was not allocated by cuda_cached_alloc\n", p);
            std::abort();
        }
        size_t cls = it->second;
        live.erase(it);
        if (g_capturing.load()) g_capture_frees++;  // cuda_graph_end fails on it
        free_lists[cls].push_back(p);
        stats.live_bytes -= (int64_t)cls;
        stats.cached_bytes += (int64_t)cls;
    }
};

Allocator& allocator() {
    static Allocator* a = new Allocator;  // never destroyed (see the file comment)
    return *a;
}
}  // namespace

double* reduce_scratch() {
    static double* p = (double*)allocator().alloc(REDUCE_BLOCKS * sizeof(double));
    return p;
}

}  // namespace cuda

float* cuda_cached_alloc(int64_t n) {
    cuda::context();  // the device is set before the first cudaMalloc
    return (float*)cuda::allocator().alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
}

void cuda_cached_free(float* p) {
    if (p) cuda::allocator().free(p);
}

CudaMemStats cuda_mem_stats() {
    cuda::Allocator& a = cuda::allocator();
    std::lock_guard<std::mutex> lock(a.mu);
    return a.stats;
}

void cuda_empty_cache() {
    cuda_synchronize();
    cuda::Allocator& a = cuda::allocator();
    std::lock_guard<std::mutex> lock(a.mu);
    a.release_cached();
}

// ---- copies and synchronisation --------------------------------------------------------------

void cuda_memcpy(float* dst, const float* src, int64_t n, int kind) {
    if (n <= 0 || dst == src) return;
    static const cudaMemcpyKind kinds[3] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                            cudaMemcpyDeviceToDevice};
    CHECK(kind >= 0 && kind <= 2, "cuda_memcpy: kind %d is not 0 (h2d), 1 (d2h) or 2 (d2d)", kind);
    if (kind != 2) cuda::refuse_in_capture(kind == 0 ? "a host->device copy" : "a device->host copy");
    cudaStream_t s = cuda::stream();
    CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)n * sizeof(float), kinds[kind], s));
    // Host memory may be reused or freed as soon as we return: wait for copies that touch it.
    if (kind != 2) CUDA_CHECK(cudaStreamSynchronize(s));
}

void cuda_synchronize() {
    cuda::refuse_in_capture("a stream synchronisation");
    CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
}

// ---- pinned host memory ----------------------------------------------------------------------

float* cuda_host_alloc(int64_t n) {
    cuda::context();
    void* p = nullptr;
    size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
    cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        cudaGetLastError();
        fail("could not allocate %.1f MiB of pinned host memory (%s): use a smaller batch", bytes / 1048576.0,
             cudaGetErrorString(e));
    }
    return (float*)p;
}

void cuda_host_free(float* p) {
    if (!p) return;
    cudaError_t e = cudaFreeHost(p);  // called from destructors: report, do not throw
    if (e != cudaSuccess) {
        cudaGetLastError();
        std::fprintf(stderr, "warning: cudaFreeHost(%p): %s\n", (void*)p, cudaGetErrorString(e));
    }
}

// ---- CUDA Graphs -----------------------------------------------------------------------------

struct CudaGraph {
    cudaGraphExec_t exec = nullptr;
};

bool cuda_graph_capturing() { return cuda::g_capturing.load(); }

void cuda_graph_begin() {
    CHECK(!cuda::g_capturing.load(), "cuda_graph_begin: a capture is already under way");
    cudaStream_t s = cuda::stream();
    CUDA_CHECK(cudaStreamSynchronize(s));  // nothing queued before the capture runs inside it
    cuda::g_capture_frees = 0;
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    cuda::g_capturing = true;
}

void cuda_graph_abort() {
    if (!cuda::g_capturing.load()) return;
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(cuda::stream(), &g);  // an invalidated capture returns an error: fine here
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    cuda::g_capturing = false;
}

CudaGraph* cuda_graph_end() {
    CHECK(cuda::g_capturing.load(), "cuda_graph_end without cuda_graph_begin");
    cudaGraph_t g = nullptr;
    cudaError_t e = cudaStreamEndCapture(cuda::stream(), &g);
    cuda::g_capturing = false;
    const int64_t frees = cuda::g_capture_frees.load();
    if (e != cudaSuccess || frees > 0) {
        if (g) cudaGraphDestroy(g);
        cudaGetLastError();
        if (e != cudaSuccess)
            fail("the CUDA Graph capture failed (%s: %s): an op in it called CUDA in a way a capture does not allow",
                 cudaGetErrorName(e), cudaGetErrorString(e));
        fail("%lld device blocks were freed during the CUDA Graph capture: the graph may refer to them; a captured "
             "iteration must neither allocate nor free", (long long)frees);
    }
    cudaGraphExec_t exec = nullptr;
    e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    CUDA_CHECK(e);
    auto* out = new CudaGraph;
    out->exec = exec;
    return out;
}

void cuda_graph_launch(CudaGraph* g) {
    CHECK(g && g->exec, "cuda_graph_launch of no graph");
    cuda::refuse_in_capture("a graph launch");
    CUDA_CHECK(cudaGraphLaunch(g->exec, cuda::stream()));
}

void cuda_graph_destroy(CudaGraph* g) {
    if (!g) return;
    // Called from destructors: no throwing. The stream is drained first so that no launch
    // of this graph is still pending.
    if (!cuda::g_capturing.load()) cudaStreamSynchronize(cuda::stream());
    if (g->exec) cudaGraphExecDestroy(g->exec);
    cudaGetLastError();
    delete g;
}

const char* cuda_device_name() {
    static std::string name = [] {
        cuda::context();
        cudaDeviceProp prop;
        CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        return std::string(prop.name);
    }();
    return name.c_str();
}

// ---- convolution path ------------------------------------------------------------------------

bool cuda_has_cudnn() {
#ifdef VT_CUDNN
    return true;
#else
    return false;
#endif
}

static ConvPath& conv_path_ref() {
    static ConvPath p = [] {
        const char* s = std::getenv("VT_CONV");
        if (!s || !*s || !std::strcmp(s, "im2col")) return ConvPath::Im2col;
        if (std::strcmp(s, "cudnn") != 0) fail("VT_CONV=%s: expected `im2col` or `cudnn`", s);
        if (!cuda_has_cudnn()) fail("VT_CONV=cudnn: this build has no cuDNN (rebuild with `make CUDA=1 CUDNN=1`)");
        return ConvPath::Cudnn;
    }();
    return p;
}

static Precision& precision_ref() {
    static Precision p = [] {
        const char* s = std::getenv("VT_PRECISION");
        if (!s || !*s || !std::strcmp(s, "fp32")) return Precision::FP32;
        if (!std::strcmp(s, "tf32")) return Precision::TF32;
        if (!std::strcmp(s, "bf16")) return Precision::BF16;
        fail("VT_PRECISION=%s: expected fp32, tf32 or bf16", s);
    }();
    return p;
}

void cuda_set_precision(Precision p) { precision_ref() = p; }
Precision cuda_precision() { return precision_ref(); }

void cuda_set_conv_path(ConvPath p) {
    if (p == ConvPath::Cudnn && !cuda_has_cudnn())
        fail("cuDNN convolution asked for, but this build has no cuDNN (rebuild with `make CUDA=1 CUDNN=1`)");
    conv_path_ref() = p;
}

ConvPath cuda_conv_path() { return conv_path_ref(); }

// ---- the kernel table ------------------------------------------------------------------------

// Filled by name from VT_KERNELS (kernels/kernels.h), like cpu_kernels().
const KernelTable& cuda_kernels() {
    static const KernelTable t = [] {
        KernelTable k{};
        k.name = "cuda";
#define VT_SET_KERNEL(kernel) k.kernel = cuda::kernel;
        VT_KERNELS(VT_SET_KERNEL)
#undef VT_SET_KERNEL
        return k;
    }();
    return t;
}

}  // namespace vt

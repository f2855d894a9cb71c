// backend.cpp: device dispatch for memory and kernels (see backend.h).
#include "engine/backend.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_set>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cblas.h>

#ifdef VT_CUDA
#include "kernels/cuda/cuda.h"  // the hooks, implemented in kernels/cuda/ (device.cu)
#endif

extern "C" char* openblas_get_corename(void);

namespace vt {

static void need_cuda() {
#ifdef VT_CUDA
    if (!cuda_device_present()) fail("--device cuda: no CUDA device is available on this machine");
#else
    fail("--device cuda: this build has no CUDA backend (rebuild with `make CUDA=1`)");
#endif
}

bool cuda_available() {
#ifdef VT_CUDA
    return cuda_device_present();
#else
    return false;
#endif
}

int cuda_devices() {
#ifdef VT_CUDA
    return cuda_device_count();
#else
    return 0;
#endif
}

void cuda_use_device(int ordinal) {
#ifdef VT_CUDA
    cuda_select_device(ordinal);
#else
    (void)ordinal;
#endif
}

const char* backend_device_name(Device dev) {
    if (dev == Device::CPU) return "cpu";
    need_cuda();
#ifdef VT_CUDA
    return cuda_device_name();
#else
    return "cuda";  // unreachable: need_cuda() threw
#endif
}

const KernelTable& kernels_for(Device dev) {
    if (dev == Device::CPU) return cpu_kernels();
    need_cuda();
#ifdef VT_CUDA
    return cuda_kernels();
#else
    return cpu_kernels();  // unreachable: need_cuda() threw
#endif
}

float* backend_cuda_alloc(int64_t n) {
    need_cuda();
#ifdef VT_CUDA
    return cuda_cached_alloc(n);
#else
    return nullptr;
#endif
}

void backend_cuda_free(float* p) {
#ifdef VT_CUDA
    cuda_cached_free(p);
#endif
}

void backend_fill(Device dev, float* p, int64_t n, float v) { kernels_for(dev).fill(p, n, v); }

void backend_copy(Device dst_dev, float* dst, Device src_dev, const float* src, int64_t n) {
    if (dst == src || n == 0) return;
    if (dst_dev == Device::CPU && src_dev == Device::CPU) {
        std::memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
#ifdef VT_CUDA
    int kind = dst_dev == Device::CUDA ? (src_dev == Device::CUDA ? 2 : 0) : 1;
    cuda_memcpy(dst, src, n, kind);
#else
    need_cuda();
#endif
}

void backend_copy_to_host(Device src_dev, float* dst, const float* src, int64_t n) {
    backend_copy(Device::CPU, dst, src_dev, src, n);
}

void backend_copy_from_host(Device dst_dev, float* dst, const float* src, int64_t n) {
    backend_copy(dst_dev, dst, Device::CPU, src, n);
}

void backend_synchronize(Device dev) {
    if (dev == Device::CPU) return;
    need_cuda();
#ifdef VT_CUDA
    cuda_synchronize();
#endif
}

// ---- GEMM precision ----------------------------------------------------------------------

Precision precision_parse(const std::string& s) {
    if (s == "fp32") return Precision::FP32;
    if (s == "tf32") return Precision::TF32;
    if (s == "bf16") return Precision::BF16;
    fail("--precision: expected fp32, tf32 or bf16, got '%s'", s.c_str());
}

const char* precision_name(Precision p) {
    return p == Precision::TF32 ? "tf32" : p == Precision::BF16 ? "bf16" : "fp32";
}

void precision_check(Device dev, Precision p) {
    if (dev == Device::CPU && p != Precision::FP32)
        fail("--precision %s: the CPU computes in fp32 only; tf32 and bf16 are GPU precisions (--device cuda)",
             precision_name(p));
}

void backend_set_precision(Device dev, Precision p) {
    precision_check(dev, p);
    if (dev == Device::CPU) return;
    need_cuda();
#ifdef VT_CUDA
    cuda_set_precision(p);
#endif
}

Precision backend_precision(Device dev) {
    if (dev == Device::CPU) return Precision::FP32;
    need_cuda();
#ifdef VT_CUDA
    return cuda_precision();
#else
    return Precision::FP32;
#endif
}

// ---- pinned host memory -----------------------------------------------------------------

namespace {
// The page-locked blocks handed out (the others came from posix_memalign).
struct PinnedRegistry {
    std::mutex mu;
    std::unordered_set<const float*> blocks;
};
PinnedRegistry& pinned_registry() {
    static PinnedRegistry* r = new PinnedRegistry;  // never destroyed: buffers may outlive statics
    return *r;
}
}  // namespace

float* backend_host_alloc_pinned(int64_t n) {
    CHECK(n >= 0, "backend_host_alloc_pinned(%lld)", (long long)n);
#ifdef VT_CUDA
    if (cuda_available()) {
        float* p = cuda_host_alloc(n > 0 ? n : 1);
        PinnedRegistry& r = pinned_registry();
        std::lock_guard<std::mutex> lock(r.mu);
        r.blocks.insert(p);
        return p;
    }
#endif
    void* p = nullptr;
    if (posix_memalign(&p, 64, (size_t)(n > 0 ? n : 1) * sizeof(float)) != 0) throw std::bad_alloc();
    return (float*)p;
}

bool backend_host_is_pinned(const float* p) {
    if (!p) return false;
    PinnedRegistry& r = pinned_registry();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.blocks.count(p) > 0;
}

void backend_host_free_pinned(float* p) {
    if (!p) return;
    bool pinned = false;
    {
        PinnedRegistry& r = pinned_registry();
        std::lock_guard<std::mutex> lock(r.mu);
        pinned = r.blocks.erase(p) > 0;
    }
#ifdef VT_CUDA
    if (pinned) {
        cuda_host_free(p);
        return;
    }
#endif
    (void)pinned;
    std::free(p);
}

// ---- device graphs ----------------------------------------------------------------------

struct DeviceGraph {
#ifdef VT_CUDA
    CudaGraph* graph = nullptr;
#endif
};

static void need_graph_device(Device dev, const char* what) {
    if (dev == Device::CPU) fail("%s: device graphs are a CUDA feature; on the CPU run the work directly", what);
    need_cuda();
}

void backend_graph_capture_begin(Device dev) {
    need_graph_device(dev, "backend_graph_capture_begin");
#ifdef VT_CUDA
    cuda_graph_begin();
#endif
}

DeviceGraph* backend_graph_capture_end(Device dev) {
    need_graph_device(dev, "backend_graph_capture_end");
    auto* g = new DeviceGraph;
#ifdef VT_CUDA
    try {
        g->graph = cuda_graph_end();
    } catch (...) {
        delete g;
        throw;
    }
#endif
    return g;
}

void backend_graph_capture_abort(Device dev) {
#ifdef VT_CUDA
    if (dev == Device::CUDA && cuda_available()) cuda_graph_abort();
#endif
}

void backend_graph_launch(DeviceGraph* g) {
    CHECK(g != nullptr, "backend_graph_launch of no graph");
#ifdef VT_CUDA
    cuda_graph_launch(g->graph);
#endif
}

void backend_graph_destroy(DeviceGraph* g) {
    if (!g) return;
#ifdef VT_CUDA
    cuda_graph_destroy(g->graph);
#endif
    delete g;
}

static int g_threads = 0;

void backend_set_threads(int n) {
    const int hw = hardware_threads();
    const int asked = n;
    if (n <= 0) n = hw;
    if (n > hw) {
        std::fprintf(stderr, "note: %d compute threads asked (--threads), more than the %d hardware threads this process "
                             "may run on; using %d\n", n, hw, hw);
        n = hw;
    }
    // Each thread costs OpenBLAS and OpenMP about 100 MB of address space (buffers, stacks,
    // malloc arenas); when an address-space limit (ulimit -v) cannot give it, OpenBLAS spins
    // in blas_memory_alloc forever. Keep 128 MB of headroom per thread.
    const MemoryLimit lim = memory_limit();
    const int by_memory = (int)std::max<uint64_t>(1, std::min<uint64_t>(lim.bytes / (128ull << 20), 1 << 20));
    if (n > by_memory) {
        std::fprintf(stderr, "note: %d compute threads%s need about %d MB of address space, more than %s; using %d\n", n,
                     asked > 0 ? " (--threads)" : "", n * 128, lim.what.c_str(), by_memory);
        n = by_memory;
    }
    g_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

int backend_threads() {
    if (g_threads == 0) backend_set_threads(0);
    return g_threads;
}

}  // namespace vt

namespace vt {

const char* blas_core_name() { return openblas_get_corename(); }

static bool generic_blas_core(const char* core) {
    for (const char* c : {"Prescott", "Core2", "Katmai", "Unknown", "Nehalem", "Atom"})
        if (!std::strcmp(core, c)) return true;
    return false;
}

void runtime_init(char** argv, RuntimeOptions opt) {
    if (std::getenv("VT_RUNTIME_INIT")) return;  // once per process tree
    setenv("VT_RUNTIME_INIT", "1", 1);
    bool changed = false;
    if (!std::getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        changed = true;
    }
    bool dropped = false;
    if (opt.drop_blas_overrides && (std::getenv("OPENBLAS_CORETYPE") || std::getenv("OPENBLAS_L2_SIZE"))) {
        unsetenv("OPENBLAS_CORETYPE");
        unsetenv("OPENBLAS_L2_SIZE");
        changed = dropped = true;
    }
    // After dropping the overrides, the core loaded now is not what will load: decide after
    // the re-exec (VT_RUNTIME_INIT is then set, so bench checks it itself, see below).
    if (opt.native_blas && !dropped && !std::getenv("OPENBLAS_CORETYPE") && generic_blas_core(openblas_get_corename())) {
        __builtin_cpu_init();
        const char* want = nullptr;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
            want = "SkylakeX";
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            want = "Haswell";
        if (want) {
            setenv("OPENBLAS_CORETYPE", want, 1);
            changed = true;
        }
    }
    if (dropped) unsetenv("VT_RUNTIME_INIT");  // one more pass picks the kernels
    if (!changed) return;
    execv("/proc/self/exe", argv);
    std::fprintf(stderr, "warning: could not re-execute %s to set up threads and BLAS kernels (%s)\n", argv[0],
                 std::strerror(errno));
}

}  // namespace vt

// backend.cpp: device dispatch for memory and kernels (see backend.h).
#include "engine/backend.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cblas.h>

extern "C" char* openblas_get_corename(void);

namespace vt {

#ifdef VT_CUDA
// Implemented in kernels/cuda/ (device.cu).
bool cuda_device_present();
float* cuda_cached_alloc(int64_t n);
void cuda_cached_free(float* p);
void cuda_memcpy(float* dst, const float* src, int64_t n, int kind);  // 0 h2d, 1 d2h, 2 d2d
#endif

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

static int g_threads = 0;

void backend_set_threads(int n) {
    if (n <= 0) n = (int)std::thread::hardware_concurrency();
    if (n <= 0) n = 1;
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

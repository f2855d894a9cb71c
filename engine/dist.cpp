// dist.cpp: ranks, allreduce and broadcast over MPI (and NCCL for device buffers); see dist.h.
#include "engine/dist.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/common.h"

#ifdef VT_MPI
#include <mpi.h>
#endif
#ifdef VT_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace vt {

namespace {

DistInfo g_info;
bool g_started = false;  // MPI_Init was called

int env_int(const char* name, int fallback) {
    const char* v = std::getenv(name);
    if (!v || !*v) return fallback;
    char* end = nullptr;
    long x = std::strtol(v, &end, 10);
    return *end || x < 0 || x > (1 << 24) ? fallback : (int)x;
}

// The rank count a launcher announced (OpenMPI's mpirun, PMIx, PMI as under srun), or 0.
int launcher_size() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"}) {
        int n = env_int(v, 0);
        if (n > 0) return n;
    }
    return std::getenv("PMIX_RANK") ? 1 : 0;
}

#ifdef VT_MPI
// n floats of `dev` as a host buffer for MPI: the data itself on the CPU, else a copy that
// put_back() writes to the device again.
struct HostStage {
    float* x;
    int64_t n;
    Device dev;
    std::vector<float> copy;
    HostStage(float* x_, int64_t n_, Device dev_) : x(x_), n(n_), dev(dev_) {
        if (dev == Device::CPU) return;
        copy.resize((size_t)n);
        backend_copy_to_host(dev, copy.data(), x, n);
    }
    float* data() { return dev == Device::CPU ? x : copy.data(); }
    void put_back() {
        if (dev != Device::CPU) backend_copy_from_host(dev, x, copy.data(), n);
    }
};

// MPI counts are ints: a long buffer goes in chunks of 2^30 floats.
template <class F>
void in_chunks(float* buf, int64_t n, F f) {
    for (int64_t off = 0; off < n; off += 1 << 30) f(buf + off, (int)std::min<int64_t>(n - off, 1 << 30));
}
#endif

#ifdef VT_NCCL
ncclComm_t g_nccl = nullptr;

void nccl_check(ncclResult_t r, const char* what) {
    if (r != ncclSuccess) fail("NCCL %s: %s", what, ncclGetErrorString(r));
}

// One NCCL communicator over the MPI ranks, on the device this rank uses.
void nccl_start() {
    ncclUniqueId id;
    if (g_info.rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    nccl_check(ncclCommInitRank(&g_nccl, g_info.size, id, g_info.rank), "ncclCommInitRank");
}
#endif

}  // namespace

bool dist_built() {
#ifdef VT_MPI
    return true;
#else
    return false;
#endif
}

const DistInfo& dist() { return g_info; }
bool dist_active() { return g_info.size > 1; }

const DistInfo& dist_init() {
    if (g_started) return g_info;
    const int announced = launcher_size();
#ifdef VT_MPI
    if (announced == 0) return g_info;  // a plain run: one rank, MPI untouched
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    g_started = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_info.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_info.size);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_info.rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &g_info.local_rank);
    MPI_Comm_size(local, &g_info.local_size);
    MPI_Comm_free(&local);
    if (g_info.local_size > 1 && cuda_devices() > 1)  // one GPU per rank on this machine
        cuda_use_device(g_info.local_rank % cuda_devices());
#ifdef VT_NCCL
    const char* nccl = std::getenv("VT_NCCL");
    g_info.nccl = cuda_available() && !(nccl && std::string(nccl) == "0");
#endif
#else
    if (announced > 1)
        fail("started by mpirun with %d ranks, but this binary was built without MPI: rebuild with `make MPI=1` "
             "(each rank would otherwise train alone)", announced);
#endif
    return g_info;
}

void dist_allreduce_mean(float* x, int64_t n, Device dev) {
    if (!dist_active() || n == 0) return;
#ifdef VT_MPI
    const float scale = 1.f / (float)g_info.size;
#ifdef VT_NCCL
    if (dev == Device::CUDA && g_info.nccl) {
        if (!g_nccl) nccl_start();
        backend_synchronize(dev);  // the engine's stream has produced x
        nccl_check(ncclAllReduce(x, x, (size_t)n, ncclFloat, ncclAvg, g_nccl, nullptr), "ncclAllReduce");
        if (cudaStreamSynchronize(nullptr) != cudaSuccess) fail("NCCL allreduce: cudaStreamSynchronize failed");
        return;
    }
#endif
    HostStage h(x, n, dev);
    float* buf = h.data();
    in_chunks(buf, n, [](float* p, int c) { MPI_Allreduce(MPI_IN_PLACE, p, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); });
    for (int64_t i = 0; i < n; i++) buf[i] *= scale;
    h.put_back();
#else
    (void)x, (void)dev;
#endif
}

void dist_allreduce_sum(double* x, int64_t n) {
    if (!dist_active() || n == 0) return;
#ifdef VT_MPI
    MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)x;
#endif
}

void dist_broadcast(float* x, int64_t n, Device dev, int root) {
    if (!dist_active() || n == 0) return;
#ifdef VT_MPI
    HostStage h(x, n, dev);
    in_chunks(h.data(), n, [root](float* p, int c) { MPI_Bcast(p, c, MPI_FLOAT, root, MPI_COMM_WORLD); });
    h.put_back();
#else
    (void)x, (void)dev, (void)root;
#endif
}

void dist_barrier() {
#ifdef VT_MPI
    if (dist_active()) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

void dist_check_same(const std::vector<int64_t>& v, const std::vector<std::string>& names, const std::string& what) {
    if (!dist_active() || v.empty()) return;
#ifdef VT_MPI
    std::vector<int64_t> lo = v, hi = v;
    MPI_Allreduce(MPI_IN_PLACE, lo.data(), (int)lo.size(), MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, hi.data(), (int)hi.size(), MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    for (size_t i = 0; i < v.size(); i++)
        if (lo[i] != hi[i])
            fail("%s: the ranks disagree on %s (from %lld to %lld; this is rank %d with %lld): every rank must see the "
                 "same data and flags", what.c_str(), i < names.size() ? names[i].c_str() : "a value", (long long)lo[i],
                 (long long)hi[i], g_info.rank, (long long)v[i]);
#else
    (void)names, (void)what;
#endif
}

int dist_exit(int rc, bool agreed) {
#ifdef VT_MPI
    if (g_started) {
#ifdef VT_NCCL
        if (g_nccl && agreed) ncclCommDestroy(g_nccl);
#endif
        if (!agreed && g_info.size > 1) MPI_Abort(MPI_COMM_WORLD, rc ? rc : 1);  // others may wait in a collective
        MPI_Finalize();
        g_started = false;
    }
#endif
    return rc;
}

}  // namespace vt

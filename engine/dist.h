// dist.h: data-parallel training over processes (issue 16): K ranks started by mpirun, each
// computing the gradient of its share of a batch, averaged with an allreduce.
//
//   mpirun -np 2 ./bin/pretrain DIR ...          (a `make MPI=1` build)
//
// Built with MPI=1 (OpenMPI from Debian's libopenmpi-dev): MPI_Init only when the process was
// started by a launcher (mpirun or srun set OMPI_COMM_WORLD_SIZE / PMIX_RANK / PMI_SIZE);
// a plain ./bin/pretrain is one rank and never touches MPI. Without MPI=1 every call is a
// no-op for one rank, and a binary started by mpirun with more ranks stops at dist_init,
// saying so, instead of K copies training alone onto one checkpoint.
//
// Host buffers go through MPI_Allreduce. Device buffers (GPU ranks) go through NCCL in a
// CUDA=1 MPI=1 build (the communicator's id is broadcast over MPI; VT_NCCL=0 at run time
// sends them through host memory and MPI instead), otherwise through host memory.
//
// Failure: a rank that fails calls dist_exit(rc != 0), which aborts every rank
// (MPI_Abort); mpirun reports which rank and why, and a rank killed by a signal takes the job
// down the same way. Checkpoints are written by rank 0 alone, atomically, so the last good
// one stays.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace vt {

struct DistInfo {
    int rank = 0, size = 1;              // this process, and how many
    int local_rank = 0, local_size = 1;  // on this machine (threads per rank: cores / local_size)
    bool nccl = false;                   // device buffers go through NCCL
};

bool dist_built();                // made with MPI=1
const DistInfo& dist_init();      // idempotent; see above
const DistInfo& dist();           // dist_init's result (one rank before it)
bool dist_active();               // more than one rank

// In place: every rank ends with the mean (or sum) over ranks of x (n floats, on `dev`).
void dist_allreduce_mean(float* x, int64_t n, Device dev);
void dist_allreduce_sum(double* x, int64_t n);             // host doubles: losses, counts, flags
void dist_broadcast(float* x, int64_t n, Device dev, int root);
// Fails on every rank, naming `what` and the first item that differs, unless all ranks hold
// the same values (e.g. the number of training images: ranks that disagree would fall out of
// step in their collectives and hang).
void dist_check_same(const std::vector<int64_t>& v, const std::vector<std::string>& names, const std::string& what);

// The end of a tool's main under MPI: MPI_Finalize when every rank ends alike (`agreed`: a
// finished run, or a Ctrl-C they stopped at together), else MPI_Abort(rc), which stops every
// rank (one failed: the others may be waiting in a collective). Returns rc.
int dist_exit(int rc, bool agreed);
void dist_barrier();

}  // namespace vt

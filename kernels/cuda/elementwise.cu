// elementwise.cu: CUDA elementwise ops, activations, reductions, losses and optimiser steps;
// twins of kernels/cpu/elementwise.cpp (same formulas, same float/double choices).
//
// Elementwise kernels are grid-stride loops, one element per thread per step. Reductions
// (sum, mse, cross-entropy) are two-pass and deterministic: REDUCE_BLOCKS partial sums in
// double, then one block adds them up and writes the scalar, all on the device (no host
// synchronisation). Scalar inputs of backward kernels (dout[0]) are read on the device.
#include <cmath>

#include "kernels/cuda/internal.cuh"

namespace vt::cuda {

// ---- memory and elementwise ------------------------------------------------------------------

__global__ void fill_kernel(float* p, int64_t n, float v) {
    CUDA_GRID_LOOP(i, n) p[i] = v;
}

__global__ void axpy_kernel(float* y, const float* x, int64_t n, float a) {
    CUDA_GRID_LOOP(i, n) y[i] += a * x[i];
}

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n, float alpha, float beta) {
    CUDA_GRID_LOOP(i, n) out[i] = alpha * a[i] + beta * b[i];
}

__global__ void mul_kernel(float* out, const float* a, const float* b, int64_t n) {
    CUDA_GRID_LOOP(i, n) out[i] = a[i] * b[i];
}

// da or db may be null.
__global__ void mul_backward_kernel(float* da, float* db, const float* dout, const float* a, const float* b,
                                    int64_t n) {
    CUDA_GRID_LOOP(i, n) {
        if (da) da[i] += dout[i] * b[i];
        if (db) db[i] += dout[i] * a[i];
    }
}

__global__ void affine_kernel(float* out, const float* a, int64_t n, float scale, float shift) {
    CUDA_GRID_LOOP(i, n) out[i] = scale * a[i] + shift;
}

void fill(float* p, int64_t n, float v) {
    if (n <= 0) return;
    fill_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(p, n, v);
    CUDA_LAUNCH_CHECK();
}

void axpy(float* y, const float* x, int64_t n, float a) {
    if (n <= 0) return;
    axpy_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(y, x, n, a);
    CUDA_LAUNCH_CHECK();
}

void add(float* out, const float* a, const float* b, int64_t n, float alpha, float beta) {
    if (n <= 0) return;
    add_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(out, a, b, n, alpha, beta);
    CUDA_LAUNCH_CHECK();
}

void mul(float* out, const float* a, const float* b, int64_t n) {
    if (n <= 0) return;
    mul_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(out, a, b, n);
    CUDA_LAUNCH_CHECK();
}

void mul_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n) {
    if (n <= 0 || (!da && !db)) return;
    mul_backward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(da, db, dout, a, b, n);
    CUDA_LAUNCH_CHECK();
}

void affine(float* out, const float* a, int64_t n, float scale, float shift) {
    if (n <= 0) return;
    affine_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(out, a, n, scale, shift);
    CUDA_LAUNCH_CHECK();
}

// ---- activations: backward reads the forward output y ----------------------------------------

template <Act A>
__device__ inline float act_value(float x) {
    if (A == Act::ELU) return x > 0.f ? x : expm1f(x);
    if (A == Act::ReLU) return x > 0.f ? x : 0.f;
    if (A == Act::Sigmoid) return 1.f / (1.f + expf(-x));
    return tanhf(x);
}

// elu' = y > 0 ? 1 : y + 1; relu' = y > 0; sigmoid' = y (1 - y); tanh' = 1 - y^2.
template <Act A>
__device__ inline float act_grad(float g, float y) {
    if (A == Act::ELU) return g * (y > 0.f ? 1.f : y + 1.f);
    if (A == Act::ReLU) return y > 0.f ? g : 0.f;
    if (A == Act::Sigmoid) return g * y * (1.f - y);
    return g * (1.f - y * y);
}

template <Act A>
__global__ void act_forward_kernel(float* out, const float* inp, int64_t n) {
    CUDA_GRID_LOOP(i, n) out[i] = act_value<A>(inp[i]);
}

template <Act A>
__global__ void act_backward_kernel(float* dinp, const float* dout, const float* out, int64_t n) {
    CUDA_GRID_LOOP(i, n) dinp[i] += act_grad<A>(dout[i], out[i]);
}

void act_forward(Act act, float* out, const float* inp, int64_t n) {
    if (n <= 0) return;
    unsigned g = grid_for(n);
    cudaStream_t s = stream();
    switch (act) {
    case Act::ELU: act_forward_kernel<Act::ELU><<<g, BLOCK, 0, s>>>(out, inp, n); break;
    case Act::ReLU: act_forward_kernel<Act::ReLU><<<g, BLOCK, 0, s>>>(out, inp, n); break;
    case Act::Sigmoid: act_forward_kernel<Act::Sigmoid><<<g, BLOCK, 0, s>>>(out, inp, n); break;
    case Act::Tanh: act_forward_kernel<Act::Tanh><<<g, BLOCK, 0, s>>>(out, inp, n); break;
    }
    CUDA_LAUNCH_CHECK();
}

void act_backward(Act act, float* dinp, const float* dout, const float* out, int64_t n) {
    if (n <= 0) return;
    unsigned g = grid_for(n);
    cudaStream_t s = stream();
    switch (act) {
    case Act::ELU: act_backward_kernel<Act::ELU><<<g, BLOCK, 0, s>>>(dinp, dout, out, n); break;
    case Act::ReLU: act_backward_kernel<Act::ReLU><<<g, BLOCK, 0, s>>>(dinp, dout, out, n); break;
    case Act::Sigmoid: act_backward_kernel<Act::Sigmoid><<<g, BLOCK, 0, s>>>(dinp, dout, out, n); break;
    case Act::Tanh: act_backward_kernel<Act::Tanh><<<g, BLOCK, 0, s>>>(dinp, dout, out, n); break;
    }
    CUDA_LAUNCH_CHECK();
}

// ---- two-pass reductions ---------------------------------------------------------------------

struct SumTerm {
    const float* x;
    __device__ double operator()(int64_t i) const { return x[i]; }
};

struct SqDiffTerm {
    const float* a;
    const float* b;
    __device__ double operator()(int64_t i) const {
        double e = (double)a[i] - b[i];
        return e * e;
    }
};

// partial[blockIdx.x] = sum of term(i) over this block's share of [0, n)
template <class Term>
__global__ void partial_sum_kernel(double* partial, int64_t n, Term term) {
    double s = 0;
    CUDA_GRID_LOOP(i, n) s += term(i);
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out[0] = (float)(sum(partial) * mul / div), by one block
__global__ void finish_sum_kernel(float* out, const double* partial, int parts, double mul, double div) {
    double s = 0;
    for (int i = threadIdx.x; i < parts; i += blockDim.x) s += partial[i];
    s = block_sum(s);
    if (threadIdx.x == 0) out[0] = (float)(s * mul / div);
}

static void finish_sum(float* out, int parts, double mul, double div) {
    finish_sum_kernel<<<1, 1024, 0, stream()>>>(out, reduce_scratch(), parts, mul, div);
    CUDA_LAUNCH_CHECK();
}

template <class Term>
static void reduce(float* out, int64_t n, Term term, double mul, double div) {
    unsigned g = grid_for(n);
    if (g > (unsigned)REDUCE_BLOCKS) g = REDUCE_BLOCKS;
    partial_sum_kernel<<<g, BLOCK, 0, stream()>>>(reduce_scratch(), n, term);
    CUDA_LAUNCH_CHECK();
    finish_sum(out, (int)g, mul, div);
}

__global__ void sum_backward_kernel(float* dinp, const float* dout, int64_t n, float scale) {
    float g = dout[0] * scale;
    CUDA_GRID_LOOP(i, n) dinp[i] += g;
}

// da or db may be null.
__global__ void mse_backward_kernel(float* da, float* db, const float* dout, const float* a, const float* b,
                                    int64_t n) {
    float g = 2.f * dout[0] / (float)n;
    CUDA_GRID_LOOP(i, n) {
        float e = g * (a[i] - b[i]);
        if (da) da[i] += e;
        if (db) db[i] -= e;
    }
}

void sum(float* out, const float* inp, int64_t n, float scale) {
    if (n <= 0) return fill(out, 1, 0.f);
    reduce(out, n, SumTerm{inp}, (double)scale, 1.0);
}

void sum_backward(float* dinp, const float* dout, int64_t n, float scale) {
    if (n <= 0) return;
    sum_backward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dinp, dout, n, scale);
    CUDA_LAUNCH_CHECK();
}

void mse_forward(float* out, const float* a, const float* b, int64_t n) {
    if (n <= 0) return fill(out, 1, 0.f);
    reduce(out, n, SqDiffTerm{a, b}, 1.0, (double)n);
}

void mse_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n) {
    if (n <= 0 || (!da && !db)) return;
    mse_backward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(da, db, dout, a, b, n);
    CUDA_LAUNCH_CHECK();
}

// ---- softmax cross-entropy: one warp per row ---------------------------------------------------

// probs (N, K) = softmax(logits); partial[blockIdx.x] = this block's sum of row losses.
// A label outside [0, K) gives a NaN loss (the engine checks labels that live on the host).
__global__ void xent_forward_kernel(double* partial, float* probs, const float* logits, const float* labels, int N,
                                    int K) {
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    double loss = 0;
    for (int64_t n = (int64_t)blockIdx.x * warps + (threadIdx.x >> 5); n < N; n += (int64_t)gridDim.x * warps) {
        const float* x = logits + n * K;
        float* p = probs + n * K;
        float mx = -INFINITY;
        for (int k = lane; k < K; k += 32) mx = fmaxf(mx, x[k]);
        mx = warp_max(mx);
        double z = 0;
        for (int k = lane; k < K; k += 32) z += (p[k] = expf(x[k] - mx));
        z = warp_sum(z);
        for (int k = lane; k < K; k += 32) p[k] = (float)(p[k] / z);
        int y = (int)labels[n];
        if (lane == 0) loss += (y >= 0 && y < K) ? -((double)x[y] - mx - log(z)) : (double)NAN;
    }
    loss = block_sum(loss);
    if (threadIdx.x == 0) partial[blockIdx.x] = loss;
}

__global__ void xent_backward_kernel(float* dlogits, const float* dout, const float* probs, const float* labels,
                                     int N, int K) {
    float g = dout[0] / (float)N;
    CUDA_GRID_LOOP(i, (int64_t)N * K) {
        int n = (int)(i / K), k = (int)(i % K);
        int y = (int)labels[n];
        dlogits[i] += g * (probs[i] - (k == y ? 1.f : 0.f));
    }
}

void xent_forward(float* out, float* probs, const float* logits, const float* labels, int N, int K) {
    if (N <= 0) return fill(out, 1, NAN);  // the CPU's 0/0
    const int warps = BLOCK / 32;
    unsigned g = (unsigned)((N + warps - 1) / warps);
    if (g > (unsigned)REDUCE_BLOCKS) g = REDUCE_BLOCKS;
    xent_forward_kernel<<<g, BLOCK, 0, stream()>>>(reduce_scratch(), probs, logits, labels, N, K);
    CUDA_LAUNCH_CHECK();
    finish_sum(out, (int)g, 1.0, (double)N);
}

void xent_backward(float* dlogits, const float* dout, const float* probs, const float* labels, int N, int K) {
    if (N <= 0 || K <= 0) return;
    xent_backward_kernel<<<grid_for((int64_t)N * K), BLOCK, 0, stream()>>>(dlogits, dout, probs, labels, N, K);
    CUDA_LAUNCH_CHECK();
}

// ---- optimisers ------------------------------------------------------------------------------

// SGD with momentum and L2 weight decay (PyTorch's convention): v = mu v + (g + wd p); p -= lr v.
__global__ void sgd_update_kernel(float* p, const float* g, float* mom, int64_t n, float lr, float momentum,
                                  float wd) {
    CUDA_GRID_LOOP(i, n) {
        float gi = g[i] + wd * p[i];
        float m = momentum * mom[i] + gi;
        mom[i] = m;
        p[i] -= lr * m;
    }
}

// AdamW; c1, c2 = the bias corrections 1 - b^step, computed on the host as the CPU twin does.
__global__ void adam_update_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1,
                                   float b2, float eps, float wd, float c1, float c2) {
    CUDA_GRID_LOOP(i, n) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.f - b1) * gi;
        float vi = b2 * v[i] + (1.f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mh = mi / c1, vh = vi / c2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}

void sgd_update(float* p, const float* g, float* mom, int64_t n, float lr, float momentum, float wd) {
    if (n <= 0) return;
    sgd_update_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(p, g, mom, n, lr, momentum, wd);
    CUDA_LAUNCH_CHECK();
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                 float wd, int step) {
    if (n <= 0) return;
    float c1 = 1.f - std::pow(b1, (float)step), c2 = 1.f - std::pow(b2, (float)step);
    adam_update_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(p, g, m, v, n, lr, b1, b2, eps, wd, c1, c2);
    CUDA_LAUNCH_CHECK();
}

}  // namespace vt::cuda

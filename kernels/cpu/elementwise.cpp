// elementwise.cpp: CPU elementwise ops, activations, reductions, losses and optimiser steps.
// Loops are OpenMP-parallel above PAR_MIN elements (cpu.h).
#include <cmath>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fastmath.h"

namespace vt::cpu {


void fill(float* p, int64_t n, float v) {
#pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) p[i] = v;
}

void axpy(float* y, const float* x, int64_t n, float a) {
#pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void add(float* out, const float* a, const float* b, int64_t n, float alpha, float beta) {
#pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = alpha * a[i] + beta * b[i];
}

void mul(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

void mul_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n) {
    if (da) {
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) da[i] += dout[i] * b[i];
    }
    if (db) {
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) db[i] += dout[i] * a[i];
    }
}

void affine(float* out, const float* a, int64_t n, float scale, float shift) {
#pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = scale * a[i] + shift;
}

// ---- activations -----------------------------------------------------------------------

void act_forward(Act act, float* out, const float* inp, int64_t n) {
    switch (act) {
    case Act::ELU:
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float x = inp[i], e = fast_expm1_neg(x);
            out[i] = x > 0.f ? x : e;
        }
        break;
    case Act::ReLU:
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) out[i] = inp[i] > 0.f ? inp[i] : 0.f;
        break;
    case Act::Sigmoid:
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) out[i] = fast_sigmoid(inp[i]);
        break;
    case Act::Tanh:
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) out[i] = fast_tanh(inp[i]);
        break;
    }
}

// Derivatives written in terms of the output y: elu' = y > 0 ? 1 : y + 1; relu' = y > 0;
// sigmoid' = y (1 - y); tanh' = 1 - y^2.
void act_backward(Act act, float* dinp, const float* dout, const float* out, int64_t n) {
    switch (act) {
    case Act::ELU:
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] * (out[i] > 0.f ? 1.f : out[i] + 1.f);
        break;
    case Act::ReLU:
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) dinp[i] += out[i] > 0.f ? dout[i] : 0.f;
        break;
    case Act::Sigmoid:
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] * out[i] * (1.f - out[i]);
        break;
    case Act::Tanh:
#pragma omp parallel for simd if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] * (1.f - out[i] * out[i]);
        break;
    }
}

// ---- reductions and losses (accumulated in double) -------------------------------------

void sum(float* out, const float* inp, int64_t n, float scale) {
    double s = 0;
#pragma omp parallel for reduction(+ : s) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) s += inp[i];
    out[0] = (float)(s * scale);
}

void sum_backward(float* dinp, const float* dout, int64_t n, float scale) {
    float g = dout[0] * scale;
#pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) dinp[i] += g;
}

void mse_forward(float* out, const float* a, const float* b, int64_t n) {
    double s = 0;
#pragma omp parallel for reduction(+ : s) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        s += e * e;
    }
    out[0] = n ? (float)(s / n) : 0.f;
}

void mse_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n) {
    float g = n ? 2.f * dout[0] / n : 0.f;
#pragma omp parallel for if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float e = g * (a[i] - b[i]);
        if (da) da[i] += e;
        if (db) db[i] -= e;
    }
}

void xent_forward(float* out, float* probs, const float* logits, const float* labels, int N, int K) {
    double loss = 0;
#pragma omp parallel for reduction(+ : loss) if ((int64_t)N * K > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float* x = logits + (int64_t)n * K;
        float* p = probs + (int64_t)n * K;
        float mx = x[0];
        for (int k = 1; k < K; k++) mx = x[k] > mx ? x[k] : mx;
        double z = 0;
        for (int k = 0; k < K; k++) z += (p[k] = std::exp(x[k] - mx));
        for (int k = 0; k < K; k++) p[k] = (float)(p[k] / z);
        int y = (int)labels[n];
        loss += -((double)x[y] - mx - std::log(z));
    }
    out[0] = (float)(loss / N);
}

void xent_backward(float* dlogits, const float* dout, const float* probs, const float* labels, int N, int K) {
    float g = dout[0] / N;
#pragma omp parallel for if ((int64_t)N * K > PAR_MIN)
    for (int n = 0; n < N; n++) {
        int y = (int)labels[n];
        for (int k = 0; k < K; k++)
            dlogits[(int64_t)n * K + k] += g * (probs[(int64_t)n * K + k] - (k == y ? 1.f : 0.f));
    }
}

// ---- optimisers ------------------------------------------------------------------------

// SGD with momentum and L2 weight decay (PyTorch's convention): v = mu v + (g + wd p); p -= lr v.
void sgd_update(float* p, const float* g, float* mom, int64_t n, float lr, float momentum, float wd) {
#pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        mom[i] = momentum * mom[i] + gi;
        p[i] -= lr * mom[i];
    }
}

// Adam with decoupled weight decay (AdamW); step counts from 1.
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                 float eps, float wd, int step) {
    float c1 = 1.f - std::pow(b1, (float)step), c2 = 1.f - std::pow(b2, (float)step);
#pragma omp parallel for simd if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.f - b1) * g[i];
        v[i] = b2 * v[i] + (1.f - b2) * g[i] * g[i];
        float mh = m[i] / c1, vh = v[i] / c2;
        p[i] -= lr * (mh / (std::sqrt(vh) + eps) + wd * p[i]);
    }
}

}  // namespace vt::cpu

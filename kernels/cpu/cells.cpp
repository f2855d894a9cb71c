// cells.cpp: CPU fused recurrent-cell kernels and the per-channel scale (see kernels.h).
//
// Each cell kernel walks the (n, c, p) grid once: it reads the gate pre-activations of one
// unit, applies every nonlinearity and writes the new state. Backward recomputes the gates
// from the saved pre-activations (cheaper than storing them) and accumulates (+=) into each
// gradient it is given. This file is the reference the CUDA twins are tested against.
#include <cmath>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fastmath.h"

namespace vt::cpu {

static inline float sigm(float x) {
    return fast_sigmoid(x);
}
static inline float tanh_(float x) {
    return fast_tanh(x);
}

// Calls f(s, g, c) for every unit (n, c, p): s is its offset in a state (N, C, P), g the
// offset of its first gate in G (N, k*C, P) (gate j is at g + j*C*P), c its channel.
template <int k, class F>
static void for_each_unit(int N, int C, int64_t P, F f) {
#pragma omp parallel for collapse(2) if ((int64_t)N * C * P > 4096)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const int64_t s = ((int64_t)n * C + c) * P, g = ((int64_t)n * k * C + c) * P;
            for (int64_t p = 0; p < P; p++) f(s + p, g + p, c);
        }
}

void chan_scale_forward(float* out, const float* x, const float* a, int N, int C, int64_t P) {
    for_each_unit<1>(N, C, P, [&](int64_t s, int64_t gbase, int c_) { out[s] = x[s] * a[c_]; });
}

void chan_scale_backward(float* dx, float* da, const float* dout, const float* x, const float* a, int N, int C,
                         int64_t P) {
    if (dx) {
        for_each_unit<1>(N, C, P, [&](int64_t s, int64_t gbase, int c_) { dx[s] += dout[s] * a[c_]; });
    }
    if (da)
        for (int c = 0; c < C; c++) {
            double acc = 0;
            for (int n = 0; n < N; n++) {
                const int64_t o = ((int64_t)n * C + c) * P;
                for (int64_t p = 0; p < P; p++) acc += (double)dout[o + p] * x[o + p];
            }
            da[c] += (float)acc;
        }
}

// ---- lstm ------------------------------------------------------------------------------

void lstm_forward(float* c, float* h, const float* G, const float* c_prev, int N, int C, int64_t P) {
    const int64_t gstride = (int64_t)C * P;  // from one gate to the next in G
    for_each_unit<4>(N, C, P, [&](int64_t s, int64_t gbase, int c_) {
        float i = sigm(G[gbase]), j = tanh_(G[gbase + gstride]), f = sigm(G[gbase + 2 * gstride] + 1.f),
              o = sigm(G[gbase + 3 * gstride]);
        float cs = (c_prev ? c_prev[s] * f : 0.f) + i * j;
        c[s] = cs;
        h[s] = tanh_(cs) * o;
    });
}

void lstm_backward(float* dG, float* dc_prev, const float* dc, const float* dh, const float* G, const float* c_prev,
                   const float* c, int N, int C, int64_t P) {
    const int64_t gstride = (int64_t)C * P;  // from one gate to the next in G
    for_each_unit<4>(N, C, P, [&](int64_t s, int64_t gbase, int c_) {
        float i = sigm(G[gbase]), j = tanh_(G[gbase + gstride]), f = sigm(G[gbase + 2 * gstride] + 1.f),
              o = sigm(G[gbase + 3 * gstride]);
        float tc = tanh_(c[s]), cp = c_prev ? c_prev[s] : 0.f;
        float dct = dc[s] + dh[s] * o * (1.f - tc * tc);
        if (dG) {
            dG[gbase] += dct * j * i * (1.f - i);
            dG[gbase + gstride] += dct * i * (1.f - j * j);
            dG[gbase + 2 * gstride] += dct * cp * f * (1.f - f);
            dG[gbase + 3 * gstride] += dh[s] * tc * o * (1.f - o);
        }
        if (dc_prev) dc_prev[s] += dct * f;
    });
}

// ---- gru -------------------------------------------------------------------------------

void gru_gates_forward(float* rh, const float* G1, const float* h_prev, int N, int C, int64_t P) {
    for_each_unit<2>(
        N, C, P, [&](int64_t s, int64_t gbase, int c_) { rh[s] = h_prev ? sigm(G1[gbase] + 1.f) * h_prev[s] : 0.f; });
}

void gru_gates_backward(float* dG1, float* dh_prev, const float* drh, const float* G1, const float* h_prev, int N,
                        int C, int64_t P) {
    if (!h_prev) return;  // rh was identically zero
    for_each_unit<2>(N, C, P, [&](int64_t s, int64_t gbase, int c_) {
        float r = sigm(G1[gbase] + 1.f);
        if (dG1) dG1[gbase] += drh[s] * h_prev[s] * r * (1.f - r);
        if (dh_prev) dh_prev[s] += drh[s] * r;
    });
}

void gru_update_forward(float* h, const float* G1, const float* Gc, const float* h_prev, int N, int C, int64_t P) {
    const int64_t gstride = (int64_t)C * P;  // from one gate to the next in G
    for_each_unit<2>(N, C, P, [&](int64_t s, int64_t gbase, int c_) {
        float u = sigm(G1[gbase + gstride] + 1.f), cand = tanh_(Gc[s]);
        h[s] = (h_prev ? u * h_prev[s] : 0.f) + (1.f - u) * cand;
    });
}

void gru_update_backward(float* dG1, float* dGc, float* dh_prev, const float* dh, const float* G1, const float* Gc,
                         const float* h_prev, int N, int C, int64_t P) {
    const int64_t gstride = (int64_t)C * P;  // from one gate to the next in G
    for_each_unit<2>(N, C, P, [&](int64_t s, int64_t gbase, int c_) {
        float u = sigm(G1[gbase + gstride] + 1.f), cand = tanh_(Gc[s]), hp = h_prev ? h_prev[s] : 0.f;
        if (dG1) dG1[gbase + gstride] += dh[s] * (hp - cand) * u * (1.f - u);
        if (dGc) dGc[s] += dh[s] * (1.f - u) * (1.f - cand * cand);
        if (dh_prev) dh_prev[s] += dh[s] * u;
    });
}

// ---- ugrnn -----------------------------------------------------------------------------

void ugrnn_forward(float* h, const float* G, const float* h_prev, int N, int C, int64_t P) {
    const int64_t gstride = (int64_t)C * P;  // from one gate to the next in G
    for_each_unit<2>(N, C, P, [&](int64_t s, int64_t gbase, int c_) {
        float g = sigm(G[gbase] + 1.f), m = tanh_(G[gbase + gstride]);
        h[s] = (h_prev ? g * h_prev[s] : 0.f) + (1.f - g) * m;
    });
}

void ugrnn_backward(float* dG, float* dh_prev, const float* dh, const float* G, const float* h_prev, int N, int C,
                    int64_t P) {
    const int64_t gstride = (int64_t)C * P;  // from one gate to the next in G
    for_each_unit<2>(N, C, P, [&](int64_t s, int64_t gbase, int c_) {
        float g = sigm(G[gbase] + 1.f), m = tanh_(G[gbase + gstride]), hp = h_prev ? h_prev[s] : 0.f;
        if (dG) {
            dG[gbase] += dh[s] * (hp - m) * g * (1.f - g);
            dG[gbase + gstride] += dh[s] * (1.f - g) * (1.f - m * m);
        }
        if (dh_prev) dh_prev[s] += dh[s] * g;
    });
}

// ---- rgc: the gates, before the ELUs ----------------------------------------------------

void rgc_gates_forward(float* pc, float* ph, const float* A, const float* B, const float* Xc, const float* x,
                       const float* c_prev, const float* h_prev, int N, int C, int64_t P) {
    const int64_t gstride = (int64_t)C * P;  // from one gate to the next in G
    for_each_unit<2>(N, C, P, [&](int64_t s, int64_t gbase, int c_) {
        float cp = c_prev ? c_prev[s] : 0.f, hp = h_prev ? h_prev[s] : 0.f;
        float sa = sigm(A[gbase]), sgh = sigm(A[gbase + gstride]);
        float sgc = sigm(B[gbase]), sth = sigm(B[gbase + gstride]);
        pc[s] = (1.f - sa) * cp + (1.f - sgc) * Xc[s];
        ph[s] = (1.f - sth) * hp + (1.f - sgh) * x[s];
    });
}

void rgc_gates_backward(float* dA, float* dB, float* dXc, float* dx, float* dc_prev, float* dh_prev, const float* dpc,
                        const float* dph, const float* A, const float* B, const float* Xc, const float* x,
                        const float* c_prev, const float* h_prev, int N, int C, int64_t P) {
    const int64_t gstride = (int64_t)C * P;  // from one gate to the next in G
    for_each_unit<2>(N, C, P, [&](int64_t s, int64_t gbase, int c_) {
        float cp = c_prev ? c_prev[s] : 0.f, hp = h_prev ? h_prev[s] : 0.f;
        float sa = sigm(A[gbase]), sgh = sigm(A[gbase + gstride]);
        float sgc = sigm(B[gbase]), sth = sigm(B[gbase + gstride]);
        float gc = dpc[s], gh = dph[s];
        if (dA) {
            dA[gbase] += -gc * cp * sa * (1.f - sa);
            dA[gbase + gstride] += -gh * x[s] * sgh * (1.f - sgh);
        }
        if (dB) {
            dB[gbase] += -gc * Xc[s] * sgc * (1.f - sgc);
            dB[gbase + gstride] += -gh * hp * sth * (1.f - sth);
        }
        if (dXc) dXc[s] += gc * (1.f - sgc);
        if (dx) dx[s] += gh * (1.f - sgh);
        if (dc_prev) dc_prev[s] += gc * (1.f - sa);
        if (dh_prev) dh_prev[s] += gh * (1.f - sth);
    });
}

}  // namespace vt::cpu

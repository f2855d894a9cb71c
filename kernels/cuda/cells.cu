// cells.cu: CUDA fused recurrent-cell kernels and the per-channel scale; twin of
// kernels/cpu/cells.cpp (same formulas; see kernels.h for the cells' equations and layouts).
//
// One thread per unit (n, c, p): it reads the unit's gate pre-activations from G (N, k*C, P),
// applies every nonlinearity and writes the state, in one pass over memory. Backward
// recomputes the gates from the saved pre-activations and accumulates (+=). Null previous
// states mean zero; null gradients are not written.
#include "kernels/cuda/internal.cuh"

namespace vt::cuda {

// Unit i of a (N, C, P) state: s = its offset in the state, g = the offset of its gate 0 in
// G (N, k*C, P), gs = the distance between its gates, c = its channel.
struct Unit {
    int64_t s, g, gs;
    int c;
};

__device__ inline Unit unit_at(int64_t i, int k, int C, int64_t P) {
    int64_t p = i % P, t = i / P;
    int c = (int)(t % C);
    int64_t n = t / C;
    return {i, (n * k * C + c) * P + p, (int64_t)C * P, c};
}

__device__ inline float sigm(float x) { return 1.f / (1.f + expf(-x)); }

// ---- per-channel scale -----------------------------------------------------------------------

__global__ void chan_scale_forward_kernel(float* out, const float* x, const float* a, int N, int C, int64_t P) {
    CUDA_GRID_LOOP(i, (int64_t)N * C * P) out[i] = x[i] * a[i / P % C];
}

__global__ void chan_scale_dx_kernel(float* dx, const float* dout, const float* a, int N, int C, int64_t P) {
    CUDA_GRID_LOOP(i, (int64_t)N * C * P) dx[i] += dout[i] * a[i / P % C];
}

// One block per channel: da[c] += sum over (n, p) of dout * x, in double.
__global__ void chan_scale_da_kernel(float* da, const float* dout, const float* x, int N, int C, int64_t P) {
    const int c = blockIdx.x;
    double acc = 0;
    for (int64_t j = threadIdx.x; j < N * P; j += blockDim.x) {
        int64_t o = (j / P * C + c) * P + j % P;
        acc += (double)dout[o] * x[o];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) da[c] += (float)acc;
}

void chan_scale_forward(float* out, const float* x, const float* a, int N, int C, int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (n <= 0) return;
    chan_scale_forward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(out, x, a, N, C, P);
    CUDA_LAUNCH_CHECK();
}

void chan_scale_backward(float* dx, float* da, const float* dout, const float* x, const float* a, int N, int C,
                         int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (dx && n > 0) {
        chan_scale_dx_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dx, dout, a, N, C, P);
        CUDA_LAUNCH_CHECK();
    }
    if (da && C > 0) {
        chan_scale_da_kernel<<<C, BLOCK, 0, stream()>>>(da, dout, x, N, C, P);
        CUDA_LAUNCH_CHECK();
    }
}

// ---- lstm: G = [i, j, f, o] --------------------------------------------------------------------

__global__ void lstm_forward_kernel(float* c, float* h, const float* G, const float* c_prev, int N, int C,
                                    int64_t P) {
    CUDA_GRID_LOOP(t, (int64_t)N * C * P) {
        Unit u = unit_at(t, 4, C, P);
        float i = sigm(G[u.g]), j = tanhf(G[u.g + u.gs]);
        float f = sigm(G[u.g + 2 * u.gs] + 1.f), o = sigm(G[u.g + 3 * u.gs]);
        float cs = (c_prev ? c_prev[u.s] * f : 0.f) + i * j;
        c[u.s] = cs;
        h[u.s] = tanhf(cs) * o;
    }
}

__global__ void lstm_backward_kernel(float* dG, float* dc_prev, const float* dc, const float* dh, const float* G,
                                     const float* c_prev, const float* c, int N, int C, int64_t P) {
    CUDA_GRID_LOOP(t, (int64_t)N * C * P) {
        Unit u = unit_at(t, 4, C, P);
        float i = sigm(G[u.g]), j = tanhf(G[u.g + u.gs]);
        float f = sigm(G[u.g + 2 * u.gs] + 1.f), o = sigm(G[u.g + 3 * u.gs]);
        float tc = tanhf(c[u.s]), cp = c_prev ? c_prev[u.s] : 0.f;
        float dct = dc[u.s] + dh[u.s] * o * (1.f - tc * tc);
        if (dG) {
            dG[u.g] += dct * j * i * (1.f - i);
            dG[u.g + u.gs] += dct * i * (1.f - j * j);
            dG[u.g + 2 * u.gs] += dct * cp * f * (1.f - f);
            dG[u.g + 3 * u.gs] += dh[u.s] * tc * o * (1.f - o);
        }
        if (dc_prev) dc_prev[u.s] += dct * f;
    }
}

void lstm_forward(float* c, float* h, const float* G, const float* c_prev, int N, int C, int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (n <= 0) return;
    lstm_forward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(c, h, G, c_prev, N, C, P);
    CUDA_LAUNCH_CHECK();
}

void lstm_backward(float* dG, float* dc_prev, const float* dc, const float* dh, const float* G, const float* c_prev,
                   const float* c, int N, int C, int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (n <= 0 || (!dG && !dc_prev)) return;
    lstm_backward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dG, dc_prev, dc, dh, G, c_prev, c, N, C, P);
    CUDA_LAUNCH_CHECK();
}

// ---- gru: G1 = [r, u], Gc the candidate pre-activation ---------------------------------------

__global__ void gru_gates_forward_kernel(float* rh, const float* G1, const float* h_prev, int N, int C, int64_t P) {
    CUDA_GRID_LOOP(t, (int64_t)N * C * P) {
        Unit u = unit_at(t, 2, C, P);
        rh[u.s] = h_prev ? sigm(G1[u.g] + 1.f) * h_prev[u.s] : 0.f;
    }
}

__global__ void gru_gates_backward_kernel(float* dG1, float* dh_prev, const float* drh, const float* G1,
                                          const float* h_prev, int N, int C, int64_t P) {
    CUDA_GRID_LOOP(t, (int64_t)N * C * P) {
        Unit u = unit_at(t, 2, C, P);
        float r = sigm(G1[u.g] + 1.f);
        if (dG1) dG1[u.g] += drh[u.s] * h_prev[u.s] * r * (1.f - r);
        if (dh_prev) dh_prev[u.s] += drh[u.s] * r;
    }
}

__global__ void gru_update_forward_kernel(float* h, const float* G1, const float* Gc, const float* h_prev, int N,
                                          int C, int64_t P) {
    CUDA_GRID_LOOP(t, (int64_t)N * C * P) {
        Unit u = unit_at(t, 2, C, P);
        float z = sigm(G1[u.g + u.gs] + 1.f), cand = tanhf(Gc[u.s]);
        h[u.s] = (h_prev ? z * h_prev[u.s] : 0.f) + (1.f - z) * cand;
    }
}

__global__ void gru_update_backward_kernel(float* dG1, float* dGc, float* dh_prev, const float* dh, const float* G1,
                                           const float* Gc, const float* h_prev, int N, int C, int64_t P) {
    CUDA_GRID_LOOP(t, (int64_t)N * C * P) {
        Unit u = unit_at(t, 2, C, P);
        float z = sigm(G1[u.g + u.gs] + 1.f), cand = tanhf(Gc[u.s]), hp = h_prev ? h_prev[u.s] : 0.f;
        if (dG1) dG1[u.g + u.gs] += dh[u.s] * (hp - cand) * z * (1.f - z);
        if (dGc) dGc[u.s] += dh[u.s] * (1.f - z) * (1.f - cand * cand);
        if (dh_prev) dh_prev[u.s] += dh[u.s] * z;
    }
}

void gru_gates_forward(float* rh, const float* G1, const float* h_prev, int N, int C, int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (n <= 0) return;
    gru_gates_forward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(rh, G1, h_prev, N, C, P);
    CUDA_LAUNCH_CHECK();
}

void gru_gates_backward(float* dG1, float* dh_prev, const float* drh, const float* G1, const float* h_prev, int N,
                        int C, int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (!h_prev || n <= 0 || (!dG1 && !dh_prev)) return;  // no h_prev: rh was identically zero
    gru_gates_backward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dG1, dh_prev, drh, G1, h_prev, N, C, P);
    CUDA_LAUNCH_CHECK();
}

void gru_update_forward(float* h, const float* G1, const float* Gc, const float* h_prev, int N, int C, int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (n <= 0) return;
    gru_update_forward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(h, G1, Gc, h_prev, N, C, P);
    CUDA_LAUNCH_CHECK();
}

void gru_update_backward(float* dG1, float* dGc, float* dh_prev, const float* dh, const float* G1, const float* Gc,
                         const float* h_prev, int N, int C, int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (n <= 0 || (!dG1 && !dGc && !dh_prev)) return;
    gru_update_backward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dG1, dGc, dh_prev, dh, G1, Gc, h_prev, N, C, P);
    CUDA_LAUNCH_CHECK();
}

// ---- ugrnn: G = [g, m] -------------------------------------------------------------------------

__global__ void ugrnn_forward_kernel(float* h, const float* G, const float* h_prev, int N, int C, int64_t P) {
    CUDA_GRID_LOOP(t, (int64_t)N * C * P) {
        Unit u = unit_at(t, 2, C, P);
        float g = sigm(G[u.g] + 1.f), m = tanhf(G[u.g + u.gs]);
        h[u.s] = (h_prev ? g * h_prev[u.s] : 0.f) + (1.f - g) * m;
    }
}

__global__ void ugrnn_backward_kernel(float* dG, float* dh_prev, const float* dh, const float* G, const float* h_prev,
                                      int N, int C, int64_t P) {
    CUDA_GRID_LOOP(t, (int64_t)N * C * P) {
        Unit u = unit_at(t, 2, C, P);
        float g = sigm(G[u.g] + 1.f), m = tanhf(G[u.g + u.gs]), hp = h_prev ? h_prev[u.s] : 0.f;
        if (dG) {
            dG[u.g] += dh[u.s] * (hp - m) * g * (1.f - g);
            dG[u.g + u.gs] += dh[u.s] * (1.f - g) * (1.f - m * m);
        }
        if (dh_prev) dh_prev[u.s] += dh[u.s] * g;
    }
}

void ugrnn_forward(float* h, const float* G, const float* h_prev, int N, int C, int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (n <= 0) return;
    ugrnn_forward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(h, G, h_prev, N, C, P);
    CUDA_LAUNCH_CHECK();
}

void ugrnn_backward(float* dG, float* dh_prev, const float* dh, const float* G, const float* h_prev, int N, int C,
                    int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (n <= 0 || (!dG && !dh_prev)) return;
    ugrnn_backward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dG, dh_prev, dh, G, h_prev, N, C, P);
    CUDA_LAUNCH_CHECK();
}

// ---- rgc: A = [tc, gh], B = [gc, th]; the gates, before the ELUs ----------------------------

__global__ void rgc_gates_forward_kernel(float* pc, float* ph, const float* A, const float* B, const float* Xc,
                                         const float* x, const float* c_prev, const float* h_prev, int N, int C,
                                         int64_t P) {
    CUDA_GRID_LOOP(t, (int64_t)N * C * P) {
        Unit u = unit_at(t, 2, C, P);
        float cp = c_prev ? c_prev[u.s] : 0.f, hp = h_prev ? h_prev[u.s] : 0.f;
        float sa = sigm(A[u.g]), sgh = sigm(A[u.g + u.gs]);
        float sgc = sigm(B[u.g]), sth = sigm(B[u.g + u.gs]);
        pc[u.s] = (1.f - sa) * cp + (1.f - sgc) * Xc[u.s];
        ph[u.s] = (1.f - sth) * hp + (1.f - sgh) * x[u.s];
    }
}

__global__ void rgc_gates_backward_kernel(float* dA, float* dB, float* dXc, float* dx, float* dc_prev,
                                          float* dh_prev, const float* dpc, const float* dph, const float* A,
                                          const float* B, const float* Xc, const float* x, const float* c_prev,
                                          const float* h_prev, int N, int C, int64_t P) {
    CUDA_GRID_LOOP(t, (int64_t)N * C * P) {
        Unit u = unit_at(t, 2, C, P);
        float cp = c_prev ? c_prev[u.s] : 0.f, hp = h_prev ? h_prev[u.s] : 0.f;
        float sa = sigm(A[u.g]), sgh = sigm(A[u.g + u.gs]);
        float sgc = sigm(B[u.g]), sth = sigm(B[u.g + u.gs]);
        float gc = dpc[u.s], gh = dph[u.s];
        if (dA) {
            dA[u.g] += -gc * cp * sa * (1.f - sa);
            dA[u.g + u.gs] += -gh * x[u.s] * sgh * (1.f - sgh);
        }
        if (dB) {
            dB[u.g] += -gc * Xc[u.s] * sgc * (1.f - sgc);
            dB[u.g + u.gs] += -gh * hp * sth * (1.f - sth);
        }
        if (dXc) dXc[u.s] += gc * (1.f - sgc);
        if (dx) dx[u.s] += gh * (1.f - sgh);
        if (dc_prev) dc_prev[u.s] += gc * (1.f - sa);
        if (dh_prev) dh_prev[u.s] += gh * (1.f - sth);
    }
}

void rgc_gates_forward(float* pc, float* ph, const float* A, const float* B, const float* Xc, const float* x,
                       const float* c_prev, const float* h_prev, int N, int C, int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (n <= 0) return;
    rgc_gates_forward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(pc, ph, A, B, Xc, x, c_prev, h_prev, N, C, P);
    CUDA_LAUNCH_CHECK();
}

void rgc_gates_backward(float* dA, float* dB, float* dXc, float* dx, float* dc_prev, float* dh_prev, const float* dpc,
                        const float* dph, const float* A, const float* B, const float* Xc, const float* x,
                        const float* c_prev, const float* h_prev, int N, int C, int64_t P) {
    int64_t n = (int64_t)N * C * P;
    if (n <= 0 || (!dA && !dB && !dXc && !dx && !dc_prev && !dh_prev)) return;
    rgc_gates_backward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dA, dB, dXc, dx, dc_prev, dh_prev, dpc, dph, A, B,
                                                                   Xc, x, c_prev, h_prev, N, C, P);
    CUDA_LAUNCH_CHECK();
}

}  // namespace vt::cuda

// cells.cpp: CPU fused recurrent-cell kernels and the per-channel scale (see kernels.h).
//
// Each cell kernel walks the (n, c, p) grid once: it reads the gate pre-activations of one
// unit, applies every nonlinearity and writes the new state. Backward recomputes the gates
// from the saved pre-activations (cheaper than storing them) and accumulates (+=) into each
// gradient it is given. This file is the reference the CUDA twins are tested against.
//
// Vectorised: each row of P units is one `omp simd` loop (outputs never alias inputs), and a
// kernel's optional inputs (a null previous state is zero) are resolved before the loop as
// compile-time flags (with_flags), so the loop body does not branch. A per-unit lambda over
// pointers captured by reference, with `prev ? prev[s] : 0` inside, ran scalar: 5x slower.
#include <cmath>
#include <type_traits>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fastmath.h"

namespace vt::cpu {

VT_INLINE static float sigm(float x) { return fast_sigmoid(x); }
VT_INLINE static float tanh_(float x) { return fast_tanh(x); }

// Calls row(s, g, c) for every row (n, c) of P units: s is the row's offset in a state
// (N, C, P), g the offset of its first gate in G (N, k*C, P) (gate j is at g + j*C*P), c its
// channel. row runs its own `omp simd` loop over p.
template <int k, class Row>
static void for_each_row(int N, int C, int64_t P, Row row) {
#pragma omp parallel for collapse(2) if ((int64_t)N * C * P > 4096)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) row(((int64_t)n * C + c) * P, ((int64_t)n * k * C + c) * P, c);
}

// f(std::bool_constant<a>{}, std::bool_constant<b>{}, ...): run-time flags (is this optional
// input given?) as compile-time ones, so that each combination gets its own branch-free loop.
template <class F>
static void with_flags(F f) { f(); }
template <class F, class... B>
static void with_flags(F f, bool a, B... rest) {
    if (a) with_flags([&](auto... k) { f(std::true_type{}, k...); }, rest...);
    else with_flags([&](auto... k) { f(std::false_type{}, k...); }, rest...);
}
#define VT_FLAG(x) decltype(x)::value  // the bool of a with_flags argument, as a constant expression

// The row of an optional tensor (null stays null: no arithmetic on a null pointer).
static inline const float* row_of(const float* t, int64_t s) { return t ? t + s : nullptr; }
static inline float* row_of(float* t, int64_t s) { return t ? t + s : nullptr; }

void chan_scale_forward(float* out, const float* x, const float* a, int N, int C, int64_t P) {
    for_each_row<1>(N, C, P, [=](int64_t s, int64_t, int c) {
        const float ac = a[c];
#pragma omp simd
        for (int64_t p = 0; p < P; p++) out[s + p] = x[s + p] * ac;
    });
}

void chan_scale_backward(float* dx, float* da, const float* dout, const float* x, const float* a, int N, int C,
                         int64_t P) {
    if (dx)
        for_each_row<1>(N, C, P, [=](int64_t s, int64_t, int c) {
            const float ac = a[c];
#pragma omp simd
            for (int64_t p = 0; p < P; p++) dx[s + p] += dout[s + p] * ac;
        });
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
    const int64_t gs = (int64_t)C * P;  // from one gate to the next in G
    with_flags([=](auto has_prev) {
        for_each_row<4>(N, C, P, [=](int64_t s, int64_t g, int) {
            const float *gi = G + g, *gj = gi + gs, *gf = gj + gs, *go = gf + gs, *cp = row_of(c_prev, s);
            float *cr = c + s, *hr = h + s;
#pragma omp simd
            for (int64_t p = 0; p < P; p++) {
                float i = sigm(gi[p]), j = tanh_(gj[p]), f = sigm(gf[p] + 1.f), o = sigm(go[p]);
                float cs = i * j;
                if constexpr (VT_FLAG(has_prev)) cs += cp[p] * f;
                cr[p] = cs;
                hr[p] = tanh_(cs) * o;
            }
        });
    }, c_prev != nullptr);
}

void lstm_backward(float* dG, float* dc_prev, const float* dc, const float* dh, const float* G, const float* c_prev,
                   const float* c, int N, int C, int64_t P) {
    const int64_t gs = (int64_t)C * P;  // from one gate to the next in G
    with_flags([=](auto has_prev, auto want_dG, auto want_dc_prev) {
        for_each_row<4>(N, C, P, [=](int64_t s, int64_t g, int) {
            const float *gi = G + g, *gj = gi + gs, *gf = gj + gs, *go = gf + gs, *cp = row_of(c_prev, s);
            const float *cr = c + s, *dcr = dc + s, *dhr = dh + s;
            float *dgi = row_of(dG, g), *dcp = row_of(dc_prev, s);
#pragma omp simd
            for (int64_t p = 0; p < P; p++) {
                float i = sigm(gi[p]), j = tanh_(gj[p]), f = sigm(gf[p] + 1.f), o = sigm(go[p]);
                float tc = tanh_(cr[p]), prev = 0.f;
                if constexpr (VT_FLAG(has_prev)) prev = cp[p];
                float dct = dcr[p] + dhr[p] * o * (1.f - tc * tc);
                if constexpr (VT_FLAG(want_dG)) {
                    dgi[p] += dct * j * i * (1.f - i);
                    dgi[p + gs] += dct * i * (1.f - j * j);
                    dgi[p + 2 * gs] += dct * prev * f * (1.f - f);
                    dgi[p + 3 * gs] += dhr[p] * tc * o * (1.f - o);
                }
                if constexpr (VT_FLAG(want_dc_prev)) dcp[p] += dct * f;
            }
        });
    }, c_prev != nullptr, dG != nullptr, dc_prev != nullptr);
}

// ---- gru -------------------------------------------------------------------------------

void gru_gates_forward(float* rh, const float* G1, const float* h_prev, int N, int C, int64_t P) {
    for_each_row<2>(N, C, P, [=](int64_t s, int64_t g, int) {
        const float *gr = G1 + g, *hp = row_of(h_prev, s);
        float* out = rh + s;
        if (!hp) {
            for (int64_t p = 0; p < P; p++) out[p] = 0.f;
            return;
        }
#pragma omp simd
        for (int64_t p = 0; p < P; p++) out[p] = sigm(gr[p] + 1.f) * hp[p];
    });
}

void gru_gates_backward(float* dG1, float* dh_prev, const float* drh, const float* G1, const float* h_prev, int N,
                        int C, int64_t P) {
    if (!h_prev) return;  // rh was identically zero
    with_flags([=](auto want_dG1, auto want_dh_prev) {
        for_each_row<2>(N, C, P, [=](int64_t s, int64_t g, int) {
            const float *gr = G1 + g, *hp = h_prev + s, *d = drh + s;
            float *dgr = row_of(dG1, g), *dhp = row_of(dh_prev, s);
#pragma omp simd
            for (int64_t p = 0; p < P; p++) {
                float r = sigm(gr[p] + 1.f);
                if constexpr (VT_FLAG(want_dG1)) dgr[p] += d[p] * hp[p] * r * (1.f - r);
                if constexpr (VT_FLAG(want_dh_prev)) dhp[p] += d[p] * r;
            }
        });
    }, dG1 != nullptr, dh_prev != nullptr);
}

// The update gru and ugrnn share: h = k h_prev + (1 - k) tanh(m), k = s(gate + 1) (the keep
// gate), m the candidate. gate(s, g) and cand(s, g) give a row's gate and candidate (their
// gradients: dgate, dcand), which sit in different places in the two cells.
template <int k, class Gate, class Cand>
static void keep_blend_forward(float* h, const float* h_prev, int N, int C, int64_t P, Gate gate, Cand cand) {
    with_flags([=](auto has_prev) {
        for_each_row<k>(N, C, P, [=](int64_t s, int64_t g, int) {
            const float *gk = gate(s, g), *gm = cand(s, g), *hp = row_of(h_prev, s);
            float* hr = h + s;
#pragma omp simd
            for (int64_t p = 0; p < P; p++) {
                float keep = sigm(gk[p] + 1.f), m = tanh_(gm[p]), prev = 0.f;
                if constexpr (VT_FLAG(has_prev)) prev = hp[p];
                hr[p] = keep * prev + (1.f - keep) * m;
            }
        });
    }, h_prev != nullptr);
}

// dgate / dcand are wanted when their tensors are given (the rows they return are then non-null).
template <int k, class Gate, class Cand, class DGate, class DCand>
static void keep_blend_backward(float* dh_prev, const float* dh, const float* h_prev, int N, int C, int64_t P,
                                Gate gate, Cand cand, bool want_gate, DGate dgate, bool want_cand, DCand dcand) {
    with_flags([=](auto has_prev, auto want_dgate, auto want_dcand, auto want_dh_prev) {
        for_each_row<k>(N, C, P, [=](int64_t s, int64_t g, int) {
            const float *gk = gate(s, g), *gm = cand(s, g), *hp = row_of(h_prev, s), *d = dh + s;
            float *dgk = dgate(s, g), *dgm = dcand(s, g), *dhp = row_of(dh_prev, s);
#pragma omp simd
            for (int64_t p = 0; p < P; p++) {
                float keep = sigm(gk[p] + 1.f), m = tanh_(gm[p]), prev = 0.f;
                if constexpr (VT_FLAG(has_prev)) prev = hp[p];
                if constexpr (VT_FLAG(want_dgate)) dgk[p] += d[p] * (prev - m) * keep * (1.f - keep);
                if constexpr (VT_FLAG(want_dcand)) dgm[p] += d[p] * (1.f - keep) * (1.f - m * m);
                if constexpr (VT_FLAG(want_dh_prev)) dhp[p] += d[p] * keep;
            }
        });
    }, h_prev != nullptr, want_gate, want_cand, dh_prev != nullptr);
}

// gru's update: the keep gate u is G1's second gate, the candidate Gc a state-shaped tensor.
void gru_update_forward(float* h, const float* G1, const float* Gc, const float* h_prev, int N, int C, int64_t P) {
    const int64_t gs = (int64_t)C * P;  // from one gate to the next in G
    keep_blend_forward<2>(h, h_prev, N, C, P, [=](int64_t, int64_t g) { return G1 + g + gs; },
                          [=](int64_t s, int64_t) { return Gc + s; });
}

void gru_update_backward(float* dG1, float* dGc, float* dh_prev, const float* dh, const float* G1, const float* Gc,
                         const float* h_prev, int N, int C, int64_t P) {
    const int64_t gs = (int64_t)C * P;
    keep_blend_backward<2>(dh_prev, dh, h_prev, N, C, P, [=](int64_t, int64_t g) { return G1 + g + gs; },
                           [=](int64_t s, int64_t) { return Gc + s; }, dG1 != nullptr,
                           [=](int64_t, int64_t g) { return row_of(dG1, g + gs); }, dGc != nullptr,
                           [=](int64_t s, int64_t) { return row_of(dGc, s); });
}

// ---- ugrnn -----------------------------------------------------------------------------
// G = [g, m]: the keep gate and the candidate, one after the other.

void ugrnn_forward(float* h, const float* G, const float* h_prev, int N, int C, int64_t P) {
    const int64_t gs = (int64_t)C * P;
    keep_blend_forward<2>(h, h_prev, N, C, P, [=](int64_t, int64_t g) { return G + g; },
                          [=](int64_t, int64_t g) { return G + g + gs; });
}

void ugrnn_backward(float* dG, float* dh_prev, const float* dh, const float* G, const float* h_prev, int N, int C,
                    int64_t P) {
    const int64_t gs = (int64_t)C * P;
    keep_blend_backward<2>(dh_prev, dh, h_prev, N, C, P, [=](int64_t, int64_t g) { return G + g; },
                           [=](int64_t, int64_t g) { return G + g + gs; }, dG != nullptr,
                           [=](int64_t, int64_t g) { return row_of(dG, g); }, dG != nullptr,
                           [=](int64_t, int64_t g) { return row_of(dG, g + gs); });
}

// ---- rgc: the gates, before the ELUs ----------------------------------------------------

void rgc_gates_forward(float* pc, float* ph, const float* A, const float* B, const float* Xc, const float* x,
                       const float* c_prev, const float* h_prev, int N, int C, int64_t P) {
    const int64_t gs = (int64_t)C * P;  // from one gate to the next in G
    with_flags([=](auto has_c, auto has_h) {
        for_each_row<2>(N, C, P, [=](int64_t s, int64_t g, int) {
            const float *tc = A + g, *gh = tc + gs, *gc = B + g, *th = gc + gs, *xc = Xc + s, *xr = x + s;
            const float *cp = row_of(c_prev, s), *hp = row_of(h_prev, s);
            float *pcr = pc + s, *phr = ph + s;
#pragma omp simd
            for (int64_t p = 0; p < P; p++) {
                float c0 = 0.f, h0 = 0.f;
                if constexpr (VT_FLAG(has_c)) c0 = cp[p];
                if constexpr (VT_FLAG(has_h)) h0 = hp[p];
                pcr[p] = (1.f - sigm(tc[p])) * c0 + (1.f - sigm(gc[p])) * xc[p];
                phr[p] = (1.f - sigm(th[p])) * h0 + (1.f - sigm(gh[p])) * xr[p];
            }
        });
    }, c_prev != nullptr, h_prev != nullptr);
}

// Six optional gradients: the previous states' as flags, the others (given together whenever
// the cell trains) as branches on loop-invariant pointers, which the vectoriser turns into
// masked stores.
void rgc_gates_backward(float* dA, float* dB, float* dXc, float* dx, float* dc_prev, float* dh_prev, const float* dpc,
                        const float* dph, const float* A, const float* B, const float* Xc, const float* x,
                        const float* c_prev, const float* h_prev, int N, int C, int64_t P) {
    const int64_t gs = (int64_t)C * P;  // from one gate to the next in G
    with_flags([=](auto has_c, auto has_h, auto want_dc, auto want_dh) {
        for_each_row<2>(N, C, P, [=](int64_t s, int64_t g, int) {
            const float *tc = A + g, *gh = tc + gs, *gc = B + g, *th = gc + gs, *xc = Xc + s, *xr = x + s;
            const float *cp = row_of(c_prev, s), *hp = row_of(h_prev, s), *dc = dpc + s, *dh = dph + s;
            float *dAr = row_of(dA, g), *dBr = row_of(dB, g), *dXr = row_of(dXc, s), *dxr = row_of(dx, s);
            float *dcp = row_of(dc_prev, s), *dhp = row_of(dh_prev, s);
#pragma omp simd
            for (int64_t p = 0; p < P; p++) {
                float c0 = 0.f, h0 = 0.f;
                if constexpr (VT_FLAG(has_c)) c0 = cp[p];
                if constexpr (VT_FLAG(has_h)) h0 = hp[p];
                float sa = sigm(tc[p]), sgh = sigm(gh[p]), sgc = sigm(gc[p]), sth = sigm(th[p]);
                float gcp = dc[p], ghp = dh[p];
                if (dAr) {
                    dAr[p] += -gcp * c0 * sa * (1.f - sa);
                    dAr[p + gs] += -ghp * xr[p] * sgh * (1.f - sgh);
                }
                if (dBr) {
                    dBr[p] += -gcp * xc[p] * sgc * (1.f - sgc);
                    dBr[p + gs] += -ghp * h0 * sth * (1.f - sth);
                }
                if (dXr) dXr[p] += gcp * (1.f - sgc);
                if (dxr) dxr[p] += ghp * (1.f - sgh);
                if constexpr (VT_FLAG(want_dc)) dcp[p] += gcp * (1.f - sa);
                if constexpr (VT_FLAG(want_dh)) dhp[p] += ghp * (1.f - sth);
            }
        });
    }, c_prev != nullptr, h_prev != nullptr, dc_prev != nullptr, dh_prev != nullptr);
}

}  // namespace vt::cpu

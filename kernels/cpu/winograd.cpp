// winograd.cpp: 3x3 stride-1 convolution as Winograd F(m x m, 3x3), m = 2 or 4 (Lavin & Gray,
// 2016), built on OpenBLAS's GEMM.
//
// Each m x m block of outputs ("tile") is computed from the a x a block of input around it
// (a = m + 2) with a^2 multiplies per (input channel, output channel) instead of 9 m^2
// (F(2x2): 16 for 36; F(4x4): 36 for 144):
//   Y = A^T [ (G g G^T) . (B^T d B) ] A     (. elementwise; g the 3x3 kernel, d the a x a input)
// with the matrices of Wino<m> below (points 0, +-1 for m = 2; 0, +-1, +-2 for m = 4).
// Summed over input channels, each of the a^2 positions xi of the transform is one GEMM:
//   U (a^2, OC, C)  the transformed weights, U[xi] = (G g G^T)[xi]
//   V (a^2, C, T)   the transformed input tiles, t = (n, th, tw), T = N ceil(OH/m) ceil(OW/m)
//   M (a^2, OC, T)  M[xi] = U[xi] @ V[xi], then the output transform A^T M A (+ bias)
// Backward is the exact adjoint of that linear pipeline (so gradient checks see the gradient
// of the function computed): dM = A dY A^T, dU[xi] = dM[xi] @ V[xi]^T -> dW += G^T dU G, and
// dV[xi] = U[xi]^T @ dM[xi] -> dX += B dV B^T (tiles overlap by 2 in the input). Tiles past
// the output's edge read zeros (the padding) and their outputs are dropped. The result
// differs from the direct convolution by rounding: F(2x2) about as much as im2col, F(4x4)
// (coefficients up to 8 and 1/24) ~10x more, normwise (tests/test_ops.cpp, README).
#include <cstddef>
#include <vector>

#include "kernels/cpu/cpu.h"

namespace vt::cpu {

template <int m>
struct Wino;
template <>
struct Wino<2> {
    static constexpr int a = 4;
    static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
    static constexpr float G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
    static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};
template <>
struct Wino<4> {
    static constexpr int a = 6;
    static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                       {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
    static constexpr float G[6][3] = {{1.f / 4, 0, 0},           {-1.f / 6, -1.f / 6, -1.f / 6},
                                      {-1.f / 6, 1.f / 6, -1.f / 6}, {1.f / 24, 1.f / 12, 1.f / 6},
                                      {1.f / 24, -1.f / 12, 1.f / 6}, {0, 0, 1}};
    static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

bool winograd_applies(const ConvDims& d) { return d.KH == 3 && d.KW == 3 && d.SH == 1 && d.SW == 1; }

// The distance between two of the a^2 planes of U, V or M: the plane's size rounded up to 16
// floats (a cache line), plus 64 floats, so that the planes written (read) together fall into
// different cache sets (plane sizes are often powers of two: without the 64, 4-5x slower
// transforms).
static int64_t plane(int64_t n) { return (n + 15) / 16 * 16 + 64; }

// The sizes of one convolution's transforms, worked out once per call.
template <int m>
struct Geom {
    static constexpr int a = Wino<m>::a;
    int TH, TW, Q, L;        // tile rows and columns of an image, phase length TW + 1, flat length TH Q
    int Hp, Wp;              // the padded plane: rows m th + k (k < a) for every th, columns m q + r
    int64_t T, LU, LV, LM;   // tiles (N TH TW); the plane strides of U, V, M
    explicit Geom(const ConvDims& d)
        : TH((d.OH + m - 1) / m), TW((d.OW + m - 1) / m), Q(TW + 1), L(TH * Q), Hp(m * TH + a - m), Wp(m * Q),
          T((int64_t)d.N * TH * TW), LU(plane((int64_t)d.OC * d.C)), LV(plane(d.C * T)), LM(plane(d.OC * T)) {}
};

// U, V and M: in the caller's scratch (kernels.h: d.scratch_size() floats, im2col's) where they
// fit, else in grow-only per-thread buffers (the op runs at every step of every iteration).
struct WinoBufs {
    float *U, *V, *M;
    WinoBufs(float* scratch, const ConvDims& d, int64_t nu, int64_t nv, int64_t nm) {
        static thread_local std::vector<float> own;
        float* base = scratch;
        if (nu + nv + nm > d.scratch_size()) {
            if ((int64_t)own.size() < nu + nv + nm) own.resize((size_t)(nu + nv + nm));
            base = own.data();
        }
        U = base, V = base + nu, M = base + nu + nv;
    }
};

// ---- weights: U = G g G^T, and its adjoint dW += G^T dU G ---------------------------------------

template <int m>
static void weight_transform(float* U, const float* w, const ConvDims& d, const Geom<m>& g) {
    using W = Wino<m>;
    constexpr int a = W::a;
    const int64_t OCC = (int64_t)d.OC * d.C, LU = g.LU;
#pragma omp parallel for if (OCC * a * a > PAR_MIN)
    for (int64_t i = 0; i < OCC; i++) {
        const float* g = w + i * 9;
        float r[a][3];  // G g
        for (int x = 0; x < a; x++)
            for (int j = 0; j < 3; j++) r[x][j] = W::G[x][0] * g[j] + W::G[x][1] * g[3 + j] + W::G[x][2] * g[6 + j];
        for (int x = 0; x < a; x++)
            for (int y = 0; y < a; y++)
                U[(x * a + y) * LU + i] = r[x][0] * W::G[y][0] + r[x][1] * W::G[y][1] + r[x][2] * W::G[y][2];
    }
}

template <int m>
static void weight_transform_adjoint(float* dw, const float* dU, const ConvDims& d, const Geom<m>& g) {
    using W = Wino<m>;
    constexpr int a = W::a;
    const int64_t OCC = (int64_t)d.OC * d.C, LU = g.LU;
#pragma omp parallel for if (OCC * a * a > PAR_MIN)
    for (int64_t i = 0; i < OCC; i++) {
        float r[a][3] = {};  // dU G
        for (int x = 0; x < a; x++)
            for (int y = 0; y < a; y++) {
                const float u = dU[(x * a + y) * LU + i];
                for (int j = 0; j < 3; j++) r[x][j] += u * W::G[y][j];
            }
        for (int k = 0; k < 3; k++)  // G^T (dU G)
            for (int j = 0; j < 3; j++) {
                float s = 0.f;
                for (int x = 0; x < a; x++) s += W::G[x][k] * r[x][j];
                dw[i * 9 + k * 3 + j] += s;
            }
    }
}

// ---- input and output tiles, a whole (n, c) plane at a time ----------------------------------------
// Tile (th, tw) reads input rows m th - PH + k and columns m tw - PW + k (k < a) and writes
// output rows m th + y, columns m tw + x (y, x < m). The transforms run on one plane at a time
// in flat per-thread rows indexed u = th Q + q, Q = TW + 1: a row of the plane is split into
// its m phases (column m q + r - PW, q = 0..TW), so that column k of tile tw is phase k % m at
// u = th Q + tw + k / m. Every step of a transform is then one lincomb below: a loop over u
// of length TH Q, vectorised, whatever the map's size. u = th Q + TW is no tile: its values
// are computed and never stored; V and M hold the TW real tiles of each row densely, for the
// GEMMs.

// out[j][u] = sum_k c[j][k] in[k][u] for u < L: all J outputs from the K inputs held in
// registers, one pass (a zero coefficient adds an exact zero for finite inputs).
template <int J, int K>
static inline void lincomb(float* const* out, const float* const* in, const float* c, int L) {
    float cc[J * K];
    for (int i = 0; i < J * K; i++) cc[i] = c[i];
#pragma omp simd
    for (int u = 0; u < L; u++) {
        float v[K];
        for (int k = 0; k < K; k++) v[k] = in[k][u];
        for (int j = 0; j < J; j++) {
            float s = 0.f;
            for (int k = 0; k < K; k++) s += cc[j * K + k] * v[k];
            out[j][u] = s;
        }
    }
}

// The coefficient matrices of each step (row-major, out x in).
template <int m>
struct Steps {
    static constexpr int a = Wino<m>::a;
    float BT[a * a], B[a * a];  // B^T; B = (B^T)^T, the adjoint
    float Bs[m * 2 * a];        // dR[r][w] from dV's rows j at w (s = 0) and w - 1 (s = 1): B^T[j][s m + r]
    float AT[m * a], A[a * m];  // A^T; A
    Steps() {
        const auto& W = Wino<m>::BT;
        const auto& V = Wino<m>::AT;
        for (int i = 0; i < a; i++)
            for (int k = 0; k < a; k++) BT[i * a + k] = W[i][k], B[k * a + i] = W[i][k];
        for (int r = 0; r < m; r++)
            for (int s = 0; s < 2; s++)
                for (int j = 0; j < a; j++) Bs[r * 2 * a + s * a + j] = s * m + r < a ? W[j][s * m + r] : 0.f;
        for (int y = 0; y < m; y++)
            for (int i = 0; i < a; i++) AT[y * a + i] = V[y][i], A[i * m + y] = V[y][i];
    }
};

// The per-thread rows of one plane's transform: `rows` rows of L floats, each with one float
// of zero before and after it (the shifted reads at u - 1 and u + 1).
struct PlaneBufs {
    std::vector<float> mem;
    int64_t n;
    PlaneBufs(int rows, int64_t L) : mem((size_t)rows * (L + 2), 0.f), n(L + 2) {}
    float* operator[](int r) { return mem.data() + r * n + 1; }
};

// A plane's flat row (u = th Q + t) to its dense run in V or M (th TW + t): the tiles, without
// u = th Q + TW; and back, zero at u = th Q + TW.
static void store_tiles(float* dense, const float* flat, int TH, int TW) {
    for (int th = 0; th < TH; th++)
        for (int t = 0; t < TW; t++) dense[th * TW + t] = flat[th * (TW + 1) + t];
}
static void load_tiles(float* flat, const float* dense, int TH, int TW) {
    for (int th = 0; th < TH; th++) {
        for (int t = 0; t < TW; t++) flat[th * (TW + 1) + t] = dense[th * TW + t];
        flat[th * (TW + 1) + TW] = 0.f;
    }
}

// V = B^T d B: the padded plane, its a x m phase rows X (X[k m + r][th Q + q] = row m th + k,
// column m q + r), R = B^T X down the columns, then V = R B along the rows.
template <int m>
static void input_transform(float* V, const float* x, const ConvDims& d, const Geom<m>& g) {
    constexpr int a = Wino<m>::a;
    static const Steps<m> S;
    const int TH = g.TH, TW = g.TW, Q = g.Q, L = g.L, Wp = g.Wp;
    const int64_t T = g.T, LV = g.LV, HW = (int64_t)d.H * d.W;
#pragma omp parallel if (a * a * d.C * T > PAR_MIN)
    {
        PlaneBufs pad(g.Hp, Wp), X(a * m, L), R(a * m, L), out(a, L);
        const int w0 = d.PW < Wp ? d.PW : Wp, w1 = d.PW + d.W < Wp ? d.PW + d.W : Wp;
#pragma omp for collapse(2)
        for (int n = 0; n < d.N; n++)
            for (int c = 0; c < d.C; c++) {
                const float* xp = x + ((int64_t)n * d.C + c) * HW;
                for (int row = 0; row < g.Hp; row++) {  // valid columns [w0, w1)
                    float* dst = pad[row];
                    const int ih = row - d.PH;
                    for (int u = 0; u < Wp; u++) dst[u] = 0.f;
                    if (ih >= 0 && ih < d.H) {
                        const float* src = xp + (int64_t)ih * d.W - d.PW;  // column u - PW
                        for (int u = w0; u < w1; u++) dst[u] = src[u];
                    }
                }
                for (int k = 0; k < a; k++)
                    for (int r = 0; r < m; r++) {
                        float* dst = X[k * m + r];
                        for (int th = 0; th < TH; th++) {
                            const float* src = pad[m * th + k] + r;
                            for (int q = 0; q < Q; q++) dst[th * Q + q] = src[m * q];
                        }
                    }
                const float* in[a];
                float* o[a];
                for (int r = 0; r < m; r++) {  // R = B^T X
                    for (int k = 0; k < a; k++) in[k] = X[k * m + r], o[k] = R[k * m + r];
                    lincomb<a, a>(o, in, S.BT, L);
                }
                for (int j = 0; j < a; j++) o[j] = out[j];
                const int64_t t0 = (int64_t)c * T + (int64_t)n * TH * TW;
                for (int i = 0; i < a; i++) {  // V = R B: row i of the tile from R's phase rows
                    for (int k = 0; k < a; k++) in[k] = R[i * m + k % m] + k / m;
                    lincomb<a, a>(o, in, S.BT, L);
                    for (int j = 0; j < a; j++) store_tiles(V + (int64_t)(i * a + j) * LV + t0, o[j], TH, TW);
                }
            }
    }
}

// dX += B dV B^T: input_transform's steps in reverse.
template <int m>
static void input_transform_adjoint(float* dx, const float* dV, const ConvDims& d, const Geom<m>& g) {
    constexpr int a = Wino<m>::a;
    static const Steps<m> S;
    const int TH = g.TH, TW = g.TW, Q = g.Q, L = g.L, Wp = g.Wp;
    const int64_t T = g.T, LV = g.LV, HW = (int64_t)d.H * d.W;
#pragma omp parallel if (a * a * d.C * T > PAR_MIN)
    {
        PlaneBufs pad(g.Hp, Wp), X(a * m, L), R(a * m, L + 1), Vf(a, L);
#pragma omp for collapse(2)
        for (int n = 0; n < d.N; n++)
            for (int c = 0; c < d.C; c++) {
                const int64_t t0 = (int64_t)c * T + (int64_t)n * TH * TW;
                const float* in[2 * a];
                float* o[a];
                for (int i = 0; i < a; i++) {  // dR = dV B^T, gathered: dR[r][w] from dV at w and w - 1
                    for (int j = 0; j < a; j++) {
                        load_tiles(Vf[j], dV + (int64_t)(i * a + j) * LV + t0, TH, TW);
                        in[j] = Vf[j], in[a + j] = Vf[j] - 1;
                    }
                    for (int r = 0; r < m; r++) o[r] = R[i * m + r];
                    lincomb<m, 2 * a>(o, in, S.Bs, L + 1);  // w = L: dR of the zero past the end
                }
                for (int r = 0; r < m; r++) {  // dX = B dR
                    for (int i = 0; i < a; i++) in[i] = R[i * m + r], o[i] = X[i * m + r];
                    lincomb<a, a>(o, in, S.B, L);
                }
                for (int row = 0; row < g.Hp; row++)
                    for (int u = 0; u < Wp; u++) pad[row][u] = 0.f;
                for (int k = 0; k < a; k++)
                    for (int r = 0; r < m; r++) {
                        const float* src = X[k * m + r];
                        for (int th = 0; th < TH; th++) {
                            float* dst = pad[m * th + k] + r;
                            for (int q = 0; q < Q; q++) dst[m * q] += src[th * Q + q];
                        }
                    }
                float* xp = dx + ((int64_t)n * d.C + c) * HW;
                const int w1 = d.W < Wp - d.PW ? d.W : Wp - d.PW;
                for (int ih = 0; ih < d.H && ih + d.PH < g.Hp; ih++) {
                    const float* src = pad[ih + d.PH] + d.PW;
                    for (int iw = 0; iw < w1; iw++) xp[(int64_t)ih * d.W + iw] += src[iw];
                }
            }
    }
}

// Y = A^T M A (+ bias): the plane's a^2 rows of M (flat, zero at u = th Q + TW), C = A^T M
// down the columns, Y = C A along the rows into the m phases of each output row.
template <int m>
static void output_transform(float* out, const float* M, const float* bias, const ConvDims& d, const Geom<m>& g) {
    constexpr int a = Wino<m>::a;
    static const Steps<m> S;
    const int TH = g.TH, TW = g.TW, Q = g.Q, L = g.L;
    const int64_t T = g.T, LM = g.LM, P = (int64_t)d.OH * d.OW;
#pragma omp parallel if (a * a * d.OC * T > PAR_MIN)
    {
        PlaneBufs Mf(a * a, L), C(m * a, L), Y(m, L);
#pragma omp for collapse(2)
        for (int n = 0; n < d.N; n++)
            for (int oc = 0; oc < d.OC; oc++) {
                const int64_t t0 = (int64_t)oc * T + (int64_t)n * TH * TW;
                for (int xi = 0; xi < a * a; xi++) load_tiles(Mf[xi], M + (int64_t)xi * LM + t0, TH, TW);
                const float* in[a];
                float* o[a];
                for (int j = 0; j < a; j++) {  // C = A^T M: column j of the m output rows
                    for (int i = 0; i < a; i++) in[i] = Mf[i * a + j];
                    for (int y = 0; y < m; y++) o[y] = C[y * a + j];
                    lincomb<m, a>(o, in, S.AT, L);
                }
                float* yp = out + ((int64_t)n * d.OC + oc) * P;
                const float bv = bias ? bias[oc] : 0.f;
                for (int y = 0; y < m; y++) {  // Y = C A, output row y of every tile row
                    for (int j = 0; j < a; j++) in[j] = C[y * a + j];
                    for (int x = 0; x < m; x++) o[x] = Y[x];
                    lincomb<m, a>(o, in, S.AT, L);
                    for (int th = 0; th < TH; th++) {
                        const int oh = m * th + y;
                        if (oh >= d.OH) break;
                        float* row = yp + (int64_t)oh * d.OW;
                        for (int x = 0; x < m; x++)
                            for (int t = 0; t < TW && m * t + x < d.OW; t++) row[m * t + x] = Y[x][th * Q + t] + bv;
                    }
                }
            }
    }
}

// dM = A dY A^T: output_transform's steps in reverse (dY zero past the output's edge).
template <int m>
static void output_transform_adjoint(float* dM, const float* dout, const ConvDims& d, const Geom<m>& g) {
    constexpr int a = Wino<m>::a;
    static const Steps<m> S;
    const int TH = g.TH, TW = g.TW, Q = g.Q, L = g.L;
    const int64_t T = g.T, LM = g.LM, P = (int64_t)d.OH * d.OW;
#pragma omp parallel if (a * a * d.OC * T > PAR_MIN)
    {
        PlaneBufs C(m * a, L), Y(m, L), out(a, L);
#pragma omp for collapse(2)
        for (int n = 0; n < d.N; n++)
            for (int oc = 0; oc < d.OC; oc++) {
                const float* gp = dout + ((int64_t)n * d.OC + oc) * P;
                const float* in[a];
                float* o[a];
                for (int y = 0; y < m; y++) {
                    for (int x = 0; x < m; x++) {
                        const int qn = x < d.OW ? (d.OW - x + m - 1) / m : 0;  // columns m q + x < OW
                        for (int th = 0; th < TH; th++) {
                            const int oh = m * th + y;
                            float* dst = Y[x] + th * Q;
                            const int q1 = oh < d.OH ? qn : 0;
                            for (int q = 0; q < q1; q++) dst[q] = gp[(int64_t)oh * d.OW + m * q + x];
                            for (int q = q1; q < Q; q++) dst[q] = 0.f;
                        }
                    }
                    for (int x = 0; x < m; x++) in[x] = Y[x];  // dC = dY A^T, row y
                    for (int j = 0; j < a; j++) o[j] = C[y * a + j];
                    lincomb<a, m>(o, in, S.A, L);
                }
                for (int i = 0; i < a; i++) o[i] = out[i];
                const int64_t t0 = (int64_t)oc * T + (int64_t)n * TH * TW;
                for (int j = 0; j < a; j++) {  // dM = A dC, column j
                    for (int y = 0; y < m; y++) in[y] = C[y * a + j];
                    lincomb<a, m>(o, in, S.A, L);
                    for (int i = 0; i < a; i++) store_tiles(dM + (int64_t)(i * a + j) * LM + t0, o[i], TH, TW);
                }
            }
    }
}

// ---- the convolution --------------------------------------------------------------------------

template <int m>
static void forward(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                    const ConvDims& d) {
    constexpr int aa = Wino<m>::a * Wino<m>::a;
    const Geom<m> g(d);
    const int64_t T = g.T, LU = g.LU, LV = g.LV, LM = g.LM;
    const WinoBufs buf(scratch, d, aa * LU, aa * LV, aa * LM);
    float *U = buf.U, *V = buf.V, *M = buf.M;
    weight_transform<m>(U, weight, d, g);
    input_transform<m>(V, inp, d, g);
    for (int xi = 0; xi < aa; xi++)
        gemm(false, false, d.OC, (int)T, d.C, 1.f, U + xi * LU, d.C, V + xi * LV, (int)T, 0.f, M + xi * LM, (int)T);
    output_transform<m>(out, M, bias, d, g);
}

template <int m>
static void backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                     float* scratch, const ConvDims& d) {
    constexpr int aa = Wino<m>::a * Wino<m>::a;
    const Geom<m> g(d);
    const int64_t T = g.T, LU = g.LU, LV = g.LV, LM = g.LM;
    const WinoBufs buf(scratch, d, aa * LU, aa * LV, aa * LM);
    float *U = buf.U, *V = buf.V, *dM = buf.M;  // U: dU, then U; V: V, then dV
    output_transform_adjoint<m>(dM, dout, d, g);
    if (dweight) {
        input_transform<m>(V, inp, d, g);
        for (int xi = 0; xi < aa; xi++)
            gemm(false, true, d.OC, d.C, (int)T, 1.f, dM + xi * LM, (int)T, V + xi * LV, (int)T, 0.f, U + xi * LU, d.C);
        weight_transform_adjoint<m>(dweight, U, d, g);
    }
    if (dinp) {
        weight_transform<m>(U, weight, d, g);
        for (int xi = 0; xi < aa; xi++)
            gemm(true, false, d.C, (int)T, d.OC, 1.f, U + xi * LU, d.C, dM + xi * LM, (int)T, 0.f, V + xi * LV, (int)T);
        input_transform_adjoint<m>(dinp, V, d, g);
    }
}

void conv2d_winograd_forward(float* out, const float* inp, const float* weight, const float* bias, float* scratch,
                             const ConvDims& d, int m) {
    if (m == 4) return forward<4>(out, inp, weight, bias, scratch, d);
    forward<2>(out, inp, weight, bias, scratch, d);
}

void conv2d_winograd_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                              float* scratch, const ConvDims& d, int m) {
    if (!dinp && !dweight) return;
    if (m == 4) return backward<4>(dinp, dweight, dout, inp, weight, scratch, d);
    backward<2>(dinp, dweight, dout, inp, weight, scratch, d);
}

}  // namespace vt::cpu

// igemm.cpp: stride-1 convolution as an implicit GEMM on a micro-kernel of our own.
//
// The forward Y (OC, N*P) = W (OC, C*KH*KW) @ cols (conv.cpp's im2col layout) without the
// im2col matrix: each block of cols (KC rows x NC columns) is packed straight from the image
// into a cache-resident panel (row (c, kh, kw) of column (n, oh, ow) is x[n, c, oh - PH + kh,
// ow - PW + kw], zeros in the padding): on maps at least GATHER_BELOW_OW wide as runs of an
// input row (masked vector loads), on narrower ones by masked gathers through a table of each
// (tap, column)'s input offset. Tiles are written to the NCHW output (no transpose), the bias
// added on the way. At stride 1 the input gradient is itself such a convolution (of dY, padded
// by K - 1 - P, by the weight with its two channel axes swapped and its taps reversed), so it
// runs through the same code, accumulating into dX. What this saves over im2col + OpenBLAS:
// writing and re-reading the cols matrix (9x the input) and dcols, OpenBLAS's second packing
// of it, its zeroing of the output (beta = 0), the transposes and col2im. The weight gradient
// stays on im2col + GEMM (conv.cpp): its reduction runs over pixels, which NCHW keeps
// contiguous in both operands, so packing them for this kernel would mean transposing both.
//
// GEMM blocking (Goto): a thread's columns in blocks of NC, the reduction in blocks of KC; per
// block B is packed as panels of NR columns (k-major), A (the weight) as panels of MR rows, and
// the micro-kernel keeps an MR x NR tile in MR * NV vector registers (AVX-512: 6 x 64, 24 of
// the 32 zmm; AVX2: 6 x 16, 12 of the 16 ymm). Threads split the columns in whole panels, or
// where there are few (maps of 4x4 and less) the rows: each output element is one thread's.
// No OpenBLAS call. The sums run in a different order from OpenBLAS's (blocks of KC), so the
// result differs from im2col's by rounding (tests/test_ops.cpp bounds both alike).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels/cpu/cpu.h"
#include "kernels/error.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#define VT_IGEMM 1
#endif

namespace vt::cpu {

#ifndef VT_IGEMM

bool igemm_applies(const ConvDims&) { return false; }
void conv2d_igemm_forward(float*, const float*, const float*, const float*, const ConvDims&) {
    fail("implicit-GEMM convolution: this build's CPU has neither AVX2+FMA nor AVX-512");
}
void conv2d_igemm_backward_input(float*, const float*, const float*, const ConvDims&) {
    fail("implicit-GEMM convolution: this build's CPU has neither AVX2+FMA nor AVX-512");
}

#else

namespace {

#if defined(__AVX512F__)
constexpr int VL = 16, MR = 6, NV = 4;
using V = __m512;
inline V vzero() { return _mm512_setzero_ps(); }
inline V vload(const float* p) { return _mm512_load_ps(p); }
inline void vstore(float* p, V v) { _mm512_store_ps(p, v); }
inline V vbroadcast(float x) { return _mm512_set1_ps(x); }
inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
#else
constexpr int VL = 8, MR = 6, NV = 2;
using V = __m256;
inline V vzero() { return _mm256_setzero_ps(); }
inline V vload(const float* p) { return _mm256_load_ps(p); }
inline void vstore(float* p, V v) { _mm256_store_ps(p, v); }
inline V vbroadcast(float x) { return _mm256_set1_ps(x); }
inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
#endif
constexpr int NR = NV * VL;       // columns of a micro-tile
constexpr int KC = 256;           // the reduction's block
constexpr int NC = 4 * NR;        // columns per block
// Output rows narrower than this are packed by gathers (tap_table), wider ones as runs.
constexpr int GATHER_BELOW_OW = 17;

// tile (MR x NR, rows NR apart) = sum over k < kc of a[k] (MR) outer b[k] (NR)
inline void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, float* __restrict tile) {
    V acc[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[r][v] = vzero();
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        V bv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) bv[v] = vload(b + v * VL);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const V ar = vbroadcast(a[r]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[r][v] = vfma(ar, bv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) vstore(tile + r * NR + v * VL, acc[r][v]);
}

// A per-thread, grow-only, 64-byte aligned buffer.
struct Buf {
    float* p = nullptr;
    size_t n = 0;
    float* get(size_t want) {
        if (want > n) {
            std::free(p);
            n = (want + 15) / 16 * 16;
            p = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
            if (!p) fail("implicit-GEMM convolution: out of memory for a %zu-float panel", n);
        }
        return p;
    }
    ~Buf() { std::free(p); }
};

// A run of a block's columns: one output row's pixels (n, oh, ow .. ow + len), which stay in
// one panel (jp) from lane `lane` on.
struct Run {
    int n, oh, ow, len, jp, lane;
};

// The runs of columns [j0, j0 + nc) (column j = (n * OH + oh) * OW + ow).
void block_runs(std::vector<Run>& runs, const ConvDims& d, int64_t j0, int nc) {
    runs.clear();
    const int64_t P = (int64_t)d.OH * d.OW;
    for (int64_t j = j0; j < j0 + nc;) {
        const int n = (int)(j / P), p = (int)(j % P), oh = p / d.OW, ow = p % d.OW;
        const int off = (int)(j - j0), lane = off % NR;
        int len = d.OW - ow;
        if (len > j0 + nc - j) len = (int)(j0 + nc - j);
        if (len > NR - lane) len = NR - lane;
        runs.push_back({n, oh, ow, len, off / NR, lane});
        j += len;
    }
}

// Panels of MR rows of A (rows [i0, i1), reduction [k0, k0 + kc)): dst[ip][kk][r], rows past
// i1 zero. A (M, K) is the weight w (M, C, KH, KW) as it is, or with flip (the input
// gradient's) w (C', M, KH, KW) with its first two axes swapped and its taps reversed:
// A(i, (c', t)) = w[c', i, KK - 1 - t].
void pack_a(float* dst, const float* w, bool flip, int M, int K, int KK, int i0, int i1, int k0, int kc) {
    for (int ib = i0; ib < i1; ib += MR) {
        const int mr = i1 - ib < MR ? i1 - ib : MR;
        for (int kk = 0, k = k0; kk < kc; kk++, k++, dst += MR) {
            if (flip) {
                const float* col = w + ((int64_t)(k / KK) * M + ib) * KK + KK - 1 - k % KK;
                for (int r = 0; r < mr; r++) dst[r] = col[(int64_t)r * KK];
            } else {
                for (int r = 0; r < mr; r++) dst[r] = w[(int64_t)(ib + r) * K + k];
            }
            for (int r = mr; r < MR; r++) dst[r] = 0.f;
        }
    }
}

// Zero the lanes of the block's last panel past its nc columns.
void zero_tail(float* bp, int nc, int kc) {
    const int used = nc % NR;
    if (used == 0) return;
    float* p = bp + (int64_t)(nc / NR) * kc * NR;
    for (int kk = 0; kk < kc; kk++) std::memset(p + kk * NR + used, 0, sizeof(float) * (NR - used));
}

// dst[i] = row[i0 + i] for i in [lo, hi) (the lanes inside the input row), 0 for the rest of
// [0, len); row[i0 + i] is never read outside [lo, hi) (there it may lie before the row).
inline void copy_run(float* dst, const float* row, int i0, int len, int lo, int hi) {
#if defined(__AVX512F__)
    for (int i = 0; i < len; i += 16) {
        const int n = len - i < 16 ? len - i : 16, a = lo - i > 0 ? lo - i : 0, b = hi - i < n ? hi - i : n;
        const __mmask16 valid = b > a ? (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1)) : 0;
        // the address by integer arithmetic: it may point before the row, where no lane is read
        const float* src = reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(row) + (intptr_t)(i0 + i) * 4);
        _mm512_mask_storeu_ps(dst + i, (__mmask16)((1u << n) - 1), _mm512_maskz_loadu_ps(valid, src));
    }
#else
    int i = 0;
    for (; i < lo && i < len; i++) dst[i] = 0.f;
    for (; i < hi; i++) dst[i] = row[i0 + i];
    for (; i < len; i++) dst[i] = 0.f;
#endif
}

// B = cols, rows [k0, k0 + kc): row (c, kh, kw), from the image x.
void pack_cols(float* bp, const std::vector<Run>& runs, int nc, int k0, int kc, const float* x, const ConvDims& d) {
    const int KK = d.KH * d.KW;
    const int64_t HW = (int64_t)d.H * d.W;
    for (int kk = 0; kk < kc; kk++) {
        const int k = k0 + kk, c = k / KK, kh = k % KK / d.KW, kw = k % d.KW;
        for (const Run& r : runs) {
            float* dst = bp + ((int64_t)r.jp * kc + kk) * NR + r.lane;
            const int ih = r.oh - d.PH + kh, iw0 = r.ow - d.PW + kw;
            if (ih < 0 || ih >= d.H) {
                copy_run(dst, x, 0, r.len, 0, 0);
                continue;
            }
            const int lo = iw0 < 0 ? -iw0 : 0, hi = d.W - iw0 < r.len ? d.W - iw0 : r.len;
            copy_run(dst, x + ((int64_t)r.n * d.C + c) * HW + (int64_t)ih * d.W, iw0, r.len, lo, hi);
        }
    }
    zero_tail(bp, nc, kc);
}

// Small maps: the block's columns as gathers. For each tap (kh, kw) and column, the offset of
// its input pixel from channel c's plane start (n C H W + ih W + iw) and whether it lies inside
// the image; then row (c, kh, kw) of a panel is VL-lane masked gathers from x + c H W.
struct TapTable {
    std::vector<int32_t> off;   // (KK, ncp): ncp = nc rounded up to NR
    std::vector<uint32_t> mask; // (KK, ncp / VL): the lanes inside the image (and the block)
    int ncp = 0;
};

void tap_table(TapTable& t, const std::vector<Run>& runs, int nc, const ConvDims& d) {
    const int KK = d.KH * d.KW;
    t.ncp = (nc + NR - 1) / NR * NR;
    t.off.assign((size_t)KK * t.ncp, 0);
    t.mask.assign((size_t)KK * t.ncp / VL, 0u);
    const int64_t CHW = (int64_t)d.C * d.H * d.W;
    for (int tap = 0; tap < KK; tap++) {
        const int kh = tap / d.KW, kw = tap % d.KW;
        for (const Run& r : runs)
            for (int i = 0; i < r.len; i++) {
                const int col = r.jp * NR + r.lane + i, ih = r.oh - d.PH + kh, iw = r.ow + i - d.PW + kw;
                if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
                t.off[(size_t)tap * t.ncp + col] = (int32_t)(r.n * CHW + (int64_t)ih * d.W + iw);
                t.mask[((size_t)tap * t.ncp + col) / VL] |= 1u << (col % VL);
            }
    }
}

void pack_cols_gather(float* bp, const TapTable& t, int k0, int kc, const float* x, const ConvDims& d) {
    const int KK = d.KH * d.KW;
    const int64_t HW = (int64_t)d.H * d.W;
    for (int kk = 0; kk < kc; kk++) {
        const int k = k0 + kk, c = k / KK, tap = k % KK;
        const float* base = x + c * HW;
        const int32_t* off = t.off.data() + (size_t)tap * t.ncp;
        const uint32_t* mask = t.mask.data() + (size_t)tap * t.ncp / VL;
        for (int col = 0; col < t.ncp; col += VL) {
            float* dst = bp + ((int64_t)(col / NR) * kc + kk) * NR + col % NR;
#if defined(__AVX512F__)
            const __m512i idx = _mm512_loadu_si512(off + col);
            _mm512_store_ps(dst, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), (__mmask16)mask[col / VL], idx, base, 4));
#else
            const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(off + col));
            const uint32_t m = mask[col / VL];
            const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            const __m256 vm = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)m), bits), bits));
            _mm256_store_ps(dst, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, idx, vm, 4));
#endif
        }
    }
}

// The GEMM over rows [i0, i1) and columns [j0, j1) of Y = A @ cols(x), A (M, K) row-major,
// each finished tile handed to put(tile, ib, mr, runs of its panel, first block of the reduction).
template <class Put>
void gemm_blocks(int i0, int i1, int64_t j0, int64_t j1, const float* x, const float* w, bool flip, const ConvDims& d, Put put) {
    static thread_local Buf abuf, bbuf;
    static thread_local std::vector<Run> runs;
    static thread_local TapTable taps;
    alignas(64) float tile[MR * NR];
    const bool gather = d.OW < GATHER_BELOW_OW;
    const int K = d.C * d.KH * d.KW, mpad = (i1 - i0 + MR - 1) / MR * MR;
    float* ap = abuf.get((size_t)mpad * K);
    for (int k0 = 0; k0 < K; k0 += KC) {  // A: every reduction block, packed once
        const int kc = K - k0 < KC ? K - k0 : KC;
        pack_a(ap + (int64_t)mpad * k0, w, flip, d.OC, K, d.KH * d.KW, i0, i1, k0, kc);
    }
    float* bp = bbuf.get((size_t)KC * NC);
    for (int64_t jb = j0; jb < j1; jb += NC) {
        const int nc = j1 - jb < NC ? (int)(j1 - jb) : NC;
        block_runs(runs, d, jb, nc);
        if (gather) tap_table(taps, runs, nc, d);
        for (int k0 = 0; k0 < K; k0 += KC) {
            const int kc = K - k0 < KC ? K - k0 : KC;
            if (gather)
                pack_cols_gather(bp, taps, k0, kc, x, d);
            else
                pack_cols(bp, runs, nc, k0, kc, x, d);
            size_t ri = 0;
            for (int jp = 0; jp * NR < nc; jp++) {
                const size_t rb = ri;
                while (ri < runs.size() && runs[ri].jp == jp) ri++;
                for (int ib = i0; ib < i1; ib += MR) {
                    micro_kernel(kc, ap + (int64_t)mpad * k0 + (int64_t)(ib - i0) * kc, bp + (int64_t)jp * kc * NR, tile);
                    put(tile, ib, i1 - ib < MR ? i1 - ib : MR, runs.data() + rb, runs.data() + ri, k0 == 0);
                }
            }
        }
    }
}

int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// out (N, OC, OH, OW) = (or +=, accumulate) the convolution of x by the weight (OC, C, KH, KW),
// or with flip by (C, OC, KH, KW) read as pack_a says, plus bias (may be null).
void igemm_conv(float* out, const float* x, const float* weight, bool flip, const float* bias, bool accumulate,
                const ConvDims& d) {
    const int K = d.C * d.KH * d.KW, M = d.OC;
    const int64_t P = (int64_t)d.OH * d.OW, NP = d.N * P;
    auto put = [=](const float* tile, int ib, int mr, const Run* rb, const Run* re, bool first) {
        const bool store = first && !accumulate;
        for (int r = 0; r < mr; r++) {
            const int oc = ib + r;
            const float b = first && bias ? bias[oc] : 0.f;
            for (const Run* q = rb; q < re; q++) {
                float* dst = out + ((int64_t)q->n * d.OC + oc) * P + (int64_t)q->oh * d.OW + q->ow;
                const float* src = tile + r * NR + q->lane;
                if (store)
                    for (int i = 0; i < q->len; i++) dst[i] = src[i] + b;
                else
                    for (int i = 0; i < q->len; i++) dst[i] += src[i] + b;
            }
        }
    };
#ifdef _OPENMP
    const int nt = 2 * (int64_t)M * K * NP < ((int64_t)1 << 22) ? 1 : omp_get_max_threads();
#else
    const int nt = 1;
#endif
    // Columns split in whole panels while each thread gets a few; else rows (late layers' few pixels).
    const bool by_cols = NP >= (int64_t)nt * 2 * NR;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = thread_id();
        if (by_cols) {
            const int64_t panels = (NP + NR - 1) / NR, per = (panels + nt - 1) / nt;
            const int64_t j0 = t * per * NR, j1 = (t + 1) * per * NR < NP ? (t + 1) * per * NR : NP;
            if (j0 < j1) gemm_blocks(0, M, j0, j1, x, weight, flip, d, put);
        } else {
            const int panels = (M + MR - 1) / MR, per = (panels + nt - 1) / nt;
            const int i0 = t * per * MR, i1 = (t + 1) * per * MR < M ? (t + 1) * per * MR : M;
            if (i0 < i1) gemm_blocks(i0, i1, 0, NP, x, weight, flip, d, put);
        }
    }
}

}  // namespace

bool igemm_applies(const ConvDims& d) {
    return d.SH == 1 && d.SW == 1 && !d.is_pointwise() && d.PH < d.KH && d.PW < d.KW;
}

void conv2d_igemm_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvDims& d) {
    igemm_conv(out, inp, weight, false, bias, false, d);
}

// At stride 1 the input gradient is itself a convolution: of dY, padded by K - 1 - P, by the
// weight with its channels swapped and its taps flipped; accumulated into dX.
void conv2d_igemm_backward_input(float* dinp, const float* dout, const float* weight, const ConvDims& d) {
    ConvDims t = d;
    t.C = d.OC, t.H = d.OH, t.W = d.OW, t.OC = d.C, t.OH = d.H, t.OW = d.W;
    t.PH = d.KH - 1 - d.PH, t.PW = d.KW - 1 - d.PW;
    igemm_conv(dinp, dout, weight, true, nullptr, true, t);
}

#endif  // VT_IGEMM

}  // namespace vt::cpu

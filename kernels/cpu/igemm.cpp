// igemm.cpp: stride-1 convolution as an implicit GEMM on a micro-kernel of our own.
//
// The forward Y (OC, N*P) = W (OC, C*KH*KW) @ cols (conv.cpp's im2col layout) without the
// im2col matrix: each panel of cols (KC rows x NR columns) is packed straight from the image
// just before the micro-kernels read it (row (c, kh, kw) of column (n, oh, ow) is
// x[n, c, oh - PH + kh, ow - PW + kw], zeros in the padding): on maps at least GATHER_BELOW_OW
// wide as runs of an input row (masked vector loads), on narrower ones by masked gathers
// through a table of each (tap, column)'s input offset. Tiles are written to the NCHW output
// (no transpose), the bias added on the way. At stride 1 the input gradient is itself such a
// convolution (of dY, padded by K - 1 - P, by the weight with its two channel axes swapped
// and its taps reversed), so it runs through the same code, accumulating into dX. The weight
// gradient dW += dY @ cols^T reduces over pixels, which NCHW keeps contiguous in both
// operands: both are packed transposed (below, "the weight gradient"). What this saves over
// im2col + OpenBLAS: writing and re-reading the cols matrix (9x the input) and dcols,
// OpenBLAS's second packing of them, its zeroing of the output (beta = 0), the transposes
// and col2im.
//
// GEMM blocking (Goto): a thread's columns in blocks of NC (the runs and tables are worked
// out per block), the reduction in blocks of KC; A (the weight) is packed once per call as
// panels of MR rows, B one panel of NR columns at a time, and the micro-kernel keeps an MR x
// NR tile in MR * NV vector registers (AVX-512: 6 x 64, 24 of the 32 zmm; AVX2: 6 x 16, 12
// of the 16 ymm). Threads split the columns in whole panels, or where there are fewer than two
// panels a thread (small maps, small batches) the rows: each output element is one thread's. No OpenBLAS call. The sums
// run in a different order from OpenBLAS's (blocks of KC), so the result differs from
// im2col's by rounding (tests/test_ops.cpp bounds both alike).
//
// The same micro-kernel also runs Winograd F(2x2, 3x3) (below, "Winograd F(2x2, 3x3) on the
// micro-kernel"): 3x3 convolutions with 16 multiplies per 2x2 outputs instead of 36, the
// transformed input and products never leaving a thread's cache, and their weight gradient
// (below, "the weight gradient by F(2x2, 3x3)").
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
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
bool igemm_weight_grad_applies(const ConvDims&) { return false; }
void conv2d_igemm_backward_weight(float*, const float*, const float*, const ConvDims&) {
    fail("implicit-GEMM convolution: this build's CPU has neither AVX2+FMA nor AVX-512");
}
void conv2d_igemm_forward(float*, const float*, const float*, const float*, const ConvDims&) {
    fail("implicit-GEMM convolution: this build's CPU has neither AVX2+FMA nor AVX-512");
}
void conv2d_igemm_backward_input(float*, const float*, const float*, const ConvDims&) {
    fail("implicit-GEMM convolution: this build's CPU has neither AVX2+FMA nor AVX-512");
}
bool wino_fused_applies(const ConvDims&) { return false; }
void conv2d_wino_fused_forward(float*, const float*, const float*, const float*, const ConvDims&) {
    fail("fused Winograd convolution: this build's CPU has neither AVX2+FMA nor AVX-512");
}
void conv2d_wino_fused_backward_weight(float*, const float*, const float*, const ConvDims&) {
    fail("fused Winograd convolution: this build's CPU has neither AVX2+FMA nor AVX-512");
}
void conv2d_wino_fused_backward_input(float*, const float*, const float*, const ConvDims&) {
    fail("fused Winograd convolution: this build's CPU has neither AVX2+FMA nor AVX-512");
}

#else

namespace {

#if defined(__AVX512F__)
constexpr int VL = 16, MR = 6, NV = 4;
using V = __m512;
inline V vzero() { return _mm512_setzero_ps(); }
inline V vload(const float* p) { return _mm512_load_ps(p); }
inline V vloadu(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, V v) { _mm512_store_ps(p, v); }
inline V vbroadcast(float x) { return _mm512_set1_ps(x); }
inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
// x[off[i]] where bit i of m is set, else 0 (off: VL int32 offsets in floats)
inline V vgather(const float* x, const int32_t* off, uint32_t m) {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), (__mmask16)m, _mm512_loadu_si512(off), x, 4);
}
// p[i] = v[i] where bit i of m is set (p need not be aligned; the other lanes are not touched)
inline void vstore_mask(float* p, V v, uint32_t m) { _mm512_mask_storeu_ps(p, (__mmask16)m, v); }
#else
constexpr int VL = 8, MR = 6, NV = 2;
using V = __m256;
inline V vzero() { return _mm256_setzero_ps(); }
inline V vload(const float* p) { return _mm256_load_ps(p); }
inline V vloadu(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, V v) { _mm256_store_ps(p, v); }
inline V vbroadcast(float x) { return _mm256_set1_ps(x); }
inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
inline V vgather(const float* x, const int32_t* off, uint32_t m) {
    const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256 vm = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)m), bits), bits));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(off)), vm, 4);
}
inline void vstore_mask(float* p, V v, uint32_t m) {
    const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    _mm256_maskstore_ps(p, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)m), bits), bits), v);
}
#endif
constexpr int NR = NV * VL;       // columns of a micro-tile
constexpr int KC = 256;           // the reduction's block
constexpr int NC = 4 * NR;        // columns per block (its runs and tables worked out at once)
// Output rows narrower than this are packed by gathers (tap_table), wider ones as runs.
constexpr int GATHER_BELOW_OW = 17;

// tile (MR x NR, rows NR apart) = (with Acc: +=) sum over k < kc of a[k] (MR) outer b[k] (NR)
template <bool Acc = false>
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
        for (int v = 0; v < NV; v++) {
            float* t = tile + r * NR + v * VL;
            vstore(t, Acc ? vadd(vload(t), acc[r][v]) : acc[r][v]);
        }
}

// A per-thread, grow-only, 64-byte aligned buffer.
struct Buf {
    float* p = nullptr;
    size_t n = 0;
    float* get(size_t want) {
        if (want > n) {
            std::free(p);
            p = nullptr, n = 0;  // a failed allocation must not leave n above what p holds
            const size_t m = (want + 15) / 16 * 16;
            p = static_cast<float*>(std::aligned_alloc(64, m * sizeof(float)));
            if (!p) fail("implicit-GEMM convolution: out of memory for a %zu-float panel", m);
            n = m;
        }
        return p;
    }
    void release() { std::free(p), p = nullptr, n = 0; }
    ~Buf() { std::free(p); }
    Buf() = default;
    Buf(const Buf&) = delete;  // owns p
    Buf& operator=(const Buf&) = delete;
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

// A(i, (c, t)), A (M, K = C KK) the weight w (M, C, KH, KW) as it is, or with flip (the input
// gradient's) w (C, M, KH, KW) with its first two axes swapped and its taps reversed:
// A(i, (c, t)) = w[c, i, KK - 1 - t].
inline float weight_tap(const float* w, bool flip, int M, int C, int KK, int i, int c, int t) {
    return flip ? w[((int64_t)c * M + i) * KK + KK - 1 - t] : w[((int64_t)i * C + c) * KK + t];
}

// Panels of MR rows of A (rows [i0, i1), reduction [k0, k0 + kc)): dst[ip][kk][r], rows past
// i1 zero.
void pack_a(float* dst, const float* w, bool flip, int M, int K, int KK, int i0, int i1, int k0, int kc) {
    for (int ib = i0; ib < i1; ib += MR) {
        const int mr = i1 - ib < MR ? i1 - ib : MR;
        for (int kk = 0, k = k0; kk < kc; kk++, k++, dst += MR) {
            for (int r = 0; r < mr; r++) dst[r] = weight_tap(w, flip, M, K / KK, KK, ib + r, k / KK, k % KK);
            for (int r = mr; r < MR; r++) dst[r] = 0.f;
        }
    }
}

// Zero the lanes of a panel past its used columns.
void zero_tail(float* bp, int used, int kc) {
    if (used == NR) return;
    for (int kk = 0; kk < kc; kk++) std::memset(bp + kk * NR + used, 0, sizeof(float) * (NR - used));
}

// dst[i] = src[i] where bit i % VL of chunk i / VL of m is set (16 bits a chunk), else 0,
// for i < len; src[i] is never read where the bit is clear (there it may lie outside x).
inline void copy_masked(float* dst, const float* src, int len, uint64_t m) {
#if defined(__AVX512F__)
    for (int i = 0; i < len; i += VL, m >>= 16) {
        const int n = len - i < VL ? len - i : VL;
        _mm512_mask_storeu_ps(dst + i, (__mmask16)((1u << n) - 1), _mm512_maskz_loadu_ps((__mmask16)m, src + i));
    }
#else
    for (int i = 0; i < len; i++) dst[i] = (m >> (i / VL * 16 + i % VL)) & 1 ? src[i] : 0.f;
#endif
}

// A run's lanes that lie inside the image, per kernel column kw: bit i of chunk q (VL lanes)
// of masks[run * KW + kw] (runs are at most NR <= 4 VL long), worked out once per block.
void run_masks(std::vector<uint64_t>& masks, const std::vector<Run>& runs, const ConvDims& d) {
    masks.assign(runs.size() * d.KW, 0);
    for (size_t r = 0; r < runs.size(); r++)
        for (int kw = 0; kw < d.KW; kw++)
            for (int i = 0; i < runs[r].len; i++) {
                const int iw = runs[r].ow + i - d.PW + kw;
                if (iw >= 0 && iw < d.W) masks[r * d.KW + kw] |= (uint64_t)1 << (i / VL * 16 + i % VL);
            }
}

// One panel (kc x NR) of B = cols, rows [k0, k0 + kc) (row (c, kh, kw)), from the image x: the
// runs [rb, re) of the block, whose masks start at mk.
void pack_cols(float* bp, const Run* rb, const Run* re, const uint64_t* mk, int used, int k0, int kc, const float* x,
               const ConvDims& d) {
    const int64_t HW = (int64_t)d.H * d.W, CHW = d.C * HW;
    int c = k0 / (d.KH * d.KW), kh = k0 % (d.KH * d.KW) / d.KW, kw = k0 % d.KW;  // row k0 + kk, stepped
    for (int kk = 0; kk < kc; kk++) {
        // the pixel (oh, ow) of image n under tap (kh, kw): plane + n C H W + oh W + ow + shift
        const intptr_t shift = (intptr_t)(kh - d.PH) * d.W + (kw - d.PW);
        const float* plane = x + c * HW;
        for (const Run* r = rb; r < re; r++) {
            const int ih = r->oh - d.PH + kh;
            const uint64_t m = ih >= 0 && ih < d.H ? mk[(r - rb) * d.KW + kw] : 0;
            // by integer arithmetic: the run's first pixel may lie outside x (in the padding)
            const intptr_t at = (intptr_t)(r->n * CHW + (int64_t)r->oh * d.W + r->ow) + shift;
            const float* src = reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(plane) + at * 4);
            copy_masked(bp + kk * NR + r->lane, src, r->len, m);
        }
        if (++kw == d.KW) {
            kw = 0;
            if (++kh == d.KH) kh = 0, c++;
        }
    }
    zero_tail(bp, used, kc);
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

// One panel (kc x NR, the block's columns [col0, col0 + NR)) by gathers.
void pack_cols_gather(float* bp, const TapTable& t, int col0, int k0, int kc, const float* x, const ConvDims& d) {
    const int KK = d.KH * d.KW;
    const int64_t HW = (int64_t)d.H * d.W;
    int c = k0 / KK, tap = k0 % KK;  // row k0 + kk, stepped
    for (int kk = 0; kk < kc; kk++) {
        const float* base = x + c * HW;
        const int32_t* off = t.off.data() + (size_t)tap * t.ncp;
        const uint32_t* mask = t.mask.data() + (size_t)tap * t.ncp / VL;
        for (int col = col0; col < col0 + NR; col += VL)
            vstore(bp + kk * NR + (col - col0), vgather(base, off + col, mask[col / VL]));
        if (++tap == KK) tap = 0, c++;
    }
}

// The GEMM over rows [i0, i1) and columns [j0, j1) of Y = A @ cols(x), A (M, K) row-major,
// each finished tile handed to put(tile, ib, mr, runs of its panel, first block of the reduction).
template <class Put>
void gemm_blocks(int i0, int i1, int64_t j0, int64_t j1, const float* x, const float* w, bool flip, const ConvDims& d, Put put) {
    static thread_local Buf abuf, bbuf;
    static thread_local std::vector<Run> runs;
    static thread_local TapTable taps;
    static thread_local std::vector<uint64_t> masks;
    alignas(64) float tile[MR * NR];
    const bool gather = d.OW < GATHER_BELOW_OW;
    const int K = d.C * d.KH * d.KW, mpad = (i1 - i0 + MR - 1) / MR * MR;
    float* ap = abuf.get((size_t)mpad * K);
    for (int k0 = 0; k0 < K; k0 += KC) {  // A: every reduction block, packed once
        const int kc = K - k0 < KC ? K - k0 : KC;
        pack_a(ap + (int64_t)mpad * k0, w, flip, d.OC, K, d.KH * d.KW, i0, i1, k0, kc);
    }
    // B one panel at a time (64 KB on AVX-512), packed just before the micro-kernels read it
    // (a whole block packed first measured the same, in 4x the memory)
    float* bp = bbuf.get((size_t)KC * NR);
    for (int64_t jb = j0; jb < j1; jb += NC) {
        const int nc = j1 - jb < NC ? (int)(j1 - jb) : NC;
        block_runs(runs, d, jb, nc);
        if (gather)
            tap_table(taps, runs, nc, d);
        else
            run_masks(masks, runs, d);
        for (int k0 = 0; k0 < K; k0 += KC) {
            const int kc = K - k0 < KC ? K - k0 : KC;
            size_t ri = 0;
            for (int jp = 0; jp * NR < nc; jp++) {
                const size_t rb = ri;
                while (ri < runs.size() && runs[ri].jp == jp) ri++;
                const int used = nc - jp * NR < NR ? nc - jp * NR : NR;
                if (gather)
                    pack_cols_gather(bp, taps, jp * NR, k0, kc, x, d);
                else
                    pack_cols(bp, runs.data() + rb, runs.data() + ri, masks.data() + rb * d.KW, used, k0, kc, x, d);
                for (int ib = i0; ib < i1; ib += MR) {
                    micro_kernel(kc, ap + (int64_t)mpad * k0 + (int64_t)(ib - i0) * kc, bp, tile);
                    put(tile, ib, i1 - ib < MR ? i1 - ib : MR, runs.data() + rb, runs.data() + ri, k0 == 0);
                }
            }
        }
    }
}

// This thread's number and its team's size (which may be smaller than asked for: OMP_DYNAMIC,
// OMP_THREAD_LIMIT, or a call from inside another parallel region).
int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
int team_size() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// The threads for work of this many flops: one below 2^22 (a team costs more), else all.
int threads_for(int64_t flops) {
#ifdef _OPENMP
    return flops < ((int64_t)1 << 22) ? 1 : omp_get_max_threads();
#else
    (void)flops;
    return 1;
#endif
}

// The first exception a thread of a parallel region raised, rethrown after it (an exception
// must not leave the region: that ends the program).
struct TeamError {
    std::exception_ptr first;
    void catch_current() {
#pragma omp critical(vt_igemm_error)
        if (!first) first = std::current_exception();
    }
    void rethrow() const {
        if (first) std::rethrow_exception(first);
    }
};

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
    const int nt = threads_for(2 * (int64_t)M * K * NP);
    // Columns split in whole panels while each thread gets a few; else rows (late layers' few pixels).
    const bool by_cols = NP >= (int64_t)nt * 2 * NR;
    TeamError err;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = thread_id(), nth = team_size();
        try {
            if (by_cols) {
                const int64_t panels = (NP + NR - 1) / NR, per = (panels + nth - 1) / nth;
                const int64_t j0 = t * per * NR, j1 = (t + 1) * per * NR < NP ? (t + 1) * per * NR : NP;
                if (j0 < j1) gemm_blocks(0, M, j0, j1, x, weight, flip, d, put);
            } else {
                const int panels = (M + MR - 1) / MR, per = (panels + nth - 1) / nth;
                const int i0 = t * per * MR, i1 = (t + 1) * per * MR < M ? (t + 1) * per * MR : M;
                if (i0 < i1) gemm_blocks(i0, i1, 0, NP, x, weight, flip, d, put);
            }
        } catch (...) {
            err.catch_current();
        }
    }
    err.rethrow();
}

// ---- the weight gradient -------------------------------------------------------------------
// dW (OC, C*KH*KW) += dY (OC, N*P) @ cols^T: rows oc (A = dY, panels of MR), columns (c, kh, kw)
// (B = cols^T, panels of NR), the reduction over pixels in blocks of KC. Both operands are
// transposed from NCHW, where pixels are contiguous: A by plain copies (each of its values
// meets C*KH*KW columns, so its packing is cheap), B by masked gathers: lane (c, kh, kw) of
// pixel (n, oh, ow) is x at n C H W + c H W + (oh + kh - PH) W + (ow + kw - PW), its offset
// the lane's plus the pixel's, inside the image where bit kh KW + kw of the pixel's tap mask
// is set. Threads split the pixels, each summing into its own dW, added up at the end.

// The pixels [j0, j0 + kc): offsets (n C H W + oh W + ow) and masks of the taps inside the image.
void pixel_taps(int32_t* off, uint32_t* taps, int64_t j0, int kc, const ConvDims& d) {
    const int64_t P = (int64_t)d.OH * d.OW, CHW = (int64_t)d.C * d.H * d.W;
    for (int kk = 0; kk < kc; kk++) {
        const int64_t j = j0 + kk;
        const int n = (int)(j / P), p = (int)(j % P), oh = p / d.OW, ow = p % d.OW;
        off[kk] = (int32_t)(n * CHW + (int64_t)oh * d.W + ow);
        uint32_t m = 0;
        for (int kh = 0; kh < d.KH; kh++)
            for (int kw = 0; kw < d.KW; kw++) {
                const int ih = oh - d.PH + kh, iw = ow - d.PW + kw;
                if (ih >= 0 && ih < d.H && iw >= 0 && iw < d.W) m |= 1u << (kh * d.KW + kw);
            }
        taps[kk] = m;
    }
}

// Panels of MR rows of A = dY (rows [0, OC), pixels [j0, j0 + kc)): dst[ip][kk][r].
void pack_dy(float* dst, const float* dout, int64_t j0, int kc, const ConvDims& d) {
    const int64_t P = (int64_t)d.OH * d.OW;
    for (int ib = 0; ib < d.OC; ib += MR) {
        const int mr = d.OC - ib < MR ? d.OC - ib : MR;
        for (int kk = 0; kk < kc; kk++, dst += MR) {
            const int64_t j = j0 + kk, n = j / P, p = j % P;
            const float* src = dout + (n * d.OC + ib) * P + p;
            for (int r = 0; r < mr; r++) dst[r] = src[r * P];
            for (int r = mr; r < MR; r++) dst[r] = 0.f;
        }
    }
}

// One panel of B = cols^T (pixels [0, kc) of the block, columns [col0, col0 + NR)) by gathers.
void pack_cols_t(float* bp, const int32_t* off, const uint32_t* taps, int col0, int kc, const float* x,
                 const ConvDims& d) {
    const int KK = d.KH * d.KW, K = d.C * KK;
    alignas(64) int32_t lane_off[NR], lane_bit[NR];  // the lane's offset, its tap's bit
    for (int l = 0; l < NR; l++) {
        const int k = col0 + l, c = k / KK, kh = k % KK / d.KW, kw = k % d.KW;
        lane_off[l] = k < K ? (int32_t)((int64_t)c * d.H * d.W + (int64_t)(kh - d.PH) * d.W + (kw - d.PW)) : 0;
        lane_bit[l] = (int32_t)(1u << (k < K ? kh * d.KW + kw : 31));  // past the last column: a bit never set
    }
    for (int kk = 0; kk < kc; kk++, bp += NR) {
        const uint32_t m = taps[kk] & 0x7fffffffu;
#if defined(__AVX512F__)
        const __m512i po = _mm512_set1_epi32(off[kk]), pm = _mm512_set1_epi32((int)m);
        for (int v = 0; v < NV; v++) {
            const __m512i lo = _mm512_load_si512(lane_off + v * VL);
            const __mmask16 in = _mm512_test_epi32_mask(pm, _mm512_load_si512(lane_bit + v * VL));
            _mm512_store_ps(bp + v * VL, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in, _mm512_add_epi32(lo, po), x, 4));
        }
#else
        const __m256i po = _mm256_set1_epi32(off[kk]), pm = _mm256_set1_epi32((int)m);
        for (int v = 0; v < NV; v++) {
            const __m256i lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_off + v * VL));
            const __m256i lb = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_bit + v * VL));
            const __m256 in = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(pm, lb), lb));
            _mm256_store_ps(bp + v * VL, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, _mm256_add_epi32(lo, po), in, 4));
        }
#endif
    }
}

// dw (OC, K) += dY @ cols^T over the pixels [j0, j1).
void weight_grad_blocks(float* dw, int64_t j0, int64_t j1, const float* dout, const float* x, const ConvDims& d) {
    static thread_local Buf abuf, bbuf;
    int32_t off[KC];  // the block's pixels (pixel_taps)
    uint32_t taps[KC];
    alignas(64) float tile[MR * NR];
    const int K = d.C * d.KH * d.KW, mpad = (d.OC + MR - 1) / MR * MR;
    float* ap = abuf.get((size_t)mpad * KC);
    float* bp = bbuf.get((size_t)KC * NR);
    for (int64_t jb = j0; jb < j1; jb += KC) {
        const int kc = j1 - jb < KC ? (int)(j1 - jb) : KC;
        pixel_taps(off, taps, jb, kc, d);
        pack_dy(ap, dout, jb, kc, d);
        for (int col0 = 0; col0 < K; col0 += NR) {
            const int used = K - col0 < NR ? K - col0 : NR;
            pack_cols_t(bp, off, taps, col0, kc, x, d);
            for (int ib = 0; ib < d.OC; ib += MR) {
                micro_kernel(kc, ap + (int64_t)ib * kc, bp, tile);
                const int mr = d.OC - ib < MR ? d.OC - ib : MR;
                for (int r = 0; r < mr; r++) {
                    float* dst = dw + (int64_t)(ib + r) * K + col0;
                    for (int l = 0; l < used; l++) dst[l] += tile[r * NR + l];
                }
            }
        }
    }
}

// ---- Winograd F(2x2, 3x3) on the micro-kernel ------------------------------------------------
// Each 2x2 block of outputs ("tile", t = (n, th, tw)) is computed from the 4x4 input patch
// around it with 16 multiplies per (input channel, output channel) instead of 36 (winograd.cpp
// has the algebra): Y = A^T [U . V] A, U = G g G^T, V = B^T d B, and summed over channels each
// of the 16 positions xi of the transform is one GEMM, M[xi] (OC, tiles) = U[xi] (OC, C) @
// V[xi] (C, tiles). Here the tiles go in blocks of NR (one micro-kernel panel: 64 on AVX-512,
// 16 on AVX2): per block the input transform writes V straight in the micro-kernel's panel
// layout (16 panels of C x NR, the patches read by masked gathers through a (position, tile)
// offset table), then for MC output rows at a time the 16 GEMMs write M (16 x MC x NR) and the
// output transform writes those rows' outputs, all within one thread's cache; U is transformed
// and packed once per weight (wino_u: reused while the weight is unchanged, so once per
// training iteration in an unrolled graph). So no transformed plane goes through memory,
// which is what made winograd.cpp's OpenBLAS form lose on small maps. The input gradient at
// stride 1 is again such a convolution (flip, as igemm_conv's); the weight gradient is not
// (below).

constexpr int MC = 16 * MR;  // rows of M at a time (16 x MC x NR floats: 384 KB on AVX-512)

// U[xi] = G g G^T for every (row i, channel c), packed as pack_a packs A (K = C): position xi
// at dst + xi mpad C, its reduction blocks of KC at + mpad k0, panels of MR rows inside (rows
// past M zero). G's rows are (1, 0, 0), (1, 1, 1) / 2, (1, -1, 1) / 2, (0, 0, 1).
void wino_pack_u(float* dst, const float* w, bool flip, int M, int C, int mpad) {
    const int64_t plane = (int64_t)mpad * C;
#pragma omp parallel for schedule(static) if ((int64_t)M * C > 4096)
    for (int ib = 0; ib < mpad; ib += MR)
        for (int c = 0; c < C; c++) {
            const int k0 = c / KC * KC, kc = C - k0 < KC ? C - k0 : KC;
            float* at = dst + (int64_t)mpad * k0 + (int64_t)ib * kc + (int64_t)(c - k0) * MR;
            for (int r = 0; r < MR; r++) {
                const int i = ib + r;
                if (i >= M) {
                    for (int xi = 0; xi < 16; xi++) at[xi * plane + r] = 0.f;
                    continue;
                }
                float g[9];
                for (int t = 0; t < 9; t++) g[t] = weight_tap(w, flip, M, C, 9, i, c, t);
                float h[4][3];  // G g
                for (int j = 0; j < 3; j++) {
                    const float e = g[j] + g[6 + j];
                    h[0][j] = g[j], h[1][j] = 0.5f * (e + g[3 + j]), h[2][j] = 0.5f * (e - g[3 + j]), h[3][j] = g[6 + j];
                }
                for (int x = 0; x < 4; x++) {  // (G g) G^T
                    const float e = h[x][0] + h[x][2];
                    at[(x * 4 + 0) * plane + r] = h[x][0];
                    at[(x * 4 + 1) * plane + r] = 0.5f * (e + h[x][1]);
                    at[(x * 4 + 2) * plane + r] = 0.5f * (e - h[x][1]);
                    at[(x * 4 + 3) * plane + r] = h[x][2];
                }
            }
        }
}

// The transformed weights U (wino_pack_u) of the last few weights wino_conv saw, per calling
// thread: an unrolled graph convolves each weight at every time step (forward, and flipped for
// the input gradient), and a frozen backbone's weights never change. A weight is found by its
// address, flip and shape, and its U is reused only while the weight's contents are byte for
// byte those it was transformed from (an optimiser updates weights in place): a stale U can
// never be used, and a changed weight costs one compare more than no cache. The slots hold at
// most WINO_U_BUDGET bytes together (least recently used ones freed first; one weight larger
// than that alone is still kept). 32 slots: W5 (hcnn5, batch 8) convolves 21 weight and flip
// pairs through this path (counted with a trace of these calls; docs/benchmarks.md), and fewer
// slots would cycle the frozen backbone's transforms out at every iteration.
constexpr size_t WINO_U_BUDGET = size_t(256) << 20;
struct WinoU {
    const float* w = nullptr;  // null: the slot holds nothing valid
    bool flip = false;
    int M = 0, C = 0;
    std::vector<float> copy;  // the weight U was transformed from
    Buf u;
    uint64_t used = 0;
};

const float* wino_u(const float* w, bool flip, int M, int C, int mpad) {
    constexpr int SLOTS = 32;
    static thread_local WinoU slot[SLOTS];
    static thread_local uint64_t clock = 0;
    const size_t nw = (size_t)M * C * 9;
    WinoU* s = nullptr;
    for (WinoU& e : slot)
        if (e.w && e.w == w && e.flip == flip && e.M == M && e.C == C) s = &e;
    if (s && std::memcmp(s->copy.data(), w, nw * sizeof(float)) == 0) {
        s->used = ++clock;
        return s->u.p;
    }
    if (!s) {  // the least recently used slot
        s = &slot[0];
        for (WinoU& e : slot)
            if (e.used < s->used) s = &e;
    }
    s->w = nullptr;  // invalid until both the copy and U are complete
    const size_t need = (nw + (size_t)16 * mpad * C) * sizeof(float);
    auto held = [](const WinoU& e) { return (e.copy.capacity() + e.u.n) * sizeof(float); };
    auto release = [](WinoU& e) { e.w = nullptr, e.used = 0, std::vector<float>().swap(e.copy), e.u.release(); };
    if (held(*s) > 2 * need) release(*s);  // a much larger weight's buffers: not kept for this one
    for (;;) {  // within the budget: free the least recently used other slots
        size_t total = need;
        WinoU* lru = nullptr;
        for (WinoU& e : slot) {
            if (&e == s) continue;
            total += held(e);
            if (held(e) > 0 && (!lru || e.used < lru->used)) lru = &e;
        }
        if (total <= WINO_U_BUDGET || !lru) break;
        release(*lru);
    }
    s->copy.assign(w, w + nw);
    float* up = s->u.get((size_t)16 * mpad * C);
    wino_pack_u(up, w, flip, M, C, mpad);
    s->w = w, s->flip = flip, s->M = M, s->C = C, s->used = ++clock;
    return up;
}

// One tile (n, th, tw) of a 3x3 stride-1 convolution's 2x2 output blocks, within its image n:
// per patch position (k, l) the input offset ih W + iw where inside the image (in_ok bit k 4 +
// l), per output (y, x) the output offset oh OW + ow where inside the map (out_ok bit y 2 + x;
// (0, 0) always is).
struct WinoTile {
    int n;
    int64_t in[16], out[4];
    uint32_t in_ok, out_ok;
};

WinoTile wino_tile(int64_t t, const ConvDims& d) {
    const int TH = (d.OH + 1) / 2, TW = (d.OW + 1) / 2;
    const int th = (int)(t / TW % TH), tw = (int)(t % TW);
    WinoTile w{};
    w.n = (int)(t / ((int64_t)TH * TW));
    for (int k = 0; k < 4; k++)
        for (int l = 0; l < 4; l++) {
            const int ih = 2 * th - d.PH + k, iw = 2 * tw - d.PW + l;
            if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
            w.in[k * 4 + l] = (int64_t)ih * d.W + iw;
            w.in_ok |= 1u << (k * 4 + l);
        }
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 2; x++) {
            const int oh = 2 * th + y, ow = 2 * tw + x;
            if (oh >= d.OH || ow >= d.OW) continue;
            w.out[y * 2 + x] = (int64_t)oh * d.OW + ow;
            w.out_ok |= 1u << (y * 2 + x);
        }
    return w;
}

// The block of tiles [t0, t0 + NR): per patch position (k, l) and tile, the offset of its input
// pixel from a channel plane's start (n C H W + ih W + iw) and whether it lies inside the image
// (and the tile inside the block); per tile its output offset (n OC P + 2 th OW + 2 tw) and which
// of its 4 outputs lie inside the map (bit y 2 + x).
struct WinoTable {
    alignas(64) int32_t off[16][NR];
    uint32_t mask[16][NV];
    int64_t out[NR];
    uint8_t valid[NR];
};

void wino_table(WinoTable& tb, int64_t t0, int64_t T, const ConvDims& d) {
    const int64_t CHW = (int64_t)d.C * d.H * d.W, P = (int64_t)d.OH * d.OW;
    std::memset(tb.off, 0, sizeof tb.off), std::memset(tb.mask, 0, sizeof tb.mask);
    for (int lane = 0; lane < NR; lane++) {
        tb.out[lane] = 0, tb.valid[lane] = 0;
        if (t0 + lane >= T) continue;
        const WinoTile w = wino_tile(t0 + lane, d);
        tb.out[lane] = w.n * (int64_t)d.OC * P + w.out[0];
        tb.valid[lane] = (uint8_t)w.out_ok;
        for (int q = 0; q < 16; q++)
            if (w.in_ok >> q & 1) {
                tb.off[q][lane] = (int32_t)(w.n * CHW + w.in[q]);
                tb.mask[q][lane / VL] |= 1u << (lane % VL);
            }
    }
}

// p (a 4x4 patch d, row-major, each entry a vector of lanes) = B^T d B in place. B^T's rows
// are (1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1).
inline void wino_bt_d_b(V* p) {
    V r[16];  // B^T d: down the columns
    for (int l = 0; l < 4; l++) {
        r[0 + l] = vsub(p[0 + l], p[8 + l]), r[4 + l] = vadd(p[4 + l], p[8 + l]);
        r[8 + l] = vsub(p[8 + l], p[4 + l]), r[12 + l] = vsub(p[4 + l], p[12 + l]);
    }
    for (int k = 0; k < 4; k++) {  // (B^T d) B: along the rows
        const V* q = r + 4 * k;
        p[4 * k + 0] = vsub(q[0], q[2]), p[4 * k + 1] = vadd(q[1], q[2]);
        p[4 * k + 2] = vsub(q[2], q[1]), p[4 * k + 3] = vsub(q[1], q[3]);
    }
}

// V = B^T d B of the block's tiles, every channel: vp[xi][c][lane] (16 panels of C x NR).
void wino_input(float* vp, const WinoTable& tb, const float* x, const ConvDims& d) {
    const int64_t HW = (int64_t)d.H * d.W;
    for (int c = 0; c < d.C; c++) {
        const float* plane = x + c * HW;
        for (int v = 0; v < NV; v++) {
            V p[16];
            for (int q = 0; q < 16; q++) p[q] = vgather(plane, tb.off[q] + v * VL, tb.mask[q][v]);
            wino_bt_d_b(p);
            float* dst = vp + (int64_t)c * NR + v * VL;
            const int64_t step = (int64_t)d.C * NR;  // from one position's panel to the next
            for (int xi = 0; xi < 16; xi++) vstore(dst + xi * step, p[xi]);
        }
    }
}

// Y = A^T M A of the block's tiles for output rows [i0, i1) (M: mb[xi][row - i0][lane], the
// positions mc rows apart) into out: stored (+ bias), or added with accumulate.
void wino_output(float* out, const float* mb, int mc, int i0, int i1, const WinoTable& tb, const float* bias,
                 bool accumulate, const ConvDims& d) {
    const int64_t P = (int64_t)d.OH * d.OW, step = (int64_t)mc * NR;
    alignas(64) float y[4][NR];
    for (int oc = i0; oc < i1; oc++) {
        const float* m = mb + (int64_t)(oc - i0) * NR;
        for (int v = 0; v < NV; v++) {
            V q[16];
            for (int xi = 0; xi < 16; xi++) q[xi] = vload(m + xi * step + v * VL);
            V s[8];  // A^T M: s[0..3] = m0 + m1 + m2, s[4..7] = m1 - m2 - m3 (per column)
            for (int j = 0; j < 4; j++) {
                s[j] = vadd(vadd(q[j], q[4 + j]), q[8 + j]);
                s[4 + j] = vsub(vsub(q[4 + j], q[8 + j]), q[12 + j]);
            }
            for (int r = 0; r < 2; r++) {  // (A^T M) A
                const V* a = s + 4 * r;
                vstore(y[2 * r] + v * VL, vadd(vadd(a[0], a[1]), a[2]));
                vstore(y[2 * r + 1] + v * VL, vsub(vsub(a[1], a[2]), a[3]));
            }
        }
        const float b = bias && !accumulate ? bias[oc] : 0.f;
        for (int lane = 0; lane < NR; lane++) {
            const unsigned ok = tb.valid[lane];
            if (!ok) continue;
            float* o = out + tb.out[lane] + oc * P;
            const int64_t at[4] = {0, 1, d.OW, d.OW + 1};
            for (int e = 0; e < 4; e++)
                if (ok >> e & 1) {
                    if (accumulate)
                        o[at[e]] += y[e][lane];
                    else
                        o[at[e]] = y[e][lane] + b;
                }
        }
    }
}

// out (N, OC, OH, OW) = (or +=) the 3x3 stride-1 convolution of x by the weight (flip: as
// igemm_conv's), plus bias (may be null), by F(2x2, 3x3).
void wino_conv(float* out, const float* x, const float* weight, bool flip, const float* bias, bool accumulate,
               const ConvDims& d) {
    const int M = d.OC, C = d.C, mpad = (M + MR - 1) / MR * MR;
    const int64_t T = (int64_t)d.N * ((d.OH + 1) / 2) * ((d.OW + 1) / 2), blocks = (T + NR - 1) / NR;
    const float* up = wino_u(weight, flip, M, C, mpad);  // the caller's thread's; read by the team
    const int nt = threads_for(2 * 16 * (int64_t)mpad * C * T);
    TeamError err;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        static thread_local Buf vbuf, mbuf;
        static thread_local WinoTable tb;
        const int t = thread_id(), nth = team_size();
        try {
            float* vp = vbuf.get((size_t)16 * C * NR);
            float* mb = mbuf.get((size_t)16 * MC * NR);
            // blocks split while each thread gets two; else rows (few tiles: small maps or batches),
            // each thread then transforming every block's input itself
            int64_t b0 = 0, b1 = blocks;
            int r0 = 0, r1 = mpad;
            if (blocks >= 2 * nth) {
                const int64_t per = (blocks + nth - 1) / nth;
                b0 = t * per, b1 = (t + 1) * per < blocks ? (t + 1) * per : blocks;
            } else {
                const int per = (mpad / MR + nth - 1) / nth;
                r0 = t * per * MR, r1 = (t + 1) * per * MR < mpad ? (t + 1) * per * MR : mpad;
            }
            for (int64_t b = b0; b < b1 && r0 < r1; b++) {
                wino_table(tb, b * NR, T, d);
                wino_input(vp, tb, x, d);
                for (int i0 = r0; i0 < r1; i0 += MC) {  // rows in chunks: M stays in cache
                    const int i1 = i0 + MC < r1 ? i0 + MC : r1, mc = i1 - i0;
                    for (int xi = 0; xi < 16; xi++)
                        for (int k0 = 0; k0 < C; k0 += KC) {
                            const int kc = C - k0 < KC ? C - k0 : KC;
                            const float* a = up + (int64_t)xi * mpad * C + (int64_t)mpad * k0;
                            const float* bp = vp + ((int64_t)xi * C + k0) * NR;
                            float* mt = mb + (int64_t)xi * mc * NR;  // row i0 of position xi
                            for (int ib = i0; ib < i1; ib += MR) {
                                float* tile = mt + (int64_t)(ib - i0) * NR;
                                if (k0 == 0)
                                    micro_kernel(kc, a + (int64_t)ib * kc, bp, tile);
                                else
                                    micro_kernel<true>(kc, a + (int64_t)ib * kc, bp, tile);
                            }
                        }
                    if (i0 < M) wino_output(out, mb, mc, i0, i1 < M ? i1 : M, tb, bias, accumulate, d);
                }
            }
        } catch (...) {
            err.catch_current();
        }
    }
    err.rethrow();
}

// ---- the weight gradient by F(2x2, 3x3) ------------------------------------------------------
// Through Y = A^T M A, M[xi] = U[xi] V[xi], U = G g G^T: the gradient of M is dM = A dY A^T per
// tile (dY's 2x2 block, zero outside the map), of U dU[xi] (OC, C) = dM[xi] (OC, tiles) @
// V[xi]^T (tiles, C), and of the weight dW (oc, c) += G^T dU G: 16 GEMMs reducing over tiles
// where the implicit GEMM's reduces over 4x as many pixels with 9 taps (2.25x fewer
// multiplies). Rows oc (A = dM, panels of MR), columns c (B = V^T, panels of NR), both packed
// tile-major, a block of KT tiles at a time, in buffers the team shares. Both transforms run
// with their lanes down the channels, so x and dY are first copied channels-last (NCHW's
// channels lie H W apart: on 32x32 maps 4 KB, every lane of a gather in one cache set): V
// comes out in B's layout, dM's lanes go to A's panels of MR by masked stores. The threads
// split the block's tiles for the transforms, then the 16 positions x the column panels for the
// GEMMs (each such part of dU one thread's, accumulated over the blocks), and at the end the
// rows for dW = G^T dU G.
constexpr int KT = 128;  // tiles per reduction block

// dst (N, P, ld) = src (N, C, P) channels-last, the channels C..ld zero; images [n0, n1). In
// blocks of VL channels x VL pixels, each read as VL row vectors into a small buffer and
// written as its VL columns (gathers from L1); the blocks at the edges element by element.
void to_channels_last(float* dst, const float* src, int n0, int n1, int C, int64_t P, int ld) {
    alignas(64) float tmp[VL * VL];
    alignas(64) int32_t col[VL];
    for (int i = 0; i < VL; i++) col[i] = i * VL;
    const uint32_t all = (1u << VL) - 1;
    for (int n = n0; n < n1; n++)
        for (int64_t p0 = 0; p0 < P; p0 += VL) {
            const int pb = P - p0 < VL ? (int)(P - p0) : VL;
            for (int c0 = 0; c0 < ld; c0 += VL) {
                float* o = dst + ((int64_t)n * P + p0) * ld + c0;
                const float* s = src + (int64_t)n * C * P + p0;  // channel c's pixels at s + c P
                if (pb == VL && c0 + VL <= C) {
                    for (int c = 0; c < VL; c++) vstore(tmp + c * VL, vloadu(s + (int64_t)(c0 + c) * P));
                    for (int p = 0; p < VL; p++) vstore(o + (int64_t)p * ld, vgather(tmp + p, col, all));
                    continue;
                }
                for (int p = 0; p < pb; p++)
                    for (int c = 0; c < VL; c++) o[(int64_t)p * ld + c] = c0 + c < C ? s[(int64_t)(c0 + c) * P + p] : 0.f;
            }
        }
}

// The block's tile tt into B = V^T: bp[xi][jp][tt][lane], lane = channel jp NR + lane, from xt
// (its image's pixels x npan NR channels).
void wino_pack_v(float* bp, int kt, int tt, const WinoTile& w, const float* xt, int npan) {
    const int ld = npan * NR;
    for (int jp = 0; jp < npan; jp++)
        for (int v = 0; v < NV; v++) {
            const int c0 = jp * NR + v * VL;
            V p[16];
            for (int q = 0; q < 16; q++) p[q] = w.in_ok >> q & 1 ? vload(xt + w.in[q] * ld + c0) : vzero();
            wino_bt_d_b(p);
            for (int xi = 0; xi < 16; xi++) vstore(bp + (((int64_t)xi * npan + jp) * kt + tt) * NR + v * VL, p[xi]);
        }
}

// The block's tile tt into A = dM: ap[xi][ip][tt][r], row ip MR + r, from dt (its image's
// output pixels x ld >= mpad rows, rows past OC zero), VL rows at a time, each vector's lanes
// stored into the panels they fall in (up to 4 on AVX-512, 2 on AVX2) by masked stores.
void wino_pack_dm(float* ap, int kt, int tt, const WinoTile& w, const float* dt, int ld, int mpad) {
    const int nip = mpad / MR;
    const V z = vzero();
    for (int row0 = 0; row0 < mpad; row0 += VL) {
        V e[4];  // dY's 2x2 block (y, x)
        for (int q = 0; q < 4; q++) e[q] = w.out_ok >> q & 1 ? vload(dt + w.out[q] * ld + row0) : z;
        // A dY: rows (d0, d0 + d1, d0 - d1, -d1) of dY's rows d0, d1; then (A dY) A^T along them
        const V r[4][2] = {{e[0], e[1]}, {vadd(e[0], e[2]), vadd(e[1], e[3])},
                           {vsub(e[0], e[2]), vsub(e[1], e[3])}, {vsub(z, e[2]), vsub(z, e[3])}};
        V m[16];
        for (int k = 0; k < 4; k++)
            m[4 * k] = r[k][0], m[4 * k + 1] = vadd(r[k][0], r[k][1]), m[4 * k + 2] = vsub(r[k][0], r[k][1]),
                  m[4 * k + 3] = vsub(z, r[k][1]);
        const int row1 = row0 + VL < mpad ? row0 + VL : mpad;
        for (int ip = row0 / MR; ip * MR < row1; ip++) {
            const int lo = ip * MR > row0 ? ip * MR : row0, hi = ip * MR + MR < row1 ? ip * MR + MR : row1;
            const uint32_t lanes = ((1u << (hi - row0)) - 1) & ~((1u << (lo - row0)) - 1);
            // lane l (row row0 + l) to r = row0 + l - ip MR of the panel's tile tt
            float* dst = ap + ((int64_t)ip * kt + tt) * MR + (row0 - ip * MR);
            for (int xi = 0; xi < 16; xi++) vstore_mask(dst + (int64_t)xi * nip * kt * MR, m[xi], lanes);
        }
    }
}

// dW (OC, C, 3, 3) += G^T dU G for rows [i0, i1); dU[xi][ip][jp] MR x NR tiles.
void wino_weight_out(float* dw, const float* du, int i0, int i1, int C, int mpad, int npan) {
    const int64_t plane = (int64_t)mpad * npan * NR;  // one position's dU
    for (int oc = i0; oc < i1; oc++)
        for (int c = 0; c < C; c++) {
            const float* u = du + ((int64_t)(oc / MR) * npan + c / NR) * MR * NR + (oc % MR) * NR + c % NR;
            float h[3][4];  // G^T dU: G^T's rows (1, 1/2, 1/2, 0), (0, 1/2, -1/2, 0), (0, 1/2, 1/2, 1)
            for (int l = 0; l < 4; l++) {
                const float u0 = u[l * plane], u1 = u[(4 + l) * plane], u2 = u[(8 + l) * plane], u3 = u[(12 + l) * plane];
                h[0][l] = u0 + 0.5f * (u1 + u2), h[1][l] = 0.5f * (u1 - u2), h[2][l] = 0.5f * (u1 + u2) + u3;
            }
            float* g = dw + ((int64_t)oc * C + c) * 9;
            for (int i = 0; i < 3; i++) {  // (G^T dU) G
                const float* a = h[i];
                g[i * 3 + 0] += a[0] + 0.5f * (a[1] + a[2]);
                g[i * 3 + 1] += 0.5f * (a[1] - a[2]);
                g[i * 3 + 2] += 0.5f * (a[1] + a[2]) + a[3];
            }
        }
}

// dW (OC, C, 3, 3) += the weight gradient of the 3x3 stride-1 convolution of x by F(2x2, 3x3).
void wino_weight_grad(float* dw, const float* dout, const float* x, const ConvDims& d) {
    const int M = d.OC, C = d.C, mpad = (M + MR - 1) / MR * MR, mld = (mpad + VL - 1) / VL * VL;
    const int npan = (C + NR - 1) / NR, nip = mpad / MR;
    const int64_t T = (int64_t)d.N * ((d.OH + 1) / 2) * ((d.OW + 1) / 2);
    // the caller's thread's buffers, shared by the team (allocated here: nothing in the team throws)
    static thread_local Buf abuf, bbuf, ubuf, xbuf, dbuf;
    float* ap = abuf.get((size_t)16 * mpad * KT);
    float* bp = bbuf.get((size_t)16 * npan * NR * KT);
    float* du = ubuf.get((size_t)16 * mpad * npan * NR);
    float* xt = xbuf.get((size_t)d.N * d.H * d.W * npan * NR);
    float* dt = dbuf.get((size_t)d.N * d.OH * d.OW * mld);
    std::memset(du, 0, sizeof(float) * 16 * mpad * npan * NR);
    const int nt = threads_for(2 * 16 * (int64_t)mpad * C * T);
    const int units = 16 * npan;  // the GEMMs' (position, column panel)
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = thread_id(), nth = team_size();
        const int n0 = (int)((int64_t)d.N * t / nth), n1 = (int)((int64_t)d.N * (t + 1) / nth);
        to_channels_last(xt, x, n0, n1, C, (int64_t)d.H * d.W, npan * NR);
        to_channels_last(dt, dout, n0, n1, M, (int64_t)d.OH * d.OW, mld);
#pragma omp barrier
        for (int64_t t0 = 0; t0 < T; t0 += KT) {
            const int kt = T - t0 < KT ? (int)(T - t0) : KT;
            for (int tt = kt * t / nth; tt < kt * (t + 1) / nth; tt++) {  // (A's panels pack 6 rows a tile)
                const WinoTile w = wino_tile(t0 + tt, d);
                wino_pack_v(bp, kt, tt, w, xt + (int64_t)w.n * d.H * d.W * npan * NR, npan);
                wino_pack_dm(ap, kt, tt, w, dt + (int64_t)w.n * d.OH * d.OW * mld, mld, mpad);
            }
#pragma omp barrier
            for (int u = t; u < units; u += nth) {
                const int xi = u / npan, jp = u % npan;
                const float* b = bp + ((int64_t)xi * npan + jp) * kt * NR;
                for (int ip = 0; ip < nip; ip++)
                    micro_kernel<true>(kt, ap + ((int64_t)xi * nip + ip) * kt * MR, b,
                                       du + (((int64_t)xi * nip + ip) * npan + jp) * MR * NR);
            }
#pragma omp barrier
        }
        const int i0 = (int)((int64_t)M * t / nth), i1 = (int)((int64_t)M * (t + 1) / nth);
        if (i0 < i1) wino_weight_out(dw, du, i0, i1, C, mpad, npan);
    }
}

}  // namespace

bool igemm_applies(const ConvDims& d) {
    // gathers address x and dY with 32-bit offsets
    const int64_t limit = (int64_t)1 << 31;
    return d.SH == 1 && d.SW == 1 && !d.is_pointwise() && d.PH < d.KH && d.PW < d.KW &&
           (int64_t)d.N * d.C * d.H * d.W < limit && (int64_t)d.N * d.OC * d.OH * d.OW < limit;
}

bool igemm_weight_grad_applies(const ConvDims& d) { return igemm_applies(d) && d.KH * d.KW <= 31; }

void conv2d_igemm_backward_weight(float* dweight, const float* dout, const float* inp, const ConvDims& d) {
    const int K = d.C * d.KH * d.KW;
    const int64_t NP = (int64_t)d.N * d.OH * d.OW;
    const int nt0 = threads_for(2 * (int64_t)d.OC * K * NP);
    const int64_t blocks = (NP + KC - 1) / KC;
    const int nt = nt0 < blocks ? nt0 : (int)blocks;
    if (nt <= 1) return weight_grad_blocks(dweight, 0, NP, dout, inp, d);
    std::vector<float*> part((size_t)nt, nullptr);  // thread t > 0 sums into its own; thread 0 into dweight
    TeamError err;
#pragma omp parallel num_threads(nt)
    {
        static thread_local Buf pbuf;
        const int t = thread_id(), nth = team_size();
        try {  // no exception may skip the barrier below
            const int64_t per = (blocks + nth - 1) / nth, j0 = t * per * KC;
            const int64_t j1 = (t + 1) * per * KC < NP ? (t + 1) * per * KC : NP;
            float* mine = dweight;
            if (t > 0) {
                mine = pbuf.get((size_t)d.OC * K);
                std::memset(mine, 0, sizeof(float) * d.OC * K);
            }
            part[(size_t)t] = mine;
            if (j0 < j1) weight_grad_blocks(mine, j0, j1, dout, inp, d);
        } catch (...) {
            err.catch_current();
        }
#pragma omp barrier
        if (!err.first) {
            const int64_t n = (int64_t)d.OC * K, chunk = (n + nth - 1) / nth, e0 = t * chunk;
            const int64_t e1 = e0 + chunk < n ? e0 + chunk : n;
            for (int u = 1; u < nth; u++)
                for (int64_t e = e0; e < e1; e++) dweight[e] += part[(size_t)u][e];
        }
    }
    err.rethrow();
}

void conv2d_igemm_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvDims& d) {
    igemm_conv(out, inp, weight, false, bias, false, d);
}

// At stride 1 the input gradient is itself a convolution: of dY, padded by K - 1 - P, by the
// weight with its channels swapped and its taps flipped (flip); accumulated into dX.
static ConvDims input_grad_dims(const ConvDims& d) {
    ConvDims t = d;
    t.C = d.OC, t.H = d.OH, t.W = d.OW, t.OC = d.C, t.OH = d.H, t.OW = d.W;
    t.PH = d.KH - 1 - d.PH, t.PW = d.KW - 1 - d.PW;
    return t;
}

void conv2d_igemm_backward_input(float* dinp, const float* dout, const float* weight, const ConvDims& d) {
    igemm_conv(dinp, dout, weight, true, nullptr, true, input_grad_dims(d));
}

// F(2x2, 3x3) for 3x3 stride-1 convolutions whose input gradient is one too (padding <= 2).
bool wino_fused_applies(const ConvDims& d) {
    return igemm_applies(d) && d.KH == 3 && d.KW == 3 && d.PH <= 2 && d.PW <= 2;
}

void conv2d_wino_fused_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvDims& d) {
    wino_conv(out, inp, weight, false, bias, false, d);
}

void conv2d_wino_fused_backward_input(float* dinp, const float* dout, const float* weight, const ConvDims& d) {
    wino_conv(dinp, dout, weight, true, nullptr, true, input_grad_dims(d));
}

void conv2d_wino_fused_backward_weight(float* dweight, const float* dout, const float* inp, const ConvDims& d) {
    wino_weight_grad(dweight, dout, inp, d);
}

#endif  // VT_IGEMM

}  // namespace vt::cpu

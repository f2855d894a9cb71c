// spatial.cu: CUDA max-pool, channel-block copies (concat/split) and bilinear resize; twin of
// kernels/cpu/spatial.cpp.
//
// Forward kernels run one thread per output element. The backward kernels gather instead
// of scattering: one thread per input element walks the outputs whose window (pool) or taps
// (resize) can reach it, in the order the CPU's scatter visits them. No atomics: results are
// deterministic and round the same way as the CPU's.
#include <cmath>

#include "kernels/cuda/internal.cuh"

namespace vt::cuda {

// ---- max-pool --------------------------------------------------------------------------------

// Padded cells never win; ties go to the first maximum in row-major window order.
__global__ void maxpool_forward_kernel(float* out, int32_t* argmax, const float* inp, PoolDims d) {
    const int64_t OP = (int64_t)d.OH * d.OW;
    CUDA_GRID_LOOP(i, (int64_t)d.N * d.C * OP) {
        int64_t pl = i / OP;
        int oh = (int)(i % OP / d.OW), ow = (int)(i % d.OW);
        const float* x = inp + pl * d.H * d.W;
        int h0 = oh * d.S - d.P, h1 = h0 + d.K, w0 = ow * d.S - d.P, w1 = w0 + d.K;
        h0 = max(h0, 0);
        h1 = min(h1, d.H);
        w0 = max(w0, 0);
        w1 = min(w1, d.W);
        int best = h0 * d.W + w0;
        float m = x[best];
        for (int h = h0; h < h1; h++)
            for (int w = w0; w < w1; w++)
                if (x[h * d.W + w] > m) {
                    m = x[h * d.W + w];
                    best = h * d.W + w;
                }
        out[i] = m;
        argmax[i] = best;
    }
}

// First output index o >= 0 whose window [o*S - P, o*S - P + K) contains x, and the last.
__device__ inline int first_window(int x, int K, int S, int P) {
    int t = x + P - K + 1;
    return t <= 0 ? 0 : (t + S - 1) / S;
}

__global__ void maxpool_backward_kernel(float* dinp, const float* dout, const int32_t* argmax, PoolDims d) {
    const int64_t OP = (int64_t)d.OH * d.OW;
    CUDA_GRID_LOOP(i, (int64_t)d.N * d.C * d.H * d.W) {
        int64_t pl = i / ((int64_t)d.H * d.W);
        int flat = (int)(i % ((int64_t)d.H * d.W)), h = flat / d.W, w = flat % d.W;
        int oh0 = first_window(h, d.K, d.S, d.P), oh1 = min(d.OH - 1, (h + d.P) / d.S);
        int ow0 = first_window(w, d.K, d.S, d.P), ow1 = min(d.OW - 1, (w + d.P) / d.S);
        const int32_t* a = argmax + pl * OP;
        const float* g = dout + pl * OP;
        float acc = dinp[i];
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++)
                if (a[oh * d.OW + ow] == flat) acc += g[oh * d.OW + ow];
        dinp[i] = acc;
    }
}

// out = inp at the argmax (the pool with its winners held fixed)
__global__ void maxpool_gather_kernel(float* out, const int32_t* argmax, const float* inp, PoolDims d) {
    const int64_t OP = (int64_t)d.OH * d.OW;
    CUDA_GRID_LOOP(i, (int64_t)d.N * d.C * OP) out[i] = inp[i / OP * d.H * d.W + argmax[i]];
}

void maxpool_forward(float* out, int32_t* argmax, const float* inp, const PoolDims& d) {
    int64_t n = (int64_t)d.N * d.C * d.OH * d.OW;
    if (n <= 0) return;
    maxpool_forward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(out, argmax, inp, d);
    CUDA_LAUNCH_CHECK();
}

void maxpool_backward(float* dinp, const float* dout, const int32_t* argmax, const PoolDims& d) {
    int64_t n = (int64_t)d.N * d.C * d.H * d.W;
    if (n <= 0) return;
    maxpool_backward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dinp, dout, argmax, d);
    CUDA_LAUNCH_CHECK();
}

void maxpool_gather(float* out, const int32_t* argmax, const float* inp, const PoolDims& d) {
    int64_t n = (int64_t)d.N * d.C * d.OH * d.OW;
    if (n <= 0) return;
    maxpool_gather_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(out, argmax, inp, d);
    CUDA_LAUNCH_CHECK();
}

// ---- channel blocks --------------------------------------------------------------------------

// dst[n, dc0 + c, :] (=/+=) src[n, sc0 + c, :] for c < C
__global__ void chan_copy_kernel(float* dst, int DC, int dc0, const float* src, int SC, int sc0, int C, int N,
                                 int64_t HW, bool accumulate) {
    CUDA_GRID_LOOP(i, (int64_t)N * C * HW) {
        int64_t k = i % HW, t = i / HW;
        int c = (int)(t % C), n = (int)(t / C);
        float v = src[((int64_t)n * SC + sc0 + c) * HW + k];
        float* o = dst + ((int64_t)n * DC + dc0 + c) * HW + k;
        *o = accumulate ? *o + v : v;
    }
}

void chan_copy(float* dst, int DC, int dc0, const float* src, int SC, int sc0, int C, int N, int64_t HW,
               bool accumulate) {
    int64_t n = (int64_t)N * C * HW;
    if (n <= 0) return;
    chan_copy_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dst, DC, dc0, src, SC, sc0, C, N, HW, accumulate);
    CUDA_LAUNCH_CHECK();
}

// ---- bilinear resize, align_corners = true ---------------------------------------------------

// Output pixel o samples input position o * (in-1)/(out-1), between i0 and i1 (the CPU's
// bilinear_tap, the same float arithmetic).
struct Tap {
    int i0, i1;
    float w1;  // weight of i1; i0 gets 1 - w1
};

__device__ inline Tap bilinear_tap(int o, int in, int out) {
    float s = out > 1 ? (float)o * (in - 1) / (out - 1) : 0.f;
    int i0 = (int)floorf(s);
    if (i0 > in - 1) i0 = in - 1;
    int i1 = i0 + 1 < in ? i0 + 1 : in - 1;
    return {i0, i1, s - i0};
}

// The outputs o in [lo, hi] may tap input i (floor of o's position within one of i): a
// conservative range, one output wider on each side than exact arithmetic gives.
__device__ inline void tap_range(int i, int in, int out, int* lo, int* hi) {
    if (in == 1) {
        *lo = 0;
        *hi = out - 1;
        return;
    }
    double r = (double)(out - 1) / (in - 1);  // outputs per input step
    *lo = max(0, (int)floor((i - 1) * r) - 1);
    *hi = min(out - 1, (int)ceil((i + 1) * r) + 1);
}

__global__ void resize_forward_kernel(float* out, const float* inp, int NC, int H, int W, int OH, int OW) {
    const int64_t OP = (int64_t)OH * OW;
    CUDA_GRID_LOOP(i, (int64_t)NC * OP) {
        int64_t pl = i / OP;
        int oh = (int)(i % OP / OW), ow = (int)(i % OW);
        const float* x = inp + pl * H * W;
        Tap th = bilinear_tap(oh, H, OH), tw = bilinear_tap(ow, W, OW);
        float top = x[th.i0 * W + tw.i0] * (1 - tw.w1) + x[th.i0 * W + tw.i1] * tw.w1;
        float bot = x[th.i1 * W + tw.i0] * (1 - tw.w1) + x[th.i1 * W + tw.i1] * tw.w1;
        out[i] = top * (1 - th.w1) + bot * th.w1;
    }
}

__global__ void resize_backward_kernel(float* dinp, const float* dout, int NC, int H, int W, int OH, int OW) {
    CUDA_GRID_LOOP(i, (int64_t)NC * H * W) {
        int64_t pl = i / ((int64_t)H * W);
        int ih = (int)(i / W % H), iw = (int)(i % W);
        const float* dy = dout + pl * OH * OW;
        int oh0, oh1, ow0, ow1;
        tap_range(ih, H, OH, &oh0, &oh1);
        tap_range(iw, W, OW, &ow0, &ow1);
        float acc = dinp[i];
        for (int oh = oh0; oh <= oh1; oh++) {
            Tap th = bilinear_tap(oh, H, OH);
            if (th.i0 != ih && th.i1 != ih) continue;
            for (int ow = ow0; ow <= ow1; ow++) {
                Tap tw = bilinear_tap(ow, W, OW);
                if (tw.i0 != iw && tw.i1 != iw) continue;
                float g = dy[oh * OW + ow];  // the four taps in the CPU's order
                if (th.i0 == ih && tw.i0 == iw) acc += g * (1 - th.w1) * (1 - tw.w1);
                if (th.i0 == ih && tw.i1 == iw) acc += g * (1 - th.w1) * tw.w1;
                if (th.i1 == ih && tw.i0 == iw) acc += g * th.w1 * (1 - tw.w1);
                if (th.i1 == ih && tw.i1 == iw) acc += g * th.w1 * tw.w1;
            }
        }
        dinp[i] = acc;
    }
}

void resize_forward(float* out, const float* inp, int NC, int H, int W, int OH, int OW) {
    int64_t n = (int64_t)NC * OH * OW;
    if (n <= 0) return;
    resize_forward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(out, inp, NC, H, W, OH, OW);
    CUDA_LAUNCH_CHECK();
}

void resize_backward(float* dinp, const float* dout, int NC, int H, int W, int OH, int OW) {
    int64_t n = (int64_t)NC * H * W;
    if (n <= 0) return;
    resize_backward_kernel<<<grid_for(n), BLOCK, 0, stream()>>>(dinp, dout, NC, H, W, OH, OW);
    CUDA_LAUNCH_CHECK();
}

}  // namespace vt::cuda

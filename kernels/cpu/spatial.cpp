// spatial.cpp: CPU max-pool, channel-block copies (concat/split) and bilinear resize.
// Every loop runs over whole (n, c) planes, so the backward scatters never race.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu.h"

namespace vt::cpu {

// Padded cells never win: the window max is taken over the in-bounds cells only.
void maxpool_forward(float* out, int32_t* argmax, const float* inp, const PoolDims& d) {
    const int64_t planes = (int64_t)d.N * d.C;
#pragma omp parallel for if (planes * d.H * d.W > PAR_MIN)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float* x = inp + pl * d.H * d.W;
        float* y = out + pl * d.OH * d.OW;
        int32_t* a = argmax + pl * d.OH * d.OW;
        for (int oh = 0; oh < d.OH; oh++) {
            int h0 = oh * d.S - d.P, h1 = h0 + d.K;
            if (h0 < 0) h0 = 0;
            if (h1 > d.H) h1 = d.H;
            for (int ow = 0; ow < d.OW; ow++) {
                int w0 = ow * d.S - d.P, w1 = w0 + d.K;
                if (w0 < 0) w0 = 0;
                if (w1 > d.W) w1 = d.W;
                int best = h0 * d.W + w0;
                float m = x[best];
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++)
                        if (x[h * d.W + w] > m) {
                            m = x[h * d.W + w];
                            best = h * d.W + w;
                        }
                y[oh * d.OW + ow] = m;
                a[oh * d.OW + ow] = best;
            }
        }
    }
}

void maxpool_backward(float* dinp, const float* dout, const int32_t* argmax, const PoolDims& d) {
    const int64_t planes = (int64_t)d.N * d.C, OP = (int64_t)d.OH * d.OW;
#pragma omp parallel for if (planes * OP > PAR_MIN)
    for (int64_t pl = 0; pl < planes; pl++) {
        float* dx = dinp + pl * d.H * d.W;
        for (int64_t o = 0; o < OP; o++) dx[argmax[pl * OP + o]] += dout[pl * OP + o];
    }
}

void maxpool_gather(float* out, const int32_t* argmax, const float* inp, const PoolDims& d) {
    const int64_t planes = (int64_t)d.N * d.C, OP = (int64_t)d.OH * d.OW;
#pragma omp parallel for if (planes * OP > PAR_MIN)
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t o = 0; o < OP; o++) out[pl * OP + o] = inp[pl * d.H * d.W + argmax[pl * OP + o]];
}

void chan_copy(float* dst, int DC, int dc0, const float* src, int SC, int sc0, int C, int N, int64_t HW,
               bool accumulate) {
#pragma omp parallel for collapse(2) if ((int64_t)N * C * HW > PAR_MIN)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float* o = dst + ((int64_t)n * DC + dc0 + c) * HW;
            const float* i = src + ((int64_t)n * SC + sc0 + c) * HW;
            if (accumulate)
                for (int64_t k = 0; k < HW; k++) o[k] += i[k];
            else
                std::memcpy(o, i, sizeof(float) * HW);
        }
}

// Bilinear sampling with align_corners = true: output pixel o maps to o * (in-1)/(out-1).
struct Tap {
    int i0, i1;
    float w1;  // weight of i1; i0 gets 1 - w1
};

static Tap bilinear_tap(int o, int in, int out) {
    float s = out > 1 ? (float)o * (in - 1) / (out - 1) : 0.f;
    int i0 = (int)std::floor(s);
    if (i0 > in - 1) i0 = in - 1;
    int i1 = i0 + 1 < in ? i0 + 1 : in - 1;
    return {i0, i1, s - i0};
}

static std::vector<Tap> bilinear_taps(int in, int out) {
    std::vector<Tap> t(out);
    for (int o = 0; o < out; o++) t[o] = bilinear_tap(o, in, out);
    return t;
}

// Separable: each plane is resized along w into H rows of OW (rows), then along h; the taps
// are computed once per call. (A per-pixel version with four scattered += per output pixel
// spent 2% of an lstm + conv5:conv2 training step upsampling conv5's 1x1 map.)
void resize_forward(float* out, const float* inp, int NC, int H, int W, int OH, int OW) {
    const std::vector<Tap> th = bilinear_taps(H, OH), tw = bilinear_taps(W, OW);
#pragma omp parallel if ((int64_t)NC * (H * W + OH * OW) > PAR_MIN)
    {
        std::vector<float> rows((size_t)H * OW);
#pragma omp for
        for (int pl = 0; pl < NC; pl++) {
            const float* x = inp + (int64_t)pl * H * W;
            float* y = out + (int64_t)pl * OH * OW;
            for (int h = 0; h < H; h++) {
                const float* xr = x + (int64_t)h * W;
                float* r = rows.data() + (int64_t)h * OW;
                for (int ow = 0; ow < OW; ow++) r[ow] = xr[tw[ow].i0] * (1 - tw[ow].w1) + xr[tw[ow].i1] * tw[ow].w1;
            }
            for (int oh = 0; oh < OH; oh++) {
                const float *top = rows.data() + (int64_t)th[oh].i0 * OW, *bot = rows.data() + (int64_t)th[oh].i1 * OW;
                const float w1 = th[oh].w1;
                float* yr = y + (int64_t)oh * OW;
                for (int ow = 0; ow < OW; ow++) yr[ow] = top[ow] * (1 - w1) + bot[ow] * w1;
            }
        }
    }
}

// The adjoint, in the reverse order: along h into rows (H x OW), then along w into dinp.
void resize_backward(float* dinp, const float* dout, int NC, int H, int W, int OH, int OW) {
    const std::vector<Tap> th = bilinear_taps(H, OH), tw = bilinear_taps(W, OW);
#pragma omp parallel if ((int64_t)NC * (H * W + OH * OW) > PAR_MIN)
    {
        std::vector<float> rows((size_t)H * OW);
#pragma omp for
        for (int pl = 0; pl < NC; pl++) {
            float* dx = dinp + (int64_t)pl * H * W;
            const float* dy = dout + (int64_t)pl * OH * OW;
            std::fill(rows.begin(), rows.end(), 0.f);
            for (int oh = 0; oh < OH; oh++) {
                float *top = rows.data() + (int64_t)th[oh].i0 * OW, *bot = rows.data() + (int64_t)th[oh].i1 * OW;
                const float w1 = th[oh].w1;
                const float* g = dy + (int64_t)oh * OW;
                for (int ow = 0; ow < OW; ow++) {
                    top[ow] += g[ow] * (1 - w1);
                    bot[ow] += g[ow] * w1;
                }
            }
            for (int h = 0; h < H; h++) {
                const float* r = rows.data() + (int64_t)h * OW;
                float* dxr = dx + (int64_t)h * W;
                for (int ow = 0; ow < OW; ow++) {
                    dxr[tw[ow].i0] += r[ow] * (1 - tw[ow].w1);
                    dxr[tw[ow].i1] += r[ow] * tw[ow].w1;
                }
            }
        }
    }
}

}  // namespace vt::cpu

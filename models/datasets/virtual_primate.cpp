// virtual_primate.cpp: the simulated dataset from a known teacher ConvRNN (see
// virtual_primate.h for the pipeline and the file).
#include "models/datasets/virtual_primate.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/io/image.h"
#include "engine/ops.h"
#include "engine/progress.h"
#include "models/datasets/npz_stream.h"

namespace vt {

namespace {

constexpr int CALIBRATION_IMAGES = 8;  // images the teacher's recipe is calibrated on
constexpr int CALIBRATION_STEPS = 10;  // over a layer's first image-driven steps
constexpr double RATE_MAX = 500;       // sp/s: rates saturate as RATE_MAX tanh(rate / RATE_MAX)
constexpr double LINEAR_BASE_MAX = 100;  // sp/s: the most a linear site's baseline is raised to
const char* GENERATOR = "make_virtual_primate 1";

double softplus(double x) {
    return x > 30 ? x : x < -30 ? std::exp(x) : std::log1p(std::exp(x));
}

// Re-raises an error of a parser shared with other flags under this tool's flag name.
template <class F>
auto as_flag(const char* flag, const char* generic_prefix, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const Error& e) {
        std::string m = e.what();
        if (generic_prefix && m.rfind(generic_prefix, 0) == 0) m = m.substr(std::string(generic_prefix).size());
        fail("%s: %s", flag, m.c_str());
    }
}

// ---- the teacher's recipe ---------------------------------------------------------------

// The recipe pairs the channels of a layer: even channel 2k is a FAST unit, odd channel
// 2k+1 its SLOW partner, which integrates the same input (x of channel 2k) with a long
// memory and subtracts itself from the fast unit's candidate. The fast unit thus answers
// the onset with a transient, adapts as its partner charges, and rebounds at the offset;
// the slow unit carries a memory of the image that fades over 50-120 ms after it goes.
//
// One gate's weights for one kind of unit o (fast or slow), in a cell conv over
// [x (Cx channels), h (Ch channels)]: x_self / x_pair / h_self / h_pair are centre-tap
// weights from channel o / its partner o^1; x_rand and h_rand are the output std of random
// 3x3 weights over all channels (for unit-variance inputs); the bias is U(b_lo, b_hi).
// x, the pre-memory, has mean 0 and std 1 per channel (standardise_conv).
struct Gate {
    float x_self, x_pair, x_rand, h_self, h_pair, h_rand, b_lo, b_hi;
};
struct GatePair {
    Gate fast, slow;  // even and odd channels
};
GatePair same(Gate g) {
    return {g, g};
}

void set_gate_conv(const Tensor& w, const Tensor& b, int Cx, int Ch, int block, const std::vector<GatePair>& gates,
                   Rng& r) {
    const int OC = (int)gates.size() * block, IC = Cx + Ch;
    check_shape(w, {OC, IC, 3, 3}, "teacher cell weight");
    check_shape(b, {OC}, "teacher cell bias");
    std::vector<float> W((size_t)OC * IC * 9), B(OC);
    for (int g = 0; g < (int)gates.size(); g++)
        for (int o = 0; o < block; o++) {
            const Gate& G = o % 2 ? gates[g].slow : gates[g].fast;
            const int row = g * block + o, pair = o ^ 1;
            for (int c = 0; c < IC; c++)
                for (int tap = 0; tap < 9; tap++) {
                    bool is_x = c < Cx;
                    int cc = is_x ? c : c - Cx;
                    float v = (is_x ? G.x_rand / std::sqrt(9.f * Cx) : G.h_rand / std::sqrt(9.f * Ch)) * r.normal();
                    if (tap == 4 && cc == o) v += is_x ? G.x_self : G.h_self;
                    if (tap == 4 && cc == pair) v += is_x ? G.x_pair : G.h_pair;
                    W[((size_t)row * IC + c) * 9 + tap] = v;
                }
            B[row] = U(r, G.b_lo, G.b_hi);
        }
    backend_copy_from_host(w.device(), w.data(), W.data(), (int64_t)W.size());
    backend_copy_from_host(b.device(), b.data(), B.data(), (int64_t)B.size());
}

// The candidate (or the plain RNN's update) of fast and slow units: the fast unit follows
// its input minus its slow partner; the slow unit reads the fast unit's input.
// (Gate fields: x_self, x_pair, x_rand, h_self, h_pair, h_rand, b_lo, b_hi.)
const GatePair CANDIDATE = {Gate{1.2f, 0.f, 0.5f, 0.f, -1.5f, 0.2f, -0.1f, 0.1f},
                            Gate{0.f, 1.2f, 0.3f, 0.f, 0.f, 0.2f, -0.1f, 0.1f}};
// A gate that is mostly bias: open (b > 0) or closed, with weak random modulation.
Gate bias_gate(float b_lo, float b_hi) {
    return {0.f, 0.f, 0.3f, 0.f, 0.f, 0.2f, b_lo, b_hi};
}

// The cell of layer l (depth C).
void set_cell(Model& m, int l, Rng& r) {
    const std::string n = m.spec.layers[l].name + ".cell.";
    const int C = m.spec.layers[l].out_ch;
    const ParamArena& p = m.params;
    switch (m.motif(l)) {
        case Motif::None:
            break;
        case Motif::TimeDecay: {  // h = a h + x, a = s(tau): fast units a in [0.1, 0.4], slow [0.7, 0.9]
            std::vector<float> tau(C);
            for (int c = 0; c < C; c++) {
                float a = c % 2 ? U(r, 0.7f, 0.9f) : U(r, 0.1f, 0.4f);
                tau[c] = std::log(a / (1 - a));
            }
            backend_copy_from_host(p[n + "tau"].device(), p[n + "tau"].data(), tau.data(), C);
            break;
        }
        case Motif::RNN:         // h = elu(conv([x, h])): the slow unit leaks, h_self 0.7
        case Motif::RNNLarge: {  // (the D - C extra state channels pair up the same way)
            int D = m.motif(l) == Motif::RNN ? C : rnn_large_depth(C);
            GatePair g = {Gate{1.f, 0.f, 0.5f, 0.f, -1.f, 0.2f, -0.1f, 0.1f},
                          Gate{0.f, 0.3f, 0.2f, 0.7f, 0.f, 0.1f, -0.1f, 0.1f}};
            set_gate_conv(p[n + "weight"], p[n + "bias"], C, D, D, {g}, r);
            break;
        }
        case Motif::GRU:  // [r, u] (+1 inside): u keeps s(u+1) in [0.12, 0.38] (fast), [0.82, 0.92] (slow)
            set_gate_conv(p[n + "gates.weight"], p[n + "gates.bias"], C, C, C,
                          {same(bias_gate(0.5f, 1.5f)), {bias_gate(-3.f, -1.5f), bias_gate(0.5f, 1.5f)}}, r);
            set_gate_conv(p[n + "cand.weight"], p[n + "cand.bias"], C, C, C, {CANDIDATE}, r);
            break;
        case Motif::LSTM:  // [i, j, f, o]: s(f+1) in [0.27, 0.73] (fast), [0.73, 0.88] (slow)
            set_gate_conv(p[n + "weight"], p[n + "bias"], C, C, C,
                          {{bias_gate(0.5f, 1.5f), bias_gate(-2.f, -1.f)},  // i: slow units charge slowly
                           CANDIDATE,                                       // j
                           {bias_gate(-2.f, 0.f), bias_gate(0.f, 1.f)},     // f
                           same(bias_gate(0.5f, 2.f))},                     // o
                          r);
            break;
        case Motif::UGRNN:  // [g, m]: g (+1 inside) as the GRU's u; m the candidate
            set_gate_conv(p[n + "weight"], p[n + "bias"], C, C, C,
                          {{bias_gate(-3.f, -1.5f), bias_gate(0.5f, 1.5f)}, CANDIDATE}, r);
            break;
        case Motif::RGC:  // c.weight on c_prev: [tc, gh]; h.weight on h_prev: [gc, th]; x.weight: W_xc
            set_gate_conv(p[n + "c.weight"], p[n + "c.bias"], 0, C, C,
                          {same({0, 0, 0, 0, 0, 0.3f, 0.f, 2.f}), same({0, 0, 0, 0, 0, 0.5f, -0.5f, 1.f})}, r);
            set_gate_conv(p[n + "h.weight"], p[n + "h.bias"], 0, C, C,
                          {same({0, 0, 0, 0, 0, 0.3f, -1.f, 0.5f}), same({0, 0, 0, 0, 0, 0.3f, 0.5f, 2.5f})}, r);
            set_gate_conv(p[n + "x.weight"], p[n + "x.bias"], C, 0, C, {same({1.f, 0, 0.5f, 0, 0, 0, -0.1f, 0.1f})}, r);
            break;
    }
}

// Per-channel mean and std of x over (N, H, W) of all the tensors in xs, each (N, C, H, W).
void channel_stats(const std::vector<Tensor>& xs, std::vector<float>& mu, std::vector<float>& sd) {
    const int64_t C = xs[0].dim(1);
    std::vector<double> s(C, 0), s2(C, 0);
    double n = 0;
    for (const Tensor& x : xs) {
        std::vector<float> v = x.to_vector();
        const int64_t N = x.dim(0), P = x.dim(2) * x.dim(3);
        for (int64_t i = 0; i < N; i++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t k = 0; k < P; k++) {
                    double a = v[(i * C + c) * P + k];
                    s[c] += a, s2[c] += a * a;
                }
        n += (double)N * P;
    }
    mu.assign(C, 0), sd.assign(C, 0);
    float mean_sd = 0;
    for (int64_t c = 0; c < C; c++) {
        mu[c] = (float)(s[c] / n);
        sd[c] = (float)std::sqrt(std::max(s2[c] / n - (s[c] / n) * (s[c] / n), 0.0));
        mean_sd += sd[c] / C;
    }
    for (float& x : sd) x = std::max(x, 0.05f * mean_sd + 1e-6f);  // a dead channel: no blow-up
}

// (n, 3, S, S) normalised input for the teacher: images resized to its input size.
Tensor stimulus_tensor(const Model& m, const std::vector<Stimulus>& s, size_t first, size_t n) {
    const int S = m.spec.in_size;
    Tensor t = tensor_empty({(int64_t)n, 3, S, S});
    for (size_t i = 0; i < n; i++) {
        const Image& src = s[std::min(first + i, s.size() - 1)].image;  // past the end: repeat the last
        Image img = src.H == S && src.W == S ? src : image_resize(src, S, S);
        image_to_chw(t.data() + (int64_t)i * 3 * S * S, img, m.norm.mean, m.norm.std);
    }
    return t;
}

int image_steps(const VirtualPrimateConfig& c) {
    return c.presentation_ms / c.ms_per_step;
}

// (n, 3, S, S) mean-grey frames (0.5 before normalisation), the screen between images.
Tensor grey_frames(const Model& m, int n) {
    const int S = m.spec.in_size;
    Tensor g = tensor_empty({n, 3, S, S});
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < 3; ch++)
            tensor_fill(g.view_at(((int64_t)i * 3 + ch) * S * S, {S * S}), (0.5f - m.norm.mean[ch]) / m.norm.std[ch]);
    return g;
}

// Whether the teacher settles, shown the images `img` (n, 3, S, S) and the grey screen
// alone: for each stimulus, every layer's mean |output| stays finite and does not run away
// 30 steps after the image (a runaway: still growing, by more than 10% over the last 10
// steps against the 5 before, and above twice anything seen before; a slow approach to a
// steady state is neither).
bool teacher_settles(const Model& m, const Tensor& img, int img_steps) {
    const int L = (int)m.spec.layers.size(), T = img_steps + L + 30, n = (int)img.dim(0) + 1;
    Tensor x = grey_frames(m, n);
    tensor_copy(x.view_at(0, img.shape), img);
    Unrolled u;
    unroll_build(u, m, {T, img_steps, n}, /*record=*/false, x);
    for (int l = 0; l < L; l++) {
        std::vector<double> early(n, 0.0), before(n, 0.0), late(n, 0.0);
        for (int t = l + 1; t < T; t++) {
            std::vector<float> v = u.out[t][l].to_vector();
            const size_t per = v.size() / n;
            for (int i = 0; i < n; i++) {
                double a = 0;
                for (size_t k = 0; k < per; k++) a += std::fabs(v[i * per + k]) / per;
                if (!std::isfinite(a)) return false;
                double& w = t < T - 15 ? early[i] : t < T - 10 ? before[i] : late[i];
                w = std::max(w, a);
            }
        }
        for (int i = 0; i < n; i++)
            if (late[i] > 1.1 * before[i] + 1e-6 && late[i] > 2 * early[i]) return false;
    }
    return true;
}

// Rescales layer l's conv per output channel so that its output on the calibration images,
// (x - mu) / sd, has mean 0 and std 1 (a data-dependent initialisation).
void standardise_conv(Model& m, int l, const std::vector<float>& mu, const std::vector<float>& sd) {
    const LayerSpec& ls = m.spec.layers[l];
    const Tensor &w = m.params[ls.name + ".weight"], &b = m.params[ls.name + ".bias"];
    std::vector<float> W = w.to_vector(), B = b.to_vector();
    const int64_t per = w.numel() / ls.out_ch;
    for (int o = 0; o < ls.out_ch; o++) {
        for (int64_t k = 0; k < per; k++) W[o * per + k] /= sd[o];
        B[o] = (B[o] - mu[o]) / sd[o];
    }
    backend_copy_from_host(w.device(), w.data(), W.data(), w.numel());
    backend_copy_from_host(b.device(), b.data(), B.data(), b.numel());
}

// Random feedback weights (Cd, Cs, K, K) for edge e: mean-free over the calibration images'
// source outputs and scaled per output channel to std `gain` (the destination's
// feedforward pre-memory has std 1).
void set_feedback(Model& m, const FeedbackEdge& e, const Unrolled& u, int cal_steps, float gain, Rng& r) {
    const LayerSpec &d = m.spec.layers[e.dst], &s = m.spec.layers[e.src];
    const int Cd = d.out_ch, Cs = s.out_ch, K = d.kernel, S = d.in_size;
    std::vector<Tensor> src;  // the resized source outputs over its first image-driven steps
    for (int t = e.src + 1; t < std::min(e.src + 1 + cal_steps, u.cfg.steps); t++) {
        const Tensor& o = u.out[t][e.src];
        if (o.defined()) src.push_back(o.dim(2) == S && o.dim(3) == S ? o : resize_bilinear(o, S, S));
    }
    CHECK(!src.empty(), "teacher feedback %s:%s: the source never fired in the calibration unroll", s.name.c_str(),
          d.name.c_str());
    std::vector<float> mk, sk;
    channel_stats(src, mk, sk);
    double vv = 0;
    for (float x : mk) vv += (double)K * K * x * x;  // |v|^2, v[c, tap] = mean of channel c
    std::vector<float> W((size_t)Cd * Cs * K * K);
    for (int o = 0; o < Cd; o++) {
        float* row = &W[(size_t)o * Cs * K * K];
        double dot = 0;
        for (int c = 0; c < Cs; c++)
            for (int k = 0; k < K * K; k++) {
                row[c * K * K + k] = r.normal() / std::sqrt((float)Cs * K * K);
                dot += (double)row[c * K * K + k] * mk[c];
            }
        if (vv > 0)  // remove the component along the source's mean: a mean-free contribution
            for (int c = 0; c < Cs; c++)
                for (int k = 0; k < K * K; k++) row[c * K * K + k] -= (float)(dot / vv * mk[c]);
    }
    Tensor w = tensor_from({Cd, Cs, K, K}, W);
    std::vector<Tensor> contrib;
    for (const Tensor& x : src) contrib.push_back(conv2d(x, w, Tensor(), d.stride, d.pad));
    std::vector<float> mc, sc;
    channel_stats(contrib, mc, sc);
    for (int o = 0; o < Cd; o++)
        for (int64_t k = 0; k < (int64_t)Cs * K * K; k++) W[(size_t)o * Cs * K * K + k] *= gain / sc[o];
    const Tensor& dst = m.params[d.name + ".fb." + s.name + ".weight"];
    backend_copy_from_host(dst.device(), dst.data(), W.data(), (int64_t)W.size());
}

// ---- sites --------------------------------------------------------------------------------

struct Site {
    int area;  // 0 V4, 1 IT
    int layer;
    int channels;                    // channels read
    std::vector<int64_t> offset;     // per entry: into one image's (C, H, W) layer output
    std::vector<int> entry_channel;  // per entry: which of the site's channels (0..channels-1)
    std::vector<float> rf;           // per entry: the receptive field's Gaussian weight
    std::vector<float> weight;       // per entry: channel weight x rf (site_set_weights)
    float latency_ms, delay_ms;
    // output nonlinearity: rate = A softplus(b + a d), d = sign * drive / rms, saturating;
    // linear sites: rate = A + a d (A the baseline), no nonlinearity at all
    bool linear = false;
    double sign = 1, rms = 1, a = 1, b = 0, A = 1;
};

// A site's rate (sp/s) at drive `drive` relative to grey.
double site_rate(const Site& s, double drive) {
    if (s.linear) return s.A + s.a * s.sign * drive / s.rms;
    return RATE_MAX * std::tanh(s.A * softplus(s.b + s.a * s.sign * drive / s.rms) / RATE_MAX);  // firing saturates
}

// A site's place: channels, receptive field, latency (its channel weights come later).
Site site_sample(const BackboneSpec& spec, int area, int layer, int ms_per_step, bool latencies, bool linear,
                 Rng& r) {
    const LayerSpec& l = spec.layers[layer];
    const int M = l.out_size, C = l.out_ch;
    const int win = area == 0 ? std::max(1, (M + 1) / 2) : M;
    Site s;
    s.linear = linear;
    s.area = area, s.layer = layer, s.channels = std::min(area == 0 ? 10 : 20, C);
    std::vector<int> ch(C);
    std::iota(ch.begin(), ch.end(), 0);
    for (int k = 0; k < s.channels; k++) std::swap(ch[k], ch[k + r.randint(C - k)]);  // distinct channels
    int y0 = (int)r.randint(M - win + 1), x0 = (int)r.randint(M - win + 1);
    float centre = (win - 1) / 2.f, width = std::max(win / 2.f, 0.5f);
    for (int k = 0; k < s.channels; k++)
        for (int y = 0; y < win; y++)
            for (int x = 0; x < win; x++) {
                float d2 = (y - centre) * (y - centre) + (x - centre) * (x - centre);
                s.offset.push_back(((int64_t)ch[k] * M + y0 + y) * M + x0 + x);
                s.entry_channel.push_back(k);
                s.rf.push_back(std::exp(-d2 / (2 * width * width)));
            }
    s.latency_ms = area == 0 ? U(r, 50, 70) : U(r, 70, 100);  // drawn either way: the same sites
    // the rate leaves baseline one step before the layer's first output (step layer + 1)
    if (!latencies) s.latency_ms = (float)layer * ms_per_step;
    s.delay_ms = std::max(0.f, s.latency_ms - (float)layer * ms_per_step);
    return s;
}

// Channel weights |N(0, 1)|, signed, for 60% of the channels, as the channel's mean response in
// the receptive field (relative to grey, `mean_act` (C, H, W)), at random for the rest: the
// stimulus drives most sites up (a visual response) and the images modulate it (selectivity).
void site_set_weights(Site& s, const std::vector<float>& mean_act, Rng& r) {
    std::vector<double> m(s.channels, 0.0);
    for (size_t e = 0; e < s.offset.size(); e++) m[s.entry_channel[e]] += s.rf[e] * mean_act[s.offset[e]];
    std::vector<float> w(s.channels);
    for (int k = 0; k < s.channels; k++) {
        float mag = std::fabs(r.normal());
        bool aligned = r.uniform() < 0.6f;
        w[k] = aligned ? (m[k] < 0 ? -mag : mag) : (r.uniform() < 0.5f ? -mag : mag);
    }
    s.weight.resize(s.offset.size());
    for (size_t e = 0; e < s.offset.size(); e++) s.weight[e] = w[s.entry_channel[e]] * s.rf[e];
}

double site_drive(const Site& s, const float* out) {  // out: one image's (C, H, W)
    double v = 0;
    for (size_t k = 0; k < s.offset.size(); k++) v += s.weight[k] * out[s.offset[k]];
    return v;
}

// Fits the output nonlinearity of a site to its drive (N, T), relative to grey, so that the
// rate at drive 0 (grey, or a silent layer) is a baseline ~ U(5, 20) sp/s and the peak over
// steps of the image-averaged rate is ~ U(30, 100) sp/s.
void site_fit_rates(Site& s, const std::vector<double>& drive, int N, int T, int first, int img_steps, Rng& r) {
    double ss = 0, sum = 0;
    int n = 0;
    for (int i = 0; i < N; i++)
        for (int t = first; t < std::min(first + img_steps, T); t++)
            ss += drive[i * T + t] * drive[i * T + t], sum += drive[i * T + t], n++;
    s.sign = sum < 0 ? -1 : 1;
    s.rms = std::sqrt(ss / std::max(n, 1)) + 1e-12;
    const double base = U(r, 5, 20), peak = U(r, 30, 100);
    s.a = U(r, 1.f, 2.f);
    if (s.linear) {  // the image-averaged peak this far above the baseline, no rate below 0
                     // (a weakly selective site, whose baseline would pass the cap, peaks lower)
        double best = 0, lowest = 0;
        for (int t = first; t < T; t++) {
            double m = 0;
            for (int i = 0; i < N; i++) {
                const double d = s.sign * drive[i * T + t] / s.rms;
                m += d, lowest = std::min(lowest, d);
            }
            best = std::max(best, m / N);
        }
        s.a = best > 0 ? (peak - base) / best : 0;  // an undriven site stays at its baseline
        s.A = std::max(base, s.a * -lowest);         // raised where an image would go below 0,
        if (s.A > LINEAR_BASE_MAX) s.A = LINEAR_BASE_MAX, s.a = LINEAR_BASE_MAX / -lowest;  // up to a cap
        return;
    }
    auto ratio = [&](double b) {  // peak of the image-averaged rate over the baseline
        double best = 0;
        for (int t = first; t < T; t++) {
            double m = 0;
            for (int i = 0; i < N; i++) m += softplus(b + s.a * s.sign * drive[i * T + t] / s.rms);
            best = std::max(best, m / N);
        }
        return best / softplus(b);
    };
    double target = peak / base;
    while (ratio(-20) < target && s.a < 3) s.a *= 1.25;
    target = std::min(target, 0.999 * ratio(-20));  // a weakly driven site peaks lower
    double lo = -20, hi = 20;                       // the ratio falls from ratio(-20) to ~1
    for (int it = 0; it < 40; it++) {
        double mid = (lo + hi) / 2;
        (ratio(mid) > target ? lo : hi) = mid;
    }
    s.b = (lo + hi) / 2;
    s.A = base / softplus(s.b);
}

// Exact Poisson draw (Knuth's product of uniforms; large means split into a sum).
int64_t poisson(Rng& r, double mu) {
    int64_t k = 0;
    while (mu > 0) {
        double part = std::min(mu, 20.0), L = std::exp(-part), p = 1;
        int64_t j = -1;
        do {
            j++;
            p *= r.uniform();
        } while (p > L);
        k += j, mu -= part;
    }
    return k;
}

// A site's rate time course, delayed and binned: out[i * stride + b] for images i < N and
// bins b, from its drive (N, T) relative to grey.
void site_bin_rates(float* out, int64_t stride, const Site& st, const std::vector<double>& drive, int N, int T,
                    const VirtualPrimateConfig& c) {
    const int B = c.t_max_ms / c.bin_ms;
    std::vector<double> rate(T);
    for (int i = 0; i < N; i++) {
        for (int t = 0; t < T; t++) {
            rate[t] = site_rate(st, drive[(size_t)i * T + t]);
            CHECK(!st.linear || rate[t] >= -1e-9 * (st.A + 1), "linear site rate %g < 0", rate[t]);
            rate[t] = std::max(rate[t], 0.0);  // (rounding)
        }
        for (int b = 0; b < B; b++) {  // the mean over 1 ms samples of the bin
            double acc = 0;
            for (int k = 0; k < c.bin_ms; k++) {
                double mt = (b * c.bin_ms + k + 0.5 - st.delay_ms) / c.ms_per_step;  // model time
                if (mt <= 0) {
                    acc += rate[0];
                    continue;
                }
                int t0 = std::min((int)mt, T - 1), t1 = std::min(t0 + 1, T - 1);
                double f = st.linear ? 0.0 : std::min(mt - t0, 1.0);  // linear sites: held
                acc += rate[t0] + (rate[t1] - rate[t0]) * f;
            }
            out[i * stride + b] = (float)(acc / c.bin_ms);
        }
    }
}

// Trials (R, N, U, B) around the teacher's rates (N, U, B): repetitions per image (fewer
// for round(missing * N) images, NaN beyond), then scaled-Poisson spike counts per bin.
std::vector<float> draw_trials(const std::vector<float>& teacher, int N, int U, int B, const VirtualPrimateConfig& c) {
    const int R = c.reps;
    std::vector<int> reps(N, R);
    Rng miss_rng(seed_mix(c.seed, 4));
    int lo = std::max(2, R / 2), n_missing = R > 2 ? (int)std::lround(c.missing * N) : 0;
    std::vector<int> order(N);
    std::iota(order.begin(), order.end(), 0);
    for (int k = 0; k < n_missing; k++) {  // a partial shuffle picks the images
        std::swap(order[k], order[k + miss_rng.randint(N - k)]);
        reps[order[k]] = lo + (int)miss_rng.randint(R - lo);
    }
    Rng trial_rng(seed_mix(c.seed, 5));
    const double bin_s = c.bin_ms / 1000.0;
    std::vector<float> resp((size_t)R * N * U * B);
    for (int r = 0; r < R; r++)
        for (int i = 0; i < N; i++)
            for (int s = 0; s < U; s++)
                for (int b = 0; b < B; b++) {
                    float mean = teacher[((size_t)i * U + s) * B + b];
                    float& out = resp[(((size_t)r * N + i) * U + s) * B + b];
                    if (r >= reps[i])
                        out = NAN;
                    else if (c.fano == 0)
                        out = mean;
                    else
                        out = (float)(c.fano * poisson(trial_rng, mean * bin_s / c.fano) / bin_s);
                }
    return resp;
}

// The grey screen's steady state of each of `layers`, (C * H * W) each: the mean of the
// last 5 of Tg steps of mean grey. Rates are measured against it: a silent layer (before the
// stimulus arrives) counts as grey, and rates return to baseline as the network settles.
std::vector<std::vector<float>> grey_outputs(const Model& m, const std::vector<int>& layers, int Tg) {
    Unrolled u;
    unroll_build(u, m, {Tg, Tg, 1}, /*record=*/false, grey_frames(m, 1));
    std::vector<std::vector<float>> g;
    for (int l : layers) {
        g.emplace_back(u.out[Tg - 1][l].numel(), 0.f);
        for (int t = Tg - 5; t < Tg; t++) {
            std::vector<float> v = u.out[t][l].to_vector();
            for (size_t k = 0; k < v.size(); k++) g.back()[k] += v[k] / 5;
        }
    }
    return g;
}

}  // namespace

// ---- settings ------------------------------------------------------------------------------

void virtual_primate_check(const VirtualPrimateConfig& c) {
    if (c.images < 1) fail("--images: expected at least 1 image, got %d", c.images);
    if (c.size < 8 || c.size > 1024) fail("--size: expected a side in [8, 1024] pixels, got %d", c.size);
    BackboneSpec spec = as_flag("--teacher-arch", nullptr, [&] { return backbone_spec(c.teacher_arch); });
    as_flag("--teacher-motif", nullptr, [&] { return motif_parse(c.teacher_motif); });
    as_flag("--teacher-feedback", "--feedback: ", [&] { return feedback_parse(c.teacher_feedback, spec); });
    as_flag("--v4-layer", nullptr, [&] { return spec.layer_index(c.v4_layer); });
    as_flag("--it-layer", nullptr, [&] { return spec.layer_index(c.it_layer); });
    if (c.v4_units < 0 || c.it_units < 0 || c.v4_units + c.it_units < 1)
        fail("--v4 / --it: expected unit counts >= 0 with at least one unit, got %d V4 and %d IT", c.v4_units,
             c.it_units);
    if (c.reps < 2) fail("--reps: expected at least 2 repetitions (split-half reliability needs two), got %d", c.reps);
    if (!(c.fano >= 0)) fail("--fano: expected a Fano factor >= 0 (0 = noiseless trials), got %g", c.fano);
    if (!(c.missing >= 0 && c.missing <= 1)) fail("--missing: expected a fraction in [0, 1], got %g", c.missing);
    if (!(c.feedback_gain >= 0)) fail("feedback gain: expected >= 0, got %g", c.feedback_gain);
    if (c.ms_per_step < 1) fail("--ms-per-step: expected at least 1 ms, got %d", c.ms_per_step);
    if (c.presentation_ms < c.ms_per_step || c.presentation_ms % c.ms_per_step)
        fail(
            "--presentation-ms %d is not a positive multiple of --ms-per-step %d: the image is shown for whole model "
            "steps",
            c.presentation_ms, c.ms_per_step);
    if (c.bin_ms < 1) fail("--bin-ms: expected at least 1 ms, got %d", c.bin_ms);
    if (c.bin_ms % c.ms_per_step)
        fail("--bin-ms %d is not a multiple of --ms-per-step %d: a bin must hold whole model steps (e.g. --bin-ms %d)",
             c.bin_ms, c.ms_per_step, std::max(1, c.bin_ms / c.ms_per_step) * c.ms_per_step);
    if (c.t_max_ms < c.bin_ms || c.t_max_ms % c.bin_ms)
        fail(
            "--t-max-ms %d is not a positive multiple of --bin-ms %d: the bins must tile [0, t-max) (e.g. --t-max-ms "
            "%d)",
            c.t_max_ms, c.bin_ms, std::max(1, c.t_max_ms / c.bin_ms) * c.bin_ms);
    if (c.t_max_ms / c.ms_per_step > 1000)
        fail("--t-max-ms %d at --ms-per-step %d needs %d model steps; at most 1000 are allowed (every step holds the "
             "teacher's activations)", c.t_max_ms, c.ms_per_step, c.t_max_ms / c.ms_per_step);
    if (c.batch < 1) fail("--batch: expected at least 1, got %d", c.batch);
}

// ---- the teacher -------------------------------------------------------------------------------

Model virtual_primate_teacher(const VirtualPrimateConfig& c, const std::vector<Stimulus>& calibration,
                              float* feedback_gain) {
    virtual_primate_check(c);
    CHECK(!calibration.empty(), "teacher calibration needs at least one image");
    ModelConfig mc;
    mc.arch = c.teacher_arch;
    BackboneSpec spec = backbone_spec(mc.arch);
    mc.motifs.assign(spec.layers.size(), motif_parse(c.teacher_motif));
    mc.feedback = feedback_parse(c.teacher_feedback, spec);
    Model m(mc, c.teacher_seed);
    if (!c.teacher_backbone.empty()) {  // the backbone only; cells and feedback follow the recipe
        Npz head = npz_read(c.teacher_backbone);
        if (head.has("meta.arch") && meta_string(head, "meta.arch") != c.teacher_arch)
            fail("--teacher-backbone: '%s' is a checkpoint of %s, not --teacher-arch %s", c.teacher_backbone.c_str(),
                 meta_string(head, "meta.arch").c_str(), c.teacher_arch.c_str());
        std::vector<std::string> optional;
        for (const LayerSpec& l : spec.layers)
            optional.push_back(l.name + ".cell."), optional.push_back(l.name + ".fb.");
        Npz z = as_flag("--teacher-backbone", nullptr,
                        [&] { return checkpoint_load(c.teacher_backbone, m.params, optional); });
        if (z.has("meta.mean") && z.has("meta.std")) {
            std::vector<float> mean = meta_floats(z, "meta.mean"), sd = meta_floats(z, "meta.std");
            for (int k = 0; k < 3 && k < (int)mean.size() && k < (int)sd.size(); k++)
                m.norm.mean[k] = mean[k], m.norm.std[k] = sd[k];
        }
    }
    m.params.set_trainable("", false);  // inference only: no gradient memory

    const int L = (int)spec.layers.size(), img_steps = image_steps(c),
              cal_steps = std::min(img_steps, CALIBRATION_STEPS);
    const size_t n = std::min<size_t>(calibration.size(), CALIBRATION_IMAGES);
    Tensor img = stimulus_tensor(m, calibration, 0, n);
    Rng r(seed_mix(c.teacher_seed, 0x7eac4e5));
    for (int l = 0; l < L; l++) {  // layer by layer: standardise its conv, then set its cell
        const LayerSpec& ls = spec.layers[l];
        std::vector<Tensor> xs;
        if (l == 0) {
            xs.push_back(conv2d(img, m.params[ls.name + ".weight"], m.params[ls.name + ".bias"], ls.stride, ls.pad));
        } else {
            Unrolled u;
            unroll_build(u, m, {l + cal_steps + 1, img_steps, (int)n}, /*record=*/false, img);
            for (int t = l; t < l + cal_steps; t++)
                if (u.out[t][l - 1].defined())
                    xs.push_back(conv2d(u.out[t][l - 1], m.params[ls.name + ".weight"], m.params[ls.name + ".bias"],
                                        ls.stride, ls.pad));
        }
        std::vector<float> mu, sd;
        channel_stats(xs, mu, sd);
        standardise_conv(m, l, mu, sd);
        set_cell(m, l, r);
    }
    float gain = c.feedback_gain;
    if (!mc.feedback.empty()) {
        Unrolled u;
        unroll_build(u, m, {L + cal_steps + 1, img_steps, (int)n}, /*record=*/false, img);
        for (const FeedbackEdge& e : mc.feedback) set_feedback(m, e, u, cal_steps, gain, r);
        // Gated cells are bounded (tanh), but a loop through unbounded ones (none, timedecay,
        // rnn, rnn-large, rgc) can run away: halve the feedback until it does not.
        bool bounded = true;
        for (int l = 0; l < L; l++)
            bounded &= m.motif(l) == Motif::LSTM || m.motif(l) == Motif::GRU || m.motif(l) == Motif::UGRNN;
        for (int tries = 0; !bounded && !teacher_settles(m, img, img_steps); tries++) {
            if (tries == 5)
                fail(
                    "teacher: motif %s with feedback %s runs away even at feedback gain %g; use a gated motif (lstm, "
                    "gru, "
                    "ugrnn) or --teacher-feedback none",
                    c.teacher_motif.c_str(), c.teacher_feedback.c_str(), gain);
            gain /= 2;
            for (const FeedbackEdge& e : mc.feedback) {
                const Tensor& w = m.params[spec.layers[e.dst].name + ".fb." + spec.layers[e.src].name + ".weight"];
                std::vector<float> v = w.to_vector();
                for (float& x : v) x /= 2;
                backend_copy_from_host(w.device(), w.data(), v.data(), w.numel());
            }
        }
    }
    if (feedback_gain) *feedback_gain = mc.feedback.empty() ? 0.f : gain;
    return m;
}

// ---- the dataset -------------------------------------------------------------------------------

namespace {

// The recording sites, V4's then IT's, on the layers layer[0] and layer[1].
std::vector<Site> sites_sample(const VirtualPrimateConfig& c, const BackboneSpec& spec, const int layer[2],
                                     Rng& site_rng) {
    std::vector<Site> sites;
    for (int k = 0; k < c.v4_units + c.it_units; k++) {
        int area = k < c.v4_units ? 0 : 1;
        sites.push_back(site_sample(spec, area, layer[area], c.ms_per_step, c.latencies, c.linear_sites, site_rng));
    }
    return sites;
}

// The model steps to run: the last 1 ms sample of the last bin reads model time
// (t_max - 0.5 - delay) / ms, for the site of the least delay.
int teacher_steps(const VirtualPrimateConfig& c, const std::vector<Site>& sites) {
    float min_delay = 1e9f;
    for (const Site& s : sites) min_delay = std::min(min_delay, s.delay_ms);
    return std::max((int)std::floor((c.t_max_ms - 0.5 - min_delay) / c.ms_per_step) + 2, 2);
}

// The sites' channel weights, from the first batch's (nb images') mean response relative to
// grey over the image's steps, and each site's drive to grey, grey[s].
void sites_set_weights(std::vector<Site>& sites, std::vector<double>& grey, const Unrolled& u, const int layer[2],
                              const std::vector<std::vector<float>>& grey_out, int nb, int img_steps, int T,
                              Rng& site_rng) {
    for (int a = 0; a < 2; a++) {
        const int64_t per = (int64_t)grey_out[a].size();
        std::vector<float> mean_act(per, 0.f);
        for (int t = layer[a] + 1; t < std::min(layer[a] + 1 + img_steps, T); t++) {
            std::vector<float> v = u.out[t][layer[a]].to_vector();
            for (int j = 0; j < nb; j++)
                for (int64_t k = 0; k < per; k++) mean_act[k] += v[j * per + k] - grey_out[a][k];
        }
        for (size_t s = 0; s < sites.size(); s++)
            if (sites[s].area == a) {
                site_set_weights(sites[s], mean_act, site_rng);
                grey[s] = site_drive(sites[s], grey_out[a].data());
            }
    }
}

// The teacher's forward pass over T steps: drive[s][i * T + t], each site's drive relative to
// grey (0 while silent). The first batch also sets the sites' channel weights.
std::vector<std::vector<double>> teacher_drive(Model& m, const std::vector<Stimulus>& stim,
                                                      std::vector<Site>& sites, const int layer[2], int T,
                                                      const VirtualPrimateConfig& c, bool progress, Rng& site_rng) {
    const int N = c.images, U_ = (int)sites.size(), img_steps = image_steps(c);
    std::vector<std::vector<float>> grey_out = grey_outputs(m, {layer[0], layer[1]}, T + 10);
    std::vector<std::vector<double>> drive(U_, std::vector<double>((size_t)N * T, 0.0));
    std::vector<double> grey(U_, 0.0);
    const int nb = std::min(c.batch, N);
    Unrolled u;
    Progress bar("teacher", N, "img");
    for (int i0 = 0; i0 < N; i0 += nb) {
        Tensor x = stimulus_tensor(m, stim, i0, nb);
        if (i0 == 0)
            unroll_build(u, m, {T, img_steps, nb}, /*record=*/true, x);  // records and runs the first batch
        else
            tensor_copy(u.image, x), u.tape.forward();
        if (i0 == 0) sites_set_weights(sites, grey, u, layer, grey_out, nb, img_steps, T, site_rng);
        for (int t = 0; t < T; t++)
            for (int s = 0; s < U_; s++) {
                const Tensor& out = u.out[t][sites[s].layer];
                if (!out.defined()) continue;
                const int64_t per = out.numel() / nb;
                for (int j = 0; j < nb && i0 + j < N; j++)
                    drive[s][(size_t)(i0 + j) * T + t] = site_drive(sites[s], out.data() + j * per) - grey[s];
            }
        if (progress) bar.update(std::min(i0 + nb, N));
    }
    if (progress) bar.finish(strfmt("%d steps of %d ms", T, c.ms_per_step));
    return drive;
}

// Stops when the teacher ran away (a non-finite drive).
void drive_check_finite(const std::vector<std::vector<double>>& drive, const VirtualPrimateConfig& c) {
    for (const std::vector<double>& ds : drive)
        for (double d : ds)
            if (!std::isfinite(d))
                fail(
                    "teacher: motif %s with feedback %s gave non-finite activity; use a gated motif (lstm, gru, ugrnn) "
                    "or --teacher-feedback none",
                    c.teacher_motif.c_str(), c.teacher_feedback.c_str());
}

// The file's "teacher_config": how the data was made, one "key=value" each. Without the
// teacher (m null) the keys its making decides (feedback as parsed, feedback_gain, steps) are
// left out: what the settings alone say, for virtual_primate_differences.
std::vector<std::string> teacher_config(const VirtualPrimateConfig& c, const Model* m, float fb_gain, int T) {
    std::vector<std::string> kv = {strfmt("generator=%s", GENERATOR), "arch=" + c.teacher_arch,
                                   "backbone=" + (c.teacher_backbone.empty() ? "he-init" : c.teacher_backbone),
                                   "motif=" + c.teacher_motif};
    if (m) kv.push_back("feedback=" + feedback_str(m->cfg.feedback, m->spec));
    for (const std::string& e : {strfmt("teacher_seed=%llu", (unsigned long long)c.teacher_seed),
                                 "v4_layer=" + c.v4_layer, "it_layer=" + c.it_layer})
        kv.push_back(e);
    if (m) kv.push_back(strfmt("feedback_gain=%g", fb_gain));
    for (const std::string& e :
         {strfmt("seed=%llu", (unsigned long long)c.seed), strfmt("images=%d", c.images), strfmt("size=%d", c.size),
          strfmt("reps=%d", c.reps), strfmt("fano=%g", c.fano), strfmt("missing=%g", c.missing),
          strfmt("ms_per_step=%d", c.ms_per_step), strfmt("presentation_ms=%d", c.presentation_ms),
          strfmt("bin_ms=%d", c.bin_ms), strfmt("t_max_ms=%d", c.t_max_ms), strfmt("latencies=%d", (int)c.latencies)})
        kv.push_back(e);
    if (c.linear_sites) kv.push_back("sites=linear");  // absent: softplus (files made before the choice)
    if (m) kv.push_back(strfmt("steps=%d", T));
    return kv;
}

// The dataset's file (neural_data.h): the images, the trials `resp` (R, N, U, B), the units,
// bins and images' labels, and the teacher's rates `teacher` (N, U, B), config and sites.
Npz dataset_npz(const VirtualPrimateConfig& c, const std::vector<Stimulus>& stim, const std::vector<Site>& sites,
                       const Model& m, const std::vector<float>& resp, const std::vector<float>& teacher,
                       float fb_gain, int T) {
    const int N = c.images, U_ = c.v4_units + c.it_units, B = c.t_max_ms / c.bin_ms, R = c.reps;
    Npz z;
    std::vector<uint8_t> images((size_t)N * c.size * c.size * 3);
    for (int i = 0; i < N; i++)
        std::copy(stim[i].image.rgb.begin(), stim[i].image.rgb.end(), images.begin() + (size_t)i * c.size * c.size * 3);
    z.set("images", NpyArray::from_u8({N, c.size, c.size, 3}, images.data()));
    z.set("responses", NpyArray::from_f32({R, N, U_, B}, resp.data()));
    std::vector<std::string> area, unit_id, unit_layer, img_id, obj, cat;
    std::vector<float> latency, bs(B), be(B);
    for (int s = 0; s < U_; s++) {
        area.push_back(sites[s].area == 0 ? "V4" : "IT");
        unit_id.push_back(strfmt("%s_%03d", area.back().c_str(), sites[s].area == 0 ? s : s - c.v4_units));
        unit_layer.push_back(m.spec.layers[sites[s].layer].name);
        latency.push_back(sites[s].latency_ms);
    }
    z.set("unit_area", NpyArray::from_strings(area));
    z.set("unit_id", NpyArray::from_strings(unit_id));
    for (int b = 0; b < B; b++) bs[b] = (float)b * c.bin_ms, be[b] = (float)(b + 1) * c.bin_ms;
    z.set("bin_start_ms", NpyArray::from_f32({B}, bs.data()));
    z.set("bin_end_ms", NpyArray::from_f32({B}, be.data()));
    std::vector<int32_t> var;
    for (const Stimulus& s : stim)
        img_id.push_back(s.id), obj.push_back(s.object), cat.push_back(s.category), var.push_back(s.variation);
    z.set("image_id", NpyArray::from_strings(img_id));
    z.set("image_object", NpyArray::from_strings(obj));
    z.set("image_category", NpyArray::from_strings(cat));
    z.set("image_variation", NpyArray::from_i32({N}, var.data()));
    z.set("presentation_ms", NpyArray::scalar_f32((float)c.presentation_ms));
    z.set("teacher_responses", NpyArray::from_f32({N, U_, B}, teacher.data()));
    z.set("teacher_config", NpyArray::from_strings(teacher_config(c, &m, fb_gain, T)));
    z.set("teacher_unit_layer", NpyArray::from_strings(unit_layer));
    z.set("teacher_unit_latency_ms", NpyArray::from_f32({U_}, latency.data()));
    return z;
}

}  // namespace

std::vector<std::string> virtual_primate_differences(const std::string& path, const VirtualPrimateConfig& c,
                                                     const Npz* made) {
    std::vector<std::string> there, areas;
    try {
        const NpzIndex z = npz_index(path);
        if (!z.has("teacher_config") || !z.has("unit_area")) return {"it holds no teacher_config: not a virtual primate"};
        there = npz_array(z, "teacher_config").to_strings();
        areas = npz_array(z, "unit_area").to_strings();
    } catch (const Error& e) {
        return {std::string("it is not a readable virtual primate (") + e.what() + ")"};
    }
    auto split = [](const std::vector<std::string>& kvs) {
        std::map<std::string, std::string> m;
        for (const std::string& kv : kvs) {
            const size_t eq = kv.find('=');
            m[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
        }
        return m;
    };
    std::vector<std::string> here = made ? made->get("teacher_config").to_strings() : teacher_config(c, nullptr, 0, 0);
    here.push_back(strfmt("v4_sites=%d", c.v4_units)), here.push_back(strfmt("it_sites=%d", c.it_units));
    std::map<std::string, std::string> now = split(here), had = split(there);
    had["v4_sites"] = std::to_string(std::count(areas.begin(), areas.end(), "V4"));
    had["it_sites"] = std::to_string(std::count(areas.begin(), areas.end(), "IT"));
    for (auto* kv : {&now, &had}) kv->emplace("sites", "softplus");  // written only when linear
    std::vector<std::string> diffs;
    for (const auto& [key, value] : now) {
        auto it = had.find(key);
        const std::string old = it == had.end() ? "(none)" : it->second;
        if (old != value) diffs.push_back(key + ": " + old + " there, " + value + " here");
    }
    return diffs;
}

Npz virtual_primate_generate(const VirtualPrimateConfig& c, bool progress, Model* teacher_out) {
    virtual_primate_check(c);
    StimulusConfig sc;
    sc.images = std::max(c.images, CALIBRATION_IMAGES);
    sc.size = c.size;
    sc.seed = c.seed;
    std::vector<Stimulus> stim = stimuli_render(sc);
    float fb_gain = 0;
    Model m = virtual_primate_teacher(c, stim, &fb_gain);
    stim.resize(c.images);

    const int N = c.images, U_ = c.v4_units + c.it_units, B = c.t_max_ms / c.bin_ms;
    const int layer[2] = {m.spec.layer_index(c.v4_layer), m.spec.layer_index(c.it_layer)};
    Rng site_rng(seed_mix(c.seed, 2));
    std::vector<Site> sites = sites_sample(c, m.spec, layer, site_rng);
    const int T = teacher_steps(c, sites);
    const std::vector<std::vector<double>> drive = teacher_drive(m, stim, sites, layer, T, c, progress, site_rng);
    drive_check_finite(drive, c);

    // rates per step, then delayed and binned: teacher (N, U, B)
    Rng rate_rng(seed_mix(c.seed, 3));
    std::vector<float> teacher((size_t)N * U_ * B);
    for (int s = 0; s < U_; s++) {
        site_fit_rates(sites[s], drive[s], N, T, sites[s].layer + 1, image_steps(c), rate_rng);
        site_bin_rates(&teacher[(size_t)s * B], (int64_t)U_ * B, sites[s], drive[s], N, T, c);
    }
    std::vector<float> resp = draw_trials(teacher, N, U_, B, c);
    Npz z = dataset_npz(c, stim, sites, m, resp, teacher, fb_gain, T);
    if (teacher_out) *teacher_out = std::move(m);
    return z;
}

void virtual_primate_save_backbone(const Model& teacher, const std::string& path) {
    ModelConfig mc;
    mc.arch = teacher.spec.arch;
    Model bb(mc, 0);
    for (const auto& e : bb.params.entries) tensor_copy(e.view, teacher.params[e.name]);
    Npz meta;
    meta_set_string(meta, "meta.arch", mc.arch);
    meta_set_floats(meta, "meta.mean", {teacher.norm.mean[0], teacher.norm.mean[1], teacher.norm.mean[2]});
    meta_set_floats(meta, "meta.std", {teacher.norm.std[0], teacher.norm.std[1], teacher.norm.std[2]});
    meta_set_string(meta, "meta.source", "the virtual primate's teacher backbone (make_virtual_primate)");
    checkpoint_save(path, bb.params, meta);
}

void virtual_primate_save_teacher(const Model& teacher, const std::string& path) {
    CHECK(!teacher.cfg.residual, "the virtual primate's teacher has plain (not residual) cells");
    Npz meta;
    meta_set_string(meta, "meta.arch", teacher.spec.arch);
    meta_set_string(meta, "meta.motif", motif_name(teacher.motif(0)));
    meta_set_string(meta, "meta.feedback", feedback_str(teacher.cfg.feedback, teacher.spec));
    meta_set_floats(meta, "meta.residual", {0.f});
    meta_set_floats(meta, "meta.mean", {teacher.norm.mean[0], teacher.norm.mean[1], teacher.norm.mean[2]});
    meta_set_floats(meta, "meta.std", {teacher.norm.std[0], teacher.norm.std[1], teacher.norm.std[2]});
    meta_set_string(meta, "meta.source", "the virtual primate's teacher network (make_virtual_primate)");
    checkpoint_save(path, teacher.params, meta);
}

// ---- summary -------------------------------------------------------------------------------------

VirtualPrimateStats virtual_primate_stats(const Npz& z) {
    const NpyArray& ra = z.get("responses");
    CHECK(ra.shape.size() == 4, "responses: expected (R, N, U, B), found %zu dimensions", ra.shape.size());
    const int64_t R = ra.shape[0], N = ra.shape[1], U_ = ra.shape[2], B = ra.shape[3];
    std::vector<float> resp = ra.to_f32();
    std::vector<std::string> area = z.get("unit_area").to_strings();
    VirtualPrimateStats st;
    st.bin_start_ms = z.get("bin_start_ms").to_f32();
    st.bin_end_ms = z.get("bin_end_ms").to_f32();
    std::vector<int> area_of(U_);
    for (int64_t s = 0; s < U_; s++) {
        auto it = std::find(st.areas.begin(), st.areas.end(), area[s]);
        if (it == st.areas.end()) st.areas.push_back(area[s]), st.units.push_back(0), it = st.areas.end() - 1;
        area_of[s] = (int)(it - st.areas.begin());
        st.units[area_of[s]]++;
    }
    for (int64_t i = 0; i < N; i++) {
        bool miss = false;
        for (int64_t r = 0; r < R && !miss; r++) miss = std::isnan(resp[((r * N + i) * U_) * B]);
        st.images_with_missing += miss;
    }
    const size_t A = st.areas.size();
    st.rate.assign(A, std::vector<float>(B, 0.f));
    st.image_sd.assign(A, std::vector<float>(B, 0.f));
    st.rho.assign(A, std::vector<float>(B, 0.f));
    auto median = [](std::vector<double> v) {
        if (v.empty()) return 0.0;
        std::sort(v.begin(), v.end());
        size_t n = v.size();
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    };
    auto pearson = [](const std::vector<double>& x, const std::vector<double>& y) {
        double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
        size_t n = x.size();
        for (size_t i = 0; i < n; i++) mx += x[i] / n, my += y[i] / n;
        for (size_t i = 0; i < n; i++)
            sxy += (x[i] - mx) * (y[i] - my), sxx += (x[i] - mx) * (x[i] - mx), syy += (y[i] - my) * (y[i] - my);
        return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0.0;
    };
    for (int64_t b = 0; b < B; b++) {
        std::vector<std::vector<double>> sds(A), rhos(A);
        std::vector<double> rate_sum(A, 0), rate_n(A, 0);
        for (int64_t s = 0; s < U_; s++) {
            std::vector<double> mean(N), odd(N), even(N);
            for (int64_t i = 0; i < N; i++) {
                double sum = 0, so = 0, se = 0;
                int n = 0, no = 0, ne = 0;
                for (int64_t r = 0; r < R; r++) {
                    float v = resp[((r * N + i) * U_ + s) * B + b];
                    if (std::isnan(v)) continue;
                    sum += v, n++;
                    (n % 2 ? so : se) += v, (n % 2 ? no : ne)++;
                }
                mean[i] = n ? sum / n : 0, odd[i] = no ? so / no : 0, even[i] = ne ? se / ne : 0;
                rate_sum[area_of[s]] += sum, rate_n[area_of[s]] += n;
            }
            double mm = std::accumulate(mean.begin(), mean.end(), 0.0) / N, var = 0;
            for (double v : mean) var += (v - mm) * (v - mm) / N;
            sds[area_of[s]].push_back(std::sqrt(var));
            double r = pearson(odd, even);
            rhos[area_of[s]].push_back(r > -1 ? 2 * r / (1 + r) : -1);
        }
        for (size_t a = 0; a < A; a++) {
            st.rate[a][b] = (float)(rate_sum[a] / std::max(rate_n[a], 1.0));
            st.image_sd[a][b] = (float)median(sds[a]);
            st.rho[a][b] = (float)median(rhos[a]);
        }
    }
    return st;
}

}  // namespace vt

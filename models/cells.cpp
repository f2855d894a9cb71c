// cells.cpp: the recurrent cells (see cells.h). The fused gate kernels are wrapped here as
// tape ops; everything else is composed from engine ops.
#include "models/cells.h"

#include <cmath>

#include "engine/backend.h"
#include "engine/ops.h"

namespace vt {

static const char* MOTIFS[] = {"none", "timedecay", "rnn", "rnn-large", "gru", "lstm", "ugrnn", "rgc"};

std::vector<std::string> motif_names() { return std::vector<std::string>(std::begin(MOTIFS), std::end(MOTIFS)); }

Motif motif_parse(const std::string& s) {
    for (int i = 0; i < (int)(sizeof(MOTIFS) / sizeof(*MOTIFS)); i++)
        if (s == MOTIFS[i]) return (Motif)i;
    fail("unknown motif '%s' (known: %s)", s.c_str(), list_join(motif_names()).c_str());
}

const char* motif_name(Motif m) { return MOTIFS[(int)m]; }

int rnn_large_depth(int C) { return (int)std::lround(C * (std::sqrt(33.0) - 1.0) / 2.0); }

// PyTorch's default conv init: uniform in +-1/sqrt(fan_in), for weights and biases.
static ParamSpec conv_weight(const std::string& name, int OC, int C) {
    return {name, {OC, C, 3, 3}, Init::Uniform, 1.f / std::sqrt(9.f * C)};
}
static ParamSpec conv_bias(const std::string& name, int OC, int C) {
    return {name, {OC}, Init::Uniform, 1.f / std::sqrt(9.f * C)};
}

void cell_param_specs(std::vector<ParamSpec>& specs, Motif m, const std::string& layer, int C) {
    const std::string p = layer + ".cell.";
    switch (m) {
    case Motif::None: break;
    case Motif::TimeDecay: specs.push_back({p + "tau", {C}, Init::Const, -2.f}); break;  // a = s(-2) = 0.12
    case Motif::RNN:
        specs.push_back(conv_weight(p + "weight", C, 2 * C));
        specs.push_back(conv_bias(p + "bias", C, 2 * C));
        break;
    case Motif::RNNLarge: {
        int D = rnn_large_depth(C);
        specs.push_back(conv_weight(p + "weight", D, C + D));
        specs.push_back(conv_bias(p + "bias", D, C + D));
        break;
    }
    case Motif::GRU:
        specs.push_back(conv_weight(p + "gates.weight", 2 * C, 2 * C));
        specs.push_back(conv_bias(p + "gates.bias", 2 * C, 2 * C));
        specs.push_back(conv_weight(p + "cand.weight", C, 2 * C));
        specs.push_back(conv_bias(p + "cand.bias", C, 2 * C));
        break;
    case Motif::LSTM:
        specs.push_back(conv_weight(p + "weight", 4 * C, 2 * C));
        specs.push_back(conv_bias(p + "bias", 4 * C, 2 * C));
        break;
    case Motif::UGRNN:
        specs.push_back(conv_weight(p + "weight", 2 * C, 2 * C));
        specs.push_back(conv_bias(p + "bias", 2 * C, 2 * C));
        break;
    case Motif::RGC:
        specs.push_back(conv_weight(p + "c.weight", 2 * C, C));  // on c_prev: [tc, gh]
        specs.push_back(conv_bias(p + "c.bias", 2 * C, C));
        specs.push_back(conv_weight(p + "h.weight", 2 * C, C));  // on h_prev: [gc, th]
        specs.push_back(conv_bias(p + "h.bias", 2 * C, C));
        specs.push_back(conv_weight(p + "x.weight", C, C));      // W_xc on x
        specs.push_back(conv_bias(p + "x.bias", C, C));
        break;
    }
}

// ---- a start with memory ---------------------------------------------------------------------

namespace {

float logit(float p) { return std::log(p / (1 - p)); }

// Sets one conv of a cell: w (OC, IC, 3, 3) keeps half its random init, plus `self` at the
// centre tap from input channel in0 + c to output channel out0 + c, for c < C.
void conv_add_identity(const Tensor& w, int out0, int in0, int C, const std::vector<float>& self) {
    std::vector<float> W = w.to_vector();
    const int64_t IC = w.dim(1);
    CHECK(w.dim(2) == 3 && w.dim(3) == 3 && out0 + C <= w.dim(0) && in0 + C <= IC && (int)self.size() >= C,
          "cell_init_memory: %s has no room for %d channels at output %d, input %d", w.desc().c_str(), C, out0, in0);
    for (float& v : W) v *= 0.5f;
    for (int c = 0; c < C; c++) W[(((int64_t)(out0 + c) * IC + in0 + c) * 3 + 1) * 3 + 1] += self[c];
    backend_copy_from_host(w.device(), w.data(), W.data(), w.numel());
}

void set_values(const Tensor& t, int64_t offset, const std::vector<float>& v) {
    std::vector<float> all = t.to_vector();
    CHECK(offset + (int64_t)v.size() <= (int64_t)all.size(), "cell_init_memory: %s has no room for %zu values at %lld",
          t.desc().c_str(), v.size(), (long long)offset);
    std::copy(v.begin(), v.end(), all.begin() + offset);
    backend_copy_from_host(t.device(), t.data(), all.data(), t.numel());
}

}  // namespace

std::vector<float> cell_init_memory(ParamArena& p, Motif m, const std::string& layer, int C, uint64_t seed,
                                    float tau_min, float tau_max) {
    const std::string n = layer + ".cell.";
    if (m != Motif::None) {
        const std::string any = m == Motif::TimeDecay ? "tau" : m == Motif::GRU ? "cand.bias" : m == Motif::RGC ? "x.bias" : "bias";
        const Tensor& b = p[n + any];
        const int64_t per = m == Motif::RNNLarge ? rnn_large_depth(C) : C;
        const int64_t want = m == Motif::TimeDecay || m == Motif::GRU || m == Motif::RGC || m == Motif::RNN ? C
                             : m == Motif::RNNLarge ? per : m == Motif::LSTM ? 4 * C : 2 * C;
        if (b.numel() != want)
            fail("cell_init_memory: %s has %lld values, expected %lld for a %s cell of depth %d", b.desc().c_str(),
                 (long long)b.numel(), (long long)want, motif_name(m), C);
    }
    Rng rng(seed);
    std::vector<float> r(C), one(C, 1.f), keep(C), lose(C);
    for (int c = 0; c < C; c++) {
        float tau = tau_min * std::pow(tau_max / tau_min, rng.uniform());
        r[c] = 1.f - 1.f / tau;
        keep[c] = logit(r[c]), lose[c] = logit(1.f - r[c]);
    }
    auto fill = [&](const std::string& name, int64_t offset, int count, float v) {
        set_values(p[n + name], offset, std::vector<float>(count, v));
    };
    switch (m) {
    case Motif::None: break;
    case Motif::TimeDecay: set_values(p[n + "tau"], 0, keep); break;
    case Motif::RNN:
    case Motif::RNNLarge: {  // [x (C), h (D)] -> D; the first C channels integrate x_c
        const int D = (int)p[n + "weight"].dim(0);
        std::vector<float> in(C), self(D, 0.9f);
        for (int c = 0; c < C; c++) in[c] = 1 - r[c], self[c] = r[c];
        conv_add_identity(p[n + "weight"], 0, 0, C, in);
        std::vector<float> W = p[n + "weight"].to_vector();
        for (int d = 0; d < D; d++) W[(((int64_t)d * (C + D) + C + d) * 3 + 1) * 3 + 1] += self[d];
        backend_copy_from_host(p[n + "weight"].device(), p[n + "weight"].data(), W.data(), (int64_t)W.size());
        fill("bias", 0, D, 0.f);
        break;
    }
    case Motif::GRU: {  // gates [r, u] (+1 inside), cand on [x, r*h]
        conv_add_identity(p[n + "gates.weight"], 0, 0, 0, {});
        fill("gates.bias", 0, C, 2.f);                                   // r: read the state
        std::vector<float> u(C);
        for (int c = 0; c < C; c++) u[c] = keep[c] - 1;                   // s(u + 1) = r
        set_values(p[n + "gates.bias"], C, u);
        conv_add_identity(p[n + "cand.weight"], 0, 0, C, one);
        fill("cand.bias", 0, C, 0.f);
        break;
    }
    case Motif::LSTM: {  // [i, j, f, o]
        conv_add_identity(p[n + "weight"], C, 0, C, one);                // j: x_c
        std::vector<float> f(C);
        for (int c = 0; c < C; c++) f[c] = keep[c] - 1;                   // s(f + 1) = r
        set_values(p[n + "bias"], 0, lose);                               // s(i) = 1 - r
        fill("bias", C, C, 0.f);
        set_values(p[n + "bias"], 2 * C, f);
        fill("bias", 3 * C, C, 2.f);                                      // o: open
        break;
    }
    case Motif::UGRNN: {  // [g, m], g (+1 inside) keeps the state
        conv_add_identity(p[n + "weight"], C, 0, C, one);                // m: x_c
        std::vector<float> g(C);
        for (int c = 0; c < C; c++) g[c] = keep[c] - 1;
        set_values(p[n + "bias"], 0, g);
        fill("bias", C, C, 0.f);
        break;
    }
    case Motif::RGC: {  // c.weight on c_prev: [tc, gh]; h.weight on h_prev: [gc, th]; x.weight: W_xc
        conv_add_identity(p[n + "c.weight"], 0, 0, 0, {});
        conv_add_identity(p[n + "h.weight"], 0, 0, 0, {});
        conv_add_identity(p[n + "x.weight"], 0, 0, C, one);
        set_values(p[n + "c.bias"], 0, lose);  // c keeps 1 - s(tc) = r
        set_values(p[n + "c.bias"], C, keep);  // h takes 1 - s(gh) = 1 - r of x
        set_values(p[n + "h.bias"], 0, keep);  // c takes 1 - s(gc) = 1 - r of W_xc x
        set_values(p[n + "h.bias"], C, lose);  // h keeps 1 - s(th) = r
        fill("x.bias", 0, C, 0.f);
        break;
    }
    }
    return r;
}

// ---- fused ops -------------------------------------------------------------------------
// Two-state cells return one (2, N, C, H, W) tensor [c; h]; state_c/state_h are its halves
// as views, so the gradients of both land in the one buffer the op's backward reads.

static Tensor state_c(const Tensor& st) { return st.view_at(0, {st.dim(1), st.dim(2), st.dim(3), st.dim(4)}); }
static Tensor state_h(const Tensor& st) {
    return st.view_at(st.numel() / 2, {st.dim(1), st.dim(2), st.dim(3), st.dim(4)});
}

struct Dims {
    int N, C;
    int64_t P;
};
static Dims dims_of(const Tensor& x) { return {(int)x.dim(0), (int)x.dim(1), x.dim(2) * x.dim(3)}; }

static Tensor lstm_op(const Tensor& G, const Tensor& c_prev) {
    Dims d = dims_of(c_prev);
    Tensor st = op_output({2, d.N, d.C, c_prev.dim(2), c_prev.dim(3)}, {&G, &c_prev});
    const KernelTable& K = kernels_for(G.device());
    int64_t half = st.numel() / 2;
    auto fwd = [=, &K] { K.lstm_forward(st.data(), st.data() + half, G.data(), c_prev.data(), d.N, d.C, d.P); };
    auto bwd = [=, &K] {
        K.lstm_backward(grad_or_null(G), grad_or_null(c_prev), st.grad(), st.grad() + half, G.data(), c_prev.data(),
                        st.data(), d.N, d.C, d.P);
    };
    return op_record("lstm_cell", st, fwd, bwd);
}

static Tensor gru_gates_op(const Tensor& G1, const Tensor& h_prev) {
    Dims d = dims_of(h_prev);
    Tensor rh = op_output(h_prev.shape, {&G1, &h_prev});
    const KernelTable& K = kernels_for(G1.device());
    auto fwd = [=, &K] { K.gru_gates_forward(rh.data(), G1.data(), h_prev.data(), d.N, d.C, d.P); };
    auto bwd = [=, &K] {
        K.gru_gates_backward(grad_or_null(G1), grad_or_null(h_prev), rh.grad(), G1.data(), h_prev.data(), d.N, d.C, d.P);
    };
    return op_record("gru_gates", rh, fwd, bwd);
}

static Tensor gru_update_op(const Tensor& G1, const Tensor& Gc, const Tensor& h_prev) {
    Dims d = dims_of(h_prev);
    Tensor h = op_output(h_prev.shape, {&G1, &Gc, &h_prev});
    const KernelTable& K = kernels_for(G1.device());
    auto fwd = [=, &K] { K.gru_update_forward(h.data(), G1.data(), Gc.data(), h_prev.data(), d.N, d.C, d.P); };
    auto bwd = [=, &K] {
        K.gru_update_backward(grad_or_null(G1), grad_or_null(Gc), grad_or_null(h_prev), h.grad(), G1.data(), Gc.data(),
                              h_prev.data(), d.N, d.C, d.P);
    };
    return op_record("gru_update", h, fwd, bwd);
}

static Tensor ugrnn_op(const Tensor& G, const Tensor& h_prev) {
    Dims d = dims_of(h_prev);
    Tensor h = op_output(h_prev.shape, {&G, &h_prev});
    const KernelTable& K = kernels_for(G.device());
    auto fwd = [=, &K] { K.ugrnn_forward(h.data(), G.data(), h_prev.data(), d.N, d.C, d.P); };
    auto bwd = [=, &K] {
        K.ugrnn_backward(grad_or_null(G), grad_or_null(h_prev), h.grad(), G.data(), h_prev.data(), d.N, d.C, d.P);
    };
    return op_record("ugrnn_cell", h, fwd, bwd);
}

// [pc; ph], the rgc's gated sums before its ELUs; the caller applies elu (an engine op, so
// that the gradient checker can hold its branches).
static Tensor rgc_gates_op(const Tensor& A, const Tensor& B, const Tensor& Xc, const Tensor& x, const Tensor& c_prev,
                           const Tensor& h_prev) {
    Dims d = dims_of(x);
    Tensor pre = op_output({2, d.N, d.C, x.dim(2), x.dim(3)}, {&A, &B, &Xc, &x, &c_prev, &h_prev});
    const KernelTable& K = kernels_for(x.device());
    int64_t half = pre.numel() / 2;
    auto fwd = [=, &K] {
        K.rgc_gates_forward(pre.data(), pre.data() + half, A.data(), B.data(), Xc.data(), x.data(), c_prev.data(),
                            h_prev.data(), d.N, d.C, d.P);
    };
    auto bwd = [=, &K] {
        K.rgc_gates_backward(grad_or_null(A), grad_or_null(B), grad_or_null(Xc), grad_or_null(x), grad_or_null(c_prev),
                             grad_or_null(h_prev), pre.grad(), pre.grad() + half, A.data(), B.data(), Xc.data(),
                             x.data(), c_prev.data(), h_prev.data(), d.N, d.C, d.P);
    };
    return op_record("rgc_gates", pre, fwd, bwd);
}

// ---- one step ----------------------------------------------------------------------------

static Tensor zeros_like_channels(const Tensor& x, int64_t C) {
    return tensor_zeros({x.dim(0), C, x.dim(2), x.dim(3)}, x.device());
}

Tensor cell_step(Motif m, const ParamArena& p, const std::string& layer, const Tensor& x, CellState& st,
                 bool x_repeats) {
    const std::string n = layer + ".cell.";
    const int64_t C = x.dim(1);
    auto conv3 = [&](const Tensor& in, const std::string& w) { return conv2d(in, p[n + w + "weight"], p[n + w + "bias"], 1, 1); };
    if (x_repeats && (!st.x_last.defined() || st.x_last.buf != x.buf || st.x_last.offset != x.offset)) {
        st.x_last = x;  // a new input: its projections are computed afresh
        st.x_proj.clear();
    }
    // Slot k of slots: computed at its first use, then kept.
    auto kept = [](std::vector<Tensor>& slots, size_t k, auto compute) -> Tensor {
        if (slots.size() <= k) slots.resize(k + 1);
        if (!slots[k].defined()) slots[k] = compute();
        return slots[k];
    };
    // The input part W_x x + b of a cell conv, kept in slot k while x repeats.
    auto x_part = [&](size_t k, auto compute) { return x_repeats ? kept(st.x_proj, k, compute) : compute(); };
    // conv w over [x, s], s a state (undefined = zero); slot k for x_repeats.
    auto conv_xs = [&](const Tensor& s, const std::string& w, size_t k) {
        const Tensor& W = p[n + w + "weight"];
        const int cx = (int)C, cs = (int)W.dim(1) - cx;
        if (!x_repeats && s.defined()) return conv3(concat_channels({x, s}), w);  // one GEMM over both
        Tensor gx = x_part(k, [&] { return conv2d(x, slice_channels(W, 0, cx), p[n + w + "bias"], 1, 1); });
        if (!s.defined()) return gx;
        const Tensor Wh = kept(st.w_state, k, [&] { return slice_channels(W, cx, cs); });  // x_repeats here
        return add(gx, conv2d(s, Wh, Tensor(), 1, 1));
    };
    switch (m) {
    case Motif::None: return x;
    case Motif::TimeDecay: {
        Tensor h = st.h.defined() ? add(scale_channels(st.h, sigmoid(p[n + "tau"])), x) : x;
        st.h = h;
        return h;
    }
    case Motif::RNN:
    case Motif::RNNLarge: {
        st.h = elu(conv_xs(st.h, "", 0));
        return st.h.dim(1) == C ? st.h : slice_channels(st.h, 0, (int)C);
    }
    case Motif::GRU: {
        const Tensor hs = st.h;  // undefined at the first step
        Tensor hp = hs.defined() ? hs : zeros_like_channels(x, C);
        Tensor G1 = conv_xs(hs, "gates.", 0);
        Tensor Gc = conv_xs(hs.defined() ? gru_gates_op(G1, hp) : Tensor(), "cand.", 1);  // r * 0 = 0
        st.h = gru_update_op(G1, Gc, hp);
        return st.h;
    }
    case Motif::LSTM: {
        Tensor cp = st.c.defined() ? st.c : zeros_like_channels(x, C);
        Tensor s = lstm_op(conv_xs(st.h, "", 0), cp);
        st.c = state_c(s);
        st.h = state_h(s);
        return st.h;
    }
    case Motif::UGRNN: {
        Tensor hp = st.h.defined() ? st.h : zeros_like_channels(x, C);
        st.h = ugrnn_op(conv_xs(st.h, "", 0), hp);
        return st.h;
    }
    case Motif::RGC: {
        Tensor hp = st.h.defined() ? st.h : zeros_like_channels(x, C);
        Tensor cp = st.c.defined() ? st.c : zeros_like_channels(x, C);
        Tensor Xc = x_part(0, [&] { return conv3(x, "x."); });
        Tensor s = elu(rgc_gates_op(conv3(cp, "c."), conv3(hp, "h."), Xc, x, cp, hp));
        st.c = state_c(s);
        st.h = state_h(s);
        return st.h;
    }
    }
    return x;
}

}  // namespace vt

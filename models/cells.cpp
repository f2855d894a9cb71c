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
    std::string known;
    for (const char* m : MOTIFS) known += (known.empty() ? "" : ", ") + std::string(m);
    fail("unknown motif '%s' (known: %s)", s.c_str(), known.c_str());
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

Tensor cell_step(Motif m, const ParamArena& p, const std::string& layer, const Tensor& x, CellState& st) {
    const std::string n = layer + ".cell.";
    const int64_t C = x.dim(1);
    auto conv3 = [&](const Tensor& in, const std::string& w) { return conv2d(in, p[n + w + "weight"], p[n + w + "bias"], 1, 1); };
    switch (m) {
    case Motif::None: return x;
    case Motif::TimeDecay: {
        Tensor h = st.h.defined() ? add(scale_channels(st.h, sigmoid(p[n + "tau"])), x) : x;
        st.h = h;
        return h;
    }
    case Motif::RNN:
    case Motif::RNNLarge: {
        int64_t D = m == Motif::RNN ? C : rnn_large_depth((int)C);
        Tensor hp = st.h.defined() ? st.h : zeros_like_channels(x, D);
        st.h = elu(conv3(concat_channels({x, hp}), ""));
        return D == C ? st.h : slice_channels(st.h, 0, (int)C);
    }
    case Motif::GRU: {
        Tensor hp = st.h.defined() ? st.h : zeros_like_channels(x, C);
        Tensor G1 = conv3(concat_channels({x, hp}), "gates.");
        Tensor Gc = conv3(concat_channels({x, gru_gates_op(G1, hp)}), "cand.");
        st.h = gru_update_op(G1, Gc, hp);
        return st.h;
    }
    case Motif::LSTM: {
        Tensor hp = st.h.defined() ? st.h : zeros_like_channels(x, C);
        Tensor cp = st.c.defined() ? st.c : zeros_like_channels(x, C);
        Tensor s = lstm_op(conv3(concat_channels({x, hp}), ""), cp);
        st.c = state_c(s);
        st.h = state_h(s);
        return st.h;
    }
    case Motif::UGRNN: {
        Tensor hp = st.h.defined() ? st.h : zeros_like_channels(x, C);
        st.h = ugrnn_op(conv3(concat_channels({x, hp}), ""), hp);
        return st.h;
    }
    case Motif::RGC: {
        Tensor hp = st.h.defined() ? st.h : zeros_like_channels(x, C);
        Tensor cp = st.c.defined() ? st.c : zeros_like_channels(x, C);
        Tensor s = elu(rgc_gates_op(conv3(cp, "c."), conv3(hp, "h."), conv3(x, "x."), x, cp, hp));
        st.c = state_c(s);
        st.h = state_h(s);
        return st.h;
    }
    }
    return x;
}

}  // namespace vt

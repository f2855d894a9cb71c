// test_models.cpp: backbones, cells (against their equations written with plain ops, and
// the gradient checker), feedback, the unrolling schedule and whole-model gradient checks.
#include <cmath>

#include "engine/gradcheck.h"
#include "engine/ops.h"
#include "models/convrnn.h"
#include "tests/testutil.h"

using namespace vt;

namespace {

Tensor randn(const Shape& s, uint64_t seed, float std = 1.f, bool grad = false) {
    Tensor t = tensor_empty(s, Device::CPU, grad);
    Rng r(seed);
    tensor_randn(t, r, std);
    return t;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
    REQUIRE(a.numel() == b.numel());
    double m = 0;
    for (int64_t i = 0; i < a.numel(); i++) m = std::max(m, (double)std::fabs(a.data()[i] - b.data()[i]));
    return m;
}

// Randomise every parameter (feedback included) so that tests see non-trivial values:
// weights N(0, (gain^2 / fan_in)), keeping activations O(1) over the steps; vectors N(0, 0.3^2).
void randomise(Model& m, uint64_t seed, float gain = 1.f) {
    Rng r(seed);
    for (auto& e : m.params.entries) {
        int64_t fan_in = e.shape.size() > 1 ? shape_numel(e.shape) / e.shape[0] : 0;
        tensor_randn(e.view, r, fan_in ? gain / std::sqrt((float)fan_in) : 0.3f);
    }
}

Model make_model(const std::string& arch, const std::string& motif, const std::string& fb, uint64_t seed = 1) {
    ModelConfig cfg;
    cfg.arch = arch;
    BackboneSpec b = backbone_spec(arch);
    cfg.motifs.assign(b.layers.size(), motif_parse(motif));
    cfg.feedback = feedback_parse(fb, b);
    return Model(cfg, seed);
}

// All outputs of all steps, flattened into one (N, D) tensor.
Tensor all_outputs(const Unrolled& u) {
    std::vector<Tensor> parts;
    for (const auto& step : u.out)
        for (const Tensor& o : step)
            if (o.defined()) parts.push_back(o.flatten());
    return concat_channels(parts);
}

// Cells and whole models: see engine/gradcheck.h for why these differ from the ops' 1e-2.
GradCheckOptions model_check_options() {
    GradCheckOptions opt;
    opt.eps = 4e-2;
    opt.tol = 5e-2;
    return opt;
}

// A cell's parameters ("L.cell.*", depth C), every one drawn N(0, std^2).
ParamArena random_cell_params(Motif mo, int C, uint64_t seed, float std) {
    std::vector<ParamSpec> specs;
    cell_param_specs(specs, mo, "L", C);
    ParamArena p(specs, seed);
    Rng r(seed + 1);
    for (auto& e : p.entries) tensor_randn(e.view, r, std);
    return p;
}

// The tiny3 unrolls of the gradient checks: a named 2-image batch (it requires a gradient),
// 6 steps, the image for 3 of them.
Tensor tiny3_image() {
    Tensor img = randn({2, 3, 8, 8}, 8, 1.f, true);
    img.name = "image";
    return img;
}
UnrollConfig tiny3_unroll() {
    UnrollConfig uc;
    uc.steps = 6;
    uc.image_steps = 3;
    uc.batch = 2;
    return uc;
}

// The whole unroll (all outputs of all steps) through the gradient checker, w.r.t. the image
// and every parameter.
void check_unroll_gradients(const Model& m, const Tensor& img, const UnrollConfig& uc) {
    std::vector<Tensor> wrt = {img};
    for (auto& e : m.params.entries) wrt.push_back(e.view);
    auto f = [&] {
        Unrolled u;
        unroll_build(u, m, uc, /*record=*/false, img);
        return all_outputs(u);
    };
    GradCheckOptions opt = model_check_options();
    opt.max_samples = 24;
    GradCheckResult res = grad_check(f, wrt, opt);
    INFO(res.worst << " err " << res.max_err << " checked " << res.checked << " skipped " << res.skipped);
    CHECK(res.ok);
}

}  // namespace

TEST_CASE("models: backbone shapes follow docs/science.md") {
    BackboneSpec s = backbone_spec("hcnn5-s");
    REQUIRE(s.layers.size() == 5);
    CHECK(s.in_size == 64);
    int ch[5] = {32, 64, 128, 128, 256}, conv[5] = {32, 16, 8, 4, 2}, out[5] = {16, 8, 4, 2, 1};
    for (int i = 0; i < 5; i++) {
        CHECK(s.layers[i].out_ch == ch[i]);
        CHECK(s.layers[i].conv_size == conv[i]);
        CHECK(s.layers[i].out_size == out[i]);
    }
    BackboneSpec p = backbone_spec("hcnn5");
    CHECK(p.in_size == 128);
    CHECK(p.layers[0].kernel == 7);
    CHECK(p.layers[0].stride == 2);
    CHECK(p.layers[4].out_ch == 512);
    CHECK(p.layers[4].out_size == 2);
    BackboneSpec a = backbone_spec("alexnet");
    CHECK(a.layers[0].conv_size == 55);
    CHECK(a.layers[4].out_size == 6);
    CHECK(a.feature_dim() == 9216);
    // the feedforward pass produces those shapes
    ModelConfig cfg;
    Model m(cfg, 1);
    std::vector<Tensor> o = backbone_forward(m, randn({2, 3, 64, 64}, 2));
    CHECK(o[0].shape == Shape{2, 32, 16, 16});
    CHECK(o[4].shape == Shape{2, 256, 1, 1});
}

TEST_CASE("models: rnn-large matches lstm's parameter count within 0.3%") {
    for (const char* arch : {"hcnn5-s", "hcnn5"}) {
        Model l = make_model(arch, "lstm", ""), r = make_model(arch, "rnn-large", ""), n = make_model(arch, "none", "");
        double cells_l = (double)(l.params.numel() - n.params.numel()), cells_r = (double)(r.params.numel() - n.params.numel());
        CAPTURE(arch);
        CHECK(std::fabs(cells_r / cells_l - 1) < 0.003);  // the convs: 9 D (C + D) against 72 C^2, within 0.2% per layer
    }
}

TEST_CASE("cells: each fused cell equals its equations written with plain ops") {
    const int N = 2, C = 3, H = 4, W = 5;
    for (const char* name : {"timedecay", "rnn", "rnn-large", "gru", "lstm", "ugrnn", "rgc"}) {
        INFO("cell " << std::string(name));
        Motif mo = motif_parse(name);
        ParamArena p = random_cell_params(mo, C, 3, 0.4f);
        CellState st;
        Tensor h_ref, c_ref;  // reference state
        for (int t = 0; t < 3; t++) {
            Tensor x = randn({N, C, H, W}, 10 + t);
            Tensor h = cell_step(mo, p, "L", x, st);
            auto zeros = [&](int64_t ch) { return tensor_zeros({N, ch, H, W}); };
            auto conv = [&](const Tensor& in, const std::string& w) {
                return conv2d(in, p["L.cell." + w + "weight"], p["L.cell." + w + "bias"], 1, 1);
            };
            Tensor hp = h_ref.defined() ? h_ref : zeros(mo == Motif::RNNLarge ? rnn_large_depth(C) : C);
            Tensor cp = c_ref.defined() ? c_ref : zeros(C);
            Tensor expect;
            switch (mo) {
            case Motif::TimeDecay:
                h_ref = add(mul(sigmoid(p["L.cell.tau"]).reshape({1, C, 1, 1}).data() ? scale_channels(hp, sigmoid(p["L.cell.tau"])) : hp, tensor_full({N, C, H, W}, 1.f)), x);
                expect = h_ref;
                break;
            case Motif::RNN:
            case Motif::RNNLarge:
                h_ref = elu(conv(concat_channels({x, hp}), ""));
                expect = slice_channels(h_ref, 0, C);
                break;
            case Motif::GRU: {
                auto g = split_channels(sigmoid(add_scalar(conv(concat_channels({x, hp}), "gates."), 1.f)), {C, C});
                Tensor cand = vt::tanh(conv(concat_channels({x, mul(g[0], hp)}), "cand."));
                h_ref = add(mul(g[1], hp), mul(add_scalar(mul_scalar(g[1], -1.f), 1.f), cand));
                expect = h_ref;
                break;
            }
            case Motif::LSTM: {
                auto g = split_channels(conv(concat_channels({x, hp}), ""), {C, C, C, C});
                c_ref = add(mul(cp, sigmoid(add_scalar(g[2], 1.f))), mul(sigmoid(g[0]), vt::tanh(g[1])));
                h_ref = mul(vt::tanh(c_ref), sigmoid(g[3]));
                expect = h_ref;
                break;
            }
            case Motif::UGRNN: {
                auto g = split_channels(conv(concat_channels({x, hp}), ""), {C, C});
                Tensor gate = sigmoid(add_scalar(g[0], 1.f));
                h_ref = add(mul(gate, hp), mul(add_scalar(mul_scalar(gate, -1.f), 1.f), vt::tanh(g[1])));
                expect = h_ref;
                break;
            }
            case Motif::RGC: {
                auto a = split_channels(conv(cp, "c."), {C, C});  // [tc, gh]
                auto b = split_channels(conv(hp, "h."), {C, C});  // [gc, th]
                auto one_minus_s = [](const Tensor& v) { return add_scalar(mul_scalar(sigmoid(v), -1.f), 1.f); };
                Tensor cn = elu(add(mul(one_minus_s(a[0]), cp), mul(one_minus_s(b[0]), conv(x, "x."))));
                h_ref = elu(add(mul(one_minus_s(b[1]), hp), mul(one_minus_s(a[1]), x)));
                c_ref = cn;
                expect = h_ref;
                break;
            }
            default: break;
            }
            CHECK(max_abs_diff(h, expect) < 1e-5);
        }
    }
}

TEST_CASE("cells: every cell passes the gradient checker over three steps") {
    const int N = 2, C = 3, H = 3, W = 4;
    for (const char* name : {"timedecay", "rnn", "rnn-large", "gru", "lstm", "ugrnn", "rgc"}) {
        INFO("cell " << std::string(name));
        Motif mo = motif_parse(name);
        ParamArena p = random_cell_params(mo, C, 5, 0.2f);
        std::vector<Tensor> xs, wrt;
        for (int t = 0; t < 3; t++) {
            xs.push_back(randn({N, C, H, W}, 20 + t, 1.f, true));
            xs.back().name = "x" + std::to_string(t);
            wrt.push_back(xs.back());
        }
        for (auto& e : p.entries) wrt.push_back(e.view);
        auto f = [&] {
            CellState st;
            std::vector<Tensor> hs;
            for (const Tensor& x : xs) hs.push_back(cell_step(mo, p, "L", x, st));
            return concat_channels(hs);
        };
        GradCheckResult res = grad_check(f, wrt, model_check_options());
        INFO(res.worst << " err " << res.max_err << " skipped " << res.skipped);
        CHECK(res.ok);
    }
}

TEST_CASE("cells: a zero state skips its half of the conv, a repeated x keeps its projection and shares one state half of the weight; the step is the same") {
    // Three ways through the same five steps, x = [a, a, a, b, b]: (1) the default (x_repeats
    // off), starting from an undefined (zero) state, (2) x_repeats on, (3) the state given as
    // explicit zero tensors, so that the first step runs the conv over [x, 0] in one GEMM.
    // Outputs and the gradients of x and of every parameter must agree.
    const int N = 2, C = 3, H = 4, W = 5;
    for (const char* name : {"rnn", "rnn-large", "gru", "lstm", "ugrnn", "rgc"}) {
        INFO("cell " << std::string(name));
        Motif mo = motif_parse(name);
        ParamArena p = random_cell_params(mo, C, 3, 0.4f);
        const int64_t D = mo == Motif::RNNLarge ? rnn_large_depth(C) : C;
        struct Run {
            std::vector<Tensor> hs;
            std::vector<std::vector<float>> grads;  // a, b, then every parameter
        };
        auto run = [&](int way) {
            Tensor a = randn({N, C, H, W}, 30, 1.f, true), b = randn({N, C, H, W}, 31, 1.f, true);
            p.zero_grad();
            Tape tape;
            Run out;
            {
                TapeScope scope(tape);
                CellState st;
                if (way == 3) {
                    st.h = tensor_zeros({N, D, H, W});
                    if (mo == Motif::LSTM || mo == Motif::RGC) st.c = tensor_zeros({N, C, H, W});
                }
                Tensor loss;
                for (int t = 0; t < 5; t++) {
                    const Tensor& x = t < 3 ? a : b;
                    std::vector<Tensor> before = st.x_proj, w_before = st.w_state;
                    out.hs.push_back(cell_step(mo, p, "L", x, st, way == 2));
                    // the weights' state halves (rgc has none: its convs take one input each):
                    // sliced at the first step with a state, then one tensor shared by every step
                    if (way == 2 && mo != Motif::RGC) {
                        CHECK(st.w_state.empty() == (t == 0));
                        for (size_t k = 0; k < st.w_state.size(); k++) {
                            bool kept = k < w_before.size() && w_before[k].buf == st.w_state[k].buf;
                            CHECK(kept == (t >= 2));
                        }
                    } else {
                        CHECK(st.w_state.empty());
                    }
                    if (way == 2) {  // the projections: kept while x repeats, new for a new x
                        REQUIRE(!st.x_proj.empty());
                        for (size_t k = 0; k < st.x_proj.size(); k++) {
                            bool kept = k < before.size() && before[k].buf == st.x_proj[k].buf;
                            CHECK(kept == (t != 0 && t != 3));
                        }
                    } else {
                        CHECK(st.x_proj.empty());
                    }
                    Tensor term = sum(mul(out.hs.back(), randn({N, C, H, W}, 40 + t)));
                    loss = loss.defined() ? add(loss, term) : term;
                }
                tape.backward(loss);
            }
            out.grads.push_back(std::vector<float>(a.grad(), a.grad() + a.numel()));
            out.grads.push_back(std::vector<float>(b.grad(), b.grad() + b.numel()));
            for (auto& e : p.entries) out.grads.push_back(std::vector<float>(e.view.grad(), e.view.grad() + e.view.numel()));
            return out;
        };
        Run r1 = run(1), r2 = run(2), r3 = run(3);
        for (const Run* o : {&r2, &r3}) {
            for (int t = 0; t < 5; t++) {  // relative to the size of h (rnn-large's elu state grows to ~1e2)
                double scale = 0;
                for (int64_t i = 0; i < r1.hs[t].numel(); i++) scale = std::max(scale, (double)std::fabs(r1.hs[t].data()[i]));
                CHECK(max_abs_diff(r1.hs[t], o->hs[t]) <= 1e-5 * std::max(1.0, scale));
            }
            REQUIRE(o->grads.size() == r1.grads.size());
            for (size_t g = 0; g < r1.grads.size(); g++) {
                double m = 0, scale = 0;
                for (size_t i = 0; i < r1.grads[g].size(); i++) {
                    m = std::max(m, (double)std::fabs(r1.grads[g][i] - o->grads[g][i]));
                    scale = std::max(scale, (double)std::fabs(r1.grads[g][i]));
                }
                INFO("gradient " << g << " (0: a, 1: b, then the parameters)");
                CHECK(scale > 0);
                CHECK(m <= 1e-5 * std::max(1.0, scale));
            }
        }
    }
}

TEST_CASE("models: the first layer's pre-memory conv runs once per frame, and gradients stay exact") {
    // tiny3 with feedback into conv2 only: conv1 sees the image for 3 steps, then the grey.
    for (const char* name : {"none", "lstm", "gru", "rgc"}) {
        INFO("cell " << std::string(name));
        Model m = make_model("tiny3", name, "conv3:conv2");
        randomise(m, 7);
        const Tensor img = tiny3_image();
        const UnrollConfig uc = tiny3_unroll();
        {
            Unrolled u;
            unroll_build(u, m, uc, /*record=*/true, img);
            const LayerSpec& l0 = m.spec.layers[0];
            int premem = 0;
            for (const Node& n : u.tape.nodes)
                if (std::string(n.op) == "conv2d" && n.out.shape == Shape{2, l0.out_ch, l0.conv_size, l0.conv_size}) premem++;
            // the image's and the grey's, not one per step (5); counted where no cell conv has
            // the same output shape (gru's candidate and rgc's W_xc x have it)
            if (m.motif(0) == Motif::None || m.motif(0) == Motif::LSTM) CHECK(premem == 2);
        }
        check_unroll_gradients(m, img, uc);
    }
}

TEST_CASE("models: the unroll's shortcuts change no output or gradient; a small feedback source is not resized") {
    // tiny5 + conv5:conv2: conv5's 1x1 map feeds conv2's 8x8 input (conv2d_upsampled); tiny3 +
    // conv3:conv2: conv1 is fed by the frame alone (computed once per frame). Each unrolled with
    // and without UnrollConfig::shortcuts: outputs and the gradients of the image and of every
    // parameter agree.
    struct Case {
        const char *arch, *motif, *fb;
        int size, steps;
        bool stateless0;  // conv1 lesioned (its state reset at every step)
    };
    for (Case c : {Case{"tiny5", "lstm", "conv5:conv2", 32, 9, false},
                   Case{"tiny5", "gru", "conv5:conv2,conv4:conv1", 32, 9, false},  // both sources 1x1
                   Case{"tiny5", "lstm", "conv3:conv1", 32, 9, false},             // a 2x2 source into conv1 (7x7/2)
                   Case{"tiny3", "rgc", "conv3:conv2", 8, 6, false}, Case{"tiny3", "lstm", "conv3:conv2", 8, 6, true}}) {
        INFO(c.arch << " " << c.motif << " " << c.fb << (c.stateless0 ? " conv1 stateless" : ""));
        Model m = make_model(c.arch, c.motif, c.fb);
        if (c.stateless0) m.cfg.stateless = {0};
        randomise(m, 9);
        Tensor img = randn({2, 3, c.size, c.size}, 10, 1.f, true);
        UnrollConfig uc;
        uc.steps = c.steps;  // tiny5: conv5 first answers at step 5, so conv2 gets feedback from step 6
        uc.image_steps = 3;
        uc.batch = 2;
        std::vector<Tensor> outs;
        std::vector<std::vector<float>> grads;  // per way: the image's, then every parameter's, concatenated
        std::vector<int> up(2, 0), resized(2, 0);
        for (int way = 0; way < 2; way++) {
            uc.shortcuts = way == 1;
            m.params.zero_grad();
            std::fill(img.grad(), img.grad() + img.numel(), 0.f);
            Unrolled u;
            unroll_build(u, m, uc, /*record=*/true, img);
            Tensor all;
            {
                TapeScope scope(u.tape);
                all = all_outputs(u);
                u.tape.backward(sum(mul(all, randn(all.shape, 11))));
            }
            for (const Node& n : u.tape.nodes) {
                up[way] += std::string(n.op) == "conv2d_upsampled";
                resized[way] += std::string(n.op) == "resize_bilinear";
            }
            outs.push_back(all);
            std::vector<float> g(img.grad(), img.grad() + img.numel());
            for (auto& e : m.params.entries) g.insert(g.end(), e.view.grad(), e.view.grad() + e.view.numel());
            grads.push_back(g);
        }
        if (std::string(c.arch) == "tiny5") {  // conv5 -> conv2 from step 6, conv4 -> conv1 from 5, conv3 -> conv1 from 4
            CHECK(up[0] == 0);
            CHECK(up[1] >= 3);
            CHECK(resized[1] == 0);
            CHECK(resized[0] == up[1]);
        }
        REQUIRE(outs[0].numel() == outs[1].numel());
        double dout = 0, sout = 0, dg = 0, sg = 0;
        for (int64_t i = 0; i < outs[0].numel(); i++) {
            dout = std::max(dout, (double)std::fabs(outs[0].data()[i] - outs[1].data()[i]));
            sout = std::max(sout, (double)std::fabs(outs[0].data()[i]));
        }
        for (size_t i = 0; i < grads[0].size(); i++) {
            dg = std::max(dg, (double)std::fabs(grads[0][i] - grads[1][i]));
            sg = std::max(sg, (double)std::fabs(grads[0][i]));
        }
        CHECK(sout > 0);
        CHECK(sg > 0);
        CHECK(dout <= 1e-5 * std::max(1.0, sout));
        CHECK(dg <= 1e-5 * std::max(1.0, sg));
    }
}

TEST_CASE("models: a recorded unroll replayed on a new image equals one built on it, with and without shortcuts") {
    // The shortcuts keep tensors across steps (conv1's conv of the frame, its cells' input
    // half); a replay after copying another batch into u.image must recompute them.
    for (bool shortcuts : {true, false}) {
        INFO("shortcuts " << shortcuts);
        Model m = make_model("tiny5", "lstm", "conv5:conv2");
        randomise(m, 12);
        UnrollConfig uc;
        uc.steps = 8;
        uc.image_steps = 3;
        uc.batch = 2;
        uc.shortcuts = shortcuts;
        Tensor a = randn({2, 3, 32, 32}, 13), b = randn({2, 3, 32, 32}, 14);
        auto grads = [&](Unrolled& u, bool replay) {
            m.params.zero_grad();
            TapeScope scope(u.tape);
            if (replay) u.tape.forward();
            Tensor all = all_outputs(u);
            u.tape.backward(sum(all));
            std::vector<float> g = all.to_vector();
            for (auto& e : m.params.entries) g.insert(g.end(), e.view.grad(), e.view.grad() + e.view.numel());
            return g;
        };
        Unrolled fresh;
        unroll_build(fresh, m, uc, /*record=*/true, b);
        std::vector<float> want = grads(fresh, false);
        Unrolled u;
        unroll_build(u, m, uc, /*record=*/true, a);
        tensor_copy(u.image, b);
        std::vector<float> got = grads(u, true);
        REQUIRE(got.size() == want.size());
        double worst = 0, scale = 0;
        for (size_t i = 0; i < got.size(); i++) {
            worst = std::max(worst, (double)std::fabs(got[i] - want[i]));
            scale = std::max(scale, (double)std::fabs(want[i]));
        }
        CHECK(scale > 0);
        CHECK(worst <= 1e-6 * std::max(1.0, scale));
    }
}

TEST_CASE("models: truncated BPTT cuts the state and feedback between blocks of steps, and nothing else") {
    // tiny3, lstm, conv3:conv1, 9 steps cut every 3 (between steps 3|4 and 6|7): the outputs are
    // full BPTT's; with the cuts open every gradient is full BPTT's; held, a loss on the first
    // block's steps (1-3) keeps full BPTT's gradients and a loss on later steps loses some;
    // `none` cells without feedback have nothing to cut.
    struct Case {
        const char *motif, *fb;
    };
    for (Case c : {Case{"lstm", "conv3:conv1"}, Case{"none", "none"}}) {
        INFO(c.motif << " " << c.fb);
        Model m = make_model("tiny3", c.motif, c.fb);
        randomise(m, 9);
        Tensor img = randn({2, 3, 8, 8}, 10, 1.f, true);
        UnrollConfig uc;
        uc.steps = 9, uc.image_steps = 5, uc.batch = 2;
        // run: outputs of all steps, and the gradients (image, then every parameter) of a
        // random projection of the outputs of steps [t0, t1)
        auto run = [&](int truncate, bool cut, int t0, int t1, std::vector<float>& outs, int& gates) {
            uc.truncate = truncate;
            m.params.zero_grad();
            std::fill(img.grad(), img.grad() + img.numel(), 0.f);
            Unrolled u;
            unroll_build(u, m, uc, /*record=*/true, img);
            *u.cut = cut;
            gates = 0;
            for (const Node& n : u.tape.nodes) gates += std::string(n.op) == "grad_gate";
            {
                TapeScope scope(u.tape);
                Tensor all = all_outputs(u);
                outs.assign(all.data(), all.data() + all.numel());
                std::vector<Tensor> parts;
                for (int t = t0; t < t1; t++)
                    for (const Tensor& o : u.out[t])
                        if (o.defined()) parts.push_back(o.flatten());
                Tensor sel = concat_channels(parts);
                u.tape.backward(sum(mul(sel, randn(sel.shape, 11 + t0))));
            }
            std::vector<float> g(img.grad(), img.grad() + img.numel());
            for (auto& e : m.params.entries) g.insert(g.end(), e.view.grad(), e.view.grad() + e.view.numel());
            return g;
        };
        auto maxdiff = [](const std::vector<float>& a, const std::vector<float>& b) {
            REQUIRE(a.size() == b.size());
            double d = 0;
            for (size_t i = 0; i < a.size(); i++) d = std::max(d, (double)std::fabs(a[i] - b[i]));
            return d;
        };
        std::vector<float> o_full, o_cut;
        int g_full = 0, g_cut = 0;
        const bool stateful = std::string(c.motif) != "none";
        for (auto [t0, t1] : {std::pair<int, int>{1, 4}, std::pair<int, int>{4, 9}}) {
            INFO("loss on steps " << t0 << ".." << t1 - 1);
            const std::vector<float> full = run(0, true, t0, t1, o_full, g_full);
            const std::vector<float> open = run(3, false, t0, t1, o_cut, g_cut);
            CHECK(g_full == 0);
            CHECK(g_cut == (stateful ? 2 * 2 * 3 + 2 : 0));  // per cut: c and h of 3 layers, conv3's feedback
            CHECK(maxdiff(o_full, o_cut) == 0);
            CHECK(maxdiff(full, open) == 0);
            const std::vector<float> held = run(3, true, t0, t1, o_cut, g_cut);
            CHECK(maxdiff(o_full, o_cut) == 0);
            double scale = 0;
            for (float v : full) scale = std::max(scale, (double)std::fabs(v));
            REQUIRE(scale > 0);
            if (t0 == 1 || !stateful) CHECK(maxdiff(full, held) == 0);
            else CHECK(maxdiff(full, held) > 1e-3 * scale);
        }
    }
}

TEST_CASE("models: whole-model gradient check for every cell with a feedback edge, 5 steps") {
    for (const char* name : {"none", "timedecay", "rnn", "rnn-large", "gru", "lstm", "ugrnn", "rgc"}) {
        INFO("cell " << std::string(name));
        Model m = make_model("tiny3", name, "conv3:conv1,conv3:conv2");
        randomise(m, 7);
        check_unroll_gradients(m, tiny3_image(), tiny3_unroll());
    }
}

TEST_CASE("models: whole-model gradient check with every 3x3 convolution as Winograd F(2x2), F(4x4) and the implicit GEMM") {
    // the cells' split convs (W_x x + W_h h), the feedback conv and the backbone through the
    // Winograd kernels, the implicit GEMM and F(2x2) on its micro-kernel (forced: the automatic
    // rule keeps these small maps on im2col)
    for (CpuConvPath path :
         {CpuConvPath::Winograd2, CpuConvPath::Winograd4, CpuConvPath::Implicit, CpuConvPath::FusedWinograd}) {
        vt_test::ConvPathScope scope(path);
        for (const char* name : {"gru", "lstm"}) {
            INFO("cell " << std::string(name) << " path " << (int)path);
            Model m = make_model("tiny3", name, "conv3:conv1,conv3:conv2");
            randomise(m, 7);
            check_unroll_gradients(m, tiny3_image(), tiny3_unroll());
        }
    }
}

TEST_CASE("models: a fresh feedback edge changes no output at any step") {
    for (const char* name : {"none", "lstm", "gru"}) {
        Model plain = make_model("hcnn5-s", name, "", 11), fb = make_model("hcnn5-s", name, "conv5:conv2,conv4:conv3", 11);
        UnrollConfig uc;
        uc.steps = 9;
        uc.image_steps = 4;
        uc.batch = 2;
        Tensor img = randn({2, 3, 64, 64}, 12);
        Unrolled a, b;
        unroll_build(a, plain, uc, true, img);
        unroll_build(b, fb, uc, true, img);
        for (int t = 0; t < uc.steps; t++)
            for (int l = 0; l < 5; l++) {
                REQUIRE(a.out[t][l].defined() == b.out[t][l].defined());
                // equal up to float summation order (the GEMM's K grows by the zero weights)
                if (a.out[t][l].defined()) CHECK(max_abs_diff(a.out[t][l], b.out[t][l]) < 1e-5);
            }
        // ... and it does once its weights move
        tensor_fill(fb.params["conv2.fb.conv5.weight"], 0.01f);
        Unrolled c;
        unroll_build(c, fb, uc, true, img);
        CHECK(max_abs_diff(a.out[8][1], c.out[8][1]) > 1e-4);
    }
}

TEST_CASE("models: a stateless layer (a recurrence lesion) forgets every step; the others keep their state") {
    // timedecay without its state is h = x: with every layer stateless the model is its `none` twin
    Model td = make_model("tiny3", "timedecay", "", 21), none = make_model("tiny3", "none", "", 21);
    for (const char* l : {"conv1", "conv2", "conv3"}) tensor_fill(td.params[std::string(l) + ".cell.tau"], 1.f);
    UnrollConfig uc;
    uc.steps = 7;
    uc.image_steps = 3;
    uc.batch = 2;
    Tensor img = randn({2, 3, 8, 8}, 22);
    Unrolled a, b, c;
    unroll_build(a, none, uc, true, img);
    td.cfg.stateless = {0, 1, 2};
    unroll_build(b, td, uc, true, img);
    for (int t = 0; t < uc.steps; t++)
        for (int l = 0; l < 3; l++) {
            REQUIRE(a.out[t][l].defined() == b.out[t][l].defined());
            if (a.out[t][l].defined()) CHECK(max_abs_diff(a.out[t][l], b.out[t][l]) == 0);
        }
    // with conv1 alone stateless, conv1 is still feedforward but conv2 integrates again
    td.cfg.stateless = {0};
    unroll_build(c, td, uc, true, img);
    CHECK(max_abs_diff(a.out[4][0], c.out[4][0]) == 0);
    CHECK(max_abs_diff(a.out[5][1], c.out[5][1]) > 1e-3);
}

TEST_CASE("models: with `none` cells, conv k first depends on the image at step k") {
    Model m = make_model("hcnn5-s", "none", "");
    UnrollConfig uc;
    uc.steps = 8;
    uc.image_steps = 3;
    uc.batch = 1;
    Unrolled a, b;
    unroll_build(a, m, uc, true, randn({1, 3, 64, 64}, 13));
    unroll_build(b, m, uc, true, randn({1, 3, 64, 64}, 14));
    for (int k = 1; k <= 5; k++)
        for (int t = 0; t < uc.steps; t++) {
            CAPTURE(k); CAPTURE(t);
            const Tensor &x = a.out[t][k - 1], &y = b.out[t][k - 1];
            if (t < k) {
                CHECK(!x.defined());  // silent: exactly zero
            } else if (t < k + uc.image_steps) {
                CHECK(max_abs_diff(x, y) > 1e-3);  // sees (a transform of) the image
            } else {
                CHECK(max_abs_diff(x, y) == 0.0);  // only the grey frame has reached it
            }
        }
    // the feedforward unroll at step k equals the backbone's feedforward pass
    std::vector<Tensor> ff = backbone_forward(m, a.image);
    for (int k = 1; k <= 5; k++) CHECK(max_abs_diff(a.out[k][k - 1], ff[k - 1]) < 1e-5);
}

TEST_CASE("models: replaying an unroll on a new batch equals building it afresh") {
    Model m = make_model("tiny3", "lstm", "conv3:conv1");
    randomise(m, 15);
    m.freeze_backbone();
    UnrollConfig uc;
    uc.steps = 6;
    uc.image_steps = 2;
    uc.batch = 3;
    Unrolled u;
    unroll_build(u, m, uc);
    Tensor second = randn({3, 3, 8, 8}, 16);
    tensor_copy(u.image, second);
    u.tape.forward();
    Unrolled v;
    unroll_build(v, m, uc, true, second);
    for (int l = 0; l < 3; l++) CHECK(max_abs_diff(u.out[5][l], v.out[5][l]) == 0.0);
    CHECK(u.arena.chunks.size() >= 1);  // activations came from the arena
    // frozen backbone: no gradient reaches it, the cells and feedback get one
    m.params.zero_grad();
    {
        TapeScope scope(u.tape);
        u.tape.backward(sum(u.out[5][2]));
    }
    double bb = 0, cell = 0;
    for (int64_t i = 0; i < m.params["conv2.weight"].numel(); i++) bb += std::fabs(m.params["conv2.weight"].grad()[i]);
    for (int64_t i = 0; i < m.params["conv2.cell.weight"].numel(); i++) cell += std::fabs(m.params["conv2.cell.weight"].grad()[i]);
    CHECK(bb == 0.0);
    CHECK(cell > 0.0);
}

TEST_CASE("models: bad configurations are refused with clear messages") {
    BackboneSpec b = backbone_spec("hcnn5-s");
    CHECK_THROWS_WITH_AS(feedback_parse("conv2:conv5", b), doctest::Contains("from an earlier to a later layer"), vt::Error);
    CHECK_THROWS_WITH_AS(feedback_parse("conv5:conv9", b), doctest::Contains("unknown layer 'conv9'"), vt::Error);
    CHECK_THROWS_WITH_AS(feedback_parse("conv5-conv2", b), doctest::Contains("src:dst"), vt::Error);
    CHECK_THROWS_WITH_AS(feedback_parse("conv5:conv2,conv5:conv2", b), doctest::Contains("twice"), vt::Error);
    CHECK_THROWS_WITH_AS(motif_parse("lstmm"), doctest::Contains("unknown motif 'lstmm'"), vt::Error);
    CHECK_THROWS_WITH_AS(backbone_spec("resnet"), doctest::Contains("unknown architecture 'resnet'"), vt::Error);
    CHECK(feedback_parse("conv5:conv2,conv4:conv3", b).size() == 2);
    CHECK(feedback_str(feedback_parse("conv5:conv2", b), b) == "conv5:conv2");
}

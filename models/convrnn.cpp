// convrnn.cpp: the model's parameters, the feedforward pass and the time unrolling
// (see convrnn.h).
#include "models/convrnn.h"

#include <algorithm>
#include <map>
#include <memory>

#include "engine/backend.h"
#include "engine/ops.h"

namespace vt {

// ---- feedback edges --------------------------------------------------------------------

std::vector<FeedbackEdge> feedback_parse(const std::string& s, const BackboneSpec& b) {
    std::vector<FeedbackEdge> edges;
    if (s.empty() || s == "none") return edges;
    for (const std::string& e : list_items(s)) {
        size_t colon = e.find(':');
        if (colon == std::string::npos)
            fail("--feedback: '%s' is not of the form src:dst (e.g. conv5:conv2)", e.c_str());
        int src = b.layer_index(e.substr(0, colon)), dst = b.layer_index(e.substr(colon + 1));
        if (src <= dst)
            fail("--feedback: '%s' goes from an earlier to a later layer; feedback must go from a later layer "
                 "to an earlier one (e.g. %s:%s)",
                 e.c_str(), b.layers[std::max(src, dst)].name.c_str(), b.layers[std::min(src, dst)].name.c_str());
        for (const FeedbackEdge& f : edges)
            if (f.src == src && f.dst == dst) fail("--feedback: edge '%s' given twice", e.c_str());
        edges.push_back({src, dst});
    }
    return edges;
}

std::string feedback_str(const std::vector<FeedbackEdge>& fb, const BackboneSpec& b) {
    std::string s;
    for (const FeedbackEdge& e : fb) s += (s.empty() ? "" : ",") + b.layers[e.src].name + ":" + b.layers[e.dst].name;
    return s.empty() ? "none" : s;
}

// ---- the model -------------------------------------------------------------------------

static std::string fb_weight_name(const BackboneSpec& b, const FeedbackEdge& e) {
    return b.layers[e.dst].name + ".fb." + b.layers[e.src].name + ".weight";
}

static std::vector<ParamSpec> model_param_specs(const ModelConfig& cfg, const BackboneSpec& b) {
    std::vector<ParamSpec> specs;
    backbone_param_specs(specs, b, cfg.num_classes);
    if (!cfg.motifs.empty() && cfg.motifs.size() != b.layers.size())
        fail("%zu motifs given for %zu layers", cfg.motifs.size(), b.layers.size());
    for (size_t l = 0; l < b.layers.size(); l++) {
        Motif m = cfg.motifs.empty() ? Motif::None : cfg.motifs[l];
        cell_param_specs(specs, m, b.layers[l].name, b.layers[l].out_ch);
        if (cfg.residual && m != Motif::None)
            specs.push_back({b.layers[l].name + ".cell.scale", {b.layers[l].out_ch}, Init::Zeros});
    }
    for (const FeedbackEdge& e : cfg.feedback) {
        const LayerSpec &d = b.layers[e.dst], &s = b.layers[e.src];
        specs.push_back({fb_weight_name(b, e), {d.out_ch, s.out_ch, d.kernel, d.kernel}, Init::Zeros});
    }
    return specs;
}

Model::Model(const ModelConfig& c, uint64_t seed, Device dev)
    : cfg(c), spec(backbone_spec(c.arch)), params(model_param_specs(c, spec), seed, dev) {}

void Model::freeze_backbone() {
    for (const LayerSpec& l : spec.layers) {
        params.set_trainable(l.name + ".weight", false);
        params.set_trainable(l.name + ".bias", false);
    }
    params.set_trainable("fc", false);
}

// conv -> (cell) -> act -> pool for layer l, given its pre-memory input.
static Tensor post_memory(const LayerSpec& l, const Tensor& h) {
    Tensor a = l.act == Act::ELU ? elu(h) : relu(h);
    return l.pool_k ? maxpool2d(a, l.pool_k, l.pool_s, l.pool_p) : a;
}

std::vector<Tensor> backbone_forward(const Model& m, const Tensor& x) {
    std::vector<Tensor> outs;
    Tensor h = x;
    for (const LayerSpec& l : m.spec.layers) {
        h = post_memory(l, conv2d(h, m.params[l.name + ".weight"], m.params[l.name + ".bias"], l.stride, l.pad));
        outs.push_back(h);
    }
    return outs;
}

Tensor classifier_forward(const Model& m, const Tensor& features, bool training, uint64_t seed) {
    CHECK(m.cfg.num_classes > 0, "classifier_forward on a model without a classifier head");
    Tensor h = features.flatten();
    size_t nfc = m.spec.head.size() + 1;
    for (size_t i = 0; i < nfc; i++) {
        std::string name = "fc" + std::to_string(i + 1);
        // dropout before every hidden layer, not before the last (torchvision's AlexNet order)
        if (m.spec.dropout > 0.f && i + 1 < nfc) h = dropout(h, m.spec.dropout, seed + i, training);
        h = linear(h, m.params[name + ".weight"], m.params[name + ".bias"]);
        if (i + 1 < nfc) h = relu(h);
    }
    return h;
}

// ---- the unroll --------------------------------------------------------------------------

void unroll_build(Unrolled& u, const Model& m, const UnrollConfig& cfg, bool record, const Tensor& image) {
    CHECK(cfg.steps >= 1 && cfg.image_steps >= 0 && cfg.batch >= 1, "unroll: bad steps %d / image_steps %d / batch %d",
          cfg.steps, cfg.image_steps, cfg.batch);
    const BackboneSpec& b = m.spec;
    const int L = (int)b.layers.size(), S = b.in_size, N = cfg.batch;
    u.cfg = cfg;
    u.tape.clear();
    u.arena = MemoryArena();
    u.arena.device = m.params.device;
    u.out.assign(cfg.steps, std::vector<Tensor>(L));
    if (image.defined()) check_shape(image, {N, 3, S, S}, "unroll stimulus");
    u.image = image.defined() ? image : tensor_zeros({N, 3, S, S}, m.params.device);
    Tensor grey = tensor_empty({N, 3, S, S}, m.params.device);
    for (int c = 0; c < 3; c++) {  // the mean-grey frame, 0.5 before normalisation
        Tensor plane = tensor_full({S * S}, (0.5f - m.norm.mean[c]) / m.norm.std[c]);
        for (int n = 0; n < N; n++) tensor_copy(grey.view_at(((int64_t)n * 3 + c) * S * S, {S * S}), plane);
    }

    std::unique_ptr<TapeScope> rec;
    if (record) rec = std::make_unique<TapeScope>(u.tape);
    ArenaScope arena(u.arena);  // every activation of the T steps in one arena

    // The weight of each layer's pre-memory conv over [ff_in, fb_1, ...]: the backbone's
    // weight concatenated with the feedback weights of the sources active at that step
    // (keyed by a bitmask of active sources; built once per unroll, replayed per iteration).
    std::vector<std::map<unsigned, Tensor>> weights(L);
    auto premem_weight = [&](int l, const std::vector<int>& fb_edges, unsigned mask) {
        auto it = weights[l].find(mask);
        if (it != weights[l].end()) return it->second;
        std::vector<Tensor> parts = {m.params[b.layers[l].name + ".weight"]};
        for (size_t k = 0; k < fb_edges.size(); k++)
            if (mask >> k & 1) parts.push_back(m.params[fb_weight_name(b, m.cfg.feedback[fb_edges[k]])]);
        Tensor w = parts.size() == 1 ? parts[0] : concat_channels(parts);
        weights[l][mask] = w;
        return w;
    };

    std::vector<CellState> state(L);
    std::vector<Tensor> frame_in(L), frame_x(L);  // a frame-fed layer's last input and its pre-memory conv
    CHECK(cfg.truncate >= 0, "unroll: bad truncate %d", cfg.truncate);
    std::vector<char> is_src(L, 0);
    for (const FeedbackEdge& e : m.cfg.feedback) is_src[e.src] = 1;
    std::vector<Tensor> fb_src(L);  // each layer's output of the step before, as fed back
    for (int t = 1; t < cfg.steps; t++) {
        const Tensor& frame = (t - 1) < cfg.image_steps ? u.image : grey;
        // truncated BPTT: between steps k*truncate and k*truncate + 1 the memory and the
        // feedback cross through a gate (grad_gate), the feedforward path does not
        const bool cut = cfg.truncate > 0 && t > 1 && (t - 1) % cfg.truncate == 0;
        for (int l = 0; l < L; l++) {
            if (cut && state[l].c.defined()) state[l].c = grad_gate(state[l].c, u.cut);
            if (cut && state[l].h.defined()) state[l].h = grad_gate(state[l].h, u.cut);
            const Tensor& prev = u.out[t - 1][l];
            fb_src[l] = cut && is_src[l] && prev.defined() ? grad_gate(prev, u.cut) : prev;
        }
        for (int l = 0; l < L; l++) {
            const LayerSpec& ls = b.layers[l];
            Tensor ff = l == 0 ? frame : u.out[t - 1][l - 1];
            if (!ff.defined()) continue;  // silent: nothing has reached this layer yet
            std::vector<int> fb_edges;
            for (size_t e = 0; e < m.cfg.feedback.size(); e++)
                if (m.cfg.feedback[e].dst == l) fb_edges.push_back((int)e);
            std::vector<Tensor> inputs = {ff};
            std::vector<std::pair<Tensor, Tensor>> small;  // (source, feedback weight): conv2d_upsampled
            unsigned mask = 0;
            for (size_t k = 0; k < fb_edges.size(); k++) {
                const Tensor& src = fb_src[m.cfg.feedback[fb_edges[k]].src];
                if (!src.defined()) continue;  // a silent source contributes zero
                bool same = src.dim(2) == ff.dim(2) && src.dim(3) == ff.dim(3);
                // On the CPU a small source (conv5's 1x1 or 2x2 map into conv2) is convolved
                // through its resize taps, not resized (conv2d_upsampled; the GPU keeps one conv
                // over the concatenation): where it has at most 1/16 of the destination's pixels
                // and at most half as many pixels Q as channels (the op's multiplies per output
                // are KK*Q against the conv's KK*C), and its tap matrix (KK*Q x the conv's
                // output pixels) stays under 4M floats.
                const int64_t Q = src.dim(2) * src.dim(3), KK = (int64_t)ls.kernel * ls.kernel,
                              OP = (int64_t)ls.conv_size * ls.conv_size;
                if (!same && cfg.shortcuts && u.arena.device == Device::CPU && Q * 16 <= ff.dim(2) * ff.dim(3) &&
                    2 * Q <= src.dim(1) && KK * Q * OP <= (int64_t)4 << 20) {
                    small.push_back({src, m.params[fb_weight_name(b, m.cfg.feedback[fb_edges[k]])]});
                    continue;
                }
                mask |= 1u << k;
                inputs.push_back(same ? src : resize_bilinear(src, (int)ff.dim(2), (int)ff.dim(3)));
            }
            Tensor in = inputs.size() == 1 ? ff : concat_channels(inputs);
            // The first layer's conv of the frame is the same at every step while the image (or
            // the grey) stays: computed once per frame. Fed by the frame alone (no small
            // feedback added), so is its cell's input projection (cell_step's x_repeats): a
            // sixth to a quarter of a step's convolution work.
            const bool frame_only = cfg.shortcuts && l == 0 && inputs.size() == 1;
            Tensor x;
            if (frame_only && frame_x[l].defined() && frame_in[l].buf == in.buf && frame_in[l].offset == in.offset) {
                x = frame_x[l];
            } else {
                x = conv2d(in, premem_weight(l, fb_edges, mask), m.params[ls.name + ".bias"], ls.stride, ls.pad);
                frame_in[l] = frame_only ? in : Tensor();
                frame_x[l] = frame_only ? x : Tensor();
            }
            for (const auto& [src, w] : small)
                x = add(x, conv2d_upsampled(src, w, (int)ff.dim(2), (int)ff.dim(3), ls.stride, ls.pad));
            const bool repeats = frame_only && small.empty();
            if (std::find(m.cfg.stateless.begin(), m.cfg.stateless.end(), l) != m.cfg.stateless.end())
                state[l] = CellState();  // lesioned: no memory of earlier steps
            Tensor h = cell_step(m.motif(l), m.params, ls.name, x, state[l], repeats);
            if (m.cfg.residual && m.motif(l) != Motif::None) h = add(x, scale_channels(h, m.params[ls.name + ".cell.scale"]));
            u.out[t][l] = post_memory(ls, h);
        }
    }
}

}  // namespace vt

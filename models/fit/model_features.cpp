// model_features.cpp: a checkpoint's features and predictions on images (model_features.h).
#include "models/fit/model_features.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "models/datasets/npz_stream.h"
#include "models/cells.h"
#include "models/fit/dynamics.h"
#include "models/fit/features.h"

namespace vt {

namespace {

std::vector<float> floats_of(const Npz& z, const std::string& path, const std::string& key, size_t count) {
    if (!z.has(key)) fail("checkpoint '%s': a fit's checkpoint needs '%s', which is missing (written by an older "
                          "fit_dynamics? fit again)", path.c_str(), key.c_str());
    std::vector<float> v = z.get(key).to_f32();
    if (count && v.size() != count)
        fail("checkpoint '%s': '%s' holds %zu values, expected %zu", path.c_str(), key.c_str(), v.size(), count);
    for (float x : v)
        if (!std::isfinite(x)) fail("checkpoint '%s': '%s' holds a non-finite value", path.c_str(), key.c_str());
    return v;
}

int whole(const Npz& z, const std::string& path, const std::string& key, int lo, int hi) {
    float f = floats_of(z, path, key, 1)[0];
    if (f != std::floor(f) || f < lo || f > hi)
        fail("checkpoint '%s': '%s' = %g, expected a whole number in [%d, %d]", path.c_str(), key.c_str(), f, lo, hi);
    return (int)f;
}

int layer_index(const Model& m, const std::string& name, const std::string& what) {
    for (size_t l = 0; l < m.spec.layers.size(); l++)
        if (m.spec.layers[l].name == name) return (int)l;
    std::vector<std::string> names;
    for (const LayerSpec& ls : m.spec.layers) names.push_back(ls.name);
    fail("%s: no layer '%s' in %s (layers: %s)", what.c_str(), name.c_str(), m.spec.arch.c_str(), list_join(names).c_str());
}

// The fitted model's time, bins and readouts (split_checkpoint_save in dynamics.cpp writes them).
void fitted_load(CheckpointModel& cm, const Npz& z, const std::string& readout) {
    const std::string& p = cm.path;
    cm.fitted = true;
    cm.onset_ms = floats_of(z, p, "meta.onset_ms", 1)[0];
    cm.ms_per_step = floats_of(z, p, "meta.ms_per_step", 1)[0];
    if (!(cm.ms_per_step > 0)) fail("checkpoint '%s': meta.ms_per_step must be positive", p.c_str());
    cm.steps = whole(z, p, "meta.steps", 1, 1000);
    cm.image_steps = whole(z, p, "meta.image_steps", 0, 1000);
    cm.bin_start_ms = floats_of(z, p, "meta.bin_start_ms", 0);
    cm.bin_end_ms = floats_of(z, p, "meta.bin_end_ms", cm.bin_start_ms.size());
    if (cm.bin_start_ms.empty()) fail("checkpoint '%s': meta.bin_start_ms holds no bins", p.c_str());
    for (const auto& al : readout_parse(readout)) {
        CheckpointModel::Readout r;
        r.area = al.first, r.layer = al.second;
        r.layer_index = layer_index(*cm.model, r.layer, "checkpoint '" + p + "': meta.readout");
        const std::string ids = "meta.unit_id." + r.area;
        if (!z.has(ids)) fail("checkpoint '%s': a fit's checkpoint needs '%s', which is missing (written by an older "
                              "fit_dynamics? fit again)", p.c_str(), ids.c_str());
        r.unit_id = z.get(ids).dtype == DType::Unicode ? z.get(ids).to_strings() : std::vector<std::string>{};
        const size_t Ua = r.unit_id.size();
        const LayerSpec& ls = cm.model->spec.layers[r.layer_index];
        const size_t D = (size_t)ls.out_ch * ls.out_size * ls.out_size;
        r.weight = floats_of(z, p, "readout." + r.area + ".weight", Ua * D);
        if (Ua == 0) continue;  // an area without fit units has no readout to run
        r.bias = floats_of(z, p, "readout." + r.area + ".bias", Ua);
        r.unit_mean = floats_of(z, p, "meta.unit_mean." + r.area, Ua);
        r.unit_sd = floats_of(z, p, "meta.unit_sd." + r.area, Ua);
        cm.readouts.push_back(std::move(r));
    }
    if (cm.readouts.empty()) fail("checkpoint '%s': meta.readout names no area with units", p.c_str());
}

}  // namespace

CheckpointModel checkpoint_model_load(const std::string& path, Device dev) {
    CheckpointModel cm;
    cm.path = path;
    NpzIndex zi = npz_index(path);  // the small meta arrays; the parameters are read once, below
    auto small_text = [&](const char* key, const char* otherwise) {
        if (!zi.has(key)) return std::string(otherwise);
        NpyArray a = npz_array(zi, key);
        std::vector<std::string> v = a.dtype == DType::Unicode ? a.to_strings() : std::vector<std::string>{};
        if (v.size() != 1) fail("checkpoint '%s': '%s' must hold one string", path.c_str(), key);
        return v[0];
    };
    cm.motif = small_text("meta.motif", "none");
    cm.feedback = small_text("meta.feedback", "none");
    ModelConfig mc;
    mc.arch = checkpoint_arch(path, "");
    const BackboneSpec spec = backbone_spec(mc.arch);
    mc.motifs.assign(spec.layers.size(), motif_parse(cm.motif));
    mc.feedback = feedback_parse(cm.feedback, spec);
    if (zi.has("meta.residual")) {
        std::vector<float> r = npz_array(zi, "meta.residual").to_f32();
        if (r.size() != 1 || !(r[0] == 0 || r[0] == 1))
            fail("checkpoint '%s': 'meta.residual' must hold one value, 0 or 1", path.c_str());
        mc.residual = r[0] == 1;
    } else {
        mc.residual = cm.motif != "none";  // the fits before meta.residual were residual
    }
    cm.model = std::make_unique<Model>(mc, 0, dev);
    Npz z = checkpoint_load(path, cm.model->params);  // every parameter by name, shapes checked
    cm.model->norm = checkpoint_norm(z, path);
    if (z.has("meta.split")) fitted_load(cm, z, small_text("meta.readout", ""));
    return cm;
}

Npz model_features(const CheckpointModel& cm, int64_t N, const std::function<void(int64_t, float*)>& input,
                   const FeatureRequest& req, const std::function<void(int64_t)>& done) {
    const Model& m = *cm.model;
    const int L = (int)m.spec.layers.size(), S = m.spec.in_size;
    if (N < 1) fail("features: no images");
    if (req.batch < 1) fail("--batch: expected at least 1 image, got %d", req.batch);
    if (req.bins && !cm.fitted)
        fail("--bins: '%s' is not a fit's checkpoint, so it has no time bins (bins come from the fit: "
             "fit_dynamics' checkpoints/split<s>.npz)", cm.path.c_str());
    const int T = req.steps > 0 ? req.steps : cm.fitted ? cm.steps : L + 1;
    const int image_steps = req.image_steps >= 0 ? req.image_steps : cm.fitted ? cm.image_steps : T;
    if (T > 1000) fail("--steps: at most 1000, got %d", T);

    std::vector<int> layers;  // indices
    if (req.predictions_only) {
        if (!cm.fitted) fail("features: '%s' is not a fit's checkpoint: it has no predictions", cm.path.c_str());
    } else if (!req.layers.empty()) {
        for (const std::string& n : req.layers) layers.push_back(layer_index(m, n, "--layers"));
    } else if (cm.fitted) {
        for (const auto& r : cm.readouts)
            if (std::find(layers.begin(), layers.end(), r.layer_index) == layers.end()) layers.push_back(r.layer_index);
    } else {
        layers.push_back(L - 1);
    }
    std::vector<std::vector<int>> steps_of_bin;  // fitted models: the fit's steps of each bin
    const int64_t B = (int64_t)cm.bin_start_ms.size();
    if (cm.fitted) steps_of_bin = bin_steps(cm.bin_start_ms, cm.bin_end_ms, cm.ms_per_step, cm.onset_ms, T);

    // what the output holds, checked against memory before any work
    auto D_of = [&](int l) {
        const LayerSpec& ls = m.spec.layers[l];
        return (int64_t)ls.out_ch * ls.out_size * ls.out_size;
    };
    uint64_t bytes = 0;
    for (int l : layers) bytes += (uint64_t)checked_bytes({N, req.bins ? B : T, D_of(l)}, 4, "--layers");
    for (const auto& r : cm.readouts) bytes += (uint64_t)checked_bytes({N, (int64_t)r.unit_id.size(), B}, 4, "predictions");
    mem_check(strfmt("the features of %lld images (%zu layers x %d %s; fewer --layers, --steps or --bins make it "
                     "smaller)", (long long)N, layers.size(), req.bins ? (int)B : T, req.bins ? "bins" : "steps"),
              2 * bytes);  // the arrays, then their copy in the npz

    std::vector<std::vector<float>> feat(layers.size());
    for (size_t k = 0; k < layers.size(); k++) feat[k].assign((size_t)(N * (req.bins ? B : T) * D_of(layers[k])), 0.f);
    std::vector<std::vector<float>> pred(cm.readouts.size());
    for (size_t a = 0; a < cm.readouts.size(); a++) pred[a].assign((size_t)(N * cm.readouts[a].unit_id.size() * B), 0.f);

    const int nb = (int)std::min<int64_t>(req.batch, N);
    Unrolled u;
    unroll_build(u, m, UnrollConfig{T, image_steps, nb}, true);
    const int64_t isz = 3 * (int64_t)S * S;
    std::vector<float> x((size_t)(nb * isz)), o;
    for (int64_t i0 = 0; i0 < N; i0 += nb) {
        const int64_t cnt = std::min<int64_t>(nb, N - i0);
        for (int64_t j = 0; j < nb; j++) input(std::min(i0 + j, N - 1), &x[(size_t)(j * isz)]);  // past the end: repeat
        backend_copy_from_host(u.image.device(), u.image.data(), x.data(), nb * isz);
        u.tape.forward();
        // per layer: the (nb, D) output of each step, or the mean over each bin's steps
        auto step_out = [&](int t, int l, std::vector<float>& dst) {
            const Tensor& ot = u.out[t][l];
            dst.assign((size_t)(nb * D_of(l)), 0.f);
            if (ot.defined()) backend_copy_to_host(ot.device(), dst.data(), ot.data(), nb * D_of(l));
        };
        std::vector<std::vector<std::vector<float>>> binned(L);  // [layer][bin] (nb, D), where needed
        auto bin_mean = [&](int l) -> std::vector<std::vector<float>>& {
            if (!binned[l].empty()) return binned[l];
            binned[l].assign(B, std::vector<float>((size_t)(nb * D_of(l)), 0.f));
            for (int64_t b = 0; b < B; b++) {
                for (int t : steps_of_bin[b]) {
                    step_out(t, l, o);
                    for (size_t e = 0; e < o.size(); e++) binned[l][b][e] += o[e];
                }
                if (steps_of_bin[b].size() > 1)
                    for (float& v : binned[l][b]) v /= (float)steps_of_bin[b].size();
            }
            return binned[l];
        };
        for (size_t k = 0; k < layers.size(); k++) {
            const int l = layers[k];
            const int64_t D = D_of(l), R = req.bins ? B : T;
            for (int64_t r = 0; r < R; r++) {
                const std::vector<float>* src = &o;
                if (req.bins) src = &bin_mean(l)[r];
                else step_out((int)r, l, o);
                for (int64_t j = 0; j < cnt; j++)
                    std::memcpy(&feat[k][(size_t)(((i0 + j) * R + r) * D)], &(*src)[(size_t)(j * D)], D * sizeof(float));
            }
        }
        for (size_t a = 0; a < cm.readouts.size(); a++) {
            const CheckpointModel::Readout& rd = cm.readouts[a];
            const int64_t D = D_of(rd.layer_index), Ua = (int64_t)rd.unit_id.size();
            const auto& fb = bin_mean(rd.layer_index);
            for (int64_t j = 0; j < cnt; j++)
                for (int64_t k = 0; k < Ua; k++)
                    for (int64_t b = 0; b < B; b++) {
                        double y = rd.bias[k];
                        const float* f = &fb[b][(size_t)(j * D)];
                        const float* w = &rd.weight[(size_t)(k * D)];
                        for (int64_t e = 0; e < D; e++) y += (double)f[e] * w[e];
                        pred[a][(size_t)(((i0 + j) * Ua + k) * B + b)] = (float)(y * rd.unit_sd[k] + rd.unit_mean[k]);
                    }
        }
        if (done) done(i0 + cnt);
    }

    Npz z;
    for (size_t k = 0; k < layers.size(); k++) {
        const LayerSpec& ls = m.spec.layers[layers[k]];
        Shape sh = req.bins ? Shape{N, B, D_of(layers[k])} : Shape{N, T, ls.out_ch, ls.out_size, ls.out_size};
        z.set(ls.name, NpyArray::from_f32(sh, feat[k].data()));
        std::vector<float>().swap(feat[k]);
    }
    for (size_t a = 0; a < cm.readouts.size(); a++) {
        const CheckpointModel::Readout& rd = cm.readouts[a];
        z.set("prediction." + rd.area, NpyArray::from_f32({N, (int64_t)rd.unit_id.size(), B}, pred[a].data()));
        z.set("unit_id." + rd.area, NpyArray::from_strings(rd.unit_id));
    }
    if (cm.fitted) {
        z.set("bin_start_ms", NpyArray::from_f32({B}, cm.bin_start_ms.data()));
        z.set("bin_end_ms", NpyArray::from_f32({B}, cm.bin_end_ms.data()));
        std::vector<float> ms;
        for (int t = 0; t < T; t++) ms.push_back(cm.onset_ms + t * cm.ms_per_step);
        z.set("step_ms", NpyArray::from_f32({T}, ms.data()));
    }
    meta_set_string(z, "meta.checkpoint", cm.path);
    meta_set_string(z, "meta.arch", m.spec.arch);
    meta_set_string(z, "meta.motif", cm.motif);
    meta_set_string(z, "meta.feedback", cm.feedback);
    meta_set_floats(z, "meta.steps", {(float)T});
    meta_set_floats(z, "meta.image_steps", {(float)image_steps});
    return z;
}

}  // namespace vt

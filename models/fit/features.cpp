// features.cpp: backbone loading and feedforward features for stimuli (see features.h).
#include "models/fit/features.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <filesystem>

#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/io/image.h"
#include "models/datasets/npz_stream.h"

namespace vt {

std::string find_default_backbone(const char* tool) {
    if (std::filesystem::exists(kDefaultBackbone)) return kDefaultBackbone;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        std::filesystem::path p = std::filesystem::path(exe).parent_path().parent_path() / kDefaultBackbone;
        if (std::filesystem::exists(p)) return p.string();
    }
    fail("%s: the default backbone %s was not found (run from the repository root, or pass --backbone CKPT, e.g. one "
         "written by ./bin/pretrain)", tool, kDefaultBackbone);
}

std::string checkpoint_arch(const std::string& path, const std::string& arch) {
    NpzIndex z = npz_index(path);
    if (!z.has("meta.arch")) {
        if (arch.empty())
            fail("checkpoint '%s' has no 'meta.arch' naming its architecture; pass --arch (one of the backbones "
                 "%s)", path.c_str(), list_join(backbone_archs()).c_str());
        return arch;
    }
    NpyArray a = npz_array(z, "meta.arch");
    std::vector<std::string> v = a.dtype == DType::Unicode ? a.to_strings() : std::vector<std::string>{};
    if (v.size() != 1) fail("checkpoint '%s': 'meta.arch' must hold one string", path.c_str());
    if (!arch.empty() && arch != v[0])
        fail("checkpoint '%s' is a %s backbone (meta.arch), not --arch %s; drop --arch or pick the matching "
             "checkpoint", path.c_str(), v[0].c_str(), arch.c_str());
    return v[0];
}

Normalisation checkpoint_norm(const Npz& full, const std::string& path) {
    Normalisation n;
    if (!(full.has("meta.mean") && full.has("meta.std"))) return n;
    std::vector<float> mean = meta_floats(full, "meta.mean"), sd = meta_floats(full, "meta.std");
    if (mean.size() != 3 || sd.size() != 3)
        fail("checkpoint '%s': meta.mean and meta.std must hold 3 values (RGB), found %zu and %zu", path.c_str(),
             mean.size(), sd.size());
    for (int c = 0; c < 3; c++) {
        if (!(sd[c] > 0)) fail("checkpoint '%s': meta.std[%d] = %g is not positive", path.c_str(), c, sd[c]);
        n.mean[c] = mean[c], n.std[c] = sd[c];
    }
    return n;
}

std::unique_ptr<Model> backbone_load(const std::string& path, const std::string& arch, Device dev) {
    ModelConfig cfg;
    cfg.arch = checkpoint_arch(path, arch);
    auto m = std::make_unique<Model>(cfg, 0, dev);
    m->norm = checkpoint_norm(checkpoint_load(path, m->params), path);
    return m;
}

void stimulus_to_input(float* out, const uint8_t* rgb, int H, int W, int S, const Normalisation& norm) {
    Image img;
    img.H = H, img.W = W;
    img.rgb.assign(rgb, rgb + (size_t)H * W * 3);
    if (H != S || W != S) {
        img = image_resize_short_side(img, S);
        if (img.H != S || img.W != S) img = image_center_crop(img, S, S);
    }
    image_to_chw(out, img, norm.mean, norm.std);
}

// The same model with its parameters on `dev`.
static std::unique_ptr<Model> model_on(const Model& m, Device dev) {
    auto c = std::make_unique<Model>(m.cfg, 0, dev);
    CHECK(c->params.numel() == m.params.numel(), "model_on: %lld parameters, expected %lld",
          (long long)c->params.numel(), (long long)m.params.numel());
    backend_copy(dev, c->params.data.data(), m.params.device, m.params.data.data(), m.params.numel());
    c->norm = m.norm;
    return c;
}

std::vector<std::vector<float>> backbone_features(const Model& model, const uint8_t* images, int64_t N, int H, int W,
                                                  int batch, const std::function<void(int64_t)>& done, Device dev) {
    CHECK(batch >= 1, "backbone_features: batch %d", batch);
    std::unique_ptr<Model> moved;
    if (model.params.device != dev) moved = model_on(model, dev);
    const Model& m = moved ? *moved : model;
    const BackboneSpec& b = m.spec;
    const int S = b.in_size;
    const size_t L = b.layers.size();
    std::vector<int64_t> dim(L);
    std::vector<std::vector<float>> out(L);
    for (size_t l = 0; l < L; l++) {
        const LayerSpec& ls = b.layers[l];
        dim[l] = (int64_t)ls.out_ch * ls.out_size * ls.out_size;
        out[l].resize((size_t)(N * dim[l]));
    }
    const int64_t img_bytes = (int64_t)H * W * 3, in_floats = 3LL * S * S;
    PinnedBuffer stage;  // GPU: the batch is preprocessed here, then uploaded
    if (dev != Device::CPU) stage = PinnedBuffer(std::min<int64_t>(batch, N) * in_floats);
    NoGradScope inference;  // features only: record nothing, whatever tape a caller has open
    for (int64_t i0 = 0; i0 < N; i0 += batch) {
        const int64_t n = std::min<int64_t>(batch, N - i0);
        Tensor x = tensor_empty({n, 3, S, S}, dev);
        float* in = dev == Device::CPU ? x.data() : stage.data();
        #pragma omp parallel for schedule(dynamic)
        for (int64_t i = 0; i < n; i++)
            stimulus_to_input(in + i * in_floats, images + (i0 + i) * img_bytes, H, W, S, m.norm);
        if (dev != Device::CPU) backend_copy_from_host(dev, x.data(), stage.data(), n * in_floats);
        std::vector<Tensor> f = backbone_forward(m, x);
        for (size_t l = 0; l < L; l++) {
            CHECK(f[l].numel() == n * dim[l], "backbone_features: layer %s gives %s, expected %lld values per image",
                  b.layers[l].name.c_str(), shape_str(f[l].shape).c_str(), (long long)dim[l]);
            backend_copy_to_host(dev, &out[l][(size_t)(i0 * dim[l])], f[l].data(), f[l].numel());
        }
        if (done) done(i0 + n);
    }
    return out;
}

std::vector<FeatureArray> features_inspect(const std::string& path, int64_t N, int64_t B,
                                           const std::vector<std::string>& only) {
    NpzIndex z = npz_index(path);
    for (const std::string& w : only) z.member(w);  // fails listing the arrays
    std::vector<FeatureArray> out;
    const char* f = path.c_str();
    for (const ZipMember& m : z.members) {
        if (m.name.compare(0, 5, "meta.") == 0) continue;
        if (!only.empty() && std::find(only.begin(), only.end(), m.name) == only.end()) continue;
        NpyHeader h = npz_head(z, m.name);
        const char* a = m.name.c_str();
        if (h.dtype != DType::F32 && h.dtype != DType::F64)
            fail("features '%s': array '%s' is %s, expected float32", f, a, dtype_name(h.dtype));
        if (h.shape.size() != 2 && h.shape.size() != 3)
            fail("features '%s': array '%s' has %zu dimensions, expected (N, D) or (N, T, D)", f, a, h.shape.size());
        if (h.shape[0] != N)
            fail("features '%s': array '%s' has N = %lld images, the data has %lld: features must be for the data's "
                 "images, in the data's order", f, a, (long long)h.shape[0], (long long)N);
        FeatureArray fa{m.name, h.shape.size() == 3 ? h.shape[1] : 1, h.shape.back()};
        if (fa.T != 1 && fa.T != B)
            fail("features '%s': array '%s' has T = %lld time steps, the data has B = %lld bins: give (N, %lld, D), "
                 "one feature vector per bin (e.g. model outputs averaged over each bin's steps), or (N, D)", f, a,
                 (long long)fa.T, (long long)B, (long long)B);
        if (fa.D < 1) fail("features '%s': array '%s' has no features (D = 0)", f, a);
        out.push_back(fa);
    }
    if (out.empty()) fail("features '%s' holds no feature arrays", f);
    return out;
}

}  // namespace vt

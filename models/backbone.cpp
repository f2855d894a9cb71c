// backbone.cpp: the architecture tables (see backbone.h).
#include "models/backbone.h"

namespace vt {

static LayerSpec layer(const char* name, int in_ch, int out_ch, int k, int s, Act act, int pool_k, int pool_s,
                       int pool_p, int in_size) {
    LayerSpec l{name, in_ch, out_ch, k, s, k / 2, act, pool_k, pool_s, pool_p, in_size, 0, 0};
    l.conv_size = (in_size + 2 * l.pad - k) / s + 1;
    l.out_size = pool_k ? (l.conv_size + 2 * pool_p - pool_k) / pool_s + 1 : l.conv_size;
    return l;
}

static BackboneSpec hcnn5(const char* arch, int size, const int ch[5]) {
    BackboneSpec b;
    b.arch = arch;
    b.in_size = size;
    const char* names[5] = {"conv1", "conv2", "conv3", "conv4", "conv5"};
    int in_ch = 3, s = size;
    for (int i = 0; i < 5; i++) {
        b.layers.push_back(layer(names[i], in_ch, ch[i], i == 0 ? 7 : 3, i == 0 ? 2 : 1, Act::ELU, 3, 2, 1, s));
        in_ch = ch[i];
        s = b.layers.back().out_size;
    }
    return b;
}

std::vector<std::string> backbone_archs() { return {"hcnn5", "hcnn5-s", "alexnet", "tiny3", "tiny5"}; }

BackboneSpec backbone_spec(const std::string& arch) {
    if (arch == "hcnn5") {
        const int ch[5] = {64, 128, 256, 256, 512};
        return hcnn5("hcnn5", 128, ch);
    }
    if (arch == "hcnn5-s") {
        const int ch[5] = {32, 64, 128, 128, 256};
        return hcnn5("hcnn5-s", 64, ch);
    }
    if (arch == "tiny5") {  // hcnn5's five layers, tiny: the paper's grids (conv5 feedback) in seconds, for tests
        const int ch[5] = {4, 6, 8, 8, 8};
        return hcnn5("tiny5", 32, ch);
    }
    if (arch == "tiny3") {  // three small layers, for tests and quick experiments
        BackboneSpec b;
        b.arch = "tiny3";
        b.in_size = 8;
        b.layers.push_back(layer("conv1", 3, 3, 3, 1, Act::ELU, 3, 2, 1, 8));
        b.layers.push_back(layer("conv2", 3, 4, 3, 1, Act::ELU, 3, 2, 1, 4));
        b.layers.push_back(layer("conv3", 4, 5, 3, 1, Act::ELU, 3, 2, 1, 2));
        return b;
    }
    if (arch == "alexnet") {
        BackboneSpec b;
        b.arch = "alexnet";
        b.in_size = 224;
        b.layers.push_back(layer("conv1", 3, 64, 11, 4, Act::ReLU, 3, 2, 0, 224));
        b.layers.back().pad = 2;  // torchvision: padding 2
        b.layers.back().conv_size = (224 + 4 - 11) / 4 + 1;
        b.layers.back().out_size = (b.layers.back().conv_size - 3) / 2 + 1;
        b.layers.push_back(layer("conv2", 64, 192, 5, 1, Act::ReLU, 3, 2, 0, b.layers.back().out_size));
        b.layers.push_back(layer("conv3", 192, 384, 3, 1, Act::ReLU, 0, 0, 0, b.layers.back().out_size));
        b.layers.push_back(layer("conv4", 384, 256, 3, 1, Act::ReLU, 0, 0, 0, b.layers.back().out_size));
        b.layers.push_back(layer("conv5", 256, 256, 3, 1, Act::ReLU, 3, 2, 0, b.layers.back().out_size));
        b.head = {4096, 4096};
        b.dropout = 0.5f;
        return b;
    }
    fail("unknown architecture '%s' (known: %s)", arch.c_str(), list_join(backbone_archs()).c_str());
}

int BackboneSpec::layer_index(const std::string& name) const {
    for (size_t i = 0; i < layers.size(); i++)
        if (layers[i].name == name) return (int)i;
    std::string known;
    for (const LayerSpec& l : layers) known += (known.empty() ? "" : ", ") + l.name;
    fail("unknown layer '%s' for %s (layers: %s)", name.c_str(), arch.c_str(), known.c_str());
}

int64_t BackboneSpec::feature_dim() const {
    const LayerSpec& l = layers.back();
    return (int64_t)l.out_ch * l.out_size * l.out_size;
}

void backbone_param_specs(std::vector<ParamSpec>& specs, const BackboneSpec& b, int num_classes) {
    for (const LayerSpec& l : b.layers) {
        specs.push_back({l.name + ".weight", {l.out_ch, l.in_ch, l.kernel, l.kernel}, Init::HeNormal});
        specs.push_back({l.name + ".bias", {l.out_ch}, Init::Zeros});
    }
    if (num_classes <= 0) return;
    int64_t in = b.feature_dim();
    std::vector<int> sizes = b.head;
    sizes.push_back(num_classes);
    for (size_t i = 0; i < sizes.size(); i++) {
        std::string name = "fc" + std::to_string(i + 1);
        // the last layer starts small so initial logits are near uniform
        specs.push_back({name + ".weight", {sizes[i], in}, Init::HeNormal, i + 1 == sizes.size() ? 0.1f : 0.f});
        specs.push_back({name + ".bias", {sizes[i]}, Init::Zeros});
        in = sizes[i];
    }
}

}  // namespace vt

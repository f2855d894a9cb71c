// backbone.h: the feedforward backbones (docs/science.md section 1) as data.
//
// A backbone is five conv layers, conv1..conv5, each conv -> activation -> max-pool; then
// a linear classifier for pretraining. The ConvRNN (convrnn.h) puts a recurrent cell between
// each conv and its activation, and adds feedback; the backbone's weights are shared.
//   hcnn5    3x128x128; conv1 64 7x7/2; conv2 128, conv3 256, conv4 256, conv5 512, 3x3/1;
//            'same' padding; ELU; max-pool 3x3/2 pad 1 after every conv. (paper scale)
//   hcnn5-s  the same shape at 3x64x64 with 32/64/128/128/256 channels (CPU default)
//   alexnet  torchvision's AlexNet features at 3x224x224: conv 11/4 64, 5 192, 3 384, 3 256,
//            3 256; ReLU; max-pool 3x3/2 after conv1, conv2, conv5 (for converted weights)
//   tiny3    three layers (3/4/5 channels) at 3x8x8, for tests and quick experiments
//   tiny5    hcnn5's shape at 3x32x32 with 4/6/8/8/8 channels: the paper's grids in seconds (tests)
#pragma once
#include <string>
#include <vector>

#include "engine/params.h"
#include "kernels/kernels.h"

namespace vt {

struct LayerSpec {
    std::string name;              // "conv1".."conv5"
    int in_ch, out_ch;             // conv input / output channels
    int kernel, stride, pad;       // square conv
    Act act;                       // ELU (hcnn) or ReLU (alexnet)
    int pool_k, pool_s, pool_p;    // max-pool window/stride/padding; pool_k = 0: none
    int in_size, conv_size, out_size;  // spatial size of the input, after the conv, after the pool
};

struct BackboneSpec {
    std::string arch;
    int in_size = 0;               // input H = W
    std::vector<LayerSpec> layers;
    std::vector<int> head;         // classifier hidden sizes (alexnet: 4096, 4096); empty: one linear
    float dropout = 0.f;           // before each classifier layer (pretraining only)

    int layer_index(const std::string& name) const;  // fails listing the layer names
    int64_t feature_dim() const;   // flattened output of the last layer
};

BackboneSpec backbone_spec(const std::string& arch);   // fails listing the known architectures
std::vector<std::string> backbone_archs();

// Parameters of the backbone and of a classifier with `num_classes` outputs (0: none):
// "<layer>.weight" (OC, C, K, K), "<layer>.bias" (OC), "fc<i>.weight", "fc<i>.bias".
void backbone_param_specs(std::vector<ParamSpec>& specs, const BackboneSpec& b, int num_classes);

// Input normalisation: x = (rgb/255 - mean) / std, per channel; stored in checkpoints.
struct Normalisation {
    float mean[3] = {0.485f, 0.456f, 0.406f};
    float std[3] = {0.229f, 0.224f, 0.225f};
};

}  // namespace vt

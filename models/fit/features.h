// features.h: feedforward features of a pretrained backbone for a neural dataset's images
// (the input of ./bin/select_layers, the paper's Fig. 2).
//
// Stimuli of another size than the backbone's S x S input are resized so that their short
// side is S, then centre-cropped to S x S (a square stimulus is simply resized; bilinear,
// with area averaging when shrinking by more than 2x), scaled to [0, 1] and normalised with
// the checkpoint's per-channel mean and std. Features of layer l are its output after the
// activation and max-pool, flattened channel-major: D_l = C_l * H_l * W_l. No reduction is
// applied: at 3200 images the largest layer of the shipped architectures is hcnn5's conv1
// (65536 dims, 0.84 GB), and select_layers holds one dataset's features of all layers at once.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/io/npy.h"
#include "models/convrnn.h"

namespace vt {

// A backbone from a checkpoint. Its architecture is the checkpoint's "meta.arch"; `arch`
// (optional) must agree with it. The normalisation comes from "meta.mean" / "meta.std".
std::unique_ptr<Model> backbone_load(const std::string& path,   // a checkpoint (.npz)
                                     const std::string& arch,   // "" or the expected architecture
                                     Device dev = Device::CPU); // where its parameters live

// The pieces of backbone_load, for loaders of whole models (model_features.h): the architecture
// `path` names in meta.arch (`arch`, if not empty, must agree; used when meta.arch is absent),
// and the normalisation in meta.mean / meta.std of its arrays `full` (checked; the default
// when absent).
std::string checkpoint_arch(const std::string& path, const std::string& arch);
Normalisation checkpoint_norm(const Npz& full, const std::string& path);

// The shipped default backbone (hcnn5-s pretrained on CIFAR-10), found relative to the
// working directory or else to the binary's checkout (bin/../models/weights/...); `tool`
// names the caller in the error when it is missing.
constexpr const char* kDefaultBackbone = "models/weights/hcnn5-s_cifar10.npz";
std::string find_default_backbone(const char* tool);

// One stimulus (H, W, 3) uint8 into the network input (3, S, S), as described above.
void stimulus_to_input(float* out,             // (3, S, S)
                       const uint8_t* rgb,     // (H, W, 3)
                       int H, int W,           // stimulus size
                       int S,                  // backbone input side
                       const Normalisation& norm);

// Features of every layer for N stimuli: out[l] is (N, D_l), on the host. `done` (optional)
// is told the number of images processed after every batch. The forward passes run on `dev`:
// on a GPU each batch is preprocessed into a pinned host buffer, uploaded, and its features
// copied back; a model whose parameters live elsewhere is copied to `dev` first.
std::vector<std::vector<float>> backbone_features(const Model& m,
                                                  const uint8_t* images,  // (N, H, W, 3)
                                                  int64_t N, int H, int W,
                                                  int batch,              // images per forward pass
                                                  const std::function<void(int64_t)>& done = nullptr,
                                                  Device dev = Device::CPU);

// ---- bring-your-own features (./bin/score) ---------------------------------------------
// A features .npz holds one float32 (or float64) array per layer, (N, D) or (N, T, D).
struct FeatureArray {
    std::string name;                 // the array's (layer's) name
    int64_t T = 1, D = 0;             // (N, D) is T = 1
};

// Lists and checks the arrays of a features file against the data's N images and B bins
// from their headers alone (nothing large is read): float dtype, 2 or 3 dimensions,
// N equal to the data's, T = 1 or T = B, D >= 1. Arrays named "meta.*" are skipped; `only`
// (if not empty) selects arrays by name, each of which must exist.
std::vector<FeatureArray> features_inspect(const std::string& path, int64_t N, int64_t B,
                                           const std::vector<std::string>& only = {});

}  // namespace vt

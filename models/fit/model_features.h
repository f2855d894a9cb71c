// model_features.h: what a checkpoint's network computes for a set of images (./bin/features):
// the requested layers at every model step (or averaged over each time bin), and for a fitted
// ConvRNN (a fit's checkpoints/split<s>.npz) its readouts' predictions per bin, in the data's
// units (sp/s). The same computation as the fit: the unrolled model of models/convrnn.h (the
// image for image_steps steps, then mean grey; conv k first sees the image at step k; a silent
// layer is exactly zero), a bin's features the mean of its steps' outputs (models/fit/dynamics.h
// has the time convention), and the readout y = (f W^T + b) * sd + mean per unit.
//
// The output (an .npz numpy.load opens; docs/results.md has every key):
//   <layer>                float32 (N, T, C, H, W)  per step;  with bins: (N, B, C*H*W), the
//                                                   layout ./bin/score --features reads
//   prediction.<area>      float32 (N, U_a, B)      fitted models: the readout per bin (sp/s)
//   unit_id.<area>         str (U_a,)               the units of those rows
//   bin_start_ms, bin_end_ms float32 (B,)           fitted models, or with bins
//   step_ms                float32 (T,)             fitted models: each step's time after image onset
//   image                  str (N,)                 the image each row is (file or npz row)
//   meta.*                 the checkpoint, motif, feedback, steps, image_steps, onset_ms, ...
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/io/npy.h"
#include "models/convrnn.h"

namespace vt {

// A model checkpoint with what running it needs: a backbone (pretrain), a whole ConvRNN
// (make_virtual_primate --write-teacher, pretrain --motif) or a fitted one (fit_dynamics).
struct CheckpointModel {
    std::string path;
    std::unique_ptr<Model> model;
    std::string motif = "none", feedback = "none";
    bool fitted = false;  // a fit's split checkpoint: time, bins and readouts below are set
    float onset_ms = 0, ms_per_step = 10;
    int steps = 0, image_steps = 0;
    std::vector<float> bin_start_ms, bin_end_ms;
    struct Readout {
        std::string area, layer;
        int layer_index = 0;
        std::vector<std::string> unit_id;      // (Ua)
        std::vector<float> weight, bias;       // (Ua, D), (Ua): standardised units
        std::vector<float> unit_mean, unit_sd; // (Ua): y = standardised * sd + mean
    };
    std::vector<Readout> readouts;
};

// Loads and checks a checkpoint (vt::fail naming the file and the key on anything missing or
// inconsistent). Its parameters live on `dev`.
CheckpointModel checkpoint_model_load(const std::string& path, Device dev = Device::CPU);

struct FeatureRequest {
    std::vector<std::string> layers;  // empty: a fitted model's readout layers, else the last layer
    int steps = 0;                    // T; 0: a fitted model's, else what reaches the last layer (layers + 1)
    int image_steps = -1;             // -1: a fitted model's, else every step
    bool bins = false;                // per-bin means (the fit's bins) instead of per-step outputs
    bool predictions_only = false;    // a fitted model's predictions, no layer arrays (lesion.h)
    int batch = 16;                   // images per forward pass
};

// The output described above for N images; input(i, out) writes image i's network input
// (3, S, S), normalised (stimulus_to_input in models/fit/features.h). `done` (optional) is
// told the number of images processed after each batch. Fails before any work when the
// request names an unknown layer, asks for bins without a fitted model, or would not fit in
// memory.
Npz model_features(const CheckpointModel& cm, int64_t N, const std::function<void(int64_t, float*)>& input,
                   const FeatureRequest& req, const std::function<void(int64_t)>& done = nullptr);

}  // namespace vt

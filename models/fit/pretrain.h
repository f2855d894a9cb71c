// pretrain.h: training a backbone (or a whole ConvRNN) for image classification on an
// ImageNet-style folder: the loop behind ./bin/pretrain.
//
// SGD with momentum and weight decay, linear warm-up then a cosine (or step) schedule;
// the train graph is recorded once and replayed per batch; per-epoch val top-1 and top-5;
// a checkpoint after every epoch (written to a temporary name and renamed) that --resume
// continues from; SIGINT (Ctrl-C) saves and stops after the current batch.
//
// Before any training: the flags are checked, every training class must have a readable
// image, and `out` is claimed (engine/io/rundir.h file_claim: its folder created and writable,
// locked against a second run onto the same path, stale temporaries of killed saves removed).
#pragma once
#include <string>

#include "engine/tensor.h"

namespace vt {

struct PretrainConfig {
    std::string data;                 // DIR with train/<class>/ and val/ (or test/, or a held-out part)
    std::string arch = "hcnn5-s";
    std::string motif = "none";       // a recurrent cell at every layer: pretrain the ConvRNN end to end
    std::string feedback = "";        // e.g. "conv5:conv2"
    int steps = 8;                    // unroll length when motif/feedback is set (classify the last step)
    int epochs = 30;
    int batch = 128;
    float lr = 0.05f, momentum = 0.9f, weight_decay = 5e-4f;
    std::string schedule = "cosine";  // cosine | step (x0.1 at 50% and 75% of the epochs)
    int warmup_epochs = 1;
    float holdout = 0.1f;             // held out of train/ when there is no val/ or test/
    float crop_scale = 0.f;           // > 0: random-resized crops of area in [crop_scale, 1]
    int64_t max_train = 0;            // > 0: use only this many training images (quick runs)
    Device device = Device::CPU;      // where the model, its graphs and SGD live; batches are staged
                                      // through pinned host buffers and uploaded
    int threads = 0;                  // compute threads (0 = all cores)
    int loader_threads = 2;
    uint64_t seed = 0;
    std::string out = "runs/pretrain/backbone.npz";
    bool resume = false;              // continue from `out` (refused when its arch, motif, feedback,
                                      // steps or classes differ from this run's)
    bool overwrite = false;           // replace an existing `out` (else refused unless resume)
};

struct PretrainResult {
    int epochs_done = 0;
    float val_top1 = 0, val_top5 = 0;
    double seconds = 0, images_per_second = 0;
    bool interrupted = false;
};

PretrainResult pretrain_run(const PretrainConfig& cfg);

}  // namespace vt

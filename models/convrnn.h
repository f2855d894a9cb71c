// convrnn.h: the convolutional recurrent model and its time unrolling (docs/science.md section 2).
//
// Layer l at step t (every edge takes one step, "biological" unrolling):
//   harbor       inputs: the feedforward source's output and every feedback source's output,
//                all from step t-1; a feedback source is resized (bilinear, align_corners)
//                to the spatial size of the layer's feedforward input
//   pre-memory   x = conv_ff(ff_in) + sum_k conv_fb_k(fb_k) + b, computed as one conv over
//                the channel concatenation; feedback convs have the layer's kernel and stride
//                and start at zero (a new edge changes nothing until trained)
//   memory       h = cell(x, state)                                     (cells.h)
//                (residual models: h = x + a * cell(x, state), see ModelConfig::residual)
//   post-memory  output = maxpool(act(h))
// At t = 0 every output and state is zero. The stimulus: the image for image_steps steps,
// then the mean-grey frame (0.5 before normalisation); conv1 at step t sees the frame of
// step t-1, so conv k first sees the image at step k.
// A layer whose feedforward input has not yet carried anything (conv k before step k) is
// silent: its output and state are exactly zero and it is not computed (a convention: a
// computed layer would show a constant, image-independent bias response instead).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/params.h"
#include "models/backbone.h"
#include "models/cells.h"

namespace vt {

struct FeedbackEdge {
    int src, dst;  // layer indices, src > dst
};
// "conv5:conv2,conv4:conv3" (or "" / "none"); fails on unknown layers or earlier-to-later edges.
std::vector<FeedbackEdge> feedback_parse(const std::string& s, const BackboneSpec& b);
std::string feedback_str(const std::vector<FeedbackEdge>& fb, const BackboneSpec& b);

struct ModelConfig {
    std::string arch = "hcnn5-s";
    std::vector<Motif> motifs;           // one per layer; empty = `none` everywhere
    std::vector<FeedbackEdge> feedback;
    int num_classes = 0;                 // > 0: a classifier head (pretraining)
    // Residual cells ("pass-through" start, docs/science.md section 6; fit_dynamics uses it): a
    // layer with a cell outputs x + a * h instead of h, a = "<layer>.cell.scale" (C) per
    // channel, initialised to zero (ReZero), so a fresh model reproduces the feedforward
    // unroll exactly and training grows the dynamics from there. The cell's own state
    // recursion is unchanged.
    bool residual = false;
    // Layers whose recurrence is switched off (a lesion, ./bin/lesion): their cell's state is
    // reset to zero before every step, so the layer answers its present input only.
    std::vector<int> stateless;
};

struct Model {
    ModelConfig cfg;
    BackboneSpec spec;
    ParamArena params;
    Normalisation norm;

    Model(const ModelConfig& cfg, uint64_t seed, Device dev = Device::CPU);
    Motif motif(int layer) const { return cfg.motifs.empty() ? Motif::None : cfg.motifs[layer]; }
    // Freezes the backbone (conv weights and biases, classifier): cells, feedback stay trainable.
    void freeze_backbone();
};

// Feedforward pass of the backbone (no time, no cells): outputs of conv1..conv5.
std::vector<Tensor> backbone_forward(const Model& m, const Tensor& x);
// Classifier logits from the last backbone output (dropout when training).
Tensor classifier_forward(const Model& m, const Tensor& features, bool training, uint64_t seed);

struct UnrollConfig {
    int steps = 16;        // T: model steps 0..T-1 (step 0 is all zero)
    int image_steps = 10;  // steps the image is shown before the grey frame
    int batch = 16;        // N
    // Exact shortcuts (the same function up to float rounding): conv1, fed by the frame alone,
    // and its cell's input half once per frame; small feedback sources (conv5's map into conv2;
    // the rule is in convrnn.cpp) through conv2d_upsampled on the CPU. false: every conv as the
    // equations are written (tests compare the two). A zero state's half of a cell conv is
    // skipped either way (cell_step).
    bool shortcuts = true;
    // Truncated BPTT: > 0 cuts the gradient through the cells' state and the feedback edges
    // between steps k*truncate and k*truncate + 1 (k >= 1) while *Unrolled::cut holds; the
    // feedforward path (one step per layer) is never cut. 0: no cuts recorded.
    int truncate = 0;
};

// A recorded unrolled graph: copy a batch into `image`, then tape.forward() (and
// tape.backward(...)) replay all T steps on the same, planned buffers.
struct Unrolled {
    UnrollConfig cfg;
    MemoryArena arena;                    // every activation of all T steps
    Tape tape;
    Tensor image;                         // (N, 3, S, S), normalised
    std::vector<std::vector<Tensor>> out; // [t][layer] outputs; undefined = exactly zero (silent)
    std::shared_ptr<bool> cut = std::make_shared<bool>(true);  // with cfg.truncate: whether the cuts hold
};

// Records the unroll of `m` into u.tape. With record = false the ops go to whatever tape is
// active (a caller's, e.g. the gradient checker's, or none: inference). `image`, if given
// (N, 3, S, S), is used as the stimulus tensor instead of a fresh u.image.
void unroll_build(Unrolled& u, const Model& m, const UnrollConfig& cfg, bool record = true, const Tensor& image = {});

}  // namespace vt

// dynamics.h: fitting a ConvRNN to the time course of V4 and IT responses by
// backpropagation through time (docs/science.md sections 4-6; ./bin/fit_dynamics).
//
// Sizes: N images, U units, B bins, T model steps, S splits, D_a features of the layer that
// area a reads (C * H * W of its output after the pool).
//
// Time (docs/science.md section 5): step t happens at t * ms_per_step + onset_ms after image
// onset; bin [a, b) is predicted by the mean of the readout layer's outputs over the steps
// whose time falls in [a, b) (a silent step counts as zero). T defaults to what the latest
// bin needs; a --steps too small for the latest bin is an error naming the bin. A bin that
// no step falls in (narrower than a step, or before step 0) gets a constant prediction and
// scores 0 where the data vary in it. The image is shown for image_steps steps (default
// presentation_ms / ms_per_step), then the mean-grey frame.
//
// The fit, per split (S splits over images, stratified by object when labels exist; split s
// holds out fold s):
//  1. Units: per area, a seeded `heldout_fraction` of the scored units is held out of the
//     BPTT fit (the held-out units); the rest are the fit units.
//  2. Model: the backbone (a checkpoint) frozen; `motif` cells at every layer, feedback edges
//     starting at zero. Cells are plain (the paper's: h = cell(x, state)), or with
//     `residual` in the residual form of ModelConfig::residual (h = x + a * cell). The
//     cells' start (dynamics.cpp cells_start): with memory_init every cell channel is a
//     leaky integrator of its input (cells.h cell_init_memory); residual cells start with
//     a = cell_scale_init, and with a = 0 a fresh student IS its feedforward unroll. Measured
//     (docs/fit_quality.md, "What limits the fit"): plain cells with memory do best in short fits and in
//     long fits on 1024 images; the residual feedforward unroll only in long fits on 128
//     images and a mismatched backbone (the recovery test's setting). With `init` the student is
//     that checkpoint's model instead (backbone, cells, feedback; residual or not). The fresh
//     student is the same for every split; its features are computed once.
//  3. Readout: per area one linear map from its layer (time-shared: the same map for every
//     bin), in closed form on the fresh student's features of the training images, from
//     features to targets, both centred within each bin (the image-to-image variation the
//     score measures, as the loss below): ridge (readout_solver "ridge", the default), each
//     unit keeping the penalty that predicts a held-out quarter of the training images best
//     (where ridge_affordable; a larger readout falls back to PLS, with a note), or PLS
//     ("pls"), each unit keeping the number of components (at most
//     readout_components) that does; then the bias that zeroes the mean residual. Measured
//     (docs/fit_quality.md, "Ridge readouts"): ridge lifted the cpu preset's fit (320 images)
//     by about +0.02-0.03 in V4 and IT and the held-out units' readouts (64 images) most; at
//     the gpu preset's 1920 images the two are level.
//  4. Loss, per area and bin, on unit-standardised targets (each unit's mean over training
//     images and bins removed, divided by its pooled within-bin SD over images):
//       (1 - mean_weight) * mean over batch and units of the batch-centred error^2
//           + mean_weight * mean of the error^2
//     i.e. mostly the image-to-image variation within each bin (what the score measures),
//     a little of the mean time course; summed over areas, averaged over bins.
//  5. Training: Adam (decoupled weight decay) on cells and feedback, its lr constant or
//     decaying (lr_schedule, warmup: lr_factor below); a cell weight tensor of
//     fan-in F (inputs per output, C*K*K for a conv) steps with lr/sqrt(F), a feedback conv's
//     with lr/F, vectors (biases, per-channel scales) with lr: Adam moves every weight by
//     about its step, and the F weights of a zero-initialised feedback conv all move the
//     same way at first, shifting its target's input by ~step * F * |x|: lr/F keeps that
//     at ~lr * |x| (with lr/sqrt(F), conv5:conv2's F = 2304 on hcnn5-s, the shift blew the
//     loss up 10^3-fold in the first iterations on the teacher's own backbone). The cell
//     weights start random (their gradients' signs disagree), so lr/sqrt(F) is enough. Minibatches of training
//     images; a validation set (`val_fraction` of the training images, never used to fit
//     anything) is scored every `val_every` iterations: its loss, and its score, the mean
//     over bins of the median over the fit units scored there (unit_reliable) of max(r, 0)^2
//     (the EV without the ceiling's division; undefined with fewer than 3 validation
//     images, and then the loss decides). With stop_on_score (the default) the score decides what "better" means
//     below: the loss does not follow the score near its optimum (started from the teacher
//     itself, training lowered the validation loss 25% while the score fell). At each
//     validation (readout_refit) the readouts are re-solved as in step 3 on the latest
//     features of the training images (each image's from the last minibatch it was in):
//     variable projection, the cells descend the loss of the best readout for their
//     features; the re-solve is kept when validation improves. Between re-solves the readouts stay (readout_lr = 0; Adam on
//     them moves all D weights of a unit at once, a prediction by ~lr * |x|_1 per step, which
//     on the teacher's backbone blew the loss up 10^4-fold). The best parameters are kept;
//     training stops after `patience` validations without improvement (0: never) or
//     `iters` iterations. A non-finite loss stops the run with an error.
//  6. Evaluation on the held-out fold: fit units by the trained readout; held-out units by a
//     closed-form readout (as in step 3) on the trained network's features of
//     training images (all of them by default, as for the time-varied baseline;
//     `heldout_fit_images` > 0 takes a seeded subset, bounding the extra forward passes).
//     The score is scoring.h's noise-corrected EV. Every image is held out exactly once, so
//     the held-out predictions of all splits together cover the dataset.
//  7. Resuming (`resume`): each split ends by writing checkpoint_dir/split<s>.done.npz (its
//     log and its held-out predictions, with the test images and units they are of); a
//     resumed run reads a split that has one instead of fitting it. Every split is seeded on
//     its own (its images, minibatches, readout choices), so a resumed run's results equal
//     an uninterrupted one's (tested); a file of another split or run fails naming it.
//     `only_split` fits one split and leaves the others as they are: the splits of one run
//     can then be fitted by separate calls (one task each), and the call that leaves every
//     split finished gets the whole result; the others return FitResult::partial.
// time_varied: no BPTT: the feedforward backbone's features with an independent readout per
// bin (the paper's "time-varied" baseline; closed form as in step 3), for the fit and the
// held-out units alike.
// Onset (onset_ms = NaN, `--onset-ms auto`): chosen among 0-60 ms for each split with the fresh
// student's features of that split's training images (dynamics.cpp onset_choose), so that no
// split's test images take part in it.
#pragma once
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"  // Precision
#include "models/convrnn.h"
#include "models/datasets/neural_data.h"
#include "models/fit/scoring.h"

namespace vt {

struct FitConfig {
    // model
    std::string backbone;                  // checkpoint (.npz) of the pretrained backbone
    std::string init;                      // "" = a fresh student; else a model checkpoint (e.g.
                                           // make_virtual_primate --write-teacher; a fit's split<s>.npz is
                                           // refused: it has seen the other splits' test images) the
                                           // student starts from: backbone, cells, feedback and whether
                                           // its cells are residual come from it, and motif and feedback
                                           // must agree with it (init_structure)
    std::string arch;                      // expected architecture ("" = the checkpoint's)
    std::string motif = "lstm";            // cell at every layer (cells.h)
    std::string feedback = "conv5:conv2";  // feedback edges, "none" for none
    std::string readout = "V4=conv3,IT=conv5";  // area=layer pairs
    // time
    float ms_per_step = 10.f;
    float onset_ms = NAN;                  // time of step 0 relative to image onset; NaN = auto (chosen
                                           // on training images, see onset_choose in dynamics.cpp)
    int steps = 0;                         // T; 0 = what the latest bin needs
    int image_steps = -1;                  // -1 = round(presentation_ms / ms_per_step)
    // training
    int batch = 4;
    int iters = 24;                        // per split, at most (fit_dynamics' cpu preset: 96, models/fit/fit_flags.cpp)
    int val_every = 8;
    int patience = 3;                      // validations without improvement before stopping (0: never)
    float val_fraction = 0.1f;             // of the training images
    float lr = 1e-2f;                      // cells (weights: lr / sqrt(fan-in)) and feedback (below)
    float feedback_lr = 1.f;               // a feedback conv's weights step with lr * feedback_lr / fan-in:
                                           // its F weights start at zero and move together
    std::string lr_schedule = "constant";  // the steps' lr over iterations (lr_factor): constant, or cosine
                                           // (a half cosine from lr at the end of the warm-up to 0 at iters)
    int warmup = 0;                        // iterations of linear warm-up: lr x it / warmup
    bool readout_refit = true;             // re-solve the readouts in closed form at every validation
    bool stop_on_score = true;             // early stopping and the re-solves watch the validation images'
                                           // score (a median r^2 per bin, as scored) instead of the loss
    float readout_lr = 0.f;                // Adam on the readouts between re-solves (0: they stay as solved;
                                           // without re-solves use ~1e-4: Adam moves all D weights of a
                                           // unit at once, its prediction by ~lr * |x|_1 per step)
    float weight_decay = 1e-4f;
    float clip_grad = 0.f;                 // > 0: the cells' and feedback's gradient is scaled to at most
                                           // this global norm before each step (0: never)
    int truncate_bptt = 0;                 // > 0: truncated BPTT, the gradient through the cells' state and
                                           // the feedback cut every this many steps (UnrollConfig::truncate)
    int truncate_until = 0;                // with truncate_bptt: full BPTT after this iteration (0: never)
    float mean_weight = 0.1f;              // weight of the mean time course in the loss
    bool residual = false;                 // residual cells h = x + a * cell (ModelConfig::residual), else plain
    bool memory_init = true;               // cells start as leaky integrators (cells.h cell_init_memory)
    float cell_scale_init = 0.5f;          // residual cells: the scale a at the start (0: the fresh student
                                           // is exactly its feedforward unroll)
    int readout_components = 200;          // at most this many PLS components per readout, each unit's
                                           // count chosen on validation images
    std::string readout_solver = "ridge";  // the closed form of every readout: "ridge" (each unit's penalty
                                           // chosen on validation images; engine/ridge.h) or "pls" (its
                                           // components chosen there)
    // evaluation
    float heldout_fraction = 0.25f;        // of each area's units
    int heldout_fit_images = 0;            // training images the held-out units' readout is fitted
                                           // on (a seeded subset; 0 = all, as the time-varied
                                           // baseline's held-out units)
    bool time_varied = false;
    ScoreConfig score;                     // folds (= splits), PLS components, seeds, ceilings
    uint64_t seed = 0;                     // student init, unit hold-out, batches
    std::string checkpoint_dir;            // "" = no checkpoints; else split<s>.npz inside, and
                                           // split<s>.done.npz when split s has ended (its log and
                                           // held-out predictions)
    bool resume = false;                   // a split with both files in checkpoint_dir is taken from
                                           // them instead of fitted (fit_dynamics --resume)
    int only_split = -1;                   // >= 0: fit this split alone (0-based; fit_dynamics --split),
                                           // the finished ones read (resume), the rest left unfitted
    uint32_t run_id = 0;                   // the run's fingerprint (results.h fit_run_id), kept in each
                                           // finished split's record: a record of another run (other
                                           // flags, data or backbone) is refused; 0 = not checked
    Device device = Device::CPU;
    Precision precision = Precision::FP32;  // of the GPU's GEMMs and convolutions (backend.h); the CPU: fp32
};

// The structure of the model checkpoint `path` (fit_dynamics --init): its motif, feedback
// edges and whether its cells are residual (meta.motif, meta.feedback, meta.residual; a
// checkpoint without meta.residual is residual). Fails naming the file when one is missing,
// and on a fit's split checkpoint (meta.split).
struct InitStructure {
    std::string motif, feedback;
    bool residual = true;
};
InitStructure init_structure(const std::string& path);

// Steps feeding each bin (see the top): steps[b] lists the steps t < T in bin b.
std::vector<std::vector<int>> bin_steps(const std::vector<float>& bin_start_ms, const std::vector<float>& bin_end_ms,
                                        float ms_per_step, float onset_ms, int T);
// The smallest T that covers the latest bin that any step can fall in.
int steps_needed(const std::vector<float>& bin_start_ms, const std::vector<float>& bin_end_ms, float ms_per_step,
                 float onset_ms);

// Adam's step of a student parameter relative to --lr: a weight tensor of fan-in F (the
// product of its dimensions after the first) steps with lr / sqrt(F), a feedback conv's
// (<dst>.fb.<src>.weight) with lr * feedback_lr / F: its F weights start at zero and move
// together, so lr / sqrt(F) shifted conv2's input by ~sqrt(F) lr per step through conv5:conv2.
float param_lr_scale(const std::string& name, const Shape& shape, const FitConfig& cfg);

// The factor of --lr (and --readout-lr) at iteration `it` (1 .. cfg.iters): it / warmup during
// the warm-up, then 1 (lr_schedule "constant") or a half cosine that starts at 1 on the first
// iteration after the warm-up and reaches 0 at iteration iters + 1 ("cosine"). Adam moves a
// weight by about its step each iteration, so a high start covers the distance to where the
// data want the cells and the decay lets the last iterations settle (docs/fit_quality.md, "What
// limits the fit").
float lr_factor(const FitConfig& cfg, int it);

// "V4=conv3,IT=conv5" -> {{"V4","conv3"}, {"IT","conv5"}}; fails on a malformed pair.
std::vector<std::pair<std::string, std::string>> readout_parse(const std::string& s);

struct AreaFit {
    std::string area, layer;
    std::vector<int> fit_units, heldout_units;  // indices into the data's units
    AreaScore fit;                               // fit units on held-out images
    AreaScore heldout;                           // held-out units on held-out images
    AreaScore teacher;                           // the data's noiseless teacher, if any (units = fit + held out)
    bool has_teacher = false;
};

struct SplitLog {
    std::vector<float> train_loss;               // per iteration
    std::vector<float> lr;                       // per iteration: the cells' lr (cfg.lr x lr_factor)
    std::vector<int> val_iter;
    std::vector<float> val_loss;
    std::vector<float> val_score;                // the validation images' score (stop_on_score)
    int best_iter = 0, iters_done = 0;
    int refits = 0;                              // closed-form readout re-solves kept
    float init_val_loss = 0, init_val_score = 0; // before any BPTT step (PLS readout)
    std::vector<std::vector<int>> readout_components;  // [area] (fit units) PLS components of the closed-form start
    float onset_ms = 0;                          // the split's onset (chosen on its training images with auto)
    int steps = 0;                               // the split's unroll length T at that onset
    double seconds = 0;
};

struct FitResult {
    Targets targets;                             // trial means, ceilings, folds
    std::vector<AreaFit> areas;
    std::vector<std::string> notes;              // what was skipped or chosen, for the user
    std::vector<SplitLog> splits;
    std::vector<std::vector<int>> steps_of_bin;  // (B) steps per bin
    int T = 0, image_steps = 0;
    float onset_ms = 0;                          // split 1's onset (chosen per split with --onset-ms auto: SplitLog)
    int64_t trainable_params = 0;
    bool residual_cells = false;                 // the student's cell form (cfg.residual, or --init's)
    std::vector<float> predictions;              // (N, U, B) held-out prediction of every
                                                 // image (NaN for units not in an area fitted)
    double seconds = 0;
    bool partial = false;                        // cfg.only_split: some split neither fitted nor read
                                                 // (nothing summarised: the run is not finished)
};

// The images split `split`'s onset is chosen on (--onset-ms auto): up to 256 of its training
// and validation images, seeded; never one of its test fold's.
std::vector<int64_t> onset_images(const Targets& tg, const FitConfig& cfg, int split);

// A fit's files in its checkpoint_dir: split s's checkpoint, and the record of split s once it
// has ended (its log and held-out predictions; cfg.resume reads it). Split s is finished when
// both are there.
std::string split_checkpoint_path(const std::string& checkpoint_dir, int s);  // dir/split<s>.npz
std::string split_done_path(const std::string& checkpoint_dir, int s);        // dir/split<s>.done.npz
bool split_finished(const std::string& checkpoint_dir, int s);

// Runs the whole protocol. `teacher` (optional, (N, U, B)) are noiseless responses scored
// like a model's predictions. `log` (optional) receives progress lines.
FitResult fit_dynamics(const NeuralData& d, const FitConfig& cfg, const std::vector<float>& teacher = {},
                       const std::function<void(const std::string&)>& log = nullptr);

}  // namespace vt

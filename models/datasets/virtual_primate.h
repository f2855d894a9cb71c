// virtual_primate.h: a simulated neural dataset from a known ground-truth ConvRNN, the
// project's embedded default data (./bin/make_virtual_primate, issue 5). SIMULATED, not
// recordings: it exists so that fits can be checked against a known truth (model recovery)
// and so that the tools run offline.
//
// Pipeline (sizes: N images, U units = sites, T model steps, B bins, R repetitions):
//  1. stimuli: N HvM-like images (stimuli.h), resized to the teacher's input size.
//  2. teacher: a Model (convrnn.h) with `teacher_motif` at every layer and the feedback
//     edges `teacher_feedback`, on the backbone `teacher_arch` He-initialised with
//     `teacher_seed` (or loaded from `teacher_backbone`). The student's default backbone is
//     the shipped hcnn5-s pretrained on CIFAR-10 with seed 0: the default teacher (random
//     hcnn5-s, seed 1) is a different network. Calibrated on the first 8 images, layer by
//     layer (virtual_primate.cpp has the recipe):
//       - each backbone conv is rescaled per output channel so that its output has mean 0
//         and std 1 over images, positions and the image-driven steps (a data-dependent
//         initialisation; a checkpoint's backbone is rescaled too);
//       - cells pair their channels: an even channel is a FAST unit, the odd one its SLOW
//         partner, which integrates the same input with a long memory and is subtracted
//         from the fast unit's candidate. lstm: fast units forget with s(f+1) in
//         [0.27, 0.73], slow ones in [0.73, 0.88]; the fast unit answers the onset with a
//         transient, adapts as its partner charges and rebounds at the offset; the slow
//         unit remembers the image for 50-120 ms after it goes. gru, ugrnn, rnn, rnn-large,
//         timedecay follow the same plan; rgc gets random, strongly forgetting gates;
//       - each feedback conv is random, made mean-free over the calibration images and
//         scaled to std `feedback_gain` (0.5) against the destination's unit-std input.
//         Through unbounded cells (none, timedecay, rnn, rnn-large, rgc) the gain is halved
//         until 30 steps of grey after the image show no runaway (recorded in the file).
//  3. sites: V4 sites read `v4_layer`, IT sites `it_layer` (outputs after the pool): each a
//     sparse linear map over a few channels (V4 10, IT 20) and a square window of positions
//     weighted by a Gaussian (V4: half the map's side, a local receptive field; IT: the
//     whole map). Channel weights are |N(0,1)|, signed for 60% of channels as the channel's
//     mean response (relative to grey) in the field, so that the stimulus drives most sites
//     up and the images modulate them. The drive d is taken relative to the grey screen's
//     steady state (a silent layer, before the stimulus arrives, counts as grey), in units
//     of its RMS over image-driven steps; rate = A softplus(b + a d), saturating as
//     500 tanh(rate / 500). Per site, the baseline (grey) U(5, 20) sp/s and the peak over
//     time of the image-averaged rate U(30, 100) sp/s are met by solving for A and b;
//     a ~ U(1, 2) sets the selectivity. These gains are fitted to the N images' responses.
//     `linear_sites`: rate = baseline + a d instead, no saturation, a met so that the
//     image-averaged peak is as far above the baseline as drawn, the baseline raised where
//     some image's rate would go below 0, up to 100 sp/s (beyond, a is lowered: the site
//     peaks lower), and each step's rate held for the step (below). With `latencies` false
//     too, each bin is then the mean of its steps' rates, linear in the read layer's outputs
//     at those steps: exactly what the fit's time-shared linear readout expresses (at onset
//     0), the identifiability test's in-class control. teacher_config gains "sites=linear".
//  4. time: model step t is time t * ms_per_step (docs/science.md section 5); a site's rate at
//     time tau is the step time course, linearly interpolated (linear sites: held), at
//     (tau - delay) / ms_per_step. The delay places the site's onset (the time its rate leaves baseline,
//     one step before the layer's first output) at a latency drawn from U(50, 70) ms for V4
//     and U(70, 100) ms for IT (delay >= 0; `latencies` false: delay 0, the site's onset is
//     its layer's). Bins [b*bin_ms, (b+1)*bin_ms) up to t_max_ms
//     average the rate over 1 ms samples. The image is shown for presentation_ms, then
//     mean grey.
//  5. trials: spike counts per bin ~ fano * Poisson(mu / fano), mu = rate * bin width
//     (mean mu, variance fano * mu; fano = 0: noiseless), divided by the bin width (sp/s).
//     round(missing * N) images have fewer repetitions, U(max(2, R/2), R-1); their missing
//     trials are NaN (for every unit and bin: a lost presentation).
// Deterministic: the same config gives a byte-identical file (same build, machine and
// thread count). Cost: the teacher's forward dominates: the default (320 images, hcnn5-s
// lstm, 24 steps) takes ~1.3 min and 0.6 GB on 2 cores and writes a 14 MB file.
//
// The file: the interchange arrays of models/datasets/neural_data.h (images, responses, unit_area,
// bin_start_ms, bin_end_ms, unit_id, image_id, image_object, image_category,
// image_variation, presentation_ms) plus
//   teacher_responses        float32 (N, U, B)  noiseless binned rates (the ceiling)
//   teacher_config           str (K,)           "key=value": generator, arch, backbone, motif,
//                                               feedback, feedback_gain, seeds, sizes, latencies, steps
//   teacher_unit_layer       str (U,)           the layer each site reads
//   teacher_unit_latency_ms  float32 (U,)       each site's onset latency
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/io/npy.h"
#include "models/convrnn.h"
#include "models/datasets/stimuli.h"

namespace vt {

struct VirtualPrimateConfig {
    // stimuli
    int images = 320;  // N
    int size = 64;     // rendered side (px); resized to the teacher's input
    // teacher network
    std::string teacher_arch = "hcnn5-s";          // backbone architecture
    std::string teacher_motif = "lstm";            // cell at every layer (cells.h)
    std::string teacher_feedback = "conv5:conv2";  // feedback edges, "none" for none
    uint64_t teacher_seed = 1;                     // He init of the backbone; cell/feedback recipe
    std::string teacher_backbone;                  // checkpoint with backbone weights (optional)
    std::string v4_layer = "conv3";                // layer V4 sites read
    std::string it_layer = "conv5";                // layer IT sites read
    float feedback_gain = 0.5f;                    // feedback std / destination feedforward std
    // recording
    int v4_units = 64;     // V4 sites
    int it_units = 128;    // IT sites
    int reps = 30;         // R, repetitions per image
    float fano = 1.f;      // trial variance / mean of spike counts (0: none)
    float missing = 0.1f;  // fraction of images with fewer repetitions
    // time (ms)
    int ms_per_step = 10;       // one model step
    int presentation_ms = 100;  // image on, then mean grey
    int bin_ms = 20;            // bin width
    int t_max_ms = 260;         // end of the last bin
    bool latencies = true;      // false: every site answers with its layer (delay 0), a control
    bool linear_sites = false;  // true: rate = baseline + gain x drive (no softplus, no saturation)
    uint64_t seed = 1;          // stimuli, sites, trial noise
    int batch = 8;              // images per teacher forward
};

// Checks the settings; a bad one fails naming its flag, what was expected and what was found.
void virtual_primate_check(const VirtualPrimateConfig& c);

// The teacher network, its recipe calibrated on `calibration` (the first 8 are used).
// feedback_gain, if given, receives the feedback gain in use (c.feedback_gain, or less
// where a loop through unbounded cells had to be tamed; 0 without feedback).
Model virtual_primate_teacher(const VirtualPrimateConfig& c, const std::vector<Stimulus>& calibration,
                              float* feedback_gain = nullptr);

// The whole dataset, as the arrays of the file (write it with npz_write). With `progress`,
// a progress bar on stderr during the teacher's forward passes. `teacher` (optional)
// receives the teacher network the data were recorded from.
Npz virtual_primate_generate(const VirtualPrimateConfig& c, bool progress = false, Model* teacher = nullptr);

// What the virtual primate file at `path` holds that `c` would make otherwise: one line per
// difference ("images: 320 there, 1920 here"), empty when none. Without `made` only what the
// settings alone decide is compared (every teacher_config key but the parsed feedback, its
// gain and the steps, which come from the teacher; and the site counts), so a caller can ask
// before generating; with `made` (the generated arrays) every key. A file that is not a
// readable virtual primate gives one line saying what it is.
std::vector<std::string> virtual_primate_differences(const std::string& path, const VirtualPrimateConfig& c,
                                                     const Npz* made = nullptr);

// Writes the teacher's backbone, its convs as calibrated (rescaled per channel), as a
// backbone checkpoint (meta.arch, meta.mean, meta.std; no cells, no feedback): a student
// given it (fit_dynamics --backbone) differs from the teacher only in its dynamics, which
// separates failures to learn the dynamics from a mismatch of backbones.
void virtual_primate_save_backbone(const Model& teacher, const std::string& path);

// Writes the whole teacher (backbone as calibrated, cells, feedback: the network the data
// were recorded from) as a model checkpoint (meta.arch, meta.motif, meta.feedback,
// meta.residual = 0, meta.mean, meta.std). fit_dynamics --init F --iters 0 scores the
// teacher's own features through the fit's time-shared linear readouts: the most any
// student of that structure can reach with them (the sites' latencies and rate
// nonlinearity are not linear in the features; with linear sites and no latencies they are).
void virtual_primate_save_teacher(const Model& teacher, const std::string& path);

// Summary of a dataset's arrays (the generator's, or any file in the interchange format).
struct VirtualPrimateStats {
    std::vector<std::string> areas;  // in order of first appearance
    std::vector<int> units;          // per area
    std::vector<float> bin_start_ms, bin_end_ms;
    std::vector<std::vector<float>> rate;      // [area][bin] mean rate over units, images, trials
    std::vector<std::vector<float>> image_sd;  // [area][bin] median over units of the std over
                                               //   images of the trial-mean rate
    std::vector<std::vector<float>> rho;       // [area][bin] median over units of the split-half
                                               //   reliability (odd/even trials, Spearman-Brown)
    int images_with_missing = 0;               // images with at least one NaN trial
};
VirtualPrimateStats virtual_primate_stats(const Npz& z);

}  // namespace vt

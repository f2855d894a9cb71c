// lesion.h: which part of a fitted ConvRNN carries which part of the dynamics (./bin/lesion,
// beyond the paper). A finished fit_dynamics run is re-scored on each split's held-out images
// with one part removed at a time, its readouts as fitted (nothing is refitted):
//   - each feedback edge: its weights set to zero (the edge carries nothing);
//   - each layer's recurrence: the cell's state reset to zero before every step
//     (ModelConfig::stateless), so the layer answers its present input only.
// The score is the fit's own (models/fit/scoring.h: noise-corrected EV per bin, median over the
// area's fit units, on the split's test images; the same folds, ceilings and units), so the
// intact model reproduces results.json. Per variant and area: EV per split and bin, and the
// drop from intact (intact - lesioned) per bin and in the mean over bins, mean and SEM over
// splits.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/io/json.h"
#include "engine/backend.h"

namespace vt {

struct LesionVariant {
    std::string name;                  // "intact", "feedback conv5:conv2", "recurrence conv3"
    std::string kind;                  // "intact", "feedback", "recurrence"
    struct Area {
        std::string area;
        std::vector<float> ev;         // (S, B) median EV over units; NaN: no scoring unit
        std::vector<float> ev_split;   // (S) mean over bins
        float ev_mean = 0, ev_sem = 0;
        std::vector<float> drop_bin_mean, drop_bin_sem;  // (B) intact - lesioned, over splits
        float drop_mean = 0, drop_sem = 0;               // of the mean over bins
    };
    std::vector<Area> areas;
};

struct LesionReport {
    std::string run, data, motif, feedback;
    int splits = 0;
    std::vector<float> bin_start_ms, bin_end_ms;
    float presentation_ms = 0;
    std::vector<LesionVariant> variants;  // intact first
};

// Runs the analysis on the fit_dynamics run folder `run` (its results.json, predictions.npz
// and checkpoints/split<s>.npz; the data file results.json names). `log` gets one line per
// variant. Fails naming the file when the run is incomplete or not a fit of a network.
LesionReport lesion_run(const std::string& run, Device dev, const std::function<void(const std::string&)>& log = nullptr);

// "ventral-lesion-1" (docs/results.md), a table, and a plot (per area, the EV drop per bin of
// every variant, +- SEM over splits).
Json lesion_json(const LesionReport& r);
std::string lesion_table(const LesionReport& r);
void lesion_plot(const std::string& path, const LesionReport& r);

}  // namespace vt

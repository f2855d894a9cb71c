// scoring.h: the fitting protocol of docs/science.md section 4: noise ceilings, image folds, PLS
// mappings from model features to units, and the noise-corrected explained variance.
//
// Sizes: R repetitions, N images, U units, B time bins of the data; S folds (= splits);
// features of one layer are (N, T, D): T = B (one feature vector per bin, e.g. a ConvRNN's
// outputs averaged over the model steps of each bin) or T = 1 (time-invariant features,
// e.g. a feedforward backbone's, used for every bin). Any other T is refused.
//
// The protocol (all choices are recorded in results.json):
//  - Trial average: per image, unit and bin, the mean over its non-NaN repetitions.
//  - Ceiling rho(u, b), computed once on all images when R >= 2: `ceiling_splits` random
//    split-halves of each image's repetitions (a seeded shuffle per image and split, shared
//    by all units and bins; the non-NaN trials of a unit and bin are dealt alternately to
//    the two halves, so an image needs >= 2 of them, else it is left out of that unit and
//    bin); Pearson r across images between the two half-means; Spearman-Brown 2r/(1+r);
//    the mean over the split-halves. R = 1 has no ceiling: scores are raw r^2 and every
//    output says "no ceiling".
//  - Units left out of an area (reported with the reason): no non-NaN trial at all; the
//    same trial-averaged response for every image in every bin (zero variance); with a
//    ceiling, no bin whose rho exceeds min_reliability. A unit scores in bin b only when
//    rho(u, b) > min_reliability (so pre-onset bins may have no units: their EV is null).
//  - Folds: S-fold over images, seeded; stratified by image_object when present (each
//    object's images are shuffled and dealt round-robin over the folds). Split s holds out
//    fold s and fits on the others.
//  - Mapping: PLS regression (centred, not scaled, `components` components; by default the
//    estimator of scikit-learn's PLSRegression(scale=False), which Brain-Score uses, or SIMPLS:
//    engine/linalg.h; they agree for one unit, differ by a few % for many), one per
//    area (Y = that area's units), fitted on the training images only, so held-out
//    predictions are centred on training means. Trial averages that are NaN (an image
//    without trials for a unit and bin) are filled with the unit's training mean for the
//    fit and left out of that unit's correlation.
//      shared  one map for all bins: X and Y stack (image, bin) rows. X is never copied:
//              F (N, T, D) holds each image's T rows contiguously, so F's image blocks are
//              permuted in place to put the training images first (and restored after),
//              and the stacked training X is the array's first N_train*T rows. With T = 1
//              the stacked fit equals one PLS onto the bin-averaged response (the same
//              prediction for every bin), which is what is computed.
//      per_bin an independent PLS for each bin ("time-varied"); T = B gathers bin b's rows
//              (N, D) into a buffer, T = 1 uses the same features for every bin.
//  - Score: per unit and bin, r = Pearson correlation across held-out images between
//    prediction and trial average (a prediction that is constant over the held-out images
//    while the target varies, e.g. a layer the stimulus has not reached yet, has r = 0: it
//    explains nothing; every scorer counts such bins the same way); EV = max(r, 0)^2 / rho (a negative held-out correlation
//    explains nothing; EV is not clipped at 1, sampling noise can put it above); raw
//    max(r, 0)^2 without a ceiling. Median over the area's scoring units per split and bin;
//    per bin the mean and SEM over splits; per split the mean over bins that have scoring
//    units, then mean and SEM (sample SD / sqrt(S)) over splits.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/io/json.h"

#include "engine/linalg.h"
#include "models/datasets/neural_data.h"

namespace vt {

struct ScoreConfig {
    int folds = 4;                    // S
    int components = 25;              // PLS components
    PlsAlgorithm pls = PlsAlgorithm::Nipals;  // nipals: scikit-learn's (and Brain-Score's) estimator; simpls
    uint64_t seed = 0;                // folds and ceiling split-halves
    int ceiling_splits = 10;          // random split-halves averaged for rho
    float min_reliability = 0.1f;     // a unit scores in a bin only if rho > this
    std::vector<std::string> areas;   // empty: every area of the data, in order of appearance
};

// ---- folds ----------------------------------------------------------------------------
struct Folds {
    int k = 0;
    std::vector<int> fold;            // (N) fold of each image
    bool stratified = false;          // by the labels given
};
Folds folds_make(int64_t n,                          // N images
                 int k,                              // folds, 2 <= k <= N
                 uint64_t seed,
                 const std::vector<std::string>& strata);  // (N) labels, or empty

// ---- ceilings -------------------------------------------------------------------------
// rho (U, B): split-half reliability, Spearman-Brown corrected, averaged over `splits`
// split-halves; NaN where no split-half gives a defined correlation (fewer than 3 images
// with >= 2 trials, or zero variance). Needs R >= 2.
std::vector<float> ceiling_split_half(const NeuralData& d, int splits, uint64_t seed);

// Pearson r of x[i*sx] and y[i*sy], i < n, over the i where both are non-NaN; NaN when
// fewer than 3 such pairs or either side has zero variance.
double pearson_r(const float* x, int64_t sx, const float* y, int64_t sy, int64_t n);

// The r every score uses: pearson_r of held-out predictions p[j * sp] and targets y[j], but
// 0 where the prediction is constant while the target varies (it explains nothing); NaN
// where the target does not vary (the unit is not scored there).
double held_out_r(const float* p, int64_t sp, const float* y, int64_t n);

struct Targets;
// Unit u is scored in bin b: its ceiling rho passes min_reliability (always without a ceiling).
bool unit_reliable(const Targets& tg, int u, int64_t b);
// The score of unit u in bin b from its held-out r: max(r, 0)^2 / rho (rho = 1 without a
// ceiling); NaN where the unit is not scored there or r is undefined.
float unit_ev(const Targets& tg, int u, int64_t b, double r);

// ---- targets: everything derived from the data, before any features ------------------
struct ExcludedUnit {
    int unit;
    std::string reason;
};

struct AreaUnits {
    std::string area;
    int units_total = 0;              // units of the area in the data
    std::vector<int> units;           // the ones scored (indices into the data's units)
    std::vector<ExcludedUnit> excluded;
};

struct Targets {
    int64_t N = 0, U = 0, B = 0, R = 0;
    std::vector<float> mean;          // (N, U, B) trial averages, NaN where no trial
    std::vector<float> ceiling;       // (U, B) rho; empty when R = 1
    std::vector<float> bin_start_ms, bin_end_ms;
    std::vector<std::string> unit_id;
    std::vector<AreaUnits> areas;
    Folds folds;
    ScoreConfig cfg;
    std::string data_path;
    bool has_ceiling() const { return !ceiling.empty(); }
};

// Trial averages, ceilings, unit exclusions and folds. Fails on an unknown area in
// cfg.areas (listing the known ones), on fewer images than folds, and when R >= 2 but no
// image has two non-NaN trials of any unit (a ceiling is impossible: save such data with
// R = 1). After it the caller may free d.responses.
Targets targets_prepare(const NeuralData& d, const ScoreConfig& cfg);

// ---- scoring one layer ----------------------------------------------------------------
enum class Mapping { Shared, PerBin };
const char* mapping_name(Mapping m);                 // "shared", "per_bin"
std::vector<Mapping> mappings_parse(const std::string& s);  // "shared", "per-bin"/"per_bin", "both"

struct AreaScore {
    std::string area;
    Mapping mapping = Mapping::Shared;
    int units = 0;                    // units scored (after exclusions)
    std::vector<int> units_per_bin;   // (B) units whose rho passes in that bin
    std::vector<float> ev;            // (S, B) median EV over units; NaN: no scoring unit
    std::vector<float> r;             // (S, B) median r over units
    std::vector<float> ceiling;       // (B) median rho over the area's scored units; empty: none
    // Summaries (NaN where undefined)
    float ev_mean = 0, ev_sem = 0;    // over splits of the mean over bins
    std::vector<float> ev_bin_mean, ev_bin_sem, r_bin;  // (B)
    float r_median = 0;               // mean over bins and splits of the median r
    int bins_scored = 0;              // bins with at least one scoring unit
};

struct LayerScore {
    std::string layer;
    int64_t T = 0, D = 0;
    std::vector<AreaScore> scores;    // one per mapping and area
};

// Scores features F (N, T, D), float32 row-major, of one layer. F is permuted during the
// fit and restored before return. `step` (optional) is called after each PLS fit.
LayerScore score_layer(const Targets& tg, const std::string& layer, float* F, int64_t T, int64_t D,
                       const std::vector<Mapping>& mappings,
                       const std::function<void()>& step = nullptr);

// The pieces score_layer is made of, for callers with their own predictions (fit_dynamics):
// an empty score of one area and mapping (NaN everywhere, units and ceilings filled), ...
AreaScore area_score_new(const Targets& tg, const AreaUnits& au, Mapping m);
// ... split s's held-out predictions pred (nte, Ua, B) of the units au.units for the images
// `test` scored into out.ev / out.r (a prediction constant over the images, e.g. a silent
// layer's, scores r = 0 where the target varies), ...
void score_predictions(const Targets& tg, const AreaUnits& au, int s, const std::vector<int64_t>& test, const float* pred,
                       AreaScore& out);
// ... and the summaries (means and SEMs over splits) once every split is scored.
void area_score_summarise(AreaScore& a, int64_t S, int64_t B);

// Number of PLS fits score_layer makes (for progress bars).
int64_t score_layer_fits(const Targets& tg, int64_t T, const std::vector<Mapping>& mappings);

// ---- output ---------------------------------------------------------------------------
// results.json ("format": "ventral-scores-1"; docs/results.md): settings, data
// summary, and per layer the scores of every mapping and area. `extra` are (key, value) pairs
// added to "settings".
Json scores_json(const Targets& tg, const std::vector<LayerScore>& layers,
                 const std::vector<std::pair<std::string, Json>>& extra);
// A readable table: one row per layer, mapping and area.
std::string scores_table(const Targets& tg, const std::vector<LayerScore>& layers);
std::string json_number(double v);                   // a number for a CSV cell, "null" for NaN/Inf

}  // namespace vt

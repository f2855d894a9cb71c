// sweep.h: the architecture comparison behind ./bin/sweep (issue 6; the paper's Figs. 3 and 4):
// grids of fit_dynamics configurations, reading their results.json, paired tests between
// configurations, and the report.
//
// Sizes: G configurations in a grid, A areas (V4, IT), S splits, B bins.
//
// Grids. Built in:
//   motifs    none, timedecay, rnn, rnn-large, gru, lstm, ugrnn, rgc, each named after its motif
//             and run with feedback conv5:conv2 (Fig. 4); plus ff and time_varied.
//   feedback  lstm at every layer with no feedback (lstm_nofb), each single edge (lstm = conv5:conv2,
//             lstm_5to3, lstm_5to4, lstm_4to2, lstm_4to3, lstm_3to2) and all six at once
//             (lstm_allfb) (Fig. 3); plus ff and time_varied.
//   paper     the union of the two, in that order, deduplicated by name (lstm, ff, time_varied
//             are the same configuration in both).
// ff is the feedforward model (--motif none --feedback none), time_varied the paper's baseline
// (--time-varied --motif none --feedback none: feedforward features, an independent PLS per
// bin; the cells are unused, and "none" says so in its results). The report compares
// every configuration with the one named `ff` when the grid has it.
//
// A grid file lists one configuration per non-empty line; '#' starts a comment:
//   # name   fit_dynamics flags
//   lstm     --motif lstm --feedback conv5:conv2
//   gru_slow --motif gru --lr 0.003
// NAME matches [A-Za-z0-9_.+-]+ and is unique in the file. FLAGS are fit_dynamics' model and
// training flags ("--flag value" or "--flag=value"), read from its own flag table
// (models/fit/fit_flags.h: role kSweepConfig) and checked as it checks them; what must be the
// same for every configuration (--data, --splits, --seed, ...) is the sweep's, so that the
// configurations are scored on the same images and splits and can be compared split by split.
//
// The paired test: for two configurations scored on the same S splits, the per-split EVs (mean
// over bins) give S differences d; t = mean(d) / (sd(d) / sqrt(S)) with S - 1 degrees of
// freedom, two-sided p from Student's t distribution. The splits share training images, so
// they are not independent: p is a guide (it tends to be too small), not an exact level.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/fit/results.h"

namespace vt {

// ---- grids -----------------------------------------------------------------------------

struct SweepConfig {
    std::string name;                        // [A-Za-z0-9_.+-]+, unique in its grid: the run folder
    std::vector<std::string> flags;          // fit_dynamics flags, "--flag" then its value if any
};

struct SweepGrid {
    std::string name;                        // "motifs", or a grid file's name without extension
    std::string source;                      // "built-in" or the file's path
    std::vector<SweepConfig> configs;        // (G) in the order they run and are plotted
};

std::vector<std::string> sweep_builtin_grids();                   // {"motifs", "feedback", "paper"}
SweepGrid sweep_grid_builtin(const std::string& name);            // fails listing the built-in grids
SweepGrid sweep_grid_parse(const std::string& text,               // a grid file's contents;
                           const std::string& path);              // errors read "PATH:LINE: ..."
SweepGrid sweep_grid_load(const std::string& name_or_path);       // a built-in name, else a file
std::vector<std::string> sweep_grid_flags();                      // the flags a grid line may set
std::vector<std::string> sweep_fixed_flags();                     // fit_dynamics flags the sweep sets for all
bool sweep_grid_flag_is_switch(const std::string& flag);          // a grid flag that takes no value
// Together with --overwrite and --help, grid and fixed flags are exactly fit_dynamics' flags:
// tests/test_sweep.cpp compares them with `fit_dynamics --help`, so a new flag of the fit
// cannot be forgotten here.

// ---- statistics ------------------------------------------------------------------------

double incomplete_beta(double a, double b,   // regularised I_x(a, b), a, b > 0, x in [0, 1]
                       double x);
double student_t_p_two_sided(double t,       // P(|T| >= |t|), T ~ Student's t
                             double df);     // degrees of freedom > 0

struct PairedTest {
    std::vector<double> diff;                // (S) a - b per split where both are finite
    double mean = NAN, t = NAN, p = NAN;     // NaN t and p with fewer than 2 differences
    int df = 0;                              // diff.size() - 1
};
PairedTest paired_t_test(const std::vector<double>& a, const std::vector<double>& b);

// ---- the report ------------------------------------------------------------------------

enum class SweepStatus { Done, Failed, NotRun };

struct SweepRun {                            // one configuration's outcome in this sweep
    SweepConfig config;
    SweepStatus status = SweepStatus::NotRun;
    bool reused = false;                     // results.json was there before the sweep
    int exit_code = 0;                       // of fit_dynamics, if it failed
    std::string log;                         // its log.txt
    SweepResult result;                      // status == Done
};

constexpr const char* kSweepSummaryFormat = "ventral-sweep-summary-2";  // -2: status done/FAILED/not run

struct SweepReport {
    SweepGrid grid;
    std::vector<std::pair<std::string, std::string>> settings;    // shown in report.md and summary.json
    std::vector<std::pair<std::string, std::string>> invocation;  // report.md only: how this run went (time, jobs)
    std::vector<SweepRun> runs;              // (G) in grid order
};

struct SweepComparison {                     // A vs B in one area
    std::string a, b, area, why;             // why: "vs ff" or "best vs second best"
    PairedTest test;
};

std::vector<const SweepRun*> sweep_ranking(const SweepReport& r);  // done runs, best mean EV first
std::vector<SweepComparison> sweep_comparisons(const SweepReport& r);  // each vs ff; best vs second
std::string sweep_table(const SweepReport& r);                      // the summary table as text
// Writes DIR/summary.csv, summary.json, bars_<grid>.png, ev_over_time.png and report.md.
void sweep_write_report(const std::string& dir, const SweepReport& r);

}  // namespace vt

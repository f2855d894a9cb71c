// fit_flags.h: fit_dynamics' command line, declared once. ./bin/fit_dynamics parses it, and
// ./bin/sweep reads the same table to know which flags a grid line may set, which ones the
// sweep gives every fit alike, and whether a grid line's value is one fit_dynamics takes
// (models/fit/sweep.h). A flag added here reaches both; each carries its SweepRole as its tag.
//
//   FitFlags v;
//   Cli cli = fit_cli(v, fit_preset_of(argc, argv));   // the preset's values are the defaults
//   cli.parse(argc, argv);
//   fit_flags_finish(cli, v);                           // v.c is the FitConfig to run
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/cli.h"
#include "models/datasets/virtual_primate.h"
#include "models/fit/dynamics.h"
#include "models/fit/scoring_flags.h"

namespace vt {

// The virtual primate a fit reads without --data (fit_dynamics, sweep), generated on first use:
// for the `cpu` preset data/virtual_primate.npz (320 images: generation and fit in 10 minutes on
// 2 cores); for the `gpu` preset the same teacher and sites recorded on 1920 images,
// data/virtual_primate_1920.npz (its first 320 images are the cpu preset's; the paper's data had
// 5760). Measured at the gpu preset on the CPU (docs/fit_quality.md, "What limits the fit"): on 320 images
// the fit overfits after ~100 of its 400 iterations (V4 0.41 / IT 0.19); on 1920 it was still
// improving at iteration 380 (split 1: V4 0.657 / IT 0.390, time-varied 0.495 / 0.206).
struct DefaultPrimate {
    std::string path;
    VirtualPrimateConfig config;
};
DefaultPrimate fit_default_primate(const std::string& preset);

// What a fit_dynamics flag is to the sweep (Cli::Flag::tag).
enum SweepRole : int {
    kSweepConfig = 1,  // the model and its training: a grid line may set it
    kSweepShared = 2,  // the same for every configuration, so that splits pair up (or the sweep sets it)
    kSweepOwn = 3,     // the tool's housekeeping (--overwrite): the sweep decides it
};

// Everything fit_dynamics' flags set: the FitConfig and what is converted into it after parsing.
struct FitFlags {
    FitConfig c;
    std::string data, out, preset = "cpu", onset = "auto", cells = "plain", stop_on = "score";
    bool no_memory_init = false, overwrite = false, resume = false, no_refit = false;
    int threads = 0, split = 0;  // --split: 1-based, 0 = every split
    ScoringFlags scoring;
};

// The preset named in argv (--preset X or --preset=X; "cpu" if none): it must be known before
// the flags are declared, since its values are their defaults. `args`: the flags alone (argv
// without the program name, or a sweep's flags for every fit).
std::string fit_preset_of(int argc, char** argv);
std::string fit_preset_of(const std::vector<std::string>& args);

// Declares every flag of fit_dynamics, bound to v, with `preset`'s values applied (vt::fail on
// an unknown preset). v must outlive the Cli.
Cli fit_cli(FitFlags& v, const std::string& preset);

// After cli.parse: converts the text flags into v.c and checks what one flag cannot check alone
// (--init against --backbone, --cells, ...; --motif and --feedback from the --init checkpoint).
void fit_flags_finish(const Cli& cli, FitFlags& v);

// The value of every flag that decides a fit's numbers, as text: the preset's default where
// not given, numbers normalised ("0.010" -> "0.01"), switches "true"/"false". From
// fit_dynamics' arguments (argv without the program name, or a sweep's flag list; unknown
// flags are skipped: the caller has checked them). results.json records it (settings.flags)
// and the sweep compares it before reusing a run, so a default that changed between the run
// and the sweep shows up as a difference. Left out: --data (compared by its checksum), --out,
// --threads, --overwrite, --resume, --split (which call fits which split) and --device (where
// it runs: round-off, not what is fitted).
using FlagValues = std::vector<std::pair<std::string, std::string>>;
FlagValues fit_flag_values(const std::vector<std::string>& args);
// What differs between the flag values a run was made with (`was`) and those of another
// (`now`), one "--flag: X in the run, Y here" per difference (a flag only one side has
// included); empty when they agree.
std::vector<std::string> flag_value_diffs(const FlagValues& was, const FlagValues& now);

}  // namespace vt

// scoring_flags.h: the scoring flags ./bin/score, ./bin/select_layers and ./bin/fit_dynamics share, filling a
// ScoreConfig (models/fit/scoring.h). Header-only, like engine/cli.h.
#pragma once
#include <string>

#include "models/fit/scoring.h"
#include "engine/cli.h"

namespace vt {

struct ScoringFlags {
    std::string pls = "nipals";

    void add(Cli& cli, ScoreConfig& c) {
        cli.flag("--splits", &c.folds, "folds over images (held out in turn)").range(2, 1000);
        cli.flag("--components", &c.components, "PLS components").range(1, 100000);
        cli.flag("--pls", &pls, "PLS estimator: nipals (scikit-learn's, Brain-Score's) or simpls (de Jong 1993)")
            .choices({"nipals", "simpls"});
        cli.flag("--seed", &c.seed, "seed of the folds and the ceiling split-halves");
        cli.flag("--ceiling-splits", &c.ceiling_splits, "random split-halves averaged for the noise ceiling").range(1, 100000);
        cli.flag("--min-reliability", &c.min_reliability, "a unit scores in a bin only if its ceiling exceeds this").range(-1, 1);
    }

    // After parsing: the values that need checking or converting.
    void apply(ScoreConfig& c) const {
        c.pls = pls == "nipals" ? PlsAlgorithm::Nipals : PlsAlgorithm::Simpls;
    }
};

}  // namespace vt

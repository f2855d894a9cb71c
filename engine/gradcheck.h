// gradcheck.h: one gradient checker for every op, cell and whole model (dlib's test_layer).
//
// For a function f of some tensors, with a fixed random g of f's output shape:
//   analytic:  the tape's backward of L = dot(f(), g), for every tensor in `wrt`;
//   numeric:   the fourth-order central difference of L (accumulated in double over float32
//              forwards), (8 (L(h) - L(-h)) - (L(2h) - L(-2h))) / 12h, by replaying the
//              recorded forward with parameters moved. During the replays every discrete
//              choice of the forward is held as it was in the analytic pass (autograd.h
//              RecordChoices/FrozenChoices): max-pool winners, dropout masks and the branch
//              of every ELU/ReLU element. The function is then smooth along the step (it
//              stays on the piece whose derivative backward computes), so the step can be
//              large enough to rise far above float32 round-off in L, while the
//              fourth-order formula keeps the truncation error (h^4) below it.
// Two numeric checks per tensor:
//   - along one direction through all its elements (the analytic gradient plus a random
//     +-rms part, unit length): the derivative gathers the whole gradient, so it is far
//     above round-off, and an error in any element, sampled or not, moves it;
//   - element by element at sampled elements (all of them for small tensors).
// Two more properties are checked on the way:
//   - accumulation: each wrt gradient is seeded with random values before backward, and
//     the check is on (gradient - seed): an op that overwrites instead of adding fails;
//   - unwritten reads: every intermediate gradient is pre-filled with NaN before backward;
//     the tape must clear it, or the NaN reaches the result.
// Error: |a - n| / max(|a|, |n|, floor * s), s the tensor's largest gradient (over all
// analytic values and the sampled numeric ones), where the floor (1e-2) judges gradients far
// below the tensor's largest on that absolute scale. Pass when the worst error < tol.
// A numeric value that disagrees with the one at step h/2 by more than kink_tol means a
// choice the replay cannot hold (a kink inside a fused kernel): the element is skipped, not
// judged; at most max_skip of the checks may be skipped.
// Steps and tolerances: single ops pass 1e-2 with h = 1e-2 (observed errors ~1e-4). Cells
// and whole unrolled models use h = 4e-2 and tol = 5e-2: measured over every element of the
// tiny3 models of tests/test_models.cpp (all 8 cells with two feedback edges, 6 steps,
// 24,000 elements) the worst error is 0.006-0.016 under OpenBLAS's SkylakeX, Haswell,
// Sandybridge and Prescott kernels alike; with h = 5e-3 and a second-order difference, as
// before, round-off alone reached 0.07 on some kernels.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace vt {

struct GradCheckOptions {
    double eps = 1e-2;      // finite-difference step (absolute)
    double tol = 1e-2;      // max relative error allowed
    double floor = 1e-2;    // relative floor, see above
    int max_samples = 48;   // per tensor; elements beyond are sampled at random
    double kink_tol = 0.1;  // relative disagreement of the steps eps and eps/2
    double max_skip = 0.2;  // fraction of the checks that may be skipped as kinks
    uint64_t seed = 1234;
};

struct GradCheckResult {
    bool ok = true;
    double max_err = 0;     // worst relative error over all checked elements
    std::string worst;      // where it occurred: "w[17]: analytic 0.12 numeric 0.13"
    int checked = 0;        // elements compared
    int skipped = 0;        // elements skipped at kinks
};

// f builds its graph from the wrt tensors (which must require gradients) with ops only, so
// that replaying the recorded tape recomputes its output.
GradCheckResult grad_check(const std::function<Tensor()>& f, const std::vector<Tensor>& wrt,
                           const GradCheckOptions& opt = {});

}  // namespace vt

// gradcheck.h: one gradient checker for every op, cell and whole model (dlib's test_layer).
//
// For a function f of some tensors, with a fixed random g of f's output shape:
//   analytic:  the tape's backward of L = dot(f(), g), for every tensor in `wrt`;
//   numeric:   central differences of L (accumulated in double over float32 forwards) at
//              sampled elements of each tensor (all of them for small tensors), by replaying
//              the recorded forward with the element moved. During the replays the discrete
//              choices of the forward are held (max-pool winners, dropout masks; autograd.h
//              FrozenChoices): the function then stays on the smooth piece whose derivative
//              backward computes, instead of crossing a max-pool switch within the step,
//              which a weight shared by every position of a layer does all the time.
// Two more properties are checked on the way:
//   - accumulation: each wrt gradient is seeded with random values before backward, and
//     the check is on (gradient - seed): an op that overwrites instead of adding fails;
//   - unwritten reads: every intermediate gradient is pre-filled with NaN before backward;
//     the tape must clear it, or the NaN reaches the result.
// Error per element: |a - n| / max(|a|, |n|, floor * s), s the tensor's largest gradient
// (over all analytic values and the sampled numeric ones), where the floor (1e-2)
// judges gradients far below the tensor's largest on that absolute scale, since float32
// round-off in L makes their finite differences noisy. Pass when the worst error < tol.
// Remaining kinks: the numeric value is the difference with step eps/2; where it and the one
// with step eps disagree by more than kink_tol (a ReLU input crossing 0 within the step) the
// element is skipped, not judged; at most max_skip of the elements may be skipped.
// Tolerances: single ops pass 1e-2 with eps = 1e-2 (observed errors ~1e-4). For cells and
// whole unrolled models, float32 round-off of the many outputs a weight moves makes the
// difference itself uncertain by ~1% (measured: it converges to the analytic value within
// 0.1% as eps shrinks, until round-off takes over below eps ~1e-3), and an ELU input crossing
// 0 within the step (ELU is C1, not C2) adds an error linear in eps; their tests keep
// eps = 1e-2 and use tol = 5e-2.
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
    double kink_tol = 0.1;  // relative disagreement of the eps and eps/2 differences
    double max_skip = 0.2;  // fraction of elements that may be skipped as kinks
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

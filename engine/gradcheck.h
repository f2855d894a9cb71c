// gradcheck.h: one gradient checker for every op, cell and whole model (dlib's test_layer).
//
// For a function f of some tensors, with a fixed random g of f's output shape:
//   analytic:  the tape's backward of L = dot(f(), g), for every tensor in `wrt`;
//   numeric:   central differences of L, computed in double over float32 forwards, at
//              sampled elements of each tensor (all of them for small tensors).
// Two more properties are checked on the way:
//   - accumulation: each wrt gradient is seeded with random values before backward, and
//     the check is on (gradient - seed): an op that overwrites instead of adding fails;
//   - unwritten reads: every intermediate gradient is pre-filled with NaN before backward;
//     the tape must clear it, or the NaN reaches the result.
// Error per element: |a - n| / max(|a|, |n|, floor * max_j |n_j|), where the floor (1e-2)
// judges gradients far below the tensor's largest on that absolute scale, since float32
// round-off in L makes their finite differences noisy. Pass when the worst error < tol.
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
    uint64_t seed = 1234;
};

struct GradCheckResult {
    bool ok = true;
    double max_err = 0;     // worst relative error over all checked elements
    std::string worst;      // where it occurred: "w[17]: analytic 0.12 numeric 0.13"
    int checked = 0;        // elements checked
};

// f must be deterministic and build its graph from the wrt tensors each call (they must
// require gradients).
GradCheckResult grad_check(const std::function<Tensor()>& f, const std::vector<Tensor>& wrt,
                           const GradCheckOptions& opt = {});

}  // namespace vt

// linalg.h: dense linear algebra on raw row-major float32 buffers: partial least squares
// regression (PLS2), used to map model features onto neural responses.
//
// Sizes: N samples (images, or images x time bins stacked), P predictors (features),
// Q responses (units), A components.
//
// The fit is multi-output PLS2, centred and not scaled, by one of two algorithms
// (PlsAlgorithm). For one response (Q = 1) they give the same predictions; for Q > 1 they
// are different estimators whose predictions differ by a few percent in general.
//
// Memory: X (N, P) is never copied whole nor modified (centring is blockwise or implicit,
// see linalg.cpp), so the fit needs O(256*P + N*Q + P*Q + P*A) floats besides X and Y (Y is
// copied once, centred). Time: one pass over X for the means, one sgemm for X^T Y, then one
// pass per component.
#pragma once
#include <cstdint>
#include <vector>

namespace vt {

enum class PlsAlgorithm {
    Simpls,  // de Jong (1993) SIMPLS: deflates X^T Y by the X loadings' span
    Nipals,  // the same estimator as scikit-learn's PLSRegression(scale=False): NIPALS PLS2
             // with regression-mode Y deflation and sklearn's power method for the weights
             // (tol 1e-6, max_iter 500, started from the first non-constant Y column), computed
             // from the deflated cross-covariance X_a^T Y_a without deflating X
};

struct PlsModel {
    int p = 0, q = 0;               // P, Q
    int ncomp = 0;                  // A: components fitted. At most the request, capped at
                                    // min(N-1, P), and fewer when the residual cross-covariance
                                    // vanishes first (rank(X) or rank(Y) reached); 0 if X^T Y = 0
    int ncomp_requested = 0;        // what the caller asked for
    std::vector<float> x_mean;      // (P)
    std::vector<float> y_mean;      // (Q)
    std::vector<float> x_weights;   // (P, A) R: scores T = (X - x_mean) R, with T^T T = I
                                    // (Nipals: sklearn's x_rotations_, columns scaled to
                                    // unit-norm scores)
    std::vector<float> y_loadings;  // (Q, A) Y0^T T, Y0 = Y - y_mean
    std::vector<float> coef;        // (P, Q) R Y_loadings^T: Yhat = (X - x_mean) coef + y_mean
};

// Fits A = ncomp components. Bad data (N < 2, NaN/Inf in X or Y) throws vt::Error
// naming the problem; zero-variance columns are allowed (their coefficients are 0, up
// to rounding for X). Unlike sklearn, which refuses ncomp > min(N, P) and keeps fitting
// rounding noise, both algorithms cap A and stop early as described at PlsModel::ncomp.
PlsModel pls_fit(const float* X,                             // (N, P) row-major
                 const float* Y,                             // (N, Q) row-major
                 int64_t n,                                  // N
                 int p,                                      // P
                 int q,                                      // Q
                 int ncomp,                                  // requested A >= 1
                 PlsAlgorithm algo = PlsAlgorithm::Simpls);  // which PLS2

// Yhat = (X - x_mean) coef + y_mean.
void pls_predict(float* Yhat,        // (N, Q) out
                 const PlsModel& m,  // a fitted model
                 const float* X,     // (N, P)
                 int64_t n);         // N

// Scores T = (X - x_mean) x_weights; on the training X, T^T T = I.
void pls_transform(float* T,           // (N, A) out, A = m.ncomp
                   const PlsModel& m,  // a fitted model
                   const float* X,     // (N, P)
                   int64_t n);         // N

}  // namespace vt

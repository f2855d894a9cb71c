// linalg.h: dense linear algebra on raw row-major float32 buffers: SIMPLS partial least
// squares regression (de Jong 1993), used to map model features onto neural responses.
//
// Sizes: N samples (images, or images x time bins stacked), P predictors (features),
// Q responses (units), A components.
//
// The fit is multi-output PLS2 by SIMPLS, centred and not scaled. For one response (Q = 1)
// its predictions equal scikit-learn's PLSRegression(scale=False), which uses NIPALS; for
// Q > 1 SIMPLS and NIPALS are different estimators and their predictions differ in general
// (tests/test_simpls.cpp checks Q > 1 against a plain numpy SIMPLS instead).
//
// Memory: X (N, P) is never copied whole nor modified: it is centred 256 rows at a time into
// a buffer, so the fit needs O(256*P + N*Q + P*Q + P*A) floats besides X and Y (Y is
// copied once, centred). One pass over X per component, plus one for the means and one for
// X^T Y.
#pragma once
#include <cstdint>
#include <vector>

namespace vt {

struct PlsModel {
    int p = 0, q = 0;              // P, Q
    int ncomp = 0;                 // A: components fitted. At most the request, capped at
                                   // min(N-1, P), and fewer when the residual cross-covariance
                                   // vanishes first (rank(X) or rank(Y) reached); 0 if X^T Y = 0
    int ncomp_requested = 0;       // what the caller asked for
    std::vector<float> x_mean;     // (P)
    std::vector<float> y_mean;     // (Q)
    std::vector<float> x_weights;  // (P, A) R: scores T = (X - x_mean) R, with T^T T = I
    std::vector<float> y_loadings; // (Q, A) Y0^T T, Y0 = Y - y_mean
    std::vector<float> coef;       // (P, Q) R Y_loadings^T: Yhat = (X - x_mean) coef + y_mean
};

// Fits A = ncomp components. Bad data (N < 2, NaN/Inf in X or Y) throws vt::Error
// naming the problem; zero-variance columns are allowed (their coefficients are 0).
PlsModel pls_fit(const float* X,   // (N, P) row-major
                 const float* Y,   // (N, Q) row-major
                 int64_t n,        // N
                 int p,            // P
                 int q,            // Q
                 int ncomp);       // requested A >= 1

// Yhat = (X - x_mean) coef + y_mean.
void pls_predict(float* Yhat,          // (N, Q) out
                 const PlsModel& m,    // a fitted model
                 const float* X,       // (N, P)
                 int64_t n);           // N

// Scores T = (X - x_mean) x_weights; on the training X, T^T T = I.
void pls_transform(float* T,           // (N, A) out, A = m.ncomp
                   const PlsModel& m,  // a fitted model
                   const float* X,     // (N, P)
                   int64_t n);         // N

}  // namespace vt

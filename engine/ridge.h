// ridge.h: ridge regression of many responses, each at its own penalty, through one
// eigendecomposition of the Gram matrix (fit_dynamics --readout-solver ridge).
//
// Sizes: N samples, P predictors, Q responses.
//
// With X^T X = V diag(s) V^T, response k's coefficients at penalty l are
//   w_k(l) = V diag(1 / (s + l)) C[:, k],   C = V^T X^T Y,
// so one decomposition (O(N P^2 + P^3), in double; with N < P the kernel X X^T's, O(P N^2 +
// N^3), whose eigenvectors give V's columns with s > 0) serves every penalty of every response,
// and the predictions for other samples X' at a penalty are Z diag(1 / (s + l)) C with
// Z = X' V computed once: choosing each response's penalty on held-out samples costs one
// (N', P, Q) product per candidate. X and Y are used as given: the caller centres them (the
// fit has no intercept).
#pragma once
#include <cstdint>
#include <vector>

namespace vt {

// Whether ridge_eigen / ridge_solve are affordable for N samples of P predictors: the primal
// form (N >= P) holds two (P, P) matrices and decomposes one, so P <= 4096 (128 MiB each, about
// a minute's dsyevd on 2 cores at most); the dual form (N < P) holds X and V^T, each (N, P), in
// double and decomposes an (N, N) matrix, so N <= 4096 and N * P <= 2^25 (256 MiB each). Callers
// fall back to another estimator (fit_dynamics: PLS) where this is false: a backbone layer of
// 65536 features (hcnn5's conv3) would need a 32 GiB Gram matrix.
bool ridge_affordable(int64_t n, int64_t p);

struct RidgeEigen {
    int p = 0, q = 0;       // P, Q
    std::vector<double> s;  // (r) eigenvalues of X^T X, ascending, clamped at 0; r = P, or with N < P
                            // the r <= N that exceed 1e-12 of the largest (the others add nothing)
    std::vector<double> Vt; // (r, P) row-major: row j is eigenvector j (unit norm)
    std::vector<double> C;  // (r, Q) V^T X^T Y
};

// Decomposes X (N, P) and projects Y (N, Q), both row-major. N >= 1; a NaN or Inf in X or
// Y throws vt::Error naming the matrix, the row and the column.
RidgeEigen ridge_eigen(const float* X, const float* Y, int64_t n, int p, int q);

// The largest eigenvalue of X^T X (0 for an empty or all-zero X): the scale of penalties.
double ridge_scale(const RidgeEigen& e);

// Z (N, r) = X V for samples X (N, P).
std::vector<double> ridge_rotate(const RidgeEigen& e, const float* X, int64_t n);

// out (N, Q) = Z diag(1 / (s + lambda)) C: every response's prediction at penalty lambda > 0
// for the samples whose ridge_rotate is Z.
void ridge_predict(double* out, const RidgeEigen& e, const std::vector<double>& Z, int64_t n, double lambda);

// W (Q, P) row-major: response k's coefficients at its own penalty lambda[k] > 0.
std::vector<float> ridge_weights(const RidgeEigen& e, const std::vector<double>& lambda);

// The same weights without the eigendecomposition: X^T X + lambda I factored by Cholesky
// once per distinct penalty (P^3 / 3 flops each against ~9 P^3 for every eigenpair), for
// the final fit once the penalties are chosen. X (N, P), Y (N, Q) as for ridge_eigen.
std::vector<float> ridge_solve(const float* X, const float* Y, int64_t n, int p, int q,
                               const std::vector<double>& lambda);

}  // namespace vt

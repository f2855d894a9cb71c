// ridge.cpp: ridge regression through the eigendecomposition of X^T X (see ridge.h).
//
// With N >= P, X^T X and X^T Y are accumulated in double a block of rows at a time (each block
// converted once), so X is never copied whole; with N < P the smaller kernel X X^T (N, N) is
// decomposed instead (the dual form; X, then at most P x P, is converted whole). The
// eigenproblem is LAPACK's dsyevd (divide and conquer, every eigenpair). Eigenvalues that
// rounding makes slightly negative are clamped at 0: the penalties are positive, so
// 1 / (s + lambda) stays finite.
#include "engine/ridge.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "engine/common.h"

// LAPACK (in libopenblas): every eigenpair of a symmetric matrix (column-major).
extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                        double* work, const int* lwork, int* iwork, const int* liwork, int* info, size_t, size_t);
// Cholesky factorisation and solve of a symmetric positive definite matrix (column-major).
extern "C" void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t);
extern "C" void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda, double* b,
                        const int* ldb, int* info, size_t);

namespace vt {
namespace {

constexpr int kBlockRows = 256;  // rows of X converted to double per BLAS call

void check_finite(const float* A, int64_t n, int c, const char* name) {
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < c; j++)
            if (!std::isfinite(A[i * c + j]))
                fail("ridge: %s has a non-finite value (%g) at row %lld, column %d", name, (double)A[i * c + j],
                     (long long)i, j);
}

// dst (m, c) in double = rows [i0, i0 + m) of A (N, c).
void rows_to_double(std::vector<double>& dst, const float* A, int64_t i0, int m, int c) {
    dst.resize((size_t)m * c);
    const float* src = A + i0 * c;
    for (size_t k = 0; k < dst.size(); k++) dst[k] = src[k];
}

void check_args(int64_t n, int p, int q) {
    if (n < 1 || p < 1 || q < 0)
        fail("ridge: expected N >= 1 samples, P >= 1 predictors (got N=%lld, P=%d, Q=%d)", (long long)n, p, q);
}

// G = X^T X (P, P) when N >= P, else K = X X^T (N, N): the smaller Gram matrix, its upper
// triangle row-major, in double; and XtY (P, Q) = X^T Y when N >= P, else Xd (N, P) = X in
// double (the dual form needs it again).
std::vector<double> gram(std::vector<double>& XtY, std::vector<double>& Xd, const float* X, const float* Y, int64_t n,
                         int p, int q) {
    check_args(n, p, q);
    check_finite(X, n, p, "X");
    check_finite(Y, n, q, "Y");
    std::vector<double> Xb, Yb;
    if (n < p) {  // the kernel: X is at most P x P, convert it whole
        rows_to_double(Xd, X, 0, (int)n, p);
        std::vector<double> K((size_t)(n * n), 0.0);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n, p, 1.0, Xd.data(), p, 0.0, K.data(), (int)n);
        return K;
    }
    std::vector<double> G((size_t)p * p, 0.0);
    XtY.assign((size_t)p * q, 0.0);
    for (int64_t i0 = 0; i0 < n; i0 += kBlockRows) {
        const int m = (int)std::min<int64_t>(kBlockRows, n - i0);
        rows_to_double(Xb, X, i0, m, p), rows_to_double(Yb, Y, i0, m, q);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, p, m, 1.0, Xb.data(), p, 1.0, G.data(), p);
        if (q > 0)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p, q, m, 1.0, Xb.data(), p, Yb.data(), q, 1.0,
                        XtY.data(), q);
    }
    return G;
}

// Every eigenpair of the symmetric (k, k) matrix A (upper triangle, row-major; overwritten):
// eigenvalues ascending in w, eigenvector j in row j of A. Row-major upper == column-major
// lower, and the eigenvectors come back as the columns of a column-major matrix.
void eigen(std::vector<double>& A, std::vector<double>& w, int k) {
    const char jobz = 'V', uplo = 'L';
    int info = 0, lwork = -1, liwork = -1, iwq = 0;
    double wq = 0;
    w.assign((size_t)k, 0.0);
    dsyevd_(&jobz, &uplo, &k, A.data(), &k, w.data(), &wq, &lwork, &iwq, &liwork, &info, 1, 1);
    CHECK(info == 0, "ridge: dsyevd workspace query failed (info=%d)", info);
    lwork = (int)wq, liwork = iwq;
    std::vector<double> work((size_t)lwork);
    std::vector<int> iwork((size_t)liwork);
    dsyevd_(&jobz, &uplo, &k, A.data(), &k, w.data(), work.data(), &lwork, iwork.data(), &liwork, &info, 1, 1);
    CHECK(info == 0, "ridge: dsyevd failed (info=%d) on a %d x %d Gram matrix", info, k, k);
}

// B (nrhs columns of length k, column-major) := (A + lambda I)^-1 B for the symmetric (k, k)
// A (upper triangle, row-major), by Cholesky.
void chol_solve(std::vector<double> A, double lambda, std::vector<double>& B, int k, int nrhs) {
    for (int j = 0; j < k; j++) A[(size_t)j * k + j] += lambda;
    const char uplo = 'L';
    int info = 0;
    dpotrf_(&uplo, &k, A.data(), &k, &info, 1);
    CHECK(info == 0, "ridge: Cholesky failed (info=%d) at penalty %g", info, lambda);
    dpotrs_(&uplo, &k, &nrhs, A.data(), &k, B.data(), &k, &info, 1);
    CHECK(info == 0, "ridge: Cholesky solve failed (info=%d)", info);
}

}  // namespace

bool ridge_affordable(int64_t n, int64_t p) {
    constexpr int64_t kMaxSide = 4096, kMaxEntries = int64_t(1) << 25;
    return n >= p ? p <= kMaxSide : n <= kMaxSide && n * p <= kMaxEntries;
}

RidgeEigen ridge_eigen(const float* X, const float* Y, int64_t n, int p, int q) {
    RidgeEigen e;
    e.p = p, e.q = q;
    std::vector<double> XtY, Xd, A = gram(XtY, Xd, X, Y, n, p, q), w;
    if (n >= p) {
        eigen(A, w, p);
        for (double& v : w) v = std::max(v, 0.0);
        e.s = std::move(w), e.Vt = std::move(A);
        e.C.assign((size_t)p * q, 0.0);
        if (q > 0)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p, q, p, 1.0, e.Vt.data(), p, XtY.data(), q, 0.0,
                        e.C.data(), q);
        return e;
    }
    // N < P: X X^T = U diag(s) U^T, and X^T X's eigenvectors with s > 0 are v_j = X^T u_j /
    // sqrt(s_j); the rest (X's null space) carry none of X^T Y, so they drop out of every w.
    // C = V^T X^T Y = diag(sqrt(s)) U^T Y. Eigenvalues below 1e-12 s_max are rounding: dropped.
    const int m = (int)n;
    eigen(A, w, m);
    const double smax = std::max(0.0, w.back());
    int j0 = 0;
    while (j0 < m && !(w[j0] > 1e-12 * smax)) j0++;
    const int r = m - j0;
    e.s.assign(w.begin() + j0, w.end());
    std::vector<double> Yd;
    rows_to_double(Yd, Y, 0, m, q);
    e.Vt.assign((size_t)r * p, 0.0), e.C.assign((size_t)r * q, 0.0);
    if (r == 0) return e;
    const double* Ut = A.data() + (size_t)j0 * m;  // (r, N): the kept eigenvectors of X X^T
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, p, m, 1.0, Ut, m, Xd.data(), p, 0.0, e.Vt.data(), p);
    if (q > 0)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, q, m, 1.0, Ut, m, Yd.data(), q, 0.0, e.C.data(), q);
    for (int j = 0; j < r; j++) {
        const double sq = std::sqrt(e.s[j]);
        for (int c = 0; c < p; c++) e.Vt[(size_t)j * p + c] /= sq;
        for (int k = 0; k < q; k++) e.C[(size_t)j * q + k] *= sq;
    }
    return e;
}

double ridge_scale(const RidgeEigen& e) { return e.s.empty() ? 0.0 : e.s.back(); }

std::vector<double> ridge_rotate(const RidgeEigen& e, const float* X, int64_t n) {
    const int p = e.p, r = (int)e.s.size();
    check_finite(X, n, p, "X");
    std::vector<double> Z((size_t)(n * r)), Xb;
    if (r == 0) return Z;
    for (int64_t i0 = 0; i0 < n; i0 += kBlockRows) {
        const int m = (int)std::min<int64_t>(kBlockRows, n - i0);
        rows_to_double(Xb, X, i0, m, p);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r, p, 1.0, Xb.data(), p, e.Vt.data(), p, 0.0,
                    Z.data() + i0 * r, r);
    }
    return Z;
}

void ridge_predict(double* out, const RidgeEigen& e, const std::vector<double>& Z, int64_t n, double lambda) {
    CHECK(lambda > 0, "ridge: the penalty must be positive (got %g)", lambda);
    const int r = (int)e.s.size(), q = e.q;
    if (n == 0 || q == 0) return;
    if (r == 0) {
        std::fill(out, out + n * q, 0.0);
        return;
    }
    std::vector<double> Cl = e.C;  // (r, Q) rows scaled by 1 / (s + lambda)
    for (int j = 0; j < r; j++)
        for (int k = 0; k < q; k++) Cl[(size_t)j * q + k] /= e.s[j] + lambda;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, q, r, 1.0, Z.data(), r, Cl.data(), q, 0.0, out, q);
}

std::vector<float> ridge_weights(const RidgeEigen& e, const std::vector<double>& lambda) {
    const int p = e.p, q = e.q, r = (int)e.s.size();
    CHECK((int)lambda.size() == q, "ridge: %zu penalties for %d responses", lambda.size(), q);
    std::vector<double> Dq((size_t)q * r);  // (Q, r): C[j, k] / (s_j + lambda_k)
    for (int k = 0; k < q; k++) {
        CHECK(lambda[k] > 0, "ridge: response %d's penalty must be positive (got %g)", k, lambda[k]);
        for (int j = 0; j < r; j++) Dq[(size_t)k * r + j] = e.C[(size_t)j * q + k] / (e.s[j] + lambda[k]);
    }
    std::vector<double> W((size_t)q * p, 0.0);
    if (q > 0 && r > 0)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, q, p, r, 1.0, Dq.data(), r, e.Vt.data(), p, 0.0,
                    W.data(), p);
    return std::vector<float>(W.begin(), W.end());
}

std::vector<float> ridge_solve(const float* X, const float* Y, int64_t n, int p, int q,
                               const std::vector<double>& lambda) {
    CHECK((int)lambda.size() == q, "ridge: %zu penalties for %d responses", lambda.size(), q);
    for (int k = 0; k < q; k++) CHECK(lambda[k] > 0, "ridge: response %d's penalty must be positive (got %g)", k, lambda[k]);
    std::vector<double> XtY;
    std::vector<double> Xd;
    const std::vector<double> A = gram(XtY, Xd, X, Y, n, p, q);
    const bool dual = n < p;  // W^T = X^T (X X^T + lambda I)^-1 Y, an (N, N) system
    const int k = dual ? (int)n : p;
    std::vector<float> W((size_t)q * p, 0.f);
    std::vector<bool> done((size_t)q, false);
    for (int k0 = 0; k0 < q; k0++) {
        if (done[k0]) continue;
        std::vector<int> cols;  // the responses at this penalty: one factorisation
        for (int c = k0; c < q; c++)
            if (!done[c] && lambda[c] == lambda[k0]) cols.push_back(c), done[c] = true;
        const int nrhs = (int)cols.size();
        std::vector<double> B((size_t)nrhs * k);  // column-major (k, nrhs)
        for (int c = 0; c < nrhs; c++)
            for (int j = 0; j < k; j++) B[(size_t)c * k + j] = dual ? (double)Y[(int64_t)j * q + cols[c]] : XtY[(size_t)j * q + cols[c]];
        chol_solve(A, lambda[k0], B, k, nrhs);
        std::vector<double> Wc((size_t)nrhs * p);  // (nrhs, P)
        if (dual)  // row c of W = alpha_c^T X
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nrhs, p, k, 1.0, B.data(), k, Xd.data(), p, 0.0,
                        Wc.data(), p);
        else
            Wc = B;
        for (int c = 0; c < nrhs; c++)
            for (int j = 0; j < p; j++) W[(size_t)cols[c] * p + j] = (float)Wc[(size_t)c * p + j];
    }
    return W;
}

}  // namespace vt

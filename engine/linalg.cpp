// linalg.cpp: SIMPLS and NIPALS partial least squares (see linalg.h). NIPALS is described at
// nipals_components below; it shares S, the Gram downdates and the one pass per component.
//
// de Jong (1993), "SIMPLS: an alternative approach to partial least squares regression",
// Chemometrics and Intelligent Laboratory Systems 18:251-263. With X0, Y0 the centred data
// and S = X0^T Y0 (P, Q), component a is
//   r  = S_a c, c the top eigenvector of S_a^T S_a  (r = top eigenvector of S_a S_a^T if P < Q)
//   t  = X0 r;  r /= |t|, t /= |t|                  (unit-norm scores)
//   pl = X0^T t                                     (X loadings)
//   v  = pl orthogonalised against v_1..v_{a-1}, normalised
//   S_{a+1} = (I - v v^T) S_a                       (SIMPLS deflates X^T Y, never X)
// and at the end Yloadings = Y0^T T, coef = R Yloadings^T.
//
// Cost: S once (sgemm, N*P*Q flops), then one pass over X per component: t = X0 r and
// pl = X0^T t are fused over row blocks that stay in cache (fused_pass). They are
// matrix-vector products because each component depends on the previous one. The rest
// works on (P, Q) or smaller, in double. S_a is never formed: S_a = (I - V V^T) S with
// V = [v_1..v_{a-1}] orthonormal, so S_a c = S c - V (V^T S c); and the Gram matrix
// M = S_a^T S_a (Q, Q) is downdated by M -= w w^T with w = S_a^T v = S^T v, so a component
// costs one small eigenproblem instead of a P*Q*Q product.
//
// Memory: X (N, P) can be large (images x time bins by features), so it is never copied
// whole or modified. For X^T Y and in predict it is centred a block of rows at a time into
// a small buffer (kBlockRows x P) just before the BLAS call. The per-component pass uses X
// as it is and subtracts the means algebraically:
//   t = X r - x_mean.r,   pl = X^T t - x_mean sum(t)
// because centring its blocks would double the time of this, the dominant, pass. Its
// float32 rounding grows with |x_mean| / std(X): on test data the held-out predictions
// are within 7e-6 of a float64 SIMPLS (relative to max|Y|) for mean/std up to 3.5, 2e-5
// at 35 and 2e-4 at 350.
#include "engine/linalg.h"

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <climits>
#include <cmath>

#include "engine/common.h"

// LAPACK (in libopenblas): selected eigenpairs of a symmetric matrix (column-major).
extern "C" void dsyevr_(const char* jobz, const char* range, const char* uplo, const int* n, double* a, const int* lda,
                        const double* vl, const double* vu, const int* il, const int* iu, const double* abstol, int* m,
                        double* w, double* z, const int* ldz, int* isuppz, double* work, const int* lwork, int* iwork,
                        const int* liwork, int* info, size_t, size_t, size_t);

namespace vt {
namespace {

// Early stop: a component is fitted only while the residual cross-covariance keeps a top
// singular value above kStopRel times the first one, and while its score t = X0 r is not
// in X's null space to float precision (|t| > kStopRel |X0|_F |r|). Below that level the
// float32 cross-product S carries only rounding noise.
constexpr double kStopRel = 1e-6;

// Rows of X centred per BLAS call: enough depth for sgemm, 8 MiB of buffer at P = 8192.
constexpr int kBlockRows = 256;

// scikit-learn's power method (_get_first_singular_vectors_power_method) defaults, which
// PLSRegression uses: stop when |w_i - w_{i-1}|^2 < tol, or after max_iter iterations.
// Reproducing its truncation matters: fully converged weights move held-out predictions by
// up to 1e-3 relative on the benchmark data (tools/bench_simpls.py).
constexpr double kNipalsTol = 1e-6;
constexpr int kNipalsMaxIter = 500;

[[noreturn]] void fail_nonfinite(const float* A, int64_t n, int c, const char* name) {
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < c; j++)
            if (!std::isfinite(A[i * c + j]))
                fail(
                    "pls_fit: %s has a non-finite value (%g) at row %lld, column %d; "
                    "remove or impute it before fitting",
                    name, (double)A[i * c + j], (long long)i, j);
    fail("pls_fit: %s has values whose sum is not finite", name);
}

// Column means of A (N, C) in double. With ss, also |A - mean|_F^2. A sum of finite floats
// in double cannot overflow, so a non-finite column sum means a NaN/Inf in that column.
std::vector<double> column_means(const float* A, int64_t n, int c, const char* name, double* ss) {
    const int kCols = 256;  // columns per task: each row contributes one contiguous 1 KiB run
    std::vector<double> sum(c, 0.0), sq(ss ? c : 0, 0.0);
    const int nblk = (c + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nblk; b++) {
        const int j0 = b * kCols, j1 = std::min(c, j0 + kCols);
        for (int64_t i = 0; i < n; i++) {
            const float* row = A + i * c;
            for (int j = j0; j < j1; j++) sum[j] += row[j];
            if (ss)
                for (int j = j0; j < j1; j++) sq[j] += (double)row[j] * row[j];
        }
    }
    for (int j = 0; j < c; j++) {
        if (!std::isfinite(sum[j])) fail_nonfinite(A, n, c, name);
        sum[j] /= (double)n;
    }
    if (ss) {
        *ss = 0.0;
        for (int j = 0; j < c; j++) *ss += std::max(0.0, sq[j] - (double)n * sum[j] * sum[j]);
    }
    return sum;
}

// buf (M, P) = rows [i0, i0 + M) of X (N, P) minus x_mean (P).
void centre_rows(float* buf, const float* X, int64_t i0, int m, int p, const float* x_mean) {
#pragma omp parallel for schedule(static) if ((int64_t)m * p >= (1 << 16))
    for (int i = 0; i < m; i++) {
        const float* x = X + (i0 + i) * p;
        float* b = buf + (int64_t)i * p;
        for (int j = 0; j < p; j++) b[j] = x[j] - x_mean[j];
    }
}

// One pass over X for t = X r - c0 (N) and pl = X^T t (P): row blocks small enough (about
// 1 MiB) to stay in L2 between the two matrix-vector products, so each row of X comes from
// memory once. X is used as it is: centring these blocks first would double the pass time.
void fused_pass(float* t, float* pl, const float* X, int64_t n, int p, const float* r, float c0) {
    const int rows = (int)std::max<int64_t>(8, (1 << 18) / p);
    std::fill(pl, pl + p, 0.f);
    for (int64_t i0 = 0; i0 < n; i0 += rows) {
        const int m = (int)std::min<int64_t>(rows, n - i0);
        const float* Xb = X + i0 * p;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, p, 1.f, Xb, p, r, 1, 0.f, t + i0, 1);
        for (int i = 0; i < m; i++) t[i0 + i] -= c0;
        cblas_sgemv(CblasRowMajor, CblasTrans, m, p, 1.f, Xb, p, t + i0, 1, 1.f, pl, 1);
    }
}

// BLAS on one thread while it lives (pls_fit is never called from parallel threads). OpenBLAS
// threads a level-2 call above a small size, and the PLS component loops make thousands of
// them (a few per power iteration, per component): on 2 busy cores each threaded call cost
// more in fork-join and sched_yield than it computed (the time-varied baseline's per-bin
// readouts: 288 s on 2 threads, 9 s on 1).
// The OpenMP build of OpenBLAS threads by OpenMP's count, which openblas_set_num_threads sets
// too: inside the guard the engine's own OpenMP loops run on one thread as well, and both
// counts are restored after. `on` false: a no-op.
struct BlasOneThread {
    const bool on;
    int prev = openblas_get_num_threads();
#ifdef _OPENMP
    int prev_omp = omp_get_max_threads();
#endif
    explicit BlasOneThread(bool on = true) : on(on) {
        if (on) openblas_set_num_threads(1);
    }
    ~BlasOneThread() {
        if (!on) return;
        openblas_set_num_threads(prev);
#ifdef _OPENMP
        omp_set_num_threads(prev_omp);
#endif
    }
};

// Largest eigenvalue of the symmetric (K, K) matrix M (upper triangle, row-major) and its
// unit eigenvector in vec (K). M is left as it was.
double top_eigen(double* vec, const std::vector<double>& M, int k) {
    // Single-threaded: dsyevr on a small matrix makes thousands of tiny BLAS calls, and with
    // sleeping (OMP_WAIT_POLICY=passive) threads each fork-join costs more than the call.
    BlasOneThread one_thread;
    std::vector<double> a = M;  // dsyevr overwrites its input
    // Row-major upper triangle == column-major lower triangle.
    const char jobz = 'V', range = 'I', uplo = 'L';
    const int il = k, iu = k;
    const double vl = 0, vu = 0, abstol = 0;
    int found = 0, info = 0, isuppz[2], lwork = -1, liwork = -1, iwq = 0;
    double wq = 0;
    std::vector<double> w(k);
    dsyevr_(&jobz, &range, &uplo, &k, a.data(), &k, &vl, &vu, &il, &iu, &abstol, &found, w.data(), vec, &k, isuppz, &wq,
            &lwork, &iwq, &liwork, &info, 1, 1, 1);
    CHECK(info == 0, "dsyevr workspace query failed (info=%d)", info);
    lwork = (int)wq;
    liwork = iwq;
    std::vector<double> work(lwork);
    std::vector<int> iwork(liwork);
    dsyevr_(&jobz, &range, &uplo, &k, a.data(), &k, &vl, &vu, &il, &iu, &abstol, &found, w.data(), vec, &k, isuppz,
            work.data(), &lwork, iwork.data(), &liwork, &info, 1, 1, 1);
    CHECK(info == 0 && found == 1, "dsyevr failed (info=%d, found %d eigenvalues)", info, found);
    return w[0];
}

// out (N, K) = (X - x_mean) W + base (K, or null for 0), with X (N, P) and W (P, K),
// centring kBlockRows rows of X at a time.
void affine_apply(float* out, const float* X, int64_t n, int p, const std::vector<float>& W, int k,
                  const std::vector<float>& x_mean, const float* base) {
    if (n == 0 || k == 0) return;
    CHECK(n <= INT_MAX, "pls: N=%lld rows exceed the BLAS int range", (long long)n);
    std::vector<float> buf((size_t)std::min<int64_t>(n, kBlockRows) * p);  // (rows, P)
    for (int64_t i0 = 0; i0 < n; i0 += kBlockRows) {
        const int m = (int)std::min<int64_t>(kBlockRows, n - i0);
        centre_rows(buf.data(), X, i0, m, p, x_mean.data());
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, p, 1.f, buf.data(), p, W.data(), k, 0.f,
                    out + i0 * k, k);
    }
    if (base) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++)
            for (int j = 0; j < k; j++) out[i * k + j] += base[j];
    }
}

// The centred problem both component loops work on. X is the caller's, uncentred.
struct PlsProblem {
    const float* X;          // (N, P)
    int64_t n;               // N
    int p, q;                // P, Q
    std::vector<double> xm;  // (P) column means of X
    double xnorm;            // |X0|_F
    std::vector<float> Y0;   // (N, Q) Y - y_mean
    std::vector<double> S;   // (P, Q) X0^T Y0
};

// Scores for the weight vector r (P, scaled by 1/|t| in place): t = X0 r (N), written
// unit-norm to t_out, and pl (P) = X0^T t_out. One pass over X (fused_pass), centring
// implicit; t is re-centred (rounding). Returns false, writing nothing, if r is in X's null
// space to float precision.
bool score_pass(float* t_out, std::vector<double>& pl, std::vector<double>& r, const PlsProblem& d) {
    const int64_t n = d.n;
    const int p = d.p;
    std::vector<float> rf(r.begin(), r.end()), plf(p), t(n);
    const double c0 = cblas_ddot(p, d.xm.data(), 1, r.data(), 1);
    fused_pass(t.data(), plf.data(), d.X, n, p, rf.data(), (float)c0);
    double tsum = 0, tss = 0;
    for (int64_t i = 0; i < n; i++) tsum += t[i];
    const double tmean = tsum / (double)n;
    for (int64_t i = 0; i < n; i++) tss += (t[i] - tmean) * (t[i] - tmean);
    const double tnorm = std::sqrt(tss), rnorm = cblas_dnrm2(p, r.data(), 1);
    if (!(tnorm > kStopRel * d.xnorm * rnorm)) return false;
    for (int64_t i = 0; i < n; i++) t_out[i] = (float)((t[i] - tmean) / tnorm);
    cblas_dscal(p, 1.0 / tnorm, r.data(), 1);
    for (int j = 0; j < p; j++) pl[j] = (plf[j] - d.xm[j] * tsum) / tnorm;
    return true;
}

// Gram matrix of S (P, Q): S^T S (Q, Q) when Q <= P, else S S^T (P, P); upper triangle,
// row-major, in M (K, K) with K = min(P, Q).
std::vector<double> gram(const std::vector<double>& S, int p, int q) {
    const bool gram_q = q <= p;
    const int k = gram_q ? q : p;
    std::vector<double> M((size_t)k * k, 0.0);
    cblas_dsyrk(CblasRowMajor, CblasUpper, gram_q ? CblasTrans : CblasNoTrans, k, gram_q ? p : q, 1.0, S.data(), q, 0.0,
                M.data(), k);
    return M;
}

// SIMPLS components (see the top of this file): R (A, P) weights and T (A, N) unit-norm
// scores, one row per component. Returns A <= amax.
int simpls_components(std::vector<double>& R, std::vector<float>& T, const PlsProblem& d, int amax) {
    const int p = d.p, q = d.q;
    const std::vector<double>& S = d.S;
    const bool gram_q = q <= p;
    const int k = gram_q ? q : p;
    std::vector<double> M = gram(S, p, q);    // (K, K) Gram matrix of S_a, downdated
    std::vector<double> V((size_t)amax * p);  // (A, P) orthonormal basis of the X loadings
    std::vector<double> c(k), r(p), v(p), h(std::max(amax, 1)), w(q);
    double lambda1 = 0;
    int a = 0;
    for (; a < amax; a++) {
        const double lambda = top_eigen(c.data(), M, k);
        if (a == 0) lambda1 = lambda;
        if (!(lambda > 0) || !(lambda > kStopRel * kStopRel * lambda1)) break;

        // r = S_a c = S c - V (V^T S c); with P < Q, M is already S_a S_a^T and r = c.
        if (gram_q) {
            cblas_dgemv(CblasRowMajor, CblasNoTrans, p, q, 1.0, S.data(), q, c.data(), 1, 0.0, r.data(), 1);
            if (a > 0) {
                cblas_dgemv(CblasRowMajor, CblasNoTrans, a, p, 1.0, V.data(), p, r.data(), 1, 0.0, h.data(), 1);
                cblas_dgemv(CblasRowMajor, CblasTrans, a, p, -1.0, V.data(), p, h.data(), 1, 1.0, r.data(), 1);
            }
        } else {
            r = c;
        }

        // t = X0 r, pl = X0^T t in one pass; r and t scaled to |t| = 1. pl's scale does not
        // matter: only its direction enters v.
        if (!score_pass(T.data() + (size_t)a * d.n, v, r, d)) break;

        // v = pl minus its projection on the earlier v's (twice: one Gram-Schmidt pass loses
        // orthogonality), normalised.
        for (int pass = 0; a > 0 && pass < 2; pass++) {
            cblas_dgemv(CblasRowMajor, CblasNoTrans, a, p, 1.0, V.data(), p, v.data(), 1, 0.0, h.data(), 1);
            cblas_dgemv(CblasRowMajor, CblasTrans, a, p, -1.0, V.data(), p, h.data(), 1, 1.0, v.data(), 1);
        }
        const double vnorm = cblas_dnrm2(p, v.data(), 1);
        if (!(vnorm > 0)) break;
        cblas_dscal(p, 1.0 / vnorm, v.data(), 1);

        // Downdate M for S_{a+1} = (I - v v^T) S_a: S^T S -= w w^T with w = S_a^T v = S^T v;
        // for S S^T the two-sided (I - v v^T) M (I - v v^T) = M - v y^T - y v^T with
        // y = M v - (v^T M v / 2) v.
        if (gram_q) {
            cblas_dgemv(CblasRowMajor, CblasTrans, p, q, 1.0, S.data(), q, v.data(), 1, 0.0, w.data(), 1);
            cblas_dsyr(CblasRowMajor, CblasUpper, q, -1.0, w.data(), 1, M.data(), q);
        } else {
            double* y = c.data();  // (P) reuses c, free until the next eigenproblem
            cblas_dsymv(CblasRowMajor, CblasUpper, p, 1.0, M.data(), p, v.data(), 1, 0.0, y, 1);
            const double alpha = cblas_ddot(p, v.data(), 1, y, 1);
            cblas_daxpy(p, -0.5 * alpha, v.data(), 1, y, 1);
            cblas_dsyr2(CblasRowMajor, CblasUpper, p, -1.0, v.data(), 1, y, 1, M.data(), p);
        }
        std::copy(r.begin(), r.end(), R.begin() + (size_t)a * p);
        std::copy(v.begin(), v.end(), V.begin() + (size_t)a * p);
    }
    return a;
}

// scikit-learn's power method for the weight w (P, unit) of NIPALS component a, run on the
// Gram matrix M (K, K) of the deflated cross-covariance S_a (P, Q) instead of on X_a, Y_a:
// sklearn iterates y_score -> w = X_a^T y_score -> x_score = X_a w -> y_weights = Y_a^T
// x_score -> y_score = Y_a y_weights, i.e. w_0 ~ S_a e_j (j: first Y column with a non-zero
// residual) and w_{i+1} ~ S_a S_a^T w_i, and returns the first w_i (i >= 1) with
// |w_i - w_{i-1}|^2 < kNipalsTol, or w_{kNipalsMaxIter-1}; for Q = 1 it returns w_0 at once.
// Here the iterate is x (K): w_i ~ S_a x_i with x_0 = e_j and x_{i+1} ~ M x_i = S_a^T S_a x_i
// when Q <= P, or w_i = x_i and M = S_a S_a^T when P < Q. Returns the Rayleigh quotient of
// M at the final x (the squared top singular value of S_a once converged), 0 if S_a = 0.
double nipals_weight(std::vector<double>& w, const std::vector<double>& S, const std::vector<double>& M, int p, int q) {
    const bool gram_q = q <= p;
    const int k = gram_q ? q : p;
    // Start: the first non-zero column of S_a. A constant response has an exactly zero
    // column of Y_a and of S_a, and sklearn skips it too; a response orthogonal to X, where
    // sklearn would produce NaN, is skipped here as well.
    std::vector<double> x(k, 0.0), x_old(k), mx(k), mx_old(k);  // (K)
    int j = 0;
    for (; j < q; j++) {
        double ss = 0;
        for (int i = 0; i < p; i++) ss += S[(size_t)i * q + j] * S[(size_t)i * q + j];
        if (ss > 0) break;
    }
    if (j == q) return 0.0;
    if (gram_q) {
        x[j] = 1.0;
    } else {
        cblas_dcopy(p, S.data() + j, q, x.data(), 1);
        cblas_dscal(p, 1.0 / cblas_dnrm2(p, x.data(), 1), x.data(), 1);
    }
    cblas_dsymv(CblasRowMajor, CblasUpper, k, 1.0, M.data(), k, x.data(), 1, 0.0, mx.data(), 1);
    double xmx = cblas_ddot(k, x.data(), 1, mx.data(), 1);
    for (int it = 1; it < kNipalsMaxIter && q > 1; it++) {
        const double mnorm = cblas_dnrm2(k, mx.data(), 1);
        if (!(mnorm > 0)) break;
        std::swap(x, x_old);
        std::swap(mx, mx_old);
        const double xmx_old = xmx;
        for (int i = 0; i < k; i++) x[i] = mx_old[i] / mnorm;
        cblas_dsymv(CblasRowMajor, CblasUpper, k, 1.0, M.data(), k, x.data(), 1, 0.0, mx.data(), 1);
        xmx = cblas_ddot(k, x.data(), 1, mx.data(), 1);
        // <w_{i-1}, w_i> for unit w's: x_{i-1}^T M x_i / sqrt(x_{i-1}^T M x_{i-1} x_i^T M x_i)
        // when w ~ S x, else x_{i-1}^T x_i (unit x's).
        const double cosine = gram_q ? cblas_ddot(k, mx_old.data(), 1, x.data(), 1) / std::sqrt(xmx_old * xmx)
                                     : cblas_ddot(k, x_old.data(), 1, x.data(), 1);
        if (2.0 - 2.0 * cosine < kNipalsTol) break;
    }
    if (gram_q)
        cblas_dgemv(CblasRowMajor, CblasNoTrans, p, q, 1.0, S.data(), q, x.data(), 1, 0.0, w.data(), 1);
    else
        w = x;
    const double wnorm = cblas_dnrm2(p, w.data(), 1);
    if (!(wnorm > 0)) return 0.0;
    cblas_dscal(p, 1.0 / wnorm, w.data(), 1);
    return xmx / cblas_ddot(k, x.data(), 1, x.data(), 1);
}

// NIPALS PLS2 components, as scikit-learn's PLSRegression computes them, without deflating
// X or Y. With unit-norm scores t_a = X_a w_a / |X_a w_a| and loadings pl_a = X0^T t_a,
// cl_a = Y0^T t_a, NIPALS deflates X_{a+1} = X_a - t_a pl_a^T, Y_{a+1} = Y_a - t_a cl_a^T.
// Because t_a is orthogonal to t_1..t_{a-1} (X_a is orthogonal to them):
//   S_a = X_a^T Y_a = S - PL CL^T          (deflated in (P, Q), S_{a+1} = S_a - pl_a cl_a^T)
//   t_a = X_a w_a = X0 r_a,  r_a = w_a - R (PL^T w_a)     (one pass over X, as in SIMPLS)
//   X_a^T t_a = X0^T t_a,  Y_a^T t_a = Y0^T t_a
// with R, PL, CL the earlier components' r's, pl's and cl's. r_a are the columns of
// sklearn's x_rotations_ W (PL^T W)^{-1} (scaled to unit scores) and coef = R CL^T.
// S is deflated in place. Returns A <= amax.
int nipals_components(std::vector<double>& R, std::vector<float>& T, PlsProblem& d, int amax) {
    const int p = d.p, q = d.q;
    const int64_t n = d.n;
    std::vector<double>& S = d.S;
    const bool gram_q = q <= p;
    std::vector<double> M = gram(S, p, q);     // (K, K) Gram matrix of S_a, downdated
    std::vector<double> PL((size_t)amax * p);  // (A, P) X loadings X0^T t
    std::vector<double> w(p), r(p), pl(p), cl(q), h(std::max(amax, 1)), y(std::max(p, q));
    std::vector<float> clf(q);
    double lambda1 = 0;
    int a = 0;
    for (; a < amax; a++) {
        const double lambda = nipals_weight(w, S, M, p, q);
        if (a == 0) lambda1 = lambda;
        if (!(lambda > 0) || !(lambda > kStopRel * kStopRel * lambda1)) break;
        // sklearn's sign convention (_svd_flip_1d): the largest |w_i| is positive.
        if (w[cblas_idamax(p, w.data(), 1)] < 0) cblas_dscal(p, -1.0, w.data(), 1);

        // r = w - R (PL^T w), then t = X0 r, pl = X0^T t, unit-norm t.
        r = w;
        if (a > 0) {
            cblas_dgemv(CblasRowMajor, CblasNoTrans, a, p, 1.0, PL.data(), p, w.data(), 1, 0.0, h.data(), 1);
            cblas_dgemv(CblasRowMajor, CblasTrans, a, p, -1.0, R.data(), p, h.data(), 1, 1.0, r.data(), 1);
        }
        float* ta = T.data() + (size_t)a * n;
        if (!score_pass(ta, pl, r, d)) break;
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, q, 1.f, d.Y0.data(), q, ta, 1, 0.f, clf.data(), 1);
        std::copy(clf.begin(), clf.end(), cl.begin());

        // S_{a+1} = S_a - pl cl^T, and its Gram matrix by a rank-2 downdate:
        // S^T S - u cl^T - cl u^T + |pl|^2 cl cl^T with u = S_a^T pl, i.e. M - cl y^T - y cl^T
        // with y = u - (|pl|^2 / 2) cl; for S S^T the same with the roles of pl and cl swapped.
        const double* lo = gram_q ? cl.data() : pl.data();  // (K) the side M lives on
        const double* hi = gram_q ? pl.data() : cl.data();  // the other side
        const int k = gram_q ? q : p, kh = gram_q ? p : q;
        cblas_dgemv(CblasRowMajor, gram_q ? CblasTrans : CblasNoTrans, p, q, 1.0, S.data(), q, hi, 1, 0.0, y.data(), 1);
        cblas_daxpy(k, -0.5 * cblas_ddot(kh, hi, 1, hi, 1), lo, 1, y.data(), 1);
        cblas_dsyr2(CblasRowMajor, CblasUpper, k, -1.0, lo, 1, y.data(), 1, M.data(), k);
        cblas_dger(CblasRowMajor, p, q, -1.0, pl.data(), 1, cl.data(), 1, S.data(), q);

        std::copy(r.begin(), r.end(), R.begin() + (size_t)a * p);
        std::copy(pl.begin(), pl.end(), PL.begin() + (size_t)a * p);
    }
    return a;
}

}  // namespace

PlsModel pls_fit(const float* X, const float* Y, int64_t n, int p, int q, int ncomp, PlsAlgorithm algo) {
    CHECK(X && Y, "pls_fit: X and Y must not be null");
    CHECK(p >= 1 && q >= 1, "pls_fit: need P >= 1 and Q >= 1, got P=%d Q=%d", p, q);
    CHECK(n <= INT_MAX, "pls_fit: N=%lld rows exceed the BLAS int range", (long long)n);
    if (n < 2) fail("pls_fit: need at least 2 samples to centre and fit, got N=%lld", (long long)n);
    if (ncomp < 1) fail("pls_fit: need at least 1 component, got %d", ncomp);

    PlsModel m;
    m.p = p;
    m.q = q;
    m.ncomp_requested = ncomp;
    const int amax = (int)std::min<int64_t>({(int64_t)ncomp, n - 1, (int64_t)p});

    PlsProblem d{X, n, p, q, {}, 0.0, {}, {}};
    double xss = 0;                                                      // |X0|_F^2
    d.xm = column_means(X, n, p, "X", &xss);                             // (P)
    const std::vector<double> ym = column_means(Y, n, q, "Y", nullptr);  // (Q)
    d.xnorm = std::sqrt(xss);
    m.x_mean.assign(d.xm.begin(), d.xm.end());
    m.y_mean.assign(ym.begin(), ym.end());

    // Y0 = Y - y_mean (N, Q): the one whole copy of data the fit makes.
    d.Y0.resize((size_t)n * q);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < q; j++) d.Y0[i * q + j] = (float)(Y[i * q + j] - ym[j]);

    // S = X0^T Y0 (P, Q), summed over blocks of centred rows, then kept in double.
    {
        std::vector<float> buf((size_t)std::min<int64_t>(n, kBlockRows) * p);  // (rows, P) centred X
        std::vector<float> Sf((size_t)p * q);
        for (int64_t i0 = 0; i0 < n; i0 += kBlockRows) {
            const int rows = (int)std::min<int64_t>(kBlockRows, n - i0);
            centre_rows(buf.data(), X, i0, rows, p, m.x_mean.data());
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p, q, rows, 1.f, buf.data(), p, d.Y0.data() + i0 * q,
                        q, i0 == 0 ? 0.f : 1.f, Sf.data(), q);
        }
        d.S.assign(Sf.begin(), Sf.end());
    }

    std::vector<double> R((size_t)amax * p);  // (A, P) weights, one row per component
    std::vector<float> T((size_t)amax * n);   // (A, N) unit-norm scores
    int A;
    {
        // the component loops make many small level-1/2 calls; a large X's passes (above 16M
        // values) are worth BLAS's threads
        BlasOneThread one_thread((int64_t)n * p < ((int64_t)1 << 24));
        A = m.ncomp = algo == PlsAlgorithm::Nipals ? nipals_components(R, T, d, amax) : simpls_components(R, T, d, amax);
    }

    m.x_weights.assign((size_t)p * A, 0.f);  // (P, A)
    for (int comp = 0; comp < A; comp++)
        for (int j = 0; j < p; j++) m.x_weights[(size_t)j * A + comp] = (float)R[(size_t)comp * p + j];
    m.y_loadings.assign((size_t)q * A, 0.f);  // (Q, A) = Y0^T T^T
    m.coef.assign((size_t)p * q, 0.f);        // (P, Q) = R Yloadings^T
    if (A > 0) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, q, A, (int)n, 1.f, d.Y0.data(), q, T.data(), (int)n, 0.f,
                    m.y_loadings.data(), A);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p, q, A, 1.f, m.x_weights.data(), A, m.y_loadings.data(),
                    A, 0.f, m.coef.data(), q);
    }
    return m;
}

void pls_predict(float* Yhat, const PlsModel& m, const float* X, int64_t n) {
    CHECK(m.p > 0 && m.q > 0 && (int64_t)m.coef.size() == (int64_t)m.p * m.q, "pls_predict: the model is not fitted");
    affine_apply(Yhat, X, n, m.p, m.coef, m.q, m.x_mean, m.y_mean.data());
}

void pls_transform(float* T, const PlsModel& m, const float* X, int64_t n) {
    CHECK(m.p > 0 && (int64_t)m.x_weights.size() == (int64_t)m.p * m.ncomp, "pls_transform: the model is not fitted");
    affine_apply(T, X, n, m.p, m.x_weights, m.ncomp, m.x_mean, nullptr);
}

}  // namespace vt

// test_ridge.cpp: ridge regression through one eigendecomposition (engine/ridge.h) against the
// normal equations (X^T X + lambda I) w = X^T y solved directly in double, and its invariants.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "engine/common.h"
#include "engine/ridge.h"
#include "tests/testutil.h"

using namespace vt;
using vt_test::error_of;
using vt_test::has;

namespace {

std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.f, sd);
    std::vector<float> v(n);
    for (float& x : v) x = d(g);
    return v;
}

// w (P) solving (X^T X + lambda I) w = X^T y (y is column k of Y (N, Q)), Gaussian elimination
// with partial pivoting in double.
std::vector<double> normal_solve(const std::vector<float>& X, const std::vector<float>& Y, int n, int p, int q, int k,
                                 double lambda) {
    std::vector<double> A((size_t)p * (p + 1), 0.0);  // [G + lambda I | X^T y]
    for (int i = 0; i < n; i++)
        for (int a = 0; a < p; a++) {
            for (int b = 0; b < p; b++) A[(size_t)a * (p + 1) + b] += (double)X[i * p + a] * X[i * p + b];
            A[(size_t)a * (p + 1) + p] += (double)X[i * p + a] * Y[i * q + k];
        }
    for (int a = 0; a < p; a++) A[(size_t)a * (p + 1) + a] += lambda;
    for (int c = 0; c < p; c++) {
        int piv = c;
        for (int r = c + 1; r < p; r++)
            if (std::fabs(A[(size_t)r * (p + 1) + c]) > std::fabs(A[(size_t)piv * (p + 1) + c])) piv = r;
        for (int j = 0; j <= p; j++) std::swap(A[(size_t)c * (p + 1) + j], A[(size_t)piv * (p + 1) + j]);
        for (int r = 0; r < p; r++) {
            if (r == c) continue;
            const double f = A[(size_t)r * (p + 1) + c] / A[(size_t)c * (p + 1) + c];
            for (int j = c; j <= p; j++) A[(size_t)r * (p + 1) + j] -= f * A[(size_t)c * (p + 1) + j];
        }
    }
    std::vector<double> w((size_t)p);
    for (int a = 0; a < p; a++) w[a] = A[(size_t)a * (p + 1) + p] / A[(size_t)a * (p + 1) + a];
    return w;
}

double max_abs(const std::vector<double>& v) {
    double m = 0;
    for (double x : v) m = std::max(m, std::fabs(x));
    return m;
}

}  // namespace

TEST_CASE("ridge: each response's weights at its own penalty solve the normal equations (eigen and Cholesky)") {
    // Correlated predictors (a common factor) so that the penalty matters, and P > N in the
    // second case, where X^T X is singular and only the penalty makes the solution unique.
    for (auto [n, p] : {std::pair<int, int>{200, 12}, std::pair<int, int>{9, 15}}) {
        const int q = 3;
        std::vector<float> X = randn((size_t)n * p, 1), common = randn((size_t)n, 2), Y = randn((size_t)n * q, 3);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < p; j++) X[i * p + j] += 2.f * common[i];
        const RidgeEigen e = ridge_eigen(X.data(), Y.data(), n, p, q);
        REQUIRE(e.s.size() == (size_t)std::min(n, p));  // N < P: the kernel's N nonzero eigenvalues
        for (size_t j = 1; j < e.s.size(); j++) CHECK(e.s[j] >= e.s[j - 1]);  // ascending
        const double smax = ridge_scale(e);
        CHECK(smax > 0);
        // two responses share a penalty: ridge_solve factors once for them
        const std::vector<double> lambda = {smax * 1e-4, smax * 1e-2, smax * 1e-4};
        const std::vector<float> W = ridge_weights(e, lambda), Wc = ridge_solve(X.data(), Y.data(), n, p, q, lambda);
        REQUIRE(W.size() == (size_t)q * p);
        REQUIRE(Wc.size() == (size_t)q * p);
        for (int k = 0; k < q; k++) {
            const std::vector<double> w = normal_solve(X, Y, n, p, q, k, lambda[k]);
            std::vector<double> d((size_t)p), dc((size_t)p);
            for (int j = 0; j < p; j++) d[j] = W[(size_t)k * p + j] - w[j], dc[j] = Wc[(size_t)k * p + j] - w[j];
            INFO("N " << n << " P " << p << " response " << k);
            CHECK(max_abs(d) <= 1e-5 * max_abs(w));
            CHECK(max_abs(dc) <= 1e-5 * max_abs(w));
        }
    }
}

TEST_CASE("ridge: predictions at one penalty equal X' times the weights, and a small penalty recovers exact weights") {
    const int n = 300, p = 10, q = 2, nv = 40;
    const std::vector<float> X = randn((size_t)n * p, 4), Xv = randn((size_t)nv * p, 5), wt = randn((size_t)q * p, 6);
    std::vector<float> Y((size_t)n * q, 0.f);  // noiseless Y = X wt^T
    for (int i = 0; i < n; i++)
        for (int k = 0; k < q; k++)
            for (int j = 0; j < p; j++) Y[i * q + k] += X[i * p + j] * wt[k * p + j];
    const RidgeEigen e = ridge_eigen(X.data(), Y.data(), n, p, q);
    const double lam = ridge_scale(e) * 1e-8;
    const std::vector<float> W = ridge_weights(e, {lam, lam});
    for (int k = 0; k < q; k++)
        for (int j = 0; j < p; j++) CHECK(W[(size_t)k * p + j] == doctest::Approx(wt[k * p + j]).epsilon(1e-4));
    const std::vector<double> Z = ridge_rotate(e, Xv.data(), nv);
    for (double l : {lam, ridge_scale(e) * 0.1}) {
        std::vector<double> P((size_t)nv * q);
        ridge_predict(P.data(), e, Z, nv, l);
        const std::vector<float> Wl = ridge_weights(e, {l, l});
        for (int i = 0; i < nv; i++)
            for (int k = 0; k < q; k++) {
                double ref = 0;
                for (int j = 0; j < p; j++) ref += (double)Xv[i * p + j] * Wl[(size_t)k * p + j];
                CHECK(P[i * q + k] == doctest::Approx(ref).epsilon(1e-5).scale(1.0));
            }
    }
    // a large penalty shrinks the weights towards 0
    const std::vector<float> Wbig = ridge_weights(e, {ridge_scale(e) * 1e4, ridge_scale(e) * 1e4});
    for (float w : Wbig) CHECK(std::fabs(w) < 1e-3f);
}

TEST_CASE("ridge: edge cases and bad input") {
    SUBCASE("all-zero predictors: scale 0, zero weights at any penalty") {
        const std::vector<float> X(20 * 4, 0.f), Y = randn(20, 7);
        const RidgeEigen e = ridge_eigen(X.data(), Y.data(), 20, 4, 1);
        CHECK(ridge_scale(e) == 0.0);
        for (float w : ridge_weights(e, {1.0})) CHECK(w == 0.f);
    }
    SUBCASE("all-zero predictors, fewer samples than predictors (the dual form): nothing kept, zero weights") {
        const std::vector<float> X(3 * 8, 0.f), Y = randn(3, 13);
        const RidgeEigen e = ridge_eigen(X.data(), Y.data(), 3, 8, 1);
        CHECK(e.s.empty());
        CHECK(ridge_scale(e) == 0.0);
        for (float w : ridge_weights(e, {1.0})) CHECK(w == 0.f);
        for (float w : ridge_solve(X.data(), Y.data(), 3, 8, 1, {1.0})) CHECK(w == 0.f);
        std::vector<double> P(2, 1.0);
        ridge_predict(P.data(), e, ridge_rotate(e, X.data(), 2), 2, 1.0);
        CHECK(P == std::vector<double>{0.0, 0.0});
    }
    SUBCASE("no responses") {
        const std::vector<float> X = randn(20 * 4, 8);
        const RidgeEigen e = ridge_eigen(X.data(), nullptr, 20, 4, 0);
        CHECK(ridge_weights(e, {}).empty());
    }
    SUBCASE("a NaN is named with its matrix, row and column") {
        std::vector<float> X = randn(20 * 4, 9), Y = randn(20, 10);
        X[5 * 4 + 2] = NAN;
        std::string e = error_of([&] { ridge_eigen(X.data(), Y.data(), 20, 4, 1); });
        CHECK(has(e, "X has a non-finite value"));
        CHECK(has(e, "row 5, column 2"));
        X[5 * 4 + 2] = 0.f, Y[3] = INFINITY;
        CHECK(has(error_of([&] { ridge_eigen(X.data(), Y.data(), 20, 4, 1); }), "Y has a non-finite value"));
    }
    SUBCASE("no samples, a non-positive penalty, a penalty per response") {
        CHECK(has(error_of([&] { ridge_eigen(nullptr, nullptr, 0, 4, 1); }), "N >= 1"));
        const std::vector<float> X = randn(20 * 4, 11), Y = randn(20, 12);
        const RidgeEigen e = ridge_eigen(X.data(), Y.data(), 20, 4, 1);
        CHECK(has(error_of([&] { ridge_weights(e, {0.0}); }), "must be positive"));
        CHECK(has(error_of([&] { ridge_weights(e, {1.0, 1.0}); }), "2 penalties for 1 responses"));
        CHECK(has(error_of([&] { ridge_solve(X.data(), Y.data(), 20, 4, 1, {-1.0}); }), "must be positive"));
        CHECK(has(error_of([&] { ridge_solve(X.data(), Y.data(), 0, 4, 1, {1.0}); }), "N >= 1"));
    }
}

TEST_CASE("ridge: what is affordable: a Gram matrix of at most 4096 x 4096, the dual form's X at most 2^25 entries") {
    CHECK(ridge_affordable(17000, 2048));   // the gpu preset's conv3 readout: primal, 2048 x 2048
    CHECK(ridge_affordable(1872, 2048));    // the cpu preset's: dual, 1872 x 1872
    CHECK(ridge_affordable(5000, 4096));
    CHECK(!ridge_affordable(5000, 4097));   // primal, too wide
    CHECK(!ridge_affordable(17000, 65536)); // hcnn5's conv3 on the gpu preset's images
    CHECK(ridge_affordable(512, 65536));    // dual: 2^25 entries
    CHECK(!ridge_affordable(513, 65536));
    CHECK(!ridge_affordable(4097, 8192));   // dual, too many samples
}

// test_simpls.cpp: PLS regression (engine/linalg.h), SIMPLS and NIPALS, against golden
// fixtures and invariants.
//
// Fixtures (tests/fixtures/{simpls,nipals}_*.vtfx, made by make_simpls_fixture.py):
//   yhat_sklearn  scikit-learn PLSRegression(scale=False), defaults: the reference for
//                 PlsAlgorithm::Nipals, and for Simpls when q = 1 (NIPALS == SIMPLS there)
//   yhat_simpls   a float64 numpy SIMPLS (de Jong 1993): the reference for Simpls, q > 1
// Tolerance for predictions: max |ours - ref| <= 1e-4 * max |Y_train|. The q > 1 fixtures
// differ between the two estimators by 3.5e-4 to 0.17 on that scale, and sklearn's own
// default-tolerance predictions differ from fully converged NIPALS by up to 3e-3
// (nipals_q16_flat), so the Nipals check also pins the reproduced power iteration.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/common.h"
#include "engine/linalg.h"
#include "tests/testutil.h"

namespace {

struct Array {
    std::vector<int64_t> dims;
    std::vector<float> data;
};

// Reads a VTFX v1 file: "VTFX" u32 version u32 count, then per array u32 name_length, name,
// u32 ndim, i64 dims[ndim], f32 data (little-endian, row-major).
std::map<std::string, Array> read_vtfx(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) vt::fail("%s: cannot open (regenerate with tests/fixtures/make_simpls_fixture.py)", path.c_str());
    auto rd = [&](void* dst, size_t bytes) {
        if (std::fread(dst, 1, bytes, f) != bytes) {
            std::fclose(f);
            vt::fail("%s: truncated VTFX file", path.c_str());
        }
    };
    char magic[4];
    uint32_t version = 0, count = 0;
    rd(magic, 4);
    rd(&version, 4);
    rd(&count, 4);
    if (std::memcmp(magic, "VTFX", 4) != 0 || version != 1) {
        std::fclose(f);
        vt::fail("%s: expected a VTFX version 1 file, found magic '%.4s' version %u", path.c_str(), magic, version);
    }
    std::map<std::string, Array> out;
    for (uint32_t k = 0; k < count; k++) {
        uint32_t len = 0, ndim = 0;
        rd(&len, 4);
        std::string name(len, '\0');
        rd(&name[0], len);
        rd(&ndim, 4);
        Array a;
        a.dims.resize(ndim);
        rd(a.dims.data(), 8 * ndim);
        int64_t numel = 1;
        for (int64_t d : a.dims) numel *= d;
        a.data.resize(numel);
        rd(a.data.data(), 4 * numel);
        out[name] = std::move(a);
    }
    std::fclose(f);
    return out;
}

float max_abs(const std::vector<float>& v) {
    float m = 0;
    for (float x : v) m = std::max(m, std::fabs(x));
    return m;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    float m = 0;
    for (size_t i = 0; i < a.size(); i++) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

std::vector<float> predict(const vt::PlsModel& m, const std::vector<float>& X) {
    int64_t n = (int64_t)X.size() / m.p;
    std::vector<float> Yhat(n * m.q);
    vt::pls_predict(Yhat.data(), m, X.data(), n);
    return Yhat;
}

constexpr vt::PlsAlgorithm kBoth[] = {vt::PlsAlgorithm::Simpls, vt::PlsAlgorithm::Nipals};

const char* algo_name(vt::PlsAlgorithm algo) {
    return algo == vt::PlsAlgorithm::Nipals ? "nipals" : "simpls";
}

// Fits the fixture's training data and returns max |prediction - ref| / max |Y_train|.
float fixture_error(const std::string& name, const std::string& ref, vt::PlsAlgorithm algo) {
    auto fx = read_vtfx(vt_test::fixture(name));
    const Array &xtr = fx.at("xtr"), &ytr = fx.at("ytr"), &xte = fx.at("xte");
    int64_t n = xtr.dims[0];
    int p = (int)xtr.dims[1], q = (int)ytr.dims[1], ncomp = (int)fx.at("ncomp").data[0];
    vt::PlsModel m = vt::pls_fit(xtr.data.data(), ytr.data.data(), n, p, q, ncomp, algo);
    CHECK(m.ncomp == ncomp);
    return max_abs_diff(predict(m, xte.data), fx.at(ref).data) / max_abs(ytr.data);
}

// (N, C) standard normal entries.
std::vector<float> randn(std::mt19937& rng, int64_t n, int c, float scale = 1.f, float shift = 0.f) {
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> a(n * c);
    for (float& x : a) x = shift + scale * nd(rng);
    return a;
}

// C (N, K) = A (N, M) B (M, K), naive (test sizes only).
std::vector<float> matmul(const std::vector<float>& A, const std::vector<float>& B, int64_t n, int mdim, int k) {
    std::vector<float> C(n * k, 0.f);
    for (int64_t i = 0; i < n; i++)
        for (int l = 0; l < mdim; l++)
            for (int j = 0; j < k; j++) C[i * k + j] += A[i * mdim + l] * B[(int64_t)l * k + j];
    return C;
}

// max |T^T T - I| for the training scores of m.
float score_orthonormality_error(const vt::PlsModel& m, const std::vector<float>& X, int64_t n) {
    int A = m.ncomp;
    std::vector<float> T(n * A);
    vt::pls_transform(T.data(), m, X.data(), n);
    float err = 0;
    for (int a = 0; a < A; a++)
        for (int b = 0; b < A; b++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += (double)T[i * A + a] * T[i * A + b];
            err = std::max(err, (float)std::fabs(s - (a == b ? 1.0 : 0.0)));
        }
    return err;
}

}  // namespace

const char* const kFixturesQ1[] = {"simpls_q1_tall.vtfx", "simpls_q1_wide.vtfx"};
const char* const kFixturesQn[] = {"simpls_q6_tall.vtfx", "simpls_q9_wide.vtfx", "simpls_q12_p5.vtfx",
                                   "nipals_q16_flat.vtfx"};

TEST_CASE("simpls: q > 1 matches the numpy SIMPLS reference") {
    for (const char* name : kFixturesQn) {
        CAPTURE(name);
        CHECK(fixture_error(name, "yhat_simpls", vt::PlsAlgorithm::Simpls) <= 1e-4f);
    }
}

TEST_CASE("simpls: q = 1 equals scikit-learn PLSRegression(scale=False)") {
    for (const char* name : kFixturesQ1) {
        CAPTURE(name);
        CHECK(fixture_error(name, "yhat_sklearn", vt::PlsAlgorithm::Simpls) <= 1e-4f);
    }
}

TEST_CASE("nipals: equals scikit-learn PLSRegression(scale=False) for q = 1 and q > 1") {
    std::vector<const char*> names(std::begin(kFixturesQ1), std::end(kFixturesQ1));
    names.insert(names.end(), std::begin(kFixturesQn), std::end(kFixturesQn));
    for (const char* name : names) {
        CAPTURE(name);
        CHECK(fixture_error(name, "yhat_sklearn", vt::PlsAlgorithm::Nipals) <= 1e-4f);
    }
}

TEST_CASE("nipals: x_weights are sklearn's x_rotations_ scaled to unit scores, same signs") {
    auto fx = read_vtfx(vt_test::fixture("nipals_q16_flat.vtfx"));
    const Array &xtr = fx.at("xtr"), &ytr = fx.at("ytr"), &rot = fx.at("rot_sklearn");
    int64_t n = xtr.dims[0];
    int p = (int)xtr.dims[1], q = (int)ytr.dims[1], ncomp = (int)fx.at("ncomp").data[0];
    vt::PlsModel m = vt::pls_fit(xtr.data.data(), ytr.data.data(), n, p, q, ncomp, vt::PlsAlgorithm::Nipals);
    REQUIRE(m.ncomp == ncomp);
    CHECK(max_abs_diff(m.x_weights, rot.data) <= 1e-4f * max_abs(rot.data));
}

TEST_CASE("nipals: differs from simpls for q > 1, equals it for q = 1") {
    std::mt19937 rng(21);
    const int n = 120, p = 30;
    std::vector<float> X = randn(rng, n, p);
    for (int q : {1, 5}) {
        CAPTURE(q);
        std::vector<float> Y = matmul(X, randn(rng, p, q), n, p, q);
        for (float& y : Y) y += 3.f * std::normal_distribution<float>(0.f, 1.f)(rng);
        vt::PlsModel ms = vt::pls_fit(X.data(), Y.data(), n, p, q, 6, vt::PlsAlgorithm::Simpls);
        vt::PlsModel mn = vt::pls_fit(X.data(), Y.data(), n, p, q, 6, vt::PlsAlgorithm::Nipals);
        const float gap = max_abs_diff(predict(ms, X), predict(mn, X)) / max_abs(Y);
        if (q == 1)
            CHECK(gap <= 1e-5f);
        else
            CHECK(gap >= 1e-3f);
    }
}

TEST_CASE("pls: scores are orthonormal") {
    for (vt::PlsAlgorithm algo : kBoth) {
        CAPTURE(algo_name(algo));
        std::mt19937 rng(7);
        struct Size {
            int n, p, q, ncomp;
        };
        for (Size s : {Size{200, 50, 7, 12}, Size{40, 120, 3, 15}, Size{90, 4, 10, 4}}) {
            const int n = s.n, p = s.p, q = s.q, ncomp = s.ncomp;
            CAPTURE(n);
            CAPTURE(p);
            std::vector<float> X = randn(rng, n, p, 1.f, 3.f);
            std::vector<float> Y = matmul(X, randn(rng, p, q), n, p, q);
            for (float& y : Y) y += std::normal_distribution<float>(0.f, 1.f)(rng);
            vt::PlsModel m = vt::pls_fit(X.data(), Y.data(), n, p, q, ncomp, algo);
            REQUIRE(m.ncomp == ncomp);
            CHECK(score_orthonormality_error(m, X, n) <= 1e-4f);
        }
    }
}

TEST_CASE("pls: exact fit when ncomp = rank(X)") {
    for (vt::PlsAlgorithm algo : kBoth) {
        CAPTURE(algo_name(algo));
        // X = Z A + 5 (N, P) of rank 6 after centring; Y = X W - 2 exactly.
        const int n = 100, p = 40, q = 3, rank = 6;
        std::mt19937 rng(3);
        std::vector<float> X = matmul(randn(rng, n, rank), randn(rng, rank, p), n, rank, p);
        for (float& x : X) x += 5.f;
        std::vector<float> Y = matmul(X, randn(rng, p, q), n, p, q);
        for (float& y : Y) y -= 2.f;
        float ymax = max_abs(Y);

        vt::PlsModel m = vt::pls_fit(X.data(), Y.data(), n, p, q, rank, algo);
        REQUIRE(m.ncomp == rank);
        CHECK(max_abs_diff(predict(m, X), Y) <= 1e-4f * ymax);

        // Asking for more stops once the residual cross-covariance is gone.
        vt::PlsModel m2 = vt::pls_fit(X.data(), Y.data(), n, p, q, 30, algo);
        CHECK(m2.ncomp_requested == 30);
        CHECK(m2.ncomp >= rank);
        CHECK(m2.ncomp <= rank + 1);
        CHECK(max_abs_diff(predict(m2, X), Y) <= 1e-4f * ymax);
    }
}

TEST_CASE("pls: invariant to shifts of the columns (centring)") {
    for (vt::PlsAlgorithm algo : kBoth) {
        CAPTURE(algo_name(algo));
        // Shifting X's columns by up to 100 std and Y's by 50 must not change the predictions
        // beyond float32 rounding (the per-component pass centres X implicitly).
        const int n = 200, nte = 50, p = 60, q = 4;
        std::mt19937 rng(11);
        std::vector<float> X = randn(rng, n + nte, p);
        std::vector<float> Y = matmul(X, randn(rng, p, q), n + nte, p, q);
        for (float& y : Y) y += std::normal_distribution<float>(0.f, 1.f)(rng);
        std::vector<float> Xs = X, Ys = Y;
        for (int64_t i = 0; i < n + nte; i++) {
            for (int j = 0; j < p; j++) Xs[i * p + j] += 100.f * (1 + j % 3) - 150.f;
            for (int j = 0; j < q; j++) Ys[i * q + j] += 50.f;
        }
        vt::PlsModel m = vt::pls_fit(X.data(), Y.data(), n, p, q, 10, algo);
        vt::PlsModel ms = vt::pls_fit(Xs.data(), Ys.data(), n, p, q, 10, algo);
        std::vector<float> xte(X.begin() + n * p, X.end()), xste(Xs.begin() + n * p, Xs.end());
        std::vector<float> yhat = predict(m, xte), yhats = predict(ms, xste);
        for (size_t i = 0; i < yhats.size(); i++) yhats[i] -= 50.f;
        CHECK(max_abs_diff(yhats, yhat) <= 1e-4f * max_abs(Y));
    }
}

TEST_CASE("pls: ncomp is capped at min(N-1, P)") {
    for (vt::PlsAlgorithm algo : kBoth) {
        CAPTURE(algo_name(algo));
        std::mt19937 rng(5);
        std::vector<float> X = randn(rng, 5, 10), Y = randn(rng, 5, 2);
        vt::PlsModel m = vt::pls_fit(X.data(), Y.data(), 5, 10, 2, 25, algo);
        CHECK(m.ncomp <= 4);
        CHECK(m.ncomp_requested == 25);
        CHECK(max_abs_diff(predict(m, X), Y) <= 1e-4f * max_abs(Y));  // N-1 components interpolate

        std::vector<float> X2 = randn(rng, 50, 3), Y2 = randn(rng, 50, 2);
        vt::PlsModel m2 = vt::pls_fit(X2.data(), Y2.data(), 50, 3, 2, 10, algo);
        CHECK(m2.ncomp <= 3);
        CHECK((int)m2.x_weights.size() == 3 * m2.ncomp);
    }
}

TEST_CASE("pls: zero-variance columns and constant Y") {
    for (vt::PlsAlgorithm algo : kBoth) {
        CAPTURE(algo_name(algo));
        // The fixture's X column 3 and Y column 1 are constant.
        auto fx = read_vtfx(vt_test::fixture("simpls_q6_tall.vtfx"));
        const Array &xtr = fx.at("xtr"), &ytr = fx.at("ytr");
        int64_t n = xtr.dims[0];
        int p = (int)xtr.dims[1], q = (int)ytr.dims[1];
        vt::PlsModel m = vt::pls_fit(xtr.data.data(), ytr.data.data(), n, p, q, 10, algo);
        // A constant response has exactly zero coefficients; a constant predictor's vanish up
        // to the rounding of the implicitly centred X^T t (and never reach predictions).
        const float cmax = max_abs(m.coef);
        for (int j = 0; j < q; j++) CHECK(std::fabs(m.coef[3 * q + j]) <= 1e-5f * cmax);
        for (int i = 0; i < p; i++) CHECK(m.coef[i * q + 1] == 0.f);
        std::vector<float> Yhat = predict(m, fx.at("xte").data);
        for (int64_t i = 0; i < (int64_t)Yhat.size() / q; i++) CHECK(Yhat[i * q + 1] == doctest::Approx(4.0f));

        // Y constant: nothing to fit, predictions are the mean.
        std::vector<float> Yc(n * 2, 1.5f);
        vt::PlsModel mc = vt::pls_fit(xtr.data.data(), Yc.data(), n, p, 2, 5, algo);
        CHECK(mc.ncomp == 0);
        for (float y : predict(mc, xtr.data)) CHECK(y == doctest::Approx(1.5f));
    }
}

TEST_CASE("pls: bad inputs fail with a clear message") {
    std::mt19937 rng(9);
    std::vector<float> X = randn(rng, 20, 6), Y = randn(rng, 20, 2);
    CHECK_THROWS_WITH_AS(vt::pls_fit(X.data(), Y.data(), 1, 6, 2, 3), doctest::Contains("at least 2 samples"),
                         vt::Error);
    CHECK_THROWS_WITH_AS(vt::pls_fit(X.data(), Y.data(), 20, 6, 2, 0), doctest::Contains("at least 1 component"),
                         vt::Error);
    X[2 * 6 + 3] = NAN;
    CHECK_THROWS_WITH_AS(vt::pls_fit(X.data(), Y.data(), 20, 6, 2, 3),
                         doctest::Contains("X has a non-finite value (nan) at row 2, column 3"), vt::Error);
    X[2 * 6 + 3] = 0.f;
    Y[7 * 2 + 1] = -INFINITY;
    CHECK_THROWS_WITH_AS(vt::pls_fit(X.data(), Y.data(), 20, 6, 2, 3),
                         doctest::Contains("Y has a non-finite value (-inf) at row 7, column 1"), vt::Error);
    vt::PlsModel empty;
    std::vector<float> out(40);
    CHECK_THROWS_AS(vt::pls_predict(out.data(), empty, X.data(), 20), vt::Error);
}

// dynamics.cpp: the BPTT fit of a ConvRNN to neural time courses (see dynamics.h).
#include "models/fit/dynamics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>

#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/linalg.h"
#include "engine/ridge.h"
#include "engine/ops.h"
#include "engine/progress.h"
#include "models/datasets/npz_stream.h"
#include "models/fit/features.h"

namespace vt {

InitStructure init_structure(const std::string& path) {
    NpzIndex z = npz_index(path);
    auto text = [&](const char* key) {
        if (!z.has(key))
            fail("--init: '%s' has no '%s': expected a model checkpoint (a fit's checkpoints/split<s>.npz or "
                 "make_virtual_primate --write-teacher), not a backbone", path.c_str(), key);
        NpyArray a = npz_array(z, key);
        std::vector<std::string> v = a.dtype == DType::Unicode ? a.to_strings() : std::vector<std::string>{};
        if (v.size() != 1) fail("--init: '%s': '%s' must hold one string", path.c_str(), key);
        return v[0];
    };
    if (z.has("meta.split"))
        fail("--init: '%s' is a fit's split checkpoint: it was trained on the images the other splits hold out, so "
             "starting every split from it would score them on images it has seen (start from a model not fitted to "
             "these data, e.g. make_virtual_primate --write-teacher)", path.c_str());
    InitStructure st;
    st.motif = text("meta.motif"), st.feedback = text("meta.feedback");
    motif_parse(st.motif);
    if (z.has("meta.residual")) {
        std::vector<float> r = npz_array(z, "meta.residual").to_f32();
        if (r.size() != 1 || !(r[0] == 0 || r[0] == 1))
            fail("--init: '%s': 'meta.residual' must hold one value, 0 or 1", path.c_str());
        st.residual = r[0] == 1;
    }
    return st;
}

// ---- time and readouts ---------------------------------------------------------------------

std::vector<std::vector<int>> bin_steps(const std::vector<float>& bs, const std::vector<float>& be, float ms,
                                        float onset, int T) {
    CHECK(ms > 0, "ms_per_step %g", ms);
    std::vector<std::vector<int>> steps(bs.size());
    for (size_t b = 0; b < bs.size(); b++)
        for (int t = 0; t < T; t++) {
            double time = (double)t * ms + onset;
            if (time >= bs[b] && time < be[b]) steps[b].push_back(t);
        }
    return steps;
}

int steps_needed(const std::vector<float>& bs, const std::vector<float>& be, float ms, float onset) {
    int T = 1;
    for (size_t b = 0; b < bs.size(); b++) {
        // the last t with t*ms + onset < be[b], if it is also >= bs[b]
        double last = std::ceil((be[b] - onset) / ms) - 1;
        while (last >= 0 && last * ms + onset >= be[b]) last--;
        if (last >= 0 && last * ms + onset >= bs[b]) T = std::max(T, (int)last + 1);
    }
    return T;
}

std::vector<std::pair<std::string, std::string>> readout_parse(const std::string& s) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const std::string& item : list_items(s)) {
        size_t eq = item.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
            fail("--readout: '%s' is not of the form AREA=LAYER (e.g. V4=conv3,IT=conv5)", item.c_str());
        std::string area = item.substr(0, eq), layer = item.substr(eq + 1);
        for (const auto& p : out)
            if (p.first == area) fail("--readout: area '%s' given twice", area.c_str());
        out.push_back({area, layer});
    }
    return out;
}

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// ---- the plan: everything fixed before any split --------------------------------------------

struct AreaPlan {
    std::string area, layer;
    int layer_index = 0;
    int64_t D = 0;
    const AreaUnits* units = nullptr;  // all scored units of the area (targets)
    AreaUnits fit, heldout;            // the two unit sets (same area name)
};

struct Plan {
    int T = 0, image_steps = 0;
    float onset_ms = 0;                 // time of step 0 after image onset
    int64_t N = 0, B = 0, S = 0;        // S: input side
    std::vector<std::vector<int>> steps;  // per bin
    std::vector<int64_t> bins_fitted;   // bins with at least one step
    std::vector<float> inputs;          // (N, 3, S, S) normalised
    std::vector<AreaPlan> areas;
};

// ---- the recorded graph of the fit (FitGraph): unroll, bin features, readouts, loss ----------

struct FitGraph {
    Unrolled u;
    std::vector<std::vector<Tensor>> feat;    // [area][bin] (n, D)
    std::vector<std::vector<Tensor>> target;  // [area][bin] (n, Ua) standardised targets
    Tensor loss;                              // (1,) when built with readouts
    int n = 0;
};

std::string ro_name(const std::string& area, const char* what) { return "readout." + area + "." + what; }

void graph_build(FitGraph& g, const Model& m, const Plan& P, int n, const ParamArena* ro, float mean_weight,
                 int truncate = 0) {
    g.n = n;
    UnrollConfig uc{P.T, P.image_steps, n};
    uc.truncate = truncate;
    unroll_build(g.u, m, uc, true);
    TapeScope rec(g.u.tape);
    ArenaScope arena(g.u.arena);
    const Device dev = m.params.device;
    g.feat.assign(P.areas.size(), {});
    g.target.assign(P.areas.size(), {});
    std::vector<Tensor> terms;
    for (size_t a = 0; a < P.areas.size(); a++) {
        const AreaPlan& ap = P.areas[a];
        for (int64_t b = 0; b < P.B; b++) {
            Tensor f;
            int count = 0;
            for (int t : P.steps[b]) {
                const Tensor& o = g.u.out[t][ap.layer_index];
                if (!o.defined()) continue;  // silent: contributes zero to the mean
                Tensor of = o.reshape({n, ap.D});
                f = count++ ? add(f, of) : of;
            }
            if (!f.defined()) f = tensor_zeros({n, ap.D}, dev);
            else if (P.steps[b].size() > 1) f = mul_scalar(f, 1.f / (float)P.steps[b].size());
            g.feat[a].push_back(f);
        }
        if (!ro) continue;
        const int64_t Ua = (int64_t)ap.fit.units.size();
        const Tensor &W = (*ro)[ro_name(ap.area, "weight")], &bias = (*ro)[ro_name(ap.area, "bias")];
        for (int64_t b = 0; b < P.B; b++) {
            Tensor y = tensor_zeros({n, Ua}, dev);
            g.target[a].push_back(y);
            if (P.steps[b].empty() || Ua == 0) continue;
            Tensor zero = tensor_zeros({n, Ua}, dev);
            Tensor e = sub(linear(g.feat[a][b], W, bias), y);
            terms.push_back(add(mul_scalar(mse_loss(center_rows(e), zero), 1.f - mean_weight),
                                mul_scalar(mse_loss(e, zero), mean_weight)));
        }
    }
    if (!ro) return;
    CHECK(!terms.empty(), "fit: nothing to fit (no bin has a step, or no fit units)");
    Tensor L = terms[0];
    for (size_t i = 1; i < terms.size(); i++) L = add(L, terms[i]);
    g.loss = mul_scalar(L, 1.f / (float)P.bins_fitted.size());
}

void upload(const Tensor& t, const float* src, int64_t n) { backend_copy_from_host(t.device(), t.data(), src, n); }
void download(float* dst, const Tensor& t, int64_t n) { backend_copy_to_host(t.device(), dst, t.data(), n); }

// Loads a batch (idx[i0 .. i0+n), the last image repeated to fill the graph's batch) into the
// graph's image and, with Y (N, U, B) standardised targets, its target tensors.
void graph_load(FitGraph& g, const Plan& P, const std::vector<int64_t>& idx, size_t i0, const std::vector<float>* Y,
                int64_t U) {
    const int64_t isz = 3 * P.S * P.S;
    std::vector<float> img((size_t)(g.n * isz));
    std::vector<int64_t> rows;
    for (int j = 0; j < g.n; j++) rows.push_back(idx[std::min(i0 + j, idx.size() - 1)]);
    for (int j = 0; j < g.n; j++) std::memcpy(&img[(size_t)(j * isz)], &P.inputs[(size_t)(rows[j] * isz)], isz * sizeof(float));
    upload(g.u.image, img.data(), (int64_t)img.size());
    if (!Y) return;
    for (size_t a = 0; a < P.areas.size(); a++) {
        const std::vector<int>& units = P.areas[a].fit.units;
        const int64_t Ua = (int64_t)units.size();
        std::vector<float> y((size_t)(g.n * Ua));
        for (int64_t b = 0; b < P.B; b++) {
            for (int j = 0; j < g.n; j++)
                for (int64_t k = 0; k < Ua; k++) y[j * Ua + k] = (*Y)[(rows[j] * U + units[k]) * P.B + b];
            upload(g.target[a][b], y.data(), g.n * Ua);
        }
    }
}

// Features of the images idx: out[a] is (|idx|, B, D_a).
std::vector<std::vector<float>> graph_features(FitGraph& g, const Plan& P, const std::vector<int64_t>& idx,
                                               Progress* bar = nullptr, int64_t* done = nullptr) {
    std::vector<std::vector<float>> out(P.areas.size());
    for (size_t a = 0; a < P.areas.size(); a++) out[a].assign(idx.size() * P.B * P.areas[a].D, 0.f);
    for (size_t i0 = 0; i0 < idx.size(); i0 += g.n) {
        graph_load(g, P, idx, i0, nullptr, 0);
        g.u.tape.forward();
        const size_t cnt = std::min((size_t)g.n, idx.size() - i0);
        for (size_t a = 0; a < P.areas.size(); a++) {
            const int64_t D = P.areas[a].D;
            std::vector<float> f((size_t)(g.n * D));
            for (int64_t b = 0; b < P.B; b++) {
                download(f.data(), g.feat[a][b], g.n * D);
                for (size_t j = 0; j < cnt; j++)
                    std::memcpy(&out[a][((i0 + j) * P.B + b) * D], &f[j * D], D * sizeof(float));
            }
        }
        if (bar && done) bar->update(*done += (int64_t)cnt);
    }
    return out;
}

// Gathers the rows (image, bin) of images `which` (positions into the feature array's image
// order) from F (n_img, B, D) into a contiguous (|which| * B, D) array.
std::vector<float> gather_rows(const std::vector<float>& F, const std::vector<size_t>& which, int64_t B, int64_t D) {
    std::vector<float> X(which.size() * B * D);
    for (size_t j = 0; j < which.size(); j++)
        std::memcpy(&X[j * B * D], &F[which[j] * B * D], B * D * sizeof(float));
    return X;
}

// Targets Y (n * B, Ua) of units (standardised array Ys (N, U, B)) for images idx.
std::vector<float> gather_targets(const std::vector<float>& Ys, int64_t U, int64_t B, const std::vector<int>& units,
                                  const std::vector<int64_t>& idx) {
    const int64_t Ua = (int64_t)units.size();
    std::vector<float> Y(idx.size() * B * Ua);
    for (size_t j = 0; j < idx.size(); j++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t k = 0; k < Ua; k++) Y[(j * B + b) * Ua + k] = Ys[(idx[j] * U + units[k]) * B + b];
    return Y;
}

// Per-split standardisation of the trial means: for each unit, (y - m_u) / s_u with m_u its
// mean over training images and bins and s_u the root mean over bins of its variance over
// training images; NaN trial means become the unit's training mean of that bin.
struct Standardised {
    std::vector<float> Y;       // (N, U, B)
    std::vector<float> mu, sd;  // (U): y = Y * sd + mu
};
Standardised standardise(const Targets& tg, const std::vector<int64_t>& train) {
    const int64_t U = tg.U, B = tg.B;
    Standardised st;
    st.mu.assign((size_t)U, 0.f), st.sd.assign((size_t)U, 1.f);
    std::vector<float>& Ys = st.Y;
    Ys.assign(tg.mean.size(), 0.f);
    for (int64_t u = 0; u < U; u++) {
        std::vector<double> bm((size_t)B, 0.0), bv((size_t)B, 0.0);
        double all = 0, var = 0;
        for (int64_t b = 0; b < B; b++) {
            double s = 0, ss = 0;
            int64_t c = 0;
            for (int64_t i : train) {
                float y = tg.mean[(i * U + u) * B + b];
                if (y == y) s += y, ss += (double)y * y, c++;
            }
            bm[b] = c ? s / c : 0;
            bv[b] = c ? std::max(0.0, ss / c - bm[b] * bm[b]) : 0;
            all += bm[b], var += bv[b];
        }
        double mu = all / B, sd = std::sqrt(var / B);
        if (!(sd > 1e-12)) sd = 1;
        st.mu[u] = (float)mu, st.sd[u] = (float)sd;
        for (int64_t i = 0; i < tg.N; i++)
            for (int64_t b = 0; b < B; b++) {
                float y = tg.mean[(i * U + u) * B + b];
                Ys[(i * U + u) * B + b] = (float)(((y == y) ? y : bm[b]) - mu) / (float)sd;
            }
    }
    return st;
}

// ---- the readout in closed form ------------------------------------------------------------
// A time-shared linear readout P (rows, Ua) = X (rows, D) W^T + bias, rows = (image, bin).

struct Readout {
    std::vector<float> W, bias;  // (Ua, D), (Ua)
    std::vector<int> comps;      // (Ua) PLS components each unit uses
};

void readout_apply(float* P, const Readout& r, const float* X, int64_t rows, int64_t D, int64_t Ua) {
    kernels_for(Device::CPU).gemm(false, true, (int)rows, (int)Ua, (int)D, 1.f, X, (int)D, r.W.data(), (int)D, 0.f, P,
                                  (int)Ua);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t k = 0; k < Ua; k++) P[i * Ua + k] += r.bias[k];
}

// Removes from rows (image, bin) of A (n, B, W) the mean over the n images of each bin.
void center_within_bins(std::vector<float>& A, int64_t n, int64_t B, int64_t W) {
    std::vector<double> m((size_t)(B * W), 0.0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t q = 0; q < B * W; q++) m[q] += A[i * B * W + q];
    for (int64_t i = 0; i < n; i++)
        for (int64_t q = 0; q < B * W; q++) A[i * B * W + q] -= (float)(m[q] / n);
}

// r.bias: what zeroes the mean residual of each unit over the rows of X (rows, D), Y (rows, Ua).
void readout_bias(Readout& r, const std::vector<float>& X, const std::vector<float>& Y, int64_t rows, int64_t D,
                  int64_t Ua) {
    std::vector<float> P((size_t)(rows * Ua));
    readout_apply(P.data(), r, X.data(), rows, D, Ua);
    std::vector<double> res((size_t)Ua, 0.0);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t k = 0; k < Ua; k++) res[k] += Y[i * Ua + k] - P[i * Ua + k];
    for (int64_t k = 0; k < Ua; k++) r.bias[k] = (float)(res[k] / (double)rows);
}

// PLS (up to max_comps components) from X (n, B, D) to Y (n, B, Ua), both centred within
// each bin (the image-to-image variation the score measures). Each unit keeps the number
// of components that predicts the validation images Xv, Yv (nv, B, .) best (the least
// squared error within bins; nv = 0: all components, or `fixed`[k] for unit k when given),
// then the bias that zeroes its mean training residual (dynamics.h, step 3).
Readout readout_fit(const std::vector<float>& X, const std::vector<float>& Y, int64_t n, const std::vector<float>& Xv,
                    const std::vector<float>& Yv, int64_t nv, int64_t B, int64_t D, int64_t Ua, int max_comps,
                    PlsAlgorithm algo, const std::vector<int>& fixed = {}) {
    Readout r;
    r.W.assign((size_t)(Ua * D), 0.f), r.bias.assign((size_t)Ua, 0.f), r.comps.assign((size_t)Ua, 0);
    if (Ua == 0) return r;
    std::vector<float> Xc = X, Yc = Y;
    center_within_bins(Xc, n, B, D), center_within_bins(Yc, n, B, Ua);
    PlsModel pm = pls_fit(Xc.data(), Yc.data(), n * B, (int)D, (int)Ua, max_comps, algo);
    std::vector<float>().swap(Xc);
    const int A = pm.ncomp;
    std::vector<int> best((size_t)Ua, A);
    for (size_t k = 0; k < fixed.size() && k < best.size(); k++) best[k] = std::min(std::max(1, fixed[k]), A);
    if (fixed.empty() && nv > 0 && A > 1) {  // validation: the held-out error of every unit with 1..A components
        std::vector<float> Xvc = Xv, Yvc = Yv, Tv((size_t)(nv * B * A));
        center_within_bins(Xvc, nv, B, D), center_within_bins(Yvc, nv, B, Ua);
        pls_transform(Tv.data(), pm, Xvc.data(), nv * B);
        for (int64_t k = 0; k < Ua; k++) {
            std::vector<double> pred((size_t)(nv * B), 0.0);
            double best_err = INFINITY;
            for (int a = 0; a < A; a++) {
                double err = 0;
                for (int64_t i = 0; i < nv * B; i++) {
                    pred[i] += (double)Tv[i * A + a] * pm.y_loadings[k * A + a];
                    double e = Yvc[i * Ua + k] - pred[i];
                    err += e * e;
                }
                if (err < best_err) best_err = err, best[k] = a + 1;
            }
        }
    }
    for (int64_t k = 0; k < Ua; k++) {  // W[k] = R[:, :a_k] L[k, :a_k]^T
        r.comps[k] = best[k];
        for (int a = 0; a < best[k]; a++) {
            const float l = pm.y_loadings[k * A + a];
            for (int64_t j = 0; j < D; j++) r.W[k * D + j] += pm.x_weights[j * A + a] * l;
        }
    }
    readout_bias(r, X, Y, n * B, D, Ua);
    return r;
}

// A seeded quarter of n images (the validation images of readout_fit_cv and readout_ridge_cv)
// and the rest.
std::pair<std::vector<size_t>, std::vector<size_t>> readout_cv_split(int64_t n, uint64_t seed) {
    std::vector<size_t> order((size_t)n);
    std::iota(order.begin(), order.end(), 0);
    Rng rng(seed);
    for (size_t i = order.size(); i > 1; i--) std::swap(order[i - 1], order[(size_t)rng.randint((int64_t)i)]);
    const size_t nv = order.size() / 4;
    return {std::vector<size_t>(order.begin(), order.begin() + nv), std::vector<size_t>(order.begin() + nv, order.end())};
}

// Ridge (--readout-solver ridge) from X (n, B, D) to Y (n, B, Ua), both centred within each
// bin as for PLS: each unit's penalty is chosen among kRidgePenalties steps of half a decade
// down from s_max, the largest eigenvalue of X^T X (s_max, s_max / sqrt(10), ... s_max / 1e8),
// by its error within bins on a seeded quarter of the images (fitted on the rest; ties go to
// the larger penalty), then the readout is refitted on all n at that penalty per image (x n /
// the images it was chosen on: the Gram matrix grows with the images), by Cholesky (ridge_solve:
// one eigendecomposition, not two). r.comps[k] holds unit k's step (0: s_max). Fewer than 8
// images: every unit at step 6 (s_max / 1e3 of all n).
constexpr int kRidgePenalties = 17;

// The penalty of a step, as a fraction of s_max.
double ridge_step(int step) { return std::pow(10.0, -0.5 * step); }

Readout readout_ridge_cv(const std::vector<float>& X, const std::vector<float>& Y, int64_t n, int64_t B, int64_t D,
                         int64_t Ua, uint64_t seed) {
    Readout r;
    r.W.assign((size_t)(Ua * D), 0.f), r.bias.assign((size_t)Ua, 0.f), r.comps.assign((size_t)Ua, 6);
    if (Ua == 0) return r;
    auto centred = [&](const std::vector<float>& A, int64_t m, int64_t W) {
        std::vector<float> c = A;
        center_within_bins(c, m, B, W);
        return c;
    };
    double scale = 0;  // s_max of the features the penalties were chosen on, per image
    if (n >= 8) {
        const auto [val, fit] = readout_cv_split(n, seed);
        const int64_t nv = (int64_t)val.size(), nf = (int64_t)fit.size();
        const std::vector<float> Xf = centred(gather_rows(X, fit, B, D), nf, D), Yf = centred(gather_rows(Y, fit, B, Ua), nf, Ua);
        const std::vector<float> Xv = centred(gather_rows(X, val, B, D), nv, D), Yv = centred(gather_rows(Y, val, B, Ua), nv, Ua);
        const RidgeEigen e = ridge_eigen(Xf.data(), Yf.data(), nf * B, (int)D, (int)Ua);
        scale = ridge_scale(e) / (double)nf;
        if (scale > 0) {
            const std::vector<double> Z = ridge_rotate(e, Xv.data(), nv * B);
            std::vector<double> P((size_t)(nv * B * Ua)), best_err((size_t)Ua, INFINITY);
            for (int step = 0; step < kRidgePenalties; step++) {
                ridge_predict(P.data(), e, Z, nv * B, ridge_scale(e) * ridge_step(step));
                std::vector<double> err((size_t)Ua, 0.0);
                for (int64_t i = 0; i < nv * B; i++)
                    for (int64_t k = 0; k < Ua; k++) {
                        const double d = Yv[i * Ua + k] - P[i * Ua + k];
                        err[k] += d * d;
                    }
                for (int64_t k = 0; k < Ua; k++)
                    if (err[k] < best_err[k]) best_err[k] = err[k], r.comps[k] = step;
            }
        }
    }
    const std::vector<float> Xc = centred(X, n, D), Yc = centred(Y, n, Ua);
    if (n < 8) scale = ridge_scale(ridge_eigen(Xc.data(), Yc.data(), n * B, (int)D, 0)) / (double)n;
    if (scale > 0) {  // else the features do not vary within bins: the readout is its bias
        std::vector<double> lambda((size_t)Ua);
        for (int64_t k = 0; k < Ua; k++) lambda[k] = scale * (double)n * ridge_step(r.comps[k]);
        r.W = ridge_solve(Xc.data(), Yc.data(), n * B, (int)D, (int)Ua, lambda);
    }
    readout_bias(r, X, Y, n * B, D, Ua);
    return r;
}

// readout_fit where no validation images are set aside: a seeded quarter of the n images
// chooses each unit's components, then the readout is refitted on all n with those.
Readout readout_fit_cv(const std::vector<float>& X, const std::vector<float>& Y, int64_t n, int64_t B, int64_t D,
                       int64_t Ua, int max_comps, PlsAlgorithm algo, uint64_t seed) {
    if (n < 8) return readout_fit(X, Y, n, {}, {}, 0, B, D, Ua, max_comps, algo);
    const auto [val, fit] = readout_cv_split(n, seed);
    const size_t nv = val.size();
    auto rows = [&](const std::vector<float>& A, const std::vector<size_t>& which, int64_t W) {
        return gather_rows(A, which, B, W);
    };
    Readout sel = readout_fit(rows(X, fit, D), rows(Y, fit, Ua), (int64_t)fit.size(), rows(X, val, D), rows(Y, val, Ua),
                              (int64_t)nv, B, D, Ua, max_comps, algo);
    const int most = *std::max_element(sel.comps.begin(), sel.comps.end());
    // none: the features do not vary over the fit images (e.g. every bin before the model's
    // first step, at a late onset); all n then decide, at most one component per unit
    if (most < 1) return readout_fit(X, Y, n, {}, {}, 0, B, D, Ua, 1, algo);
    return readout_fit(X, Y, n, {}, {}, 0, B, D, Ua, most, algo, sel.comps);  // PLS components are nested
}

// Whether a readout from n images x B bins of D features is ridge (cfg.readout_solver, where
// ridge_affordable: fit_dynamics notes the readouts that fall back, readout_fallback_note).
bool readout_is_ridge(const FitConfig& cfg, int64_t n, int64_t B, int64_t D) {
    return cfg.readout_solver == "ridge" && ridge_affordable(n * B, D);
}

// The closed-form readout of the fit's solver: ridge (readout_ridge_cv) or PLS (readout_fit_cv),
// each unit's penalty or components chosen on a quarter of the images.
Readout readout_cv(const FitConfig& cfg, PlsAlgorithm algo, const std::vector<float>& X, const std::vector<float>& Y,
                   int64_t n, int64_t B, int64_t D, int64_t Ua, uint64_t seed) {
    if (readout_is_ridge(cfg, n, B, D)) return readout_ridge_cv(X, Y, n, B, D, Ua, seed);
    return readout_fit_cv(X, Y, n, B, D, Ua, cfg.readout_components, algo, seed);
}

void copy_backbone(Model& dst, const Model& src) {
    for (const auto& e : src.params.entries) {
        if (!dst.params.has(e.name)) continue;
        const Tensor& d = dst.params[e.name];
        if (d.numel() != e.view.numel()) fail("backbone parameter %s: shapes differ", e.name.c_str());
        backend_copy(d.device(), d.data(), e.view.device(), e.view.data(), d.numel());
    }
    dst.norm = src.norm;
}

std::vector<float> snapshot(const ParamArena& p) {
    std::vector<float> v((size_t)p.numel());
    if (!v.empty()) download(v.data(), p.data, p.numel());
    return v;
}
void restore(ParamArena& p, const std::vector<float>& v) {
    if (!v.empty()) upload(p.data, v.data(), p.numel());
}

float loss_value(const FitGraph& g) {
    float v;
    download(&v, g.loss, 1);
    return v;
}

// ---- stage 1: the plan ------------------------------------------------------------------------

void settings_check(const NeuralData& d, const FitConfig& cfg, const std::vector<float>& teacher) {
    if (cfg.batch < 1) fail("--batch: need at least 1 image, got %d", cfg.batch);
    if (cfg.iters < 0) fail("--iters: expected >= 0, got %d", cfg.iters);
    if (cfg.val_every < 1) fail("--val-every: expected >= 1, got %d", cfg.val_every);
    if (!(cfg.ms_per_step > 0)) fail("--ms-per-step: expected > 0, got %g", cfg.ms_per_step);
    if (cfg.readout_components < 1) fail("--readout-components: expected at least 1, got %d", cfg.readout_components);
    if (cfg.readout_solver != "pls" && cfg.readout_solver != "ridge")
        fail("--readout-solver: expected pls or ridge, got '%s'", cfg.readout_solver.c_str());
    if (!(cfg.heldout_fraction >= 0 && cfg.heldout_fraction < 1))
        fail("--heldout-units: expected a fraction in [0, 1), got %g", cfg.heldout_fraction);
    if (!(cfg.val_fraction > 0 && cfg.val_fraction < 1))
        fail("--val-fraction: expected a fraction in (0, 1), got %g", cfg.val_fraction);
    if (!(cfg.mean_weight >= 0 && cfg.mean_weight <= 1))
        fail("--mean-weight: expected a weight in [0, 1], got %g", cfg.mean_weight);
    if (!(std::isnan(cfg.onset_ms) || std::isfinite(cfg.onset_ms)))
        fail("--onset-ms: expected a time in ms or auto, got %g", cfg.onset_ms);
    if (d.images.empty()) fail("'%s': the dataset has no images to show the network", d.path.c_str());
    const int need = steps_needed(d.bin_start_ms, d.bin_end_ms, cfg.ms_per_step, 0.f);
    if (need > 1000 || cfg.steps > 1000)
        fail("'%s': its bins reach %g ms, which at %g ms per step (--ms-per-step) needs %d model steps; at most 1000 are "
             "allowed (each step holds every layer's activations): use a coarser --ms-per-step or drop the late bins",
             d.path.c_str(), d.bin_end_ms.empty() ? 0.f : *std::max_element(d.bin_end_ms.begin(), d.bin_end_ms.end()),
             cfg.ms_per_step, std::max(need, cfg.steps));
    if (!cfg.init.empty() && cfg.time_varied)
        fail("--init: the time-varied baseline has no network to start from a checkpoint (drop --init or --time-varied)");
    if (!teacher.empty() && (int64_t)teacher.size() != d.N * d.U * d.B)
        fail("teacher responses: expected %lld values (N, U, B), found %zu", (long long)(d.N * d.U * d.B), teacher.size());
}

// The areas the data can feed (with their readout layers), the targets, each area's unit
// split, the network inputs and the empty scores. The time comes with plan_time.
Plan plan_make(const NeuralData& d, const FitConfig& cfg, const Model& backbone, bool has_teacher, FitResult& R) {
    const BackboneSpec& spec = backbone.spec;
    std::vector<std::string> known = neural_areas(d);
    std::vector<std::pair<std::string, std::string>> ro_pairs, wanted = readout_parse(cfg.readout);
    for (const auto& p : wanted) {
        spec.layer_index(p.second);  // fails on an unknown layer
        if (std::find(known.begin(), known.end(), p.first) == known.end())
            R.notes.push_back(strfmt("the data have no %s units: fitting without them", p.first.c_str()));
        else ro_pairs.push_back(p);
    }
    for (const std::string& a : known) {
        bool used = false;
        for (const auto& p : ro_pairs) used |= p.first == a;
        if (!used) R.notes.push_back(strfmt("area %s has no --readout layer: ignored", a.c_str()));
    }
    if (ro_pairs.empty()) {
        std::string k;
        for (const std::string& a : known) k += (k.empty() ? "" : ", ") + a;
        fail("'%s': none of the --readout areas (%s) is in the data, which has: %s", d.path.c_str(), cfg.readout.c_str(),
             k.c_str());
    }
    ScoreConfig sc = cfg.score;
    sc.areas.clear();
    for (const auto& p : ro_pairs) sc.areas.push_back(p.first);
    R.targets = targets_prepare(d, sc);
    const Targets& tg = R.targets;

    Plan P;
    P.N = d.N, P.B = d.B, P.S = spec.in_size;
    const int64_t isz = 3 * P.S * P.S;
    P.inputs.resize((size_t)(d.N * isz));
    for (int64_t i = 0; i < d.N; i++)
        stimulus_to_input(&P.inputs[(size_t)(i * isz)], &d.images[(size_t)(i * d.H * d.W * 3)], d.H, d.W, (int)P.S,
                          backbone.norm);
    for (const auto& p : ro_pairs) {
        AreaPlan ap;
        ap.area = p.first, ap.layer = p.second;
        ap.layer_index = spec.layer_index(p.second);
        const LayerSpec& ls = spec.layers[ap.layer_index];
        ap.D = (int64_t)ls.out_ch * ls.out_size * ls.out_size;
        for (const AreaUnits& au : tg.areas)
            if (au.area == p.first) ap.units = &au;
        std::vector<int> u = ap.units->units;
        Rng rng(cfg.seed * 7919 + 17 + P.areas.size());
        for (size_t i = u.size(); i > 1; i--) std::swap(u[i - 1], u[(size_t)rng.randint((int64_t)i)]);
        size_t nh = (size_t)std::lround(cfg.heldout_fraction * (double)u.size());
        if (u.size() >= 2 && nh >= u.size()) nh = u.size() - 1;
        ap.fit.area = ap.heldout.area = ap.area;
        ap.heldout.units.assign(u.begin(), u.begin() + (int64_t)nh);
        ap.fit.units.assign(u.begin() + (int64_t)nh, u.end());
        std::sort(ap.fit.units.begin(), ap.fit.units.end());
        std::sort(ap.heldout.units.begin(), ap.heldout.units.end());
        if (ap.fit.units.empty())
            fail("area %s: no unit passes the reliability criterion of '%s', nothing to fit", ap.area.c_str(), d.path.c_str());
        P.areas.push_back(std::move(ap));
    }
    for (const AreaPlan& ap : P.areas) {
        AreaFit af;
        af.area = ap.area, af.layer = ap.layer, af.fit_units = ap.fit.units, af.heldout_units = ap.heldout.units;
        Mapping mp = cfg.time_varied ? Mapping::PerBin : Mapping::Shared;
        af.fit = area_score_new(tg, ap.fit, mp);
        af.heldout = area_score_new(tg, ap.heldout, mp);
        af.has_teacher = has_teacher;
        if (af.has_teacher) af.teacher = area_score_new(tg, *ap.units, Mapping::Shared);
        R.areas.push_back(std::move(af));
    }
    R.predictions.assign((size_t)(d.N * d.U * d.B), NAN);
    return P;
}

// The unroll's length and the steps of each bin at this onset (dynamics.h, time).
void plan_time(Plan& P, const NeuralData& d, const FitConfig& cfg, float onset_ms, FitResult& R) {
    P.onset_ms = onset_ms;
    const int need = steps_needed(d.bin_start_ms, d.bin_end_ms, cfg.ms_per_step, onset_ms);
    P.T = cfg.steps > 0 ? cfg.steps : need;
    if (P.T < need) {
        int64_t last = 0;
        for (int64_t b = 0; b < d.B; b++)
            if (d.bin_end_ms[b] > d.bin_end_ms[last]) last = b;
        fail("--steps %d: the unroll ends at %g ms but the data's bins reach %g ms (bin [%g, %g) ms); at %g ms per step "
             "(onset %g ms) they need --steps %d, or leave --steps out to use that",
             cfg.steps, (P.T - 1) * cfg.ms_per_step + onset_ms, d.bin_end_ms[last], d.bin_start_ms[last],
             d.bin_end_ms[last], cfg.ms_per_step, onset_ms, need);
    }
    P.image_steps = cfg.image_steps >= 0 ? cfg.image_steps : (int)std::lround(d.presentation_ms / cfg.ms_per_step);
    P.steps = bin_steps(d.bin_start_ms, d.bin_end_ms, cfg.ms_per_step, onset_ms, P.T);
    P.bins_fitted.clear();
    std::string empty_bins;
    for (int64_t b = 0; b < d.B; b++) {
        if (!P.steps[b].empty()) P.bins_fitted.push_back(b);
        else empty_bins += strfmt("%s[%g, %g)", empty_bins.empty() ? "" : ", ", d.bin_start_ms[b], d.bin_end_ms[b]);
    }
    if (P.bins_fitted.empty())
        fail("no bin of '%s' contains a model step (steps at %g ms + t * %g ms, t < %d): check --ms-per-step / --onset-ms",
             d.path.c_str(), onset_ms, cfg.ms_per_step, P.T);
    const std::string note = strfmt("bins with no model step at onset %g ms (constant prediction, not fitted): ", onset_ms) + empty_bins;
    if (!empty_bins.empty() && std::find(R.notes.begin(), R.notes.end(), note) == R.notes.end()) R.notes.push_back(note);
}

// The images of split s: `test` (fold s), and the others shuffled into `val` (val_fraction,
// for early stopping and the readout's components) and `train` (the BPTT minibatches and
// the readout fit); `heldout_fit` (a seeded subset of train + val) fits the held-out units.
struct SplitImages {
    std::vector<int64_t> test, val, train, heldout_fit;
};

SplitImages split_images(const Targets& tg, int s, const FitConfig& cfg) {
    SplitImages si;
    std::vector<int64_t> pool;
    for (int64_t i = 0; i < tg.N; i++) (tg.folds.fold[i] == s ? si.test : pool).push_back(i);
    if (pool.size() < 2) fail("split %d: %zu training images; need at least 2", s, pool.size());
    Rng rng(cfg.seed * 1000003 + 31 * s + 5);
    for (size_t i = pool.size(); i > 1; i--) std::swap(pool[i - 1], pool[(size_t)rng.randint((int64_t)i)]);
    size_t nval = std::max<size_t>(1, (size_t)std::lround(cfg.val_fraction * (double)pool.size()));
    nval = std::min(nval, pool.size() - 1);
    si.val.assign(pool.begin(), pool.begin() + (int64_t)nval);
    si.train.assign(pool.begin() + (int64_t)nval, pool.end());
    si.heldout_fit = pool;  // pool is shuffled: a prefix is a seeded subset
    if (cfg.heldout_fit_images > 0 && si.heldout_fit.size() > (size_t)cfg.heldout_fit_images)
        si.heldout_fit.resize((size_t)cfg.heldout_fit_images);
    for (auto* v : {&si.val, &si.train, &si.heldout_fit}) std::sort(v->begin(), v->end());
    return si;
}

// A note for each area whose readouts are too large for ridge (readout_is_ridge, sized as split
// 0's): they are fitted by PLS instead, and the user is told which.
void readout_fallback_note(const FitConfig& cfg, const Plan& P, const Targets& tg, FitResult& R) {
    if (cfg.readout_solver != "ridge") return;
    const SplitImages si = split_images(tg, 0, cfg);
    for (const AreaPlan& ap : P.areas) {
        std::vector<std::string> which;
        if (cfg.time_varied) {
            if (!readout_is_ridge(cfg, (int64_t)(si.train.size() + si.val.size()), 1, ap.D)) which.push_back("per-bin");
        } else {
            if (!readout_is_ridge(cfg, (int64_t)si.train.size(), P.B, ap.D)) which.push_back("fit units'");
            if (!ap.heldout.units.empty() && !readout_is_ridge(cfg, (int64_t)si.heldout_fit.size(), P.B, ap.D))
                which.push_back("held-out units'");
        }
        if (which.empty()) continue;
        std::string w = which[0];
        for (size_t k = 1; k < which.size(); k++) w += " and " + which[k];
        R.notes.push_back(strfmt("%s reads %s's %lld features: its %s readout is too large for ridge (a Gram matrix "
                                 "above 4096 x 4096, or a dual form's X above 2^25 entries; engine/ridge.h "
                                 "ridge_affordable), so PLS fits it "
                                 "(--readout-components)",
                                 ap.area.c_str(), ap.layer.c_str(), (long long)ap.D, w.c_str()));
    }
}

// ---- stage 2: the teacher, scored like a model on each split's held-out images -------------

void score_teacher(const Plan& P, const Targets& tg, const std::vector<float>& teacher, FitResult& R) {
    const int64_t U = tg.U, B = tg.B;
    for (int s = 0; s < tg.folds.k; s++) {
        std::vector<int64_t> test;
        for (int64_t i = 0; i < tg.N; i++)
            if (tg.folds.fold[i] == s) test.push_back(i);
        for (size_t a = 0; a < P.areas.size(); a++) {
            const std::vector<int>& units = P.areas[a].units->units;
            std::vector<float> pred(test.size() * units.size() * B);
            for (size_t j = 0; j < test.size(); j++)
                for (size_t k = 0; k < units.size(); k++)
                    for (int64_t b = 0; b < B; b++)
                        pred[(j * units.size() + k) * B + b] = teacher[(test[j] * U + units[k]) * B + b];
            score_predictions(tg, *P.areas[a].units, s, test, pred.data(), R.areas[a].teacher);
        }
    }
}

// Scores held-out predictions Pr (nte * B, Ua) (rows (image, bin), standardised) of units
// `au` into `out` and keeps them, in the data's units, in R.predictions.
void keep_predictions(const Targets& tg, const AreaUnits& au, int s, const std::vector<int64_t>& test,
                      const std::vector<float>& Pr, const Standardised& st, AreaScore& out, FitResult& R) {
    const int64_t nte = (int64_t)test.size(), Ua = (int64_t)au.units.size(), B = tg.B;
    std::vector<float> pred((size_t)(nte * Ua * B));
    for (int64_t j = 0; j < nte; j++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t k = 0; k < Ua; k++) {
                const int u = au.units[k];
                const float v = Pr[(j * B + b) * Ua + k];
                pred[(j * Ua + k) * B + b] = v;
                R.predictions[(test[j] * tg.U + u) * B + b] = v * st.sd[u] + st.mu[u];
            }
    score_predictions(tg, au, s, test, pred.data(), out);
}

// ---- stage 3: the time-varied baseline: static features, an independent readout per bin -----

void fit_time_varied(const NeuralData& d, const FitConfig& cfg, const Plan& P, const Model& backbone, FitResult& R) {
    const Targets& tg = R.targets;
    const int64_t B = tg.B;
    std::vector<std::vector<float>> feats =
        backbone_features(backbone, d.images.data(), d.N, d.H, d.W, 32, nullptr, cfg.device);
    for (int s = 0; s < tg.folds.k; s++) {
        SplitImages si = split_images(tg, s, cfg);
        std::vector<int64_t> pool = si.train;
        pool.insert(pool.end(), si.val.begin(), si.val.end());
        const Standardised st = standardise(tg, pool);
        std::vector<size_t> tr(pool.begin(), pool.end()), te(si.test.begin(), si.test.end());
        for (size_t a = 0; a < P.areas.size(); a++) {
            const AreaPlan& ap = P.areas[a];
            const std::vector<float>& F = feats[ap.layer_index];  // (N, D)
            std::vector<float> X = gather_rows(F, tr, 1, ap.D), Xt = gather_rows(F, te, 1, ap.D);
            for (int which = 0; which < 2; which++) {
                const AreaUnits& au = which == 0 ? ap.fit : ap.heldout;
                const int64_t Ua = (int64_t)au.units.size();
                if (Ua == 0) continue;
                std::vector<float> Pr((size_t)(te.size() * B * Ua));
                for (int64_t b = 0; b < B; b++) {
                    std::vector<float> Y((size_t)(tr.size() * Ua)), Pb((size_t)(te.size() * Ua));
                    for (size_t j = 0; j < tr.size(); j++)
                        for (int64_t k = 0; k < Ua; k++) Y[j * Ua + k] = st.Y[(pool[j] * tg.U + au.units[k]) * B + b];
                    Readout r = readout_cv(cfg, tg.cfg.pls, X, Y, (int64_t)tr.size(), 1, ap.D, Ua,
                                           cfg.seed * 131 + s * 17 + b);
                    readout_apply(Pb.data(), r, Xt.data(), (int64_t)te.size(), ap.D, Ua);
                    for (size_t j = 0; j < te.size(); j++)
                        for (int64_t k = 0; k < Ua; k++) Pr[(j * B + b) * Ua + k] = Pb[j * Ua + k];
                }
                keep_predictions(tg, au, s, si.test, Pr, st, which == 0 ? R.areas[a].fit : R.areas[a].heldout, R);
            }
        }
    }
}

// ---- the fresh student and its features ------------------------------------------------------

// The cells' start: with memory_init, leaky integrators of a spread of timescales; residual
// cells' scale a = cell_scale_init (timedecay, whose state sums x / (1 - r): a (1 - r)).
void cells_start(Model& m, const FitConfig& cfg) {
    for (size_t l = 0; l < m.spec.layers.size(); l++) {
        const Motif mo = m.motif((int)l);
        if (mo == Motif::None) continue;
        const LayerSpec& ls = m.spec.layers[l];
        std::vector<float> r(ls.out_ch, 0.f);
        if (cfg.memory_init) r = cell_init_memory(m.params, mo, ls.name, ls.out_ch, cfg.seed * 131 + 7 + l);
        if (!m.cfg.residual) continue;
        std::vector<float> a(ls.out_ch, cfg.cell_scale_init);
        if (mo == Motif::TimeDecay)
            for (int c = 0; c < ls.out_ch; c++) a[c] *= 1 - r[c];
        upload(m.params[ls.name + ".cell.scale"], a.data(), ls.out_ch);
    }
}

// The student before training, the same for every split: the frozen backbone, the cells'
// start, feedback at zero; or, with cfg.init, everything as in that checkpoint.
std::unique_ptr<Model> student_fresh(const ModelConfig& mc, const Model& backbone, const FitConfig& cfg) {
    auto m = std::make_unique<Model>(mc, cfg.seed + 101, cfg.device);
    copy_backbone(*m, backbone);
    if (!cfg.init.empty()) checkpoint_load(cfg.init, m->params);  // every parameter of the student, by name
    m->freeze_backbone();
    if (cfg.init.empty()) cells_start(*m, cfg);
    return m;
}

// The readout layers' outputs at every step t < T of the images idx: [area] (n, T, D)
// (zero where a layer is silent).
std::vector<std::vector<float>> step_features(const Model& m, const Plan& P, const std::vector<int64_t>& idx, int T,
                                              int image_steps, const char* what) {
    const int nb = (int)std::min<size_t>(16, idx.size());
    std::vector<std::vector<float>> out(P.areas.size());
    for (size_t a = 0; a < P.areas.size(); a++) out[a].assign(idx.size() * T * P.areas[a].D, 0.f);
    Unrolled u;
    unroll_build(u, m, UnrollConfig{T, image_steps, nb}, true);
    const int64_t isz = 3 * P.S * P.S;
    std::vector<float> x((size_t)(nb * isz));
    Progress bar(what, (int64_t)idx.size(), "img");
    for (size_t i0 = 0; i0 < idx.size(); i0 += nb) {
        for (int j = 0; j < nb; j++)
            std::memcpy(&x[j * isz], &P.inputs[idx[std::min(i0 + j, idx.size() - 1)] * isz], isz * sizeof(float));
        upload(u.image, x.data(), nb * isz);
        u.tape.forward();
        for (size_t a = 0; a < P.areas.size(); a++) {
            const int64_t D = P.areas[a].D;
            std::vector<float> o((size_t)(nb * D));
            for (int t = 0; t < T; t++) {
                const Tensor& ot = u.out[t][P.areas[a].layer_index];
                if (!ot.defined()) continue;
                download(o.data(), ot, nb * D);
                for (size_t j = 0; j < (size_t)nb && i0 + j < idx.size(); j++)
                    std::memcpy(&out[a][((i0 + j) * T + t) * D], &o[j * D], D * sizeof(float));
            }
        }
        bar.update((int64_t)std::min(i0 + nb, idx.size()));
    }
    bar.finish();
    return out;
}

// Bins per-step features S (n, T, D) into (n, B, D): the mean of each bin's steps (graph_build's rule).
std::vector<float> bin_features(const std::vector<float>& S, int64_t n, int T, int64_t D,
                                const std::vector<std::vector<int>>& steps) {
    const int64_t B = (int64_t)steps.size();
    std::vector<float> F((size_t)(n * B * D), 0.f);
    for (int64_t i = 0; i < n; i++)
        for (int64_t b = 0; b < B; b++)
            for (int t : steps[b]) {
                if (t >= T) continue;
                const float w = 1.f / (float)steps[b].size();
                const float* src = &S[(i * T + t) * D];
                float* dst = &F[(i * B + b) * D];
                for (int64_t j = 0; j < D; j++) dst[j] += w * src[j];
            }
    return F;
}

// ---- the onset ------------------------------------------------------------------------------
// With --onset-ms auto, the time of step 0 after image onset is chosen among 0, 1, ... 6
// steps (0-60 ms at 10 ms per step), for each split on its own: for each, the fresh student's
// features (what every split starts from) of up to 256 of the split's training images, a
// closed-form readout (25 components) on three quarters and its within-bin error on the rest,
// summed over areas (standardised units); the least error wins. The split's test images take
// no part (one onset for all splits would be chosen on images that another split tests).
// `steps` are the images' per-step features ([area] (n, T, D), T for onset 0).

}  // namespace

std::vector<int64_t> onset_images(const Targets& tg, const FitConfig& cfg, int split) {
    SplitImages si = split_images(tg, split, cfg);
    std::vector<int64_t> imgs = si.train;
    imgs.insert(imgs.end(), si.val.begin(), si.val.end());
    Rng rng(cfg.seed * 4242 + 1);
    for (size_t i = imgs.size(); i > 1; i--) std::swap(imgs[i - 1], imgs[(size_t)rng.randint((int64_t)i)]);
    if (imgs.size() > 256) imgs.resize(256);
    return imgs;
}

namespace {

float onset_choose(const NeuralData& d, const FitConfig& cfg, const Plan& P, const Targets& tg,
                   const std::vector<int64_t>& imgs, const std::vector<std::vector<float>>& steps, int T,
                   const std::string& who, const std::function<void(const std::string&)>& log) {
    const Standardised st = standardise(tg, imgs);
    const size_t nfit = imgs.size() - imgs.size() / 4;
    std::vector<size_t> fit_pos(nfit), val_pos(imgs.size() - nfit);
    std::iota(fit_pos.begin(), fit_pos.end(), 0);
    std::iota(val_pos.begin(), val_pos.end(), nfit);
    const std::vector<int64_t> fit_img(imgs.begin(), imgs.begin() + (int64_t)nfit), val_img(imgs.begin() + (int64_t)nfit, imgs.end());
    float best = 0;
    double best_err = INFINITY;
    std::string line = who + "onset (ms) -> validation error:";
    for (int k = 0; k <= 6; k++) {
        const float onset = (float)(k * cfg.ms_per_step);
        if (cfg.steps > 0 && steps_needed(d.bin_start_ms, d.bin_end_ms, cfg.ms_per_step, onset) > cfg.steps) {
            line += strfmt(" %g: (needs more than --steps %d)", onset, cfg.steps);  // plan_time would refuse it
            continue;
        }
        const std::vector<std::vector<int>> bs = bin_steps(d.bin_start_ms, d.bin_end_ms, cfg.ms_per_step, onset, T);
        double err = 0;
        for (size_t a = 0; a < P.areas.size(); a++) {
            const AreaPlan& ap = P.areas[a];
            const int64_t D = ap.D, B = d.B, Ua = (int64_t)ap.fit.units.size();
            const std::vector<float> F = bin_features(steps[a], (int64_t)imgs.size(), T, D, bs);
            Readout r = readout_fit(gather_rows(F, fit_pos, B, D), gather_targets(st.Y, tg.U, B, ap.fit.units, fit_img),
                                    (int64_t)nfit, {}, {}, 0, B, D, Ua, std::min(25, cfg.readout_components), tg.cfg.pls);
            const std::vector<float> Xv = gather_rows(F, val_pos, B, D), Yv = gather_targets(st.Y, tg.U, B, ap.fit.units, val_img);
            std::vector<float> Pv(Yv.size());
            readout_apply(Pv.data(), r, Xv.data(), (int64_t)val_pos.size() * B, D, Ua);
            for (size_t i = 0; i < Pv.size(); i++) Pv[i] -= Yv[i];
            center_within_bins(Pv, (int64_t)val_pos.size(), B, Ua);
            double e = 0;
            for (float v : Pv) e += (double)v * v;
            err += e / (double)Pv.size();
        }
        line += strfmt(" %g: %.4f", onset, err);
        if (err < best_err) best_err = err, best = onset;
    }
    log(line + strfmt("; onset %g ms", best));
    return best;
}

// ---- stage 4: training one split ----------------------------------------------------------

struct Trained {
    std::unique_ptr<Model> model;
    std::unique_ptr<ParamArena> readouts;  // "readout.<area>.weight" (Ua, D), ".bias" (Ua)
};

// The zero readouts of every area: "readout.<area>.weight" (Ua, D), ".bias" (Ua).
std::unique_ptr<ParamArena> readouts_make(const Plan& P, const FitConfig& cfg) {
    std::vector<ParamSpec> rs;
    for (const AreaPlan& ap : P.areas) {
        rs.push_back({ro_name(ap.area, "weight"), {(int64_t)ap.fit.units.size(), ap.D}, Init::Zeros});
        rs.push_back({ro_name(ap.area, "bias"), {(int64_t)ap.fit.units.size()}, Init::Zeros});
    }
    return std::make_unique<ParamArena>(rs, cfg.seed, cfg.device);
}

// Area a's readout in closed form, written into `ro`, from the features X (n, B, D) and the
// targets Y (n, B, Ua) of the n training images of split s; returns its number of components.
// The components are chosen on a quarter of the training images: the validation images stay
// unseen for early stopping.
std::vector<int> readout_solve(ParamArena& ro, const FitConfig& cfg, const Plan& P, const Targets& tg, int s, size_t a,
                               const std::vector<float>& X, const std::vector<float>& Y, int64_t n) {
    const AreaPlan& ap = P.areas[a];
    const int64_t Ua = (int64_t)ap.fit.units.size(), D = ap.D;
    Readout r = readout_cv(cfg, tg.cfg.pls, X, Y, n, P.B, D, Ua, cfg.seed * 733 + s * 31 + a);
    upload(ro[ro_name(ap.area, "weight")], r.W.data(), Ua * D);
    upload(ro[ro_name(ap.area, "bias")], r.bias.data(), Ua);
    return r.comps;
}

// One validation: the mean loss over the validation images' minibatches and their score
// (bptt_val_score). What early stopping and the readout re-solves watch: the score (higher
// is better) with stop_on_score, else the loss.
struct Validation {
    float loss = 0, score = 0;
    // the score where it is defined (NaN: fewer than 3 validation images, or no unit scored)
    float criterion(const FitConfig& cfg) const { return cfg.stop_on_score && std::isfinite(score) ? -score : loss; }
};

// What the parts of one split's BPTT share: its data, the student and its readouts, the
// recorded graph, the optimisers and the best validation so far. Features of the readout
// layers are kept for re-solving the readouts in closed form (readout_refit): `cache` [area]
// (n_train, B, D) holds each training image's features as of the last minibatch it was in
// (the fresh student's until then); `valF` the validation images' of the last validation pass.
struct SplitBptt {
    SplitBptt(const FitConfig& cfg, const Plan& P, const Targets& tg, const SplitImages& si, const Standardised& st,
              int s, Model& m, ParamArena& ro)
        : cfg(cfg), P(P), tg(tg), si(si), st(st), s(s), m(m), ro(ro) {}
    const FitConfig& cfg;
    const Plan& P;
    const Targets& tg;
    const SplitImages& si;
    const Standardised& st;
    const int s;  // the split
    Model& m;
    ParamArena& ro;
    FitGraph g;
    Adam opt_m, opt_r;
    std::vector<std::vector<float>> cache, valF, Ytr, Yva;  // [area]; cache and Ytr with readout_refit only
    std::vector<int64_t> row_of;                            // (N): image -> its row of cache; -1 if not training
    float best = 0;                                         // the best validation criterion so far
    Validation best_val;                                    // the validation that had it
    std::vector<float> best_m, best_r;                      // the parameters and readouts that had it
};

}  // namespace

float param_lr_scale(const std::string& name, const Shape& shape, const FitConfig& cfg) {
    int64_t fan_in = 1;
    for (size_t k = 1; k < shape.size(); k++) fan_in *= shape[k];
    const bool feedback = name.find(".fb.") != std::string::npos;  // convrnn.h: <dst>.fb.<src>.weight
    return feedback ? cfg.feedback_lr / (float)fan_in : 1.f / std::sqrt((float)fan_in);
}

float lr_factor(const FitConfig& cfg, int it) {
    const int W = cfg.warmup;
    if (it <= W) return (float)it / (float)W;
    if (cfg.lr_schedule == "constant") return 1.f;
    CHECK(cfg.lr_schedule == "cosine", "lr_factor: unknown schedule '%s'", cfg.lr_schedule.c_str());
    const double u = (double)(it - W - 1) / (double)std::max(1, cfg.iters - W);  // 0 at the first step after warm-up
    return (float)(0.5 * (1 + std::cos(M_PI * std::min(1.0, u))));
}

namespace {

// The graph of minibatches of cfg.batch images, the optimisers (param_lr_scale: weights step
// lr / sqrt(fan_in), feedback lr x feedback_lr / fan_in) and, with readout_refit, the kept
// features and targets (from the fresh student's features F0, [area] (N, B, D)).
void bptt_start(SplitBptt& b, const std::vector<std::vector<float>>& F0) {
    const FitConfig& cfg = b.cfg;
    const Plan& P = b.P;
    const int64_t B = P.B, U = b.tg.U;
    graph_build(b.g, b.m, P, cfg.batch, &b.ro, cfg.mean_weight, cfg.truncate_bptt);
    b.opt_m.lr = cfg.lr, b.opt_r.lr = cfg.readout_lr;
    for (const auto& e : b.m.params.entries) b.opt_m.lr_scale.push_back(param_lr_scale(e.name, e.shape, cfg));
    b.opt_m.weight_decay = b.opt_r.weight_decay = cfg.weight_decay;
    b.opt_m.clip_norm = cfg.clip_grad;
    const size_t areas = P.areas.size();
    b.cache.resize(areas), b.valF.resize(areas), b.Ytr.resize(areas), b.Yva.resize(areas);
    b.row_of.assign((size_t)b.tg.N, -1);
    for (size_t j = 0; j < b.si.train.size(); j++) b.row_of[b.si.train[j]] = (int64_t)j;
    const std::vector<size_t> train_pos(b.si.train.begin(), b.si.train.end());
    for (size_t a = 0; a < areas; a++) {
        b.valF[a].assign(b.si.val.size() * B * P.areas[a].D, 0.f);
        b.Yva[a] = gather_targets(b.st.Y, U, B, P.areas[a].fit.units, b.si.val);
        if (!cfg.readout_refit) continue;
        b.cache[a] = gather_rows(F0[a], train_pos, B, P.areas[a].D);
        b.Ytr[a] = gather_targets(b.st.Y, U, B, P.areas[a].fit.units, b.si.train);
    }
}

// Copies the graph's binned features of the batch idx[i0 ..] into rows of `dst` ([area]
// (n, B, D)): the images' rows of the cache when by_row, else rows i0 ...
void bptt_keep_batch(SplitBptt& b, std::vector<std::vector<float>>& dst, const std::vector<int64_t>& idx, size_t i0,
                     bool by_row) {
    const FitGraph& g = b.g;
    const int64_t B = b.P.B;
    for (size_t a = 0; a < b.P.areas.size(); a++) {
        const int64_t D = b.P.areas[a].D;
        std::vector<float> f((size_t)(g.n * D));
        for (int64_t k = 0; k < B; k++) {
            download(f.data(), g.feat[a][k], g.n * D);
            for (size_t j = 0; j < (size_t)g.n && i0 + j < idx.size(); j++) {
                const int64_t row = by_row ? b.row_of[idx[i0 + j]] : (int64_t)(i0 + j);
                std::memcpy(&dst[a][(row * B + k) * D], &f[j * D], D * sizeof(float));
            }
        }
    }
}

// Area ap's readout in `ro` (readouts_make's names), on the host.
Readout readout_download(const ParamArena& ro, const AreaPlan& ap) {
    const int64_t D = ap.D, Ua = (int64_t)ap.fit.units.size();
    Readout r;
    r.W.resize((size_t)(Ua * D)), r.bias.resize((size_t)Ua);
    download(r.W.data(), ro[ro_name(ap.area, "weight")], Ua * D);
    download(r.bias.data(), ro[ro_name(ap.area, "bias")], Ua);
    return r;
}

// Area a's readout as it stands in the graph, on the host.
Readout bptt_readout(const SplitBptt& b, size_t a) { return readout_download(b.ro, b.P.areas[a]); }

// The validation images' score: per area, the mean over fitted bins of the median over fit
// units of max(r, 0)^2 across the validation images (r: Pearson, prediction vs target; the
// noise-corrected EV without the ceiling's division); the mean over areas.
float bptt_val_score(const SplitBptt& b) {
    const int64_t B = b.P.B, nv = (int64_t)b.si.val.size();
    double total = 0;
    int areas = 0;
    for (size_t a = 0; a < b.P.areas.size(); a++) {
        const int64_t D = b.P.areas[a].D, Ua = (int64_t)b.P.areas[a].fit.units.size();
        if (Ua == 0 || nv < 3) continue;  // too few images for a correlation: the loss decides (Validation)
        const Readout r = bptt_readout(b, a);
        std::vector<float> pr((size_t)(nv * B * Ua));
        readout_apply(pr.data(), r, b.valF[a].data(), nv * B, D, Ua);
        const std::vector<float>& y = b.Yva[a];
        double sum = 0;
        int bins = 0;
        for (int64_t k : b.P.bins_fitted) {
            std::vector<double> r2;
            for (int64_t u = 0; u < Ua; u++) {
                if (!unit_reliable(b.tg, b.P.areas[a].fit.units[u], k)) continue;  // not scored in this bin
                double mp = 0, my = 0;
                for (int64_t i = 0; i < nv; i++) mp += pr[(i * B + k) * Ua + u], my += y[(i * B + k) * Ua + u];
                mp /= nv, my /= nv;
                double spy = 0, spp = 0, syy = 0;
                for (int64_t i = 0; i < nv; i++) {
                    const double dp = pr[(i * B + k) * Ua + u] - mp, dy = y[(i * B + k) * Ua + u] - my;
                    spy += dp * dy, spp += dp * dp, syy += dy * dy;
                }
                const double rr = spp > 0 && syy > 0 ? spy / std::sqrt(spp * syy) : 0.0;
                r2.push_back(rr > 0 ? rr * rr : 0.0);
            }
            if (r2.empty()) continue;
            std::nth_element(r2.begin(), r2.begin() + r2.size() / 2, r2.end());
            sum += r2[r2.size() / 2], bins++;
        }
        if (bins) total += sum / bins, areas++;
    }
    return areas ? (float)(total / areas) : NAN;
}

// The graph's loss (graph_build) of the r validation images from row i0 of the kept features
// alone, on the host: a short last batch, whose graph repeats its last image to fill the batch.
double bptt_val_loss_rows(const SplitBptt& b, size_t i0, size_t r) {
    const int64_t B = b.P.B;
    const double mw = b.cfg.mean_weight;
    double L = 0;
    for (size_t a = 0; a < b.P.areas.size(); a++) {
        const int64_t D = b.P.areas[a].D, Ua = (int64_t)b.P.areas[a].fit.units.size();
        if (Ua == 0) continue;
        const Readout ro = bptt_readout(b, a);
        std::vector<float> x((size_t)(r * D)), e((size_t)(r * Ua));
        for (int64_t k : b.P.bins_fitted) {
            for (size_t j = 0; j < r; j++)
                std::memcpy(&x[j * D], &b.valF[a][((i0 + j) * B + k) * D], D * sizeof(float));
            readout_apply(e.data(), ro, x.data(), (int64_t)r, D, Ua);
            double raw = 0, centred = 0;
            for (int64_t u = 0; u < Ua; u++) {
                double mean = 0;
                for (size_t j = 0; j < r; j++) {
                    float& v = e[j * Ua + u];
                    v -= b.Yva[a][((i0 + j) * B + k) * Ua + u];
                    mean += v;
                }
                mean /= (double)r;
                for (size_t j = 0; j < r; j++) {
                    const double v = e[j * Ua + u];
                    raw += v * v, centred += (v - mean) * (v - mean);
                }
            }
            const double cells = (double)r * (double)Ua;
            L += (1 - mw) * centred / cells + mw * raw / cells;
        }
    }
    return L / (double)b.P.bins_fitted.size();
}

// One validation (Validation, before SplitBptt): the loss is the mean over the validation
// images (each batch's loss weighted by its images; a short last batch's padding counts not).
Validation bptt_val(SplitBptt& b) {
    double sum = 0;
    const size_t nv = b.si.val.size(), n = (size_t)b.g.n;
    for (size_t i0 = 0; i0 < nv; i0 += n) {
        graph_load(b.g, b.P, b.si.val, i0, &b.st.Y, b.tg.U);
        b.g.u.tape.forward();
        bptt_keep_batch(b, b.valF, b.si.val, i0, false);
        const size_t r = std::min(n, nv - i0);
        sum += (double)r * (r == n ? (double)loss_value(b.g) : bptt_val_loss_rows(b, i0, r));
    }
    return {(float)(sum / (double)nv), bptt_val_score(b)};
}

// The readouts re-solved on the kept features (variable projection: the cells then descend
// the loss of the best readout for their features, not of a lagging one).
void bptt_refit_readouts(SplitBptt& b) {
    for (size_t a = 0; a < b.P.areas.size(); a++)
        readout_solve(b.ro, b.cfg, b.P, b.tg, b.s, a, b.cache[a], b.Ytr[a], (int64_t)b.si.train.size());
    Adam fresh;  // the readouts' moments restart with them
    fresh.lr = b.opt_r.lr, fresh.weight_decay = b.opt_r.weight_decay;
    b.opt_r = fresh;
}

// The validation now; with readout_refit, the readouts re-solved and kept if validation agrees.
Validation bptt_validate(SplitBptt& b, SplitLog& L) {
    Validation v = bptt_val(b);
    if (b.cfg.readout_refit && std::isfinite(v.loss)) {
        std::vector<float> before = snapshot(b.ro);
        Adam kept = b.opt_r;
        bptt_refit_readouts(b);
        Validation v2 = bptt_val(b);
        if (std::isfinite(v2.loss) && v2.criterion(b.cfg) < v.criterion(b.cfg)) v = v2, L.refits++;
        else restore(b.ro, before), b.opt_r = kept;
    }
    return v;
}

// <checkpoint_dir>/split<s>.npz (none without a checkpoint_dir): the student's parameters, its
// readouts and what it is, as of iteration `iter` with validation b.best_val.
void split_checkpoint_save(const SplitBptt& b, const ModelConfig& mc, int iter) {
    const FitConfig& cfg = b.cfg;
    const Model& m = b.m;
    if (cfg.checkpoint_dir.empty()) return;
    Npz meta;
    meta_set_string(meta, "meta.arch", m.spec.arch);
    meta_set_string(meta, "meta.motif", cfg.motif);
    meta_set_string(meta, "meta.feedback", feedback_str(mc.feedback, m.spec));
    meta_set_string(meta, "meta.readout", cfg.readout);
    meta_set_floats(meta, "meta.residual", {mc.residual ? 1.f : 0.f});
    meta_set_floats(meta, "meta.mean", {m.norm.mean[0], m.norm.mean[1], m.norm.mean[2]});
    meta_set_floats(meta, "meta.std", {m.norm.std[0], m.norm.std[1], m.norm.std[2]});
    meta_set_floats(meta, "meta.split", {(float)b.s});
    meta_set_floats(meta, "meta.iteration", {(float)iter});
    meta_set_floats(meta, "meta.val_loss", {b.best_val.loss});
    meta_set_floats(meta, "meta.val_score", {b.best_val.score});
    meta_set_floats(meta, "meta.onset_ms", {b.P.onset_ms});
    // what running the model on new images needs (./bin/features, models/fit/model_features.h):
    // the time convention, the bins, and per area the units its readout rows are, with the
    // standardisation that turns a readout's output back into the data's units (y * sd + mean)
    meta_set_floats(meta, "meta.ms_per_step", {cfg.ms_per_step});
    meta_set_floats(meta, "meta.steps", {(float)b.P.T});
    meta_set_floats(meta, "meta.image_steps", {(float)b.P.image_steps});
    meta_set_floats(meta, "meta.bin_start_ms", b.tg.bin_start_ms);
    meta_set_floats(meta, "meta.bin_end_ms", b.tg.bin_end_ms);
    for (const AreaPlan& ap : b.P.areas) {
        std::vector<std::string> ids;
        std::vector<float> mu, sd;
        for (int u : ap.fit.units) ids.push_back(b.tg.unit_id[u]), mu.push_back(b.st.mu[u]), sd.push_back(b.st.sd[u]);
        meta.set("meta.unit_id." + ap.area, NpyArray::from_strings(ids));
        meta_set_floats(meta, "meta.unit_mean." + ap.area, mu);
        meta_set_floats(meta, "meta.unit_sd." + ap.area, sd);
    }
    for (const auto& e : b.ro.entries) {  // the readouts beside the model's parameters
        std::vector<float> v((size_t)e.view.numel());
        download(v.data(), e.view, e.view.numel());
        meta.set(e.name, NpyArray::from_f32(e.shape, v.data()));
    }
    checkpoint_save(split_checkpoint_path(cfg.checkpoint_dir, b.s), m.params, meta);
}

// Iterations 1 .. cfg.iters of Adam on shuffled minibatches of the training images, validating
// every val_every: keeps (and saves) the best, and stops after `patience` validations without
// a better one (patience 0: never), or with an error when the loss stops being finite.
void bptt_iterate(SplitBptt& b, const ModelConfig& mc, SplitLog& L) {
    const FitConfig& cfg = b.cfg;
    FitGraph& g = b.g;
    int bad = 0;
    TapeGraph step(g.u.tape, g.loss);
    Rng rng(cfg.seed * 1000003 + 31 * b.s + 6);
    std::vector<int64_t> order = b.si.train;
    size_t cursor = order.size();
    Progress bar(strfmt("split %d/%d", b.s + 1, b.tg.folds.k), cfg.iters, "it");
    for (int it = 1; it <= cfg.iters; it++) {
        if (cursor + (size_t)g.n > order.size()) {  // a new epoch: reshuffle
            for (size_t i = order.size(); i > 1; i--) std::swap(order[i - 1], order[(size_t)rng.randint((int64_t)i)]);
            cursor = 0;
        }
        graph_load(g, b.P, order, cursor, &b.st.Y, b.tg.U);
        cursor += (size_t)g.n;
        b.m.params.zero_grad(), b.ro.zero_grad();
        const bool cut = cfg.truncate_until == 0 || it <= cfg.truncate_until;  // truncated, then full BPTT
        if (cfg.truncate_bptt > 0 && *g.u.cut != cut) *g.u.cut = cut, step.invalidate();  // a captured graph bakes it in
        step.run();  // forward + BPTT: on a GPU one captured CUDA graph after the first runs
        float lv = loss_value(g);
        if (!std::isfinite(lv)) {  // before the update: the parameters are still the last finite ones
            bar.finish("stopped");
            restore(b.m.params, b.best_m), restore(b.ro, b.best_r);
            fail("split %d: the loss became %s at iteration %d (best validation at iteration %d); stopped. Lower --lr "
                 "(now %g) or --cell-scale-init (now %g)", b.s, std::isnan(lv) ? "NaN" : "infinite", it, L.best_iter,
                 cfg.lr, cfg.cell_scale_init);
        }
        L.train_loss.push_back(lv);
        const float f = lr_factor(cfg, it);
        b.opt_m.lr = cfg.lr * f, b.opt_r.lr = cfg.readout_lr * f;
        L.lr.push_back(b.opt_m.lr);
        b.opt_m.step(b.m.params), b.opt_r.step(b.ro);
        L.iters_done = it;
        if (cfg.readout_refit) bptt_keep_batch(b, b.cache, order, cursor - (size_t)g.n, true);
        if (it % cfg.val_every == 0 || it == cfg.iters) {
            const Validation v = bptt_validate(b, L);
            L.val_iter.push_back(it), L.val_loss.push_back(v.loss), L.val_score.push_back(v.score);
            if (!std::isfinite(v.loss)) continue;  // caught as a training loss next
            if (v.criterion(cfg) < b.best) {
                b.best = v.criterion(cfg), b.best_val = v, L.best_iter = it, bad = 0;
                b.best_m = snapshot(b.m.params), b.best_r = snapshot(b.ro);
                split_checkpoint_save(b, mc, it);
            } else if (cfg.patience > 0 && ++bad >= cfg.patience) {
                bar.update(it, strfmt("loss %.4f val %.4f / %.3f (best @%d), early stop", lv, v.loss, v.score, L.best_iter));
                break;
            }
        }
        bar.update(it, strfmt("loss %.4f best val %.4f / %.3f", lv, b.best_val.loss, b.best_val.score));
    }
    bar.finish(strfmt("best val loss %.4f / score %.3f at iteration %d (start %.4f / %.3f)", b.best_val.loss,
                      b.best_val.score, L.best_iter, L.init_val_loss, L.init_val_score));
}

// The student of split s and its readouts, trained by BPTT (dynamics.h, steps 2-5). F0 are
// the fresh network's features of every image ([area] (N, B, D)), for the closed-form start.
Trained train_split(const FitConfig& cfg, const Plan& P, const Targets& tg, const ModelConfig& mc, const Model& backbone,
                    const std::vector<std::vector<float>>& F0, int s, const SplitImages& si, const Standardised& st,
                    SplitLog& L) {
    Trained tr;
    tr.model = student_fresh(mc, backbone, cfg);
    tr.readouts = readouts_make(P, cfg);
    const std::vector<size_t> train_pos(si.train.begin(), si.train.end());
    for (size_t a = 0; a < P.areas.size(); a++) {  // the readouts in closed form, on the fresh student's features
        const std::vector<float> X = gather_rows(F0[a], train_pos, P.B, P.areas[a].D),
                                 Y = gather_targets(st.Y, tg.U, P.B, P.areas[a].fit.units, si.train);
        L.readout_components.push_back(readout_solve(*tr.readouts, cfg, P, tg, s, a, X, Y, (int64_t)si.train.size()));
    }
    SplitBptt b(cfg, P, tg, si, st, s, *tr.model, *tr.readouts);
    bptt_start(b, F0);
    b.best_val = bptt_val(b);
    b.best = b.best_val.criterion(cfg);
    L.init_val_loss = b.best_val.loss, L.init_val_score = b.best_val.score;
    b.best_m = snapshot(b.m.params), b.best_r = snapshot(b.ro);
    split_checkpoint_save(b, mc, 0);
    bptt_iterate(b, mc, L);
    restore(b.m.params, b.best_m), restore(b.ro, b.best_r);
    return tr;
}

// ---- stage 5: evaluating one split -----------------------------------------------------------
// Fit units: the trained readout on the trained network's features of the test images.
// Held-out units: a closed-form readout on its features of the held-out-fit images.

// One split's held-out predictions, per area (nte * B, U) (rows (image, bin), standardised):
// of its fit units and of its held-out units (empty when it has none).
struct SplitPredictions {
    std::vector<std::vector<float>> fit, heldout;
};

SplitPredictions evaluate_split(const FitConfig& cfg, const Plan& P, const Targets& tg, const Trained& tr, int s,
                                const SplitImages& si, const Standardised& st) {
    const int64_t B = P.B, nte = (int64_t)si.test.size();
    std::vector<int64_t> eval = si.test;  // test images first, then the held-out-fit images
    eval.insert(eval.end(), si.heldout_fit.begin(), si.heldout_fit.end());
    FitGraph ge;
    graph_build(ge, *tr.model, P, std::min<int>(16, (int)P.N), nullptr, 0);
    Progress bar(strfmt("split %d/%d eval", s + 1, tg.folds.k), (int64_t)eval.size(), "img");
    int64_t done = 0;
    std::vector<std::vector<float>> F = graph_features(ge, P, eval, &bar, &done);
    bar.finish();
    std::vector<size_t> te_pos((size_t)nte), fit_pos(si.heldout_fit.size());
    std::iota(te_pos.begin(), te_pos.end(), 0);
    std::iota(fit_pos.begin(), fit_pos.end(), (size_t)nte);
    SplitPredictions out;
    for (size_t a = 0; a < P.areas.size(); a++) {
        const AreaPlan& ap = P.areas[a];
        const int64_t D = ap.D, Ua = (int64_t)ap.fit.units.size(), Uh = (int64_t)ap.heldout.units.size();
        const std::vector<float> Xt = gather_rows(F[a], te_pos, B, D);
        const Readout r = readout_download(*tr.readouts, ap);
        out.fit.emplace_back((size_t)(nte * B * Ua));
        readout_apply(out.fit.back().data(), r, Xt.data(), nte * B, D, Ua);
        out.heldout.emplace_back();
        if (Uh == 0) continue;
        Readout rh = readout_cv(cfg, tg.cfg.pls, gather_rows(F[a], fit_pos, B, D),
                                gather_targets(st.Y, tg.U, B, ap.heldout.units, si.heldout_fit),
                                (int64_t)si.heldout_fit.size(), B, D, Uh, cfg.seed * 977 + s);
        out.heldout.back().resize((size_t)(nte * B * Uh));
        readout_apply(out.heldout.back().data(), rh, Xt.data(), nte * B, D, Uh);
    }
    return out;
}

// Scores split s's predictions and keeps them in R (the same whether fitted now or resumed).
void keep_split(const Plan& P, int s, const SplitImages& si, const Standardised& st, const SplitPredictions& pr,
                FitResult& R) {
    for (size_t a = 0; a < P.areas.size(); a++) {
        keep_predictions(R.targets, P.areas[a].fit, s, si.test, pr.fit[a], st, R.areas[a].fit, R);
        if (!P.areas[a].heldout.units.empty())
            keep_predictions(R.targets, P.areas[a].heldout, s, si.test, pr.heldout[a], st, R.areas[a].heldout, R);
    }
}

// ---- finished splits: <checkpoint_dir>/split<s>.done.npz ---------------------------------------
// Written when a split ends (beside its checkpoint): its log, its held-out predictions and
// what they are of (test images, units), so that a resumed run (cfg.resume) takes the split
// from it instead of fitting it again, with the same scores as if it had run through.

void split_done_save(const FitConfig& cfg, const Plan& P, int s, const SplitImages& si, const SplitLog& L,
                     int64_t trainable_params, const SplitPredictions& pr) {
    if (cfg.checkpoint_dir.empty()) return;
    Npz z;
    auto ints = [&](const std::string& k, const std::vector<int64_t>& v) {
        z.set(k, NpyArray::from_i64({(int64_t)v.size()}, v.data()));
    };
    auto floats = [&](const std::string& k, const std::vector<float>& v) {
        z.set(k, NpyArray::from_f32({(int64_t)v.size()}, v.data()));
    };
    ints("split", {s});
    ints("run_id", {(int64_t)cfg.run_id});
    ints("test", si.test);
    ints("trainable_params", {trainable_params});
    floats("log.train_loss", L.train_loss), floats("log.lr", L.lr), floats("log.val_loss", L.val_loss);
    floats("log.val_score", L.val_score);
    ints("log.val_iter", std::vector<int64_t>(L.val_iter.begin(), L.val_iter.end()));
    ints("log.counts", {L.best_iter, L.iters_done, L.refits, L.steps});
    z.set("log.scalars", NpyArray::from_f64({4}, std::vector<double>{L.init_val_loss, L.init_val_score, L.onset_ms, L.seconds}.data()));
    for (size_t a = 0; a < P.areas.size(); a++) {
        const AreaPlan& ap = P.areas[a];
        const int64_t rows = (int64_t)si.test.size() * P.B;
        ints("units.fit." + ap.area, std::vector<int64_t>(ap.fit.units.begin(), ap.fit.units.end()));
        ints("units.heldout." + ap.area, std::vector<int64_t>(ap.heldout.units.begin(), ap.heldout.units.end()));
        ints("log.readout_components." + ap.area,
             a < L.readout_components.size() ? std::vector<int64_t>(L.readout_components[a].begin(), L.readout_components[a].end())
                                             : std::vector<int64_t>{});
        z.set("pred.fit." + ap.area, NpyArray::from_f32({rows, (int64_t)ap.fit.units.size()}, pr.fit[a].data()));
        z.set("pred.heldout." + ap.area, NpyArray::from_f32({rows, (int64_t)ap.heldout.units.size()}, pr.heldout[a].data()));
    }
    npz_write(split_done_path(cfg.checkpoint_dir, s), z);
}

// Split s as written by split_done_save, checked to be of this run (cfg.run_id, where both
// have one) and of this split (its test images, the areas' units and shapes): a file of another
// run fails naming it.
SplitPredictions split_done_load(const FitConfig& cfg, const Plan& P, int s, const SplitImages& si, SplitLog& L,
                                 int64_t& trainable_params) {
    const std::string path = split_done_path(cfg.checkpoint_dir, s);
    const Npz z = npz_read(path);
    auto other = [&](const std::string& what) {
        fail("'%s' does not hold this run's split %d (%s; damaged, or written by another run): start over "
             "with --overwrite", path.c_str(), s + 1, what.c_str());
    };
    auto array = [&](const std::string& k, auto convert) {
        if (!z.has(k)) other("no '" + k + "'");
        try {
            return convert(z.get(k));
        } catch (const Error& e) {
            other("'" + k + "': " + e.what());
        }
        return decltype(convert(z.get(k))){};
    };
    auto ints = [&](const std::string& k) { return array(k, [](const NpyArray& a) { return a.to_i64(); }); };
    auto floats = [&](const std::string& k) { return array(k, [](const NpyArray& a) { return a.to_f32(); }); };
    if (ints("split") != std::vector<int64_t>{s}) other("another split number");
    if (cfg.run_id != 0 && z.has("run_id") && ints("run_id") != std::vector<int64_t>{(int64_t)cfg.run_id})
        other("a run with other flags, data or backbone: compare the run.json files");  // (older records have none)
    if (ints("test") != si.test) other("other test images");
    const std::vector<int64_t> counts = ints("log.counts"), tp = ints("trainable_params");
    const std::vector<double> sc = array("log.scalars", [](const NpyArray& a) { return a.to_f64(); });
    if (counts.size() != 4 || sc.size() != 4 || tp.size() != 1) other("a log of another shape");
    SplitPredictions pr;
    for (size_t a = 0; a < P.areas.size(); a++) {
        const AreaPlan& ap = P.areas[a];
        const std::string k = ap.area;
        if (ints("units.fit." + k) != std::vector<int64_t>(ap.fit.units.begin(), ap.fit.units.end()) ||
            ints("units.heldout." + k) != std::vector<int64_t>(ap.heldout.units.begin(), ap.heldout.units.end()))
            other("other units of " + k);
        const int64_t rows = (int64_t)si.test.size() * P.B;
        pr.fit.push_back(floats("pred.fit." + k)), pr.heldout.push_back(floats("pred.heldout." + k));
        if (z.get("pred.fit." + k).shape != Shape{rows, (int64_t)ap.fit.units.size()} ||
            z.get("pred.heldout." + k).shape != Shape{rows, (int64_t)ap.heldout.units.size()})
            other("predictions of another shape");
        const std::vector<int64_t> rc = ints("log.readout_components." + k);
        L.readout_components.emplace_back(rc.begin(), rc.end());
    }
    L.train_loss = floats("log.train_loss"), L.lr = floats("log.lr"), L.val_loss = floats("log.val_loss");
    L.val_score = floats("log.val_score");
    const std::vector<int64_t> vi = ints("log.val_iter");
    L.val_iter.assign(vi.begin(), vi.end());
    L.best_iter = (int)counts[0], L.iters_done = (int)counts[1], L.refits = (int)counts[2], L.steps = (int)counts[3];
    L.init_val_loss = (float)sc[0], L.init_val_score = (float)sc[1], L.onset_ms = (float)sc[2], L.seconds = sc[3];
    trainable_params = tp[0];
    return pr;
}

// The mean over bins of split s's EV of an area's fit units, for the log.
double split_ev(const AreaScore& a, int s, int64_t B) {
    double sum = 0;
    int c = 0;
    for (int64_t b = 0; b < B; b++) {
        float v = a.ev[s * B + b];
        if (v == v) sum += v, c++;
    }
    return c ? sum / c : NAN;
}

// " V4 EV 0.363 (held-out units 0.439) IT EV ...": split s's, for the log.
std::string split_evs(const FitResult& R, int s, int64_t B) {
    std::string line;
    for (const AreaFit& af : R.areas) {
        line += strfmt(" %s EV %.3f", af.area.c_str(), split_ev(af.fit, s, B));
        if (!af.heldout_units.empty()) line += strfmt(" (held-out units %.3f)", split_ev(af.heldout, s, B));
    }
    return line;
}

}  // namespace

// ---- the protocol ----------------------------------------------------------------------------

std::string split_checkpoint_path(const std::string& dir, int s) { return dir + strfmt("/split%d.npz", s); }
std::string split_done_path(const std::string& dir, int s) { return dir + strfmt("/split%d.done.npz", s); }
bool split_finished(const std::string& dir, int s) {
    return !dir.empty() && std::filesystem::exists(split_done_path(dir, s)) && std::filesystem::exists(split_checkpoint_path(dir, s));
}

FitResult fit_dynamics(const NeuralData& d, const FitConfig& cfg, const std::vector<float>& teacher,
                       const std::function<void(const std::string&)>& log_fn) {
    auto log = [&](const std::string& s) {
        if (log_fn) log_fn(s);
    };
    const double t_start = now_s();
    settings_check(d, cfg, teacher);
    PrecisionScope precision(cfg.device, cfg.precision);
    FitResult R;
    std::unique_ptr<Model> backbone = backbone_load(cfg.init.empty() ? cfg.backbone : cfg.init, cfg.arch);
    ModelConfig mc;  // the student: the backbone, cfg.residual (or --init's) cells everywhere, the feedback edges
    mc.arch = backbone->spec.arch;
    mc.motifs.assign(backbone->spec.layers.size(), motif_parse(cfg.motif));
    if (!cfg.time_varied) mc.feedback = feedback_parse(cfg.feedback, backbone->spec);  // the baseline has no network
    mc.residual = cfg.residual;
    if (!cfg.init.empty()) {  // the checkpoint's structure, which the flags must agree with
        const InitStructure st = init_structure(cfg.init);
        if (st.motif != cfg.motif || feedback_str(feedback_parse(st.feedback, backbone->spec), backbone->spec) !=
                                         feedback_str(mc.feedback, backbone->spec))
            fail("--init: '%s' holds %s cells with feedback %s, not --motif %s --feedback %s (drop those flags to "
                 "take the checkpoint's)", cfg.init.c_str(), st.motif.c_str(), st.feedback.c_str(), cfg.motif.c_str(),
                 cfg.feedback.c_str());
        mc.residual = st.residual;
    }
    R.residual_cells = mc.residual;
    Plan P = plan_make(d, cfg, *backbone, !teacher.empty(), R);
    const Targets& tg = R.targets;
    const int S = tg.folds.k;
    readout_fallback_note(cfg, P, tg, R);

    if (!teacher.empty()) score_teacher(P, tg, teacher, R);
    if (cfg.time_varied) {
        log("time-varied baseline: feedforward " + mc.arch + " features, an independent readout per bin");
        fit_time_varied(d, cfg, P, *backbone, R);
    } else {
        const int image_steps = cfg.image_steps >= 0 ? cfg.image_steps : (int)std::lround(d.presentation_ms / cfg.ms_per_step);
        std::vector<int64_t> all((size_t)d.N);
        std::iota(all.begin(), all.end(), 0);
        // every split's onset first, each on its own training images (its test images take no
        // part), so that a bad choice stops the run before any training
        std::vector<float> onsets((size_t)S, cfg.onset_ms);
        // splits a resumed run has already (cfg.resume: split<s>.done.npz beside the split's
        // checkpoint): read back as they were, their onset with them
        R.splits.resize(S);
        std::vector<SplitPredictions> resumed((size_t)S);
        std::vector<char> from_file((size_t)S, 0);
        std::vector<int64_t> done_params((size_t)S, 0);
        std::vector<int> todo;
        if (cfg.only_split >= S)
            fail("--split: split %d of %d: expected 1 to %d (--splits)", cfg.only_split + 1, S, S);
        VT_CHECK(cfg.only_split < 0 || !cfg.checkpoint_dir.empty(), "fit_dynamics: only_split needs a checkpoint_dir");
        for (int s = 0; s < S; s++) {
            from_file[s] = cfg.resume && split_finished(cfg.checkpoint_dir, s);
            if (!from_file[s]) {
                if (cfg.only_split < 0 || s == cfg.only_split) todo.push_back(s);
                else R.partial = true;  // another call's split
                continue;
            }
            resumed[s] = split_done_load(cfg, P, s, split_images(tg, s, cfg), R.splits[s], done_params[s]);
            onsets[s] = R.splits[s].onset_ms;
        }
        // the fresh student's features, for each split's onset and closed-form readout start
        std::unique_ptr<Model> fresh = todo.empty() ? nullptr : student_fresh(mc, *backbone, cfg);
        std::map<float, std::vector<std::vector<float>>> F0_at;  // the start's binned features per onset
        if (std::isnan(cfg.onset_ms) && !todo.empty()) {
            const int T0 = std::max(cfg.steps, steps_needed(d.bin_start_ms, d.bin_end_ms, cfg.ms_per_step, 0.f));
            const bool keep_all = d.N <= 512;  // per-step features (onset 0) of every image when few
            std::vector<std::vector<float>> steps_all;
            if (keep_all) steps_all = step_features(*fresh, P, all, T0, image_steps, "features of the fresh student");
            for (int s : todo) {
                const std::vector<int64_t> imgs = onset_images(tg, cfg, s);
                std::vector<std::vector<float>> sub;
                if (keep_all) {
                    sub.resize(P.areas.size());
                    for (size_t a = 0; a < P.areas.size(); a++) {
                        const int64_t per = (int64_t)T0 * P.areas[a].D;
                        sub[a].resize(imgs.size() * per);
                        for (size_t i = 0; i < imgs.size(); i++)
                            std::memcpy(&sub[a][i * per], &steps_all[a][imgs[i] * per], per * sizeof(float));
                    }
                } else {
                    const std::string what = strfmt("split %d/%d: features for the onset", s + 1, S);
                    sub = step_features(*fresh, P, imgs, T0, image_steps, what.c_str());
                }
                onsets[s] = onset_choose(d, cfg, P, tg, imgs, sub, T0, S > 1 ? strfmt("split %d/%d: ", s + 1, S) : "", log);
            }
            if (keep_all)  // each onset's features from the per-step ones, which then go
                for (int s : todo) {
                    if (F0_at.count(onsets[s])) continue;
                    const std::vector<std::vector<int>> bs = bin_steps(d.bin_start_ms, d.bin_end_ms, cfg.ms_per_step, onsets[s], T0);
                    std::vector<std::vector<float>>& F = F0_at[onsets[s]];
                    for (size_t a = 0; a < P.areas.size(); a++) F.push_back(bin_features(steps_all[a], d.N, T0, P.areas[a].D, bs));
                }
        }
        const bool one_onset = std::adjacent_find(onsets.begin(), onsets.end(), std::not_equal_to<float>()) == onsets.end();
        std::vector<float> todo_onsets;  // the onsets of the splits still to fit, in order
        for (int s : todo) todo_onsets.push_back(onsets[s]);
        std::vector<std::vector<float>> F0;  // the fresh student's binned features of every image at onset F0_onset
        float F0_onset = NAN;
        for (int s = 0; s < S; s++) {
            if (!from_file[s] && std::find(todo.begin(), todo.end(), s) == todo.end()) continue;  // only_split
            SplitLog& L = R.splits[s];
            const double t_split = now_s();
            const float onset = onsets[s];
            plan_time(P, d, cfg, onset, R);
            if (s == 0) R.T = P.T, R.image_steps = P.image_steps, R.steps_of_bin = P.steps, R.onset_ms = onset;
            const SplitImages si = split_images(tg, s, cfg);
            const Standardised st = standardise(tg, si.train);
            if (from_file[s]) {
                keep_split(P, s, si, st, resumed[s], R);
                resumed[s] = {};
                R.trainable_params = done_params[s];
                log(strfmt("split %d/%d: resumed (fitted by an earlier run: %d iterations, best %d, %s);", s + 1, S,
                           L.iters_done, L.best_iter, format_duration(L.seconds).c_str()) + split_evs(R, s, d.B));
                continue;
            }
            L.onset_ms = onset, L.steps = P.T;
            todo_onsets.erase(todo_onsets.begin());  // this split's; what is left is the later splits'
            if (!(F0_onset == onset)) {  // the start's features at this split's onset (kept while the next agrees)
                auto it = F0_at.find(onset);
                if (it != F0_at.end()) {
                    if (std::find(todo_onsets.begin(), todo_onsets.end(), onset) != todo_onsets.end()) F0 = it->second;
                    else F0 = std::move(it->second), F0_at.erase(it);  // no later split needs them
                } else {
                    FitGraph g;
                    graph_build(g, *fresh, P, std::min<int>(16, (int)d.N), nullptr, 0);
                    Progress bar("features of the fresh student", d.N, "img");
                    int64_t done = 0;
                    F0 = graph_features(g, P, all, &bar, &done);
                    bar.finish();
                }
                F0_onset = onset;
            }
            if (std::all_of(todo_onsets.begin(), todo_onsets.end(), [&](float o) { return o == onset; }))
                fresh.reset();  // no split left needs the start's features at another onset
            Trained tr = train_split(cfg, P, tg, mc, *backbone, F0, s, si, st, L);
            R.trainable_params = tr.model->params.numel_trainable() + tr.readouts->numel_trainable();
            const SplitPredictions pr = evaluate_split(cfg, P, tg, tr, s, si, st);
            keep_split(P, s, si, st, pr, R);
            L.seconds = now_s() - t_split;
            split_done_save(cfg, P, s, si, L, R.trainable_params, pr);
            log(strfmt("split %d/%d: %d iterations (best %d), %s;", s + 1, S, L.iters_done, L.best_iter,
                       format_duration(L.seconds).c_str()) + split_evs(R, s, d.B));
        }
        if (!one_onset) {
            std::string each;
            for (float o : onsets) each += strfmt("%s%g", each.empty() ? "" : ", ", o);
            R.notes.push_back("the onset was chosen per split on its training images: " + each +
                              " ms (results.json splits[].onset_ms; settings.onset_ms, steps and steps_per_bin are split 1's)");
        }
    }
    R.seconds = now_s() - t_start;
    if (R.partial) return R;  // the other splits are other calls' (only_split)
    for (AreaFit& af : R.areas) {
        area_score_summarise(af.fit, S, d.B);
        area_score_summarise(af.heldout, S, d.B);
        if (af.has_teacher) area_score_summarise(af.teacher, S, d.B);
    }
    R.seconds = now_s() - t_start;
    return R;
}

}  // namespace vt

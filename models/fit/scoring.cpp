// scoring.cpp: ceilings, folds, PLS mappings and explained variance (see scoring.h).
#include "models/fit/scoring.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <random>

#include "engine/common.h"
#include "engine/linalg.h"

namespace vt {

// Pearson r across the held-out images of a prediction p[j * sp] and a target y[j]. Where r
// is undefined because the prediction is constant (e.g. a silent layer's, or grey-screen
// features after the image is gone) while the target varies, it explains nothing: r = 0.
// NaN where the target itself does not vary (the unit is not scored in that bin).
double held_out_r(const float* p, int64_t sp, const float* y, int64_t n) {
    double r = pearson_r(p, sp, y, 1, n);
    if (r == r) return r;
    double lo = INFINITY, hi = -INFINITY, plo = INFINITY, phi = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        if (y[j] == y[j]) lo = std::min(lo, (double)y[j]), hi = std::max(hi, (double)y[j]),
                          plo = std::min(plo, (double)p[j * sp]), phi = std::max(phi, (double)p[j * sp]);
    return hi > lo && !(phi > plo) ? 0.0 : NAN;
}

bool unit_reliable(const Targets& tg, int u, int64_t b) {
    return !tg.has_ceiling() || tg.ceiling[u * tg.B + b] > tg.cfg.min_reliability;
}

float unit_ev(const Targets& tg, int u, int64_t b, double r) {
    if (r != r || !unit_reliable(tg, u, b)) return NAN;
    const double rp = std::max(r, 0.0);
    return (float)(rp * rp / (tg.has_ceiling() ? tg.ceiling[u * tg.B + b] : 1.f));
}

namespace {

uint64_t mix64(uint64_t x) {  // splitmix64's finaliser
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
// An RNG seed for one (purpose, a, b) cell: the same for any thread count or order.
uint64_t cell_seed(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b) {
    return mix64(mix64(mix64(seed ^ purpose) + a) + b);
}

float nan_median(std::vector<float>& v) {
    v.erase(std::remove_if(v.begin(), v.end(), [](float x) { return x != x; }), v.end());
    if (v.empty()) return NAN;
    size_t h = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + h, v.end());
    float hi = v[h];
    if (v.size() % 2) return hi;
    float lo = *std::max_element(v.begin(), v.begin() + h);
    return 0.5f * (lo + hi);
}

// Mean and SEM (sample SD / sqrt(n)) of the finite values; SEM is NaN for n < 2.
void mean_sem(const std::vector<float>& v, float& mean, float& sem) {
    double s = 0, ss = 0;
    int n = 0;
    for (float x : v)
        if (std::isfinite(x)) s += x, n++;
    mean = n ? (float)(s / n) : NAN;
    for (float x : v)
        if (std::isfinite(x)) ss += (x - s / n) * (x - s / n);
    sem = n >= 2 ? (float)std::sqrt(ss / (n - 1) / n) : NAN;
}

// Pearson r from sums over n pairs.
double r_from_sums(double n, double sx, double sy, double sxx, double syy, double sxy) {
    if (n < 3) return NAN;
    double vx = sxx - sx * sx / n, vy = syy - sy * sy / n, cxy = sxy - sx * sy / n;
    if (!(vx > 1e-12 * (sxx + 1e-30)) || !(vy > 1e-12 * (syy + 1e-30))) return NAN;
    return std::clamp(cxy / std::sqrt(vx * vy), -1.0, 1.0);
}

// Permutes the row blocks of A (rows, width) in place so that new row p = old row src[p].
void permute_rows(float* A, int64_t width, const std::vector<int64_t>& src) {
    const int64_t n = (int64_t)src.size();
    std::vector<char> done(n, 0);
    std::vector<float> tmp((size_t)width);
    const size_t bytes = (size_t)width * sizeof(float);
    for (int64_t p = 0; p < n; p++) {
        if (done[p] || src[p] == p) continue;
        std::memcpy(tmp.data(), A + p * width, bytes);
        for (int64_t q = p;;) {
            int64_t s = src[q];
            done[q] = 1;
            if (s == p) {
                std::memcpy(A + q * width, tmp.data(), bytes);
                break;
            }
            std::memcpy(A + q * width, A + s * width, bytes);
            q = s;
        }
    }
}

// F's image blocks: cur[p] = the image at position p. Rearranges F so that image want[p]
// is at position p.
void arrange(float* F, int64_t row, std::vector<int64_t>& cur, const std::vector<int64_t>& want) {
    const int64_t n = (int64_t)cur.size();
    std::vector<int64_t> pos(n), src(n);
    for (int64_t p = 0; p < n; p++) pos[cur[p]] = p;
    for (int64_t p = 0; p < n; p++) src[p] = pos[want[p]];
    permute_rows(F, row, src);
    cur = want;
}

// One (split, mapping, area) being fitted: the area's units and the split's images.
struct FitContext {
    const Targets& tg;
    const AreaUnits& au;
    const std::vector<int64_t>& train;
    const std::vector<int64_t>& test;
    std::vector<float> fill;  // (Ua, B) training mean of each unit and bin (for NaN trial averages)

    FitContext(const Targets& t, const AreaUnits& a, const std::vector<int64_t>& tr, const std::vector<int64_t>& te)
        : tg(t), au(a), train(tr), test(te) {
        const int64_t Ua = (int64_t)au.units.size(), B = tg.B;
        fill.assign((size_t)(Ua * B), 0.f);
        for (int64_t k = 0; k < Ua; k++)
            for (int64_t b = 0; b < B; b++) {
                double s = 0;
                int64_t c = 0;
                for (int64_t i : train) {
                    float y = target(i, k, b);
                    if (y == y) s += y, c++;
                }
                fill[k * B + b] = c ? (float)(s / c) : 0.f;
            }
    }
    int64_t ua() const { return (int64_t)au.units.size(); }
    float target(int64_t image, int64_t k, int64_t b) const {
        return tg.mean[(image * tg.U + au.units[k]) * tg.B + b];
    }
    float filled(int64_t image, int64_t k, int64_t b) const {
        float y = target(image, k, b);
        return y == y ? y : fill[k * tg.B + b];
    }
};


// Scores bin b of split s from held-out predictions pred[j * sj + k * sk] of the test images
// j and units k of au: per unit r and EV (unit_ev); medians into out.ev / out.r.
void score_bin(const Targets& tg, const AreaUnits& au, const std::vector<int64_t>& test, int s, int64_t b,
               const float* pred, int64_t sj, int64_t sk, AreaScore& out) {
    const int64_t nte = (int64_t)test.size(), Ua = (int64_t)au.units.size();
    std::vector<float> y((size_t)nte), evs, rs;
    for (int64_t k = 0; k < Ua; k++) {
        const int u = au.units[k];
        if (!unit_reliable(tg, u, b)) continue;
        for (int64_t j = 0; j < nte; j++) y[j] = tg.mean[(test[j] * tg.U + u) * tg.B + b];
        const double r = held_out_r(pred + k * sk, sj, y.data(), nte);
        if (r != r) continue;
        evs.push_back(unit_ev(tg, u, b, r));
        rs.push_back((float)r);
    }
    out.ev[s * tg.B + b] = nan_median(evs);
    out.r[s * tg.B + b] = nan_median(rs);
}

// Fits PLS on X (n, D) -> Y (n, Ua) and predicts Xte (nte, D) into P (nte, Ua).
void fit_predict(float* P, const float* X, const float* Y, int64_t n, int64_t D, int64_t Ua, const float* Xte,
                 int64_t nte, int comps, PlsAlgorithm algo) {
    PlsModel m = pls_fit(X, Y, n, (int)D, (int)Ua, comps, algo);
    pls_predict(P, m, Xte, nte);
}

}  // namespace

// ---- folds ------------------------------------------------------------------------------

Folds folds_make(int64_t n, int k, uint64_t seed, const std::vector<std::string>& strata) {
    if (k < 2) fail("folds: need at least 2 folds (splits), got %d", k);
    if (n < k)
        fail("folds: the data has %lld images, fewer than the %d folds asked for (every fold needs at least one "
             "held-out image); lower --splits", (long long)n, k);
    CHECK(strata.empty() || (int64_t)strata.size() == n, "folds_make: %zu labels for %lld images", strata.size(), (long long)n);
    std::map<std::string, std::vector<int64_t>> groups;  // sorted by label: deterministic
    for (int64_t i = 0; i < n; i++) groups[strata.empty() ? std::string() : strata[i]].push_back(i);
    Folds f;
    f.k = k;
    f.stratified = !strata.empty();
    f.fold.assign((size_t)n, 0);
    std::mt19937_64 rng(cell_seed(seed, 0xF01D, 0, 0));
    int64_t next = 0;
    for (auto& g : groups) {
        std::shuffle(g.second.begin(), g.second.end(), rng);
        for (int64_t i : g.second) f.fold[i] = (int)(next++ % k);
    }
    return f;
}

// ---- ceilings ---------------------------------------------------------------------------

double pearson_r(const float* x, int64_t sx, const float* y, int64_t sy, int64_t n) {
    double a = 0, b = 0, aa = 0, bb = 0, ab = 0, c = 0;
    for (int64_t i = 0; i < n; i++) {
        double u = x[i * sx], v = y[i * sy];
        if (u != u || v != v) continue;
        c++, a += u, b += v;
    }
    if (c < 3) return NAN;
    const double ma = a / c, mb = b / c;
    for (int64_t i = 0; i < n; i++) {  // centred second pass: exact for large means
        double u = x[i * sx], v = y[i * sy];
        if (u != u || v != v) continue;
        aa += (u - ma) * (u - ma), bb += (v - mb) * (v - mb), ab += (u - ma) * (v - mb);
    }
    // Zero variance, or only float rounding around a constant (sd below 1e-5 of the mean).
    if (!(aa > 1e-10 * ma * ma * c) || !(bb > 1e-10 * mb * mb * c) || aa == 0 || bb == 0) return NAN;
    return std::clamp(ab / std::sqrt(aa * bb), -1.0, 1.0);
}

std::vector<float> ceiling_split_half(const NeuralData& d, int splits, uint64_t seed) {
    CHECK(d.R >= 2, "ceiling_split_half needs R >= 2, got %lld", (long long)d.R);
    if (splits < 1) fail("ceiling: need at least 1 split-half, got %d", splits);
    const int64_t K = d.U * d.B, N = d.N, R = d.R;
    std::vector<double> acc((size_t)K, 0.0);
    std::vector<int> nacc((size_t)K, 0);
    for (int s = 0; s < splits; s++) {
        std::vector<double> st((size_t)(6 * K), 0.0);  // per (u, b): n, sa, sb, saa, sbb, sab over images
        #pragma omp parallel
        {
            std::vector<double> loc((size_t)(6 * K), 0.0);
            std::vector<float> sa((size_t)K), sb((size_t)K);
            std::vector<int> ca((size_t)K), cb((size_t)K);
            std::vector<int64_t> perm((size_t)R);
            #pragma omp for schedule(static)
            for (int64_t i = 0; i < N; i++) {
                std::iota(perm.begin(), perm.end(), 0);
                std::mt19937_64 rng(cell_seed(seed, 0xCE11, (uint64_t)s, (uint64_t)i));
                std::shuffle(perm.begin(), perm.end(), rng);
                std::fill(sa.begin(), sa.end(), 0.f), std::fill(sb.begin(), sb.end(), 0.f);
                std::fill(ca.begin(), ca.end(), 0), std::fill(cb.begin(), cb.end(), 0);
                for (int64_t j : perm) {
                    const float* x = &d.responses[(size_t)((j * N + i) * K)];
                    for (int64_t k = 0; k < K; k++) {
                        if (x[k] != x[k]) continue;
                        if ((ca[k] + cb[k]) & 1) sb[k] += x[k], cb[k]++;
                        else sa[k] += x[k], ca[k]++;
                    }
                }
                for (int64_t k = 0; k < K; k++) {
                    if (!ca[k] || !cb[k]) continue;
                    double a = (double)sa[k] / ca[k], b = (double)sb[k] / cb[k];
                    double* q = &loc[(size_t)(6 * k)];
                    q[0] += 1, q[1] += a, q[2] += b, q[3] += a * a, q[4] += b * b, q[5] += a * b;
                }
            }
            #pragma omp critical
            for (size_t k = 0; k < loc.size(); k++) st[k] += loc[k];
        }
        for (int64_t k = 0; k < K; k++) {
            const double* q = &st[(size_t)(6 * k)];
            double r = r_from_sums(q[0], q[1], q[2], q[3], q[4], q[5]);
            if (r != r) continue;
            acc[k] += std::max(2 * r / (1 + r), -1.0);  // Spearman-Brown; bounded below for r -> -1
            nacc[k]++;
        }
    }
    std::vector<float> rho((size_t)K);
    for (int64_t k = 0; k < K; k++) rho[k] = nacc[k] ? (float)(acc[k] / nacc[k]) : NAN;
    return rho;
}

// ---- targets ----------------------------------------------------------------------------

Targets targets_prepare(const NeuralData& d, const ScoreConfig& cfg) {
    if (cfg.components < 1) fail("--components: need at least 1 PLS component, got %d", cfg.components);
    if (cfg.ceiling_splits < 1) fail("--ceiling-splits: need at least 1, got %d", cfg.ceiling_splits);
    Targets tg;
    tg.N = d.N, tg.U = d.U, tg.B = d.B, tg.R = d.R;
    tg.cfg = cfg;
    tg.data_path = d.path;
    tg.bin_start_ms = d.bin_start_ms, tg.bin_end_ms = d.bin_end_ms;
    tg.unit_id = d.unit_id;
    if (tg.unit_id.empty())
        for (int64_t u = 0; u < d.U; u++) tg.unit_id.push_back("unit" + std::to_string(u));

    const std::vector<std::string> known = neural_areas(d);
    std::string known_list;
    for (const std::string& a : known) known_list += (known_list.empty() ? "" : ", ") + a;
    std::vector<std::string> areas = cfg.areas.empty() ? known : cfg.areas;
    for (size_t i = 0; i < areas.size(); i++) {
        if (std::find(known.begin(), known.end(), areas[i]) == known.end())
            fail("--areas: unknown area '%s' (the data '%s' has: %s)", areas[i].c_str(), d.path.c_str(), known_list.c_str());
        if (std::find(areas.begin(), areas.begin() + i, areas[i]) != areas.begin() + i)
            fail("--areas: area '%s' given twice", areas[i].c_str());
    }

    tg.folds = folds_make(d.N, cfg.folds, cfg.seed, d.image_object);
    tg.mean = neural_trial_mean(d);
    if (d.R >= 2) {
        // A ceiling needs some image with two non-NaN trials of the same unit and bin.
        const int64_t K = d.U * d.B;
        bool two = false;
        for (int64_t i = 0; i < d.N && !two; i++)
            for (int64_t k = 0; k < K && !two; k++) {
                int c = 0;
                for (int64_t r = 0; r < d.R && c < 2; r++) c += d.responses[(r * d.N + i) * K + k] == d.responses[(r * d.N + i) * K + k];
                two = c >= 2;
            }
        if (!two)
            fail("'%s': responses have R = %lld repetitions but no image has two non-NaN trials of any unit and bin, "
                 "so no split-half ceiling exists; save trial-averaged data with R = 1 (scores are then raw r^2)",
                 d.path.c_str(), (long long)d.R);
        tg.ceiling = ceiling_split_half(d, cfg.ceiling_splits, cfg.seed);
    }

    for (const std::string& area : areas) {
        AreaUnits au;
        au.area = area;
        for (int64_t u = 0; u < d.U; u++) {
            if (d.unit_area[u] != area) continue;
            au.units_total++;
            bool any = false, varies = false;
            for (int64_t b = 0; b < d.B; b++) {
                float lo = INFINITY, hi = -INFINITY;
                for (int64_t i = 0; i < d.N; i++) {
                    float y = tg.mean[(i * d.U + u) * d.B + b];
                    if (y != y) continue;
                    any = true, lo = std::min(lo, y), hi = std::max(hi, y);
                }
                varies = varies || hi > lo;
            }
            std::string reason;
            if (!any) reason = "all trials are NaN";
            else if (!varies) reason = "zero variance: the same trial-averaged response to every image in every bin";
            else if (tg.has_ceiling()) {
                float best = NAN;
                for (int64_t b = 0; b < d.B; b++) {
                    float rho = tg.ceiling[u * d.B + b];
                    if (rho == rho && !(rho <= best)) best = rho;
                }
                if (!(best > cfg.min_reliability))
                    reason = best == best ? strfmt("unreliable: split-half reliability %.3f <= %g in every bin", best,
                                                   cfg.min_reliability)
                                          : "no split-half reliability: too few images with two trials, or zero variance";
            }
            if (reason.empty()) au.units.push_back((int)u);
            else au.excluded.push_back({(int)u, reason});
        }
        tg.areas.push_back(std::move(au));
    }
    return tg;
}

// ---- scoring a layer --------------------------------------------------------------------

const char* mapping_name(Mapping m) { return m == Mapping::Shared ? "shared" : "per_bin"; }

std::vector<Mapping> mappings_parse(const std::string& s) {
    if (s == "shared") return {Mapping::Shared};
    if (s == "per-bin" || s == "per_bin") return {Mapping::PerBin};
    if (s == "both") return {Mapping::Shared, Mapping::PerBin};
    fail("--mapping: expected shared, per-bin or both, got '%s'", s.c_str());
}

AreaScore area_score_new(const Targets& tg, const AreaUnits& au, Mapping m) {
    const int64_t S = tg.folds.k, B = tg.B;
    AreaScore a;
    a.area = au.area, a.mapping = m, a.units = (int)au.units.size();
    a.ev.assign((size_t)(S * B), NAN), a.r.assign((size_t)(S * B), NAN);
    a.units_per_bin.assign((size_t)B, 0);
    for (int64_t b = 0; b < B; b++)
        for (int u : au.units) a.units_per_bin[b] += !tg.has_ceiling() || tg.ceiling[u * B + b] > tg.cfg.min_reliability;
    if (tg.has_ceiling()) {
        a.ceiling.assign((size_t)B, NAN);
        for (int64_t b = 0; b < B; b++) {
            std::vector<float> v;
            for (int u : au.units) v.push_back(tg.ceiling[u * B + b]);
            a.ceiling[b] = nan_median(v);
        }
    }
    return a;
}

void area_score_summarise(AreaScore& a, int64_t S, int64_t B) {
    a.ev_bin_mean.assign((size_t)B, NAN), a.ev_bin_sem.assign((size_t)B, NAN), a.r_bin.assign((size_t)B, NAN);
    a.bins_scored = 0;
    std::vector<float> per_split((size_t)S, NAN);
    for (int64_t b = 0; b < B; b++) {
        std::vector<float> e, r;
        for (int64_t s = 0; s < S; s++) e.push_back(a.ev[s * B + b]), r.push_back(a.r[s * B + b]);
        float dummy;
        mean_sem(e, a.ev_bin_mean[b], a.ev_bin_sem[b]);
        mean_sem(r, a.r_bin[b], dummy);
        a.bins_scored += std::isfinite(a.ev_bin_mean[b]);
    }
    for (int64_t s = 0; s < S; s++) {
        std::vector<float> e(a.ev.begin() + s * B, a.ev.begin() + (s + 1) * B);
        float dummy;
        mean_sem(e, per_split[s], dummy);
    }
    mean_sem(per_split, a.ev_mean, a.ev_sem);
    float dummy;
    mean_sem(a.r_bin, a.r_median, dummy);
}

void score_predictions(const Targets& tg, const AreaUnits& au, int s, const std::vector<int64_t>& test, const float* pred,
                       AreaScore& out) {
    const int64_t Ua = (int64_t)au.units.size(), B = tg.B;
    for (int64_t b = 0; b < B; b++) score_bin(tg, au, test, s, b, pred + b, Ua * B, B, out);
}

int64_t score_layer_fits(const Targets& tg, int64_t T, const std::vector<Mapping>& mappings) {
    int64_t per_split = 0;
    for (Mapping m : mappings) per_split += (m == Mapping::Shared ? 1 : tg.B) * (int64_t)tg.areas.size();
    return per_split * tg.folds.k;
}

LayerScore score_layer(const Targets& tg, const std::string& layer, float* F, int64_t T, int64_t D,
                       const std::vector<Mapping>& mappings, const std::function<void()>& step) {
    const int64_t N = tg.N, B = tg.B, S = tg.folds.k, row = T * D;
    if (T != 1 && T != B)
        fail("features '%s' have T = %lld time steps but the data has B = %lld bins: give one feature vector per bin "
             "(N, %lld, D), e.g. the model outputs averaged over each bin's steps, or time-invariant features (N, D)",
             layer.c_str(), (long long)T, (long long)B, (long long)B);
    CHECK(D >= 1, "score_layer: D = %lld", (long long)D);
    const int comps = tg.cfg.components;
    LayerScore out;
    out.layer = layer, out.T = T, out.D = D;
    for (Mapping m : mappings)
        for (const AreaUnits& au : tg.areas) {
            AreaScore a = area_score_new(tg, au, m);
            out.scores.push_back(std::move(a));
        }
    auto score_of = [&](Mapping m, size_t area) -> AreaScore& {
        size_t mi = (size_t)(std::find(mappings.begin(), mappings.end(), m) - mappings.begin());
        return out.scores[mi * tg.areas.size() + area];
    };
    const bool has_shared = std::find(mappings.begin(), mappings.end(), Mapping::Shared) != mappings.end();
    const bool has_per_bin = std::find(mappings.begin(), mappings.end(), Mapping::PerBin) != mappings.end();
    const bool contiguous = has_shared || T == 1;  // fits that read F's training rows in place

    std::vector<int64_t> cur((size_t)N);
    std::iota(cur.begin(), cur.end(), 0);
    for (int s = 0; s < S; s++) {
        std::vector<int64_t> train, test;
        for (int64_t i = 0; i < N; i++) (tg.folds.fold[i] == s ? test : train).push_back(i);
        const int64_t ntr = (int64_t)train.size(), nte = (int64_t)test.size();
        if (contiguous) {
            std::vector<int64_t> want = train;
            want.insert(want.end(), test.begin(), test.end());
            arrange(F, row, cur, want);
        }
        std::vector<FitContext> ctx;
        for (const AreaUnits& au : tg.areas) ctx.emplace_back(tg, au, train, test);

        if (has_shared) {
            for (size_t a = 0; a < tg.areas.size(); a++) {
                const FitContext& c = ctx[a];
                const int64_t Ua = c.ua();
                AreaScore& sc = score_of(Mapping::Shared, a);
                if (Ua > 0) {
                    // Y (ntr*T, Ua): rows (image, bin) stacked like F's rows; T = 1: the bin average.
                    std::vector<float> Y((size_t)(ntr * T * Ua)), P((size_t)(nte * T * Ua));
                    for (int64_t j = 0; j < ntr; j++)
                        for (int64_t k = 0; k < Ua; k++) {
                            if (T == B) {
                                for (int64_t b = 0; b < B; b++) Y[(j * T + b) * Ua + k] = c.filled(train[j], k, b);
                            } else {
                                double m = 0;
                                for (int64_t b = 0; b < B; b++) m += c.filled(train[j], k, b);
                                Y[j * Ua + k] = (float)(m / B);
                            }
                        }
                    fit_predict(P.data(), F, Y.data(), ntr * T, D, Ua, F + ntr * row, nte * T, comps, tg.cfg.pls);
                    for (int64_t b = 0; b < B; b++)
                        score_bin(tg, c.au, test, s, b, P.data() + (T == B ? b * Ua : 0), T * Ua, 1, sc);
                }
                if (step) step();
            }
        }
        if (has_per_bin) {
            std::vector<float> Xb;  // (N, D) bin b's rows, T = B only: train then test
            if (T == B) Xb.resize((size_t)(N * D));
            std::vector<int64_t> pos((size_t)N);
            for (int64_t p = 0; p < N; p++) pos[cur[p]] = p;
            for (int64_t b = 0; b < B; b++) {
                const float* X = F;  // T = 1: F's first ntr rows are the training images
                if (T == B) {
                    #pragma omp parallel for schedule(static)
                    for (int64_t j = 0; j < N; j++) {
                        int64_t img = j < ntr ? train[j] : test[j - ntr];
                        std::memcpy(&Xb[(size_t)(j * D)], F + pos[img] * row + b * D, (size_t)D * sizeof(float));
                    }
                    X = Xb.data();
                }
                for (size_t a = 0; a < tg.areas.size(); a++) {
                    const FitContext& c = ctx[a];
                    const int64_t Ua = c.ua();
                    if (Ua > 0) {
                        std::vector<float> Y((size_t)(ntr * Ua)), P((size_t)(nte * Ua));
                        for (int64_t j = 0; j < ntr; j++)
                            for (int64_t k = 0; k < Ua; k++) Y[j * Ua + k] = c.filled(train[j], k, b);
                        fit_predict(P.data(), X, Y.data(), ntr, D, Ua, X + ntr * D, nte, comps, tg.cfg.pls);
                        score_bin(tg, c.au, test, s, b, P.data(), Ua, 1, score_of(Mapping::PerBin, a));
                    }
                    if (step) step();
                }
            }
        }
    }
    if (contiguous) {  // restore F's original image order
        std::vector<int64_t> id((size_t)N);
        std::iota(id.begin(), id.end(), 0);
        arrange(F, row, cur, id);
    }

    for (AreaScore& a : out.scores) area_score_summarise(a, S, B);
    return out;
}

// ---- output -----------------------------------------------------------------------------

std::string json_number(double v) { return std::isfinite(v) ? strfmt("%.6g", v) : "null"; }

Json scores_json(const Targets& tg, const std::vector<LayerScore>& layers, const std::vector<std::pair<std::string, Json>>& extra) {
    const ScoreConfig& c = tg.cfg;
    const bool nc = tg.has_ceiling();
    Json st = {{"pls", c.pls == PlsAlgorithm::Nipals ? "nipals" : "simpls"},
               {"folds", c.folds},
               {"components", c.components},
               {"seed", c.seed},
               {"stratified_by", tg.folds.stratified ? Json("image_object") : Json(nullptr)},
               {"pls_fit", std::string(c.pls == PlsAlgorithm::Nipals ? "NIPALS" : "SIMPLS") +
                               ", centred, not scaled, fitted on the training images of each split, one per area"}};
    if (nc) {
        st["ceiling"] = strfmt("split-half reliability per unit and bin over repetitions, Spearman-Brown corrected, mean "
                               "over %d random split-halves, on all images", c.ceiling_splits);
        st["ceiling_splits"] = c.ceiling_splits;
        st["min_reliability"] = json_num(c.min_reliability);
    } else {
        st["ceiling"] = nullptr;
        st["note"] = "no ceiling (R = 1): ev is raw r^2, not noise-corrected";
    }
    st["ev"] = nc ? "median over units of max(r,0)^2/rho per split and bin"
                  : "median over units of max(r,0)^2 per split and bin (no ceiling)";
    for (const auto& kv : extra) st[kv.first] = kv.second;
    st["areas"] = Json::array();
    for (const AreaUnits& au : tg.areas) st["areas"].push_back(au.area);
    Json areas = Json::array();
    for (const AreaUnits& au : tg.areas) {
        Json ex = Json::array();
        for (const ExcludedUnit& e : au.excluded) ex.push_back({{"unit", tg.unit_id[e.unit]}, {"reason", e.reason}});
        areas.push_back({{"area", au.area}, {"units_total", au.units_total}, {"units_scored", au.units.size()},
                         {"excluded", ex}});
    }
    Json ls = Json::array();
    for (const LayerScore& L : layers) {
        Json scores = Json::array();
        for (const AreaScore& a : L.scores) {
            Json bins = Json::array();
            for (int64_t b = 0; b < tg.B; b++)
                bins.push_back({{"bin_start_ms", json_num(tg.bin_start_ms[b])}, {"bin_end_ms", json_num(tg.bin_end_ms[b])},
                                {"mean", json_num(a.ev_bin_mean[b])}, {"sem", json_num(a.ev_bin_sem[b])},
                                {"r_median", json_num(a.r_bin[b])}, {"ceiling", json_num(nc ? a.ceiling[b] : NAN)},
                                {"units", a.units_per_bin[b]}});
            Json split_bin = Json::array();
            for (int s = 0; s < tg.folds.k; s++)
                split_bin.push_back(json_nums(std::vector<float>(a.ev.begin() + s * tg.B, a.ev.begin() + (s + 1) * tg.B)));
            scores.push_back({{"mapping", mapping_name(a.mapping)},
                              {"area", a.area},
                              {"units", a.units},
                              {"noise_corrected", nc},
                              {"ev", {{"mean", json_num(a.ev_mean)}, {"sem", json_num(a.ev_sem)}}},
                              {"r_median", json_num(a.r_median)},
                              {"bins_scored", a.bins_scored},
                              {"ev_per_bin", bins},
                              {"ev_split_bin", split_bin}});
        }
        ls.push_back({{"layer", L.layer}, {"T", L.T}, {"D", L.D}, {"scores", scores}});
    }
    return {{"format", "ventral-scores-1"},
            {"settings", st},
            {"data", {{"path", tg.data_path}, {"images", tg.N}, {"units", tg.U}, {"bins", tg.B}, {"repetitions", tg.R},
                      {"noise_corrected", nc}}},
            {"areas", areas},
            {"layers", ls}};
}

std::string scores_table(const Targets& tg, const std::vector<LayerScore>& layers) {
    const bool nc = tg.has_ceiling();
    std::string o = nc ? strfmt("EV = noise-corrected explained variance, median over units of r^2/rho (mean over %lld "
                                "bins, mean +- SEM over %d splits)\n", (long long)tg.B, tg.folds.k)
                       : strfmt("no ceiling (R = 1): EV is raw r^2, median over units (mean over %lld bins, mean +- SEM "
                                "over %d splits)\n", (long long)tg.B, tg.folds.k);
    for (const AreaUnits& au : tg.areas)
        if (!au.excluded.empty())
            o += strfmt("%s: %zu of %d units excluded (see results.json)\n", au.area.c_str(), au.excluded.size(),
                        au.units_total);
    o += strfmt("%-12s %-8s %-6s %6s %8s %8s %9s %5s\n", "layer", "mapping", "area", "units", "EV", "sem", "r median", "bins");
    for (const LayerScore& L : layers)
        for (const AreaScore& a : L.scores)
            o += strfmt("%-12s %-8s %-6s %6d %8.4f %8.4f %9.4f %5d\n", L.layer.c_str(), mapping_name(a.mapping),
                        a.area.c_str(), a.units, a.ev_mean, a.ev_sem, a.r_median, a.bins_scored);
    return o;
}

}  // namespace vt
